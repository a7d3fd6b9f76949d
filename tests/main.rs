//! The integration tests: one binary (as ripgrep has), a module per area, helpers shared
//! in `common` (the real binary, sites, signed requests, and `common::peer`, the one
//! Mastodon-like server). `cargo test --test integration AREA::` runs one area.

#[macro_use]
mod common;

mod bridge;
mod browser;
mod build;
mod check;
mod delivery;
mod doctor;
mod federation;
mod first_hour;
mod hosts;
mod inbox;
mod inbox_env;
mod incremental;
mod init_hosts;
mod interop_fedify;
mod lambda;
mod live_site;
mod mastodon_rules;
mod moving;
mod quotes;
mod replicas;
mod replying;
mod serve;
mod serve_live;
mod signatures;
mod store_tls;
mod zola_hugo;

/// Every `tests/*.rs` is a module here: with `autotests = false`, a file left out would
/// silently never run.
#[test]
fn every_test_file_is_a_module_of_this_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && stem != "main" {
            assert!(
                main.contains(&format!("\nmod {stem};\n")),
                "tests/{stem}.rs is not declared in tests/main.rs"
            );
        }
    }
}
