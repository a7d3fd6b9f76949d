//! The patch of a few edited posts: when only some sources' bodies changed (nothing a list,
//! a feed's order, a link check or the site's pages depend on), their outputs are rendered
//! from the quick part of the index, the few log entries they need and the last plan,
//! without loading the other documents or assembling the site.
//!
//! It renders what a whole build would render for the same inputs, with the signatures a
//! whole build would compute (`super::sigs`), so either kind of build can follow the
//! other. Whenever anything is outside what it handles (a list would change, a parse
//! fails, the index or the federation state is missing), it declines before writing, and
//! the whole build runs.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::index::{
    self, hash_bytes, stamp, LocalFile, OutputEntry, Placed, Quick, SourceEntry, Stamp,
};
use super::timings::Timings;
use super::{parse_bytes, sigs, BuildOptions};
use crate::config::SiteConfig;
use crate::content::Highlighter;
use crate::content::{self, Document, SourceFile};
use crate::federation::check::{check_site, FederatedPostState, FederationState, FediverseWarning};
use crate::federation::documents::PlannedDocument;
use crate::federation::urls::Urls;
use crate::interactions::Interactions;
use crate::render::{Job, OutputFile, OutputSource, Theme, Views};
use crate::site::{feeds, LoadOptions, Site};

/// More changed sources than this go through the whole build: the patch's per-source
/// reads would stop paying off.
const MAX_PATCHED: usize = 16;

/// Where the last build's index is.
pub enum Stored<'a> {
    /// In its files (a fresh process): entries are read from the log.
    Disk(&'a Path),
    /// Kept in memory by a watching process.
    Memory(&'a index::BuildIndex),
}

/// What the build knows when its no-change test fails.
pub struct Patch<'a> {
    pub options: &'a BuildOptions,
    pub config: &'a SiteConfig,
    pub theme: &'a Theme,
    pub highlighter: &'a Highlighter,
    pub quick: &'a Quick,
    pub sources: &'a [SourceFile],
    /// What the quick part knows of each source (as `sources`).
    pub known: &'a [Option<&'a index::SourceStamp>],
    pub stats: &'a [std::io::Result<(u64, Stamp)>],
    pub common: u64,
    pub stored: Stored<'a>,
    /// The inbox's store beside the site, for the edited posts' replies and reactions.
    pub store: Option<&'a crate::store::Store>,
    /// What the site leaves out (drafts, posts held back) as of this build.
    pub load_options: LoadOptions,
    /// The index file, when one is kept on disk: outputs are written under its
    /// [`index::begin_writing`] mark.
    pub index_path: Option<&'a Path>,
}

/// A patch that was made.
pub struct Patched {
    pub parsed: usize,
    pub rendered: usize,
    pub written: usize,
    /// The last build's warnings with the edited posts' own ones checked again.
    pub warnings: Vec<FediverseWarning>,
    /// What the index and the federation state take from it.
    pub update: Update,
}

/// What the caller applies to the index (in memory, or its files) and saves.
pub struct Update {
    /// With where each sits in the site (`None`: left out, a draft or a post held back).
    pub sources: Vec<(PathBuf, SourceEntry, Option<Placed>)>,
    pub outputs: Vec<(String, OutputEntry)>,
    /// The main part of the index, when it was read from its file.
    pub main: Option<Box<index::BuildIndex>>,
    /// The federation state with the edited posts' new hashes, to save (a real build).
    pub state: Option<FederationState>,
}

/// The main part of the index: read from its file, or the one a watching process keeps.
enum Main<'a> {
    Owned(Box<index::BuildIndex>),
    Borrowed(&'a index::BuildIndex),
}

impl std::ops::Deref for Main<'_> {
    type Target = index::BuildIndex;

    fn deref(&self) -> &index::BuildIndex {
        match self {
            Main::Owned(index) => index,
            Main::Borrowed(index) => index,
        }
    }
}

/// One changed source: its entry before and after, and the new document (`None` when its
/// bytes turned out the same and only its times moved).
struct Changed<'a> {
    source: &'a SourceFile,
    old: SourceEntry,
    entry: SourceEntry,
    doc: Option<Document>,
    /// Where it sits in the site; `None` for a draft or a post held back, before and after
    /// the edit: it has no outputs, only its entry changes.
    placed: Option<Placed>,
}

impl Changed<'_> {
    /// Its position among the posts, when it is one of the site's.
    fn post(&self) -> Option<u32> {
        self.placed.filter(|pl| pl.post).map(|pl| pl.position)
    }
}

/// An output to render again, with the signature a whole build would give it.
enum Work {
    PostPage(u32),
    Page(PathBuf),
    Object(u32),
    Outbox(usize),
    Atom,
    Rss,
}

/// Patches the outputs of the changed sources; `Ok(None)` when this build is not one it
/// handles (nothing is written then).
pub fn patch(p: &Patch, timings: &mut Timings) -> anyhow::Result<Option<Patched>> {
    let Some(planned) = plan(p, timings) else {
        return Ok(None);
    };
    let Planned {
        changed,
        main,
        outputs,
        neighbours,
        feed_docs,
        interactions,
        previous,
        state,
    } = planned;
    let config = p.config;
    let urls = Urls::new(config);
    let out_dir = &p.options.out_dir;
    let Ok(globals) = serde_json::from_str(&main.globals) else {
        return Ok(None);
    };
    let views = Views::with_globals(config, globals, &interactions);
    let by_position: HashMap<u32, &Changed> = changed
        .iter()
        .filter(|c| c.doc.is_some())
        .filter_map(|c| Some((c.post()?, c)))
        .collect();
    let mini = |posts: Vec<Document>, pages: Vec<Document>| Site {
        dir: p.options.site_dir.clone(),
        config: config.clone(),
        posts,
        pages,
        tags: Vec::new(),
        assets: Vec::new(),
        parsed: 0,
        reused: 0,
        sections: Vec::new(),
    };
    let render_page = |site: &Site, job: Job| -> anyhow::Result<Vec<u8>> {
        Ok(
            match crate::render::render_job(site, p.theme, &views, job)?
                .0
                .source
            {
                OutputSource::Bytes(bytes) => bytes,
                OutputSource::Copy(_) => Vec::new(),
            },
        )
    };
    // Render everything first: a failure leaves the site and the index as they were.
    // `Ok(None)`: an output this patch cannot make after all.
    let render_one = |(path, (sig, work)): (String, (u64, Work))| -> RenderResult {
        let bytes = match work {
            Work::PostPage(position) => {
                let Some(doc) = by_position.get(&position).and_then(|c| c.doc.clone()) else {
                    return Ok(None);
                };
                let newer = position
                    .checked_sub(1)
                    .and_then(|n| neighbours.get(&n).cloned());
                let older = neighbours.get(&(position + 1)).cloned();
                let at = usize::from(newer.is_some());
                let posts: Vec<Document> = newer.into_iter().chain([doc]).chain(older).collect();
                render_page(&mini(posts, Vec::new()), Job::Post(at))?
            }
            Work::Page(source) => {
                let Some(doc) = changed
                    .iter()
                    .find(|c| c.source.path == source)
                    .and_then(|c| c.doc.clone())
                else {
                    return Ok(None);
                };
                render_page(&mini(Vec::new(), vec![doc]), Job::Page(0))?
            }
            Work::Object(position) => {
                let Some(doc) = by_position.get(&position).and_then(|c| c.doc.as_ref()) else {
                    return Ok(None);
                };
                let object = PlannedDocument::Object {
                    path: String::new(),
                    post: 0,
                };
                crate::federation::document_bytes(&object.build(
                    config,
                    &urls,
                    std::slice::from_ref(doc),
                ))
            }
            Work::Outbox(i) => {
                let page = &main.outbox_pages[i];
                let fresh: Vec<&Document> = page
                    .posts
                    .iter()
                    .filter_map(|n| by_position.get(n).and_then(|c| c.doc.as_ref()))
                    .collect();
                let Some(bytes) = spliced_outbox_page(
                    p,
                    &main,
                    &urls,
                    &path,
                    page.actor.as_str(),
                    (page.number, page.pages),
                    &fresh,
                ) else {
                    return Ok(None);
                };
                bytes
            }
            Work::Atom => feeds::atom(&mini(feed_docs.clone(), Vec::new())).into_bytes(),
            Work::Rss => feeds::rss(&mini(feed_docs.clone(), Vec::new())).into_bytes(),
        };
        Ok(Some((path, sig, bytes)))
    };
    // Outbox pages are the slow ones (a page of bodies read, parsed and written again).
    let results: Vec<RenderResult> = outputs.into_par_iter().map(render_one).collect();
    let mut rendered: Vec<(String, u64, Vec<u8>)> = Vec::with_capacity(results.len());
    for result in results {
        match result? {
            Some(output) => rendered.push(output),
            None => return Ok(None),
        }
    }

    timings.mark("patch: render");
    // Warnings: the edited posts' own ones checked again, against what was published.
    let mut warnings = p
        .quick
        .last
        .as_ref()
        .map(|l| l.warnings.clone())
        .unwrap_or_default();
    let edited_posts = || {
        changed
            .iter()
            .filter(|c| c.post().is_some())
            .filter_map(|c| Some((c, c.doc.as_ref()?)))
    };
    if let Some(previous) = previous.as_ref().or(state.as_ref()) {
        for (c, doc) in edited_posts() {
            for old in &c.old.warnings {
                if let Some(at) = warnings.iter().position(|w| w == old) {
                    warnings.remove(at);
                }
            }
            warnings.extend(
                check_site(config, std::slice::from_ref(doc), previous)
                    .into_iter()
                    .filter(|w| w.source == doc.source),
            );
        }
    }
    let state = state.map(|mut state| {
        for (_, doc) in edited_posts() {
            state.posts.insert(
                urls.object(&doc.path),
                FederatedPostState {
                    source_hash: doc.source_hash.clone(),
                    updated: doc.updated.map(|u| u.to_rfc3339()),
                },
            );
        }
        state
    });

    if let Some(index_path) = p.index_path {
        index::begin_writing(index_path)?;
    }
    let written: Vec<anyhow::Result<bool>> = rendered
        .par_iter()
        .map(|(path, _, bytes)| {
            let hash = Some(hash_bytes(bytes));
            if main.outputs.get(path).is_some_and(|o| o.hash == hash) {
                return Ok(false);
            }
            crate::render::output::write_file(&out_dir.join(path), bytes)?;
            Ok(true)
        })
        .collect();
    let mut count = 0;
    for result in written {
        count += usize::from(result?);
    }
    timings.mark("patch: warnings, write");
    let new_outputs: Vec<(String, OutputEntry)> = rendered
        .iter()
        .map(|(path, sig, bytes)| {
            let entry = OutputEntry {
                sig: Some(*sig),
                hash: Some(hash_bytes(bytes)),
            };
            (path.clone(), entry)
        })
        .collect();
    let parsed = changed.iter().filter(|c| c.doc.is_some()).count();
    let sources: Vec<(PathBuf, SourceEntry, Option<Placed>)> = changed
        .into_iter()
        .map(|c| {
            let placed = c.placed.map(|placed| Placed {
                full: c.entry.full_sig,
                ..placed
            });
            (c.source.path.clone(), c.entry, placed)
        })
        .collect();
    let main = match main {
        Main::Owned(main) => Some(main),
        Main::Borrowed(_) => None,
    };
    Ok(Some(Patched {
        parsed,
        rendered: rendered.len(),
        written: count,
        warnings,
        update: Update {
            sources,
            outputs: new_outputs,
            main,
            state,
        },
    }))
}

/// A rendered output (path, signature, bytes), or `None` when the patch cannot make it.
type RenderResult = anyhow::Result<Option<(String, u64, Vec<u8>)>>;

/// What the patch will do, found without writing anything.
struct Planned<'a> {
    changed: Vec<Changed<'a>>,
    main: Main<'a>,
    /// By output path: the new signature and what renders it.
    outputs: Vec<(String, (u64, Work))>,
    /// Lite documents of the changed posts' neighbours, by position.
    neighbours: HashMap<u32, Document>,
    /// The posts the feeds show, whole, when a changed post is among them.
    feed_docs: Vec<Document>,
    /// Replies and reactions of the edited posts, from the store beside the site.
    interactions: Interactions,
    /// What the edited posts' warnings compare with, when one federates and that is not
    /// `state` itself (serve's other base_url, or a store beside the site).
    previous: Option<FederationState>,
    /// The federation state file, to save with their new hashes.
    state: Option<FederationState>,
}

fn plan<'a>(p: &Patch<'a>, timings: &mut Timings) -> Option<Planned<'a>> {
    let quick = p.quick;
    let site_dir = &p.options.site_dir;
    let last = quick.last.as_ref()?;
    if p.sources.len() != quick.sources.len() {
        return None;
    }
    // Which sources changed; every other one must be what the index vouches for.
    let known: Vec<Option<(usize, &index::SourceStamp)>> = p
        .sources
        .par_iter()
        .zip(p.stats)
        .zip(p.known)
        .enumerate()
        .map(|(i, ((source, stat), known))| {
            let known = *known;
            let stat = stat.as_ref().ok();
            match (known, stat) {
                (Some(k), Some(_)) if k.assets != source.assets => Some(None),
                (Some(k), Some((size, modified))) if k.trusted(*size, *modified) => {
                    LocalFile::all_unchanged(site_dir, &k.local_files).then_some(None)
                }
                (Some(k), Some(_)) => Some(Some((i, k))),
                _ => None,
            }
        })
        .collect::<Option<Vec<_>>>()?;
    let changed: Vec<(usize, &index::SourceStamp)> = known.into_iter().flatten().collect();
    let room = match p.stored {
        Stored::Disk(_) => quick.log_has_room(changed.len()),
        Stored::Memory(_) => true,
    };
    if changed.is_empty() || changed.len() > MAX_PATCHED || !room {
        return None;
    }
    // Sources left out of the site (no place) stay left out, or the whole build runs.
    let placed: Vec<Option<Placed>> = changed.iter().map(|(_, k)| k.placed).collect();
    timings.mark("patch: changed sources");

    // Positions of the posts, for neighbours, feeds and outbox pages.
    // A count from a damaged index file must not size an allocation.
    let posts_len = last.posts;
    if posts_len > quick.sources.len() {
        return None;
    }
    let mut by_position: Vec<Option<(&PathBuf, &Placed)>> = vec![None; posts_len];
    for (path, stamp) in &quick.sources {
        if let Some(placed) = stamp.placed.as_ref().filter(|pl| pl.post) {
            *by_position.get_mut(placed.position as usize)? = Some((path, placed));
        }
    }
    let by_position: Vec<(&PathBuf, &Placed)> = by_position.into_iter().collect::<Option<_>>()?;
    let mut neighbours_wanted: HashSet<u32> = HashSet::new();
    for pl in placed.iter().flatten().filter(|pl| pl.post) {
        if let Some(n) = pl.position.checked_sub(1) {
            neighbours_wanted.insert(n);
        }
        if (pl.position as usize) + 1 < posts_len {
            neighbours_wanted.insert(pl.position + 1);
        }
    }
    let changed_paths: HashSet<&Path> = changed
        .iter()
        .map(|(i, _)| p.sources[*i].path.as_path())
        .collect();
    let mut wanted: Vec<&Path> = changed
        .iter()
        .map(|(i, _)| p.sources[*i].path.as_path())
        .collect();
    for &n in &neighbours_wanted {
        let (path, _) = by_position[n as usize];
        if !changed_paths.contains(path.as_path()) {
            wanted.push(path.as_path());
        }
    }
    // The main index, the changed sources' parse (after their old entries) and, when an
    // edited post federates, the federation state (what its warnings compare with, and
    // the file that takes its new hash) are each a few ms at 10k posts: read together.
    let fediverse = p.config.fediverse.enabled;
    let wants_state =
        fediverse && p.options.base_url.is_none() && placed.iter().flatten().any(|pl| pl.post);
    let read_state = || wants_state.then(|| FederationState::read(site_dir));
    let parse = |mut entries: HashMap<PathBuf, SourceEntry>| {
        // Read and parse the changed sources; decline on anything a whole build would
        // handle differently.
        let volatile = p.theme.volatile;
        let changed: Vec<Changed> = changed
            .par_iter()
            .zip(&placed)
            .map(|(&(i, _), &placed)| {
                let source = &p.sources[i];
                let old = entries.get(&source.path)?.clone();
                let (_, modified) = p.stats[i].as_ref().ok()?;
                let now = stamp(std::time::SystemTime::now());
                let bytes = std::fs::read(site_dir.join(&source.path)).ok()?;
                let hash = content::hex_sha256(&bytes);
                // Same bytes but a shown image replaced: the page's sizes come from a parse.
                if hash == old.hash && LocalFile::all_unchanged(site_dir, &old.local_files) {
                    let mut entry = old.clone();
                    entry.size = bytes.len() as u64;
                    entry.modified = *modified;
                    entry.verified = now;
                    return Some(Changed {
                        source,
                        old,
                        entry,
                        doc: None,
                        placed,
                    });
                }
                let refs = super::may_reference(&bytes);
                let parsed = parse_bytes(site_dir, source, &bytes, hash, p.highlighter).ok()?;
                let mut doc = parsed.document;
                let mut entry = SourceEntry::of(
                    bytes.len() as u64,
                    *modified,
                    now,
                    LocalFile::stamped(site_dir, parsed.local_files),
                    parsed.links,
                    refs,
                    &doc,
                );
                entry.set_assets(&source.assets);
                doc.assets = source.assets.clone();
                let same_place = match placed {
                    Some(placed) => {
                        sigs::listed(entry.listed_sig, volatile, &doc) == placed.listed
                            && entry.links == old.links
                            && entry.local_files == old.local_files
                    }
                    // Still left out, and held back or not as before: the posts held back
                    // are part of the inputs' signature the quick part keeps.
                    None => {
                        let held = |e: &SourceEntry| {
                            p.load_options.hold_after.is_some_and(|now| e.held_at(now))
                        };
                        !p.load_options.keeps(&doc) && held(&old) == held(&entry)
                    }
                };
                if !same_place {
                    return None;
                }
                // Warnings that hold while the post is unchanged must stay the same: the
                // last report lists them among the others, in the site's order.
                if placed.is_some_and(|pl| pl.post) && fediverse {
                    let none = FederationState::default();
                    let lasting: Vec<FediverseWarning> =
                        check_site(p.config, std::slice::from_ref(&doc), &none)
                            .into_iter()
                            .filter(|w| w.source == doc.source)
                            .collect();
                    if lasting != old.warnings {
                        return None;
                    }
                }
                entry.warnings = old.warnings.clone();
                Some(Changed {
                    source,
                    old,
                    entry,
                    doc: Some(doc),
                    placed,
                })
            })
            .collect::<Option<_>>()?;
        let neighbours: HashMap<u32, Document> = neighbours_wanted
            .iter()
            .map(|&n| {
                let (path, _) = by_position[n as usize];
                let doc = match changed.iter().find(|c| &c.source.path == path) {
                    Some(c) => c.doc.clone().or_else(|| c.old.lite.clone())?,
                    None => entries.remove(path)?.lite?,
                };
                Some((n, doc))
            })
            .collect::<Option<_>>()?;
        Some((changed, neighbours))
    };
    let (main, state, parsed) = match p.stored {
        Stored::Disk(index_path) => {
            let at: Vec<(&Path, u64)> = wanted
                .iter()
                .map(|path| Some((*path, quick.sources.get(*path)?.log_at?)))
                .collect::<Option<_>>()?;
            let ((main, state), parsed) = rayon::join(
                || rayon::join(|| quick.load_main(index_path), read_state),
                || parse(index::read_entries(index_path, quick, &at)?),
            );
            (Main::Owned(Box::new(main?)), state, parsed)
        }
        Stored::Memory(index) => {
            let entries = wanted
                .iter()
                .map(|path| Some((path.to_path_buf(), index.sources.get(*path)?.clone())))
                .collect::<Option<_>>()?;
            let (state, parsed) = rayon::join(read_state, || parse(entries));
            (Main::Borrowed(index), state, parsed)
        }
    };
    let (changed, neighbours) = parsed?;
    if !main.describes(&p.options.out_dir) || main.warnings_for != p.common {
        return None;
    }
    timings.mark("patch: parse, main index, state");
    let urls = Urls::new(p.config);
    let interactions = match p.store {
        Some(store) => {
            let ids: Vec<String> = changed
                .iter()
                .filter(|c| c.post().is_some())
                .filter_map(|c| c.doc.as_ref())
                .map(|doc| urls.object(&doc.path))
                .collect();
            store.interactions(&ids).ok()?
        }
        None => Interactions::new(),
    };
    // The outputs that show the changed bodies, with their new signatures.
    let mut full: Vec<u64> = by_position.iter().map(|(_, pl)| pl.full).collect();
    for c in &changed {
        if let Some(n) = c.post() {
            *full.get_mut(n as usize)? = c.entry.full_sig;
        }
    }
    let listed = |n: u32| by_position.get(n as usize).map(|(_, pl)| pl.listed);
    let fed_global = sigs::federation_global(p.common);
    let mut outputs: HashMap<String, (u64, Work)> = HashMap::new();
    let mut feeds_shown = false;
    for c in &changed {
        let (Some(doc), Some(placed)) = (&c.doc, c.placed) else {
            continue;
        };
        let path = OutputFile::path_for(&doc.path);
        let n = placed.position;
        if !placed.post {
            let sig = sigs::page(c.entry.full_sig, main.html_global, &doc.path);
            outputs.insert(path, (sig, Work::Page(c.source.path.clone())));
            continue;
        }
        let sig = sigs::post_page(
            c.entry.full_sig,
            sigs::interactions(interactions.get(&urls.object(&doc.path))),
            n.checked_sub(1).and_then(listed),
            listed(n + 1),
            main.html_global,
            &doc.path,
        );
        outputs.insert(path, (sig, Work::PostPage(n)));
        if fediverse {
            let path = OutputFile::path_for(&Urls::object_path(&doc.path));
            let sig = sigs::object(fed_global, &path, c.entry.full_sig);
            outputs.insert(path, (sig, Work::Object(n)));
            for (i, page) in main.outbox_pages.iter().enumerate() {
                if page.posts.contains(&n) {
                    let shown: Vec<u64> = page
                        .posts
                        .iter()
                        .map(|&m| full.get(m as usize).copied())
                        .collect::<Option<_>>()?;
                    let sig =
                        sigs::outbox_page(fed_global, &page.path, page.number, page.pages, &shown);
                    outputs.insert(page.path.clone(), (sig, Work::Outbox(i)));
                }
            }
        }
        feeds_shown |= (n as usize) < feeds::FEED_LIMIT;
    }
    let mut feed_docs = Vec::new();
    if feeds_shown {
        let shown = &full[..posts_len.min(feeds::FEED_LIMIT)];
        let (atom, rss) = sigs::feeds(p.common, shown);
        outputs.insert(OutputFile::path_for(feeds::ATOM_PATH), (atom, Work::Atom));
        outputs.insert(OutputFile::path_for(feeds::RSS_PATH), (rss, Work::Rss));
        let sources: HashMap<&Path, &SourceFile> =
            p.sources.iter().map(|s| (s.path.as_path(), s)).collect();
        feed_docs = by_position[..shown.len()]
            .par_iter()
            .map(
                |(path, _)| match changed.iter().find(|c| &&c.source.path == path) {
                    Some(Changed { doc: Some(doc), .. }) => Some(doc.clone()),
                    _ => {
                        let source = sources.get(path.as_path())?;
                        let doc = super::parse_source(site_dir, source, p.highlighter).ok()?;
                        // Still the file the index knows (the feeds are signed with its
                        // entry): one changed since this build looked at it is the whole
                        // build's to read.
                        let known = p.quick.sources.get(path.as_path())?;
                        let meta = std::fs::metadata(site_dir.join(path.as_path())).ok()?;
                        let now = (meta.len(), stamp(meta.modified().ok()?));
                        (now == (known.size, known.modified)).then_some(doc)
                    }
                },
            )
            .collect::<Option<_>>()?;
    }
    // Outputs the index never saw written are the whole build's to make.
    if outputs
        .keys()
        .any(|path| main.outputs.get(path).is_none_or(|o| o.hash.is_none()))
    {
        return None;
    }
    // The federation state: what the edited posts' warnings compare with (the published
    // posts of it, when the store is beside the site) and, for a real build, the file it
    // keeps, which gets their new hashes.
    let (previous, state) = if fediverse
        && changed
            .iter()
            .any(|c| c.post().is_some() && c.doc.is_some())
    {
        match state {
            // A build for another base_url (serve) warns without it, as the whole build
            // does, and leaves the file alone.
            None => (Some(FederationState::default()), None),
            Some(state) => {
                let state = state?;
                let known = changed
                    .iter()
                    .filter_map(|c| c.doc.as_ref().filter(|_| c.post().is_some()))
                    .all(|doc| state.posts.contains_key(&urls.object(&doc.path)));
                if !known {
                    return None;
                }
                // Without a store, what was published is the state as it is (no copy).
                let previous = p.store.map(|store| {
                    let mut previous = state.clone();
                    super::keep_published(&mut previous, store);
                    previous
                });
                (previous, Some(state))
            }
        }
    } else {
        (None, None)
    };
    timings.mark("patch: outputs, feeds");
    Some(Planned {
        changed,
        main,
        outputs: sorted(outputs),
        neighbours,
        feed_docs,
        interactions,
        previous,
        state,
    })
}

fn sorted(outputs: HashMap<String, (u64, Work)>) -> Vec<(String, (u64, Work))> {
    let mut outputs: Vec<(String, (u64, Work))> = outputs.into_iter().collect();
    outputs.sort_by(|a, b| a.0.cmp(&b.0));
    outputs
}

/// An outbox page with fresh items for the `fresh` posts and the others' items from the
/// last build's file (when its bytes are the ones the index recorded).
fn spliced_outbox_page(
    p: &Patch,
    main: &index::BuildIndex,
    urls: &Urls,
    path: &str,
    actor: &str,
    (number, pages): (usize, usize),
    fresh: &[&Document],
) -> Option<Vec<u8>> {
    let hash = main.outputs.get(path)?.hash?;
    let bytes = std::fs::read(p.options.out_dir.join(path)).ok()?;
    if hash_bytes(&bytes) != hash {
        return None;
    }
    let old: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let mut items = old.get("orderedItems")?.as_array()?.clone();
    let mut page =
        crate::federation::documents::outbox_page(p.config, urls, actor, number, pages, fresh);
    let serde_json::Value::Array(new_items) = page.get_mut("orderedItems")?.take() else {
        return None;
    };
    for (doc, item) in fresh.iter().zip(new_items) {
        let id = urls.create_activity(&doc.path);
        let slot = items
            .iter_mut()
            .find(|old| old.get("id").and_then(|i| i.as_str()) == Some(id.as_str()))?;
        *slot = item;
    }
    page["orderedItems"] = serde_json::Value::Array(items);
    Some(crate::federation::document_bytes(&page))
}

#[cfg(test)]
mod tests {
    use super::super::{build_site, BuildOptions, BuildState};
    use crate::test_support::write;
    use std::path::Path;

    fn build(site: &Path) -> super::super::BuildReport {
        build_with(site, &mut BuildState::on_disk(site))
    }

    fn build_with(site: &Path, state: &mut BuildState) -> super::super::BuildReport {
        build_site(&BuildOptions::new(site, &site.join("public")), state).expect("build")
    }

    /// Every file under `dir` and its bytes, by relative path.
    fn files(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let rel = e.path().strip_prefix(dir).expect("inside").to_path_buf();
                (rel, std::fs::read(e.path()).expect("read"))
            })
            .collect()
    }

    /// A paragraph long enough that an edit after it leaves what lists show unchanged.
    fn post(title: &str, date: &str, extra: &str) -> String {
        format!(
            "+++\ntitle = \"{title}\"\ndate = {date}\ntags = [\"a\"]\n+++\n\n{}\n\n{extra}\n",
            "A long first paragraph that lists show the start of. ".repeat(12)
        )
    }

    /// Waits past the doubt window and builds, so every source is trusted by its time alone,
    /// then writes `content/posts/<name>` and builds again.
    fn settle_then_edit(site: &Path, name: &str, text: &str) -> super::super::BuildReport {
        std::thread::sleep(std::time::Duration::from_millis(150));
        build(site);
        write(site, &format!("content/posts/{name}"), text);
        build(site)
    }

    /// A federating site with a long post `content/posts/p{i}.md` (titled `P{i}`) per date.
    fn site_of(dates: &[&str], fediverse_extra: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = dir.path();
        write(
            site,
            "config.toml",
            &format!(
                "title = \"T\"\nbase_url = \"https://t.example\"\n[fediverse]\nusername = \"t\"\n\
                 inbox_url = \"https://inbox.t.example\"\n{fediverse_extra}"
            ),
        );
        for (i, date) in dates.iter().enumerate() {
            write(
                site,
                &format!("content/posts/p{i}.md"),
                &post(&format!("P{i}"), date, ""),
            );
        }
        dir
    }

    #[test]
    fn with_the_store_beside_the_site_a_new_reply_rebuilds_and_an_edit_is_patched() {
        use crate::store::{NewReply, ReplyState, Store, StoreLocation};
        let dir = site_of(&["2024-01-01", "2024-01-02"], "");
        let site = dir.path();
        let config = crate::config::SiteConfig::load(site).expect("config");
        let StoreLocation::Path(db) = StoreLocation::of(site, &config.inbox.store) else {
            panic!("a SQLite store");
        };
        let store = Store::open(&db).expect("store");
        build(site);
        std::thread::sleep(std::time::Duration::from_millis(150));
        build(site);
        assert_eq!(build(site).rendered, 0, "nothing changed, store included");

        // A reply arrives: the page that shows it is built again.
        let reply = crate::interactions::Reply {
            id: "https://m.example/r/1".into(),
            url: "https://m.example/@alice/1".into(),
            in_reply_to: "https://t.example/ap/posts/p0.json".into(),
            author_id: "https://m.example/users/alice".into(),
            author_name: "Alice".into(),
            author_handle: "@alice@m.example".into(),
            author_url: "https://m.example/@alice".into(),
            author_avatar: None,
            content: "<p>Nice post</p>".into(),
            published: chrono::Utc::now(),
            depth: 0,
        };
        store
            .insert_reply(&NewReply {
                reply: &reply,
                root_id: "https://t.example/ap/posts/p0.json",
                state: ReplyState::Visible,
            })
            .expect("reply");
        let report = build(site);
        assert!(report.rendered > 0, "{report:?}");
        let page = std::fs::read_to_string(site.join("public/posts/p0/index.html")).expect("page");
        assert!(page.contains("Nice post"), "{page}");

        // Then a body edit of that post is patched, and its page keeps the reply.
        let report = settle_then_edit(site, "p0.md", &post("P0", "2024-01-01", "Edited."));
        assert_eq!(report.rendered, 5, "{report:?}");
        let page = std::fs::read_to_string(site.join("public/posts/p0/index.html")).expect("page");
        assert!(
            page.contains("Edited.") && page.contains("Nice post"),
            "{page}"
        );
    }

    #[test]
    fn an_edit_past_the_listed_text_is_patched_and_a_title_change_is_not() {
        let dir = site_of(
            &["2024-01-01", "2024-01-02", "2024-01-03"],
            "outbox_page_size = 2\n",
        );
        let site = dir.path();
        build(site);
        let report = settle_then_edit(site, "p1.md", &post("P1", "2024-01-02", "An edit."));
        assert_eq!(report.parsed, 1, "{report:?}");
        // Its page, its object, the outbox page holding it and the two feeds.
        assert_eq!(report.rendered, 5, "{report:?}");
        let page = std::fs::read_to_string(site.join("public/posts/p1/index.html")).expect("page");
        assert!(page.contains("An edit."));
        let object = std::fs::read_to_string(site.join("public/ap/posts/p1.json")).expect("object");
        assert!(object.contains("An edit."));

        // The same edit, in a watching process that keeps the index, then a cold build of a
        // copy: the same bytes.
        let mut watching = BuildState::on_disk(site).watching();
        build_with(site, &mut watching);
        std::thread::sleep(std::time::Duration::from_millis(150));
        write(
            site,
            "content/posts/p0.md",
            &post("P0", "2024-01-01", "Edited while served."),
        );
        watching.only_modified([std::path::PathBuf::from("content/posts/p0.md")].into());
        let report = build_with(site, &mut watching);
        assert_eq!(report.rendered, 5, "{report:?}");
        watching.save_pending();
        let copy = tempfile::tempdir().expect("tempdir");
        for rel in [
            "config.toml",
            "content/posts/p0.md",
            "content/posts/p1.md",
            "content/posts/p2.md",
        ] {
            let text = std::fs::read_to_string(site.join(rel)).expect("source");
            write(copy.path(), rel, &text);
        }
        std::fs::copy(
            site.join("relais-key.pem"),
            copy.path().join("relais-key.pem"),
        )
        .expect("key");
        build(copy.path());
        assert_eq!(
            files(&site.join("public")),
            files(&copy.path().join("public"))
        );

        // A new title changes lists: the whole build runs and renders more.
        write(
            site,
            "content/posts/p1.md",
            &post("P1 renamed", "2024-01-02", "An edit."),
        );
        let report = build(site);
        assert!(report.rendered > 5, "{report:?}");
    }
}
