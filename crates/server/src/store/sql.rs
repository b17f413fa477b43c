//! The one way the store talks SQL, on SQLite and on PostgreSQL.
//!
//! Every store operation is a synchronous closure over a [`Tx`] — `exec` and `query` with `$N`
//! placeholders — run as one transaction:
//!
//! - **SQLite** runs closures on one dedicated thread that owns a `rusqlite` connection and
//!   commits them in groups: the thread takes every closure waiting in its queue, runs each inside
//!   a savepoint of one `BEGIN IMMEDIATE … COMMIT` (a plain `BEGIN`, no savepoints, when every
//!   closure of the group only reads), and only then answers the callers. One thread hop per
//!   operation instead of one per statement (sqlx's SQLite driver hops to a worker thread for
//!   every statement: measured here, most of the server's CPU went to those context switches).
//! - **PostgreSQL** runs a closure on tokio's blocking pool against a sqlx transaction, each
//!   statement driven with `Handle::block_on` (many stateless instances share the database).
//!
//! So each query is written once and both backends run the same code under the same tests.
//! (A small layer written here because no crate offers this sync-closure-over-both shape.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::types::ValueRef;
use sqlx::{Column, Row as _, TypeInfo};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("database: {0}")]
    Other(String),
    /// The database could not take the operation for a reason outside it (a failed `BEGIN` or
    /// `COMMIT` of a SQLite batch on a full disk or a held lock); see [`DbError::is_unavailable`].
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// An operation undid its own writes on purpose (an expected outcome such as a lost race,
    /// named by the operation); returning it as an error is what rolls the transaction back.
    #[error("rolled back: {0}")]
    RolledBack(&'static str),
}

pub type DbResult<T> = Result<T, DbError>;

impl DbError {
    /// The database is down, restarting, out of connections, out of disk or locked: a condition
    /// of the moment that a retry may clear (answered 503 `temporarily_unavailable`), not a bug
    /// or a bad row (500).
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Sqlite(e) => sqlite_unavailable(e),
            DbError::Postgres(e) => postgres_unavailable(e),
            DbError::Unavailable(_) => true,
            DbError::Other(_) | DbError::RolledBack(_) => false,
        }
    }
}

fn sqlite_unavailable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        e.sqlite_error_code(),
        Some(
            C::DiskFull
                | C::DatabaseBusy
                | C::DatabaseLocked
                | C::SystemIoFailure
                | C::CannotOpen
                | C::OutOfMemory
                | C::ReadOnly
        )
    )
}

fn postgres_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE classes 08 (connection exception), 53 (insufficient resources: disk full, too
        // many connections), 57P01–57P03 (the server shutting down, crashed, or starting).
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || c.starts_with("53") || matches!(&*c, "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// Why a SQLite batch failed as a whole (its `BEGIN` or `COMMIT`), told to each of its jobs.
struct BatchError {
    message: String,
    unavailable: bool,
}

impl BatchError {
    fn new(what: &str, e: &rusqlite::Error) -> BatchError {
        BatchError {
            message: format!("{what}: {e}"),
            unavailable: sqlite_unavailable(e),
        }
    }

    fn to_db_error(&self) -> DbError {
        if self.unavailable {
            DbError::Unavailable(self.message.clone())
        } else {
            DbError::Other(self.message.clone())
        }
    }
}

/// A bound parameter or a read column. Nulls are typed so PostgreSQL knows the column type.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Int(i64),
    Text(String),
    NullInt,
    NullText,
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_owned())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Val {
        v.map_or(Val::NullText, Val::Text)
    }
}
impl From<&Option<String>> for Val {
    fn from(v: &Option<String>) -> Val {
        v.clone().map_or(Val::NullText, Val::Text)
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Val {
        v.map_or(Val::NullInt, Val::Int)
    }
}

/// Build an array of parameters (`&args![a, b]` is a `&[Val]`).
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => { [$($crate::store::sql::Val::from($v)),*] };
}

/// A result row.
#[derive(Clone, Debug)]
pub struct Row(Vec<Val>);

impl Row {
    fn at(&self, i: usize) -> DbResult<&Val> {
        self.0
            .get(i)
            .ok_or_else(|| DbError::Other(format!("column {i} missing")))
    }
    pub fn text(&self, i: usize) -> DbResult<String> {
        match self.at(i)? {
            Val::Text(s) => Ok(s.clone()),
            other => Err(DbError::Other(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }
    pub fn opt_text(&self, i: usize) -> DbResult<Option<String>> {
        match self.at(i)? {
            Val::Text(s) => Ok(Some(s.clone())),
            Val::NullText | Val::NullInt => Ok(None),
            other => Err(DbError::Other(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }
    pub fn int(&self, i: usize) -> DbResult<i64> {
        match self.at(i)? {
            Val::Int(v) => Ok(*v),
            other => Err(DbError::Other(format!(
                "column {i}: expected integer, got {other:?}"
            ))),
        }
    }
    pub fn opt_int(&self, i: usize) -> DbResult<Option<i64>> {
        match self.at(i)? {
            Val::Int(v) => Ok(Some(*v)),
            Val::NullText | Val::NullInt => Ok(None),
            other => Err(DbError::Other(format!(
                "column {i}: expected integer, got {other:?}"
            ))),
        }
    }
}

/// One transaction's view of the database.
pub trait Tx {
    /// Run a statement; returns the number of rows changed.
    fn exec(&mut self, sql: &str, args: &[Val]) -> DbResult<u64>;
    fn query(&mut self, sql: &str, args: &[Val]) -> DbResult<Vec<Row>>;
    fn query_opt(&mut self, sql: &str, args: &[Val]) -> DbResult<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }
}

// ------------------------------------------------------------------------------------------
// SQLite: one thread, group commit

/// Answers a job's caller: with what the job returned, or with the batch's error (`Some`: the
/// transaction failed to begin or to commit, and the job's writes are not in the database).
type Finish = Box<dyn FnOnce(Option<&BatchError>) + Send>;

/// Runs a job's operation on the connection; given `None` (its batch could not begin a
/// transaction) it drops the operation unrun.
type RunJob = Box<dyn FnOnce(Option<&rusqlite::Connection>) -> Finish + Send>;

/// A closure for the SQLite thread. A batch whose jobs all only read runs in a deferred
/// transaction: no write lock, no savepoints, nothing written to the WAL at commit.
struct Job {
    writes: bool,
    run: RunJob,
}

/// Statements the thread runs around every closure, kept prepared (parsing them each time
/// showed in profiles).
fn control(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Most closures batched into one commit.
const MAX_BATCH: usize = 256;

struct SqliteTx<'c> {
    conn: &'c rusqlite::Connection,
}

fn bind(stmt: &mut rusqlite::Statement<'_>, args: &[Val]) -> DbResult<()> {
    // Placeholder names of the first parameters, so the hot path formats no string.
    const NAMES: [&str; 12] = [
        "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12",
    ];
    for (i, v) in args.iter().enumerate() {
        let formatted;
        let name = match NAMES.get(i) {
            Some(n) => *n,
            None => {
                formatted = format!("${}", i + 1);
                formatted.as_str()
            }
        };
        let Some(idx) = stmt.parameter_index(name)? else {
            continue;
        };
        match v {
            Val::Int(n) => stmt.raw_bind_parameter(idx, n)?,
            Val::Text(s) => stmt.raw_bind_parameter(idx, s)?,
            Val::NullInt | Val::NullText => stmt.raw_bind_parameter(idx, rusqlite::types::Null)?,
        }
    }
    Ok(())
}

impl Tx for SqliteTx<'_> {
    fn exec(&mut self, sql: &str, args: &[Val]) -> DbResult<u64> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        stmt.clear_bindings();
        bind(&mut stmt, args)?;
        Ok(stmt.raw_execute()? as u64)
    }

    fn query(&mut self, sql: &str, args: &[Val]) -> DbResult<Vec<Row>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        stmt.clear_bindings();
        bind(&mut stmt, args)?;
        let n = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                vals.push(match r.get_ref(i)? {
                    ValueRef::Integer(v) => Val::Int(v),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Null => Val::NullText,
                    ValueRef::Real(f) => Val::Int(f as i64),
                    ValueRef::Blob(b) => Val::Text(String::from_utf8_lossy(b).into_owned()),
                });
            }
            out.push(Row(vals));
        }
        Ok(out)
    }
}

/// WAL checkpoints, off the thread every operation waits for. SQLite's automatic checkpoint runs
/// inside the commit that crosses 1,000 WAL pages: under load that was dozens of stalls a second
/// of a few ms each (a checkpoint copies the pages and fsyncs the file) with both cores partly
/// idle. Here a second connection on a thread of its own runs PASSIVE checkpoints beside the
/// writer (never blocking it), at most one per [`CHECKPOINT_EVERY`], poked by the writer after
/// commits that wrote. The writer then copies the few pages committed while that checkpoint ran
/// (a PASSIVE checkpoint of its own between two batches): with the whole WAL copied back, its
/// next write restarts the WAL from the beginning, so the file stays small under sustained load.
/// Should the checkpoint thread fall behind anyway (starved of CPU), a WAL file past `wal_cap`
/// gets a TRUNCATE checkpoint on the writer itself: a stall, but a hard bound on the file.
struct Checkpoints {
    poke: std::sync::mpsc::SyncSender<()>,
    ran: Arc<AtomicBool>,
    /// The `-wal` file (`None` for an in-memory database).
    wal: Option<std::path::PathBuf>,
    wal_cap: u64,
}

/// The largest WAL file the writer lets stand (see [`Checkpoints`]).
const WAL_CAP_BYTES: u64 = 64 << 20;
/// How long the writer retries a TRUNCATE checkpoint that finds another checkpoint running.
const TRUNCATE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

impl Checkpoints {
    fn start(path: &str, wal_cap: u64) -> DbResult<Checkpoints> {
        let conn = rusqlite::Connection::open(path)?;
        conn.execute_batch("PRAGMA busy_timeout = 10000;")?;
        let (poke, poked) = std::sync::mpsc::sync_channel::<()>(1);
        let ran = Arc::new(AtomicBool::new(false));
        let ran_bg = Arc::clone(&ran);
        std::thread::Builder::new()
            .name("consentry-sqlite-checkpoint".into())
            .spawn(move || {
                // Ends when the writer thread (the only sender) stops.
                while poked.recv().is_ok() {
                    match checkpoint(&conn) {
                        Ok(()) => ran_bg.store(true, Ordering::Release),
                        Err(e) => tracing::warn!("SQLite WAL checkpoint: {e}"),
                    }
                    std::thread::sleep(CHECKPOINT_EVERY);
                }
            })
            .map_err(|e| {
                DbError::Other(format!("cannot start the SQLite checkpoint thread: {e}"))
            })?;
        let in_memory = path.is_empty() || path == ":memory:" || path.contains("mode=memory");
        Ok(Checkpoints {
            poke,
            ran,
            wal: (!in_memory).then(|| std::path::PathBuf::from(format!("{path}-wal"))),
            wal_cap,
        })
    }

    /// On the writer thread, after a batch that wrote.
    fn after_write(&self, conn: &rusqlite::Connection) {
        if self.ran.swap(false, Ordering::Acquire)
            && let Err(e) = checkpoint(conn)
        {
            tracing::warn!("SQLite WAL checkpoint: {e}");
        }
        let oversized = self
            .wal
            .as_ref()
            .and_then(|w| std::fs::metadata(w).ok())
            .is_some_and(|m| m.len() > self.wal_cap);
        if oversized {
            tracing::warn!(
                "the SQLite WAL passed {} MiB: checkpointing on the writer (the checkpoint thread fell behind)",
                self.wal_cap >> 20
            );
            // Busy while the checkpoint thread is mid-checkpoint: this thread adds no frames
            // meanwhile, so it finishes and the next try truncates.
            let started = std::time::Instant::now();
            loop {
                match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                }) {
                    Ok(0) => break,
                    Ok(_) if started.elapsed() < TRUNCATE_PATIENCE => {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Ok(_) => {
                        tracing::warn!(
                            "SQLite WAL checkpoint: still busy after {TRUNCATE_PATIENCE:?}"
                        );
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("SQLite WAL checkpoint: {e}");
                        break;
                    }
                }
            }
        }
        // Full means a checkpoint is already due.
        let _ = self.poke.try_send(());
    }
}

fn checkpoint(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

/// The shortest time between two background WAL checkpoints.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// How long the writer waits for a write lock another process holds before failing the batch.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Handle to the SQLite thread.
#[derive(Clone)]
pub struct SqliteActor {
    jobs: mpsc::UnboundedSender<Job>,
}

impl SqliteActor {
    /// Open (creating) the file and start the thread.
    pub fn open(path: &str) -> DbResult<SqliteActor> {
        SqliteActor::open_with_wal_cap(path, WAL_CAP_BYTES)
    }

    fn open_with_wal_cap(path: &str, wal_cap: u64) -> DbResult<SqliteActor> {
        SqliteActor::open_with(path, wal_cap, BUSY_TIMEOUT)
    }

    fn open_with(
        path: &str,
        wal_cap: u64,
        busy_timeout: std::time::Duration,
    ) -> DbResult<SqliteActor> {
        let conn = rusqlite::Connection::open(path)?;
        // WAL + FULL: every commit syncs the WAL before the callers hear of it, so what was
        // acknowledged (a revocation, a used code or jti, a rotation) survives a power loss or
        // an OS crash, not only a process crash (NORMAL syncs at checkpoints only). Group commit
        // spreads that one fsync over every operation of the batch.
        // busy_timeout makes a second process on the same file wait for the write lock instead
        // of failing.
        // cache_size: 8 MiB (the default 2 MiB made token lookups preads once the tables outgrew
        // it; 32 MiB cost more than it saved: SQLite walks its page cache on every commit, and
        // resident memory tripled); pages are only allocated as the database grows.
        // wal_autocheckpoint = 0: the checkpoints run on a thread of their own (below), not
        // inside a commit on this one.
        // journal_size_limit: when the writer restarts the WAL after a complete checkpoint, it
        // truncates the file back to 4 MiB, so a burst (or a checkpoint that fell behind for a
        // while) does not leave a larger file for good (a 10-minute soak saw the file step up
        // from 3 to 14 MiB without it).
        // temp_store = MEMORY: the sub-journal that lets each closure's savepoint roll back
        // (the pages it changed, as they were) lives in memory. On disk it was a temp file
        // created, written page by page and unlinked in every batch (openat + pwrite + unlink on
        // this thread: a tenth of the server's CPU in the code flow). It is never synced and
        // never read after a crash (the WAL is what survives), so durability is unchanged.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
             PRAGMA cache_size = -8192; PRAGMA wal_autocheckpoint = 0; \
             PRAGMA journal_size_limit = 4194304; PRAGMA temp_store = MEMORY;",
        )?;
        conn.busy_timeout(busy_timeout)?;
        conn.set_prepared_statement_cache_capacity(128);
        let checkpoints = Checkpoints::start(path, wal_cap)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("consentry-sqlite".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => batch.push(j),
                            Err(_) => break,
                        }
                    }
                    let writes = batch.iter().any(|j| j.writes);
                    // Without its transaction a job would run in autocommit: each statement
                    // committed alone while its caller hears of a failure. So none runs.
                    if let Err(e) = control(&conn, if writes { "BEGIN IMMEDIATE" } else { "BEGIN" })
                    {
                        tracing::warn!("SQLite: cannot begin a transaction: {e}");
                        let err = BatchError::new("cannot begin a transaction", &e);
                        for job in batch {
                            (job.run)(None)(Some(&err));
                        }
                        continue;
                    }
                    let mut finishers = Vec::with_capacity(batch.len());
                    for job in batch {
                        finishers.push((job.run)(Some(&conn)));
                    }
                    let err = control(&conn, "COMMIT")
                        .map_err(|e| {
                            tracing::warn!("SQLite: commit failed: {e}");
                            let _ = control(&conn, "ROLLBACK");
                            BatchError::new("commit failed", &e)
                        })
                        .err();
                    for f in finishers {
                        f(err.as_ref());
                    }
                    if writes {
                        checkpoints.after_write(&conn);
                    }
                }
            })
            .map_err(|e| DbError::Other(format!("cannot start the SQLite thread: {e}")))?;
        Ok(SqliteActor { jobs: tx })
    }

    /// Run `f` as one operation; `writes` false promises it only reads.
    pub async fn run<T, F>(&self, writes: bool, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> DbResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<DbResult<T>>();
        let run = Box::new(move |conn: Option<&rusqlite::Connection>| -> Finish {
            let Some(conn) = conn else {
                return Box::new(move |batch_error: Option<&BatchError>| {
                    let e = batch_error.map_or_else(
                        || DbError::Other("the operation was not run".into()),
                        BatchError::to_db_error,
                    );
                    let _ = tx.send(Err(e));
                });
            };
            // Each writing closure in its own savepoint: a failing one leaves no trace in the
            // batch. A reader has nothing to undo.
            // A panic inside one operation (none is known) fails that operation only: the
            // thread every other operation waits for must outlive it.
            let guarded = |f: F| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut SqliteTx { conn })))
                    .unwrap_or_else(|_| Err(DbError::Other("a database operation panicked".into())))
            };
            let res = if !writes {
                guarded(f)
            } else {
                match control(conn, "SAVEPOINT op") {
                    Ok(()) => {
                        let r = guarded(f);
                        if r.is_err() {
                            let _ = control(conn, "ROLLBACK TO op");
                        }
                        let _ = control(conn, "RELEASE op");
                        r
                    }
                    Err(e) => Err(e.into()),
                }
            };
            Box::new(move |batch_error: Option<&BatchError>| {
                let out = match batch_error {
                    Some(e) => Err(e.to_db_error()),
                    None => res,
                };
                let _ = tx.send(out);
            })
        });
        self.jobs
            .send(Job { writes, run })
            .map_err(|_| DbError::Other("the SQLite thread has stopped".into()))?;
        rx.await
            .map_err(|_| DbError::Other("the SQLite thread dropped a request".into()))?
    }
}

// ------------------------------------------------------------------------------------------
// PostgreSQL: sqlx on the blocking pool

struct PgTx<'t> {
    tx: &'t mut sqlx::Transaction<'static, sqlx::Postgres>,
    handle: &'t tokio::runtime::Handle,
}

fn pg_query<'q>(
    sql: &'q str,
    args: &[Val],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut q = sqlx::query(sql);
    for v in args {
        q = match v {
            Val::Int(n) => q.bind(*n),
            Val::Text(s) => q.bind(s.clone()),
            Val::NullInt => q.bind(None::<i64>),
            Val::NullText => q.bind(None::<String>),
        };
    }
    q
}

impl Tx for PgTx<'_> {
    fn exec(&mut self, sql: &str, args: &[Val]) -> DbResult<u64> {
        let q = pg_query(sql, args);
        let tx = &mut *self.tx;
        Ok(self.handle.block_on(q.execute(&mut **tx))?.rows_affected())
    }

    fn query(&mut self, sql: &str, args: &[Val]) -> DbResult<Vec<Row>> {
        let q = pg_query(sql, args);
        let tx = &mut *self.tx;
        let rows = self.handle.block_on(q.fetch_all(&mut **tx))?;
        rows.iter()
            .map(|r| {
                let mut vals = Vec::with_capacity(r.len());
                for (i, col) in r.columns().iter().enumerate() {
                    let v = match col.type_info().name() {
                        "INT8" | "INT4" | "INT2" => {
                            r.try_get::<Option<i64>, _>(i).map(Val::from).or_else(|_| {
                                r.try_get::<Option<i32>, _>(i)
                                    .map(|v| Val::from(v.map(i64::from)))
                            })?
                        }
                        _ => Val::from(r.try_get::<Option<String>, _>(i)?),
                    };
                    vals.push(v);
                }
                Ok(Row(vals))
            })
            .collect()
    }
}

#[derive(Clone)]
pub struct PgRunner {
    pub pool: sqlx::PgPool,
}

impl PgRunner {
    pub async fn run<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> DbResult<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut tx = handle.block_on(pool.begin())?;
            let res = f(&mut PgTx {
                tx: &mut tx,
                handle: &handle,
            });
            match res {
                Ok(v) => {
                    handle.block_on(tx.commit())?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = handle.block_on(tx.rollback());
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| DbError::Other(format!("database task failed: {e}")))?
    }
}

/// Either backend.
#[derive(Clone)]
pub enum Runner {
    Sqlite(SqliteActor),
    Postgres(Arc<PgRunner>),
}

impl Runner {
    /// Run `f` as one transaction; `writes` false promises it only reads (SQLite then takes no
    /// write lock for it).
    pub async fn run<T, F>(&self, writes: bool, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> DbResult<T> + Send + 'static,
    {
        match self {
            Runner::Sqlite(a) => a.run(writes, f).await,
            Runner::Postgres(p) => p.run(f).await,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// A panicking operation fails alone: its writes are rolled back, the thread lives on.
    #[tokio::test]
    async fn a_panicking_operation_fails_alone_and_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("panic.db");
        let actor = SqliteActor::open(db.to_str().unwrap()).unwrap();
        actor
            .run(true, |tx| tx.exec("CREATE TABLE t (v INTEGER)", &[]))
            .await
            .unwrap();
        let r = actor
            .run(true, |tx| -> DbResult<()> {
                tx.exec("INSERT INTO t (v) VALUES (1)", &[])?;
                panic!("bug in an operation");
            })
            .await;
        assert!(
            matches!(&r, Err(DbError::Other(m)) if m.contains("panicked")),
            "{r:?}"
        );
        let r = actor
            .run(false, |_| -> DbResult<()> { panic!("bug in a read") })
            .await;
        assert!(r.is_err());
        actor
            .run(true, |tx| tx.exec("INSERT INTO t (v) VALUES (2)", &[]))
            .await
            .unwrap();
        let rows = actor
            .run(false, |tx| tx.query("SELECT v FROM t", &[]))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].int(0).unwrap(), 2);
    }

    /// A reply means the write is on disk: the writer connection syncs the WAL at every commit
    /// (`synchronous = FULL`, 2), not only at checkpoints (`NORMAL`, 1), so a power loss or OS
    /// crash cannot bring back a revoked grant, a used code or a used jti that was acknowledged.
    #[tokio::test]
    async fn the_writer_syncs_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sync.db");
        let actor = SqliteActor::open(db.to_str().unwrap()).unwrap();
        let rows = actor
            .run(false, |tx| tx.query("PRAGMA synchronous", &[]))
            .await
            .unwrap();
        assert_eq!(rows[0].int(0).unwrap(), 2, "synchronous must be FULL (2)");
        let rows = actor
            .run(false, |tx| tx.query("PRAGMA journal_mode", &[]))
            .await
            .unwrap();
        assert_eq!(rows[0].text(0).unwrap(), "wal");
        let rows = actor
            .run(false, |tx| tx.query("PRAGMA journal_size_limit", &[]))
            .await
            .unwrap();
        assert_eq!(
            rows[0].int(0).unwrap(),
            4 << 20,
            "a reset WAL is truncated back to 4 MiB"
        );
    }

    /// When `BEGIN IMMEDIATE` fails (here: another connection holds the write lock longer than
    /// the busy timeout), no job of the batch runs, each gets an error, and nothing any of them
    /// would have written reaches the file, even if the lock is free by the time a job would run
    /// (run outside a transaction, each job would commit on its own while its caller hears of a
    /// failure).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_whose_begin_fails_runs_no_job_and_fails_each() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("begin.db");
        let path = db.to_str().unwrap().to_owned();
        let actor =
            SqliteActor::open_with(&path, WAL_CAP_BYTES, std::time::Duration::from_millis(50))
                .unwrap();
        actor
            .run(true, |tx| tx.exec("CREATE TABLE t (v INTEGER)", &[]))
            .await
            .unwrap();

        let blocker = rusqlite::Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

        // A reader holds the SQLite thread until both writers are queued, so they form one batch.
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let (holding_tx, holding_rx) = oneshot::channel::<()>();
        let gate = tokio::spawn({
            let actor = actor.clone();
            async move {
                actor
                    .run(false, move |_| {
                        let _ = holding_tx.send(());
                        let _ = gate_rx.recv();
                        Ok(())
                    })
                    .await
            }
        });
        holding_rx.await.unwrap();
        // The first writer, if it runs at all, tells the test, and waits until the lock is free.
        let (started_tx, started_rx) = oneshot::channel::<()>();
        let (released_tx, released_rx) = std::sync::mpsc::channel::<()>();
        let first = actor.run(true, move |tx| {
            let _ = started_tx.send(());
            let _ = released_rx.recv();
            tx.exec("INSERT INTO t (v) VALUES (1)", &[])
        });
        let second = actor.run(true, |tx| tx.exec("INSERT INTO t (v) VALUES (2)", &[]));
        let open = async move {
            let _ = gate_tx.send(());
            if started_rx.await.is_ok() {
                // The job ran although BEGIN failed: free the lock so its writes can land.
                blocker.execute_batch("ROLLBACK").unwrap();
                let _ = released_tx.send(());
            }
            blocker
        };
        // Polled in order: both writers are queued before the gate opens.
        let (first, second, blocker) = tokio::join!(first, second, open);
        gate.await.unwrap().unwrap();
        drop(blocker);

        let direct = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = direct
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "a job of the failed batch wrote to the file");
        for (name, r) in [("first", &first), ("second", &second)] {
            let Err(DbError::Unavailable(m)) = r else {
                panic!("{name}: expected an error, got {r:?}");
            };
            assert!(m.contains("cannot begin a transaction"), "{name}: {m}");
            assert!(
                r.as_ref().is_err_and(DbError::is_unavailable),
                "{name}: a busy lock is a 503"
            );
        }
        // The thread lives on: with the lock free, writes commit again.
        actor
            .run(true, |tx| tx.exec("INSERT INTO t (v) VALUES (3)", &[]))
            .await
            .unwrap();
        let n: i64 = direct
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    /// What a retry may clear is `is_unavailable` (503), what it will not (a bad row, a bug) is
    /// not (500).
    #[test]
    fn unavailable_errors_are_told_from_bugs() {
        let sqlite = |code: std::ffi::c_int| {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_IOERR,
        ] {
            assert!(sqlite(code).is_unavailable(), "{code}");
        }
        for code in [
            rusqlite::ffi::SQLITE_CONSTRAINT,
            rusqlite::ffi::SQLITE_CORRUPT,
        ] {
            assert!(!sqlite(code).is_unavailable(), "{code}");
        }
        assert!(DbError::Postgres(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(
            DbError::Postgres(sqlx::Error::Io(
                std::io::ErrorKind::ConnectionRefused.into()
            ))
            .is_unavailable()
        );
        assert!(!DbError::Postgres(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!DbError::Other("column 3 missing".into()).is_unavailable());
        assert!(DbError::Unavailable("commit failed".into()).is_unavailable());
    }

    fn wal_len(db: &std::path::Path) -> u64 {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
    }

    /// With SQLite's automatic checkpoints off, the checkpoint thread, the writer's catch-up and
    /// (when those fall behind) the cap keep the WAL from growing with every commit: 12,000
    /// commits of a 2 KB row are ≥ 48 MB of WAL frames if the log never restarts. The cap (4 MiB
    /// here) is checked after every batch, so the bound holds however the threads are scheduled:
    /// the cap plus one batch (≤ 256 commits of ≤ 3 pages).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_bounded_under_sustained_writes_and_every_row_stays() {
        const CAP: u64 = 4 << 20;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("wal.db");
        let actor = SqliteActor::open_with_wal_cap(db.to_str().unwrap(), CAP).unwrap();
        actor
            .run(true, |tx| {
                tx.exec(
                    "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
                    &[],
                )
            })
            .await
            .unwrap();
        let filler = "x".repeat(2048);
        let mut largest = 0;
        for i in 0..12_000_i64 {
            let v = filler.clone();
            actor
                .run(true, move |tx| {
                    tx.exec(
                        "INSERT INTO t (id, v) VALUES ($1, $2)",
                        &[i.into(), v.into()],
                    )
                })
                .await
                .unwrap();
            if i % 100 == 0 {
                largest = largest.max(wal_len(&db));
            }
        }
        largest = largest.max(wal_len(&db));
        assert!(
            largest <= CAP + 256 * 3 * 4200,
            "the WAL grew to {largest} bytes"
        );
        let n = actor
            .run(false, |tx| tx.query("SELECT count(*) FROM t", &[]))
            .await
            .unwrap();
        assert_eq!(n[0].int(0).unwrap(), 12_000);
    }
}
