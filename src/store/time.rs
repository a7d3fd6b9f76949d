//! The store's one representation of time: whole Unix seconds, a signed 64-bit integer in an
//! `INTEGER` (SQLite) or `BIGINT` (PostgreSQL) column. Comparisons, ordering and arithmetic
//! (retention, retries, leases) are integer ones, and both databases store it alike.
//!
//! Above the store a time is a `DateTime<Utc>`; the conversion happens here and only here,
//! where a value becomes a statement's parameter ([`ToValue`]) and where a column is read
//! ([`FromCell`]). The queue and host-health calls, whose callers count in seconds already,
//! take the integer itself. Where a stored time is shown, [`rfc3339`] gives the text relais
//! always showed: UTC, whole seconds, `Z`.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

use super::sql::{params, Cell, Conn, FromCell, ToValue, Value};
use super::StoreError;

/// The current time, in stored form.
pub fn now_unix() -> i64 {
    Utc::now().timestamp()
}

/// The current time at the precision the store keeps (whole seconds).
pub fn now() -> DateTime<Utc> {
    from_unix(now_unix()).unwrap_or_default()
}

/// The instant `seconds` after the Unix epoch; `None` beyond chrono's range.
pub fn from_unix(seconds: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(seconds, 0).single()
}

/// A stored time as relais shows it: RFC 3339 in UTC with whole seconds (`…T10:00:00Z`).
pub fn rfc3339(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Stored as its whole seconds: a fraction is dropped (floor), as it was when times were
/// stored as text with whole seconds.
impl ToValue for DateTime<Utc> {
    fn to_value(&self) -> Value<'_> {
        Value::Int(self.timestamp())
    }
}

impl FromCell for DateTime<Utc> {
    fn from_cell(cell: Cell<'_>) -> Result<Self, String> {
        let seconds = i64::from_cell(cell)?;
        from_unix(seconds).ok_or_else(|| format!("{seconds} is no time chrono can hold"))
    }
}

/// The columns that held RFC 3339 text before `MIGRATION` and Unix seconds since, as
/// (table, column). A value the migration could not read became 0 (1970-01-01T00:00:00Z).
pub(super) const CONVERTED: &[(&str, &str)] = &[
    ("followers", "followed_at"),
    ("seen_activities", "received_at"),
    ("replies", "published"),
    ("replies", "updated"),
    ("reactions", "created_at"),
    ("blocked_domains", "created_at"),
    ("blocked_actors", "created_at"),
    ("flags", "received_at"),
    ("remote_blocks", "received_at"),
    ("remote_actors", "fetched_at"),
    ("quote_authorizations", "created_at"),
    ("account_moves", "moved_at"),
    ("moved_followers", "followed_at"),
    ("received_quotes", "created_at"),
    ("published_posts", "updated"),
];

/// The index in each migration list of the migration that turns the text times into Unix
/// seconds (schema version 5).
pub(super) const MIGRATION: usize = 4;

/// After the migration to Unix seconds: logs, once, how many stored times it could not read
/// (now 0), so that an operator learns of them instead of finding 1970 dates later.
pub(super) fn report_unreadable(conn: &Conn) -> Result<usize, StoreError> {
    let mut total = 0;
    for (table, column) in CONVERTED {
        let count: usize = conn.query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE {column} = 0"),
            params![],
            |r| r.get(0),
        )?;
        if count > 0 {
            tracing::warn!(
                table = *table,
                column = *column,
                count,
                "stored times that were not RFC 3339 could not be converted to Unix seconds \
                 and are now 0 (1970-01-01T00:00:00Z)"
            );
        }
        total += count;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{testdb, FollowState, ReplyState, Store};

    #[test]
    fn a_time_round_trips_at_whole_seconds() {
        let time = DateTime::parse_from_rfc3339("2026-03-01T10:00:00.750+02:00")
            .unwrap()
            .with_timezone(&Utc);
        let Value::Int(seconds) = time.to_value() else {
            panic!("a time is stored as an integer");
        };
        assert_eq!(seconds, 1_772_352_000);
        let read = DateTime::<Utc>::from_cell(Cell::Int(seconds)).unwrap();
        assert_eq!(rfc3339(&read), "2026-03-01T08:00:00Z");
        assert!(DateTime::<Utc>::from_cell(Cell::Int(i64::MAX)).is_err());
        assert!(DateTime::<Utc>::from_cell(Cell::Text("2026-03-01T08:00:00Z")).is_err());
    }

    /// Rows as relais kept them at schema version 4, times as text in the shapes RFC 3339
    /// allows (`Z`, an offset, a fraction) and some that are no time at all.
    const TEXT_TIMES: &str = r#"
INSERT INTO followers (id, actor_name, follower_id, follower_host, inbox, follow_activity_id,
    state, followed_at) VALUES
    (1, 'blog', 'https://a.example/u/zulu', 'a.example', 'https://a.example/inbox', 'f1',
        'accepted', '2026-02-01T10:00:00Z'),
    (2, 'blog', 'https://b.example/u/offset', 'b.example', 'https://b.example/inbox', 'f2',
        'accepted', '2026-02-01T11:30:00+02:00'),
    (3, 'blog', 'https://c.example/u/fraction', 'c.example', 'https://c.example/inbox', 'f3',
        'pending', '2026-02-01T10:00:00.750Z'),
    (4, 'blog', 'https://d.example/u/broken', 'd.example', 'https://d.example/inbox', 'f4',
        'accepted', 'last Tuesday');
INSERT INTO seen_activities (activity_id, received_at) VALUES
    ('seen-east', '2026-01-01T00:00:00+02:00'),
    ('seen-utc', '2026-01-01T00:00:00Z');
INSERT INTO replies (id, object_id, in_reply_to, root_id, author_id, author_host, author_name,
    author_handle, author_url, author_avatar, content, url, published, updated, state) VALUES
    (1, 'https://a.example/r/1', 'https://blog.example/p', 'https://blog.example/p',
        'https://a.example/u/zulu', 'a.example', 'A', '@zulu@a.example', 'https://a.example/@zulu',
        NULL, '<p>one</p>', 'https://a.example/@zulu/1', '2026-02-01T12:00:00+02:00', NULL,
        'visible'),
    (2, 'https://a.example/r/2', 'https://blog.example/p', 'https://blog.example/p',
        'https://a.example/u/zulu', 'a.example', 'A', '@zulu@a.example', 'https://a.example/@zulu',
        NULL, '<p>two</p>', 'https://a.example/@zulu/2', '2026-02-01T09:00:00.5Z',
        '2026-02-02T00:00:00-05:00', 'visible'),
    (3, 'https://a.example/r/3', 'https://blog.example/p', 'https://blog.example/p',
        'https://a.example/u/zulu', 'a.example', 'A', '@zulu@a.example', 'https://a.example/@zulu',
        NULL, '<p>three</p>', 'https://a.example/@zulu/3', '2026-02-01T11:00:00Z', 'soon',
        'visible');
INSERT INTO reactions (activity_id, actor_id, actor_host, object_id, kind, created_at) VALUES
    ('https://a.example/like/1', 'https://a.example/u/zulu', 'a.example', 'https://blog.example/p',
        'Like', '2026-02-01T10:00:00+01:00'),
    ('https://b.example/like/1', 'https://b.example/u/offset', 'b.example', 'https://blog.example/p',
        'Like', '2026-02-01T08:30:00Z');
INSERT INTO blocked_domains (domain, source, created_at) VALUES
    ('spam.example', 'moderation', '2026-01-05T00:00:00Z'),
    ('month13.example', 'moderation', '2026-13-01T00:00:00Z');
INSERT INTO blocked_actors (actor_id, source, created_at) VALUES
    ('https://e.example/u/troll', 'config', '2026-01-05T00:00:00Z');
INSERT INTO flags (id, activity_id, actor_id, objects, content, received_at) VALUES
    (1, 'https://a.example/flag/1', 'https://a.example/u/zulu', '[]', 'spam', 'not a date');
INSERT INTO remote_blocks (actor_id, actor_name, activity_id, received_at) VALUES
    ('https://f.example/u/shy', 'blog', NULL, '2026-01-06T00:00:00Z');
INSERT INTO remote_actors (id, inbox, shared_inbox, name, handle, url, avatar, public_key_pem,
    key_id, also_known_as, moved_to, fetched_at) VALUES
    ('https://a.example/u/zulu', 'https://a.example/u/zulu/inbox', NULL, 'A', '@zulu@a.example',
        'https://a.example/@zulu', NULL, 'PEM', 'https://a.example/u/zulu#main-key', '[]', NULL,
        '2026-01-31T23:00:00-01:00');
INSERT INTO quote_authorizations (token, request_id, actor_id, quote_id, post_id, actor_name,
    created_at) VALUES
    ('t1', 'https://a.example/q/1#request', 'https://a.example/u/zulu', 'https://a.example/q/1',
        'https://blog.example/p', 'blog', '2026-01-07T00:00:00Z');
INSERT INTO account_moves (actor_name, direction, origin, target, moved_at) VALUES
    ('blog', 'in', 'https://old.example/u/me', 'https://blog.example/ap/actor',
        '2026-02-01T10:00:00.250+00:00');
INSERT INTO moved_followers (actor_name, follower_id, origin, followed_at) VALUES
    ('blog', 'https://a.example/u/zulu', 'https://old.example/u/me', '2026-02-01T10:05:00Z');
INSERT INTO received_quotes (quote_id, actor_id, actor_host, post_id, url, token, created_at)
    VALUES ('https://a.example/q/1', 'https://a.example/u/zulu', 'a.example',
        'https://blog.example/p', 'https://a.example/@zulu/q1', 't1', '2026-01-07T00:00:01Z');
INSERT INTO published_posts (object_id, actor_name, content_hash, updated, last_activity_id,
    last_activity_at, deleted) VALUES
    ('https://blog.example/p', 'blog', 'h', '2026-01-15T08:00:00+01:00',
        'https://blog.example/p#create', 1768460400, 0),
    ('https://blog.example/q', 'blog', 'h', NULL, NULL, 0, 0);
"#;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    /// What the store gives back of [`TEXT_TIMES`] once migrated, through its public calls.
    fn assert_times_read_back(store: &Store) {
        let followers = store.followers(None).unwrap();
        let by_time: Vec<(i64, String)> = followers
            .iter()
            .map(|f| (f.id, rfc3339(&f.followed_at)))
            .collect();
        assert_eq!(
            by_time,
            [
                (4, "1970-01-01T00:00:00Z".to_string()),
                (2, "2026-02-01T09:30:00Z".to_string()),
                (1, "2026-02-01T10:00:00Z".to_string()),
                (3, "2026-02-01T10:00:00Z".to_string()),
            ],
            "followers, oldest first"
        );
        assert_eq!(followers[3].state, FollowState::Pending);

        let replies = store.replies(Some(ReplyState::Visible)).unwrap();
        let replies: Vec<(i64, DateTime<Utc>, Option<DateTime<Utc>>)> = replies
            .iter()
            .map(|r| (r.id, r.reply.published, r.updated))
            .collect();
        assert_eq!(
            replies,
            [
                (
                    2,
                    at("2026-02-01T09:00:00Z"),
                    Some(at("2026-02-02T05:00:00Z"))
                ),
                (1, at("2026-02-01T10:00:00Z"), None),
                (3, at("2026-02-01T11:00:00Z"), Some(DateTime::UNIX_EPOCH)),
            ],
            "replies, oldest first"
        );
        let shown = store.post_interactions("https://blog.example/p").unwrap();
        let thread: Vec<&str> = shown.replies.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            thread,
            [
                "https://a.example/r/2",
                "https://a.example/r/1",
                "https://a.example/r/3"
            ]
        );
        let likes: Vec<&str> = shown.likes.iter().map(|r| r.actor_id.as_str()).collect();
        assert_eq!(
            likes,
            ["https://b.example/u/offset", "https://a.example/u/zulu"],
            "likes, oldest first (08:30Z before 09:00Z)"
        );

        let actor = store
            .cached_actor("https://a.example/u/zulu")
            .unwrap()
            .unwrap();
        assert_eq!(actor.fetched_at, at("2026-02-01T00:00:00Z"));
        let moves = store.account_moves().unwrap();
        assert_eq!(moves[0].moved_at, at("2026-02-01T10:00:00Z"));
        assert_eq!(store.flags().unwrap()[0].received_at, DateTime::UNIX_EPOCH);
        let records = store.queue_transaction(|q| q.published_records()).unwrap();
        let updated: Vec<Option<DateTime<Utc>>> = records.iter().map(|r| r.updated).collect();
        assert_eq!(updated, [Some(at("2026-01-15T07:00:00Z")), None]);

        // 2025-12-31T22:00Z goes, 2026-01-01T00:00Z stays.
        assert_eq!(store.prune_seen(at("2025-12-31T23:00:00Z")).unwrap(), 1);
        assert!(store.mark_seen("seen-east").unwrap());
        assert!(!store.mark_seen("seen-utc").unwrap());

        store
            .with_conn(|c| {
                for (table, column) in CONVERTED {
                    let values: Vec<Option<i64>> =
                        c.query_all(&format!("SELECT {column} FROM {table}"), params![], |r| {
                            r.get(0)
                        })?;
                    assert!(!values.is_empty(), "{table}.{column} has rows");
                    assert!(
                        values
                            .iter()
                            .flatten()
                            .all(|&v| v == 0 || v > 1_767_000_000),
                        "{table}.{column}: {values:?}"
                    );
                }
                // Follower 4, reply 3's `updated`, the flag, the 13th month's block.
                assert_eq!(report_unreadable(c)?, 4);
                Ok(())
            })
            .unwrap();
    }

    /// Every table and index of the SQLite store at `path`, with the SQL that made it.
    fn sqlite_schema(path: &std::path::Path) -> Vec<(String, Option<String>)> {
        super::super::tests::schema(&rusqlite::Connection::open(path).unwrap())
    }

    #[test]
    fn a_sqlite_store_of_version_4_keeps_every_time_as_the_same_instant() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.db");
        let conn = rusqlite::Connection::open(&old).unwrap();
        for sql in &super::super::MIGRATIONS[..MIGRATION] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", MIGRATION as i64)
            .unwrap();
        conn.execute_batch(TEXT_TIMES).unwrap();
        drop(conn);

        let store = Store::open(&old).unwrap();
        assert_times_read_back(&store);
        drop(store);

        // Same tables, columns, constraints and indexes as a store made new.
        Store::open(&dir.path().join("new.db")).unwrap();
        assert_eq!(
            sqlite_schema(&old),
            sqlite_schema(&dir.path().join("new.db"))
        );
    }

    #[test]
    fn a_postgres_store_of_version_4_keeps_every_time_as_the_same_instant() {
        let Some(url) = testdb::database_url() else {
            return;
        };
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        for sql in &super::super::postgres::MIGRATIONS[..MIGRATION] {
            client
                .batch_execute(&super::super::postgres::in_byte_order(sql))
                .unwrap();
        }
        client
            .batch_execute(&format!(
                "CREATE TABLE relais_schema (version BIGINT NOT NULL); \
                 INSERT INTO relais_schema (version) VALUES ({MIGRATION});"
            ))
            .unwrap();
        client.batch_execute(TEXT_TIMES).unwrap();
        drop(client);

        let store = Store::connect(&url).unwrap();
        assert_times_read_back(&store);

        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let types = client
            .query(
                "SELECT table_name::text, column_name::text, data_type::text \
                 FROM information_schema.columns \
                 WHERE table_schema = 'public' AND data_type <> 'bigint' \
                 AND (column_name LIKE '%\\_at' OR column_name IN ('published', 'updated'))",
                &[],
            )
            .unwrap();
        let left: Vec<(String, String, String)> = types
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert!(left.is_empty(), "times not stored as BIGINT: {left:?}");
        let functions = client
            .query(
                "SELECT 1 FROM pg_proc WHERE proname = 'relais_unix_time'",
                &[],
            )
            .unwrap();
        assert!(functions.is_empty(), "the migration's helper is dropped");
    }
}
