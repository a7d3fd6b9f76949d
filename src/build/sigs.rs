//! Signatures of the outputs that show posts' bodies (post and page HTML, objects, outbox
//! pages, feeds), and of what lists show of a document: one definition for the whole
//! build and for the patch of a few edited posts, which must agree to the bit.

use super::index::Sig;
use crate::content::Document;
use crate::render::theme::VolatileFields;

/// What lists show of a document: the index's `listed` signature plus the fields that
/// change with every edit, when the theme reads them.
pub fn listed(entry_listed: u64, volatile: VolatileFields, doc: &Document) -> u64 {
    Sig::new("list")
        .with(entry_listed)
        .with(volatile.word_count.then_some(doc.word_count))
        .with(volatile.reading_minutes.then_some(doc.reading_minutes))
        .with(volatile.source_hash.then_some(&doc.source_hash))
        .finish()
}

/// What a post's page shows of its replies and reactions.
pub fn interactions(found: Option<&crate::interactions::PostInteractions>) -> u64 {
    found.map_or(0, |p| {
        super::index::hash_bytes(&serde_json::to_vec(p).unwrap_or_default())
    })
}

/// A post's page: itself, its replies and reactions, and what it shows of its neighbours.
pub fn post_page(
    full: u64,
    interactions: u64,
    newer: Option<u64>,
    older: Option<u64>,
    html_global: u64,
    path: &str,
) -> u64 {
    Sig::new("post")
        .with(full)
        .with(interactions)
        .with(newer)
        .with(older)
        .with(html_global)
        .with(path)
        .finish()
}

pub fn page(full: u64, html_global: u64, path: &str) -> u64 {
    Sig::new("page")
        .with(full)
        .with(html_global)
        .with(path)
        .finish()
}

/// A post's object (`path` is the output's path).
pub fn object(fed_global: u64, path: &str, full: u64) -> u64 {
    Sig::new("object")
        .with(fed_global)
        .with(path)
        .with(full)
        .finish()
}

/// An outbox page holding the posts whose `full` signatures are given, in order.
pub fn outbox_page(fed_global: u64, path: &str, number: usize, pages: usize, full: &[u64]) -> u64 {
    Sig::new("outbox")
        .with(fed_global)
        .with(path)
        .with(number)
        .with(pages)
        .with(full)
        .finish()
}

/// What the federation documents share: the inputs besides the sources (`common`).
pub fn federation_global(common: u64) -> u64 {
    Sig::new("federation").with(common).finish()
}

/// The Atom and RSS feeds, from the `full` signatures of the posts they show.
pub fn feeds(common: u64, full: &[u64]) -> (u64, u64) {
    let feed = Sig::new("feed").with(common).with(full).finish();
    (
        Sig::new("atom").with(feed).finish(),
        Sig::new("rss").with(feed).finish(),
    )
}
