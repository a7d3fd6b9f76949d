//! ActivityStreams documents, WebFinger, keys and HTTP signatures.

pub mod activities;
pub mod check;
pub mod documents;
pub mod fetch;
pub mod hostrules;
pub mod keys;
pub mod mentions;
pub mod note_markup;
pub mod signature;
pub mod signature9421;
pub mod urls;
pub mod vocab;

use crate::config::SiteConfig;
use crate::content::Document;

/// A file the federation stage adds to the build output: a site path (`/ap/users/blog.json`)
/// and its bytes.
#[derive(Debug, Clone)]
pub struct FederationOutput {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Every file the federation stage writes: the JSON documents and the host files for
/// `config.deploy.host`.
/// `posts` are the published posts, newest first.
pub fn output_files(
    config: &SiteConfig,
    posts: &[Document],
    public_key_pem: &str,
) -> Vec<FederationOutput> {
    if !config.fediverse.enabled {
        return Vec::new();
    }
    let mut files: Vec<FederationOutput> = documents::site_documents(config, posts, public_key_pem)
        .into_iter()
        .map(|file| FederationOutput {
            bytes: document_bytes(&file.json),
            path: file.path,
        })
        .collect();
    files.extend(
        hostrules::output_files(config)
            .into_iter()
            .map(|file| FederationOutput {
                path: file.path.to_string(),
                bytes: file.text.into_bytes(),
            }),
    );
    files
}

/// The bytes the build writes for a federation document: compact, as Mastodon serves its
/// own (indenting them was 3 % of a 10k-post cold build's CPU; `jq` shows one indented).
pub fn document_bytes(json: &serde_json::Value) -> Vec<u8> {
    // Serialising a `serde_json::Value` cannot fail: its keys are strings.
    serde_json::to_vec(json).unwrap_or_default()
}
