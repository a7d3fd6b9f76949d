//! Likes and boosts (`Announce`) of our posts.

use super::sql::params;
use super::{host_of, time, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionKind {
    Like,
    Announce,
}

impl ReactionKind {
    /// The ActivityStreams type, also what the column holds.
    pub fn as_str(self) -> &'static str {
        match self {
            ReactionKind::Like => "Like",
            ReactionKind::Announce => "Announce",
        }
    }
}

impl Store {
    /// Records a like or boost. One per (actor, object, kind): a repeated one only takes the
    /// new activity id, so that its `Undo` finds it. True when newly recorded.
    pub fn add_reaction(
        &self,
        activity_id: &str,
        actor_id: &str,
        object_id: &str,
        kind: ReactionKind,
    ) -> Result<bool, StoreError> {
        let host = host_of(actor_id).unwrap_or_default();
        self.with_conn(|c| {
            // Any conflict (this reaction, or this activity id) inserts nothing: concurrent
            // copies of one activity record it once.
            let inserted = c.execute(
                "INSERT INTO reactions (activity_id, actor_id, actor_host, object_id, kind, \
                 created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                params![
                    activity_id,
                    actor_id,
                    host,
                    object_id,
                    kind.as_str(),
                    time::now()
                ],
            )?;
            if inserted == 0 {
                c.execute(
                    "UPDATE reactions SET activity_id = ?1 WHERE actor_id = ?2 \
                     AND object_id = ?3 AND kind = ?4 \
                     AND NOT EXISTS (SELECT 1 FROM reactions WHERE activity_id = ?1)",
                    params![activity_id, actor_id, object_id, kind.as_str()],
                )?;
            }
            Ok(inserted == 1)
        })
    }

    /// Undo of a reaction known by its activity id; only its actor may undo it.
    pub fn remove_reaction(&self, activity_id: &str, actor_id: &str) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "DELETE FROM reactions WHERE activity_id = ?1 AND actor_id = ?2",
                params![activity_id, actor_id],
            )
            .map(|n| n > 0)
        })
    }

    /// Undo of a reaction that came without a usable id.
    pub fn remove_reaction_of(
        &self,
        actor_id: &str,
        object_id: &str,
        kind: ReactionKind,
    ) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "DELETE FROM reactions WHERE actor_id = ?1 AND object_id = ?2 AND kind = ?3",
                params![actor_id, object_id, kind.as_str()],
            )
            .map(|n| n > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_stores;

    const POST: &str = "https://blog.example/ap/posts/a.json";
    const ALICE: &str = "https://m.example/users/alice";

    #[test]
    fn one_like_per_actor_and_undo_by_latest_id() {
        for store in test_stores() {
            assert!(store
                .add_reaction("https://m.example/likes/1", ALICE, POST, ReactionKind::Like)
                .unwrap());
            assert!(!store
                .add_reaction("https://m.example/likes/2", ALICE, POST, ReactionKind::Like)
                .unwrap());
            assert!(store
                .add_reaction(
                    "https://m.example/boosts/1",
                    ALICE,
                    POST,
                    ReactionKind::Announce
                )
                .unwrap());
            assert!(!store
                .remove_reaction("https://m.example/likes/1", ALICE)
                .unwrap());
            assert!(!store
                .remove_reaction("https://m.example/likes/2", "https://m.example/users/bob")
                .unwrap());
            assert!(store
                .remove_reaction("https://m.example/likes/2", ALICE)
                .unwrap());
            assert!(store
                .remove_reaction_of(ALICE, POST, ReactionKind::Announce)
                .unwrap());
            assert!(!store
                .remove_reaction_of(ALICE, POST, ReactionKind::Announce)
                .unwrap());
        }
    }

    #[test]
    fn a_reused_activity_id_does_not_overwrite_another_actor() {
        for store in test_stores() {
            store
                .add_reaction("https://m.example/likes/1", ALICE, POST, ReactionKind::Like)
                .unwrap();
            assert!(!store
                .add_reaction(
                    "https://m.example/likes/1",
                    "https://m.example/users/bob",
                    POST,
                    ReactionKind::Like,
                )
                .unwrap());
            assert!(store
                .remove_reaction("https://m.example/likes/1", ALICE)
                .unwrap());
        }
    }
}
