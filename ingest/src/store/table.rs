//! One table's two tiers behind one lock: the hot batches and the registry of its Parquet
//! files. Everything a query sees comes from one [`Table::snapshot`] taken under that lock.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::object_store::path::Path as ObjectPath;

use super::dedupe::Dedupe;
use super::error::StoreError;
use super::layout::{self, FileMeta, HOUR_US, Hour, PartWriter};
use super::{OnDurable, TableSpec};

/// A registered Parquet file of a table.
#[derive(Debug)]
pub(crate) struct FileEntry {
    pub id: u64,
    pub name: String,
    pub path: PathBuf,
    /// The same path as the local object store names it.
    pub location: ObjectPath,
    pub hour: Hour,
    pub meta: FileMeta,
}

impl FileEntry {
    fn new(id: u64, path: PathBuf, hour: Hour, meta: FileMeta) -> Result<Self, StoreError> {
        let location = ObjectPath::from_absolute_path(&path).map_err(|e| {
            StoreError::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            )
        })?;
        Ok(Self {
            id,
            name: layout::file_name(id),
            path,
            location,
            hour,
            meta,
        })
    }

    /// The inclusive time range (UTC µs) the file's rows lie in: its statistics, else its
    /// hour partition (every row of a file is in its partition's hour).
    pub fn time_range(&self) -> (i64, i64) {
        self.meta.time_range.unwrap_or((
            self.hour.saturating_mul(HOUR_US),
            self.hour.saturating_add(1).saturating_mul(HOUR_US) - 1,
        ))
    }
}

/// A batch in the hot tier.
pub(crate) struct HotBatch {
    /// Store-wide append order.
    pub seq: u64,
    pub batch: RecordBatch,
    pub bytes: usize,
    pub arrived: SystemTime,
    pub on_durable: Option<OnDurable>,
}

/// Lifetime counters of a table (see [`TableStats`](super::TableStats)).
#[derive(Debug, Default, Clone)]
pub(crate) struct Counters {
    pub rows_flushed_total: u64,
    pub flushes_total: u64,
    pub compactions_total: u64,
    pub files_deleted_by_retention_total: u64,
}

#[derive(Default)]
pub(crate) struct TableState {
    /// Registered files by id (ids grow with time, so this is write order).
    pub files: BTreeMap<u64, Arc<FileEntry>>,
    /// Hot batches in append order; only a flush removes them, from the front.
    pub hot: VecDeque<HotBatch>,
    pub hot_bytes: usize,
    pub hot_rows: u64,
    pub counters: Counters,
    pub last_flush_error: Option<String>,
}

/// What a query reads: the registered files and the hot batches at one instant.
pub(crate) struct Snapshot {
    pub files: Vec<Arc<FileEntry>>,
    pub hot: Vec<RecordBatch>,
}

/// What flushing one table did.
#[derive(Default)]
pub(crate) struct TableFlushed {
    pub batches: usize,
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    /// Callbacks of the flushed batches, with their append sequence numbers.
    pub callbacks: Vec<(u64, OnDurable)>,
}

pub(crate) struct Table {
    pub spec: TableSpec,
    pub time_idx: usize,
    pub dir: PathBuf,
    state: Mutex<TableState>,
    /// Ids seen recently, for a table with a `dedupe_column`.
    dedupe: Option<Mutex<Dedupe>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.spec.name)
            .field("dir", &self.dir)
            .finish()
    }
}

impl Table {
    /// Checks the spec and prepares (but does not create) the table's directory.
    pub fn new(spec: TableSpec, root: &std::path::Path) -> Result<Self, StoreError> {
        let invalid = |detail: String| StoreError::InvalidTable {
            table: spec.name.clone(),
            detail,
        };
        let name_ok = !spec.name.is_empty()
            && spec
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(invalid(
                "a table name is made of ASCII letters, digits, `_` and `-`".into(),
            ));
        }
        let time_idx = spec
            .schema
            .index_of(&spec.time_column)
            .map_err(|_| invalid(format!("no time column `{}`", spec.time_column)))?;
        let field = spec.schema.field(time_idx);
        if !matches!(
            field.data_type(),
            DataType::Timestamp(TimeUnit::Microsecond, _)
        ) || field.is_nullable()
        {
            return Err(invalid(format!(
                "the time column `{}` must be a non-null Timestamp(Microsecond, tz), not {}{}",
                spec.time_column,
                field.data_type(),
                if field.is_nullable() {
                    " (nullable)"
                } else {
                    ""
                }
            )));
        }
        let dir = root.join(&spec.name);
        Ok(Self {
            spec,
            time_idx,
            dir,
            state: Mutex::new(TableState::default()),
            dedupe: None,
        })
    }

    /// Deduplication by the spec's `dedupe_column` (a UTF-8 column), when it names one.
    pub fn enable_dedupe(
        &mut self,
        window: std::time::Duration,
        max_ids: usize,
    ) -> Result<(), StoreError> {
        let Some(col) = &self.spec.dedupe_column else {
            return Ok(());
        };
        let invalid = |detail: String| StoreError::InvalidTable {
            table: self.spec.name.clone(),
            detail,
        };
        let idx = self
            .spec
            .schema
            .index_of(col)
            .map_err(|_| invalid(format!("no dedupe column `{col}`")))?;
        if self.spec.schema.field(idx).data_type() != &DataType::Utf8 {
            return Err(invalid(format!("the dedupe column `{col}` must be Utf8")));
        }
        self.dedupe = Some(Mutex::new(Dedupe::new(idx, window, max_ids)));
        Ok(())
    }

    /// `batch` without rows whose id was appended recently (tables with a dedupe column).
    pub fn dedupe(&self, batch: RecordBatch) -> Result<RecordBatch, StoreError> {
        match &self.dedupe {
            Some(d) => d.lock().unwrap_or_else(PoisonError::into_inner).filter(
                batch,
                SystemTime::now(),
                &self.spec.name,
            ),
            None => Ok(batch),
        }
    }

    pub fn duplicates_dropped(&self) -> u64 {
        self.dedupe.as_ref().map_or(0, |d| {
            d.lock().unwrap_or_else(PoisonError::into_inner).dropped
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.spec.schema
    }

    /// The lock over both tiers. A panic while holding it (there are none by design) does not
    /// make the table unusable: the state is only changed by whole assignments.
    pub fn lock(&self) -> MutexGuard<'_, TableState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Both tiers at one instant, under one lock: a flush registers its files and removes
    /// the batches it wrote under the same lock, so every row is in exactly one of them.
    pub fn snapshot(&self) -> Snapshot {
        let st = self.lock();
        Snapshot {
            files: st.files.values().cloned().collect(),
            hot: st.hot.iter().map(|h| h.batch.clone()).collect(),
        }
    }

    /// The batch with the table's own schema object, or why it does not fit.
    pub fn conform(&self, batch: RecordBatch) -> Result<RecordBatch, StoreError> {
        let mismatch = |detail: String| StoreError::SchemaMismatch {
            table: self.spec.name.clone(),
            detail,
        };
        if batch.schema_ref() == self.schema() {
            return Ok(batch);
        }
        layout::check_schema(self.schema(), batch.schema_ref()).map_err(mismatch)?;
        // Same names and types; this also checks non-null columns hold no null.
        RecordBatch::try_new(self.schema().clone(), batch.columns().to_vec())
            .map_err(|e| mismatch(e.to_string()))
    }

    /// Writes every batch that is hot now to Parquet (one file per hour partition touched),
    /// then registers the files and drops exactly those batches from the hot tier under one
    /// lock. Batches appended meanwhile stay hot. On error nothing is registered, files
    /// written by this attempt are removed, and the batches stay hot for the next attempt.
    pub fn flush(&self, next_id: &dyn Fn() -> u64) -> Result<TableFlushed, StoreError> {
        let taken: Vec<(u64, RecordBatch)> = {
            let st = self.lock();
            st.hot.iter().map(|h| (h.seq, h.batch.clone())).collect()
        };
        let Some(&(last_seq, _)) = taken.last() else {
            return Ok(TableFlushed::default());
        };
        let mut written: Vec<FileEntry> = Vec::new();
        let result = (|| {
            let mut by_hour: BTreeMap<Hour, Vec<RecordBatch>> = BTreeMap::new();
            for (_, batch) in &taken {
                if batch.num_rows() == 0 {
                    continue;
                }
                for (hour, part) in layout::split_by_hour(self.name(), batch, self.time_idx)? {
                    by_hour.entry(hour).or_default().push(part);
                }
            }
            for (hour, parts) in &by_hour {
                let dir = self.dir.join(layout::partition_path(*hour));
                let id = next_id();
                let mut w = PartWriter::create(
                    self.name(),
                    &dir,
                    id,
                    self.schema().clone(),
                    self.time_idx,
                    Vec::new(),
                )?;
                for part in parts {
                    w.write(part)?;
                }
                let (path, meta) = w.finish()?;
                written.push(FileEntry::new(id, path, *hour, meta)?);
            }
            Ok::<(), StoreError>(())
        })();
        if let Err(e) = result {
            for f in &written {
                let _ = fs::remove_file(&f.path);
            }
            self.lock().last_flush_error = Some(e.to_string());
            return Err(e);
        }

        let mut out = TableFlushed {
            files: written.len(),
            bytes: written.iter().map(|f| f.meta.bytes).sum(),
            ..TableFlushed::default()
        };
        let mut st = self.lock();
        for f in written {
            st.files.insert(f.id, Arc::new(f));
        }
        while st.hot.front().is_some_and(|h| h.seq <= last_seq) {
            let Some(h) = st.hot.pop_front() else { break };
            st.hot_bytes = st.hot_bytes.saturating_sub(h.bytes);
            st.hot_rows = st.hot_rows.saturating_sub(h.batch.num_rows() as u64);
            out.batches += 1;
            out.rows += h.batch.num_rows() as u64;
            if let Some(cb) = h.on_durable {
                out.callbacks.push((h.seq, cb));
            }
        }
        st.counters.rows_flushed_total += out.rows;
        st.counters.flushes_total += 1;
        st.last_flush_error = None;
        Ok(out)
    }

    /// Finds the table's files after a restart: deletes `*.tmp` leftovers, deletes the files a
    /// compacted file names in `vigil.replaces` (a crash between writing it and deleting
    /// them), checks every other file's schema and registers it. Returns the largest file id.
    ///
    /// `read_only`: deletes nothing (a running engine may own the directory): leftovers and
    /// replaced files are only left out, and a missing table directory is an empty table.
    pub fn recover(&self, read_only: bool) -> Result<Option<u64>, StoreError> {
        if read_only {
            if !self.dir.is_dir() {
                return Ok(None);
            }
        } else {
            layout::create_dir_durable(&self.dir)?;
        }
        let mut found: Vec<(Hour, u64, PathBuf, FileMeta)> = Vec::new();
        let mut replaced: HashSet<(Hour, String)> = HashSet::new();
        for (hour, dir) in layout::partitions(&self.dir)? {
            let entries = fs::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
                let path = entry.path();
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if name.ends_with(".tmp") {
                    if !read_only {
                        tracing::info!(path = %path.display(), "removing an unfinished store file");
                        fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                    }
                    continue;
                }
                let Some(id) = layout::parse_file_name(&name) else {
                    if name.ends_with(".parquet") {
                        tracing::warn!(path = %path.display(), "ignoring a Parquet file not named by the store");
                    }
                    continue;
                };
                let meta =
                    layout::read_footer(self.name(), &path, self.schema(), &self.spec.time_column)?;
                for r in &meta.replaces {
                    replaced.insert((hour, r.clone()));
                }
                found.push((hour, id, path, meta));
            }
        }
        let mut max_id = None;
        let mut files = BTreeMap::new();
        for (hour, id, path, meta) in found {
            max_id = max_id.max(Some(id));
            if replaced.contains(&(hour, layout::file_name(id))) {
                if !read_only {
                    tracing::info!(path = %path.display(), "removing a file replaced by compaction");
                    fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                }
                continue;
            }
            files.insert(id, Arc::new(FileEntry::new(id, path, hour, meta)?));
        }
        // The ids of the files written within the dedupe window before the *last* write: what
        // a crash can replay (written, not yet acknowledged), however long ago the crash was.
        // They are remembered for a window from now, when the replay comes.
        if let (Some(d), false) = (&self.dedupe, read_only) {
            let now = SystemTime::now();
            let mut d = d.lock().unwrap_or_else(PoisonError::into_inner);
            let mut written: Vec<(SystemTime, &Arc<FileEntry>)> = files
                .values()
                .filter_map(|f| Some((fs::metadata(&f.path).and_then(|m| m.modified()).ok()?, f)))
                .collect();
            // newest first, as many as the id limit holds; then preloaded oldest first
            written.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
            let last = written.first().map(|(t, _)| *t);
            let mut ids = 0u64;
            let mut recent: Vec<&Arc<FileEntry>> = written
                .iter()
                .take_while(|(t, f)| {
                    ids += f.meta.rows;
                    last.is_some_and(|last| d.recent(*t, last))
                        && (ids <= d.max_ids() as u64 || ids == f.meta.rows)
                })
                .map(|(_, f)| *f)
                .collect();
            recent.reverse();
            for f in recent {
                d.preload(&f.path, now)?;
            }
        }
        self.lock().files = files;
        Ok(max_id)
    }

    /// The registered files grouped by hour partition, in id order.
    pub fn files_by_hour(&self) -> BTreeMap<Hour, Vec<Arc<FileEntry>>> {
        let st = self.lock();
        let mut out: BTreeMap<Hour, Vec<Arc<FileEntry>>> = BTreeMap::new();
        for f in st.files.values() {
            out.entry(f.hour).or_default().push(f.clone());
        }
        out
    }

    /// Swaps compacted files for their replacement in one step (one lock).
    pub fn replace_files(&self, old: &[Arc<FileEntry>], new: FileEntry) {
        let ids: BTreeSet<u64> = old.iter().map(|f| f.id).collect();
        let mut st = self.lock();
        st.files.retain(|id, _| !ids.contains(id));
        st.files.insert(new.id, Arc::new(new));
        st.counters.compactions_total += 1;
    }

    /// Unregisters an hour partition's files; returns how many there were.
    pub fn drop_hour(&self, hour: Hour) -> u64 {
        let mut st = self.lock();
        let before = st.files.len();
        st.files.retain(|_, f| f.hour != hour);
        let n = (before - st.files.len()) as u64;
        st.counters.files_deleted_by_retention_total += n;
        n
    }

    /// The registry entry of a file compaction wrote (registered by `replace_files`).
    pub fn entry(
        &self,
        id: u64,
        path: PathBuf,
        hour: Hour,
        meta: FileMeta,
    ) -> Result<FileEntry, StoreError> {
        FileEntry::new(id, path, hour, meta)
    }
}

/// The object store every file of the store is read through.
pub(crate) fn object_store_url() -> ObjectStoreUrl {
    ObjectStoreUrl::local_filesystem()
}
