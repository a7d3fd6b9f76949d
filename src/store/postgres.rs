//! The PostgreSQL side of the store: where the configuration puts the store, a small pool
//! of connections, and the schema's migrations.
//!
//! The sync `postgres` client runs where store work runs (tokio's blocking threads, through
//! [`super::blocking`]). The pool is a guarded list of idle connections: a store call takes
//! one, or opens one while fewer than [`POOL_SIZE`] are open, or waits for one to come back;
//! no pool crate fits both that and the sync client without a thread of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::sql::{off_runtime, params, Conn, PgConn};
use super::StoreError;

mod tls;

/// Connections one process keeps open at most: the inbox's requests and its delivery
/// worker, each a short transaction.
pub const POOL_SIZE: usize = 16;

/// Where the store is: a SQLite file, or a PostgreSQL database named by its URL.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Path(PathBuf),
    Url(String),
}

impl StoreLocation {
    /// The store as configured (`inbox.store`, `RELAIS_STORE`, `RELAIS_STORE_URL`): a value
    /// starting with `postgres://` or `postgresql://` is a URL, anything else a path relative
    /// to the site directory.
    pub fn of(site_dir: &Path, configured: &Path) -> StoreLocation {
        match configured.to_str() {
            Some(text) if is_url(text) => StoreLocation::Url(text.to_string()),
            _ => StoreLocation::Path(site_dir.join(configured)),
        }
    }

    /// For messages: the path, or the URL without its password.
    pub fn display(&self) -> String {
        match self {
            StoreLocation::Path(path) => path.display().to_string(),
            StoreLocation::Url(url) => redact_url(url),
        }
    }

    /// Whether there is a store to read: a SQLite file that exists, or any database.
    pub fn exists(&self) -> bool {
        match self {
            StoreLocation::Path(path) => path.exists(),
            StoreLocation::Url(_) => true,
        }
    }
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.display())
    }
}

/// Whether a configured store is a PostgreSQL URL.
pub fn is_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// The URL with its password replaced by `***`: what logs and errors may show.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Only fails for URLs that cannot have a password; this one has one.
                let _ = parsed.set_password(Some("***"));
            }
            // A password may also come as a query parameter.
            let query: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" { "***".into() } else { v };
                    (k.into_owned(), v.into_owned())
                })
                .collect();
            if !query.is_empty() {
                parsed.query_pairs_mut().clear().extend_pairs(query);
            }
            parsed.to_string()
        }
        Err(_) => "(an unreadable PostgreSQL URL)".into(),
    }
}

pub(super) struct Pool {
    config: postgres::Config,
    /// TLS as the URL's `sslmode` and `sslrootcert` ask (see [`tls`]).
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// The URL without its password, for errors.
    shown: String,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Arc<PgConn>>,
    open: usize,
}

impl Pool {
    pub(super) fn new(url: &str) -> Result<Pool, StoreError> {
        let shown = redact_url(url);
        let settings = |reason| StoreError::ConnectSettings {
            url: shown.clone(),
            reason,
        };
        let (rest, requested) = tls::split(url).map_err(settings)?;
        let mut config: postgres::Config = rest.parse().map_err(|source| StoreError::Connect {
            url: shown.clone(),
            source,
        })?;
        let tls = tls::Tls::new(&requested, config.get_hosts(), config.get_hostaddrs())
            .map_err(settings)?;
        config.ssl_mode(tls.ssl_mode());
        if tls.unverified {
            tracing::warn!(
                store = %shown,
                sslmode = tls.mode_name(),
                "the PostgreSQL server's certificate is not checked: \
                 use sslmode=verify-full (with sslrootcert for a private CA)"
            );
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("relais");
        let pool = Pool {
            config,
            tls: tls.connector,
            shown,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        };
        // Fail now, with the URL, rather than at the first request.
        drop(pool.get()?);
        Ok(pool)
    }

    pub(super) fn get(&self) -> Result<PooledConn<'_>, StoreError> {
        let mut state = self.state.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(PooledConn {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if state.open < POOL_SIZE {
                state.open += 1;
                drop(state);
                return match off_runtime(|| self.config.connect(self.tls.clone())) {
                    Ok(client) => Ok(PooledConn {
                        pool: self,
                        conn: Some(Arc::new(PgConn::new(client))),
                    }),
                    Err(source) => {
                        self.state.lock().open -= 1;
                        self.returned.notify_one();
                        Err(StoreError::Connect {
                            url: self.shown.clone(),
                            source,
                        })
                    }
                };
            }
            self.returned.wait(&mut state);
        }
    }
}

/// A connection taken from the pool; it goes back when dropped (or is closed, when broken
/// or left inside a transaction).
pub(super) struct PooledConn<'p> {
    pool: &'p Pool,
    conn: Option<Arc<PgConn>>,
}

impl PooledConn<'_> {
    pub(super) fn shared(&self) -> Arc<PgConn> {
        match &self.conn {
            Some(conn) => conn.clone(),
            None => unreachable_taken(),
        }
    }
}

#[allow(clippy::unreachable)]
fn unreachable_taken() -> ! {
    unreachable!("a pooled connection is only taken when dropped")
}

impl std::ops::Deref for PooledConn<'_> {
    type Target = PgConn;

    fn deref(&self) -> &PgConn {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable_taken(),
        }
    }
}

impl Drop for PooledConn<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let mut state = self.pool.state.lock();
        if conn.reusable() && Arc::strong_count(&conn) == 1 {
            state.idle.push(conn);
        } else {
            state.open -= 1;
        }
        drop(state);
        self.pool.returned.notify_one();
    }
}

/// The server's message and SQLSTATE, which the error's own text ("db error") leaves out,
/// or the causes under it ("error performing TLS handshake" says not which check failed).
pub(super) fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} ({}): {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        let said = inner.to_string();
        // An io::Error wrapping a TLS error says the same thing twice.
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    text
}

/// Whether an error is worth one more try of the whole transaction: a deadlock or a
/// serialization failure between concurrent workers.
pub(super) fn is_transient(error: &StoreError) -> bool {
    use postgres::error::SqlState;
    match error {
        StoreError::Postgres(e) => matches!(
            e.code(),
            Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
        ),
        _ => false,
    }
}

/// Any number, as long as no other program takes the same advisory lock for its migrations.
const MIGRATION_LOCK: i64 = 0x7265_6c61_6973; // "relais"

/// Brings the schema up to date, under an advisory lock so that replicas starting at once
/// migrate one after the other; a schema newer than this relais knows is refused.
pub(super) fn migrate(conn: &Conn) -> Result<(), StoreError> {
    conn.execute("SELECT pg_advisory_lock(?1)", params![MIGRATION_LOCK])?;
    let migrated = migrate_locked(conn);
    let unlocked = conn.execute("SELECT pg_advisory_unlock(?1)", params![MIGRATION_LOCK]);
    migrated?;
    unlocked.map(|_| ())
}

fn migrate_locked(conn: &Conn) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS relais_schema (version BIGINT NOT NULL); \
         INSERT INTO relais_schema (version) SELECT 0 \
         WHERE NOT EXISTS (SELECT 1 FROM relais_schema)",
    )?;
    let version: i64 =
        conn.query_row("SELECT MAX(version) FROM relais_schema", params![], |r| {
            r.get(0)
        })?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            found: version,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.begin()?;
        tx.execute_batch(&in_byte_order(sql))?;
        tx.execute(
            "UPDATE relais_schema SET version = ?1",
            params![index as i64 + 1],
        )?;
        tx.commit()?;
    }
    if version <= super::time::MIGRATION as i64 {
        super::time::report_unreadable(conn)?;
    }
    Ok(())
}

/// Text columns compare and sort byte by byte, as in SQLite, whatever the database's locale.
pub(super) fn in_byte_order(sql: &str) -> String {
    sql.replace(" TEXT", " TEXT COLLATE \"C\"")
}

/// The PostgreSQL schema, migration for migration the SQLite one (`super::MIGRATIONS`):
/// same versions, same tables and columns, integers as BIGINT and row ids as identities, so
/// that `relais store copy` copies row for row. Append only.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE followers (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    actor_name TEXT NOT NULL,
    follower_id TEXT NOT NULL,
    follower_host TEXT NOT NULL,
    inbox TEXT NOT NULL,
    shared_inbox TEXT,
    follow_activity_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'accepted')),
    followed_at TEXT NOT NULL,
    UNIQUE (actor_name, follower_id)
);
CREATE INDEX followers_by_follower ON followers (follower_id);

CREATE TABLE seen_activities (
    activity_id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL
);
CREATE INDEX seen_activities_by_time ON seen_activities (received_at);

CREATE TABLE replies (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    object_id TEXT NOT NULL UNIQUE,
    in_reply_to TEXT NOT NULL,
    root_id TEXT NOT NULL,
    author_id TEXT NOT NULL,
    author_host TEXT NOT NULL,
    author_name TEXT NOT NULL,
    author_handle TEXT NOT NULL,
    author_url TEXT NOT NULL,
    author_avatar TEXT,
    content TEXT NOT NULL,
    url TEXT NOT NULL,
    published TEXT NOT NULL,
    updated TEXT,
    state TEXT NOT NULL CHECK (state IN ('visible', 'pending', 'hidden'))
);
CREATE INDEX replies_by_root ON replies (root_id);
CREATE INDEX replies_by_parent ON replies (in_reply_to);
CREATE INDEX replies_by_author ON replies (author_id);

CREATE TABLE reactions (
    activity_id TEXT PRIMARY KEY,
    actor_id TEXT NOT NULL,
    actor_host TEXT NOT NULL,
    object_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('Like', 'Announce')),
    created_at TEXT NOT NULL,
    UNIQUE (actor_id, object_id, kind)
);
CREATE INDEX reactions_by_object ON reactions (object_id);

CREATE TABLE blocked_domains (
    domain TEXT PRIMARY KEY,
    source TEXT NOT NULL CHECK (source IN ('config', 'moderation')),
    created_at TEXT NOT NULL
);

CREATE TABLE blocked_actors (
    actor_id TEXT PRIMARY KEY,
    source TEXT NOT NULL CHECK (source IN ('config', 'moderation')),
    created_at TEXT NOT NULL
);

CREATE TABLE flags (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    activity_id TEXT UNIQUE,
    actor_id TEXT NOT NULL,
    objects TEXT NOT NULL,
    content TEXT NOT NULL,
    received_at TEXT NOT NULL
);

CREATE TABLE remote_blocks (
    actor_id TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    activity_id TEXT,
    received_at TEXT NOT NULL,
    PRIMARY KEY (actor_id, actor_name)
);

CREATE TABLE remote_actors (
    id TEXT PRIMARY KEY,
    inbox TEXT NOT NULL,
    shared_inbox TEXT,
    name TEXT NOT NULL,
    handle TEXT NOT NULL,
    url TEXT NOT NULL,
    avatar TEXT,
    public_key_pem TEXT NOT NULL,
    key_id TEXT NOT NULL,
    also_known_as TEXT NOT NULL,
    moved_to TEXT,
    fetched_at TEXT NOT NULL
);
CREATE INDEX remote_actors_by_key ON remote_actors (key_id);
"#,
    r#"
CREATE TABLE quote_authorizations (
    token TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    quote_id TEXT NOT NULL,
    post_id TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (quote_id, post_id)
);
CREATE INDEX quote_authorizations_by_post ON quote_authorizations (post_id);
"#,
    r#"
CREATE TABLE account_moves (
    actor_name TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    origin TEXT NOT NULL,
    target TEXT NOT NULL,
    moved_at TEXT NOT NULL,
    PRIMARY KEY (actor_name, direction, origin)
);
CREATE TABLE moved_followers (
    actor_name TEXT NOT NULL,
    follower_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    followed_at TEXT NOT NULL,
    PRIMARY KEY (actor_name, follower_id)
);
CREATE TABLE received_quotes (
    quote_id TEXT PRIMARY KEY,
    actor_id TEXT NOT NULL,
    actor_host TEXT NOT NULL,
    post_id TEXT NOT NULL,
    url TEXT NOT NULL,
    token TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX received_quotes_by_post ON received_quotes (post_id);
"#,
    r#"
CREATE TABLE delivery_activities (
    activity_id TEXT PRIMARY KEY,
    object_id TEXT,
    actor_name TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE deliveries (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    activity_id TEXT NOT NULL REFERENCES delivery_activities (activity_id),
    object_id TEXT,
    inbox TEXT NOT NULL,
    host TEXT NOT NULL,
    follower_id TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    last_status BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    UNIQUE (activity_id, inbox)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX deliveries_in_order ON deliveries (inbox, object_id, id) WHERE state = 'pending';
CREATE INDEX deliveries_by_host ON deliveries (host) WHERE state = 'pending';
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE state != 'pending';

CREATE TABLE delivery_hosts (
    host TEXT PRIMARY KEY,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    failure_days BIGINT NOT NULL DEFAULT 0,
    last_failure_day BIGINT,
    last_failure_at BIGINT,
    last_success_at BIGINT,
    unavailable_since BIGINT,
    next_probe_at BIGINT
);

CREATE TABLE published_posts (
    object_id TEXT PRIMARY KEY,
    actor_name TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    updated TEXT,
    last_activity_id TEXT,
    last_activity_at BIGINT NOT NULL,
    deleted BIGINT NOT NULL CHECK (deleted IN (0, 1))
);
"#,
    // Version 5: times as Unix seconds (`super::time`). Text that is not an RFC 3339 date
    // and time becomes 0, as on SQLite, instead of failing the migration; a time without
    // an offset is read as UTC, as SQLite reads it. A fraction of a second is rounded to the
    // millisecond, as SQLite's date functions do, then dropped.
    r#"
SET LOCAL TimeZone = 'UTC';
CREATE FUNCTION relais_unix_time(value text) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    IF value !~ '^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}' THEN
        RETURN 0;
    END IF;
    RETURN floor(round(extract(epoch FROM value::timestamptz), 3))::bigint;
EXCEPTION WHEN others THEN
    RETURN 0;
END
$$;
ALTER TABLE followers
    ALTER COLUMN followed_at TYPE BIGINT USING relais_unix_time(followed_at);
ALTER TABLE seen_activities
    ALTER COLUMN received_at TYPE BIGINT USING relais_unix_time(received_at);
ALTER TABLE replies
    ALTER COLUMN published TYPE BIGINT USING relais_unix_time(published),
    ALTER COLUMN updated TYPE BIGINT USING relais_unix_time(updated);
ALTER TABLE reactions
    ALTER COLUMN created_at TYPE BIGINT USING relais_unix_time(created_at);
ALTER TABLE blocked_domains
    ALTER COLUMN created_at TYPE BIGINT USING relais_unix_time(created_at);
ALTER TABLE blocked_actors
    ALTER COLUMN created_at TYPE BIGINT USING relais_unix_time(created_at);
ALTER TABLE flags
    ALTER COLUMN received_at TYPE BIGINT USING relais_unix_time(received_at);
ALTER TABLE remote_blocks
    ALTER COLUMN received_at TYPE BIGINT USING relais_unix_time(received_at);
ALTER TABLE remote_actors
    ALTER COLUMN fetched_at TYPE BIGINT USING relais_unix_time(fetched_at);
ALTER TABLE quote_authorizations
    ALTER COLUMN created_at TYPE BIGINT USING relais_unix_time(created_at);
ALTER TABLE account_moves
    ALTER COLUMN moved_at TYPE BIGINT USING relais_unix_time(moved_at);
ALTER TABLE moved_followers
    ALTER COLUMN followed_at TYPE BIGINT USING relais_unix_time(followed_at);
ALTER TABLE received_quotes
    ALTER COLUMN created_at TYPE BIGINT USING relais_unix_time(created_at);
ALTER TABLE published_posts
    ALTER COLUMN updated TYPE BIGINT USING relais_unix_time(updated);
DROP FUNCTION relais_unix_time(text);
"#,
    // Version 6 (as on SQLite): the counter of changes to what pages show of interactions.
    // A sequence, not a row: replicas writing at once would queue on a row's lock.
    r#"
CREATE SEQUENCE interaction_changes;
CREATE FUNCTION relais_interactions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('interaction_changes');
    RETURN NULL;
END
$$;
CREATE TRIGGER replies_changes AFTER INSERT OR UPDATE OR DELETE ON replies FOR EACH STATEMENT EXECUTE FUNCTION relais_interactions_changed();
CREATE TRIGGER reactions_changes AFTER INSERT OR UPDATE OR DELETE ON reactions FOR EACH STATEMENT EXECUTE FUNCTION relais_interactions_changed();
CREATE TRIGGER received_quotes_changes AFTER INSERT OR UPDATE OR DELETE ON received_quotes FOR EACH STATEMENT EXECUTE FUNCTION relais_interactions_changed();
CREATE TRIGGER remote_actors_changes AFTER INSERT OR UPDATE OR DELETE ON remote_actors FOR EACH STATEMENT EXECUTE FUNCTION relais_interactions_changed();
CREATE TRIGGER blocked_domains_changes AFTER INSERT OR UPDATE OR DELETE ON blocked_domains FOR EACH STATEMENT EXECUTE FUNCTION relais_interactions_changed();
CREATE TRIGGER blocked_actors_changes AFTER INSERT OR UPDATE OR DELETE ON blocked_actors FOR EACH STATEMENT EXECUTE FUNCTION relais_interactions_changed();
"#,
    // Version 7 (as on SQLite): a post's recipients, grouped by inbox, in index order.
    r#"
CREATE INDEX followers_delivery ON followers (actor_name, COALESCE(shared_inbox, inbox), follower_id, follower_host, shared_inbox) WHERE state = 'accepted';
"#,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemas_have_the_same_versions() {
        assert_eq!(MIGRATIONS.len(), super::super::MIGRATIONS.len());
    }

    #[test]
    fn a_url_is_told_from_a_path_and_its_password_hidden() {
        let site = Path::new("/site");
        assert_eq!(
            StoreLocation::of(site, Path::new("relais.db")),
            StoreLocation::Path(PathBuf::from("/site/relais.db"))
        );
        let url = "postgresql://relais:s3cret@db.example:5432/blog?password=other";
        let location = StoreLocation::of(site, Path::new(url));
        assert_eq!(location, StoreLocation::Url(url.into()));
        let shown = location.display();
        assert!(
            !shown.contains("s3cret") && !shown.contains("other"),
            "{shown}"
        );
        assert!(shown.contains("db.example:5432/blog"), "{shown}");
        assert!(!format!("{location:?}").contains("s3cret"));
    }
}

/// What only PostgreSQL does: several workers on one queue, a schema from a newer relais.
#[cfg(test)]
mod on_postgres {
    use std::collections::HashSet;

    use super::*;
    use crate::store::queue::tests::{activity, request, NOW};
    use crate::store::{testdb, Store};

    #[test]
    fn four_workers_never_claim_one_delivery_twice() {
        let Some(url) = testdb::database_url() else {
            return;
        };
        let store = Store::connect(&url).unwrap();
        let inboxes: Vec<String> = (0..400)
            .map(|i| format!("https://h{}.example/u/{i}/inbox", i % 40))
            .collect();
        let refs: Vec<&str> = inboxes.iter().map(String::as_str).collect();
        store
            .queue_transaction(|q| q.enqueue(&activity("x", None, &refs), NOW))
            .unwrap();
        // Four processes' worth: each worker its own store, so its own connections.
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let store = Store::connect(&url).unwrap();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let claimed = store
                            .finish_and_claim(&[], NOW, Some(&request(7, 100, &[], NOW)))
                            .unwrap();
                        if claimed.is_empty() && store.queue_counts(NOW).unwrap().due == 0 {
                            return mine;
                        }
                        mine.extend(claimed.into_iter().map(|d| d.id));
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut per_worker = Vec::new();
        for worker in workers {
            let mine = worker.join().unwrap();
            per_worker.push(mine.len());
            all.extend(mine);
        }
        let distinct: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len(), "a delivery was claimed twice");
        assert_eq!(all.len(), 400, "claimed per worker: {per_worker:?}");
        assert_eq!(store.leased_deliveries(NOW).unwrap(), 400);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let Some(url) = testdb::database_url() else {
            return;
        };
        drop(Store::connect(&url).unwrap());
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .batch_execute("UPDATE relais_schema SET version = 99")
            .unwrap();
        match Store::connect(&url) {
            Err(StoreError::TooNew { found: 99, known }) => {
                assert_eq!(known, MIGRATIONS.len() as i64)
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
    }

    #[test]
    fn replicas_starting_together_migrate_once() {
        let Some(url) = testdb::database_url() else {
            return;
        };
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || Store::connect(&url).map(|_| ()))
            })
            .collect();
        for start in starts {
            start.join().unwrap().unwrap();
        }
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let rows = client
            .query("SELECT version FROM relais_schema", &[])
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, i64>(0), MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_bad_password_is_not_shown() {
        let Some(url) = testdb::database_url() else {
            return;
        };
        let wrong = url.replace("postgres@", "nobody:s3cret@");
        let error = Store::connect(&wrong).unwrap_err().to_string();
        assert!(!error.contains("s3cret"), "{error}");
        assert!(error.contains("nobody:***@"), "{error}");
    }
}
