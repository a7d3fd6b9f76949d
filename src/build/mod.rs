//! The build pipeline, from `config.toml` to a synced output folder, incremental.
//!
//! Every output is planned with a signature of what it is made from (its post's body
//! signature, its neighbours' listing signatures, the site-wide values every page sees, the
//! theme, the config...). Outputs whose signature is the one in the [`index`] are neither
//! rendered nor written; the others are rendered in parallel and written straight to disk
//! (one open per file, directories created once) unless their bytes hash to what the index
//! says is there. Sources are re-parsed only when their size, time or hash changed; bodies
//! of unchanged posts are parsed again only when a changed output shows them.

pub mod index;
mod links;
mod patch;
mod sigs;
mod spinner;
mod timings;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rayon::prelude::*;

use crate::config::SiteConfig;
use crate::content::{self, ContentError, ContentErrors, Document, Highlighter, SourceFile};
use crate::federation::{
    self,
    check::{FederationState, FediverseWarning},
    documents::{PlannedDocument, SharedObject},
    keys::{self, SiteKeySource},
};
use crate::interactions::Interactions;
use crate::render::{self, Job, OutputFile, OutputSource, StaticSource, Theme, Views, WriteReport};
use crate::site::{feeds, Asset, LoadOptions, Site};
use index::{hash_bytes, stamp, BuildIndex, OutputEntry, Sig, SourceEntry};

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub site_dir: PathBuf,
    pub out_dir: PathBuf,
    pub drafts: bool,
    /// Include posts dated in the future (held back until their date otherwise).
    pub future: bool,
    /// Replaces `base_url` of config.toml (`relais serve` points links at itself).
    pub base_url: Option<String>,
    /// Show a spinner on stderr when the build takes a while.
    pub progress: bool,
    /// Render and check everything but write nothing (`relais check`).
    pub dry_run: bool,
    /// Read replies, likes and boosts from the inbox service's public endpoint instead of
    /// the store file (for a build host that does not have the store).
    pub remote_interactions: bool,
}

impl BuildOptions {
    /// A plain `relais build` of `site_dir` into `out_dir`: no drafts, no future posts, the
    /// config's `base_url`, no spinner, written, interactions from the store.
    pub fn new(site_dir: &Path, out_dir: &Path) -> BuildOptions {
        BuildOptions {
            site_dir: site_dir.to_path_buf(),
            out_dir: out_dir.to_path_buf(),
            drafts: false,
            future: false,
            base_url: None,
            progress: false,
            dry_run: false,
            remote_interactions: false,
        }
    }

    /// What the site leaves out as of `now`: drafts unless asked for, posts dated later
    /// unless `future`.
    pub fn load_options(&self, now: chrono::DateTime<chrono::Utc>) -> LoadOptions {
        LoadOptions {
            drafts: self.drafts,
            hold_after: (!self.future).then_some(now),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BuildReport {
    /// HTML pages of the site, posts and pages among them, tags.
    pub html_pages: usize,
    pub posts: usize,
    pub pages: usize,
    pub tags: usize,
    /// Documents parsed this time, and reused from the index.
    pub parsed: usize,
    pub reused: usize,
    /// Files of the site, and how many were rendered this time.
    pub files: usize,
    pub rendered: usize,
    pub write: WriteReport,
    pub elapsed: Duration,
    pub out_dir: PathBuf,
    /// What will look wrong on Mastodon (`relais check` fails on the blocking ones).
    pub warnings: Vec<FediverseWarning>,
    /// Warnings that `[[check.accept]]` in config.toml accepts.
    pub accepted: Vec<FediverseWarning>,
    pub key_source: Option<SiteKeySource>,
    /// References (replies, mentions) that could not be resolved, one line each.
    pub reference_warnings: Vec<String>,
}

impl BuildReport {
    pub fn summary(&self) -> String {
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "Built {}, {}, {} in {} ms → {} ({} written, {} removed)",
            plural(self.html_pages, "page", "pages"),
            plural(self.posts, "post", "posts"),
            plural(self.tags, "tag", "tags"),
            self.elapsed.as_millis(),
            self.out_dir.display(),
            plural(self.write.written, "file", "files"),
            self.write.removed,
        )
    }
}

/// What survives between builds of one process (`relais serve`): the index and the
/// highlighter's loaded syntaxes. `on_disk` state also reads and writes the index file.
#[derive(Debug, Default)]
pub struct BuildState {
    index: Option<BuildIndex>,
    persist: bool,
    highlighter: Option<Highlighter>,
    /// Resolve the posts' replies and mentions over the network before building
    /// (`relais build`), reading only the sources that changed or referenced something.
    resolve: bool,
    /// A watching process (`relais serve`): the last listing and stats are kept, the index
    /// is saved by [`BuildState::save_pending`] after the result is announced.
    watching: bool,
    /// The content listing and the sources' stats of the last build (when watching).
    scan: Option<Scan>,
    /// Sources that the watcher saw modified since the last build, when that is all that
    /// happened; `None`: list and stat everything.
    modified: Option<HashSet<PathBuf>>,
    /// The index file an index waits to be saved to (when watching).
    pending_save: Option<PathBuf>,
    /// The quick part of `index`, when it was made or patched along with it.
    quick: Option<index::Quick>,
    /// The last build's theme, whose compiled templates a build with the same templates
    /// takes over (when watching).
    theme: Option<Theme>,
}

/// What a build found in the content folder, kept for the next build of a watching process.
#[derive(Debug)]
struct Scan {
    /// Shared with the build that uses it: ten thousand sources are not copied per edit.
    discovered: std::sync::Arc<content::Discovered>,
    stats: Vec<Option<(u64, index::Stamp)>>,
}

impl BuildState {
    /// State that starts empty and lives only in this process.
    pub fn in_memory() -> BuildState {
        BuildState::default()
    }

    /// State whose index also lives on disk (see [`index::index_path`]).
    pub fn on_disk(_site_dir: &Path) -> BuildState {
        BuildState {
            persist: true,
            ..BuildState::default()
        }
    }

    /// Also resolves new replies and mentions before each build (see
    /// [`federation::mentions::refresh_sources`]).
    pub fn resolving_references(self) -> BuildState {
        BuildState {
            resolve: true,
            ..self
        }
    }

    /// State of a process that watches the site (`relais serve`): it may tell which
    /// sources were modified ([`BuildState::only_modified`]), and saves the index after
    /// the result is shown ([`BuildState::save_pending`]).
    pub fn watching(self) -> BuildState {
        BuildState {
            watching: true,
            ..self
        }
    }

    /// Only these sources (paths relative to the site folder) were modified in place since
    /// the last build: nothing was created, removed or renamed, and nothing else changed.
    /// The next build then lists nothing and stats only those.
    pub fn only_modified(&mut self, sources: HashSet<PathBuf>) {
        self.modified = Some(sources);
    }

    /// Writes the index the last build left for later (a watching process), if any.
    pub fn save_pending(&mut self) {
        if let (Some(path), Some(index)) = (self.pending_save.take(), self.index.as_mut()) {
            if let Err(err) = index.save(&path) {
                eprintln!("warning: cannot save {}: {err}", path.display());
            }
        }
    }
}

/// One file of the site, planned.
struct Planned {
    path: String,
    /// Signature of the inputs; `None`: always rendered (cheap outputs).
    sig: Option<u64>,
    work: Work,
}

enum Work {
    Page(Job),
    Atom,
    Rss,
    Bytes(Vec<u8>),
    Copy(PathBuf),
    Federation(usize),
}

/// Builds the site into `options.out_dir`, reusing what the last build left when its
/// inputs did not change.
pub fn build_site(options: &BuildOptions, state: &mut BuildState) -> anyhow::Result<BuildReport> {
    let started = Instant::now();
    state.save_pending();
    // The watcher's word counts only for the listing and stats it saw last.
    let modified = state.modified.take();
    let scan = state.scan.take();
    let scan = match (modified, scan) {
        (Some(modified), Some(scan))
            if modified
                .iter()
                .all(|p| scan.discovered.sources.iter().any(|s| &s.path == p)) =>
        {
            Some((modified, scan))
        }
        _ => None,
    };
    let mut timings = timings::Timings::from_env();
    let spinner = spinner::Spinner::start(options.progress);
    let site_dir = &options.site_dir;
    let config_path = site_dir.join(crate::config::CONFIG_FILE);
    // Signed from the bytes it was parsed from: an edit between two reads would be signed
    // and never built.
    let (mut config, config_text) = SiteConfig::load_with_text(site_dir)?;
    let config_bytes = config_text.into_bytes();
    if let Some(base_url) = &options.base_url {
        config.base_url = base_url.trim_end_matches('/').to_string();
    }
    let mut theme = Theme::load(site_dir, &config)?;
    if let Some(last) = state.theme.take() {
        theme.take_compiled(last);
    }
    let wanted = Highlighter::new(config.highlight_theme.clone());
    if state.highlighter.as_ref().map(Highlighter::fingerprint) != Some(wanted.fingerprint()) {
        state.highlighter = Some(wanted);
    }
    let highlighter = state
        .highlighter
        .get_or_insert_with(|| Highlighter::new(None));
    highlighter
        .validate()
        .map_err(|message| anyhow::anyhow!("{}: {message}", config_path.display()))?;
    let style = highlighter.fingerprint();

    timings.mark("setup (config, theme)");
    // A dry run renders everything from scratch and must not disturb the index. The
    // quick part of the index is enough to find that nothing changed; the rest is read
    // only when something did.
    let index_path = index::index_path(site_dir, &options.out_dir);
    let kept_quick = state.quick.take();
    let kept = state
        .index
        .take()
        .filter(|k| !options.dry_run && k.describes(&options.out_dir) && k.style == style);
    // The quick index is read while the content folder is listed: both are needed
    // before anything can be decided, and neither waits for the other.
    let (mut quick, discovered) = rayon::join(
        || match &kept {
            _ if options.dry_run => None,
            Some(kept) => Some(kept_quick.unwrap_or_else(|| kept.quick())),
            None if state.persist => index::Quick::load(&index_path, &options.out_dir, &style),
            None => None,
        },
        || match &scan {
            Some((_, scan)) => Ok(scan.discovered.clone()),
            None => content::discover(site_dir).map(std::sync::Arc::new),
        },
    );
    timings.mark("quick index load, discover");
    timings.mark("legacy manifest");
    let discovered = discovered.map_err(ContentErrors)?;
    let content::Discovered {
        sources,
        stats: listed_stats,
        assets: content_assets,
        section_indexes,
    } = &*discovered;
    let kept_listing = state.watching.then(|| discovered.clone());
    // Sections' `_index.md` files are few and small: read whole each build, and part of
    // every output's signature (they order and title the lists).
    let (section_metas, section_texts) =
        content::load_sections(site_dir, section_indexes).map_err(ContentErrors)?;
    let statics = crate::site::static_files(site_dir)?;
    // Federation: the key, and the plan of the documents.
    let fediverse = config.fediverse.enabled;
    let (public_key_pem, key_source) = if fediverse {
        let key_path = site_dir.join(&config.fediverse.key_path);
        for published in [
            options.out_dir.clone(),
            site_dir.join("static"),
            site_dir.join("content"),
            site_dir.join(crate::render::theme::THEMES_DIR),
        ] {
            keys::ensure_outside(&key_path, &published)?;
        }
        let (pem, source) = keys::site_public_key(&key_path)?;
        (pem, Some(source))
    } else {
        (String::new(), None)
    };
    timings.mark("sections, key");
    // Every source's size and time, once: for the no-change test, then for loading.
    // A watching process stats only the sources it saw modified.
    let stat = |source: &SourceFile| -> std::io::Result<(u64, index::Stamp)> {
        let meta = std::fs::metadata(site_dir.join(&source.path))?;
        Ok((meta.len(), meta.modified().map(stamp).unwrap_or_default()))
    };
    let stats: Vec<std::io::Result<(u64, index::Stamp)>> = match &scan {
        Some((modified, scan)) if scan.stats.len() == sources.len() => sources
            .iter()
            .zip(&scan.stats)
            .map(|(source, old)| match old {
                Some(old) if !modified.contains(&source.path) => Ok(*old),
                _ => stat(source),
            })
            .collect(),
        // The listing read them (a failed one is read again, for its error).
        _ if listed_stats.len() == sources.len() => sources
            .par_iter()
            .zip(listed_stats)
            .map(|(source, listed)| match listed {
                Some((size, modified)) => Ok((*size, stamp(*modified))),
                None => stat(source),
            })
            .collect(),
        _ => sources.par_iter().map(stat).collect(),
    };
    if let Some(discovered) = kept_listing {
        state.scan = Some(Scan {
            discovered,
            stats: stats.iter().map(|s| s.as_ref().ok().copied()).collect(),
        });
    }
    // What the quick part knows of each source, looked up once for every test below.
    let known: Vec<Option<&index::SourceStamp>> = match &quick {
        Some(quick) => sources
            .par_iter()
            .map(|s| quick.sources.get(&s.path))
            .collect(),
        None => vec![None; sources.len()],
    };
    timings.mark("stat sources");
    let reference_warnings = if state.resolve && fediverse && !options.dry_run {
        let report =
            resolve_references(site_dir, &config, sources, &stats, section_indexes, &known);
        if report.fetched > 0 {
            config.resolved = std::sync::Arc::new(federation::mentions::Resolved::load(site_dir));
        }
        timings.mark("resolve references");
        report.warnings
    } else {
        Vec::new()
    };
    let now = chrono::Utc::now();
    let common = Sig::new(env!("CARGO_PKG_VERSION"))
        .bytes(&config_bytes)
        // What the posts' replies and mentions resolved to (`.relais/resolved.json`).
        .with(&*config.resolved)
        .with(sections_sig(section_indexes, &section_texts))
        .with(&options.base_url)
        .with(options.drafts)
        .with(options.future)
        .with(&style)
        .finish();
    // Posts waiting for their date, as the index knows them: when one comes due, the inputs
    // differ and the site is built again though no file changed.
    let held: Vec<&PathBuf> = match &quick {
        Some(quick) if !options.future => quick.held(now),
        _ => Vec::new(),
    };
    // The inbox's store, when it is beside the site, opened once for the whole build:
    // what pages show of replies and reactions is an input, which its change counter
    // stands for.
    let store_location = crate::store::StoreLocation::of(site_dir, &config.inbox.store);
    let store: Option<StoreOpened> = (fediverse && store_location.exists())
        .then(|| crate::store::Store::open_location(&store_location));
    let store_stamp = match &store {
        Some(Ok(store)) => store.interactions_stamp().ok(),
        Some(Err(_)) => None,
        None => Some(crate::store::NO_INTERACTIONS),
    };
    let inputs_besides_held = Sig::new("inputs and store")
        .with(inputs_sig(
            common,
            &theme,
            &options.out_dir,
            &public_key_pem,
            sources,
            content_assets,
            &statics,
            site_dir,
        ))
        // A store that cannot tell: never the same as the last build.
        .with(store_stamp.unwrap_or_else(|| std::process::id().into()))
        .with(store_stamp.is_none().then(std::time::SystemTime::now))
        .finish();
    let with_held = |held: &[&PathBuf]| {
        Sig::new("held")
            .with(inputs_besides_held)
            .with(held)
            .finish()
    };
    let inputs = with_held(&held);

    timings.mark("inputs signature");
    // The last build's quick part stands for this build when it was of the same inputs
    // into this output folder, and this build writes: both the no-change test and the
    // patch start from it.
    let reusable = !options.dry_run
        && !options.remote_interactions
        && key_source != Some(SiteKeySource::Generated)
        && quick.as_ref().is_some_and(|quick| {
            quick.inputs == inputs
                && quick.has_outputs
                && quick.out_id.is_some()
                && quick.out_id == index::folder_id(&options.out_dir)
        });
    // Nothing changed: the last build's report, without building the site.
    if reusable
        && quick
            .as_ref()
            .is_some_and(|quick| sources_unchanged(site_dir, sources, &stats, &known, quick))
    {
        if let Some(last) = quick.as_ref().and_then(|q| q.last.as_ref()) {
            let report = BuildReport {
                html_pages: last.html_pages,
                posts: last.posts,
                pages: last.pages,
                tags: last.tags,
                parsed: 0,
                reused: sources.len(),
                files: last.files,
                rendered: 0,
                write: WriteReport {
                    unchanged: last.files,
                    ..WriteReport::default()
                },
                elapsed: started.elapsed(),
                out_dir: options.out_dir.clone(),
                warnings: Vec::new(),
                accepted: Vec::new(),
                key_source,
                reference_warnings: Vec::new(),
            };
            let (warnings, accepted) =
                federation::check::split_accepted(&config, last.warnings.clone());
            let report = BuildReport {
                warnings,
                accepted,
                reference_warnings,
                ..report
            };
            timings.mark("no-change test");
            state.index = kept;
            if state.index.is_some() {
                state.quick = quick;
                if state.watching {
                    state.theme = Some(theme);
                }
            }
            return Ok(report);
        }
    }

    timings.mark("no-change test");
    // From here on pages may be rendered: a template error stops the build now.
    let compiled = || theme.tera().map(drop);
    // A few edited bodies: patched without loading the site, when nothing else depends on
    // them (nothing but sources changed), from the index a watching process keeps or the
    // index files.
    let stored = match &kept {
        Some(kept) => Some(patch::Stored::Memory(kept)),
        None if state.persist && !state.watching => Some(patch::Stored::Disk(&index_path)),
        None => None,
    };
    if let (Some(known_quick), Some(stored)) = (quick.as_ref().filter(|_| reusable), stored) {
        let patch = patch::Patch {
            options,
            config: &config,
            theme: &theme,
            highlighter,
            quick: known_quick,
            known: &known,
            sources,
            stats: &stats,
            common,
            stored,
            store: store.as_ref().and_then(|s| s.as_ref().ok()),
            load_options: options.load_options(now),
            index_path: state.persist.then_some(index_path.as_path()),
        };
        // The templates compile while the patch reads what it needs.
        let (compiled, patched) = rayon::join(compiled, || patch::patch(&patch, &mut timings));
        compiled?;
        if let Some(patched) = patched? {
            let last = known_quick.last.clone().unwrap_or_default();
            let update = patched.update;
            let state_file = update.state.map(|fed_state| {
                let site_dir = site_dir.clone();
                std::thread::spawn(move || fed_state.save(&site_dir))
            });
            match (update.main, kept) {
                // A fresh process: the log takes the entries, the main file the rest.
                (Some(mut main), _) => {
                    if let Some(quick) = quick.take() {
                        if let Err(err) = quick.save_patch(
                            &index_path,
                            &mut main,
                            &update.sources,
                            update.outputs,
                        ) {
                            eprintln!("warning: cannot save {}: {err}", index_path.display());
                        }
                    }
                }
                // A watching process: its index (and the quick part along with it).
                (None, Some(mut index)) => {
                    if let Some(mut quick) = quick.take() {
                        for (path, entry, placed) in &update.sources {
                            let stamp = index::SourceStamp::of(entry, None, *placed);
                            quick.sources.insert(path.clone(), stamp);
                        }
                        state.quick = Some(quick);
                    }
                    for (path, entry, placed) in update.sources {
                        index.changed_sources.insert(path.clone());
                        match placed {
                            Some(placed) => index.placed.insert(path.clone(), placed),
                            None => index.placed.remove(&path),
                        };
                        index.sources.insert(path, entry);
                    }
                    index.outputs.extend(update.outputs);
                    if state.persist {
                        if state.watching {
                            state.pending_save = Some(index_path.clone());
                        } else if let Err(err) = index.save(&index_path) {
                            eprintln!("warning: cannot save {}: {err}", index_path.display());
                        }
                    }
                    state.index = Some(index);
                    if state.watching {
                        state.theme = Some(theme);
                    }
                }
                (None, None) => {}
            }
            if let Some(Err(err)) = state_file.map(|t| t.join().unwrap_or(Ok(()))) {
                eprintln!(
                    "warning: cannot save {}: {err}",
                    federation::check::STATE_FILE
                );
            }
            timings.mark("patch: index save");
            let (warnings, accepted) = federation::check::split_accepted(&config, patched.warnings);
            return Ok(BuildReport {
                html_pages: last.html_pages,
                posts: last.posts,
                pages: last.pages,
                tags: last.tags,
                parsed: patched.parsed,
                reused: sources.len() - patched.parsed,
                files: last.files,
                rendered: patched.rendered,
                write: WriteReport {
                    written: patched.written,
                    unchanged: last.files - patched.written,
                    removed: 0,
                },
                elapsed: started.elapsed(),
                out_dir: options.out_dir.clone(),
                warnings,
                accepted,
                key_source,
                reference_warnings,
            });
        }
        timings.mark("patch declined");
    } else {
        compiled()?;
    }
    // Sources the quick part does not vouch for are read and parsed while the index is
    // read (a few, usually: their parse, code highlighting included, takes as long).
    let untrusted: Vec<usize> = match &quick {
        Some(_) => (0..sources.len())
            .filter(|&i| {
                !matches!((known[i], &stats[i]),
                    (Some(known), Ok((size, modified))) if known.trusted(*size, *modified))
            })
            .collect(),
        None => Vec::new(),
    };
    drop(quick);
    let (mut index, mut early) = rayon::join(
        || match kept {
            _ if options.dry_run => BuildIndex::new(&options.out_dir, &style),
            // A loaded index checks its output folder as it loads.
            Some(mut kept) => {
                if kept.out_id != index::folder_id(&options.out_dir) {
                    kept.untrust_outputs();
                }
                kept
            }
            None if state.persist => BuildIndex::load(&index_path, &options.out_dir, &style),
            None => BuildIndex::new(&options.out_dir, &style),
        },
        || {
            untrusted
                .par_iter()
                .filter_map(|&i| Some((i, read_and_parse(site_dir, &sources[i], highlighter)?)))
                .collect::<HashMap<usize, EarlyParse>>()
        },
    );
    // Builds before the index listed their outputs in the output folder itself.
    let legacy = index.outputs.is_empty() && !options.dry_run;
    if legacy {
        for path in render::output::legacy_manifest(&options.out_dir) {
            index.outputs.insert(
                path,
                OutputEntry {
                    sig: None,
                    hash: None,
                },
            );
        }
    }
    timings.mark("index load");
    // Sources: reuse what the index knows, parse the rest.
    spinner.message("Reading content");
    // The index's entries are moved, not copied: the index gets today's entries back.
    let index_sources_len = index.sources.len();
    let mut known_entries = std::mem::take(&mut index.sources);
    let known: Vec<Option<SourceEntry>> = sources
        .iter()
        .map(|s| known_entries.remove(&s.path))
        .collect();
    drop(known_entries);
    timings.mark("match entries");
    let loaded = load_sources(site_dir, sources, stats, known, &mut early, highlighter)?;
    timings.mark("stat, read, parse");
    let parsed = loaded.iter().filter(|l| l.full.is_some()).count();
    let rehashed = loaded.iter().any(|l| l.rehashed);
    let mut entries: HashMap<PathBuf, SourceEntry> = HashMap::with_capacity(loaded.len());
    // Sources whose document in the site has its body (parsed now or read for rendering).
    let mut full: HashSet<PathBuf> = HashSet::new();
    let mut reparsed: HashSet<PathBuf> = HashSet::new();
    // Sources whose entry differs from the index's: only those are written back.
    let mut changed_sources: HashSet<PathBuf> = HashSet::new();
    let mut documents = Vec::with_capacity(loaded.len());
    for (mut l, source) in loaded.into_iter().zip(sources) {
        if l.entry.set_assets(&source.assets) || l.rehashed || l.full.is_some() {
            changed_sources.insert(source.path.clone());
        }
        match l.full {
            Some(mut doc) => {
                doc.assets = source.assets.clone();
                documents.push(doc);
                reparsed.insert(source.path.clone());
                full.insert(source.path.clone());
            }
            // The lite document lives in the site while it is built, and goes back into
            // its entry afterwards (see `restore_lite`).
            None => match l.entry.lite.take() {
                Some(lite) => documents.push(lite),
                None => {
                    reparsed.insert(source.path.clone());
                    changed_sources.insert(source.path.clone());
                    let doc = parse_source(site_dir, source, highlighter)
                        .map_err(|e| ContentErrors(vec![e]))?;
                    documents.push(doc);
                    full.insert(source.path.clone());
                }
            },
        }
        entries.insert(source.path.clone(), l.entry);
    }
    timings.mark("load sources");
    let sources_changed = parsed > 0 || entries.len() != index_sources_len;

    let mut assets: Vec<Asset> = content_assets
        .iter()
        .map(|a| Asset {
            source: a.source.clone(),
            path: a.path.clone(),
        })
        .collect();
    assets.extend(statics);
    let load_options = options.load_options(now);
    // Documents left out of the site go straight back into their entries.
    let (documents, left_out): (Vec<Document>, Vec<Document>) =
        documents.into_iter().partition(|d| load_options.keeps(d));
    restore_lite(&mut entries, left_out, &full);
    let mut site = Site::assemble(site_dir, config, documents, assets, load_options)?;
    site.parsed = parsed;
    site.reused = sources.len() - parsed;
    site.set_sections(&section_metas);

    timings.mark("assemble site");
    let interactions = if options.remote_interactions {
        remote_interactions(&site.config)?
    } else {
        stored_interactions(site_dir, &site, store.as_ref())?
    };

    let fed_plan = if fediverse {
        federation::documents::site_document_plan(&site.config, &site.posts, &public_key_pem)
    } else {
        Vec::new()
    };
    let aliases = crate::site::aliases(&site);
    let mut host_files = if fediverse {
        federation::hostrules::output_files(&site.config)
    } else {
        Vec::new()
    };
    for file in host_files.iter_mut().filter(|f| f.path == "/_redirects") {
        file.text
            .push_str(&federation::hostrules::netlify::alias_lines(&aliases));
    }

    timings.mark("interactions, fed plan");
    // Signatures.
    let views = Views::new(&site, &interactions);
    let html_global = Sig::new("html")
        .with(common)
        .with(theme.fingerprint)
        .bytes(&serde_json::to_vec(views.globals()).unwrap_or_default())
        .finish();
    // Per document: the signature of what lists show of it (without the fields that
    // change with every edit unless the theme reads them), and of all of it.
    let volatile = theme.volatile;
    let sigs_of = |docs: &[Document]| -> Vec<(u64, u64)> {
        docs.iter()
            .map(|d| {
                entries.get(&d.source).map_or((0, 0), |e| {
                    (sigs::listed(e.listed_sig, volatile, d), e.full_sig)
                })
            })
            .collect()
    };
    let post_sigs = sigs_of(&site.posts);
    let page_sigs = sigs_of(&site.pages);
    let urls = federation::urls::Urls::new(&site.config);
    let interaction_sig = |i: usize| -> u64 {
        sigs::interactions(interactions.get(&urls.object(&site.posts[i].path)))
    };

    let mut plan: Vec<Planned> = Vec::new();
    for job in render::page_jobs(&site) {
        let (_, path) = job.target(&site);
        let sig = match job {
            Job::Home(n) => {
                let per = site.config.paginate_by;
                let start = ((n - 1) * per).min(site.posts.len());
                let end = (start + per).min(site.posts.len());
                Sig::new("home").with(n).with(site.home_page_count()).with(
                    post_sigs[start..end]
                        .iter()
                        .map(|s| s.0)
                        .collect::<Vec<_>>(),
                )
            }
            Job::Post(i) => {
                plan.push(Planned {
                    path: OutputFile::path_for(&path),
                    sig: Some(sigs::post_page(
                        post_sigs[i].1,
                        interaction_sig(i),
                        i.checked_sub(1).map(|j| post_sigs[j].0),
                        post_sigs.get(i + 1).map(|s| s.0),
                        html_global,
                        &path,
                    )),
                    work: Work::Page(job),
                });
                continue;
            }
            Job::Page(i) => {
                plan.push(Planned {
                    path: OutputFile::path_for(&path),
                    sig: Some(sigs::page(page_sigs[i].1, html_global, &path)),
                    work: Work::Page(job),
                });
                continue;
            }
            Job::Tags => Sig::new("tags"),
            Job::Tag(i) => Sig::new("tag").with(i).with(
                site.tags[i]
                    .posts
                    .iter()
                    .map(|&p| post_sigs[p].0)
                    .collect::<Vec<_>>(),
            ),
            Job::NotFound => Sig::new("404"),
            Job::Section(i, n) => {
                let section = &site.sections[i];
                Sig::new("section")
                    .with(n)
                    .with(section.page_count())
                    .with(&section.dir)
                    .with(
                        section
                            .page_posts(n)
                            .iter()
                            .map(|&p| post_sigs[p].0)
                            .collect::<Vec<_>>(),
                    )
                    .with(
                        section
                            .subsections
                            .iter()
                            .map(|&s| &site.sections[s].path)
                            .collect::<Vec<_>>(),
                    )
            }
        };
        plan.push(Planned {
            path: OutputFile::path_for(&path),
            sig: Some(sig.with(html_global).with(&path).finish()),
            work: Work::Page(job),
        });
    }
    let (atom_sig, rss_sig) = sigs::feeds(
        common,
        &post_sigs
            .iter()
            .take(feeds::FEED_LIMIT)
            .map(|s| s.1)
            .collect::<Vec<_>>(),
    );
    plan.push(Planned {
        path: OutputFile::path_for(feeds::ATOM_PATH),
        sig: Some(atom_sig),
        work: Work::Atom,
    });
    plan.push(Planned {
        path: OutputFile::path_for(feeds::RSS_PATH),
        sig: Some(rss_sig),
        work: Work::Rss,
    });
    for (path, text) in [
        (feeds::SITEMAP_PATH, feeds::sitemap(&site)),
        (feeds::ROBOTS_PATH, feeds::robots(&site)),
    ] {
        plan.push(Planned {
            path: OutputFile::path_for(path),
            sig: None,
            work: Work::Bytes(text.into_bytes()),
        });
    }
    for asset in &site.assets {
        plan.push(copy_plan(
            OutputFile::path_for(&asset.path),
            site_dir.join(&asset.source),
        ));
    }
    for file in &theme.static_files {
        if site.assets.iter().any(|a| a.path == file.path) {
            continue;
        }
        let path = OutputFile::path_for(&file.path);
        plan.push(match &file.source {
            StaticSource::Embedded(bytes) => Planned {
                path,
                sig: None,
                work: Work::Bytes(bytes.to_vec()),
            },
            StaticSource::File(source) => copy_plan(path, source.clone()),
        });
    }
    if let Some(css) = render::highlight_stylesheet(highlighter)? {
        if let OutputSource::Bytes(bytes) = css.source {
            plan.push(Planned {
                path: css.path,
                sig: None,
                work: Work::Bytes(bytes),
            });
        }
    }
    let fed_global = sigs::federation_global(common);
    for (i, doc) in fed_plan.iter().enumerate() {
        let path = OutputFile::path_for(doc.path());
        let sig = match doc {
            PlannedDocument::Ready(_) => None,
            PlannedDocument::OutboxPage { number, pages, .. } => Some(sigs::outbox_page(
                fed_global,
                &path,
                *number,
                *pages,
                &doc.posts()
                    .iter()
                    .map(|&p| post_sigs[p].1)
                    .collect::<Vec<_>>(),
            )),
            PlannedDocument::Object { post, .. } => {
                Some(sigs::object(fed_global, &path, post_sigs[*post].1))
            }
        };
        plan.push(Planned {
            path,
            sig,
            work: Work::Federation(i),
        });
    }
    for (alias, target) in &aliases {
        plan.push(Planned {
            path: OutputFile::path_for(alias),
            sig: None,
            work: Work::Bytes(crate::site::alias_page(&site.config.absolute(target)).into_bytes()),
        });
    }
    for file in host_files {
        plan.push(Planned {
            path: OutputFile::path_for(file.path),
            sig: None,
            work: Work::Bytes(file.text.into_bytes()),
        });
    }
    // What a later patch of a few edited posts needs from this plan.
    index.placed = placed_sources(true, &site.posts, &post_sigs)
        .chain(placed_sources(false, &site.pages, &page_sigs))
        .collect();
    index.globals = serde_json::to_string(views.globals()).unwrap_or_default();
    index.html_global = html_global;
    index.outbox_pages = fed_plan
        .iter()
        .filter_map(|doc| match doc {
            PlannedDocument::OutboxPage {
                path,
                actor,
                number,
                pages,
                posts,
            } => Some(index::OutboxPagePlan {
                path: OutputFile::path_for(path),
                actor: actor.clone(),
                number: *number,
                pages: *pages,
                posts: posts
                    .iter()
                    .map(|&p| u32::try_from(p).unwrap_or(u32::MAX))
                    .collect(),
            }),
            _ => None,
        })
        .collect();
    timings.mark("plan");
    check_paths(&plan, &site, &theme)?;
    let output_paths: HashSet<&str> = plan.iter().map(|p| p.path.as_str()).collect();
    let no_links = content::PageLinks::default();
    links::check(
        site.posts.iter().chain(&site.pages).map(|doc| {
            let links = entries.get(&doc.source).map_or(&no_links, |e| &e.links);
            (doc, links)
        }),
        &output_paths,
        &theme.anchors,
    )?;

    timings.mark("check paths, links");
    // What must be rendered, and the bodies it needs.
    let dirty: Vec<usize> = (0..plan.len())
        .filter(|&i| {
            let p = &plan[i];
            p.sig.is_none()
                || index
                    .outputs
                    .get(&p.path)
                    .is_none_or(|e| e.sig != p.sig || e.hash.is_none())
        })
        .collect();
    let old_items = if options.dry_run {
        HashMap::new()
    } else {
        old_outbox_items(&plan, &dirty, &fed_plan, &index, &options.out_dir)
    };
    // A post's object unchanged means its outbox item is unchanged too.
    let dirty_objects: HashSet<usize> = dirty
        .iter()
        .filter_map(|&i| match &plan[i].work {
            Work::Federation(f) => match &fed_plan[*f] {
                PlannedDocument::Object { post, .. } => Some(*post),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let mut need_posts: HashSet<usize> = HashSet::new();
    let mut need_pages: HashSet<usize> = HashSet::new();
    for &i in &dirty {
        match &plan[i].work {
            Work::Page(Job::Post(p)) => {
                need_posts.insert(*p);
            }
            Work::Page(Job::Page(p)) => {
                need_pages.insert(*p);
            }
            Work::Atom | Work::Rss => {
                need_posts.extend(0..site.posts.len().min(feeds::FEED_LIMIT));
            }
            Work::Federation(f) => {
                let posts = fed_plan[*f].posts().iter().copied();
                match old_items.get(f) {
                    Some(items) => need_posts.extend(posts.filter(|p| {
                        dirty_objects.contains(p)
                            || !items.contains_key(&urls.create_activity(&site.posts[*p].path))
                    })),
                    None => need_posts.extend(posts),
                }
            }
            _ => {}
        }
    }
    let missing: Vec<&Document> = need_posts
        .iter()
        .map(|&i| &site.posts[i])
        .chain(need_pages.iter().map(|&i| &site.pages[i]))
        .filter(|d| !full.contains(&d.source))
        .collect();
    let missing_count = missing.len();
    let sources_by_path: HashMap<&Path, &SourceFile> =
        sources.iter().map(|s| (s.path.as_path(), s)).collect();
    let bodies: Vec<Result<Document, ContentError>> = missing
        .par_iter()
        .map(|doc| {
            let source =
                sources_by_path
                    .get(doc.source.as_path())
                    .ok_or_else(|| ContentError::Read {
                        path: doc.source.clone(),
                        source: std::io::ErrorKind::NotFound.into(),
                    })?;
            // Its outputs are signed with the entry it had: a body of other bytes would be
            // written under that signature and kept after the file went back.
            let body = parse_source(site_dir, source, highlighter)?;
            if body.source_hash != doc.source_hash {
                return Err(ContentError::ChangedDuringBuild {
                    path: doc.source.clone(),
                });
            }
            Ok(body)
        })
        .collect();
    let bodies: Result<HashMap<PathBuf, Document>, ContentError> = bodies
        .into_iter()
        .map(|body| body.map(|doc| (doc.source.clone(), doc)))
        .collect();
    let mut bodies = match bodies {
        Ok(bodies) => bodies,
        Err(error) => {
            if let (ContentError::ChangedDuringBuild { path }, true) = (&error, state.persist) {
                // Its entry was trusted for bytes it no longer holds (edited since it was
                // listed, or replaced with its size and time kept). Nothing is written yet:
                // the index is saved without that entry, so running the build again reads
                // it, and with every output still listed, so those no longer built are
                // still removed.
                restore_lite(&mut entries, site_documents(&mut site), &full);
                entries.remove(path);
                index.sources = entries;
                index.changed_sources = changed_sources;
                index.last = None;
                if let Err(err) = index.save(&index_path) {
                    eprintln!("warning: cannot save {}: {err}", index_path.display());
                }
            }
            return Err(ContentErrors(vec![error]).into());
        }
    };
    if !bodies.is_empty() {
        for doc in site.posts.iter_mut().chain(site.pages.iter_mut()) {
            if let Some(body) = bodies.remove(&doc.source) {
                full.insert(doc.source.clone());
                *doc = body;
            }
        }
    }

    timings.note(|| {
        let mut shown: Vec<&str> = dirty.iter().map(|&i| plan[i].path.as_str()).collect();
        shown.truncate(40);
        format!(
            "{} of {} outputs to render, {} bodies read: {}",
            dirty.len(),
            plan.len(),
            missing_count,
            shown.join(" ")
        )
    });
    timings.mark("dirty, bodies");
    // Warnings: stored per post, recomputed for the posts read whole this time.
    let mut lasting_warnings: Vec<FediverseWarning> = Vec::new();
    let mut warnings = if fediverse {
        // Object ids of a build for another base_url (serve) are never in the state the
        // real builds keep: reading it (and the store) would find nothing.
        let previous = if reparsed.is_empty() || options.base_url.is_some() {
            FederationState::default()
        } else {
            published_state(site_dir, store.as_ref())
        };
        let none = FederationState::default();
        let mut all = federation::check::check_site(&site.config, &[], &none);
        lasting_warnings.extend(all.iter().cloned());
        let own = |post: &Document, w: Vec<FediverseWarning>| -> Vec<FediverseWarning> {
            w.into_iter().filter(|w| w.source == post.source).collect()
        };
        // A post's warnings depend on it and the config alone: stored ones hold until
        // either changes (a config change re-reads every post, for its object). Checked on
        // every core: the lasting ones, and those against what was published (the same
        // when nothing was).
        let config_changed = index.warnings_for != common;
        let checked: Vec<Option<(Vec<FediverseWarning>, Vec<FediverseWarning>)>> = site
            .posts
            .par_iter()
            .map(|post| {
                let recheck = reparsed.contains(&post.source) || config_changed;
                if !(recheck && full.contains(&post.source)) {
                    return None;
                }
                let one = std::slice::from_ref(post);
                let lasting = own(
                    post,
                    federation::check::check_site(&site.config, one, &none),
                );
                let shown = if previous.posts.is_empty() {
                    lasting.clone()
                } else {
                    own(
                        post,
                        federation::check::check_site(&site.config, one, &previous),
                    )
                };
                Some((lasting, shown))
            })
            .collect();
        for (post, checked) in site.posts.iter().zip(checked) {
            if let Some((lasting, shown)) = checked {
                if let Some(entry) = entries.get_mut(&post.source) {
                    if entry.warnings != lasting {
                        entry.warnings = lasting.clone();
                        changed_sources.insert(post.source.clone());
                    }
                }
                lasting_warnings.extend(lasting);
                all.extend(shown);
            } else if let Some(entry) = entries.get(&post.source) {
                lasting_warnings.extend(entry.warnings.iter().cloned());
                all.extend(entry.warnings.iter().cloned());
            }
        }
        all
    } else {
        Vec::new()
    };

    let notes = kept_field_notes(&site);
    lasting_warnings.extend(notes.iter().cloned());
    warnings.extend(notes);

    timings.mark("warnings");
    // Render the dirty outputs and write those whose bytes changed.
    spinner.message("Rendering and writing");
    // Each post's object is built once for its own document and its outbox page, and
    // dropped after the last of them: pages are rendered just before their posts' objects,
    // so few are held at a time (all of them were 250 MB at 10k posts).
    let (shared_objects, order) =
        shared_objects(&plan, &dirty, &fed_plan, &old_items, site.posts.len());
    let shared_object = |i: usize| -> Option<Arc<SharedObject>> {
        let post = site.posts.get(i)?;
        Some(shared_objects.take(i, || SharedObject::of(&site.config, &urls, post)))
    };
    let render_one = |planned: &Planned| -> anyhow::Result<Option<Vec<u8>>> {
        Ok(Some(match &planned.work {
            Work::Page(job) => match render::render_job(&site, &theme, &views, *job)?.0.source {
                OutputSource::Bytes(bytes) => bytes,
                OutputSource::Copy(_) => return Ok(None),
            },
            Work::Atom => feeds::atom(&site).into_bytes(),
            Work::Rss => feeds::rss(&site).into_bytes(),
            Work::Bytes(bytes) => bytes.clone(),
            Work::Copy(_) => return Ok(None),
            Work::Federation(f) => match (&fed_plan[*f], old_items.get(f)) {
                (planned, Some(old)) => federation::document_bytes(&spliced_outbox_page(
                    planned, &site, &urls, &full, old,
                )),
                (PlannedDocument::Object { post, .. }, None) => match shared_object(*post) {
                    Some(shared) => shared.document_bytes(),
                    None => federation::document_bytes(&serde_json::Value::Null),
                },
                (
                    PlannedDocument::OutboxPage {
                        actor,
                        number,
                        pages,
                        posts,
                        ..
                    },
                    None,
                ) => {
                    let items: Vec<Arc<SharedObject>> =
                        posts.iter().filter_map(|&i| shared_object(i)).collect();
                    let items: Vec<&SharedObject> = items.iter().map(Arc::as_ref).collect();
                    federation::documents::outbox_page_bytes(&urls, actor, *number, *pages, &items)
                }
                (planned, None) => {
                    federation::document_bytes(&planned.build(&site.config, &urls, &site.posts))
                }
            },
        }))
    };
    let mut write = WriteReport::default();
    let mut new_outputs: HashMap<String, OutputEntry> = HashMap::with_capacity(dirty.len());
    let planned_paths: HashSet<&str> = plan.iter().map(|p| p.path.as_str()).collect();
    let stale: Vec<String> = index
        .outputs
        .keys()
        .filter(|p| !planned_paths.contains(p.as_str()))
        .cloned()
        .collect();
    if options.dry_run {
        order
            .par_iter()
            .try_for_each(|&i| render_one(&plan[i]).map(drop))?;
    } else {
        let out_dir = &options.out_dir;
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
        if state.persist {
            index::begin_writing(&index_path)
                .with_context(|| format!("writing beside {}", index_path.display()))?;
        }
        write.removed = render::output::remove_files(out_dir, &stale)
            .with_context(|| format!("writing {}", out_dir.display()))?;
        // Folders of outputs written as recorded (the others may be gone).
        let known_dirs: HashSet<&str> = index
            .outputs
            .iter()
            .filter(|(p, o)| o.hash.is_some() && planned_paths.contains(p.as_str()))
            .map(|(p, _)| p)
            .filter_map(|p| p.rsplit_once('/').map(|(dir, _)| dir))
            .collect();
        render::output::create_dirs(
            out_dir,
            dirty.iter().map(|&i| plan[i].path.as_str()),
            &known_dirs,
        )?;
        let pool = writing_pool(dirty.len());
        let write_all = || -> Vec<anyhow::Result<(usize, OutputEntry, bool)>> {
            order
                .par_iter()
                .map(|&i| {
                    let planned = &plan[i];
                    let old = index.outputs.get(&planned.path);
                    let target = out_dir.join(&planned.path);
                    match &planned.work {
                        Work::Copy(from) => {
                            render::output::copy_file(from, &target)?;
                            let entry = OutputEntry {
                                sig: planned.sig,
                                hash: planned.sig,
                            };
                            Ok((i, entry, true))
                        }
                        _ => {
                            let bytes = render_one(planned)?.unwrap_or_default();
                            let hash = Some(hash_bytes(&bytes));
                            let same = old.is_some_and(|o| o.hash == hash);
                            if !same {
                                render::output::write_file(&target, &bytes)?;
                            }
                            Ok((
                                i,
                                OutputEntry {
                                    sig: planned.sig,
                                    hash,
                                },
                                !same,
                            ))
                        }
                    }
                })
                .collect()
        };
        let results = match &pool {
            Some(pool) => pool.install(write_all),
            None => write_all(),
        };
        let mut first_error = None;
        for result in results {
            match result {
                Ok((i, entry, written)) => {
                    write.written += usize::from(written);
                    new_outputs.insert(plan[i].path.clone(), entry);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        index.out_id = index::folder_id(out_dir);
        if let Some(error) = first_error {
            // Outputs that failed may be half written: the next build must not trust them.
            for &i in &dirty {
                new_outputs
                    .entry(plan[i].path.clone())
                    .or_insert(OutputEntry {
                        sig: None,
                        hash: None,
                    });
            }
            merge_outputs(&mut index.outputs, &stale, new_outputs);
            restore_lite(&mut entries, site_documents(&mut site), &full);
            index.sources = entries;
            index.changed_sources = changed_sources;
            // The next build must not take the last report for its own.
            index.last = None;
            if state.persist {
                let _ = index.save(&index_path);
            }
            return Err(error);
        }
        if legacy {
            let _ = std::fs::remove_file(out_dir.join(render::MANIFEST));
        }
    }
    timings.mark("render, write");
    write.unchanged = plan.len() - write.written;

    spinner.finish();
    let html_pages =
        site.home_page_count() + site.posts.len() + site.pages.len() + site.tags.len() + 2;
    let (posts, pages, tags, reused) = (
        site.posts.len(),
        site.pages.len(),
        site.tags.len(),
        site.reused,
    );
    let changed = sources_changed
        || rehashed
        || write.written > 0
        || write.removed > 0
        || dirty.iter().any(|&i| plan[i].sig.is_some());
    if !options.dry_run {
        // A build for another base_url (serve) has other object ids: it must not replace
        // the state the next real build compares with.
        let state_file = site_dir.join(federation::check::STATE_FILE);
        let objects_changed = dirty
            .iter()
            .any(|&i| plan[i].sig.is_some() && matches!(plan[i].work, Work::Federation(_)));
        let fed_state = (options.base_url.is_none()
            && (sources_changed || objects_changed || !state_file.exists()))
        .then(|| FederationState::of_posts(&urls, &site.posts));
        timings.mark("federation state");
        merge_outputs(&mut index.outputs, &stale, new_outputs);
        restore_lite(&mut entries, site_documents(&mut site), &full);
        index.sources = entries;
        index.changed_sources = changed_sources;
        let last = index::LastBuild {
            html_pages,
            posts,
            pages,
            tags,
            files: plan.len(),
            warnings: lasting_warnings,
        };
        // Saved with the posts held back as the next build's quick part will list them
        // (a cold build had no list to start from), so that build finds nothing changed.
        let inputs = if options.future {
            inputs
        } else {
            with_held(&index.held(now))
        };
        let changed = changed || index.inputs != inputs;
        index.inputs = inputs;
        index.last = Some(last);
        index.warnings_for = common;
        // The two files are independent: written side by side.
        let (fed_saved, index_saved) = rayon::join(
            || fed_state.map(|fed_state| fed_state.save(site_dir)),
            || {
                if !(state.persist && changed) {
                    // Nothing written: the index on disk still describes the outputs.
                    if state.persist {
                        index::end_writing(&index_path);
                    }
                    return Ok(());
                }
                if state.watching {
                    state.pending_save = Some(index_path.clone());
                    return Ok(());
                }
                // Older versions kept one cache file per document there; the index
                // replaces it.
                let legacy_cache = site_dir.join(".relais/cache");
                if legacy_cache.is_dir() {
                    let _ = std::fs::remove_dir_all(legacy_cache);
                }
                index.save(&index_path)
            },
        );
        if let Some(Err(err)) = fed_saved {
            eprintln!(
                "warning: cannot save {}: {err}",
                federation::check::STATE_FILE
            );
        }
        if let Err(err) = index_saved {
            eprintln!("warning: cannot save {}: {err}", index_path.display());
        }
        timings.mark("index save");
        state.index = Some(index);
        if state.watching {
            state.theme = Some(theme);
        }
    }

    let (warnings, accepted) = federation::check::split_accepted(&site.config, warnings);
    Ok(BuildReport {
        warnings,
        accepted,
        key_source,
        reference_warnings,
        html_pages,
        posts,
        pages,
        tags,
        parsed,
        reused,
        files: plan.len(),
        rendered: dirty.len(),
        write,
        elapsed: started.elapsed(),
        out_dir: options.out_dir.clone(),
    })
}

/// Where each document sits among the site's posts or pages, with its signatures.
fn placed_sources<'a>(
    post: bool,
    docs: &'a [Document],
    sigs: &'a [(u64, u64)],
) -> impl Iterator<Item = (PathBuf, index::Placed)> + 'a {
    docs.iter()
        .zip(sigs)
        .enumerate()
        .map(move |(i, (doc, &(listed, full)))| {
            let placed = index::Placed {
                post,
                position: u32::try_from(i).unwrap_or(u32::MAX),
                listed,
                full,
            };
            (doc.source.clone(), placed)
        })
}

/// The site's documents, taken out of it (the site is not used after).
fn site_documents(site: &mut Site) -> Vec<Document> {
    let mut docs = std::mem::take(&mut site.posts);
    docs.append(&mut site.pages);
    docs
}

/// Outbox items of a page file, by activity id.
type OutboxItems = HashMap<String, serde_json::Value>;

/// The items of the outbox pages to render, from the files the last build wrote (when
/// their bytes are the ones the index recorded), by plan index of the federation stage.
fn old_outbox_items(
    plan: &[Planned],
    dirty: &[usize],
    fed_plan: &[PlannedDocument],
    index: &BuildIndex,
    out_dir: &Path,
) -> HashMap<usize, OutboxItems> {
    dirty
        .par_iter()
        .filter_map(|&i| {
            let Work::Federation(f) = plan[i].work else {
                return None;
            };
            if !matches!(fed_plan[f], PlannedDocument::OutboxPage { .. }) {
                return None;
            }
            let hash = index.outputs.get(&plan[i].path)?.hash?;
            let bytes = std::fs::read(out_dir.join(&plan[i].path)).ok()?;
            if hash_bytes(&bytes) != hash {
                return None;
            }
            let mut page: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
            let serde_json::Value::Array(items) = page.get_mut("orderedItems")?.take() else {
                return None;
            };
            let items = items
                .into_iter()
                .filter_map(|item| Some((item.get("id")?.as_str()?.to_string(), item)))
                .collect();
            Some((f, items))
        })
        .collect()
}

/// Many outputs are rendered and written on one thread more than the machine has cores:
/// creating files waits on the file system (its journal, a directory's lock) while the
/// kernel's writeback takes CPU, and the extra thread keeps the cores busy (10k posts on
/// 2 cores: render and write 2.7 -> 2.2 s; no gain at 1k, so few outputs keep the pool).
fn writing_pool(outputs: usize) -> Option<rayon::ThreadPool> {
    const MANY: usize = 4096;
    if outputs < MANY {
        return None;
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads() + 1)
        .thread_name(|n| format!("relais-write-{n}"))
        .build()
        .ok()
}

/// Posts' objects shared by the documents of this build that show them, each dropped once
/// the last of them took it.
struct SharedObjects {
    /// Per post: the object once built, and how many documents have still to take it.
    slots: Vec<Mutex<(Option<Arc<SharedObject>>, u32)>>,
}

impl SharedObjects {
    fn take(&self, post: usize, build: impl FnOnce() -> SharedObject) -> Arc<SharedObject> {
        let Some(slot) = self.slots.get(post) else {
            return Arc::new(build());
        };
        let mut slot = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (held, left) = &mut *slot;
        let shared = held.get_or_insert_with(|| Arc::new(build())).clone();
        *left = left.saturating_sub(1);
        if *left == 0 {
            *held = None;
        }
        shared
    }
}

/// The shared objects of the dirty outputs, and the order to render those in: outbox pages
/// (built anew, not spliced) by their newest post, each post's object right after the last
/// page that holds it (the site's and its author's), so few objects are held at once.
fn shared_objects(
    plan: &[Planned],
    dirty: &[usize],
    fed_plan: &[PlannedDocument],
    old_items: &HashMap<usize, OutboxItems>,
    posts: usize,
) -> (SharedObjects, Vec<usize>) {
    let fresh_page = |i: usize| -> Option<&[usize]> {
        let Work::Federation(f) = plan[i].work else {
            return None;
        };
        match &fed_plan[f] {
            PlannedDocument::OutboxPage { posts, .. } if !old_items.contains_key(&f) => Some(posts),
            _ => None,
        }
    };
    let object_of = |i: usize| -> Option<usize> {
        let Work::Federation(f) = plan[i].work else {
            return None;
        };
        match fed_plan[f] {
            PlannedDocument::Object { post, .. } => Some(post).filter(|&p| p < posts),
            _ => None,
        }
    };
    let mut pages_left = vec![0u32; posts];
    let mut pages: Vec<(usize, usize)> = Vec::new();
    for &i in dirty {
        if let Some(held) = fresh_page(i) {
            for &post in held {
                if let Some(n) = pages_left.get_mut(post) {
                    *n += 1;
                }
            }
            pages.push((held.iter().copied().min().unwrap_or(usize::MAX), i));
        }
    }
    let mut uses = pages_left.clone();
    let mut object_output: HashMap<usize, usize> = HashMap::new();
    let mut order = Vec::with_capacity(dirty.len());
    for &i in dirty {
        if fresh_page(i).is_some() {
            continue;
        }
        match object_of(i) {
            Some(post) => {
                uses[post] += 1;
                if pages_left[post] > 0 {
                    object_output.insert(post, i);
                } else {
                    order.push(i);
                }
            }
            None => order.push(i),
        }
    }
    pages.sort_unstable();
    for (_, page) in pages {
        order.push(page);
        for &post in fresh_page(page).unwrap_or_default() {
            let Some(left) = pages_left.get_mut(post) else {
                continue;
            };
            *left -= 1;
            if *left == 0 {
                order.extend(object_output.get(&post));
            }
        }
    }
    let slots = uses.into_iter().map(|n| Mutex::new((None, n))).collect();
    (SharedObjects { slots }, order)
}

/// An outbox page whose posts read whole this time get new items and the others keep
/// their items from the last build's file (`old`; their objects did not change).
fn spliced_outbox_page(
    planned: &PlannedDocument,
    site: &Site,
    urls: &federation::urls::Urls,
    full: &HashSet<PathBuf>,
    old: &OutboxItems,
) -> serde_json::Value {
    let PlannedDocument::OutboxPage {
        actor,
        number,
        pages,
        posts,
        ..
    } = planned
    else {
        return planned.build(&site.config, urls, &site.posts);
    };
    let chunk: Vec<&Document> = posts.iter().filter_map(|&i| site.posts.get(i)).collect();
    let fresh: Vec<&Document> = chunk
        .iter()
        .copied()
        .filter(|d| full.contains(&d.source))
        .collect();
    let mut page =
        federation::documents::outbox_page(&site.config, urls, actor, *number, *pages, &fresh);
    let mut fresh_items = match page.get_mut("orderedItems").map(serde_json::Value::take) {
        Some(serde_json::Value::Array(items)) => items.into_iter(),
        _ => Vec::new().into_iter(),
    };
    let items: Vec<serde_json::Value> = chunk
        .iter()
        .map(|d| {
            if full.contains(&d.source) {
                fresh_items.next()
            } else {
                old.get(&urls.create_activity(&d.path)).cloned()
            }
            .unwrap_or(serde_json::Value::Null)
        })
        .collect();
    page["orderedItems"] = serde_json::Value::Array(items);
    page
}

/// Gives documents lent to the site back to their entries; those read whole (`full`)
/// are cut to their lite form first.
fn restore_lite(
    entries: &mut HashMap<PathBuf, SourceEntry>,
    docs: Vec<Document>,
    full: &HashSet<PathBuf>,
) {
    for doc in docs {
        if let Some(entry) = entries.get_mut(&doc.source) {
            if entry.lite.is_none() {
                entry.lite = Some(if full.contains(&doc.source) {
                    index::lite(&doc)
                } else {
                    doc
                });
            }
        }
    }
}

/// Signature of the inputs other than the sources' bytes: options, config, theme, key, and
/// the bundle files, content files and static files with their sizes and times.
#[allow(clippy::too_many_arguments)]
fn inputs_sig(
    common: u64,
    theme: &Theme,
    out_dir: &Path,
    public_key_pem: &str,
    sources: &[SourceFile],
    content_assets: &[content::ContentAsset],
    statics: &[Asset],
    site_dir: &Path,
) -> u64 {
    let stamped = |path: &Path| {
        let meta = std::fs::metadata(path).ok();
        (path.to_path_buf(), meta.as_ref().map(index::FileStamp::of))
    };
    let mut sig = Sig::new("inputs")
        .with(common)
        .with(theme.fingerprint)
        .with(out_dir)
        .with(public_key_pem)
        .with(sources.len());
    for source in sources {
        // The path's bytes: hashing a `Path` walks its components, 10k times over.
        sig = sig.bytes(source.path.as_os_str().as_encoded_bytes());
        for asset in &source.assets {
            sig = sig.with(stamped(&site_dir.join(asset)));
        }
    }
    for asset in content_assets {
        sig = sig
            .with(&asset.path)
            .with(stamped(&site_dir.join(&asset.source)));
    }
    for asset in statics {
        sig = sig
            .with(&asset.path)
            .with(stamped(&site_dir.join(&asset.source)));
    }
    for file in &theme.static_files {
        sig = sig.with(&file.path);
        if let StaticSource::File(path) = &file.source {
            sig = sig.with(stamped(path));
        }
    }
    sig.finish()
}

/// Resolves what the sources reference (replies, mentions) and `.relais/resolved.json`
/// does not know yet. Only sources the index does not vouch for, or that referenced
/// something when last read, are read (all of them without an index), and the sections'
/// `_index.md` files.
fn resolve_references(
    site_dir: &Path,
    config: &SiteConfig,
    sources: &[SourceFile],
    stats: &[std::io::Result<(u64, index::Stamp)>],
    section_indexes: &[PathBuf],
    known: &[Option<&index::SourceStamp>],
) -> federation::mentions::RefreshReport {
    let candidates: Vec<&Path> = sources
        .iter()
        .zip(stats)
        .zip(known)
        .filter(|((_, stat), known)| {
            !matches!((known, stat), (Some(k), Ok((size, modified)))
                if !k.refs && k.trusted(*size, *modified))
        })
        .map(|((source, _), _)| source.path.as_path())
        .chain(section_indexes.iter().map(PathBuf::as_path))
        .collect();
    let texts: Vec<(PathBuf, String)> = candidates
        .par_iter()
        .filter_map(|path| {
            let full = site_dir.join(path);
            let text = std::fs::read_to_string(&full).ok()?;
            federation::mentions::may_reference(&text).then_some((full, text))
        })
        .collect();
    if texts.is_empty() {
        return federation::mentions::RefreshReport::default();
    }
    federation::mentions::refresh_sources(site_dir, config, &texts)
}

/// Whether the bytes of a source may reference an account or a post.
fn may_reference(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(federation::mentions::may_reference)
}

/// Whether every source is the one the index knows, by size and time alone.
fn sources_unchanged(
    site_dir: &Path,
    sources: &[SourceFile],
    stats: &[std::io::Result<(u64, index::Stamp)>],
    known: &[Option<&index::SourceStamp>],
    quick: &index::Quick,
) -> bool {
    sources.len() == quick.sources.len()
        && sources
            .par_iter()
            .zip(stats)
            .zip(known)
            .all(|((source, stat), entry)| {
                let Some(entry) = entry else {
                    return false;
                };
                let Ok((size, modified)) = stat else {
                    return false;
                };
                entry.trusted(*size, *modified)
                    && entry.assets == source.assets
                    && index::LocalFile::all_unchanged(site_dir, &entry.local_files)
            })
}

/// The index's outputs after this build: the stale ones gone, the rendered ones replaced;
/// outputs not rendered this time keep what the index knew of them.
fn merge_outputs(
    outputs: &mut HashMap<String, OutputEntry>,
    stale: &[String],
    rendered: HashMap<String, OutputEntry>,
) {
    for path in stale {
        outputs.remove(path);
    }
    outputs.extend(rendered);
}

/// A source after the change test: its index entry and, when it was parsed, the document.
struct LoadedSource {
    entry: SourceEntry,
    full: Option<Document>,
    /// Read again and found unchanged (its entry's times moved).
    rehashed: bool,
}

/// Stats every source; reads only those whose size or time changed (or are too recent to
/// trust), and parses only those whose hash changed. All errors are reported at once.
fn load_sources(
    site_dir: &Path,
    sources: &[SourceFile],
    stats: Vec<std::io::Result<(u64, index::Stamp)>>,
    known: Vec<Option<SourceEntry>>,
    early: &mut HashMap<usize, EarlyParse>,
    highlighter: &Highlighter,
) -> Result<Vec<LoadedSource>, ContentErrors> {
    let early: Vec<Option<EarlyParse>> = (0..sources.len()).map(|i| early.remove(&i)).collect();
    let results: Vec<Result<LoadedSource, ContentError>> = sources
        .par_iter()
        .zip(stats)
        .zip(known)
        .zip(early)
        .map(|(((source, stat), known), early)| {
            let full_path = site_dir.join(&source.path);
            let read_error = |e: std::io::Error| ContentError::Read {
                path: source.path.clone(),
                source: e,
            };
            let (size, modified) = stat.map_err(read_error)?;
            let known = known.filter(|e| index::LocalFile::all_unchanged(site_dir, &e.local_files));
            let known = match known {
                Some(entry) if entry.trusted(size, modified) => {
                    return Ok(LoadedSource {
                        entry,
                        full: None,
                        rehashed: false,
                    });
                }
                other => other,
            };
            let (now, len, hash, refs, parsed) = match early {
                Some(early) => (
                    early.read_at,
                    early.len,
                    early.hash,
                    early.refs,
                    Body::Parsed(Box::new(early.parsed)),
                ),
                None => {
                    let now = stamp(std::time::SystemTime::now());
                    let bytes = std::fs::read(&full_path).map_err(read_error)?;
                    let hash = content::hex_sha256(&bytes);
                    let refs = may_reference(&bytes);
                    (now, bytes.len() as u64, hash, refs, Body::Bytes(bytes))
                }
            };
            if let Some(mut entry) = known.filter(|e| e.hash == hash) {
                entry.size = len;
                entry.modified = modified;
                entry.verified = now;
                return Ok(LoadedSource {
                    entry,
                    full: None,
                    rehashed: true,
                });
            }
            let parsed = match parsed {
                Body::Parsed(parsed) => (*parsed)?,
                Body::Bytes(bytes) => parse_bytes(site_dir, source, &bytes, hash, highlighter)?,
            };
            let doc = parsed.document;
            Ok(LoadedSource {
                entry: SourceEntry::of(
                    len,
                    modified,
                    now,
                    index::LocalFile::stamped(site_dir, parsed.local_files),
                    parsed.links,
                    refs,
                    &doc,
                ),
                full: Some(doc),
                rehashed: false,
            })
        })
        .collect();
    let mut errors = Vec::new();
    let mut loaded = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(l) => loaded.push(l),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        errors.sort_by(|a, b| a.path().cmp(b.path()));
        Err(ContentErrors(errors))
    }
}

/// A source read and parsed before its index entry was at hand: the entry may show it
/// unchanged after all (same hash), when the parse goes unused.
struct EarlyParse {
    read_at: index::Stamp,
    len: u64,
    hash: String,
    refs: bool,
    parsed: Result<content::Parsed, ContentError>,
}

/// Reads and parses one source; `None` when it cannot be read (the load reports that).
fn read_and_parse(
    site_dir: &Path,
    source: &SourceFile,
    highlighter: &Highlighter,
) -> Option<EarlyParse> {
    let read_at = stamp(std::time::SystemTime::now());
    let bytes = std::fs::read(site_dir.join(&source.path)).ok()?;
    let hash = content::hex_sha256(&bytes);
    Some(EarlyParse {
        read_at,
        len: bytes.len() as u64,
        refs: may_reference(&bytes),
        parsed: parse_bytes(site_dir, source, &bytes, hash.clone(), highlighter),
        hash,
    })
}

/// A changed source's bytes, or its parse when it was parsed early.
enum Body {
    Bytes(Vec<u8>),
    Parsed(Box<Result<content::Parsed, ContentError>>),
}

/// Reads and parses one source into its whole document, with its bundle's files.
fn parse_source(
    site_dir: &Path,
    source: &SourceFile,
    highlighter: &Highlighter,
) -> Result<Document, ContentError> {
    let bytes = std::fs::read(site_dir.join(&source.path)).map_err(|e| ContentError::Read {
        path: source.path.clone(),
        source: e,
    })?;
    let hash = content::hex_sha256(&bytes);
    let mut doc = parse_bytes(site_dir, source, &bytes, hash, highlighter)?.document;
    doc.assets = source.assets.clone();
    Ok(doc)
}

fn parse_bytes(
    site_dir: &Path,
    source: &SourceFile,
    bytes: &[u8],
    hash: String,
    highlighter: &Highlighter,
) -> Result<content::Parsed, ContentError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ContentError::Encoding {
        path: source.path.clone(),
        line: bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1,
    })?;
    content::parse_document(site_dir, source, text, hash, highlighter)
}

/// A copied file, signed by its source's path and [`index::FileStamp`].
fn copy_plan(path: String, from: PathBuf) -> Planned {
    let sig = std::fs::metadata(&from).ok().map(|m| {
        Sig::new("copy")
            .with(&from)
            .with(index::FileStamp::of(&m))
            .finish()
    });
    Planned {
        path,
        sig: Some(sig.unwrap_or(0)),
        work: Work::Copy(from),
    }
}

/// Signature of the sections' `_index.md` files: their paths and bytes.
fn sections_sig(indexes: &[PathBuf], texts: &[String]) -> u64 {
    let mut sig = Sig::new("sections").with(indexes.len());
    for (index, text) in indexes.iter().zip(texts) {
        sig = sig.with(index).bytes(text.as_bytes());
    }
    sig.finish()
}

/// One note per Zola/Hugo front matter field that relais keeps without acting on, naming
/// the first file using it.
fn kept_field_notes(site: &Site) -> Vec<FediverseWarning> {
    let mut first: BTreeMap<&str, &Path> = BTreeMap::new();
    let mut docs: Vec<&Document> = site.posts.iter().chain(&site.pages).collect();
    docs.sort_by(|a, b| a.source.cmp(&b.source));
    for doc in docs {
        for key in &doc.kept_fields {
            first.entry(key.as_str()).or_insert(&doc.source);
        }
    }
    first
        .into_iter()
        .map(|(key, source)| FediverseWarning {
            source: source.to_path_buf(),
            rule: crate::federation::check::rules::GENERATOR_FIELD.into(),
            message: format!(
                "`{key}` is a Zola/Hugo field relais does not act on: kept for templates as page.extra.{key}"
            ),
            blocking: false,
        })
        .collect()
}

/// Every planned path is a plain relative path produced once; a repeated one names both
/// of its origins.
fn check_paths(plan: &[Planned], site: &Site, theme: &Theme) -> anyhow::Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(plan.len());
    for (i, planned) in plan.iter().enumerate() {
        if !render::output::valid(&planned.path) {
            return Err(render::OutputError::BadPath(planned.path.clone()).into());
        }
        if let Some(first) = seen.insert(planned.path.as_str(), i) {
            return Err(render::RenderError::Duplicate {
                path: format!("/{}", planned.path),
                first: origin(&plan[first], site, theme),
                second: origin(planned, site, theme),
            }
            .into());
        }
    }
    Ok(())
}

fn origin(planned: &Planned, site: &Site, theme: &Theme) -> String {
    match &planned.work {
        Work::Page(job) => theme.origin(job.target(site).0).display().to_string(),
        Work::Copy(from) => from
            .strip_prefix(&site.dir)
            .unwrap_or(from)
            .display()
            .to_string(),
        _ => format!("the generated /{}", planned.path),
    }
}

/// What followers were last sent of each post, to notice a post edited without `updated`.
/// With a store, only the posts it records as published count: editing a post that never
/// went out needs no `updated`. Without one (a build host), the last build's state stands
/// in for what was deployed.
fn published_state(site_dir: &Path, store: Option<&StoreOpened>) -> FederationState {
    let mut state = FederationState::load(site_dir);
    match store {
        Some(Ok(store)) => keep_published(&mut state, store),
        Some(Err(_)) => state.posts.clear(),
        None => {}
    }
    state
}

/// The store beside the site as the build opened it (`Err`: there, but it would not open).
type StoreOpened = Result<crate::store::Store, crate::store::StoreError>;

/// Keeps the posts the inbox's store has as published (and not deleted).
fn keep_published(state: &mut FederationState, store: &crate::store::Store) {
    let published: HashSet<String> = store
        .queue_transaction(|q| q.published_records())
        .map(|records| {
            records
                .into_iter()
                .filter(|r| !r.deleted)
                .map(|r| r.object_id)
                .collect()
        })
        .unwrap_or_default();
    state.posts.retain(|id, _| published.contains(id));
}

/// Replies, likes and boosts the inbox stored for the site's posts. A site whose inbox
/// never ran (no store file) has none.
fn stored_interactions(
    site_dir: &Path,
    site: &Site,
    store: Option<&StoreOpened>,
) -> anyhow::Result<Interactions> {
    let store = match store {
        None => return Ok(Interactions::new()),
        Some(Ok(store)) => store,
        // Opened again for the error itself, which the first attempt kept.
        Some(Err(_)) => &crate::store::Store::open_location(&crate::store::StoreLocation::of(
            site_dir,
            &site.config.inbox.store,
        ))?,
    };
    let urls = federation::urls::Urls::new(&site.config);
    let ids: Vec<String> = site.posts.iter().map(|p| urls.object(&p.path)).collect();
    Ok(store.interactions(&ids)?)
}

/// Bound on the interactions document: generous, a big site's comments are text.
const MAX_INTERACTIONS_BYTES: usize = 64 * 1024 * 1024;

/// Replies, likes and boosts of every post, from the inbox service's public endpoint.
fn remote_interactions(config: &SiteConfig) -> anyhow::Result<Interactions> {
    let Some(service) = config.fediverse.inbox_url.as_deref() else {
        anyhow::bail!("--remote-interactions needs fediverse.inbox_url in config.toml");
    };
    let url = format!(
        "{}{}",
        service.trim_end_matches('/'),
        federation::urls::Urls::INTERACTIONS_PATH
    );
    let mut options = federation::fetch::ClientOptions::from_config(config);
    options.max_response_bytes = MAX_INTERACTIONS_BYTES;
    let client = federation::fetch::FederationClient::new(options)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let json = runtime
        .block_on(client.fetch_json(&url, None, federation::fetch::IdCheck::Skip))
        .with_context(|| format!("fetching replies and reactions from {url}"))?;
    serde_json::from_value(json).with_context(|| format!("{url}: not an interactions document"))
}
