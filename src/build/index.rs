//! The build index: what the last build read and wrote, kept in one file under `.relais/`
//! (read and written whole, bincode) so the next build re-parses and re-renders only what
//! changed.
//!
//! For every source it holds the file's size and modification time (a cheap change test),
//! its content hash (the test when the time is too close to the last build to trust), and
//! the parsed document without its body (enough for listings, feeds' metadata and the
//! sitemap). For every output it holds a signature of everything the output was made from
//! and a hash of the bytes written, so an output whose inputs did not change is not
//! rendered, and new bytes are compared with the hash instead of the old file.
//!
//! The file opens with a small [`Quick`] part (each source's size, times and what decides
//! whether it is held back; the inputs signature; the last report): a build that finds
//! nothing changed reads only that part, not the documents and outputs after it.
//!
//! The sources' entries (most of the bytes: a document each) live in a second file, a log
//! of entries appended by each build for the sources it changed and compacted when stale
//! records outnumber live ones, so editing one post writes one entry, not all of them.
//! The main file names the log (a random nonce) and the length it was written with:
//! records a crashed build appended after that length are ignored and cut off.
//!
//! A one-post edit does not rewrite the main file either (2.4 MB at 10k posts, a tenth
//! of such a build): it appends a [`Delta`] (the new log length, the edited sources'
//! stamps, the outputs it wrote) after the main part, and loads apply the deltas in
//! order. Each delta is checksummed with the file's random base id, so a torn append or
//! one meant for a file since replaced is ignored and cut off; the whole file is written
//! afresh once the deltas grow past an eighth of it.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::content::{Document, DocumentKind, PageLinks};
use crate::federation::check::FediverseWarning;

/// Bumped when the index layout or the meaning of a signature changes; with relais's
/// version, as another version may parse the same source into another document.
const FORMAT: &str = concat!("relais-build-index-14 ", env!("CARGO_PKG_VERSION"));
/// Where the index of a build into `<site>/public` lives.
pub const INDEX_FILE: &str = ".relais/build-index";
/// A source read this soon after its modification time may have changed again within the
/// same timestamp tick: its bytes are hashed instead of trusting size and time. Times with
/// nanoseconds come from a file system with fine ticks (a few ms); whole seconds may come
/// from one with 1–2 s ticks.
const DOUBT_FINE: Duration = Duration::from_millis(100);
const DOUBT_COARSE: Duration = Duration::from_secs(2);
/// Subfolders of the output folder whose times stand for it, at most: a stat each on
/// every build, a no-change one included.
const MAX_STAMPED_SUBFOLDERS: usize = 256;
/// Characters of a body's text kept in the index: enough for the description of listings.
const TEXT_PREFIX_CHARS: usize = 400;

/// Fast, stable hash for signatures and output bytes: XXH3, whose output is specified, so a
/// new toolchain does not make every output look changed (std's SipHash promises neither,
/// and took 3 % of a cold build's CPU hashing what it wrote). A wrong "changed" costs a
/// rewrite; a wrong "same" needs a 64-bit collision.
pub struct Sig(xxhash_rust::xxh3::Xxh3Default);

impl Sig {
    pub fn new(kind: &str) -> Sig {
        let mut sig = Sig(xxhash_rust::xxh3::Xxh3Default::new());
        kind.hash(&mut sig.0);
        sig
    }

    pub fn with(mut self, value: impl Hash) -> Sig {
        value.hash(&mut self.0);
        self
    }

    pub fn bytes(mut self, bytes: &[u8]) -> Sig {
        bytes.len().hash(&mut self.0);
        self.0.write(bytes);
        self
    }

    pub fn finish(&self) -> u64 {
        self.0.finish()
    }
}

pub fn hash_bytes(bytes: &[u8]) -> u64 {
    Sig::new("bytes").bytes(bytes).finish()
}

/// Modification time as (seconds, nanoseconds) since the epoch.
pub type Stamp = (u64, u32);

pub fn stamp(time: SystemTime) -> Stamp {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs(), since.subsec_nanos())
}

/// What tells a copied or linked file changed without reading it: size, modification
/// time, and on Unix the inode's change time and number, which no tool sets back (`cp -p`,
/// `rsync -t` and tar keep a modification time; a same-size edit within one tick of the
/// clock keeps it too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub modified: Stamp,
    pub changed: Stamp,
    pub inode: u64,
}

impl FileStamp {
    pub fn of(meta: &std::fs::Metadata) -> FileStamp {
        #[cfg(unix)]
        let (changed, inode) = {
            use std::os::unix::fs::MetadataExt;
            let secs = u64::try_from(meta.ctime()).unwrap_or_default();
            let nanos = u32::try_from(meta.ctime_nsec()).unwrap_or_default();
            ((secs, nanos), meta.ino())
        };
        #[cfg(not(unix))]
        let (changed, inode) = ((0, 0), 0);
        FileStamp {
            size: meta.len(),
            modified: meta.modified().map(stamp).unwrap_or_default(),
            changed,
            inode,
        }
    }

    /// The stamp of the file at `path`; `None` when it is not a readable file.
    pub fn read(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
        Some(FileStamp::of(&meta))
    }
}

/// A file a document links to or shows, as it was when the document was parsed: an image
/// replaced by one of other dimensions must give the page its new `width` and `height`,
/// though the document's own bytes are the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalFile {
    pub path: PathBuf,
    pub stamp: FileStamp,
}

impl LocalFile {
    /// The files (relative to `site_dir`) as they are now.
    pub fn stamped(site_dir: &Path, paths: Vec<PathBuf>) -> Vec<LocalFile> {
        paths
            .into_iter()
            .map(|path| {
                let stamp = FileStamp::read(&site_dir.join(&path)).unwrap_or_default();
                LocalFile { path, stamp }
            })
            .collect()
    }

    /// Whether every file is still there, as it was.
    pub fn all_unchanged(site_dir: &Path, files: &[LocalFile]) -> bool {
        files
            .iter()
            .all(|f| FileStamp::read(&site_dir.join(&f.path)) == Some(f.stamp))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceEntry {
    pub size: u64,
    pub modified: Stamp,
    /// When the bytes were last read: a time well after `modified` means any later edit
    /// has a later time.
    pub verified: Stamp,
    /// Hex SHA-256 of the bytes (the document's `source_hash`).
    pub hash: String,
    /// Files the document links to; a reused entry needs them all still there, unchanged.
    pub local_files: Vec<LocalFile>,
    /// Its links inside the site and its anchors, for the site-wide link check.
    pub links: PageLinks,
    /// The document without its body: `content` empty, `text` cut to a prefix. `None` only
    /// while a build lends it to the site it assembles.
    pub lite: Option<Document>,
    /// Signature of `lite`, and of `lite` plus the body.
    pub lite_sig: u64,
    /// Signature of `lite` without the fields of [`crate::render::theme::VolatileFields`]:
    /// lists add those the theme reads.
    pub listed_sig: u64,
    pub full_sig: u64,
    /// Warnings of the Mastodon checks that depend on this post alone (config unchanged).
    pub warnings: Vec<FediverseWarning>,
    /// Whether the bytes may mention an account or reply to a post
    /// ([`crate::federation::mentions::may_reference`]): only such sources, and changed
    /// ones, are read again to resolve references before a build.
    pub refs: bool,
}

impl SourceEntry {
    /// The entry of a freshly parsed document.
    pub fn of(
        size: u64,
        modified: Stamp,
        verified: Stamp,
        local_files: Vec<LocalFile>,
        links: PageLinks,
        refs: bool,
        doc: &Document,
    ) -> Self {
        let lite = lite(doc);
        let lite_sig = lite_sig(&lite);
        SourceEntry {
            size,
            modified,
            verified,
            hash: doc.source_hash.clone(),
            local_files,
            links,
            full_sig: Sig::new("full")
                .with(lite_sig)
                .with(&doc.content)
                .with(&doc.text)
                .finish(),
            listed_sig: listed_sig(&lite),
            lite: Some(lite),
            lite_sig,
            warnings: Vec::new(),
            refs,
        }
    }

    /// Takes today's bundle listing (not part of the parse), updating the signatures;
    /// whether it changed.
    pub fn set_assets(&mut self, assets: &[PathBuf]) -> bool {
        let Some(lite) = self.lite.as_mut() else {
            return false;
        };
        if lite.assets != assets {
            lite.assets = assets.to_vec();
            let old = self.lite_sig;
            self.lite_sig = lite_sig(lite);
            self.listed_sig = listed_sig(lite);
            self.full_sig = Sig::new("assets")
                .with(old)
                .with(self.full_sig)
                .with(self.lite_sig)
                .finish();
            return true;
        }
        false
    }
}

/// The document without its body, as the index keeps it.
pub fn lite(doc: &Document) -> Document {
    Document {
        content: String::new(),
        text: text_prefix(&doc.text).to_string(),
        ..doc.clone()
    }
}

/// The start of `text` holding [`TEXT_PREFIX_CHARS`] characters when each run of
/// whitespace counts as one, as descriptions count them: a body opening with a table or
/// code padded with spaces must give its listing the description a cold build gives.
fn text_prefix(text: &str) -> &str {
    let mut counted = 0;
    let mut in_space = false;
    for (at, c) in text.char_indices() {
        let space = c.is_whitespace();
        if !(space && in_space) {
            counted += 1;
        }
        in_space = space;
        if counted > TEXT_PREFIX_CHARS {
            return &text[..at];
        }
    }
    text
}

fn listed_sig(lite: &Document) -> u64 {
    let stable = Document {
        word_count: 0,
        reading_minutes: 0,
        source_hash: String::new(),
        ..lite.clone()
    };
    Sig::new("listed").with(lite_sig(&stable)).finish()
}

fn lite_sig(lite: &Document) -> u64 {
    // Serialising a document cannot fail: it holds no maps with non-string keys.
    hash_bytes(&bincode::serialize(lite).unwrap_or_default())
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutputEntry {
    /// Signature of the output's inputs; `None` for outputs always rendered.
    pub sig: Option<u64>,
    /// Hash of the bytes written; `None` when unknown (an older manifest).
    pub hash: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BuildIndex {
    format: String,
    /// The output folder this index describes, and its device and state ([`folder_id`]):
    /// a folder removed, replaced or emptied since makes the index useless for outputs.
    pub out_dir: PathBuf,
    pub out_id: Option<(u64, u64)>,
    /// Highlighting style the documents were parsed with.
    pub style: String,
    /// Kept in the sources log, not in the main file.
    #[serde(skip)]
    pub sources: HashMap<PathBuf, SourceEntry>,
    /// Sources whose entry this build changed (set by the build before saving): only
    /// those are appended to the log; sources gone since the load are logged as removed.
    #[serde(skip)]
    pub changed_sources: HashSet<PathBuf>,
    /// The sources the log holds, as of the last load or save.
    #[serde(skip)]
    logged: HashSet<PathBuf>,
    /// Where each source's latest record starts in the log (kept in the quick part).
    #[serde(skip)]
    log_at: HashMap<PathBuf, u64>,
    /// Where each source of the site sits and its signatures, as the last plan used them
    /// (set by the build before saving; kept in the quick part).
    #[serde(skip)]
    pub placed: HashMap<PathBuf, Placed>,
    /// The log this index's sources were read from; `None`: write a fresh one.
    log: Option<LogRef>,
    pub outputs: HashMap<String, OutputEntry>,
    /// Signature of every input besides the sources' bytes (config, theme, options, key,
    /// asset times), and what the last build reported: a build that finds the same inputs
    /// and no source changed has nothing to do.
    pub inputs: u64,
    pub last: Option<LastBuild>,
    /// Signature of the config and options the stored warnings were computed with.
    pub warnings_for: u64,
    /// What a one-post edit needs to render that post's outputs without the whole site
    /// (see `build::patch`): what every page sees and its signature, and the outbox pages
    /// with the posts they hold.
    pub globals: String,
    pub html_global: u64,
    pub outbox_pages: Vec<OutboxPagePlan>,
}

/// Where a source sits in the site the last plan was made from, and the signatures that
/// plan used for it: what lists show of it (`listed`) and all of it (`full`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Placed {
    pub post: bool,
    /// Index among the site's posts (newest first) or pages.
    pub position: u32,
    pub listed: u64,
    pub full: u64,
}

/// One outbox page of the last plan: whose, which, and the positions of its posts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxPagePlan {
    pub path: String,
    pub actor: String,
    pub number: usize,
    pub pages: usize,
    pub posts: Vec<u32>,
}

/// Which sources log goes with a main file, and how much of it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct LogRef {
    nonce: u64,
    /// Bytes of the log that belong to this index (header included).
    len: u64,
    /// Records in those bytes, live or replaced: compaction is due when they are more than
    /// twice the live ones.
    records: u64,
}

/// Bytes before the first record of a sources log: its nonce.
const LOG_HEADER: u64 = 8;

/// What a build with nothing to do reports again.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LastBuild {
    pub html_pages: usize,
    pub posts: usize,
    pub pages: usize,
    pub tags: usize,
    pub files: usize,
    /// Warnings that hold as long as nothing changes.
    pub warnings: Vec<FediverseWarning>,
}

impl BuildIndex {
    pub fn new(out_dir: &Path, style: &str) -> BuildIndex {
        BuildIndex {
            format: FORMAT.to_string(),
            out_dir: folder_key(out_dir),
            style: style.to_string(),
            ..BuildIndex::default()
        }
    }

    /// The index of the last build into `out_dir`; an empty one when there is none, it
    /// cannot be read, or it describes another folder.
    pub fn load(path: &Path, out_dir: &Path, style: &str) -> BuildIndex {
        // The quick part names the log too, so the log is read and parsed while the main
        // part is parsed.
        let loaded = read_file(path, true).and_then(|file| {
            let head = bincode::deserialize::<QuickHead>(&file.quick).ok()?;
            let base_log = head.log.filter(|_| head.format == FORMAT);
            let log = file.deltas.last().map(|d| d.log).or(base_log);
            let (main, sources) = rayon::join(
                || bincode::deserialize::<BuildIndex>(&file.main).ok(),
                || log.and_then(|log| read_log(&log_path(path), log)),
            );
            let mut main = main.filter(|i| i.format == FORMAT && i.log == base_log)?;
            main.log = log;
            for delta in file.deltas {
                main.out_id = delta.out_id;
                main.outputs.extend(delta.outputs);
            }
            Some((main, sources))
        });
        let mut index = match loaded {
            Some((mut index, Some((sources, log_at)))) => {
                index.logged = sources.keys().cloned().collect();
                index.sources = sources;
                index.log_at = log_at;
                index
            }
            Some((mut index, None)) => {
                index.log = None;
                index
            }
            None => BuildIndex::new(out_dir, style),
        };
        if !index.describes(out_dir) {
            index.outputs.clear();
            index.out_dir = folder_key(out_dir);
        } else if index.out_id != folder_id(out_dir) || interrupted(path) {
            index.untrust_outputs();
        }
        if index.style != style {
            index.sources.clear();
            index.style = style.to_string();
        }
        index
    }

    /// Takes no output for written as recorded (the folder was emptied or changed by hand,
    /// or a build stopped while writing), but keeps their paths, so that those no longer
    /// built are still removed.
    pub fn untrust_outputs(&mut self) {
        for output in self.outputs.values_mut() {
            *output = OutputEntry {
                sig: None,
                hash: None,
            };
        }
    }

    /// Writes the index: the changed sources appended to the log (or the whole log
    /// rewritten when it is missing or mostly stale), then the main file through a
    /// temporary file, so a crash leaves the old index whole.
    pub fn save(&mut self, path: &Path) -> std::io::Result<()> {
        self.out_id = folder_id(&self.out_dir);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let (log, offsets) = self.save_log(&log_path(path))?;
        if offsets.len() == self.sources.len() {
            self.log_at.clear();
        }
        self.log_at.extend(offsets);
        self.log = Some(log);
        self.logged = self.sources.keys().cloned().collect();
        self.changed_sources.clear();
        write_whole(path, &self.quick(), self)?;
        end_writing(path);
        Ok(())
    }

    /// Appends the changed and removed sources to the log, or writes it afresh; with where
    /// the records written start.
    fn save_log(&self, path: &Path) -> std::io::Result<(LogRef, Vec<(PathBuf, u64)>)> {
        let removed: Vec<&PathBuf> = self
            .logged
            .iter()
            .filter(|p| !self.sources.contains_key(*p))
            .collect();
        let changed: Vec<(&PathBuf, &SourceEntry)> = self
            .sources
            .iter()
            .filter(|(p, _)| self.changed_sources.contains(*p) || !self.logged.contains(*p))
            .collect();
        if let Some(log) = self.log {
            let records = log.records + (removed.len() + changed.len()) as u64;
            if records <= 2 * self.sources.len() as u64 + 16 {
                let mut bytes = Vec::new();
                for path in removed {
                    push_record(&mut bytes, path, None)?;
                }
                let mut offsets = Vec::with_capacity(changed.len());
                for (path, entry) in changed {
                    offsets.push((path.clone(), log.len + bytes.len() as u64));
                    push_record(&mut bytes, path, Some(entry))?;
                }
                if let Some(len) = append_log(path, log, &bytes)? {
                    let log = LogRef {
                        len,
                        records,
                        ..log
                    };
                    return Ok((log, offsets));
                }
            }
        }
        // A fresh log: a new nonce, so a main file naming the old one cannot take it.
        let nonce = fresh_id("log", path);
        // Records are serialized on every core (a cold build's 10k sources are 24 MB of
        // log, 80 ms on one thread), then written in turn.
        let records: Vec<(&PathBuf, Vec<u8>)> = self
            .sources
            .par_iter()
            .map(|(path, entry)| {
                let mut bytes = Vec::with_capacity(4096);
                push_record(&mut bytes, path, Some(entry)).map(|()| (path, bytes))
            })
            .collect::<std::io::Result<_>>()?;
        let tmp = path.with_extension("sources-tmp");
        let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        file.write_all(&nonce.to_le_bytes())?;
        let mut len = LOG_HEADER;
        let mut offsets = Vec::with_capacity(records.len());
        for (source, bytes) in &records {
            offsets.push(((*source).clone(), len));
            file.write_all(bytes)?;
            len += bytes.len() as u64;
        }
        file.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(&tmp, path)?;
        let log = LogRef {
            nonce,
            len,
            records: self.sources.len() as u64,
        };
        Ok((log, offsets))
    }

    /// Sources of posts waiting for their date (`now`), in order: what [`Quick::held`]
    /// finds in the quick part this index saves.
    pub fn held(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<&PathBuf> {
        let mut held: Vec<&PathBuf> = self
            .sources
            .iter()
            .filter(|(_, e)| e.held_at(now))
            .map(|(path, _)| path)
            .collect();
        held.sort();
        held
    }

    /// What a build needs to tell that nothing changed.
    pub fn quick(&self) -> Quick {
        Quick {
            format: self.format.clone(),
            out_dir: self.out_dir.clone(),
            out_id: self.out_id,
            style: self.style.clone(),
            inputs: self.inputs,
            has_outputs: !self.outputs.is_empty(),
            last: self.last.clone(),
            log: self.log,
            tail: Tail::default(),
            sources: self
                .sources
                .iter()
                .map(|(path, e)| {
                    let stamp = SourceStamp::of(
                        e,
                        self.log_at.get(path).copied(),
                        self.placed.get(path).copied(),
                    );
                    (path.clone(), stamp)
                })
                .collect(),
        }
    }
}

/// The first part of the index file: enough to find that nothing changed.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Quick {
    format: String,
    /// The sources log of this index (as in the main part); second, for [`QuickHead`].
    log: Option<LogRef>,
    pub out_dir: PathBuf,
    pub out_id: Option<(u64, u64)>,
    pub style: String,
    pub inputs: u64,
    pub has_outputs: bool,
    pub last: Option<LastBuild>,
    pub sources: HashMap<PathBuf, SourceStamp>,
    /// The file this was read from, for appending a delta to it.
    #[serde(skip)]
    tail: Tail,
}

/// What a load learnt of the file's end: where deltas may be appended.
#[derive(Debug, Default, Clone)]
struct Tail {
    /// The file's base id (0: not read from a file).
    base: u64,
    /// Bytes of the whole file (header and main part included) and of its deltas; the
    /// first is where the next delta goes.
    end: u64,
    deltas: u64,
    /// The deltas' outputs, in order, for [`Quick::load_main`].
    outputs: Vec<(String, OutputEntry)>,
}

/// What a one-post edit changed, appended to the index file instead of rewriting it.
#[derive(Debug, Serialize, Deserialize)]
struct Delta {
    /// The sources log after the edit's records were appended.
    log: LogRef,
    /// The output folder's [`folder_id`] after the edit's outputs were written.
    out_id: Option<(u64, u64)>,
    sources: Vec<(PathBuf, SourceStamp)>,
    outputs: Vec<(String, OutputEntry)>,
}

/// The first fields of [`Quick`], read without the rest.
#[derive(Deserialize)]
struct QuickHead {
    format: String,
    log: Option<LogRef>,
}

impl Quick {
    /// The quick part of the index file at `path`, if it is one of this version for
    /// `out_dir` and `style`.
    pub fn load(path: &Path, out_dir: &Path, style: &str) -> Option<Quick> {
        let file = read_file(path, false)?;
        let mut quick = bincode::deserialize::<Quick>(&file.quick)
            .ok()
            .filter(|q| {
                q.format == FORMAT && q.out_dir == folder_key(out_dir) && q.style == style
            })?;
        let mut outputs = Vec::new();
        for delta in file.deltas {
            quick.log = Some(delta.log);
            quick.out_id = delta.out_id;
            quick.sources.extend(delta.sources);
            outputs.extend(delta.outputs);
        }
        quick.tail = Tail {
            base: file.base,
            end: file.end,
            deltas: file.end - file.deltas_at,
            outputs,
        };
        if interrupted(path) {
            // No output is known: neither "nothing changed" nor a patch can stand.
            quick.out_id = None;
        }
        Some(quick)
    }

    /// Whether the sources log may take `records` more records before it is due for
    /// compaction (which only a whole build does).
    pub fn log_has_room(&self, records: usize) -> bool {
        self.log
            .is_some_and(|log| log.records + records as u64 <= 2 * self.sources.len() as u64 + 16)
    }

    /// Saves the index of a build that changed only `patched` sources (their new entries
    /// and places) and `main`'s outputs: their records appended to the log, then the main
    /// file. `Ok(false)` when the log is not the one this quick part names.
    pub fn save_patch(
        mut self,
        path: &Path,
        main: &mut BuildIndex,
        patched: &[(PathBuf, SourceEntry, Option<Placed>)],
        outputs: Vec<(String, OutputEntry)>,
    ) -> std::io::Result<bool> {
        let Some(log) = self.log.filter(|log| main.log == Some(*log)) else {
            return Ok(false);
        };
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(patched.len());
        for (source, entry, _) in patched {
            offsets.push(log.len + bytes.len() as u64);
            push_record(&mut bytes, source, Some(entry))?;
        }
        let Some(len) = append_log(&log_path(path), log, &bytes)? else {
            return Ok(false);
        };
        let log = LogRef {
            len,
            records: log.records + patched.len() as u64,
            ..log
        };
        let stamps: Vec<(PathBuf, SourceStamp)> = patched
            .iter()
            .zip(offsets)
            .map(|((source, entry, placed), at)| {
                (source.clone(), SourceStamp::of(entry, Some(at), *placed))
            })
            .collect();
        self.sources.extend(stamps.iter().cloned());
        self.log = Some(log);
        main.log = Some(log);
        self.out_id = folder_id(&main.out_dir);
        main.out_id = self.out_id;
        // A delta while the deltas stay small beside the file; the whole file otherwise.
        let delta = Delta {
            log,
            out_id: self.out_id,
            sources: stamps,
            outputs,
        };
        // `self` is spent here: a second append through it would cut this one off.
        let record = delta_record(self.tail.base, &delta)?;
        let small = (self.tail.deltas + record.len() as u64) * 8 <= self.tail.end;
        let appended = self.tail.base != 0
            && small
            && append_at(path, self.tail.base, self.tail.end, &record)?;
        if !appended {
            main.outputs.extend(delta.outputs);
            write_whole(path, &self, main)?;
        }
        end_writing(path);
        Ok(true)
    }

    /// The main part of the index file at `path` (outputs and plan), without the sources'
    /// entries; `None` unless it goes with this quick part.
    pub fn load_main(&self, path: &Path) -> Option<BuildIndex> {
        let file = read_file(path, true).filter(|f| f.base == self.tail.base)?;
        let mut main = bincode::deserialize::<BuildIndex>(&file.main)
            .ok()
            .filter(|main| main.format == FORMAT && main.log.is_some())?;
        main.log = self.log;
        main.out_id = self.out_id;
        main.outputs.extend(self.tail.outputs.iter().cloned());
        Some(main)
    }

    /// Sources of posts waiting for their date (`now`), in order.
    pub fn held(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<&PathBuf> {
        let mut held: Vec<&PathBuf> = self
            .sources
            .iter()
            .filter(|(_, s)| s.held_at(now))
            .map(|(path, _)| path)
            .collect();
        held.sort();
        held
    }
}

/// What the quick part knows of one source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceStamp {
    pub size: u64,
    pub modified: Stamp,
    pub verified: Stamp,
    pub assets: Vec<PathBuf>,
    pub local_files: Vec<LocalFile>,
    /// See [`SourceEntry::refs`].
    pub refs: bool,
    /// The date of a post (a page is never held back), as seconds and nanoseconds since
    /// the epoch: a number is read back many times faster than a date's text.
    pub post_date: Option<(i64, u32)>,
    /// Where its entry's latest record starts in the sources log.
    pub log_at: Option<u64>,
    /// Where it sits in the site, if it is in it.
    pub placed: Option<Placed>,
}

/// The date of a post (a page is never held back), as [`SourceStamp::post_date`] keeps it.
fn post_date(lite: Option<&Document>) -> Option<(i64, u32)> {
    lite.filter(|l| l.kind == DocumentKind::Post)
        .and_then(|l| l.date)
        .map(|d| stamp_of(d.to_utc()))
}

/// Whether a post of this date waits for it at `now`.
fn is_held(post_date: Option<(i64, u32)>, now: chrono::DateTime<chrono::Utc>) -> bool {
    post_date.is_some_and(|d| d > stamp_of(now))
}

/// A time as seconds and nanoseconds since the epoch, which order as the times do.
fn stamp_of(time: chrono::DateTime<chrono::Utc>) -> (i64, u32) {
    (time.timestamp(), time.timestamp_subsec_nanos())
}

impl SourceStamp {
    pub fn of(e: &SourceEntry, log_at: Option<u64>, placed: Option<Placed>) -> SourceStamp {
        let lite = e.lite.as_ref();
        SourceStamp {
            size: e.size,
            modified: e.modified,
            verified: e.verified,
            assets: lite.map(|l| l.assets.clone()).unwrap_or_default(),
            local_files: e.local_files.clone(),
            refs: e.refs,
            post_date: post_date(lite),
            log_at,
            placed,
        }
    }

    /// Whether it is a post held back until its date at `now`.
    fn held_at(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        is_held(self.post_date, now)
    }

    /// See [`SourceEntry::trusted`].
    pub fn trusted(&self, size: u64, modified: Stamp) -> bool {
        trusted(self.size, self.modified, self.verified, size, modified)
    }
}

/// The sources log next to the main index file.
fn log_path(index: &Path) -> PathBuf {
    index.with_extension("sources")
}

/// One record: its length, then the source and its entry (`None`: removed).
fn push_record(
    bytes: &mut Vec<u8>,
    path: &Path,
    entry: Option<&SourceEntry>,
) -> std::io::Result<()> {
    let at = bytes.len();
    bytes.extend_from_slice(&[0; 4]);
    bincode::serialize_into(&mut *bytes, &(path, entry)).map_err(std::io::Error::other)?;
    let len = u32::try_from(bytes.len() - at - 4).map_err(std::io::Error::other)?;
    bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// The entries of the log at `path` as `log` describes it; `None` when it is another log
/// or shorter than that.
#[allow(clippy::type_complexity)]
fn read_log(
    path: &Path,
    log: LogRef,
) -> Option<(HashMap<PathBuf, SourceEntry>, HashMap<PathBuf, u64>)> {
    let mut file = std::fs::File::open(path).ok()?;
    // Lengths and counts come from the index file: checked before they size anything.
    if file.metadata().ok()?.len() < log.len {
        return None;
    }
    let len = usize::try_from(log.len).ok()?;
    let mut bytes = vec![0; len];
    file.read_exact(&mut bytes).ok()?;
    let (nonce, mut rest) = bytes.split_at_checked(LOG_HEADER as usize)?;
    if nonce != log.nonce.to_le_bytes() {
        return None;
    }
    // Every record takes at least its 4-byte length.
    let records_hint = usize::try_from(log.records).unwrap_or(0).min(len / 4);
    let mut records = Vec::with_capacity(records_hint);
    let mut at = LOG_HEADER;
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let (record, tail) = tail.split_at_checked(len)?;
        records.push((at, record));
        at += 4 + len as u64;
        rest = tail;
    }
    // Parsing the records is most of the load: in parallel, then applied in order.
    let parsed: Vec<(u64, (PathBuf, Option<SourceEntry>))> = records
        .par_iter()
        .map(|(at, record)| Some((*at, bincode::deserialize(record).ok()?)))
        .collect::<Option<_>>()?;
    let mut sources = HashMap::with_capacity(records_hint);
    let mut offsets = HashMap::with_capacity(records_hint);
    for (at, (path, entry)) in parsed {
        match entry {
            Some(entry) => {
                offsets.insert(path.clone(), at);
                sources.insert(path, entry);
            }
            None => {
                offsets.remove(&path);
                sources.remove(&path);
            }
        };
    }
    Some((sources, offsets))
}

/// The entries of the sources log `quick` names that start at `offsets`, each checked to
/// be the record of the source it was asked for; `None` if any is not.
pub fn read_entries(
    index_path: &Path,
    quick: &Quick,
    wanted: &[(&Path, u64)],
) -> Option<HashMap<PathBuf, SourceEntry>> {
    let log = quick.log?;
    let mut file = std::fs::File::open(log_path(index_path)).ok()?;
    let mut read_at = |buf: &mut [u8], at: u64| -> Option<()> {
        file.seek(std::io::SeekFrom::Start(at)).ok()?;
        file.read_exact(buf).ok()
    };
    let mut nonce = [0u8; LOG_HEADER as usize];
    read_at(&mut nonce, 0)?;
    if nonce != log.nonce.to_le_bytes() {
        return None;
    }
    let mut entries = HashMap::with_capacity(wanted.len());
    for &(path, at) in wanted {
        let mut len = [0u8; 4];
        read_at(&mut len, at)?;
        let len = u32::from_le_bytes(len) as u64;
        if at.checked_add(4)?.checked_add(len)? > log.len {
            return None;
        }
        let mut record = vec![0u8; usize::try_from(len).ok()?];
        read_at(&mut record, at + 4)?;
        let (source, entry): (PathBuf, Option<SourceEntry>) = bincode::deserialize(&record).ok()?;
        if source != path {
            return None;
        }
        entries.insert(source, entry?);
    }
    Some(entries)
}

/// Appends `bytes` to the log at `path` after the part `log` describes (cutting off what a
/// crashed build left after it); the new length, or `None` when the file is another log.
fn append_log(path: &Path, log: LogRef, bytes: &[u8]) -> std::io::Result<Option<u64>> {
    Ok(append_at(path, log.nonce, log.len, bytes)?.then_some(log.len + bytes.len() as u64))
}

/// Appends `bytes` at `end` of the file at `path` whose first 8 bytes are `id`, cutting off
/// what a crashed build left after `end`; `false` when the file is missing, another one
/// (another id), or shorter than `end`.
fn append_at(path: &Path, id: u64, end: u64, bytes: &[u8]) -> std::io::Result<bool> {
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut head = [0u8; 8];
    if file.metadata()?.len() < end
        || file.read_exact(&mut head).is_err()
        || head != id.to_le_bytes()
    {
        return Ok(false);
    }
    file.set_len(end)?;
    file.seek(std::io::SeekFrom::Start(end))?;
    file.write_all(bytes)?;
    Ok(true)
}

/// An index file read: `[base id][quick length][quick][main length][main][deltas…]`.
struct IndexFile {
    base: u64,
    quick: Vec<u8>,
    /// Empty unless asked for.
    main: Vec<u8>,
    /// The deltas whose checksum holds, in order, up to the first that does not.
    deltas: Vec<Delta>,
    /// Where the deltas start, and where the last good one ends.
    deltas_at: u64,
    end: u64,
}

/// Reads the index file at `path`, its main part only when asked for (a no-change build
/// needs the quick part and the deltas).
fn read_file(path: &Path, with_main: bool) -> Option<IndexFile> {
    let mut file = std::fs::File::open(path).ok()?;
    let total = file.metadata().ok()?.len();
    let mut word = [0u8; 8];
    let mut read_u64 = |file: &mut std::fs::File| -> Option<u64> {
        file.read_exact(&mut word).ok()?;
        Some(u64::from_le_bytes(word))
    };
    let base = read_u64(&mut file)?;
    let quick_len = read_u64(&mut file)?;
    let mut at = 16u64.checked_add(quick_len)?;
    if at.checked_add(8)? > total {
        return None;
    }
    let mut quick = vec![0; usize::try_from(quick_len).ok()?];
    file.read_exact(&mut quick).ok()?;
    let main_len = read_u64(&mut file)?;
    at = at.checked_add(8)?.checked_add(main_len)?;
    if at > total {
        return None;
    }
    let mut main = Vec::new();
    if with_main {
        main = vec![0; usize::try_from(main_len).ok()?];
        file.read_exact(&mut main).ok()?;
    } else {
        file.seek(std::io::SeekFrom::Start(at)).ok()?;
    }
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).ok()?;
    let deltas_at = at;
    let mut deltas = Vec::new();
    let mut tail = rest.as_slice();
    // A record: its payload's length (4 bytes), its checksum (8), the payload.
    while let Some((head, after)) = tail.split_at_checked(12) {
        let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
        let sum = u64::from_le_bytes(head[4..].try_into().ok()?);
        let Some((payload, after)) = after.split_at_checked(len) else {
            break;
        };
        if delta_sum(base, payload) != sum {
            break;
        }
        let Ok(delta) = bincode::deserialize::<Delta>(payload) else {
            break;
        };
        deltas.push(delta);
        at += 12 + len as u64;
        tail = after;
    }
    Some(IndexFile {
        base,
        quick,
        main,
        deltas,
        deltas_at,
        end: at,
    })
}

/// An id for a file written afresh at `path`, which no earlier file there had (never 0,
/// which stands for none).
fn fresh_id(kind: &str, path: &Path) -> u64 {
    Sig::new(kind)
        .with(SystemTime::now())
        .with(std::process::id())
        .with(path)
        .finish()
        .max(1)
}

fn delta_sum(base: u64, payload: &[u8]) -> u64 {
    Sig::new("delta").with(base).bytes(payload).finish()
}

/// A delta as the file holds it.
fn delta_record(base: u64, delta: &Delta) -> std::io::Result<Vec<u8>> {
    let payload = bincode::serialize(delta).map_err(std::io::Error::other)?;
    let len = u32::try_from(payload.len()).map_err(std::io::Error::other)?;
    let mut record = Vec::with_capacity(12 + payload.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&delta_sum(base, &payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// Writes the whole index file (a new base id, no deltas) through a temporary file, so a
/// crash leaves the old one whole.
fn write_whole(path: &Path, quick: &Quick, main: &BuildIndex) -> std::io::Result<()> {
    let base = fresh_id("base", path);
    let quick = bincode::serialize(quick).map_err(std::io::Error::other)?;
    let mut bytes = Vec::with_capacity(24 + quick.len() + 64 * main.outputs.len());
    bytes.extend_from_slice(&base.to_le_bytes());
    bytes.extend_from_slice(&(quick.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&quick);
    let main_at = bytes.len();
    bytes.extend_from_slice(&[0; 8]);
    bincode::serialize_into(&mut bytes, main).map_err(std::io::Error::other)?;
    let main_len = (bytes.len() - main_at - 8) as u64;
    bytes[main_at..main_at + 8].copy_from_slice(&main_len.to_le_bytes());
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

impl SourceEntry {
    /// Whether it is a post held back until its date at `now`.
    pub fn held_at(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        is_held(post_date(self.lite.as_ref()), now)
    }

    /// Whether a source with this size and time can be taken as unchanged without reading
    /// it: same size and time, and its bytes read well after that time.
    pub fn trusted(&self, size: u64, modified: Stamp) -> bool {
        trusted(self.size, self.modified, self.verified, size, modified)
    }
}

fn trusted(known_size: u64, known: Stamp, verified: Stamp, size: u64, modified: Stamp) -> bool {
    let doubt = if modified.1 == 0 {
        DOUBT_COARSE
    } else {
        DOUBT_FINE
    };
    let at = |s: Stamp| Duration::new(s.0, s.1);
    known_size == size && known == modified && at(modified) + doubt < at(verified)
}

/// Device and state ([`folder_state`]) of the output folder, to notice it was removed,
/// made again or emptied since the index was saved.
#[cfg(unix)]
pub fn folder_id(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    Some((
        meta.dev(),
        folder_state(dir, meta.ino(), meta.modified().ok()),
    ))
}

/// A hash of a folder's inode and of its own and its subfolders' modification times: a
/// file or folder added, removed or renamed in it or in one of its subfolders changes it
/// (`rm -rf public/*`, `rm -rf public/posts/*`, or the folder made anew with the same
/// inode), while a build costs a listing of the folder and a stat per subfolder (none past
/// [`MAX_STAMPED_SUBFOLDERS`], as when every post has a folder at the top). Files removed
/// deeper down go unnoticed.
fn folder_state(dir: &Path, inode: u64, modified: Option<SystemTime>) -> u64 {
    let time = |t: Option<SystemTime>| {
        t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos())
    };
    let folders: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .collect();
    let mut subfolders: Vec<(std::ffi::OsString, u128)> = if folders.len() <= MAX_STAMPED_SUBFOLDERS
    {
        folders
            .iter()
            .map(|entry| {
                let modified = entry.metadata().ok().and_then(|m| m.modified().ok());
                (entry.file_name(), time(modified))
            })
            .collect()
    } else {
        Vec::new()
    };
    subfolders.sort();
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    hasher.update(&inode.to_le_bytes());
    hasher.update(&time(modified).to_le_bytes());
    for (name, modified) in &subfolders {
        hasher.update(name.as_encoded_bytes());
        hasher.update(&[0]);
        hasher.update(&modified.to_le_bytes());
    }
    hasher.digest()
}

#[cfg(not(unix))]
pub fn folder_id(dir: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(dir).ok()?;
    Some((0, folder_state(dir, 0, meta.modified().ok())))
}

/// How an index names its output folder: absolute, so that `--site .` and the same folder
/// spelled in full (or from another folder) find the same index.
fn folder_key(out_dir: &Path) -> PathBuf {
    std::path::absolute(out_dir).unwrap_or_else(|_| out_dir.to_path_buf())
}

impl BuildIndex {
    /// Whether this index is of builds into `out_dir`, however the path is spelled.
    pub fn describes(&self, out_dir: &Path) -> bool {
        self.out_dir == folder_key(out_dir)
    }
}

/// Where the index of a build of `site_dir` into `out_dir` lives: `.relais/build-index`
/// for the default `public/`, a name derived from the folder otherwise (so `serve` and
/// builds into other folders keep their own).
/// Where a build notes that it is writing outputs the index at `index_path` does not know
/// yet: a build killed before its index is saved leaves it, and the next build then takes
/// no output for known (one it wrote may be torn, or the source put back as it was).
fn writing_marker(index_path: &Path) -> PathBuf {
    index_path.with_extension("writing")
}

/// Notes, before the first output is written, that the index on disk is behind them. A
/// site folder where nothing can be written (mounted read-only, not ours, `.relais` not a
/// folder) is only warned about, as its index cannot be saved either; any other failure
/// (a full disk) stops the build, which must not write what a later build would trust.
pub fn begin_writing(index_path: &Path) -> std::io::Result<()> {
    use std::io::ErrorKind;
    let marker = writing_marker(index_path);
    let marked = index_path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&marker, b""));
    match marked {
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::ReadOnlyFilesystem
                    | ErrorKind::PermissionDenied
                    | ErrorKind::AlreadyExists
                    | ErrorKind::NotADirectory
            ) =>
        {
            eprintln!("warning: cannot write {}: {err}", marker.display());
            Ok(())
        }
        other => other,
    }
}

/// The index on disk describes the outputs again.
pub fn end_writing(index_path: &Path) {
    let _ = std::fs::remove_file(writing_marker(index_path));
}

/// Whether a build stopped between writing outputs and saving the index.
fn interrupted(index_path: &Path) -> bool {
    writing_marker(index_path).exists()
}

pub fn index_path(site_dir: &Path, out_dir: &Path) -> PathBuf {
    if out_dir == site_dir.join("public") {
        return site_dir.join(INDEX_FILE);
    }
    let sig = Sig::new("out").with(folder_key(out_dir)).finish();
    site_dir.join(format!("{INDEX_FILE}-{sig:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file cut short or with lengths past its end, whatever they add up to, reads as no
    /// index: never a panic, never an allocation of the length it claims.
    #[test]
    fn a_corrupt_index_file_is_no_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("build-index");
        let out = dir.path().join("public");
        let mut index = BuildIndex::new(&out, "style");
        index.save(&path).unwrap();
        let whole = std::fs::read(&path).unwrap();
        assert!(Quick::load(&path, &out, "style").is_some());

        let lengths = [
            u64::MAX,
            u64::MAX - 8,
            u64::MAX - 16,
            u64::MAX - 20,
            1 << 40,
        ];
        for quick_len in lengths {
            let mut bytes = whole.clone();
            bytes[8..16].copy_from_slice(&quick_len.to_le_bytes());
            std::fs::write(&path, &bytes).unwrap();
            assert!(Quick::load(&path, &out, "style").is_none(), "{quick_len}");
        }
        let quick_len = u64::from_le_bytes(whole[8..16].try_into().unwrap()) as usize;
        for main_len in lengths {
            let mut bytes = whole.clone();
            bytes[16 + quick_len..24 + quick_len].copy_from_slice(&main_len.to_le_bytes());
            std::fs::write(&path, &bytes).unwrap();
            assert!(read_file(&path, true).is_none(), "{main_len}");
        }
        for cut in [0, 7, 12, 20, whole.len() - 1] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert!(read_file(&path, true).is_none(), "cut at {cut}");
        }
        let loaded = BuildIndex::load(&path, &out, "style");
        assert!(loaded.outputs.is_empty() && loaded.sources.is_empty());
    }

    #[test]
    fn a_sources_log_named_with_impossible_sizes_is_no_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("build-index.sources");
        let nonce = 7_u64;
        std::fs::write(&path, nonce.to_le_bytes()).unwrap();
        let log = |len, records| LogRef {
            nonce,
            len,
            records,
        };
        assert!(read_log(&path, log(LOG_HEADER, 0)).is_some());
        // Counts past the file's bytes size nothing.
        assert!(read_log(&path, log(LOG_HEADER, u64::MAX)).is_some());
        for len in [LOG_HEADER + 1, 1 << 40, u64::MAX] {
            assert!(read_log(&path, log(len, 1)).is_none(), "{len}");
        }
    }
}
