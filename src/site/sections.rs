//! Sections: the folders of posts (`posts/`, `posts/inside-rust/`), each with its ordered
//! list of posts and, when it has an `_index.md` or is nested, its own list pages.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::content::{section_of, Document, Extra, SectionMeta, SortBy};

#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Folder under `content/`: `posts/inside-rust`.
    pub dir: String,
    /// Site path of the first list page: `/posts/inside-rust/`.
    pub path: String,
    pub title: String,
    pub description: Option<String>,
    /// The `_index.md`, when there is one.
    pub source: Option<PathBuf>,
    pub paginate_by: Option<usize>,
    pub transparent: bool,
    /// Whether the section has list pages: an `_index.md` that does not say
    /// `render = false`, or a nested folder. A bare `posts/` keeps the home page its list.
    pub listed: bool,
    pub weight: Option<i64>,
    pub extra: Extra,
    /// Indices into `Site::posts` in the section's order, including those of transparent
    /// subsections.
    pub posts: Vec<usize>,
    /// Indices into `Site::sections` of the direct subsections, by weight then folder.
    pub subsections: Vec<usize>,
}

impl Section {
    pub fn page_count(&self) -> usize {
        match self.paginate_by {
            Some(per) => self.posts.len().div_ceil(per).max(1),
            None => 1,
        }
    }

    /// Site path of list page `number` (1-based): `/posts/inside-rust/page/2/`.
    pub fn page_path(&self, number: usize) -> String {
        if number <= 1 {
            self.path.clone()
        } else {
            format!("{}page/{number}/", self.path)
        }
    }

    /// The posts (indices into `Site::posts`) on list page `number`.
    pub fn page_posts(&self, number: usize) -> &[usize] {
        let per = self.paginate_by.unwrap_or(self.posts.len().max(1));
        let start = ((number.max(1) - 1) * per).min(self.posts.len());
        let end = (start + per).min(self.posts.len());
        &self.posts[start..end]
    }
}

fn parent(dir: &str) -> Option<&str> {
    dir.rsplit_once('/').map(|(p, _)| p)
}

/// The sections of `posts` (newest first) and of the `_index.md` files in `metas`.
pub fn sections(posts: &[Document], metas: &[SectionMeta]) -> Vec<Section> {
    let post_dirs: Vec<String> = posts
        .iter()
        .map(|p| section_of(&p.source, p.kind).unwrap_or_default())
        .collect();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for dir in post_dirs.iter().chain(metas.iter().map(|m| &m.dir)) {
        let mut d = dir.as_str();
        while !d.is_empty() {
            dirs.insert(d.to_string());
            match parent(d) {
                Some(p) => d = p,
                None => break,
            }
        }
    }
    let mut all: Vec<Section> = dirs
        .iter()
        .map(|dir| {
            let meta = metas.iter().find(|m| &m.dir == dir);
            let name = dir.rsplit('/').next().unwrap_or(dir);
            Section {
                dir: dir.clone(),
                path: format!("/{dir}/"),
                title: meta
                    .and_then(|m| m.title.clone())
                    .unwrap_or_else(|| name.to_string()),
                description: meta.and_then(|m| m.description.clone()),
                source: meta.map(|m| m.source.clone()),
                paginate_by: meta.and_then(|m| m.paginate_by),
                transparent: meta.is_some_and(|m| m.transparent),
                listed: meta.map_or(dir.contains('/'), |m| m.render),
                weight: meta.and_then(|m| m.weight),
                extra: meta.map(|m| m.extra.clone()).unwrap_or_default(),
                posts: Vec::new(),
                subsections: Vec::new(),
            }
        })
        .collect();
    let index_of = |dir: &str| all.iter().position(|s| s.dir == dir);
    // A post goes to its folder, and on up while the folder it is in is transparent.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); all.len()];
    for (post, dir) in post_dirs.iter().enumerate() {
        let mut dir = dir.as_str();
        while let Some(i) = index_of(dir) {
            members[i].push(post);
            match parent(dir) {
                Some(p) if all[i].transparent => dir = p,
                _ => break,
            }
        }
    }
    let subsections: Vec<Vec<usize>> = all
        .iter()
        .map(|s| {
            let mut subs: Vec<usize> = (0..all.len())
                .filter(|&j| parent(&all[j].dir) == Some(s.dir.as_str()))
                .collect();
            subs.sort_by(|&a, &b| {
                let key = |i: usize| (all[i].weight.is_none(), all[i].weight, &all[i].dir);
                key(a).cmp(&key(b))
            });
            subs
        })
        .collect();
    let sorts: Vec<SortBy> = all
        .iter()
        .map(|s| {
            metas
                .iter()
                .find(|m| m.dir == s.dir)
                .map_or(SortBy::Date, |m| m.sort_by)
        })
        .collect();
    for (i, section) in all.iter_mut().enumerate() {
        let mut list = std::mem::take(&mut members[i]);
        sort_posts(&mut list, posts, sorts[i]);
        section.posts = list;
        section.subsections = subsections[i].clone();
    }
    all
}

/// Orders post indices (`posts` is newest first, so index order is date order).
fn sort_posts(list: &mut [usize], posts: &[Document], sort: SortBy) {
    match sort {
        SortBy::Date => list.sort_unstable(),
        SortBy::Weight => list.sort_by_key(|&i| (posts[i].weight.is_none(), posts[i].weight, i)),
        SortBy::Title => list.sort_by(|&a, &b| posts[a].title.cmp(&posts[b].title).then(a.cmp(&b))),
        SortBy::Slug => list.sort_by(|&a, &b| posts[a].slug.cmp(&posts[b].slug).then(a.cmp(&b))),
        SortBy::None => list.sort_by(|&a, &b| posts[a].source.cmp(&posts[b].source)),
    }
}
