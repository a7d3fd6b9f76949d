//! See ARCHITECTURE.md.

pub mod activity;
pub mod process;
pub mod remote;
pub mod sanitize;
