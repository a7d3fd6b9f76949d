//! Quote authorizations a publish takes back (FEP-044f, as Mastodon's `RevokeQuoteService`
//! does it): a deleted post revokes every authorization to quote it, a post whose policy
//! now forbids a quoter revokes that quoter's. Each revocation is a `Delete` of the stamp
//! sent to the quoting actor's server, and the stamp's URL answers 404 from then on.

use serde_json::Value;

use crate::config::QuotePolicy;
use crate::delivery::plan::{ActivityKind, PlannedActivity};
use crate::federation::activities::{Delete, DeleteType, WithContext};
use crate::federation::documents::read_quote_policy;
use crate::federation::urls::Urls;
use crate::federation::vocab::AS_PUBLIC;
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
    WithContext::activitystreams(Delete {
        id: format!("{stamp}#delete"),
        kind: DeleteType::Delete,
        actor: urls.actor(&auth.actor_name),
        published: None,
        to: vec![AS_PUBLIC.to_string()],
        cc: None,
        object: stamp,
    })
    .to_value()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewFollower;

    const POST: &str = "https://blog.example/ap/posts/a.json";

    fn grant(store: &Store, who: &str, token: &str) {
        store.cache_actor(&crate::store::test_actor(who)).unwrap();
        store
            .authorize_quote(&QuoteAuthorization {
                token: token.into(),
                request_id: format!("{who}#q"),
                actor_id: who.into(),
                quote_id: format!("{who}/statuses/1"),
                post_id: POST.into(),
                actor_name: "blog".into(),
            })
            .unwrap();
    }

    #[test]
    fn followers_only_keeps_the_followers_quotes_and_tells_the_others() {
        let urls = Urls::from_base("https://blog.example");
        let store = Store::open_in_memory().unwrap();
        let fan = "https://m.example/users/fan";
        let stranger = "https://n.example/users/stranger";
        grant(&store, fan, "t-fan");
        grant(&store, stranger, "t-stranger");
        store
            .upsert_follower(&NewFollower {
                actor_name: "blog",
                follower: &crate::store::test_actor(fan),
                follow_activity_id: "f",
                state: FollowState::Accepted,
            })
            .unwrap();
        let change = QuoteChange {
            post_id: POST.into(),
            actor_name: "blog".into(),
            policy: Some(QuotePolicy::Followers),
        };
        assert_eq!(
            revoke(&store, &urls, std::slice::from_ref(&change)).unwrap(),
            1
        );
        assert!(store.quote_authorization("t-fan").unwrap().is_some());
        assert!(store.quote_authorization("t-stranger").unwrap().is_none());
        let told = |token: &str| {
            store
                .deliveries_of(&format!(
                    "https://blog.example/ap/quote_authorizations/{token}#delete"
                ))
                .unwrap()
                .into_iter()
                .map(|d| d.inbox)
                .collect::<Vec<_>>()
        };
        assert_eq!(told("t-stranger"), vec!["https://n.example/inbox"]);
        assert!(told("t-fan").is_empty());
        // Deleting the post takes back the rest.
        let deleted = QuoteChange {
            policy: None,
            ..change
        };
        assert_eq!(revoke(&store, &urls, &[deleted]).unwrap(), 1);
        assert!(store.quote_authorizations_of(POST).unwrap().is_empty());
    }
}
