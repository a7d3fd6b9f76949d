//! The site-wide link check: every link of a post or page to another page of the site, or
//! to an anchor, must lead somewhere the build writes.
//!
//! It runs on every build over the links and anchors kept in the index (see
//! [`crate::content::PageLinks`]), so a heading renamed in one post fails the build of an
//! unchanged post that links to it.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::content::{percent_decode, ContentError, ContentErrors, Document, PageLinks};
use crate::render::OutputFile;

/// Site paths served by the inbox service, which have no file in the output.
const DYNAMIC_PREFIXES: &[&str] = &["/ap/"];

/// Checks the links of `documents` against the planned `outputs` (output file paths, as
/// [`OutputFile::path_for`] makes them). `theme_anchors` are ids every page has.
pub fn check<'a>(
    documents: impl Iterator<Item = (&'a Document, &'a PageLinks)>,
    outputs: &HashSet<&str>,
    theme_anchors: &BTreeSet<String>,
) -> Result<(), ContentErrors> {
    let documents: Vec<(&Document, &PageLinks)> = documents.collect();
    let anchors_of: HashMap<&str, &PageLinks> = documents
        .iter()
        .map(|(doc, links)| (doc.path.as_str(), *links))
        .collect();
    let mut errors = Vec::new();
    for (doc, links) in &documents {
        for link in &links.links {
            let (path, fragment) = match link.target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (link.target.as_str(), None),
            };
            let path = path.split('?').next().unwrap_or("");
            let path = if path.is_empty() {
                doc.path.as_str()
            } else {
                path
            };
            let fail = |message: String| ContentError::BrokenLink {
                path: doc.source.clone(),
                line: link.line,
                message,
            };
            let Some(page) = find_page(path, outputs) else {
                if !DYNAMIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
                    errors.push(fail(format!(
                        "link {} leads to no page of the site (nothing is built at {path})",
                        link.written
                    )));
                }
                continue;
            };
            let Some(fragment) = fragment.filter(|f| !f.is_empty()) else {
                continue;
            };
            // Anchors are known for posts and pages; generated pages (tags, home) are not
            // checked beyond their existence.
            let Some(target) = anchors_of.get(page.as_str()) else {
                continue;
            };
            let fragment = percent_decode(fragment);
            if !target.anchors.contains(&fragment) && !theme_anchors.contains(&fragment) {
                let known = if target.anchors.is_empty() {
                    "it has no headings".to_string()
                } else {
                    format!("its anchors: #{}", target.anchors.join(", #"))
                };
                let where_ = if page == doc.path {
                    "this page".to_string()
                } else {
                    page.clone()
                };
                errors.push(fail(format!(
                    "link {}: no anchor #{fragment} in {where_} ({known})",
                    link.written
                )));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        errors.sort_by(|a, b| a.path().cmp(b.path()));
        Err(ContentErrors(errors))
    }
}

/// The site path of the page `path` names, accepting a missing trailing slash
/// (`/posts/x` for `/posts/x/`), as static hosts redirect it.
fn find_page(path: &str, outputs: &HashSet<&str>) -> Option<String> {
    let decoded = percent_decode(path);
    if outputs.contains(OutputFile::path_for(&decoded).as_str()) {
        return Some(decoded);
    }
    let with_slash = format!("{decoded}/");
    (!decoded.ends_with('/') && outputs.contains(OutputFile::path_for(&with_slash).as_str()))
        .then_some(with_slash)
}
