//! One store interface for the call log: the embedded SQLite file (the default) or a shared
//! PostgreSQL (several gateway nodes). [`Db`] keeps rusqlite's calling shape — `execute`,
//! `query_row`, `prepare(..).query_map`, transactions, `rusqlite::Params`, `rusqlite::Result`,
//! rows read with `r.get(i)` into any `rusqlite::types::FromSql` type — so a module written
//! for rusqlite is ported by changing its `Connection` type to `Db` (and its `&rusqlite::Row`
//! to `&Row`). The SQL itself is written once, in the subset both engines take (`?N`
//! placeholders are rewritten to `$N` for PostgreSQL); the few SQLite-only spots ask
//! [`Db::dialect`].
//!
//! Errors stay `rusqlite::Error`: a PostgreSQL failure is carried as an SQLite failure whose
//! code says the same thing (connection lost → I/O error, disk full → full, constraint →
//! constraint), so callers that tell "the database cannot be written now" from "this record
//! is wrong" (the writer) work unchanged on both.
//!
//! Porting a module written for rusqlite:
//! 1. `&rusqlite::Connection` → `&Db`, `&rusqlite::Row` → `&Row`, `conn.transaction()` /
//!    `transaction_with_behavior(Immediate)` → `db.transaction()` / `db.write_transaction()`
//!    (both take `&self`); everything else keeps its spelling and its `rusqlite::Result`.
//! 2. SQL both engines take: `INSERT … ON CONFLICT (key) DO UPDATE SET c = excluded.c` for
//!    `INSERT OR REPLACE`; `INSERT … RETURNING id` for `last_insert_rowid()`; an alias on every
//!    subquery in FROM; `CAST(?1 AS BIGINT) IS NULL` where a parameter's only use is
//!    `?1 IS NULL` (PostgreSQL must infer its type); no SQLite-only functions (`json_*`,
//!    `strftime`, `group_concat`, two-argument `max`) and no `sqlite_master`: branch on
//!    [`Db::dialect`] for those.
//! 3. "Previous max + 1" numbering: `db.write_transaction()` then
//!    [`Db::lock_for_append`]`(table)` before reading the max.
//! 4. Run the module's tests on both stores (`calllog::testing::{Store, TestLog}`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use postgres::types::{FromSql as PgFromSql, IsNull, ToSql as PgToSql, Type};
use rusqlite::ffi;
use rusqlite::types::{FromSql, Value, ValueRef};

/// Which SQL engine is behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A call-log database connection.
pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Box<Pg>),
}

/// A PostgreSQL connection with its prepared statements (prepared once per text).
pub struct Pg {
    client: RefCell<postgres::Client>,
    statements: RefCell<HashMap<String, postgres::Statement>>,
}

/// How long a connection attempt may take before the database counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether a call-log location is a PostgreSQL URL (`postgres://` or `postgresql://`).
pub fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// The URL with its password replaced, for logs and messages.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

impl From<rusqlite::Connection> for Db {
    fn from(c: rusqlite::Connection) -> Db {
        Db::Sqlite(c)
    }
}

impl Db {
    /// Connects to the PostgreSQL at `url` (no TLS: the call log is on the centre's own
    /// network; put it behind a TLS proxy otherwise).
    pub fn connect_postgres(url: &str) -> rusqlite::Result<Db> {
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            failure(
                ffi::SQLITE_CANTOPEN,
                format!("call log {}: {e}", redacted(url)),
            )
        })?;
        // A server that vanishes without closing (a network split) fails the connection
        // within seconds, not TCP's minutes: the writer then queues and retries.
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_user_timeout(Duration::from_secs(10))
            .keepalives_idle(Duration::from_secs(10))
            .application_name("siaga");
        let client = config.connect(postgres::NoTls).map_err(pg_error)?;
        Ok(Db::Postgres(Box::new(Pg {
            client: RefCell::new(client),
            statements: RefCell::new(HashMap::new()),
        })))
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    pub fn execute<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        match self {
            Db::Sqlite(c) => c.prepare_cached(sql)?.execute(params),
            Db::Postgres(pg) => pg.execute(sql, &bind(sql, params)?),
        }
    }

    /// [`Db::execute`] with the values already lowered (the writer's records).
    pub fn execute_values(&self, sql: &str, params: &[Value]) -> rusqlite::Result<usize> {
        match self {
            Db::Sqlite(c) => c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params.iter())),
            Db::Postgres(pg) => pg.execute(sql, params),
        }
    }

    /// Several statements without parameters (migrations, `BEGIN`).
    pub fn execute_batch(&self, sql: &str) -> rusqlite::Result<()> {
        match self {
            Db::Sqlite(c) => c.execute_batch(sql),
            Db::Postgres(pg) => pg
                .client
                .borrow_mut()
                .batch_execute(&to_postgres(sql))
                .map_err(pg_error),
        }
    }

    /// The first row, or `QueryReturnedNoRows` (so `OptionalExtension::optional` works).
    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&Row) -> rusqlite::Result<T>,
    {
        let rows = self.rows(sql, params, Some(1))?;
        match rows.first() {
            Some(row) => f(row),
            None => Err(rusqlite::Error::QueryReturnedNoRows),
        }
    }

    /// Every row, read whole (the call log's queries return pages, not tables).
    fn rows<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        limit: Option<usize>,
    ) -> rusqlite::Result<Vec<Row>> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(params)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let values = (0..columns)
                        .map(|i| r.get::<_, Value>(i))
                        .collect::<rusqlite::Result<_>>()?;
                    out.push(Row(values));
                    if limit.is_some_and(|l| out.len() >= l) {
                        break;
                    }
                }
                Ok(out)
            }
            Db::Postgres(pg) => pg.query(sql, &bind(sql, params)?),
        }
    }

    pub fn prepare(&self, sql: &str) -> rusqlite::Result<Statement<'_>> {
        Ok(Statement {
            db: self,
            sql: sql.to_owned(),
        })
    }

    /// Statements are cached by text on both stores; kept for rusqlite's spelling.
    pub fn prepare_cached(&self, sql: &str) -> rusqlite::Result<Statement<'_>> {
        self.prepare(sql)
    }

    /// A transaction (deferred on SQLite); rolled back when dropped without `commit`.
    pub fn transaction(&self) -> rusqlite::Result<Transaction<'_>> {
        self.execute_batch("BEGIN")?;
        Ok(Transaction {
            db: self,
            open: true,
        })
    }

    /// A transaction that takes the write lock at once on SQLite (read-then-write sequences
    /// such as "previous max + 1"); a plain one on PostgreSQL, where such sequences lock
    /// the table themselves.
    pub fn write_transaction(&self) -> rusqlite::Result<Transaction<'_>> {
        self.execute_batch(match self.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        })?;
        Ok(Transaction {
            db: self,
            open: true,
        })
    }

    /// Inside a [`Db::write_transaction`]: no other writer appends to `table` until it ends,
    /// so "previous max + 1" numbering (sequence numbers, hash chains) stays gap- and
    /// duplicate-free. SQLite's IMMEDIATE transaction already holds the whole file; PostgreSQL
    /// locks the table (readers go on).
    pub fn lock_for_append(&self, table: &str) -> rusqlite::Result<()> {
        match self.dialect() {
            Dialect::Sqlite => Ok(()),
            Dialect::Postgres => {
                self.execute_batch(&format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"))
            }
        }
    }

    /// Whether the connection is known to be gone (PostgreSQL); a new one is needed.
    pub fn is_closed(&self) -> bool {
        match self {
            Db::Sqlite(_) => false,
            Db::Postgres(pg) => pg.client.borrow().is_closed(),
        }
    }
}

/// A statement to run, rusqlite-style: `db.prepare(sql)?.query_map(params, |r| …)?`.
pub struct Statement<'a> {
    db: &'a Db,
    sql: String,
}

impl Statement<'_> {
    pub fn query_map<T, P, F>(
        &mut self,
        params: P,
        mut f: F,
    ) -> rusqlite::Result<std::vec::IntoIter<rusqlite::Result<T>>>
    where
        P: rusqlite::Params,
        F: FnMut(&Row) -> rusqlite::Result<T>,
    {
        let rows = self.db.rows(&self.sql, params, None)?;
        Ok(rows.iter().map(&mut f).collect::<Vec<_>>().into_iter())
    }

    pub fn query_row<T, P, F>(&mut self, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&Row) -> rusqlite::Result<T>,
    {
        self.db.query_row(&self.sql, params, f)
    }
}

/// An open transaction; everything [`Db`] does works on it (it derefs to its `Db`).
pub struct Transaction<'a> {
    db: &'a Db,
    open: bool,
}

impl Transaction<'_> {
    /// Commits; a COMMIT that fails (SQLite busy, the connection lost) is rolled back when
    /// the transaction is dropped, so the connection is never left inside it.
    pub fn commit(mut self) -> rusqlite::Result<()> {
        self.db.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }

    /// A savepoint inside the transaction, to undo one record's statements alone.
    pub fn savepoint(&self) -> rusqlite::Result<()> {
        self.db.execute_batch("SAVEPOINT record")
    }

    pub fn release_savepoint(&self) -> rusqlite::Result<()> {
        self.db.execute_batch("RELEASE SAVEPOINT record")
    }

    pub fn rollback_to_savepoint(&self) -> rusqlite::Result<()> {
        self.db
            .execute_batch("ROLLBACK TO SAVEPOINT record; RELEASE SAVEPOINT record")
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            // A connection that is gone has no transaction left to roll back.
            let _ = self.db.execute_batch("ROLLBACK");
        }
    }
}

/// One result row, read into any type rusqlite reads (`r.get::<_, i64>(0)?`).
#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    pub fn get<I: RowIndex, T: FromSql>(&self, idx: I) -> rusqlite::Result<T> {
        let idx = idx.index();
        let value = self
            .0
            .get(idx)
            .ok_or(rusqlite::Error::InvalidColumnIndex(idx))?;
        T::column_result(ValueRef::from(value)).map_err(|e| match e {
            rusqlite::types::FromSqlError::InvalidType => rusqlite::Error::InvalidColumnType(
                idx,
                format!("column {idx}"),
                ValueRef::from(value).data_type(),
            ),
            other => rusqlite::Error::FromSqlConversionFailure(
                idx,
                ValueRef::from(value).data_type(),
                Box::new(other),
            ),
        })
    }
}

/// A column position (rusqlite also takes names; the call log's queries use positions).
pub trait RowIndex {
    fn index(self) -> usize;
}

impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// The values of `params` for `sql`, as rusqlite would bind them: read back through an
/// in-memory SQLite statement `SELECT ?1, …, ?N`, so every form rusqlite takes (`params!`,
/// arrays, `params_from_iter`) works on PostgreSQL too.
fn bind<P: rusqlite::Params>(sql: &str, params: P) -> rusqlite::Result<Vec<Value>> {
    thread_local! {
        static BINDER: Option<rusqlite::Connection> = rusqlite::Connection::open_in_memory().ok();
    }
    let count = placeholder_count(sql);
    if count == 0 {
        return Ok(Vec::new());
    }
    let select = format!(
        "SELECT {}",
        (1..=count)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    BINDER.with(|binder| {
        let binder = binder
            .as_ref()
            .ok_or_else(|| failure(ffi::SQLITE_NOMEM, "no in-memory SQLite".into()))?;
        let mut stmt = binder.prepare_cached(&select)?;
        let mut rows = stmt.query(params)?;
        let row = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        (0..count).map(|i| row.get::<_, Value>(i)).collect()
    })
}

/// How many parameters `sql` takes: the highest `?N`, or the count of bare `?`.
fn placeholder_count(sql: &str) -> usize {
    let mut highest = 0;
    let mut bare = 0;
    scan(sql, |token| {
        if let Token::Placeholder(n) = token {
            match n {
                Some(n) => highest = highest.max(n),
                None => bare += 1,
            }
        }
    });
    highest.max(bare)
}

enum Token<'a> {
    Text(&'a str),
    Placeholder(Option<usize>),
}

/// Splits SQL into text and placeholders, leaving string literals, quoted names and
/// comments alone.
fn scan<'a>(sql: &'a str, mut out: impl FnMut(Token<'a>)) {
    let bytes = sql.as_bytes();
    let (mut i, mut start) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'?' => {
                out(Token::Text(&sql[start..i]));
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                out(Token::Placeholder(sql[i + 1..i + 1 + digits].parse().ok()));
                i += 1 + digits;
                start = i;
            }
            _ => i += 1,
        }
    }
    out(Token::Text(&sql[start.min(sql.len())..]));
}

/// `?N` (and bare `?`) as PostgreSQL's `$N`.
pub fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut bare = 0;
    scan(sql, |token| match token {
        Token::Text(t) => out.push_str(t),
        Token::Placeholder(n) => {
            let n = n.unwrap_or_else(|| {
                bare += 1;
                bare
            });
            out.push_str(&format!("${n}"));
        }
    });
    out
}

impl Pg {
    fn statement(&self, sql: &str) -> rusqlite::Result<postgres::Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let stmt = self
            .client
            .borrow_mut()
            .prepare(&to_postgres(sql))
            .map_err(pg_error)?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    /// Runs the statement `sql` (prepared once) with `params` bound through `run`.
    fn with_statement<T>(
        &self,
        sql: &str,
        params: &[Value],
        run: impl FnOnce(
            &mut postgres::Client,
            &postgres::Statement,
            &[&(dyn PgToSql + Sync)],
        ) -> Result<T, postgres::Error>,
    ) -> rusqlite::Result<T> {
        let stmt = self.statement(sql)?;
        let args: Vec<PgParam> = params.iter().map(PgParam).collect();
        let refs: Vec<&(dyn PgToSql + Sync)> =
            args.iter().map(|a| a as &(dyn PgToSql + Sync)).collect();
        run(&mut self.client.borrow_mut(), &stmt, &refs).map_err(pg_error)
    }

    fn execute(&self, sql: &str, params: &[Value]) -> rusqlite::Result<usize> {
        self.with_statement(sql, params, |c, s, p| c.execute(s, p))
            .map(|n| n as usize)
    }

    fn query(&self, sql: &str, params: &[Value]) -> rusqlite::Result<Vec<Row>> {
        let rows = self.with_statement(sql, params, |c, s, p| c.query(s, p))?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.try_get::<_, PgValue>(i).map(|v| v.0).map_err(pg_error))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map(Row)
            })
            .collect()
    }
}

fn failure(code: std::ffi::c_int, message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(message))
}

/// A PostgreSQL error as the SQLite error that means the same to the call log.
fn pg_error(e: postgres::Error) -> rusqlite::Error {
    let code = match e.code().map(|c| c.code()) {
        // No SQLSTATE: the connection broke, or never opened.
        None => ffi::SQLITE_IOERR,
        Some(state) => match &state[..2] {
            // Connection exception; operator intervention (shutdown, cannot connect now).
            "08" | "57" => ffi::SQLITE_IOERR,
            // Insufficient resources (disk full, out of memory, too many connections).
            "53" => ffi::SQLITE_FULL,
            // Serialisation failure, deadlock: try again.
            "40" => ffi::SQLITE_BUSY,
            // Read-only transaction (a standby), no privilege.
            "25" if state == "25006" => ffi::SQLITE_READONLY,
            "42" if state == "42501" => ffi::SQLITE_PERM,
            "23" => ffi::SQLITE_CONSTRAINT,
            "22" => ffi::SQLITE_MISMATCH,
            _ => ffi::SQLITE_ERROR,
        },
    };
    let message = match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {}", db.message()),
        None => format!("PostgreSQL: {e}"),
    };
    failure(code, message)
}

/// A value bound to a PostgreSQL parameter of whatever type the server inferred: the SQL is
/// shared with SQLite, which is not strict about types, so the value follows the column.
#[derive(Debug)]
struct PgParam<'a>(&'a Value);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl PgToSql for PgParam<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        let text_like = [
            Type::TEXT,
            Type::VARCHAR,
            Type::BPCHAR,
            Type::NAME,
            Type::UNKNOWN,
        ];
        let mismatch = || -> BoxError { format!("{:?} cannot be stored as {ty}", self.0).into() };
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                _ if text_like.contains(ty) => i.to_string().to_sql(&Type::TEXT, out),
                _ => Err(mismatch()),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ if text_like.contains(ty) => f.to_string().to_sql(&Type::TEXT, out),
                _ => Err(mismatch()),
            },
            Value::Text(s) => match *ty {
                Type::INT8 => s.trim().parse::<i64>()?.to_sql(ty, out),
                Type::INT4 => s.trim().parse::<i32>()?.to_sql(ty, out),
                Type::FLOAT8 => s.trim().parse::<f64>()?.to_sql(ty, out),
                Type::BYTEA => s.as_bytes().to_sql(ty, out),
                Type::JSON => {
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                Type::JSONB => {
                    out.extend_from_slice(&[1]);
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                _ if text_like.contains(ty) => s.as_str().to_sql(&Type::TEXT, out),
                _ => Err(mismatch()),
            },
            Value::Blob(b) => match *ty {
                Type::BYTEA => b.as_slice().to_sql(ty, out),
                _ => Err(mismatch()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A PostgreSQL column value as SQLite's dynamic `Value` (booleans as 0/1, NUMERIC as an
/// integer when whole, else a real).
struct PgValue(Value);

impl<'a> PgFromSql<'a> for PgValue {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let value = match *ty {
            Type::BOOL => Value::Integer(i64::from(bool::from_sql(ty, raw)?)),
            Type::INT2 => Value::Integer(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => Value::Integer(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
            Type::OID => Value::Integer(u32::from_sql(ty, raw)?.into()),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::NUMERIC => numeric(raw).ok_or("unreadable NUMERIC")?,
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::JSONB => Value::Text(String::from_utf8_lossy(raw.get(1..).unwrap_or(&[])).into()),
            _ => Value::Text(String::from_utf8_lossy(raw).into_owned()),
        };
        Ok(PgValue(value))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(PgValue(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// PostgreSQL's binary NUMERIC (what `sum` and `avg` of integers return): base-10000 digits.
fn numeric(raw: &[u8]) -> Option<Value> {
    let word = |i: usize| -> Option<i16> {
        Some(i16::from_be_bytes([*raw.get(2 * i)?, *raw.get(2 * i + 1)?]))
    };
    let (ndigits, weight, sign, scale) = (word(0)?, word(1)?, word(2)? as u16, word(3)?);
    if sign == 0xC000 {
        return Some(Value::Real(f64::NAN));
    }
    let mut value = 0f64;
    for d in 0..ndigits.max(0) as usize {
        let digit = f64::from(word(4 + d)?);
        value += digit * 10000f64.powi(i32::from(weight) - d as i32);
    }
    if sign == 0x4000 {
        value = -value;
    }
    Some(if scale == 0 && value.abs() < 9.0e15 {
        Value::Integer(value as i64)
    } else {
        Value::Real(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_dollars_outside_literals_and_comments() {
        assert_eq!(
            to_postgres("SELECT '?1', \"a?\" FROM t WHERE a = ?2 AND b = ?10 -- ?3\n AND c = ?"),
            "SELECT '?1', \"a?\" FROM t WHERE a = $2 AND b = $10 -- ?3\n AND c = $1"
        );
        assert_eq!(placeholder_count("SELECT ?1, ?3"), 3);
        assert_eq!(placeholder_count("SELECT '?9'"), 0);
    }

    #[test]
    fn rusqlite_parameters_are_read_back_as_values() {
        let values = bind(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![1i64, "a", Option::<i64>::None, true],
        )
        .expect("bind");
        assert_eq!(
            values,
            vec![
                Value::Integer(1),
                Value::Text("a".into()),
                Value::Null,
                Value::Integer(1)
            ]
        );
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redacted("postgres://siaga:secret@db:5432/log"),
            "postgres://siaga:***@db:5432/log"
        );
        assert_eq!(redacted("postgres://db/log"), "postgres://db/log");
    }
}
