//! Delivery: what a build changed, sent to every follower, durably.
//!
//! `load` reads the posts of the built or live site, `plan` compares them with what
//! followers already have, the store groups the audience's followers into inboxes
//! (`QueueTx::delivery_recipients`), and `plan_and_enqueue` queues it all in one transaction
//! of the store's queue; `worker` drains the queue.

pub mod load;
pub mod moving;
pub mod plan;
pub mod policy;
pub mod revoke;
pub mod worker;

pub use load::{load_live_posts, load_published_posts, LiveSite, LoadError};
pub use plan::{content_hash, plan, ActivityKind, Plan, PlanContext, PublishedPost};
pub use policy::SendError;
pub use worker::{
    Clock, ManualClock, RunSummary, Signers, SystemClock, Transport, Worker, WorkerOptions,
};

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::config::SiteConfig;
use crate::federation::fetch::{FederationClient, Validators};
use crate::federation::keys::PrivateKey;
use crate::federation::urls::Urls;
use crate::store::queue::{QueuedActivity, Recipient};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(
        "the site has no posts but {0} were published: refusing to delete them all (build \
         and deploy the site first; if every post really is gone, run \
         `relais publish --confirm-deletes`)"
    )]
    WouldDeleteEverything(usize),
    #[error(
        "this publish would delete {deletes} of the {published} published posts, more than \
         delivery.max_delete_share ({share}) allows: nothing was sent; if these posts really \
         are gone, run `relais publish --confirm-deletes`"
    )]
    TooManyDeletes {
        deletes: usize,
        published: usize,
        share: f64,
    },
}

impl DeliveryError {
    /// A publish held back until someone confirms its deletions.
    pub fn is_held_delete(&self) -> bool {
        matches!(
            self,
            DeliveryError::WouldDeleteEverything(_) | DeliveryError::TooManyDeletes { .. }
        )
    }
}

/// What one `plan_and_enqueue` queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnqueueReport {
    pub creates: usize,
    pub updates: usize,
    pub deletes: usize,
    pub announces: usize,
    /// Posts recorded as published without being sent (first publish, older posts).
    pub skipped_old: usize,
    /// Requests queued: one per activity and inbox.
    pub deliveries: usize,
    /// Quote authorizations revoked (post deleted, or its policy now forbids the quoter).
    pub revoked_quotes: usize,
}

/// Plans what `posts` (the built site) changed since the last publish, queues every
/// activity for every follower's inbox and records the posts as published, all in one
/// transaction: a crash leaves either the whole publish queued or none of it.
///
/// Without `confirm_deletes`, a publish that deletes every post (`posts` is empty), or more
/// than one post and more than `delivery.max_delete_share` of the published ones, is
/// refused with nothing queued or recorded: it is more likely a broken build or deploy than
/// the wish to delete.
pub fn plan_and_enqueue(
    store: &Store,
    config: &SiteConfig,
    posts: &[PublishedPost],
    now: DateTime<Utc>,
    confirm_deletes: bool,
) -> Result<EnqueueReport, DeliveryError> {
    let share = config.delivery.max_delete_share;
    let urls = Urls::new(config);
    let ctx = PlanContext {
        urls: &urls,
        site_actor: &config.fediverse.username,
        now,
        first_publish_max_age: chrono::Duration::days(i64::from(
            config.delivery.first_publish_max_age_days,
        )),
    };
    let mut quote_changes = Vec::new();
    store.atomically(|store| {
        let queued = plan_in_queue(
            store,
            config,
            &ctx,
            posts,
            confirm_deletes,
            share,
            &mut quote_changes,
        )?;
        match queued {
            Ok(mut report) => {
                report.revoked_quotes = revoke::revoke(store, &urls, &quote_changes)?;
                Ok::<_, StoreError>(Ok(report))
            }
            held => Ok(held),
        }
    })?
}

/// The queue side of [`plan_and_enqueue`]; the quote policy changes of the plan go into
/// `quote_changes`.
fn plan_in_queue(
    store: &Store,
    config: &SiteConfig,
    ctx: &PlanContext<'_>,
    posts: &[PublishedPost],
    confirm_deletes: bool,
    share: f64,
    quote_changes: &mut Vec<revoke::QuoteChange>,
) -> Result<Result<EnqueueReport, DeliveryError>, StoreError> {
    let blocked = blocked_addressees(store, config)?;
    store.queue_transaction(|q| {
        let records = q.published_records()?;
        let plan = plan::plan(posts, &records, ctx);
        let deletes = plan.count(ActivityKind::Delete);
        if !confirm_deletes {
            let published = records.iter().filter(|r| !r.deleted).count();
            if posts.is_empty() && deletes > 0 {
                return Ok(Err(DeliveryError::WouldDeleteEverything(deletes)));
            }
            if deletes > 1 && deletes as f64 > share * published as f64 {
                return Ok(Err(DeliveryError::TooManyDeletes {
                    deletes,
                    published,
                    share,
                }));
            }
        }
        let mut report = EnqueueReport {
            creates: plan.count(ActivityKind::Create),
            updates: plan.count(ActivityKind::Update),
            deletes,
            announces: plan.count(ActivityKind::Announce),
            skipped_old: plan.skipped_old,
            deliveries: 0,
            revoked_quotes: 0,
        };
        quote_changes.extend(
            plan.activities
                .iter()
                .filter_map(|a| revoke::QuoteChange::of(ctx.urls, a)),
        );
        if !plan.activities.is_empty() {
            // The inboxes of each distinct audience (the site actor, or a post's authors),
            // asked of the store once: it groups followers into inboxes itself.
            let mut by_audience: HashMap<Vec<String>, Vec<Recipient>> = HashMap::new();
            let at = ctx.now.timestamp();
            for activity in plan.activities {
                let mut audience = activity.audience.clone();
                audience.sort_unstable();
                audience.dedup();
                let mut recipients = match by_audience.get(&audience) {
                    Some(known) => known.clone(),
                    None => {
                        let names: Vec<&str> = audience.iter().map(String::as_str).collect();
                        let found = q.delivery_recipients(&names)?;
                        by_audience.insert(audience, found.clone());
                        found
                    }
                };
                for inbox in addressed_inboxes(config, &blocked, &activity.json) {
                    if !recipients.iter().any(|r| r.inbox == inbox) {
                        recipients.push(Recipient {
                            inbox,
                            follower_id: None,
                        });
                    }
                }
                let queued = QueuedActivity {
                    recipients,
                    activity_id: activity.id,
                    object_id: Some(activity.object_id),
                    actor_name: activity.actor_name,
                    body: activity.json.to_string(),
                };
                report.deliveries += q.enqueue(&queued, at)?;
            }
        }
        for record in &plan.records {
            q.record_published(record)?;
        }
        Ok(Ok(report))
    })
}

/// The resolved accounts (mentioned or replied to) that are blocked, by actor id or by the
/// server of the id or of the inbox: a post names them but is not delivered to them, as
/// it would not be to a blocked follower.
fn blocked_addressees(
    store: &Store,
    config: &SiteConfig,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let resolved = &config.resolved;
    let mut blocked = std::collections::HashSet::new();
    for account in resolved
        .accounts
        .values()
        .chain(resolved.replies.values().map(|r| &r.author))
    {
        let inbox = account.shared_inbox.as_deref().unwrap_or(&account.inbox);
        if store.is_blocked(&account.id)? || store.is_blocked(inbox)? {
            blocked.insert(account.id.clone());
        }
    }
    Ok(blocked)
}

/// The inboxes of the accounts a post replies to or mentions (its object's `cc` beyond our
/// followers), as `relais build` resolved them: they receive the post like followers,
/// unless blocked.
fn addressed_inboxes(
    config: &SiteConfig,
    blocked: &std::collections::HashSet<String>,
    activity: &serde_json::Value,
) -> Vec<String> {
    let cc = activity["object"]["cc"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut inboxes: Vec<String> = cc
        .iter()
        .filter_map(serde_json::Value::as_str)
        .filter_map(|id| config.resolved.by_actor(id))
        .filter(|a| !blocked.contains(&a.id))
        .map(|a| a.shared_inbox.clone().unwrap_or_else(|| a.inbox.clone()))
        .collect();
    inboxes.sort();
    inboxes.dedup();
    inboxes
}

/// Publishes what the live site at `base_url` changed: reads its outboxes over HTTP
/// ([`load_live_posts`]), then plans and queues off the async threads. Returns the outbox
/// documents read with the result, so that a poller can ask for them again conditionally
/// even when the publish was held back.
pub async fn publish_live(
    store: &Store,
    config: &Arc<SiteConfig>,
    client: &FederationClient,
    confirm_deletes: bool,
) -> Result<
    (
        Vec<(String, Validators)>,
        Result<EnqueueReport, DeliveryError>,
    ),
    LoadError,
> {
    let LiveSite { posts, documents } = load_live_posts(config, client).await?;
    let config = config.clone();
    let queued = crate::store::blocking(store, move |store| {
        plan_and_enqueue(store, &config, &posts, Utc::now(), confirm_deletes)
    })
    .await;
    Ok((documents, queued))
}

/// Runs the delivery worker of a site until `shutdown` completes: the inbox service's
/// background delivery. Notify `wake` after queuing deliveries to have them sent at once
/// (otherwise they go within a minute). Returns once the requests in flight are finished.
pub async fn run_worker(
    store: Store,
    client: FederationClient,
    key: Arc<PrivateKey>,
    config: &SiteConfig,
    wake: Arc<Notify>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, StoreError> {
    worker(store, client, key, config)
        .with_waker(wake)
        .run(shutdown)
        .await
}

/// The queue's worker as `relais inbox` and `relais lambda` configure it.
pub fn worker(
    store: Store,
    client: FederationClient,
    key: Arc<PrivateKey>,
    config: &SiteConfig,
) -> Worker<FederationClient, SystemClock> {
    Worker::new(
        store,
        Arc::new(client),
        Signers::new(key, Urls::new(config)),
        WorkerOptions::from_config(&config.delivery),
        SystemClock,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FollowState, NewFollower, RemoteActor};
    use serde_json::json;
    use std::path::Path;

    fn config() -> SiteConfig {
        SiteConfig::parse(
            "title = \"T\"\nbase_url = \"https://blog.example\"\n\
             [[authors]]\nid = \"alice\"\nname = \"Alice\"\n",
            Path::new("config.toml"),
        )
        .unwrap()
    }

    fn follow(store: &Store, actor_name: &str, id: &str, shared_inbox: Option<&str>) {
        let remote = RemoteActor {
            id: id.into(),
            inbox: format!("{id}/inbox"),
            shared_inbox: shared_inbox.map(str::to_string),
            name: "N".into(),
            handle: "@n@x".into(),
            url: id.into(),
            avatar: None,
            public_key_pem: "PEM".into(),
            key_id: format!("{id}#main-key"),
            also_known_as: vec![],
            moved_to: None,
            fetched_at: "2027-01-01T00:00:00Z".parse().unwrap(),
        };
        store
            .upsert_follower(&NewFollower {
                actor_name,
                follower: &remote,
                follow_activity_id: &format!("{id}#follow"),
                state: FollowState::Accepted,
            })
            .unwrap();
    }

    fn post(config: &SiteConfig, slug: &str, actor: &str, content: &str) -> PublishedPost {
        let urls = Urls::new(config);
        let object = json!({
            "id": urls.object(&format!("/posts/{slug}/")),
            "type": "Note",
            "attributedTo": urls.actor(actor),
            "published": "2027-01-09T00:00:00Z",
            "content": content,
        });
        PublishedPost {
            object_id: urls.object(&format!("/posts/{slug}/")),
            actor_name: actor.into(),
            content_hash: content_hash(&object),
            object,
            updated: None,
            published: Some("2027-01-09T00:00:00Z".parse().unwrap()),
        }
    }

    fn now() -> DateTime<Utc> {
        "2027-01-10T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_publish_queues_each_activity_once_per_inbox_and_only_once() {
        let config = config();
        let store = Store::open_in_memory().unwrap();
        follow(
            &store,
            "blog",
            "https://m.example/u/1",
            Some("https://m.example/inbox"),
        );
        follow(
            &store,
            "blog",
            "https://m.example/u/2",
            Some("https://m.example/inbox"),
        );
        follow(
            &store,
            "alice",
            "https://m.example/u/3",
            Some("https://m.example/inbox"),
        );
        follow(&store, "alice", "https://solo.example/me", None);
        let posts = vec![post(&config, "a", "alice", "hi")];
        let report = plan_and_enqueue(&store, &config, &posts, now(), false).unwrap();
        // Create to m.example and solo.example; Announce by the site to m.example.
        assert_eq!(
            report,
            EnqueueReport {
                creates: 1,
                announces: 1,
                deliveries: 3,
                ..EnqueueReport::default()
            }
        );
        let create = store
            .deliveries_of("https://blog.example/ap/posts/a.json#create")
            .unwrap();
        let inboxes: Vec<&str> = create.iter().map(|d| d.inbox.as_str()).collect();
        assert_eq!(
            inboxes,
            vec!["https://m.example/inbox", "https://solo.example/me/inbox"]
        );
        let again = plan_and_enqueue(&store, &config, &posts, now(), false).unwrap();
        assert_eq!(again, EnqueueReport::default());
        assert_eq!(store.queue_counts(0).unwrap().pending(), 3);
    }

    #[test]
    fn an_empty_build_does_not_delete_everything_unless_told() {
        let config = config();
        let store = Store::open_in_memory().unwrap();
        follow(
            &store,
            "blog",
            "https://m.example/u/1",
            Some("https://m.example/inbox"),
        );
        let posts = vec![
            post(&config, "a", "blog", "hi"),
            post(&config, "b", "blog", "ho"),
        ];
        plan_and_enqueue(&store, &config, &posts, now(), false).unwrap();
        let refused = plan_and_enqueue(&store, &config, &[], now(), false);
        assert!(matches!(
            refused,
            Err(DeliveryError::WouldDeleteEverything(2))
        ));
        // Nothing was recorded by the refused publish.
        let one_gone = plan_and_enqueue(&store, &config, &posts[..1], now(), false).unwrap();
        assert_eq!(one_gone.deletes, 1);
        let all_gone = plan_and_enqueue(&store, &config, &[], now(), true).unwrap();
        assert_eq!((all_gone.deletes, all_gone.deliveries), (1, 1));
    }

    #[test]
    fn deleting_more_than_the_share_waits_for_confirmation() {
        let config = config();
        assert_eq!(config.delivery.max_delete_share, 0.25);
        let store = Store::open_in_memory().unwrap();
        follow(
            &store,
            "blog",
            "https://m.example/u/1",
            Some("https://m.example/inbox"),
        );
        let posts: Vec<PublishedPost> = (0..8)
            .map(|i| post(&config, &format!("p{i}"), "blog", "hi"))
            .collect();
        plan_and_enqueue(&store, &config, &posts, now(), false).unwrap();
        let pending = store.queue_counts(0).unwrap().pending();
        // 3 of 8 is more than a quarter: held, nothing queued or recorded.
        let refused = plan_and_enqueue(&store, &config, &posts[3..], now(), false);
        assert!(
            matches!(
                refused,
                Err(DeliveryError::TooManyDeletes {
                    deletes: 3,
                    published: 8,
                    ..
                })
            ),
            "{refused:?}"
        );
        let message = refused.unwrap_err().to_string();
        assert!(message.contains("--confirm-deletes"), "{message}");
        assert_eq!(store.queue_counts(0).unwrap().pending(), pending);
        // 2 of 8 is a quarter, not more: sent.
        let two = plan_and_enqueue(&store, &config, &posts[2..], now(), false).unwrap();
        assert_eq!(two.deletes, 2);
        // One deletion always goes, whatever the share.
        let one = plan_and_enqueue(&store, &config, &posts[3..], now(), false).unwrap();
        assert_eq!(one.deletes, 1);
        // Confirmed, the rest go too.
        let rest = plan_and_enqueue(&store, &config, &posts[5..], now(), false);
        assert!(rest.is_err(), "2 of 5 is more than a quarter");
        let rest = plan_and_enqueue(&store, &config, &posts[5..], now(), true).unwrap();
        assert_eq!(rest.deletes, 2);
    }
}
