//! Followers of our actors, one row per (our actor, remote follower), and the followers a
//! delivery goes to.

use super::blocks::not_blocked;
use super::queue::{QueueTx, Recipient};
use super::sql::{params, Row, Value};
use super::{host_of, time, RemoteActor, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowState {
    /// Waits for `relais moderate approve-follower`.
    Pending,
    Accepted,
}

impl FollowState {
    fn as_str(self) -> &'static str {
        match self {
            FollowState::Pending => "pending",
            FollowState::Accepted => "accepted",
        }
    }

    fn parse(text: &str) -> FollowState {
        // The column is CHECK-constrained to these two values.
        if text == "accepted" {
            FollowState::Accepted
        } else {
            FollowState::Pending
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    /// Local row id, what `relais moderate` shows and takes.
    pub id: i64,
    /// Which of our actors is followed.
    pub actor_name: String,
    pub follower_id: String,
    pub inbox: String,
    pub shared_inbox: Option<String>,
    /// The `Follow` our `Accept` or `Reject` answers.
    pub follow_activity_id: String,
    pub state: FollowState,
    pub followed_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone)]
pub struct NewFollower<'a> {
    pub actor_name: &'a str,
    pub follower: &'a RemoteActor,
    pub follow_activity_id: &'a str,
    pub state: FollowState,
}

const COLUMNS: &str = "id, actor_name, follower_id, inbox, shared_inbox, follow_activity_id, \
                       state, followed_at";

fn from_row(row: &Row) -> Result<Follower, StoreError> {
    let state: String = row.get(6)?;
    Ok(Follower {
        id: row.get(0)?,
        actor_name: row.get(1)?,
        follower_id: row.get(2)?,
        inbox: row.get(3)?,
        shared_inbox: row.get(4)?,
        follow_activity_id: row.get(5)?,
        state: FollowState::parse(&state),
        followed_at: row.get(7)?,
    })
}

impl Store {
    /// Records a Follow. A repeated Follow refreshes the inboxes and the activity to answer;
    /// an accepted follower stays accepted, a pending one becomes accepted if `state` says so.
    pub fn upsert_follower(&self, new: &NewFollower) -> Result<Follower, StoreError> {
        let f = new.follower;
        let host = host_of(&f.id).unwrap_or_default();
        self.with_conn(|c| {
            c.query_row(
                &format!(
                    "INSERT INTO followers (actor_name, follower_id, follower_host, inbox, \
                     shared_inbox, follow_activity_id, state, followed_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                     ON CONFLICT (actor_name, follower_id) DO UPDATE SET \
                     inbox = excluded.inbox, shared_inbox = excluded.shared_inbox, \
                     follow_activity_id = excluded.follow_activity_id, \
                     state = CASE WHEN followers.state = 'accepted' THEN 'accepted' \
                             ELSE excluded.state END \
                     RETURNING {COLUMNS}"
                ),
                params![
                    new.actor_name,
                    f.id,
                    host,
                    f.inbox,
                    f.shared_inbox,
                    new.follow_activity_id,
                    new.state.as_str(),
                    time::now(),
                ],
                from_row,
            )
        })
    }

    pub fn follower(
        &self,
        actor_name: &str,
        follower_id: &str,
    ) -> Result<Option<Follower>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM followers WHERE actor_name = ?1 AND follower_id = ?2"
                ),
                params![actor_name, follower_id],
                from_row,
            )
        })
    }

    /// Accepts a pending follower; `None` when there is no such pending follower.
    pub fn accept_follower(&self, row_id: i64) -> Result<Option<Follower>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                &format!(
                    "UPDATE followers SET state = 'accepted' WHERE id = ?1 AND state = 'pending' \
                     RETURNING {COLUMNS}"
                ),
                params![row_id],
                from_row,
            )
        })
    }

    /// Removes a follower by row id (a rejected request); returns what was removed.
    pub fn remove_follower_row(&self, row_id: i64) -> Result<Option<Follower>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                &format!("DELETE FROM followers WHERE id = ?1 RETURNING {COLUMNS}"),
                params![row_id],
                from_row,
            )
        })
    }

    pub fn remove_follower(&self, actor_name: &str, follower_id: &str) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "DELETE FROM followers WHERE actor_name = ?1 AND follower_id = ?2",
                params![actor_name, follower_id],
            )
            .map(|n| n > 0)
        })
    }

    /// Undo of a Follow known only by its id.
    pub fn remove_follow_activity(
        &self,
        follower_id: &str,
        follow_activity_id: &str,
    ) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "DELETE FROM followers WHERE follower_id = ?1 AND follow_activity_id = ?2",
                params![follower_id, follow_activity_id],
            )
            .map(|n| n > 0)
        })
    }

    /// Every follower of every actor, oldest first, optionally of one state only.
    pub fn followers(&self, state: Option<FollowState>) -> Result<Vec<Follower>, StoreError> {
        self.with_conn(|c| {
            c.query_all(
                &format!(
                    "SELECT {COLUMNS} FROM followers WHERE CAST(?1 AS TEXT) IS NULL \
                     OR state = ?1 ORDER BY followed_at, id"
                ),
                params![state.map(FollowState::as_str)],
                from_row,
            )
        })
    }

    /// Accepted, unblocked followers of one actor: the followers collection's `totalItems`.
    pub fn follower_count(&self, actor_name: &str) -> Result<u64, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                &format!(
                    "SELECT COUNT(*) FROM followers WHERE actor_name = ?1 AND state = 'accepted' \
                     AND {}",
                    not_blocked("follower_host", "follower_id")
                ),
                params![actor_name],
                |row| row.get(0),
            )
        })
    }

    /// One page of accepted, unblocked follower ids, oldest first.
    pub fn follower_ids(
        &self,
        actor_name: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.with_conn(|c| {
            c.query_all(
                &format!(
                    "SELECT follower_id FROM followers WHERE actor_name = ?1 \
                     AND state = 'accepted' AND {} ORDER BY followed_at, id LIMIT ?2 OFFSET ?3",
                    not_blocked("follower_host", "follower_id")
                ),
                params![actor_name, limit, offset],
                |r| r.get(0),
            )
        })
    }

    /// Moves every follow of `old_id` to `new` (the answer to `Move`), keeping its state.
    /// Where `new` already follows the same actor, the old row is dropped instead.
    pub fn move_follower(&self, old_id: &str, new: &RemoteActor) -> Result<usize, StoreError> {
        let host = host_of(&new.id).unwrap_or_default();
        self.with_conn(|c| {
            let tx = c.begin()?;
            tx.execute(
                "DELETE FROM followers WHERE follower_id = ?1 AND actor_name IN \
                 (SELECT actor_name FROM followers WHERE follower_id = ?2)",
                params![old_id, new.id],
            )?;
            let moved = tx.execute(
                "UPDATE followers SET follower_id = ?2, follower_host = ?3, inbox = ?4, \
                 shared_inbox = ?5 WHERE follower_id = ?1",
                params![old_id, new.id, host, new.inbox, new.shared_inbox],
            )?;
            tx.commit()?;
            Ok(moved)
        })
    }
}

impl QueueTx<'_> {
    /// The inboxes an activity of the given actors goes to: one per shared inbox, else one
    /// per personal inbox (as Mastodon's `inboxes_for_delivery`), of their accepted
    /// followers, without blocked domains and actors, nor followers that blocked the actor
    /// they follow. A personal inbox names its follower when only one follower has it.
    /// Grouped by the database, so a million followers never sit in memory at once; sorted
    /// bytewise on both databases.
    pub fn delivery_recipients(&self, actor_names: &[&str]) -> Result<Vec<Recipient>, StoreError> {
        if actor_names.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn();
        let bytewise = if conn.is_postgres() {
            " COLLATE \"C\""
        } else {
            ""
        };
        // One placeholder per name, not a JSON list: with `IN (?1, ?2)` the planner reads
        // `followers_delivery` in order instead of sorting every follower.
        let names_sql = (1..=actor_names.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let params: Vec<Value> = actor_names.iter().map(|name| Value::Text(name)).collect();
        conn.query_all(
            &format!(
                "SELECT COALESCE(f.shared_inbox, f.inbox), \
                 CASE WHEN COUNT(f.shared_inbox) = 0 AND COUNT(DISTINCT f.follower_id) = 1 \
                 THEN MIN(f.follower_id) END \
                 FROM followers f \
                 WHERE f.state = 'accepted' AND f.actor_name IN ({names_sql}) \
                 AND {} AND NOT EXISTS (SELECT 1 FROM remote_blocks r \
                 WHERE r.actor_id = f.follower_id AND r.actor_name = f.actor_name) \
                 GROUP BY COALESCE(f.shared_inbox, f.inbox) \
                 ORDER BY COALESCE(f.shared_inbox, f.inbox){bytewise}",
                not_blocked("f.follower_host", "f.follower_id")
            ),
            &params,
            |r| {
                Ok(Recipient {
                    inbox: r.get(0)?,
                    follower_id: r.get(1)?,
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::actors::tests::actor;
    use crate::store::queue::tests::follower;
    use crate::store::test_stores;
    use crate::store::BlockSource;

    fn follow<'a>(name: &'a str, who: &'a RemoteActor, state: FollowState) -> NewFollower<'a> {
        NewFollower {
            actor_name: name,
            follower: who,
            follow_activity_id: "https://m.example/follows/1",
            state,
        }
    }

    #[test]
    fn repeated_follow_keeps_acceptance() {
        for store in test_stores() {
            let alice = actor("https://m.example/users/alice");
            let f = store
                .upsert_follower(&follow("blog", &alice, FollowState::Accepted))
                .unwrap();
            assert_eq!(f.state, FollowState::Accepted);
            let again = store
                .upsert_follower(&NewFollower {
                    follow_activity_id: "https://m.example/follows/2",
                    ..follow("blog", &alice, FollowState::Pending)
                })
                .unwrap();
            assert_eq!(again.id, f.id);
            assert_eq!(again.state, FollowState::Accepted);
            assert_eq!(again.follow_activity_id, "https://m.example/follows/2");
        }
    }

    #[test]
    fn pending_followers_are_not_counted_until_accepted() {
        for store in test_stores() {
            let alice = actor("https://m.example/users/alice");
            let f = store
                .upsert_follower(&follow("blog", &alice, FollowState::Pending))
                .unwrap();
            assert_eq!(store.follower_count("blog").unwrap(), 0);
            assert_eq!(
                store.followers(Some(FollowState::Pending)).unwrap(),
                vec![f.clone()]
            );
            let accepted = store.accept_follower(f.id).unwrap().unwrap();
            assert_eq!(accepted.state, FollowState::Accepted);
            assert_eq!(
                store.accept_follower(f.id).unwrap(),
                None,
                "already accepted"
            );
            assert_eq!(store.follower_count("blog").unwrap(), 1);
            assert_eq!(store.follower_count("ann").unwrap(), 0);
            assert_eq!(
                store.follower_ids("blog", 0, 10).unwrap(),
                vec![alice.id.clone()]
            );
        }
    }

    #[test]
    fn blocked_followers_are_neither_counted_nor_listed() {
        for store in test_stores() {
            let alice = actor("https://m.example/users/alice");
            let eve = actor("https://bad.example/users/eve");
            let mallory = actor("https://m.example/users/mallory");
            for who in [&alice, &eve, &mallory] {
                store
                    .upsert_follower(&follow("blog", who, FollowState::Accepted))
                    .unwrap();
            }
            store
                .block_domain("bad.example", BlockSource::Moderation)
                .unwrap();
            store.block_actor(&mallory.id, BlockSource::Config).unwrap();
            assert_eq!(store.follower_count("blog").unwrap(), 1);
            assert_eq!(
                store.follower_ids("blog", 0, 10).unwrap(),
                vec![alice.id.clone()]
            );
            assert_eq!(
                store.followers(None).unwrap().len(),
                3,
                "kept, only not shown"
            );
        }
    }

    #[test]
    fn undo_by_activity_id_and_by_pair() {
        for store in test_stores() {
            let alice = actor("https://m.example/users/alice");
            store
                .upsert_follower(&follow("blog", &alice, FollowState::Accepted))
                .unwrap();
            store
                .upsert_follower(&follow("ann", &alice, FollowState::Accepted))
                .unwrap();
            assert!(!store
                .remove_follow_activity(&alice.id, "https://m.example/follows/other")
                .unwrap());
            assert!(store.remove_follower("ann", &alice.id).unwrap());
            assert!(store
                .remove_follow_activity(&alice.id, "https://m.example/follows/1")
                .unwrap());
            assert!(store.followers(None).unwrap().is_empty());
        }
    }

    #[test]
    fn move_carries_follows_to_the_new_actor() {
        for store in test_stores() {
            let old = actor("https://old.example/users/alice");
            let new = actor("https://new.example/users/alice");
            store
                .upsert_follower(&follow("blog", &old, FollowState::Accepted))
                .unwrap();
            store
                .upsert_follower(&follow("ann", &old, FollowState::Pending))
                .unwrap();
            // The new account already follows `ann`: that row wins, the old one goes.
            store
                .upsert_follower(&follow("ann", &new, FollowState::Accepted))
                .unwrap();
            assert_eq!(store.move_follower(&old.id, &new).unwrap(), 1);
            let rows = store.followers(None).unwrap();
            assert_eq!(rows.len(), 2);
            assert!(rows.iter().all(|f| f.follower_id == new.id));
            assert_eq!(
                store.follower("blog", &new.id).unwrap().unwrap().inbox,
                new.inbox
            );
            assert_eq!(
                store.follower("ann", &new.id).unwrap().unwrap().state,
                FollowState::Accepted
            );
        }
    }

    #[test]
    fn followers_for_delivery_are_accepted_and_unblocked() {
        for store in test_stores() {
            follower(
                &store,
                "blog",
                "https://a.example/users/1",
                true,
                FollowState::Accepted,
            );
            follower(
                &store,
                "blog",
                "https://a.example/users/2",
                true,
                FollowState::Pending,
            );
            follower(
                &store,
                "blog",
                "https://bad.example/users/3",
                true,
                FollowState::Accepted,
            );
            follower(
                &store,
                "blog",
                "https://c.example/users/4",
                false,
                FollowState::Accepted,
            );
            follower(
                &store,
                "blog",
                "https://c.example/users/5",
                false,
                FollowState::Accepted,
            );
            follower(
                &store,
                "alice",
                "https://d.example/users/6",
                false,
                FollowState::Accepted,
            );
            follower(
                &store,
                "carol",
                "https://e.example/users/7",
                false,
                FollowState::Accepted,
            );
            store
                .block_domain("bad.example", BlockSource::Moderation)
                .unwrap();
            store
                .record_remote_block("https://c.example/users/5", "blog", None)
                .unwrap();
            let recipients = store
                .queue_transaction(|q| q.delivery_recipients(&["blog", "alice"]))
                .unwrap();
            // users/1's server by its shared inbox; users/2 pending, bad.example blocked,
            // users/5 blocked us, carol's follower not in the audience.
            assert_eq!(
                recipients,
                vec![
                    recipient("https://a.example/inbox", None),
                    recipient(
                        "https://c.example/users/4/inbox",
                        Some("https://c.example/users/4")
                    ),
                    recipient(
                        "https://d.example/users/6/inbox",
                        Some("https://d.example/users/6")
                    ),
                ]
            );
        }
    }

    fn recipient(inbox: &str, follower_id: Option<&str>) -> Recipient {
        Recipient {
            inbox: inbox.into(),
            follower_id: follower_id.map(str::to_string),
        }
    }

    /// A follower whose personal inbox is `inbox` (not derived from its id).
    fn follower_with_inbox(store: &Store, actor_name: &str, id: &str, inbox: &str) {
        let mut remote = actor(id);
        remote.inbox = inbox.into();
        remote.shared_inbox = None;
        store
            .upsert_follower(&NewFollower {
                actor_name,
                follower: &remote,
                follow_activity_id: &format!("{id}#follow-{actor_name}"),
                state: FollowState::Accepted,
            })
            .unwrap();
    }

    #[test]
    fn one_recipient_per_shared_inbox_else_per_personal_inbox() {
        for store in test_stores() {
            for (actor_name, id) in [
                ("blog", "https://m.example/u/1"),
                ("blog", "https://m.example/u/2"),
                ("alice", "https://m.example/u/3"),
                ("carol", "https://other.example/u/9"),
            ] {
                follower(&store, actor_name, id, true, FollowState::Accepted);
            }
            // One follower of two of the audience's actors: one request, still naming it.
            follower(
                &store,
                "alice",
                "https://solo.example/me",
                false,
                FollowState::Accepted,
            );
            follower(
                &store,
                "blog",
                "https://solo.example/me",
                false,
                FollowState::Accepted,
            );
            let got = store
                .queue_transaction(|q| q.delivery_recipients(&["alice", "blog"]))
                .unwrap();
            assert_eq!(
                got,
                vec![
                    recipient("https://m.example/inbox", None),
                    recipient(
                        "https://solo.example/me/inbox",
                        Some("https://solo.example/me")
                    ),
                ]
            );
            let blog = store
                .queue_transaction(|q| q.delivery_recipients(&["blog"]))
                .unwrap();
            assert_eq!(blog.len(), 2);
            let nobody = store
                .queue_transaction(|q| q.delivery_recipients(&["nobody"]))
                .unwrap();
            assert!(nobody.is_empty());
        }
    }

    #[test]
    fn a_personal_inbox_of_two_followers_names_neither() {
        for store in test_stores() {
            follower_with_inbox(
                &store,
                "blog",
                "https://x.example/a",
                "https://x.example/a/inbox",
            );
            follower_with_inbox(
                &store,
                "blog",
                "https://x.example/b",
                "https://x.example/a/inbox",
            );
            let got = store
                .queue_transaction(|q| q.delivery_recipients(&["blog"]))
                .unwrap();
            assert_eq!(got, vec![recipient("https://x.example/a/inbox", None)]);
        }
    }
}
