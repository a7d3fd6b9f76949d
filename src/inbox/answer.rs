//! Sending our answer (`Accept` or `Reject`) to a follow request.
//!
//! The inbox queues its `Accept` in the same transaction as the follow itself
//! (`process::apply`), so the delivery worker sends it with retries and a crash loses
//! nothing. `relais moderate` sends its answers directly, to report at once whether the
//! follower's server took them.

use axum::body::Bytes;
use axum::http::StatusCode;

use crate::federation::fetch::{FederationClient, FetchError};
use crate::federation::signature::SigningKey;
use crate::federation::urls::Urls;
use crate::inbox::process::{follow_answer, FollowAnswer};
use crate::store::Follower;

/// POSTs the answer to the follower's own inbox (where Mastodon sends its own answers).
pub async fn send_follow_answer(
    client: &FederationClient,
    urls: &Urls,
    key: &SigningKey,
    follower: &Follower,
    answer: FollowAnswer,
) -> Result<StatusCode, FetchError> {
    let activity = follow_answer(urls, follower, answer);
    client
        .post_signed(&follower.inbox, Bytes::from(activity.to_string()), key)
        .await
}
