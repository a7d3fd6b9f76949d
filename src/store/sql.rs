//! The thin SQL layer under the store: one connection type ([`Conn`]) over SQLite or
//! PostgreSQL, so that every store query is written once.
//!
//! Queries use `?N` placeholders and SQL both databases accept (`ON CONFLICT … DO NOTHING/DO
//! UPDATE`, `RETURNING`, `CASE` instead of a boolean used as a number); a placeholder is
//! sent to PostgreSQL as `$N`. Parameters are [`Value`]s, made by [`params!`] from the usual
//! Rust types; a row's columns are read by [`Row::get`] into the same types whichever
//! database produced them (a PostgreSQL boolean reads as an integer and back). The few
//! statements that differ (JSON functions, row locks) ask [`Conn::is_postgres`].

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;
use postgres::types::{IsNull, ToSql as PgToSql, Type};

use super::StoreError;

/// A parameter of a statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

/// What [`params!`] turns into a [`Value`].
pub(crate) trait ToValue {
    fn to_value(&self) -> Value<'_>;
}

impl ToValue for str {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value<'_> {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value<'_> {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value<'_> {
                // Counts and limits far below i64::MAX; saturate rather than wrap.
                Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_value!(i64, i32, u16, u32, u64, usize);

/// The parameters of a statement, as a `&[Value]`.
macro_rules! params {
    () => { &[] as &[$crate::store::sql::Value] };
    ($($x:expr),+ $(,)?) => {
        &[$($crate::store::sql::ToValue::to_value(&$x)),+] as &[$crate::store::sql::Value]
    };
}
pub(crate) use params;

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match *self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(i)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// PostgreSQL infers each parameter's type from the statement; an integer goes as whichever
/// integer (or boolean) type it inferred.
impl PgToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                _ => Err(format!("an integer cannot be sent as {ty}").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A column's value as read, before conversion.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cell<'r> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'r str),
}

/// What a column can be read as.
pub(crate) trait FromCell: Sized {
    fn from_cell(cell: Cell<'_>) -> Result<Self, String>;
}

impl FromCell for i64 {
    fn from_cell(cell: Cell<'_>) -> Result<Self, String> {
        match cell {
            Cell::Int(i) => Ok(i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

macro_rules! int_cell {
    ($($t:ty),*) => {$(
        impl FromCell for $t {
            fn from_cell(cell: Cell<'_>) -> Result<Self, String> {
                let i = i64::from_cell(cell)?;
                <$t>::try_from(i).map_err(|e| format!("{i}: {e}"))
            }
        }
    )*};
}
int_cell!(i32, u16, u32, u64, usize);

impl FromCell for bool {
    fn from_cell(cell: Cell<'_>) -> Result<Self, String> {
        Ok(i64::from_cell(cell)? != 0)
    }
}

impl FromCell for f64 {
    fn from_cell(cell: Cell<'_>) -> Result<Self, String> {
        match cell {
            Cell::Real(f) => Ok(f),
            Cell::Int(i) => Ok(i as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}

impl FromCell for String {
    fn from_cell(cell: Cell<'_>) -> Result<Self, String> {
        match cell {
            Cell::Text(s) => Ok(s.to_string()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: Cell<'_>) -> Result<Self, String> {
        match cell {
            Cell::Null => Ok(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

/// One row of a result.
pub(crate) enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Pg(&'r postgres::Row),
}

impl Row<'_> {
    pub(crate) fn get<T: FromCell>(&self, index: usize) -> Result<T, StoreError> {
        let conversion = |detail: String| StoreError::Conversion { index, detail };
        let value = match self {
            Row::Sqlite(row) => {
                use rusqlite::types::ValueRef;
                match row.get_ref(index)? {
                    ValueRef::Null => T::from_cell(Cell::Null),
                    ValueRef::Integer(i) => T::from_cell(Cell::Int(i)),
                    ValueRef::Real(f) => T::from_cell(Cell::Real(f)),
                    ValueRef::Text(bytes) => {
                        let text =
                            std::str::from_utf8(bytes).map_err(|e| conversion(e.to_string()))?;
                        T::from_cell(Cell::Text(text))
                    }
                    ValueRef::Blob(_) => Err("a blob".to_string()),
                }
            }
            Row::Pg(row) => {
                let column = row
                    .columns()
                    .get(index)
                    .ok_or_else(|| conversion("no such column".into()))?;
                match *column.type_() {
                    Type::INT8 => T::from_cell(
                        row.try_get::<_, Option<i64>>(index)?
                            .map_or(Cell::Null, Cell::Int),
                    ),
                    Type::INT4 => T::from_cell(
                        row.try_get::<_, Option<i32>>(index)?
                            .map_or(Cell::Null, |i| Cell::Int(i.into())),
                    ),
                    Type::INT2 => T::from_cell(
                        row.try_get::<_, Option<i16>>(index)?
                            .map_or(Cell::Null, |i| Cell::Int(i.into())),
                    ),
                    Type::BOOL => T::from_cell(
                        row.try_get::<_, Option<bool>>(index)?
                            .map_or(Cell::Null, |b| Cell::Int(b.into())),
                    ),
                    Type::FLOAT8 => T::from_cell(
                        row.try_get::<_, Option<f64>>(index)?
                            .map_or(Cell::Null, Cell::Real),
                    ),
                    Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => T::from_cell(
                        row.try_get::<_, Option<&str>>(index)?
                            .map_or(Cell::Null, Cell::Text),
                    ),
                    ref other => Err(format!("a column of type {other}")),
                }
            }
        };
        value.map_err(conversion)
    }
}

/// A PostgreSQL connection of the pool, with its prepared statements and how deep the
/// transaction it is in goes (0: none).
pub(crate) struct PgConn {
    inner: Mutex<PgInner>,
    depth: AtomicU32,
}

struct PgInner {
    /// Always set; taken only when the connection is dropped.
    client: Option<postgres::Client>,
    /// Prepared once per connection: the hot paths run the same few statements.
    statements: HashMap<String, postgres::Statement>,
}

impl PgConn {
    pub(crate) fn new(client: postgres::Client) -> PgConn {
        PgConn {
            inner: Mutex::new(PgInner {
                client: Some(client),
                statements: HashMap::new(),
            }),
            depth: AtomicU32::new(0),
        }
    }

    /// Whether it can go back to the pool: connected, no transaction left open.
    pub(crate) fn reusable(&self) -> bool {
        self.depth.load(Ordering::SeqCst) == 0
            && self
                .inner
                .lock()
                .client
                .as_ref()
                .is_some_and(|c| !c.is_closed())
    }

    /// The rows of one statement, prepared once per connection.
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<postgres::Row>, StoreError> {
        off_runtime(|| {
            let mut inner = self.inner.lock();
            let statement = inner.statement(sql)?;
            Ok(inner.client()?.query(&statement, &pg_params(params))?)
        })
    }
}

/// Runs `f`, which blocks on the `postgres` client's own runtime: from a thread that runs
/// async tasks (a test, a caller that skipped `store::blocking`) the worker first hands its
/// tasks to another thread, since a runtime cannot block inside another.
pub(crate) fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl Drop for PgInner {
    fn drop(&mut self) {
        // Closing the connection blocks on the client's runtime too.
        if let Some(client) = self.client.take() {
            off_runtime(move || drop(client));
        }
    }
}

impl PgInner {
    fn client(&mut self) -> Result<&mut postgres::Client, StoreError> {
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Invalid("the connection is closed".into()))
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client()?.prepare(&placeholders(sql))?;
        // Statements built from data (none today) must not grow the cache without bound.
        if self.statements.len() >= 512 {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

/// `?N` placeholders as PostgreSQL's `$N`, outside quoted text.
pub(crate) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '?' => {
                out.push('$');
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    out
}

fn pg_params<'p>(params: &'p [Value<'p>]) -> Vec<&'p (dyn PgToSql + Sync)> {
    params.iter().map(|p| p as &(dyn PgToSql + Sync)).collect()
}

/// A connection to either database, inside or outside a transaction.
#[derive(Clone, Copy)]
pub(crate) enum Conn<'c> {
    Sqlite(&'c rusqlite::Connection),
    Pg(&'c PgConn),
}

impl<'c> Conn<'c> {
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Conn::Pg(_))
    }

    /// Runs one statement; returns how many rows it changed.
    pub(crate) fn execute(&self, sql: &str, params: &[Value]) -> Result<usize, StoreError> {
        match self {
            Conn::Sqlite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params))?),
            Conn::Pg(pg) => off_runtime(|| {
                let mut inner = pg.inner.lock();
                let statement = inner.statement(sql)?;
                let n = inner.client()?.execute(&statement, &pg_params(params))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }),
        }
    }

    /// Runs statements without parameters or results.
    pub(crate) fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Pg(pg) => off_runtime(|| Ok(pg.inner.lock().client()?.batch_execute(sql)?)),
        }
    }

    /// Every row of a query, each turned into a `T` by `f`.
    pub(crate) fn query_all<T>(
        &self,
        sql: &str,
        params: &[Value],
        mut f: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(f(&Row::Sqlite(row))?);
                }
                Ok(out)
            }
            Conn::Pg(pg) => {
                let rows = pg.query(sql, params)?;
                rows.iter().map(|row| f(&Row::Pg(row))).collect()
            }
        }
    }

    /// The first row of a query, if any.
    pub(crate) fn query_opt<T>(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                match rows.next()? {
                    Some(row) => f(&Row::Sqlite(row)).map(Some),
                    None => Ok(None),
                }
            }
            Conn::Pg(pg) => {
                let rows = pg.query(sql, params)?;
                rows.first().map(|row| f(&Row::Pg(row))).transpose()
            }
        }
    }

    /// The first row of a query, which must have one.
    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.query_opt(sql, params, f)?.ok_or(StoreError::NoRow)
    }

    /// Whether a transaction is open on this connection.
    pub(crate) fn in_transaction(&self) -> bool {
        match self {
            Conn::Sqlite(c) => !c.is_autocommit(),
            Conn::Pg(pg) => pg.depth.load(Ordering::SeqCst) > 0,
        }
    }

    /// Opens a write transaction, or a savepoint inside the one already open.
    pub(crate) fn begin(&self) -> Result<WriteTx<'c>, StoreError> {
        let nested = self.in_transaction();
        let sql = match (nested, self) {
            (true, _) => "SAVEPOINT relais_tx",
            // IMMEDIATE: take the write lock first, so the commit cannot be refused because
            // another process wrote since our first read.
            (false, Conn::Sqlite(_)) => "BEGIN IMMEDIATE",
            (false, Conn::Pg(_)) => "BEGIN",
        };
        self.execute_batch(sql)?;
        if let Conn::Pg(pg) = self {
            pg.depth.fetch_add(1, Ordering::SeqCst);
        }
        Ok(WriteTx {
            conn: *self,
            nested,
            finished: false,
        })
    }
}

/// A write transaction that nests: a transaction at the top level, a savepoint inside one.
/// Rolled back when dropped unfinished (an error or a panic in the work).
pub(crate) struct WriteTx<'c> {
    conn: Conn<'c>,
    nested: bool,
    finished: bool,
}

impl WriteTx<'_> {
    pub(crate) fn commit(mut self) -> Result<(), StoreError> {
        let sql = if self.nested {
            "RELEASE relais_tx"
        } else {
            "COMMIT"
        };
        let done = self.conn.execute_batch(sql);
        if done.is_ok() {
            self.finished = true;
            self.leave();
        }
        done
    }

    fn leave(&self) {
        if let Conn::Pg(pg) = self.conn {
            pg.depth.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let undo = if self.nested {
            "ROLLBACK TO relais_tx; RELEASE relais_tx"
        } else {
            "ROLLBACK"
        };
        // SQLite may have rolled the whole transaction back by itself (disk full, I/O).
        let skip = matches!(self.conn, Conn::Sqlite(c) if c.is_autocommit());
        if !skip {
            if let Err(e) = self.conn.execute_batch(undo) {
                tracing::error!("store: cannot roll back: {e}");
            }
        }
        self.leave();
    }
}

impl<'c> std::ops::Deref for WriteTx<'c> {
    type Target = Conn<'c>;

    fn deref(&self) -> &Conn<'c> {
        &self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            placeholders("SELECT '?1', \"a?\" FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1', \"a?\" FROM t WHERE a = $1 AND b = $12"
        );
    }
}
