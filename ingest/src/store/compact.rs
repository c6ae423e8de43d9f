//! Compaction of small files and retention by age.
//!
//! Both change the file registry and the directories; both run under the store's maintenance
//! lock, so they never race a flush or each other (queries are not blocked: they only take
//! the table lock for their snapshot).

use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arrow::array::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::error::StoreError;
use super::layout::{self, HOUR_US, Hour, PartWriter};
use super::table::{FileEntry, Table};

/// A file that compaction replaced, deleted once `due` has passed.
#[derive(Debug)]
pub(crate) struct PendingDelete {
    pub due: SystemTime,
    pub path: PathBuf,
}

/// Compacts every hour partition of `table` holding at least `min_files` files into one
/// file. The new file names the files it replaces in `vigil.replaces`; it is registered and
/// the old ones unregistered in one step. The old files are returned for deletion later (a
/// query planned before the swap may still be reading them).
///
/// The hour still being written (it ends after `now_us`) only has its flushed files
/// compacted, never the files compaction made: rewriting the growing hour again and again
/// would write it O(n²) times. Once the hour is over, all its files become one.
pub(crate) fn compact_table(
    table: &Table,
    min_files: usize,
    now_us: i64,
    next_id: &dyn Fn() -> u64,
) -> Result<Vec<PathBuf>, StoreError> {
    let min_files = min_files.max(2);
    let mut retired = Vec::new();
    for (hour, mut files) in table.files_by_hour() {
        let open = hour.saturating_add(1).saturating_mul(HOUR_US) > now_us;
        if open {
            files.retain(|f| f.meta.replaces.is_empty());
        }
        if files.len() < min_files {
            continue;
        }
        let new = compact_files(table, hour, &files, next_id())?;
        tracing::debug!(
            table = table.name(),
            hour,
            files = files.len(),
            rows = new.meta.rows,
            "compacted an hour partition"
        );
        table.replace_files(&files, new);
        retired.extend(files.iter().map(|f| f.path.clone()));
    }
    Ok(retired)
}

/// Reads `files` in id order into one new file `id` of the same partition.
fn compact_files(
    table: &Table,
    hour: Hour,
    files: &[Arc<FileEntry>],
    id: u64,
) -> Result<FileEntry, StoreError> {
    let dir = table.dir.join(layout::partition_path(hour));
    let replaces = files.iter().map(|f| f.name.clone()).collect();
    let mut w = PartWriter::create(
        table.name(),
        &dir,
        id,
        table.schema().clone(),
        table.time_idx,
        replaces,
    )?;
    for f in files {
        let file = File::open(&f.path).map_err(|e| StoreError::io(&f.path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(64 * 1024).build())
            .map_err(|e| StoreError::parquet(&f.path, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| StoreError::arrow(table.name(), e))?;
            // The file's own schema object may carry other metadata; the columns are the same.
            let batch = RecordBatch::try_new(table.schema().clone(), batch.columns().to_vec())
                .map_err(|e| StoreError::arrow(table.name(), e))?;
            w.write(&batch)?;
        }
    }
    let (path, meta) = w.finish()?;
    table.entry(id, path, hour, meta)
}

/// Unregisters and deletes every hour partition of `table` that ended at or before `cutoff`
/// (UTC µs), whole directories, and date directories left empty. Returns the number of
/// registered files deleted.
pub(crate) fn expire_table(table: &Table, cutoff_us: i64) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for (hour, dir) in layout::partitions(&table.dir)? {
        let end = hour.saturating_add(1).saturating_mul(HOUR_US);
        if end > cutoff_us {
            continue;
        }
        deleted += table.drop_hour(hour);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&dir, e)),
        }
        tracing::info!(table = table.name(), dir = %dir.display(), "retention removed an hour partition");
        if let Some(date_dir) = dir.parent()
            && fs::read_dir(date_dir).is_ok_and(|mut d| d.next().is_none())
        {
            let _ = fs::remove_dir(date_dir);
        }
    }
    if deleted > 0 {
        layout::sync_dir(&table.dir)?;
    }
    Ok(deleted)
}

/// Deletes the pending files whose time has come; keeps the others (and any that failed).
pub(crate) fn delete_due(
    pending: &mut Vec<PendingDelete>,
    now: SystemTime,
) -> Result<(), StoreError> {
    let mut first_err = None;
    pending.retain(|p| {
        if p.due > now {
            return true;
        }
        match fs::remove_file(&p.path) {
            Ok(()) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                first_err.get_or_insert(StoreError::io(&p.path, e));
                true
            }
        }
    });
    first_err.map_or(Ok(()), Err)
}
