//! `relais store copy`: every row of one store into another, SQLite or PostgreSQL in either
//! direction, so a blog moves to a shared database (or back) without losing anything.
//!
//! Both schemas have the same tables and columns (`MIGRATIONS`, `postgres::MIGRATIONS`), so
//! rows copy one for one, row ids included. The source is read in one transaction (a
//! consistent snapshot) and the target written in one: a failed copy leaves it as it was.

use super::sql::{params, Cell, Conn, FromCell, ToValue, Value};
use super::{Store, StoreError};

/// Every table of the store, parents before the tables that refer to them, with its
/// columns (the first ones are its key, which orders the rows).
pub(super) const TABLES: &[(&str, &[&str])] = &[
    (
        "followers",
        &[
            "id",
            "actor_name",
            "follower_id",
            "follower_host",
            "inbox",
            "shared_inbox",
            "follow_activity_id",
            "state",
            "followed_at",
        ],
    ),
    ("seen_activities", &["activity_id", "received_at"]),
    (
        "replies",
        &[
            "id",
            "object_id",
            "in_reply_to",
            "root_id",
            "author_id",
            "author_host",
            "author_name",
            "author_handle",
            "author_url",
            "author_avatar",
            "content",
            "url",
            "published",
            "updated",
            "state",
        ],
    ),
    (
        "reactions",
        &[
            "activity_id",
            "actor_id",
            "actor_host",
            "object_id",
            "kind",
            "created_at",
        ],
    ),
    ("blocked_domains", &["domain", "source", "created_at"]),
    ("blocked_actors", &["actor_id", "source", "created_at"]),
    (
        "flags",
        &[
            "id",
            "activity_id",
            "actor_id",
            "objects",
            "content",
            "received_at",
        ],
    ),
    (
        "remote_blocks",
        &["actor_id", "actor_name", "activity_id", "received_at"],
    ),
    (
        "remote_actors",
        &[
            "id",
            "inbox",
            "shared_inbox",
            "name",
            "handle",
            "url",
            "avatar",
            "public_key_pem",
            "key_id",
            "also_known_as",
            "moved_to",
            "fetched_at",
        ],
    ),
    (
        "quote_authorizations",
        &[
            "token",
            "request_id",
            "actor_id",
            "quote_id",
            "post_id",
            "actor_name",
            "created_at",
        ],
    ),
    (
        "account_moves",
        &["actor_name", "direction", "origin", "target", "moved_at"],
    ),
    (
        "moved_followers",
        &["actor_name", "follower_id", "origin", "followed_at"],
    ),
    (
        "received_quotes",
        &[
            "quote_id",
            "actor_id",
            "actor_host",
            "post_id",
            "url",
            "token",
            "created_at",
        ],
    ),
    (
        "delivery_activities",
        &[
            "activity_id",
            "object_id",
            "actor_name",
            "body",
            "created_at",
        ],
    ),
    (
        "deliveries",
        &[
            "id",
            "activity_id",
            "object_id",
            "inbox",
            "host",
            "follower_id",
            "state",
            "attempts",
            "next_attempt_at",
            "lease_until",
            "last_status",
            "last_error",
            "created_at",
            "finished_at",
        ],
    ),
    (
        "delivery_hosts",
        &[
            "host",
            "consecutive_failures",
            "failure_days",
            "last_failure_day",
            "last_failure_at",
            "last_success_at",
            "unavailable_since",
            "next_probe_at",
        ],
    ),
    (
        "published_posts",
        &[
            "object_id",
            "actor_name",
            "content_hash",
            "updated",
            "last_activity_id",
            "last_activity_at",
            "deleted",
        ],
    ),
];

/// Tables whose `id` a database numbers itself: PostgreSQL's counter must start after the
/// copied ids.
const NUMBERED: &[&str] = &["followers", "replies", "flags", "deliveries"];

/// One column's value, owned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Owned {
    Null,
    Int(i64),
    Text(String),
}

impl FromCell for Owned {
    fn from_cell(cell: Cell<'_>) -> Result<Self, String> {
        match cell {
            Cell::Null => Ok(Owned::Null),
            Cell::Int(i) => Ok(Owned::Int(i)),
            Cell::Text(s) => Ok(Owned::Text(s.to_string())),
            Cell::Real(f) => Err(format!("an unexpected number {f}")),
        }
    }
}

impl ToValue for Owned {
    fn to_value(&self) -> Value<'_> {
        match self {
            Owned::Null => Value::Null,
            Owned::Int(i) => Value::Int(*i),
            Owned::Text(s) => Value::Text(s),
        }
    }
}

/// What a copy did: rows per table, in [`TABLES`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<(&'static str, usize)>,
    /// Rows the target held before, removed because the copy was forced.
    pub replaced: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the target store is not empty ({rows} rows, {table} among others): pass --force to replace its contents")]
    NotEmpty { table: &'static str, rows: usize },
}

/// Copies every row of `from` into `to`. A target with rows is refused unless `replace`,
/// which empties it first (in the same transaction).
pub fn copy(from: &Store, to: &Store, replace: bool) -> Result<CopyReport, CopyError> {
    let rows = from.atomically(|source| {
        source.with_conn(|c| {
            if c.is_postgres() {
                // One snapshot for every table, as SQLite's transaction gives.
                c.execute_batch("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
            }
            TABLES
                .iter()
                .map(|(table, columns)| read_table(c, table, columns))
                .collect::<Result<Vec<_>, StoreError>>()
        })
    })?;
    to.atomically(|target| {
        let (found, replaced) = target.with_conn(|c| {
            let mut replaced = 0;
            let mut found = None;
            for (table, _) in TABLES {
                let count: usize =
                    c.query_row(&format!("SELECT COUNT(*) FROM {table}"), params![], |r| {
                        r.get(0)
                    })?;
                if count > 0 {
                    found.get_or_insert(*table);
                    replaced += count;
                }
            }
            Ok((found, replaced))
        })?;
        if let (Some(table), false) = (found, replace) {
            return Err(CopyError::NotEmpty {
                table,
                rows: replaced,
            });
        }
        let tables = target.with_conn(|c| {
            if found.is_some() {
                // Children first: deliveries refer to their activity.
                for (table, _) in TABLES.iter().rev() {
                    c.execute(&format!("DELETE FROM {table}"), params![])?;
                }
            }
            let mut tables = Vec::with_capacity(TABLES.len());
            for ((table, columns), rows) in TABLES.iter().zip(&rows) {
                write_table(c, table, columns, rows)?;
                tables.push((*table, rows.len()));
            }
            if c.is_postgres() {
                for table in NUMBERED {
                    c.query_row(
                        &format!(
                            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                             COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                        ),
                        params![],
                        |r| r.get::<i64>(0),
                    )?;
                }
            }
            Ok(tables)
        })?;
        Ok(CopyReport { tables, replaced })
    })
}

/// Every row of one table, in key order.
pub(super) fn read_table(
    c: &Conn,
    table: &str,
    columns: &[&str],
) -> Result<Vec<Vec<Owned>>, StoreError> {
    let list = columns.join(", ");
    let key = if NUMBERED.contains(&table) {
        "id".to_string()
    } else {
        list.clone()
    };
    c.query_all(
        &format!("SELECT {list} FROM {table} ORDER BY {key}"),
        params![],
        |r| (0..columns.len()).map(|i| r.get(i)).collect(),
    )
}

fn write_table(
    c: &Conn,
    table: &str,
    columns: &[&str],
    rows: &[Vec<Owned>],
) -> Result<(), StoreError> {
    let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        columns.join(", "),
        marks.join(", ")
    );
    for row in rows {
        let values: Vec<Value> = row.iter().map(ToValue::to_value).collect();
        c.execute(&sql, &values)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::queue::tests::{activity, claim, finish, follower, NOW};
    use crate::store::queue::{Attempt, Recipient};
    use crate::store::replies::tests::reply;
    use crate::store::{
        testdb, BlockSource, FollowState, HostSignal, MoveDirection, NewFlag, NewReply,
        PublishedRecord, QuoteAuthorization, ReactionKind, ReplyState,
    };

    /// A row in every table.
    fn fill(store: &Store) {
        let alice = "https://m.example/users/alice";
        follower(store, "blog", alice, true, FollowState::Accepted);
        follower(
            store,
            "blog",
            "https://n.example/users/bob",
            false,
            FollowState::Pending,
        );
        store.mark_seen("https://m.example/activities/1").unwrap();
        let post = "https://blog.example/ap/posts/a.json";
        store
            .insert_reply(&NewReply {
                reply: &reply("https://m.example/notes/1", post, alice, 1),
                root_id: post,
                state: ReplyState::Visible,
            })
            .unwrap();
        store
            .add_reaction("https://m.example/likes/1", alice, post, ReactionKind::Like)
            .unwrap();
        store
            .block_domain("bad.example", BlockSource::Moderation)
            .unwrap();
        store
            .block_actor("https://ok.example/users/troll", BlockSource::Config)
            .unwrap();
        store
            .add_flag(&NewFlag {
                activity_id: Some("https://m.example/flags/1"),
                actor_id: alice,
                objects: &[post.to_string()],
                content: "spam",
            })
            .unwrap();
        store
            .record_remote_block("https://x.example/users/x", "blog", None)
            .unwrap();
        store.cache_actor(&crate::store::test_actor(alice)).unwrap();
        let auth = QuoteAuthorization {
            token: "t1".into(),
            request_id: "https://m.example/requests/1".into(),
            actor_id: alice.into(),
            quote_id: "https://m.example/notes/q".into(),
            post_id: post.into(),
            actor_name: "blog".into(),
        };
        store.authorize_quote(&auth).unwrap();
        store
            .add_received_quote(&auth, "https://m.example/@alice/q")
            .unwrap();
        store
            .record_move(
                "blog",
                MoveDirection::In,
                "https://old.example/users/me",
                "x",
            )
            .unwrap();
        store
            .record_moved_follower("blog", alice, "https://old.example/users/me")
            .unwrap();
        let mut a = activity(
            "p#create",
            Some("p"),
            &["https://a.example/inbox", "https://b.example/inbox"],
        );
        a.recipients.push(Recipient {
            inbox: "https://c.example/users/c/inbox".into(),
            follower_id: Some("https://c.example/users/c".into()),
        });
        store
            .queue_transaction(|q| {
                q.enqueue(&a, NOW)?;
                q.record_published(&PublishedRecord {
                    object_id: "p".into(),
                    actor_name: "blog".into(),
                    content_hash: "h".into(),
                    updated: None,
                    last_activity_id: Some("p#create".into()),
                    last_activity_at: NOW,
                    deleted: false,
                })
            })
            .unwrap();
        let claimed = claim(store, 1, NOW);
        let retry = Attempt::Retry {
            status: Some(503),
            error: "503".into(),
            next_attempt_at: NOW + 60,
        };
        finish(store, &claimed[0], retry, HostSignal::Unreachable, NOW);
    }

    fn dump(store: &Store) -> Vec<Vec<Vec<Owned>>> {
        store
            .with_conn(|c| {
                TABLES
                    .iter()
                    .map(|(table, columns)| read_table(c, table, columns))
                    .collect()
            })
            .unwrap()
    }

    #[test]
    fn every_table_of_the_schema_is_copied() {
        let store = Store::open_in_memory().unwrap();
        let mut tables: Vec<String> = store
            .with_sqlite(|c| {
                c.prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%'",
                )?
                .query_map([], |r| r.get(0))?
                .collect()
            })
            .unwrap();
        // The build's change counter is the store's own: a copy starts a new one.
        tables.retain(|t| t != "interaction_changes");
        tables.sort();
        let mut copied: Vec<String> = TABLES.iter().map(|(t, _)| t.to_string()).collect();
        copied.sort();
        assert_eq!(tables, copied);
        fill(&store);
        for (rows, (table, _)) in dump(&store).iter().zip(TABLES) {
            assert!(!rows.is_empty(), "the test fills {table}");
        }
    }

    #[test]
    fn a_target_with_data_is_refused_unless_forced() {
        let from = Store::open_in_memory().unwrap();
        fill(&from);
        let to = Store::open_in_memory().unwrap();
        to.mark_seen("https://m.example/other").unwrap();
        assert!(matches!(
            copy(&from, &to, false),
            Err(CopyError::NotEmpty {
                table: "seen_activities",
                rows: 1
            })
        ));
        let report = copy(&from, &to, true).unwrap();
        assert_eq!(report.replaced, 1);
        assert_eq!(dump(&to), dump(&from));
    }

    #[test]
    fn sqlite_to_postgres_and_back_keeps_every_row() {
        let Some(url) = testdb::database_url() else {
            return;
        };
        let sqlite = Store::open_in_memory().unwrap();
        fill(&sqlite);
        let pg = Store::connect(&url).unwrap();
        let report = copy(&sqlite, &pg, false).unwrap();
        assert_eq!(report.tables.len(), TABLES.len());
        assert_eq!(report.tables[0], ("followers", 2));
        assert_eq!(dump(&pg), dump(&sqlite));
        let back = Store::open_in_memory().unwrap();
        copy(&pg, &back, false).unwrap();
        assert_eq!(dump(&back), dump(&sqlite));
        // PostgreSQL numbers new rows after the copied ones.
        follower(
            &pg,
            "blog",
            "https://p.example/users/new",
            false,
            FollowState::Accepted,
        );
        let ids: Vec<i64> = pg.followers(None).unwrap().iter().map(|f| f.id).collect();
        assert_eq!(ids, [1, 2, 3]);
    }
}
