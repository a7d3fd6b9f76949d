//! Writing the build's files: output paths checked, folders created once each, one open per
//! file written, stale files removed with the folders they leave empty. Which files changed
//! is the build index's business (`build::index`), not decided here by re-reading outputs.

use std::collections::{BTreeSet, HashSet};
use std::path::{Component, Path, PathBuf};

/// The manifest older builds kept inside the output folder; read once to remove their
/// stale files, then deleted.
pub const MANIFEST: &str = ".relais-manifest";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSource {
    Bytes(Vec<u8>),
    /// A file copied as is (assets can be large: they are not read into memory).
    Copy(PathBuf),
}

/// One file of the built site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Path inside the output folder, `/`-separated, no leading slash: `posts/x/index.html`.
    pub path: String,
    pub source: OutputSource,
}

impl OutputFile {
    pub fn bytes(path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> OutputFile {
        OutputFile {
            path: path.into(),
            source: OutputSource::Bytes(bytes.into()),
        }
    }

    pub fn copy(path: impl Into<String>, from: impl Into<PathBuf>) -> OutputFile {
        OutputFile {
            path: path.into(),
            source: OutputSource::Copy(from.into()),
        }
    }

    /// Output path of a site path: `/posts/x/` → `posts/x/index.html`, `/a.png` → `a.png`.
    pub fn path_for(site_path: &str) -> String {
        let trimmed = site_path.trim_start_matches('/');
        let decoded = trimmed.replace("%20", " ");
        if decoded.is_empty() || decoded.ends_with('/') {
            format!("{decoded}index.html")
        } else {
            decoded
        }
    }
}

/// What a build did to the output folder.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteReport {
    pub written: usize,
    pub unchanged: usize,
    pub removed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("output path {0:?} is not a plain relative path")]
    BadPath(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `path` is a plain relative output path (and not the legacy manifest).
pub fn valid(path: &str) -> bool {
    !path.is_empty()
        && path != MANIFEST
        && !path.contains('\\')
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn remove_empty_parents(out_dir: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        // `remove_dir` fails on a non-empty directory, which is where we stop.
        if d == out_dir || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Output paths listed by the manifest older builds kept inside the output folder.
pub fn legacy_manifest(out_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(out_dir.join(MANIFEST))
        .map(|text| {
            text.lines()
                .filter(|l| valid(l))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Removes files an earlier build wrote (and the folders they leave empty); returns how
/// many were there.
pub fn remove_files(out_dir: &Path, stale: &[String]) -> Result<usize, OutputError> {
    let mut removed = 0;
    for stale in stale.iter().filter(|p| valid(p)) {
        let path = out_dir.join(stale);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                removed += 1;
                remove_empty_parents(out_dir, &path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    Ok(removed)
}

/// Creates, once each and parents first, the folders of `paths` not among `known` (folders
/// that hold files of the last build, so exist).
pub fn create_dirs<'a>(
    out_dir: &Path,
    paths: impl Iterator<Item = &'a str>,
    known: &HashSet<&str>,
) -> Result<(), OutputError> {
    let mut dirs: BTreeSet<&str> = BTreeSet::new();
    for path in paths {
        let mut rest = path;
        while let Some((dir, _)) = rest.rsplit_once('/') {
            if known.contains(dir) || !dirs.insert(dir) {
                break;
            }
            rest = dir;
        }
    }
    // Sorted, a folder comes before the folders inside it.
    for dir in dirs {
        let path = out_dir.join(dir);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(_) => {
                // A file where a folder now goes: an output that became a folder.
                if path.is_file() {
                    std::fs::remove_file(&path).map_err(io(&path))?;
                }
                std::fs::create_dir_all(&path).map_err(io(&path))?;
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to `target` with one open; a folder in the way is removed first, and a
/// missing folder (removed by hand since the last build) is made.
pub fn write_file(target: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    match std::fs::write(target, bytes) {
        Ok(()) => Ok(()),
        Err(_) if target.is_dir() => {
            std::fs::remove_dir_all(target).map_err(io(target))?;
            std::fs::write(target, bytes).map_err(io(target))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            make_parent(target)?;
            std::fs::write(target, bytes).map_err(io(target))
        }
        Err(e) => Err(io(target)(e)),
    }
}

/// Copies `from` to `target`; a folder in the way is removed first, and a missing one made.
pub fn copy_file(from: &Path, target: &Path) -> Result<(), OutputError> {
    if target.is_dir() {
        std::fs::remove_dir_all(target).map_err(io(target))?;
    }
    match std::fs::copy(from, target) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && from.is_file() => {
            make_parent(target)?;
            std::fs::copy(from, target).map(drop).map_err(io(from))
        }
        Err(e) => Err(io(from)(e)),
    }
}

fn make_parent(target: &Path) -> Result<(), OutputError> {
    match target.parent() {
        Some(dir) => std::fs::create_dir_all(dir).map_err(io(dir)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths_of_site_paths() {
        assert_eq!(OutputFile::path_for("/"), "index.html");
        assert_eq!(OutputFile::path_for("/posts/a/"), "posts/a/index.html");
        assert_eq!(OutputFile::path_for("/a%20b.png"), "a b.png");
    }
}
