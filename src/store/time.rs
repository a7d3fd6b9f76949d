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

use super::sql::{Cell, FromCell, ToValue, Value};

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
pub(super) fn report_unreadable(conn: &super::sql::Conn) -> Result<usize, super::StoreError> {
    let mut total = 0;
    for (table, column) in CONVERTED {
        let count: usize = conn.query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE {column} = 0"),
            super::sql::params![],
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
}
