//! Duplicate rows dropped by id: the exactly-once effect of at-least-once delivery.
//!
//! A source acknowledges a batch only once its rows are in Parquet, so after a crash between
//! the write and the acknowledgement the same lines come again (a Kafka replay from the last
//! committed offset, a file re-read from its checkpoint) with the same event ids. A table with
//! a `dedupe_column` keeps the 64-bit hashes of the ids appended within the last
//! `dedupe_window` (at most `dedupe_max_ids` of them) and drops a row whose id it has seen; at
//! open it reads back the ids of the files written within the window before the last file
//! (not before now: a restart may come long after the crash) and keeps them for a window
//! from the open, so the protection holds across the restart the duplicates come with.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime};

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::error::StoreError;

fn hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// The ids seen recently for one table.
#[derive(Debug)]
pub(crate) struct Dedupe {
    /// Index of the id column in the table's schema.
    pub column: usize,
    window: Duration,
    max_ids: usize,
    seen: HashSet<u64>,
    /// When each group of ids arrived, oldest first (for expiry).
    order: VecDeque<(SystemTime, Vec<u64>)>,
    pub dropped: u64,
}

impl Dedupe {
    pub fn new(column: usize, window: Duration, max_ids: usize) -> Self {
        Self {
            column,
            window,
            max_ids: max_ids.max(1),
            seen: HashSet::new(),
            order: VecDeque::new(),
            dropped: 0,
        }
    }

    fn expire(&mut self, now: SystemTime) {
        while let Some((t, ids)) = self.order.front() {
            let old = now.duration_since(*t).unwrap_or_default() > self.window;
            if !old && self.seen.len() <= self.max_ids {
                break;
            }
            for id in ids {
                self.seen.remove(id);
            }
            self.order.pop_front();
        }
    }

    /// `batch` without the rows whose id was seen (within the window, or earlier in the
    /// batch); remembers the ids of the rows it keeps.
    pub fn filter(
        &mut self,
        batch: RecordBatch,
        now: SystemTime,
        table: &str,
    ) -> Result<RecordBatch, StoreError> {
        self.expire(now);
        let Some(ids) = batch
            .column(self.column)
            .as_any()
            .downcast_ref::<StringArray>()
        else {
            return Ok(batch);
        };
        let mut keep = Vec::with_capacity(ids.len());
        let mut added = Vec::with_capacity(ids.len());
        for i in 0..ids.len() {
            // a row without an id cannot be a known duplicate
            let fresh = ids.is_null(i) || {
                let h = hash(ids.value(i));
                self.seen.insert(h) && {
                    added.push(h);
                    true
                }
            };
            keep.push(fresh);
        }
        let dropped = keep.iter().filter(|k| !**k).count();
        if !added.is_empty() {
            self.order.push_back((now, added));
        }
        if dropped == 0 {
            return Ok(batch);
        }
        self.dropped += dropped as u64;
        filter_record_batch(&batch, &BooleanArray::from(keep))
            .map_err(|e| StoreError::arrow(table, e))
    }

    /// Remembers the ids of a file (at open), from `at` on.
    pub fn preload(&mut self, path: &Path, at: SystemTime) -> Result<(), StoreError> {
        if self.seen.len() >= self.max_ids {
            return Ok(());
        }
        let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| StoreError::parquet(path, e))?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [self.column]);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| StoreError::parquet(path, e))?;
        let mut added = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| StoreError::parquet(path, e.into()))?;
            let Some(ids) = batch.column(0).as_any().downcast_ref::<StringArray>() else {
                continue;
            };
            for id in ids.iter().flatten() {
                let h = hash(id);
                if self.seen.insert(h) {
                    added.push(h);
                }
            }
        }
        if !added.is_empty() {
            // files are preloaded in write order, so the id limit forgets the oldest first
            self.order.push_back((at, added));
        }
        Ok(())
    }

    /// Most ids remembered.
    pub fn max_ids(&self) -> usize {
        self.max_ids
    }

    /// Whether a file written at `written` is within the window at `now`.
    pub fn recent(&self, written: SystemTime, now: SystemTime) -> bool {
        now.duration_since(written).unwrap_or_default() <= self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(ids: &[Option<&str>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(ids.to_vec()))]).unwrap()
    }

    #[test]
    fn drops_ids_seen_within_the_window() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut d = Dedupe::new(0, Duration::from_secs(60), 1_000);
        let b = d
            .filter(batch(&[Some("a"), Some("b"), Some("a"), None]), t0, "t")
            .unwrap();
        assert_eq!(b.num_rows(), 3, "the second `a` of the batch goes");
        let b = d
            .filter(
                batch(&[Some("b"), Some("c"), None]),
                t0 + Duration::from_secs(30),
                "t",
            )
            .unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(d.dropped, 2);
        // past the window, `a` is forgotten
        let b = d
            .filter(batch(&[Some("a")]), t0 + Duration::from_secs(61), "t")
            .unwrap();
        assert_eq!(b.num_rows(), 1);
    }

    #[test]
    fn the_id_limit_forgets_the_oldest() {
        let t0 = SystemTime::UNIX_EPOCH;
        let mut d = Dedupe::new(0, Duration::from_secs(3600), 2);
        d.filter(batch(&[Some("a")]), t0, "t").unwrap();
        d.filter(batch(&[Some("b")]), t0, "t").unwrap();
        d.filter(batch(&[Some("c")]), t0, "t").unwrap();
        d.filter(batch(&[Some("d")]), t0, "t").unwrap();
        assert_eq!(
            d.filter(batch(&[Some("a")]), t0, "t").unwrap().num_rows(),
            1
        );
        assert_eq!(
            d.filter(batch(&[Some("d")]), t0, "t").unwrap().num_rows(),
            0
        );
    }
}
