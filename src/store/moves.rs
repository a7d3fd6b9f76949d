//! Account moves (ActivityPub `Move`) that concern our actors: an old account of the writer
//! that moved to one of our actors (in), or one of our actors moved elsewhere by
//! `relais move` (out), and the followers that arrived through a move in.

use super::sql::{params, Row};
use super::{time, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveDirection {
    /// `origin` (an `alsoKnownAs` account) moved to our actor.
    In,
    /// Our actor moved to `target`.
    Out,
}

impl MoveDirection {
    fn as_str(self) -> &'static str {
        match self {
            MoveDirection::In => "in",
            MoveDirection::Out => "out",
        }
    }

    fn parse(text: &str) -> MoveDirection {
        // The column is CHECK-constrained to these two values.
        if text == "out" {
            MoveDirection::Out
        } else {
            MoveDirection::In
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountMove {
    /// Our actor the move concerns.
    pub actor_name: String,
    pub direction: MoveDirection,
    pub origin: String,
    pub target: String,
    /// When we learned of a move in, or sent a move out.
    pub moved_at: chrono::DateTime<chrono::Utc>,
}

/// Followers of one of our actors that arrived through a move in and still follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedFollowers {
    pub actor_name: String,
    pub origin: String,
    pub moved_at: chrono::DateTime<chrono::Utc>,
    pub followers: u64,
}

fn from_row(row: &Row) -> Result<AccountMove, StoreError> {
    let direction: String = row.get(1)?;
    Ok(AccountMove {
        actor_name: row.get(0)?,
        direction: MoveDirection::parse(&direction),
        origin: row.get(2)?,
        target: row.get(3)?,
        moved_at: row.get(4)?,
    })
}

const COLUMNS: &str = "actor_name, direction, origin, target, moved_at";

impl Store {
    /// Records a move and returns the stored one. A move in keeps the moment it was first
    /// learned of (the follows it brings are counted from there); a move out is replaced
    /// by a later one (moving on again, to another account).
    pub fn record_move(
        &self,
        actor_name: &str,
        direction: MoveDirection,
        origin: &str,
        target: &str,
    ) -> Result<AccountMove, StoreError> {
        let on_conflict = match direction {
            MoveDirection::In => "DO NOTHING",
            MoveDirection::Out => {
                "DO UPDATE SET target = excluded.target, moved_at = excluded.moved_at"
            }
        };
        self.with_conn(|c| {
            c.execute(
                &format!(
                    "INSERT INTO account_moves ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (actor_name, direction, origin) {on_conflict}"
                ),
                params![actor_name, direction.as_str(), origin, target, time::now()],
            )?;
            c.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM account_moves \
                     WHERE actor_name = ?1 AND direction = ?2 AND origin = ?3"
                ),
                params![actor_name, direction.as_str(), origin],
                from_row,
            )
        })
    }

    pub fn account_move(
        &self,
        actor_name: &str,
        direction: MoveDirection,
        origin: &str,
    ) -> Result<Option<AccountMove>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM account_moves \
                     WHERE actor_name = ?1 AND direction = ?2 AND origin = ?3"
                ),
                params![actor_name, direction.as_str(), origin],
                from_row,
            )
        })
    }

    pub fn account_moves(&self) -> Result<Vec<AccountMove>, StoreError> {
        self.with_conn(|c| {
            c.query_all(
                &format!(
                    "SELECT {COLUMNS} FROM account_moves ORDER BY moved_at, actor_name, origin"
                ),
                params![],
                from_row,
            )
        })
    }

    /// Marks `follower_id`, a follower of our `actor_name`, as arrived through the move of
    /// `origin`; a follower is counted for one move only. False when it already was.
    pub fn record_moved_follower(
        &self,
        actor_name: &str,
        follower_id: &str,
        origin: &str,
    ) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            Ok(c.execute(
                "INSERT INTO moved_followers (actor_name, follower_id, origin, followed_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![actor_name, follower_id, origin, time::now()],
            )? == 1)
        })
    }

    /// Per move in: how many of the followers it brought still follow (accepted).
    pub fn moved_follower_counts(&self) -> Result<Vec<MovedFollowers>, StoreError> {
        self.with_conn(|c| {
            c.query_all(
                "SELECT m.actor_name, m.origin, m.moved_at, \
                 (SELECT COUNT(*) FROM moved_followers mf JOIN followers f \
                  ON f.actor_name = mf.actor_name AND f.follower_id = mf.follower_id \
                  WHERE mf.actor_name = m.actor_name AND mf.origin = m.origin \
                  AND f.state = 'accepted') \
                 FROM account_moves m WHERE m.direction = 'in' \
                 ORDER BY m.moved_at, m.actor_name, m.origin",
                params![],
                |r| {
                    Ok(MovedFollowers {
                        actor_name: r.get(0)?,
                        origin: r.get(1)?,
                        moved_at: r.get(2)?,
                        followers: r.get(3)?,
                    })
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::actors::tests::actor;
    use crate::store::test_stores;
    use crate::store::{FollowState, NewFollower};

    const OLD: &str = "https://old.example/users/me";

    #[test]
    fn a_move_in_keeps_its_first_moment_and_a_move_out_is_replaced() {
        for store in test_stores() {
            let first = store
                .record_move("blog", MoveDirection::In, OLD, "https://b.example/blog")
                .unwrap();
            let again = store
                .record_move("blog", MoveDirection::In, OLD, "https://b.example/other")
                .unwrap();
            assert_eq!(first, again);
            store
                .record_move("blog", MoveDirection::Out, "me", "https://new.example/a")
                .unwrap();
            let out = store
                .record_move("blog", MoveDirection::Out, "me", "https://new.example/b")
                .unwrap();
            assert_eq!(out.target, "https://new.example/b");
            assert_eq!(store.account_moves().unwrap().len(), 2);
            assert_eq!(
                store
                    .account_move("blog", MoveDirection::Out, "me")
                    .unwrap()
                    .map(|m| m.direction),
                Some(MoveDirection::Out)
            );
        }
    }

    #[test]
    fn moved_followers_are_counted_while_they_follow() {
        for store in test_stores() {
            store
                .record_move("blog", MoveDirection::In, OLD, "https://b.example/blog")
                .unwrap();
            for id in ["https://m.example/u/1", "https://m.example/u/2"] {
                store
                    .upsert_follower(&NewFollower {
                        actor_name: "blog",
                        follower: &actor(id),
                        follow_activity_id: &format!("{id}#f"),
                        state: FollowState::Accepted,
                    })
                    .unwrap();
                assert!(store.record_moved_follower("blog", id, OLD).unwrap());
            }
            assert!(!store
                .record_moved_follower("blog", "https://m.example/u/1", OLD)
                .unwrap());
            store
                .remove_follower("blog", "https://m.example/u/2")
                .unwrap();
            let counts = store.moved_follower_counts().unwrap();
            assert_eq!(counts.len(), 1);
            assert_eq!((counts[0].origin.as_str(), counts[0].followers), (OLD, 1));
        }
    }
}
