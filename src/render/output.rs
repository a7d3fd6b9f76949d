//! The build's files, held in memory until everything rendered, then synced into the output
//! folder: only changed files are written, and files an earlier build wrote that this one no
//! longer produces are removed. Files the build never wrote are left alone.

use std::collections::{BTreeSet, HashSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;

/// Lists the files the last build wrote, one site path per line.
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
    #[error("output path {0:?} is produced twice")]
    Duplicate(String),
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

/// Syncs `files` into `out_dir`. Nothing is touched when a path is invalid or repeated.
pub fn write_output(out_dir: &Path, files: &[OutputFile]) -> Result<WriteReport, OutputError> {
    let mut seen = HashSet::with_capacity(files.len());
    for file in files {
        if !valid(&file.path) {
            return Err(OutputError::BadPath(file.path.clone()));
        }
        if !seen.insert(file.path.as_str()) {
            return Err(OutputError::Duplicate(file.path.clone()));
        }
    }
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let manifest_path = out_dir.join(MANIFEST);
    let previous: BTreeSet<String> = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text
            .lines()
            .filter(|l| valid(l))
            .map(String::from)
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Err(io(&manifest_path)(e)),
    };

    // Stale files go first: `a` may have been a file and now be a directory holding `a/x`.
    let mut removed = 0;
    for stale in previous.iter().filter(|p| !seen.contains(p.as_str())) {
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

    let changed: Vec<bool> = files
        .par_iter()
        .map(|file| sync_one(out_dir, file))
        .collect::<Result<_, _>>()?;
    let written = changed.iter().filter(|c| **c).count();

    let mut listed: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    listed.sort_unstable();
    let manifest = listed.join("\n") + "\n";
    if std::fs::read_to_string(&manifest_path).ok().as_deref() != Some(manifest.as_str()) {
        std::fs::write(&manifest_path, manifest).map_err(io(&manifest_path))?;
    }
    Ok(WriteReport {
        written,
        unchanged: files.len() - written,
        removed,
    })
}

/// Writes one file unless it already holds these bytes; returns whether it wrote.
fn sync_one(out_dir: &Path, file: &OutputFile) -> Result<bool, OutputError> {
    let target = out_dir.join(&file.path);
    let same = match &file.source {
        OutputSource::Bytes(bytes) => same_as_bytes(&target, bytes),
        OutputSource::Copy(from) => same_files(&target, from).map_err(io(from))?,
    };
    if same {
        return Ok(false);
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    if target.is_dir() {
        std::fs::remove_dir_all(&target).map_err(io(&target))?;
    }
    match &file.source {
        OutputSource::Bytes(bytes) => std::fs::write(&target, bytes).map_err(io(&target))?,
        OutputSource::Copy(from) => {
            std::fs::copy(from, &target).map_err(io(from))?;
        }
    }
    Ok(true)
}

fn same_as_bytes(target: &Path, bytes: &[u8]) -> bool {
    match std::fs::metadata(target) {
        Ok(meta) if meta.is_file() && meta.len() == bytes.len() as u64 => {
            std::fs::read(target).is_ok_and(|existing| existing == bytes)
        }
        _ => false,
    }
}

/// Whether `target` exists with the same bytes as `from`; an unreadable `from` is an error.
fn same_files(target: &Path, from: &Path) -> std::io::Result<bool> {
    let from_meta = std::fs::metadata(from)?;
    match std::fs::metadata(target) {
        Ok(meta) if meta.is_file() && meta.len() == from_meta.len() => {}
        _ => return Ok(false),
    }
    let mut a = std::fs::File::open(from)?;
    let Ok(mut b) = std::fs::File::open(target) else {
        return Ok(false);
    };
    let mut buf_a = vec![0u8; 64 * 1024];
    let mut buf_b = vec![0u8; 64 * 1024];
    loop {
        let n = a.read(&mut buf_a)?;
        if n == 0 {
            return Ok(true);
        }
        if b.read_exact(&mut buf_b[..n]).is_err() || buf_a[..n] != buf_b[..n] {
            return Ok(false);
        }
    }
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

/// Writes `bytes` to `target` with one open; a folder in the way is removed first.
pub fn write_file(target: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    match std::fs::write(target, bytes) {
        Ok(()) => Ok(()),
        Err(_) if target.is_dir() => {
            std::fs::remove_dir_all(target).map_err(io(target))?;
            std::fs::write(target, bytes).map_err(io(target))
        }
        Err(e) => Err(io(target)(e)),
    }
}

/// Copies `from` to `target`; a folder in the way is removed first.
pub fn copy_file(from: &Path, target: &Path) -> Result<(), OutputError> {
    if target.is_dir() {
        std::fs::remove_dir_all(target).map_err(io(target))?;
    }
    std::fs::copy(from, target).map_err(io(from))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn writes_changed_skips_unchanged_removes_stale() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("public");
        let asset = dir.path().join("cat.png");
        fs::write(&asset, b"png bytes").unwrap();
        let first = vec![
            OutputFile::bytes("index.html", "home"),
            OutputFile::bytes("posts/a/index.html", "a"),
            OutputFile::copy("posts/a/cat.png", &asset),
        ];
        let report = write_output(&out, &first).unwrap();
        assert_eq!(
            (report.written, report.unchanged, report.removed),
            (3, 0, 0)
        );
        assert_eq!(fs::read(out.join("posts/a/cat.png")).unwrap(), b"png bytes");

        fs::write(out.join("CNAME"), "mine").unwrap();
        let report = write_output(&out, &first).unwrap();
        assert_eq!(
            (report.written, report.unchanged, report.removed),
            (0, 3, 0)
        );

        let second = vec![
            OutputFile::bytes("index.html", "home v2"),
            OutputFile::bytes("posts/b/index.html", "b"),
        ];
        let report = write_output(&out, &second).unwrap();
        assert_eq!(
            (report.written, report.unchanged, report.removed),
            (2, 0, 2)
        );
        assert!(!out.join("posts/a").exists(), "empty directories go too");
        assert_eq!(
            fs::read_to_string(out.join("index.html")).unwrap(),
            "home v2"
        );
        assert_eq!(fs::read_to_string(out.join("CNAME")).unwrap(), "mine");
    }

    #[test]
    fn a_file_can_become_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        write_output(dir.path(), &[OutputFile::bytes("a", "file")]).unwrap();
        write_output(dir.path(), &[OutputFile::bytes("a/index.html", "dir")]).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("a/index.html")).unwrap(),
            "dir"
        );
    }

    #[test]
    fn bad_or_duplicate_paths_touch_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("public");
        for files in [
            vec![OutputFile::bytes("../x", "")],
            vec![OutputFile::bytes("/abs", "")],
            vec![OutputFile::bytes("x", "1"), OutputFile::bytes("x", "2")],
            vec![OutputFile::bytes(MANIFEST, "")],
        ] {
            assert!(write_output(&out, &files).is_err());
            assert!(!out.exists());
        }
    }

    #[test]
    fn output_paths_of_site_paths() {
        assert_eq!(OutputFile::path_for("/"), "index.html");
        assert_eq!(OutputFile::path_for("/posts/a/"), "posts/a/index.html");
        assert_eq!(OutputFile::path_for("/a%20b.png"), "a b.png");
    }
}
