//! Sending our answer (`Accept` or `Reject`) to a follow request.
//!
//! The answer goes straight to the follower's inbox in one signed POST. A failed answer is
//! logged, not retried: the follower's server shows the request as pending and the person
//! can follow again, which sends a new `Follow` and gets a new answer.

use axum::body::Bytes;
use axum::http::StatusCode;

use crate::federation::fetch::{FederationClient, FetchError};
use crate::federation::signature::SigningKey;
use crate::federation::urls::Urls;
use crate::inbox::process::{follow_answer, FollowAnswer};
use crate::inbox::server::InboxState;
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

/// Sends the answer in the background, so the request that caused it is answered at once.
pub fn spawn_follow_answer(state: &InboxState, follower: Follower, answer: FollowAnswer) {
    let client = state.client.clone();
    let urls = state.site.urls.clone();
    let key = state.signing_key(&follower.actor_name);
    tokio::spawn(async move {
        match send_follow_answer(&client, &urls, &key, &follower, answer).await {
            Ok(status) if status.is_success() => tracing::info!(
                "inbox: {answer:?} of {} sent to {} ({status})",
                follower.follow_activity_id,
                follower.inbox
            ),
            Ok(status) => tracing::warn!(
                "inbox: {answer:?} of {} refused by {} ({status})",
                follower.follow_activity_id,
                follower.inbox
            ),
            Err(e) => tracing::warn!(
                "inbox: {answer:?} of {} not delivered to {}: {e}",
                follower.follow_activity_id,
                follower.inbox
            ),
        }
    });
}
