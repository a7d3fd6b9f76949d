//! Parsed documents kept between builds, keyed by source path, source hash and output style.
//!
//! `relais serve` keeps them in memory; `relais build` also stores one JSON file per
//! document under `<site>/.relais/cache/`, named by its key, so an entry is never stale: a
//! changed source simply has another key.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Document;

/// Bumped when the parser's output changes, so older cache files are not reused.
const FORMAT: &str = "relais-documents-1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Entry {
    pub key: String,
    pub document: Document,
    pub local_files: Vec<PathBuf>,
}

#[derive(Debug, Default)]
pub struct DocumentCache {
    memory: HashMap<PathBuf, Entry>,
    dir: Option<PathBuf>,
}

pub(super) fn key(source: &Path, source_hash: &str, style: &str) -> String {
    super::hex_sha256(format!("{FORMAT}\0{}\0{source_hash}\0{style}", source.display()).as_bytes())
}

impl DocumentCache {
    pub fn in_memory() -> DocumentCache {
        DocumentCache::default()
    }

    /// A cache that also reads and writes files in `dir`.
    pub fn on_disk(dir: PathBuf) -> DocumentCache {
        DocumentCache {
            memory: HashMap::new(),
            dir: Some(dir),
        }
    }

    pub fn len(&self) -> usize {
        self.memory.len()
    }

    pub fn is_empty(&self) -> bool {
        self.memory.is_empty()
    }

    pub(super) fn get(&self, source: &Path, key: &str) -> Option<Entry> {
        if let Some(entry) = self.memory.get(source).filter(|e| e.key == key) {
            return Some(entry.clone());
        }
        let file = self.dir.as_ref()?.join(format!("{key}.json"));
        let bytes = std::fs::read(file).ok()?;
        // An unreadable entry is a miss: the document is parsed again.
        serde_json::from_slice::<Entry>(&bytes)
            .ok()
            .filter(|e| e.key == key)
    }

    /// Keeps exactly this build's entries; `fresh` ones are written to disk, and files of
    /// entries no longer in use are removed.
    pub(super) fn replace(&mut self, entries: Vec<(Entry, bool)>) {
        if let Some(dir) = &self.dir {
            // The cache only saves time: failing to write it must not fail the build.
            if std::fs::create_dir_all(dir).is_ok() {
                entries
                    .par_iter()
                    .filter(|(_, fresh)| *fresh)
                    .for_each(|(entry, _)| {
                        if let Ok(json) = serde_json::to_vec(entry) {
                            let _ = std::fs::write(dir.join(format!("{}.json", entry.key)), json);
                        }
                    });
                let keep: HashSet<String> = entries
                    .iter()
                    .map(|(e, _)| format!("{}.json", e.key))
                    .collect();
                if let Ok(listing) = std::fs::read_dir(dir) {
                    for file in listing.flatten() {
                        if !keep.contains(file.file_name().to_string_lossy().as_ref()) {
                            let _ = std::fs::remove_file(file.path());
                        }
                    }
                }
            }
        }
        self.memory = entries
            .into_iter()
            .map(|(entry, _)| (entry.document.source.clone(), entry))
            .collect();
    }
}
