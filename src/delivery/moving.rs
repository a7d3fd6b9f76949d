//! Moving the site actor to another account (`relais move`), as Mastodon's
//! `MoveService` does it: the new account must already name ours in `alsoKnownAs`
//! (followers' servers check it before they re-follow), our actor publishes `movedTo`
//! from the next build on, and a signed `Move` goes to every follower's inbox through the
//! durable queue. The inbox keeps answering for the old actor.

use serde_json::Value;

use crate::config::SiteConfig;
use crate::federation::activities::{Move, MoveType, WithContext};
use crate::federation::fetch::{FederationClient, FetchError, IdCheck};
use crate::federation::signature::SigningKey;
use crate::federation::urls::Urls;
use crate::inbox::remote::{actor_from_document, ActorDocError};
use crate::store::queue::QueuedActivity;
use crate::store::{AccountMove, MoveDirection, RemoteActor, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("cannot fetch the new account {target}: {source}")]
    Fetch { target: String, source: FetchError },
    #[error("{target} is not an actor document: {source}")]
    NotAnActor {
        target: String,
        source: ActorDocError,
    },
    #[error("{0} is our own actor: give the new account's actor URL")]
    Ourselves(String),
    #[error(
        "{target} does not list {ours} in its alsoKnownAs, so followers' servers would \
         refuse the move: on the new account, add an alias for {handle} first (Mastodon: \
         Preferences → Account → Moving from a different account → Create an account \
         alias; GoToSocial: Settings → Migration → Also known as), then run relais move again"
    )]
    NotAnAlias {
        target: String,
        ours: String,
        handle: String,
    },
    #[error(
        "cannot write fediverse.moved_to into {path}: {reason}; add `moved_to = \"{target}\"` \
         under [fediverse] yourself and run relais move again"
    )]
    Config {
        path: String,
        reason: String,
        target: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fetches the account we move to through the guarded client (signed, for servers in
/// authorized-fetch mode) and checks that it names `our_actor` as an alias.
pub async fn fetch_target(
    client: &FederationClient,
    signer: &SigningKey,
    target: &str,
    our_actor: &str,
    our_handle: &str,
) -> Result<RemoteActor, MoveError> {
    if target == our_actor {
        return Err(MoveError::Ourselves(target.to_string()));
    }
    let doc = client
        .fetch_json(target, Some(signer), IdCheck::MatchUrl)
        .await
        .map_err(|source| MoveError::Fetch {
            target: target.to_string(),
            source,
        })?;
    let actor = actor_from_document(&doc).map_err(|source| MoveError::NotAnActor {
        target: target.to_string(),
        source,
    })?;
    if !actor.also_known_as.iter().any(|aka| aka == our_actor) {
        return Err(MoveError::NotAnAlias {
            target: target.to_string(),
            ours: our_actor.to_string(),
            handle: our_handle.to_string(),
        });
    }
    Ok(actor)
}

/// `config.toml` with `fediverse.moved_to` set to `target`, its other lines untouched;
/// `None` when it already says so. The result is parsed again: a layout this edit does not
/// understand (an inline `fediverse` table, dotted keys) is an error, not a guess.
pub fn config_with_moved_to(
    text: &str,
    path: &std::path::Path,
    target: &str,
) -> Result<Option<String>, MoveError> {
    let error = |reason: String| MoveError::Config {
        path: path.display().to_string(),
        reason,
        target: target.to_string(),
    };
    let current = SiteConfig::parse(text, path).map_err(|e| error(e.to_string()))?;
    if current.fediverse.moved_to.as_deref() == Some(target) {
        return Ok(None);
    }
    let line = format!("moved_to = {}", toml::Value::String(target.to_string()));
    let lines: Vec<&str> = text.lines().collect();
    let is_header = |l: &str| l.trim_start().starts_with('[');
    let header = lines.iter().position(|l| {
        let l = l.split('#').next().unwrap_or_default().trim();
        l == "[fediverse]"
    });
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    match header {
        Some(start) => {
            let end = lines[start + 1..]
                .iter()
                .position(|l| is_header(l))
                .map_or(lines.len(), |i| start + 1 + i);
            let existing = (start + 1..end).find(|&i| {
                let key = lines[i].trim_start();
                key.starts_with("moved_to") && key["moved_to".len()..].trim_start().starts_with('=')
            });
            match existing {
                Some(i) => out[i] = line,
                None => out.insert(start + 1, line),
            }
        }
        None => {
            out.push(String::new());
            out.push("[fediverse]".into());
            out.push(line);
        }
    }
    let mut edited = out.join("\n");
    edited.push('\n');
    let parsed = SiteConfig::parse(&edited, path).map_err(|e| error(e.to_string()))?;
    if parsed.fediverse.moved_to.as_deref() != Some(target) {
        return Err(error(
            "its [fediverse] table is not where relais looked".into(),
        ));
    }
    Ok(Some(edited))
}

/// The `Move` of our actor `name` to `target` (Mastodon's `MoveSerializer`: actor and
/// object are the account that moves).
pub fn move_activity(urls: &Urls, name: &str, target: &str, serial: i64) -> Value {
    let actor = urls.actor(name);
    WithContext::activitystreams(Move {
        id: format!("{actor}#moves/{serial}"),
        kind: MoveType::Move,
        object: actor.clone(),
        actor,
        target: target.to_string(),
    })
    .to_value()
}

/// What [`enqueue_move`] queued.
#[derive(Debug, Clone)]
pub struct QueuedMove {
    pub activity_id: String,
    pub deliveries: usize,
    pub record: AccountMove,
}

/// Queues the `Move` of our actor `name` to `target` for every accepted follower (one
/// request per shared inbox) and records the move, in one transaction.
pub fn enqueue_move(
    store: &Store,
    urls: &Urls,
    name: &str,
    target: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<QueuedMove, MoveError> {
    let activity = move_activity(urls, name, target, now.timestamp());
    let activity_id = activity["id"].as_str().unwrap_or_default().to_string();
    Ok(store.atomically(|store| {
        let deliveries = store.queue_transaction(|q| {
            let recipients = q.delivery_recipients(&[name])?;
            q.enqueue(
                &QueuedActivity {
                    activity_id: activity_id.clone(),
                    object_id: None,
                    actor_name: name.to_string(),
                    body: activity.to_string(),
                    recipients,
                },
                now.timestamp(),
            )
        })?;
        let record = store.record_move(name, MoveDirection::Out, &urls.actor(name), target)?;
        Ok::<_, StoreError>(QueuedMove {
            activity_id: activity_id.clone(),
            deliveries,
            record,
        })
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FollowState, NewFollower};
    use std::path::Path;

    const BASE: &str = "title = \"T\"\nbase_url = \"https://blog.example\"\n";

    #[test]
    fn moved_to_is_written_into_the_fediverse_table_or_a_new_one() {
        let path = Path::new("config.toml");
        let target = "https://new.example/users/me";
        let with_table = format!("{BASE}# mine\n[fediverse]\nusername = \"me\" # keep\n[inbox]\nlisten = \"127.0.0.1:1\"\n");
        let edited = config_with_moved_to(&with_table, path, target)
            .unwrap()
            .unwrap();
        assert!(edited.contains("[fediverse]\nmoved_to = \"https://new.example/users/me\"\nusername = \"me\" # keep\n"), "{edited}");
        assert_eq!(config_with_moved_to(&edited, path, target).unwrap(), None);
        let again = config_with_moved_to(&edited, path, "https://other.example/u/me")
            .unwrap()
            .unwrap();
        assert_eq!(again.matches("moved_to").count(), 1, "{again}");

        let bare = config_with_moved_to(BASE, path, target).unwrap().unwrap();
        let config = SiteConfig::parse(&bare, path).unwrap();
        assert_eq!(config.fediverse.moved_to.as_deref(), Some(target));

        let dotted = format!("{BASE}fediverse.username = \"me\"\n");
        assert!(matches!(
            config_with_moved_to(&dotted, path, target),
            Err(MoveError::Config { .. })
        ));
    }

    #[test]
    fn the_move_goes_once_to_each_follower_inbox_and_is_recorded() {
        let config = SiteConfig::parse(BASE, Path::new("config.toml")).unwrap();
        let urls = Urls::new(&config);
        let store = Store::open_in_memory().unwrap();
        for (id, state) in [
            ("https://m.example/users/a", FollowState::Accepted),
            ("https://m.example/users/b", FollowState::Accepted),
            ("https://n.example/users/c", FollowState::Pending),
        ] {
            store
                .upsert_follower(&NewFollower {
                    actor_name: "blog",
                    follower: &crate::store::test_actor(id),
                    follow_activity_id: &format!("{id}#f"),
                    state,
                })
                .unwrap();
        }
        let now = chrono::Utc::now();
        let queued = enqueue_move(&store, &urls, "blog", "https://new.example/u/me", now).unwrap();
        // a and b share m.example's inbox; c is not accepted.
        assert_eq!(queued.deliveries, 1);
        assert_eq!(queued.record.target, "https://new.example/u/me");
        let activity = move_activity(&urls, "blog", "https://new.example/u/me", now.timestamp());
        assert_eq!(activity["actor"], activity["object"]);
        assert_eq!(activity["actor"], "https://blog.example/ap/users/blog.json");
        assert_eq!(activity["id"].as_str(), Some(queued.activity_id.as_str()));
    }
}
