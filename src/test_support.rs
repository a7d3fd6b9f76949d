//! Helpers shared by the crate's unit tests (compiled only for them).

use std::fs;
use std::path::Path;

/// Writes `text` to `root/rel`, creating the folders on the way.
pub fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}
