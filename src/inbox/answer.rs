//! Sending our answer (`Accept` or `Reject`) to a follow request.
//!
//! The inbox queues the answer in the store's delivery queue, so the delivery worker sends
//! it with retries and a crash loses nothing. `relais moderate` sends its answers directly,
//! to report at once whether the follower's server took them.

use axum::body::Bytes;
use axum::http::StatusCode;

use crate::federation::fetch::{FederationClient, FetchError};
use crate::federation::signature::SigningKey;
use crate::federation::urls::Urls;
use crate::inbox::process::{follow_answer, FollowAnswer};
use crate::inbox::server::{blocking, InboxState};
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

/// Queues the answer for the delivery worker and wakes it; the request that caused it is
/// answered at once.
pub async fn queue_follow_answer(state: &InboxState, follower: Follower, answer: FollowAnswer) {
    let activity = follow_answer(&state.site.urls, &follower, answer).to_string();
    let inbox = follower.inbox.clone();
    let queued = blocking(&state.store, move |store| {
        store.enqueue_delivery(&follower.inbox, &activity, &follower.actor_name)
    })
    .await;
    match queued {
        Ok(()) => {
            tracing::info!("inbox: {answer:?} queued for {inbox}");
            state.wake.notify_one();
        }
        Err(e) => tracing::error!("inbox: cannot queue the {answer:?} for {inbox}: {e:?}"),
    }
}
