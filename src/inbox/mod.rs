//! The inbox service: receives signed activities from remote servers, keeps what they mean
//! in the store, and answers the dynamic GETs (followers, replies, interactions, WebFinger
//! and, for hosts without header rules, the built federation documents).
//!
//! Design: verification and processing are synchronous, inside the request. A forged or
//! unverifiable request is answered 401 (or 400/403/413/415/429) before anything is
//! written, and an accepted one is in the store when the 202 goes out; both are plain to
//! test. This stays within the ~10 s a sender waits because a known sender's key is in the
//! store's actor cache (no network), and an unknown sender's key and actor are fetched with
//! a 5 s bound (`receive::FETCH_TIMEOUT`). Mastodon instead queues the raw request and
//! answers 202 at once; a persisted `inbox_queue` would add a second, deferred failure path
//! for little gain at a blog's volume. What does take time without being needed for the
//! answer, the `Accept` of a follow, goes out in the background.

pub mod activity;
mod answer;
mod collections;
pub mod deploy;
mod keyfetch;
mod listener;
pub mod poll;
pub mod process;
mod public;
pub mod ratelimit;
mod receive;
pub mod remote;
pub mod sanitize;
mod server;
mod verify;

pub use answer::send_follow_answer;
pub use deploy::DEPLOY_PATH;
pub use receive::FETCH_TIMEOUT;
pub use server::{router, routes, serve, InboxState};
