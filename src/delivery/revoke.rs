//! Quote authorizations a publish takes back (FEP-044f, as Mastodon's `RevokeQuoteService`
//! does it): a deleted post revokes every authorization to quote it, a post whose policy
//! now forbids a quoter revokes that quoter's. Each revocation is a `Delete` of the stamp
//! sent to the quoting actor's server, and the stamp's URL answers 404 from then on.

use serde_json::{json, Value};

use crate::config::QuotePolicy;
use crate::delivery::plan::{ActivityKind, PlannedActivity};
use crate::federation::documents::{read_quote_policy, AS_PUBLIC};
use crate::federation::urls::Urls;
use crate::store::{FollowState, QuoteAuthorization, Store, StoreError};

/// What a planned activity changes for the quotes of its post.
#[derive(Debug, Clone, PartialEq)]
pub struct QuoteChange {
    pub post_id: String,
    pub actor_name: String,
    /// `None`: the post is deleted.
    pub policy: Option<QuotePolicy>,
}

impl QuoteChange {
    /// The change an activity of a publish brings, if it can revoke anything.
    pub fn of(urls: &Urls, activity: &PlannedActivity) -> Option<QuoteChange> {
        let policy = match activity.kind {
            ActivityKind::Delete => None,
            ActivityKind::Update => Some(read_quote_policy(
                urls,
                &activity.actor_name,
                &activity.json["object"],
            )),
            _ => return None,
        };
        Some(QuoteChange {
            post_id: activity.object_id.clone(),
            actor_name: activity.actor_name.clone(),
            policy,
        })
    }
}

/// Mastodon's `DeleteQuoteAuthorizationSerializer`.
pub fn stamp_deletion(urls: &Urls, auth: &QuoteAuthorization) -> Value {
    let stamp = urls.quote_authorization(&auth.token);
    json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{stamp}#delete"),
        "type": "Delete",
        "actor": urls.actor(&auth.actor_name),
        "to": [AS_PUBLIC],
        "object": stamp,
    })
}

/// Revokes what `changes` no longer admit: queues the stamp's `Delete` for the quoting
/// actor's inbox (known from the actor cache, filled when its request arrived) and forgets
/// the authorization. Returns how many were revoked. Call inside the publish's transaction.
pub fn revoke(store: &Store, urls: &Urls, changes: &[QuoteChange]) -> Result<usize, StoreError> {
    let mut revoked = 0;
    for change in changes {
        for auth in store.quote_authorizations_of(&change.post_id)? {
            let still_allowed = match change.policy {
                None | Some(QuotePolicy::Nobody) => false,
                Some(QuotePolicy::Public) => true,
                Some(QuotePolicy::Followers) => store
                    .follower(&change.actor_name, &auth.actor_id)?
                    .is_some_and(|f| f.state == FollowState::Accepted),
            };
            if still_allowed {
                continue;
            }
            match store.cached_actor(&auth.actor_id)? {
                Some(actor) => {
                    let inbox = actor.shared_inbox.unwrap_or(actor.inbox);
                    let body = stamp_deletion(urls, &auth).to_string();
                    store.enqueue_delivery(&inbox, &body, &auth.actor_name)?;
                }
                None => tracing::info!(
                    "delivery: quote authorization of {:?} revoked without telling its \
                     server: the actor is no longer cached",
                    auth.quote_id
                ),
            }
            store.remove_quote_authorization(&auth.token)?;
            revoked += 1;
        }
    }
    Ok(revoked)
}
