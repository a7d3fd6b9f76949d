//! relais: a folder of Markdown as a static blog and a fediverse account.
//!
//! The data flows through one module per stage; see ARCHITECTURE.md.

pub mod bridge;
pub mod build;
pub mod cli;
pub mod config;
pub mod content;
pub mod delivery;
pub mod deploy_files;
pub mod doctor;
pub mod federation;
pub mod import;
pub mod inbox;
pub mod interactions;
pub mod lambda;
pub mod logging;
pub mod render;
pub mod site;
pub mod store;
#[cfg(test)]
mod test_support;
