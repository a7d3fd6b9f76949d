//! See ARCHITECTURE.md.

pub mod activity;
pub mod remote;
pub mod sanitize;
