//! The analytics store: the `events`, `scores` and `decisions` tables, each one DataFusion
//! [`TableProvider`] over a hot tier of recent Arrow batches in memory and a cold tier of
//! Parquet files on disk.
//!
//! # Layout
//!
//! ```text
//! <dir>/<table>/date=YYYY-MM-DD/hour=HH/part-<16 hex digits>.parquet
//! ```
//!
//! Hive-style partitions by the UTC date and hour of the table's time column, so DuckDB
//! (`read_parquet('<dir>/events/*/*/*.parquet', hive_partitioning = true)`), Spark, Trino and
//! pyarrow datasets read the directory as it is. Files are zstd-compressed with row-group and
//! page statistics, at most 128 Ki rows per row group, and carry the Arrow schema. File ids
//! grow over the store's life (micros at open, then a counter), so name order is write order.
//! A file is written as `<name>.tmp`, fsync'd and renamed, so a file under its final name is
//! always complete.
//!
//! # Flush and the snapshot invariant
//!
//! [`Store::append`] puts a batch in the hot tier. A flush (due by age, by hot bytes, on
//! [`Store::flush`], or always in eager/shutdown mode) writes the batches that are hot at its
//! start, split by hour partition, *outside* the table lock; then, under the lock, it registers
//! the new files and removes exactly the batches it wrote (batches appended meanwhile stay
//! hot). A scan takes, under the same lock, one snapshot of (registered files, hot batches).
//! So a query sees every row exactly once, whatever flush it races with. A flush that fails
//! keeps its batches hot, removes what it wrote, and is retried on the next tick.
//!
//! `on_durable` callbacks run after the flush that wrote their batch registered its files, in
//! append order across all tables (a callback waits for every earlier batch to be durable),
//! outside the table locks, once. A Kafka source commits its offsets there, so what was hot at
//! a crash is replayed from the committed offsets; on a graceful stop the maintenance thread
//! flushes everything first. Callbacks must be quick and must not call back into the store's
//! `flush` or `maintain`.
//!
//! # Duplicates
//!
//! A table with a `dedupe_column` (`events`: `event_id`) drops a row whose id was appended
//! within `dedupe_window`, also across a restart, however late (the ids of the files written
//! within the window before the last one are read back at open): a source that replays what
//! was stored but not yet acknowledged stores it once. See `dedupe.rs`.
//!
//! # Compaction, retention
//!
//! An hour partition with at least `compact_min_files` files is rewritten as one file that
//! lists the files it replaces in its `vigil.replaces` key-value metadata; the swap in the
//! registry is one step under the table lock. While its hour is still running, only the
//! files flushes wrote are compacted (so the hour is not rewritten over and over as it
//! grows); once the hour is over, all its files become one. The replaced files are deleted after
//! `compaction_grace` (60 s by default), so a query that planned them before the swap can still
//! read them. Retention unregisters and deletes whole hour partitions that ended before
//! `now - retention`.
//!
//! # Recovery
//!
//! [`Store::open`] deletes `*.tmp` leftovers, deletes every file named in another file's
//! `vigil.replaces` (a crash between writing a compacted file and deleting what it replaced),
//! reads each remaining file's footer (row count, time range, schema — a mismatch is an error
//! naming the file) and registers them in id order. Nothing else is needed: the registry is
//! the directory.

mod compact;
mod dedupe;
mod error;
mod layout;
mod provider;
mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;
use tokio_util::sync::CancellationToken;

pub use error::StoreError;
pub use layout::REPLACES_KEY;

use compact::PendingDelete;
use provider::StoreTable;
use table::Table;

/// Where and how the store keeps its tables.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Root directory; one sub-directory per table. Default `store`.
    pub dir: PathBuf,
    /// A hot batch older than this (by arrival) makes the next maintenance flush. Default 5 s.
    pub flush_interval: Duration,
    /// Hot bytes (all tables) that make the next maintenance flush. Default 64 MiB.
    pub hot_max_bytes: usize,
    /// Hour partitions that ended before `now - retention` are deleted; `None` keeps
    /// everything. Default 30 days.
    pub retention: Option<Duration>,
    /// An hour partition with at least this many files is compacted into one (in the running
    /// hour: this many flushed files). Default 8.
    pub compact_min_files: usize,
    /// How long files replaced by compaction stay on disk for queries already planned over
    /// them. Default 60 s.
    pub compaction_grace: Duration,
    /// For tables with a `dedupe_column`: how long an id is remembered. Default 120 s (a
    /// crash replays what was written but not yet acknowledged: a flush interval or so).
    pub dedupe_window: Duration,
    /// Most ids remembered per table; beyond, the oldest are forgotten. Default 4,000,000.
    pub dedupe_max_ids: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("store"),
            flush_interval: Duration::from_secs(5),
            hot_max_bytes: 64 << 20,
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
            compact_min_files: 8,
            compaction_grace: Duration::from_secs(60),
            dedupe_window: Duration::from_secs(120),
            dedupe_max_ids: 4_000_000,
        }
    }
}

/// A table of the store.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// The table's name in SQL and its directory name (ASCII letters, digits, `_`, `-`).
    pub name: String,
    pub schema: SchemaRef,
    /// A non-null `Timestamp(Microsecond, tz)` column; files are partitioned by its UTC date
    /// and hour, and filters on it prune whole files.
    pub time_column: String,
    /// A UTF-8 column identifying a row (`event_id`): a row whose id was appended within
    /// `dedupe_window` — before a restart too — is dropped (see `dedupe.rs`). `None`: rows are
    /// kept as appended.
    pub dedupe_column: Option<String>,
}

/// Runs once the rows of the batch it came with are in Parquet.
pub type OnDurable = Box<dyn FnOnce() + Send>;

/// What one flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Hot batches written (and removed from the hot tier).
    pub batches: usize,
    pub rows: u64,
    /// Parquet files written.
    pub files: usize,
    pub bytes: u64,
    /// `on_durable` callbacks run.
    pub callbacks: usize,
}

/// A table's size and lifetime counters.
#[derive(Debug, Clone, Default)]
pub struct TableStats {
    pub name: String,
    pub hot_rows: u64,
    pub hot_bytes: u64,
    pub files: usize,
    pub file_bytes: u64,
    pub rows_flushed_total: u64,
    pub flushes_total: u64,
    pub compactions_total: u64,
    pub files_deleted_by_retention_total: u64,
    /// Rows dropped as duplicates of an id already stored (tables with a `dedupe_column`).
    pub duplicates_dropped_total: u64,
    /// The last flush's error, cleared by a successful flush.
    pub last_flush_error: Option<String>,
}

/// The analytics store. `Send + Sync`; share it as `Arc<Store>`.
pub struct Store {
    cfg: StoreConfig,
    tables: Vec<Arc<Table>>,
    by_name: BTreeMap<String, usize>,
    /// Next file id.
    next_id: AtomicU64,
    /// Next append sequence number (store-wide append order).
    next_seq: AtomicU64,
    eager: AtomicBool,
    /// Opened with [`Store::open_read_only`]: every write is refused.
    read_only: bool,
    /// Serializes flush, compaction, retention and deletions (registry and directory changes).
    maintenance: Mutex<()>,
    /// Callbacks of durable batches waiting for an earlier batch to become durable.
    ready: Mutex<BTreeMap<u64, OnDurable>>,
    pending_deletes: Mutex<Vec<PendingDelete>>,
    /// Wakes the maintenance thread early when the hot tier is over its byte limit.
    wake: (Mutex<bool>, Condvar),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.cfg.dir)
            .field("tables", &self.table_names())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Opens (creating if needed) the store under `cfg.dir` with these tables, and recovers
    /// their files (see the module docs). Errors on an invalid table spec, a duplicate table
    /// name, an unreadable file or a file whose schema does not match its table.
    pub fn open(cfg: StoreConfig, tables: Vec<TableSpec>) -> Result<Arc<Store>, StoreError> {
        Self::open_as(cfg, tables, false)
    }

    /// Opens an existing store to query it only (`vigil sql --data-dir`), possibly while an
    /// engine writes to it: nothing is created or deleted, leftovers and files replaced by a
    /// compaction are left out, and every write (`append`, `flush`, `maintain`) is
    /// [`StoreError::ReadOnly`].
    pub fn open_read_only(
        cfg: StoreConfig,
        tables: Vec<TableSpec>,
    ) -> Result<Arc<Store>, StoreError> {
        Self::open_as(cfg, tables, true)
    }

    fn open_as(
        cfg: StoreConfig,
        tables: Vec<TableSpec>,
        read_only: bool,
    ) -> Result<Arc<Store>, StoreError> {
        if !read_only {
            layout::create_dir_durable(&cfg.dir)?;
        }
        let root = std::fs::canonicalize(&cfg.dir).map_err(|e| StoreError::io(&cfg.dir, e))?;
        let mut by_name = BTreeMap::new();
        let mut list = Vec::with_capacity(tables.len());
        let mut max_id: Option<u64> = None;
        for spec in tables {
            let mut table = Table::new(spec, &root)?;
            table.enable_dedupe(cfg.dedupe_window, cfg.dedupe_max_ids)?;
            if by_name
                .insert(table.name().to_string(), list.len())
                .is_some()
            {
                return Err(StoreError::InvalidTable {
                    table: table.name().to_string(),
                    detail: "declared twice".into(),
                });
            }
            max_id = max_id.max(table.recover(read_only)?);
            list.push(Arc::new(table));
        }
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let first_id = now_us.max(max_id.map_or(0, |m| m.saturating_add(1)));
        Ok(Arc::new(Store {
            cfg: StoreConfig { dir: root, ..cfg },
            tables: list,
            by_name,
            next_id: AtomicU64::new(first_id),
            next_seq: AtomicU64::new(0),
            eager: AtomicBool::new(false),
            read_only,
            maintenance: Mutex::new(()),
            ready: Mutex::new(BTreeMap::new()),
            pending_deletes: Mutex::new(Vec::new()),
            wake: (Mutex::new(false), Condvar::new()),
        }))
    }

    fn table(&self, name: &str) -> Result<&Arc<Table>, StoreError> {
        self.by_name
            .get(name)
            .and_then(|&i| self.tables.get(i))
            .ok_or_else(|| StoreError::UnknownTable(name.to_string()))
    }

    fn next_file_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a batch to `table`'s hot tier. Its schema must have the table's field names and
    /// types in order (otherwise `SchemaMismatch` naming the table); an unknown table is
    /// `UnknownTable`. Empty batches are accepted. `on_durable` runs exactly once, after the
    /// flush that writes these rows to Parquet (see the module docs for the order).
    pub fn append(
        &self,
        table: &str,
        batch: RecordBatch,
        on_durable: Option<OnDurable>,
    ) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let t = self.table(table)?;
        let batch = t.conform(batch)?;
        let batch = t.dedupe(batch)?;
        let bytes = batch.get_array_memory_size();
        let rows = batch.num_rows() as u64;
        let total = {
            let mut st = t.lock();
            // Taken under the table lock, so each table's hot tier is in sequence order.
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            st.hot.push_back(table::HotBatch {
                seq,
                batch,
                bytes,
                arrived: SystemTime::now(),
                on_durable,
            });
            st.hot_bytes += bytes;
            st.hot_rows += rows;
            drop(st);
            self.hot_bytes()
        };
        if total >= self.cfg.hot_max_bytes {
            let (flag, cv) = &self.wake;
            *lock(flag) = true;
            cv.notify_all();
        }
        Ok(())
    }

    fn hot_bytes(&self) -> usize {
        self.tables.iter().map(|t| t.lock().hot_bytes).sum()
    }

    /// Writes every hot batch to Parquet now, then runs their callbacks. On a table's failure
    /// the other tables are still flushed, the failed table's batches stay hot, and the first
    /// error is returned.
    pub fn flush(&self) -> Result<FlushReport, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let _m = lock(&self.maintenance);
        self.flush_locked()
    }

    fn flush_locked(&self) -> Result<FlushReport, StoreError> {
        let mut report = FlushReport::default();
        let mut first_err = None;
        let mut durable = Vec::new();
        for t in &self.tables {
            match t.flush(&|| self.next_file_id()) {
                Ok(f) => {
                    report.batches += f.batches;
                    report.rows += f.rows;
                    report.files += f.files;
                    report.bytes += f.bytes;
                    durable.extend(f.callbacks);
                }
                Err(e) => {
                    tracing::warn!(table = t.name(), error = %e, "store flush failed; the batches stay hot");
                    first_err.get_or_insert(e);
                }
            }
        }
        report.callbacks = self.run_callbacks(durable);
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Runs, in append order, every durable callback with no earlier batch still hot.
    fn run_callbacks(&self, durable: Vec<(u64, OnDurable)>) -> usize {
        let oldest_hot = self
            .tables
            .iter()
            .filter_map(|t| t.lock().hot.front().map(|h| h.seq))
            .min()
            .unwrap_or(u64::MAX);
        let due: Vec<OnDurable> = {
            let mut ready = lock(&self.ready);
            ready.extend(durable);
            let later = ready.split_off(&oldest_hot);
            std::mem::replace(&mut *ready, later)
                .into_values()
                .collect()
        };
        let n = due.len();
        for cb in due {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(cb)).is_err() {
                tracing::error!("an on_durable callback panicked");
            }
        }
        n
    }

    /// Flushes when due (a hot batch older than `flush_interval`, hot bytes over
    /// `hot_max_bytes`, or anything hot in eager mode), compacts, applies retention and deletes
    /// files whose compaction grace has passed. Every step runs even if an earlier one failed;
    /// the first error is returned.
    pub fn maintain(&self, now: SystemTime) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let _m = lock(&self.maintenance);
        let mut first_err: Option<StoreError> = None;
        let mut keep = |r: Result<(), StoreError>| {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        };
        if self.flush_due(now) {
            keep(self.flush_locked().map(|_| ()));
        }
        let now_us = now
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        for t in &self.tables {
            let min_files = self.cfg.compact_min_files;
            match compact::compact_table(t, min_files, now_us, &|| self.next_file_id()) {
                Ok(retired) => {
                    let due = now.checked_add(self.cfg.compaction_grace).unwrap_or(now);
                    lock(&self.pending_deletes)
                        .extend(retired.into_iter().map(|path| PendingDelete { due, path }));
                }
                Err(e) => {
                    tracing::warn!(table = t.name(), error = %e, "store compaction failed");
                    keep(Err(e));
                }
            }
        }
        if let Some(cutoff) = self
            .cfg
            .retention
            .and_then(|r| now.checked_sub(r))
            .and_then(|c| c.duration_since(UNIX_EPOCH).ok())
        {
            let cutoff_us = i64::try_from(cutoff.as_micros()).unwrap_or(i64::MAX);
            for t in &self.tables {
                keep(compact::expire_table(t, cutoff_us).map(|_| ()));
            }
        }
        keep(compact::delete_due(&mut lock(&self.pending_deletes), now));
        first_err.map_or(Ok(()), Err)
    }

    fn flush_due(&self, now: SystemTime) -> bool {
        let eager = self.eager.load(Ordering::Relaxed);
        let mut bytes = 0;
        for t in &self.tables {
            let st = t.lock();
            if let Some(front) = st.hot.front() {
                if eager {
                    return true;
                }
                let age = now.duration_since(front.arrived).unwrap_or_default();
                if age >= self.cfg.flush_interval {
                    return true;
                }
            }
            bytes += st.hot_bytes;
        }
        bytes >= self.cfg.hot_max_bytes && bytes > 0
    }

    /// Shutdown mode: every `maintain` flushes whatever is hot.
    pub fn set_eager(&self, eager: bool) {
        self.eager.store(eager, Ordering::Relaxed);
    }

    /// Starts a thread (`vigil-store`) that calls [`Store::maintain`] every `tick` (and early
    /// when the hot tier is over its byte limit); errors are logged and retried next tick. On
    /// `stop` it flushes everything hot and exits: join it after cancelling.
    pub fn spawn_maintenance(
        self: &Arc<Self>,
        tick: Duration,
        stop: CancellationToken,
    ) -> std::thread::JoinHandle<()> {
        let store = Arc::clone(self);
        let run = move || store.maintenance_loop(tick, &stop);
        // Failing to start a thread is an OS resource failure, as with `std::thread::spawn`.
        std::thread::Builder::new()
            .name("vigil-store".into())
            .spawn(run)
            .expect("start the store maintenance thread")
    }

    fn maintenance_loop(&self, tick: Duration, stop: &CancellationToken) {
        // The stop token is async; this thread polls it at least this often.
        const POLL: Duration = Duration::from_millis(50);
        let mut next = Instant::now() + tick;
        while !stop.is_cancelled() {
            let now = Instant::now();
            let woken = {
                let (flag, cv) = &self.wake;
                let mut flag = lock(flag);
                if !*flag && now < next {
                    let wait = next.saturating_duration_since(now).min(POLL);
                    flag = cv
                        .wait_timeout(flag, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                std::mem::take(&mut *flag)
            };
            if stop.is_cancelled() {
                break;
            }
            if woken || Instant::now() >= next {
                if let Err(e) = self.maintain(SystemTime::now()) {
                    tracing::warn!(error = %e, "store maintenance failed; retrying next tick");
                }
                next = Instant::now() + tick;
            }
        }
        self.set_eager(true);
        match self.flush() {
            Ok(r) => tracing::info!(rows = r.rows, files = r.files, "store flushed on shutdown"),
            Err(e) => tracing::error!(error = %e, "store flush on shutdown failed"),
        }
        // Closing: no query of this process still needs the files compaction replaced, so they
        // go now rather than after the grace — another engine reading the directory (DuckDB,
        // Spark) then sees every row once.
        let _m = lock(&self.maintenance);
        let mut pending = lock(&self.pending_deletes);
        for p in pending.iter_mut() {
            p.due = UNIX_EPOCH;
        }
        if let Err(e) = compact::delete_due(&mut pending, SystemTime::now()) {
            tracing::warn!(error = %e, "cannot delete files replaced by compaction");
        }
    }

    /// The DataFusion table over both tiers of `table`.
    pub fn provider(&self, table: &str) -> Option<Arc<dyn TableProvider>> {
        let t = self.table(table).ok()?;
        Some(Arc::new(StoreTable::new(Arc::clone(t))))
    }

    /// Registers every table in `ctx` under its name.
    pub fn register(&self, ctx: &SessionContext) -> Result<(), StoreError> {
        for t in &self.tables {
            ctx.register_table(
                t.name(),
                Arc::new(StoreTable::new(Arc::clone(t))) as Arc<dyn TableProvider>,
            )?;
        }
        Ok(())
    }

    /// Sizes and counters per table, in declaration order.
    pub fn stats(&self) -> Vec<TableStats> {
        self.tables
            .iter()
            .map(|t| {
                let st = t.lock();
                TableStats {
                    name: t.name().to_string(),
                    hot_rows: st.hot_rows,
                    hot_bytes: st.hot_bytes as u64,
                    files: st.files.len(),
                    file_bytes: st.files.values().map(|f| f.meta.bytes).sum(),
                    rows_flushed_total: st.counters.rows_flushed_total,
                    flushes_total: st.counters.flushes_total,
                    compactions_total: st.counters.compactions_total,
                    files_deleted_by_retention_total: st.counters.files_deleted_by_retention_total,
                    duplicates_dropped_total: t.duplicates_dropped(),
                    last_flush_error: st.last_flush_error.clone(),
                }
            })
            .collect()
    }

    /// The tables' names, in declaration order.
    pub fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|t| t.name().to_string()).collect()
    }

    /// The store's root directory (absolute).
    pub fn dir(&self) -> &std::path::Path {
        &self.cfg.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    fn spec() -> TableSpec {
        TableSpec {
            name: "t".into(),
            schema: Arc::new(Schema::new(vec![
                Field::new("id", DataType::Utf8, false),
                Field::new(
                    "timestamp",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                    false,
                ),
            ])),
            time_column: "timestamp".into(),
            dedupe_column: Some("id".into()),
        }
    }

    /// Rows with ids `r<i>`, all in one hour of 2025-06-01.
    fn rows(ids: std::ops::Range<u32>) -> RecordBatch {
        let id: StringArray = ids.clone().map(|i| Some(format!("r{i}"))).collect();
        let ts: TimestampMicrosecondArray = ids
            .map(|i| Some(1_748_772_000_000_000 + i64::from(i)))
            .collect::<TimestampMicrosecondArray>()
            .with_timezone("+00:00");
        RecordBatch::try_new(spec().schema, vec![Arc::new(id), Arc::new(ts)]).unwrap()
    }

    /// The Parquet files under `dir`.
    fn parquet_files(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(parquet_files(&p));
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
        out
    }

    /// `file` as if written `age` ago.
    fn age(file: &std::path::Path, age: Duration) {
        let f = std::fs::File::options().write(true).open(file).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    /// A restart long after the crash (past the window, measured from now) still drops the
    /// replay of what the last files hold; files written a window before those are not read.
    #[test]
    fn a_late_restart_still_drops_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = || StoreConfig {
            dir: dir.path().to_path_buf(),
            retention: None,
            dedupe_window: Duration::from_secs(60),
            ..StoreConfig::default()
        };
        let store = Store::open(cfg(), vec![spec()]).unwrap();
        store.append("t", rows(0..100), None).unwrap();
        store.flush().unwrap();
        drop(store);
        let first = parquet_files(dir.path());
        let store = Store::open(cfg(), vec![spec()]).unwrap();
        store.append("t", rows(100..200), None).unwrap();
        store.flush().unwrap();
        drop(store);
        // the engine was killed after that flush and restarts an hour later; the first file
        // was written two hours before the last, so it is not what the crash replays
        for f in parquet_files(dir.path()) {
            let old = first.contains(&f);
            age(&f, Duration::from_secs(if old { 3 * 3600 } else { 3600 }));
        }
        let store = Store::open(cfg(), vec![spec()]).unwrap();
        // the source replays from its last commit: rows 150..250
        store.append("t", rows(150..250), None).unwrap();
        assert_eq!(store.stats()[0].duplicates_dropped_total, 50);
        // ids older than the window before the last write are not remembered
        store.append("t", rows(0..10), None).unwrap();
        assert_eq!(store.stats()[0].duplicates_dropped_total, 50);
    }
}
