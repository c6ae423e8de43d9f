//! The on-disk layout: Hive-style hour partitions, file names, writing one Parquet file
//! atomically, and reading a file's footer back.
//!
//! ```text
//! <dir>/<table>/date=YYYY-MM-DD/hour=HH/part-<16 hex digits>.parquet
//! ```

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::file::statistics::Statistics;

use super::error::StoreError;
use crate::time::{civil_from_days, days_from_civil};

/// Microseconds in an hour.
pub(crate) const HOUR_US: i64 = 3_600_000_000;
/// The Parquet key-value metadata key naming the files a compacted file replaces.
pub const REPLACES_KEY: &str = "vigil.replaces";
/// Rows per Parquet row group at most.
const MAX_ROW_GROUP_ROWS: usize = 128 * 1024;

/// An hour partition: hours since 1970-01-01T00:00Z.
pub(crate) type Hour = i64;

/// The hour partition of a UTC timestamp in microseconds.
pub(crate) fn hour_of(us: i64) -> Hour {
    us.div_euclid(HOUR_US)
}

/// `date=YYYY-MM-DD/hour=HH` of an hour partition, relative to the table's directory.
pub(crate) fn partition_path(hour: Hour) -> PathBuf {
    let (y, m, d) = civil_from_days(hour.div_euclid(24));
    let h = hour.rem_euclid(24);
    PathBuf::from(format!("date={y:04}-{m:02}-{d:02}")).join(format!("hour={h:02}"))
}

/// The date of a `date=YYYY-MM-DD` directory name, as days since 1970-01-01.
pub(crate) fn parse_date_dir(name: &str) -> Option<i64> {
    let s = name.strip_prefix("date=")?;
    let mut parts = s.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// The hour of an `hour=HH` directory name.
pub(crate) fn parse_hour_dir(name: &str) -> Option<i64> {
    let h: i64 = name.strip_prefix("hour=")?.parse().ok()?;
    (0..24).contains(&h).then_some(h)
}

/// `part-<id as 16 hex digits>.parquet`.
pub(crate) fn file_name(id: u64) -> String {
    format!("part-{id:016x}.parquet")
}

/// The id of a `part-<16 hex>.parquet` name.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The time column of a batch as UTC microseconds, or a schema error naming the table.
pub(crate) fn time_values<'a>(
    table: &str,
    batch: &'a RecordBatch,
    time_idx: usize,
) -> Result<&'a arrow::array::PrimitiveArray<TimestampMicrosecondType>, StoreError> {
    batch
        .columns()
        .get(time_idx)
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or_else(|| StoreError::SchemaMismatch {
            table: table.to_string(),
            detail: "the time column is not a Timestamp(Microsecond) column".into(),
        })
}

/// Splits a batch by hour partition. A batch within one hour (the usual case) is returned as
/// is; rows with a null time (which the schema forbids) go to the hour of 1970-01-01T00.
pub(crate) fn split_by_hour(
    table: &str,
    batch: &RecordBatch,
    time_idx: usize,
) -> Result<Vec<(Hour, RecordBatch)>, StoreError> {
    let times = time_values(table, batch, time_idx)?;
    let hour_at = |i: usize| {
        if times.is_null(i) {
            0
        } else {
            hour_of(times.value(i))
        }
    };
    let hours: BTreeSet<Hour> = (0..times.len()).map(hour_at).collect();
    if hours.len() <= 1 {
        let hour = hours.first().copied().unwrap_or(0);
        return Ok(vec![(hour, batch.clone())]);
    }
    hours
        .into_iter()
        .map(|hour| {
            let mask: BooleanArray = (0..times.len()).map(|i| Some(hour_at(i) == hour)).collect();
            filter_record_batch(batch, &mask)
                .map(|b| (hour, b))
                .map_err(|e| StoreError::arrow(table, e))
        })
        .collect()
}

/// What a Parquet file of the store holds, from its footer or from writing it.
#[derive(Debug, Clone)]
pub(crate) struct FileMeta {
    pub rows: u64,
    pub bytes: u64,
    /// Smallest and largest time (UTC µs), when the statistics say.
    pub time_range: Option<(i64, i64)>,
    /// File names this file replaces (compaction), from `vigil.replaces`.
    pub replaces: Vec<String>,
}

/// Writes one Parquet file atomically: to `<name>.tmp` in the partition directory, fsync'd,
/// then renamed, and the directory fsync'd. Nothing is visible under the final name before
/// all of it is on disk; an aborted writer leaves nothing behind.
pub(crate) struct PartWriter {
    table: String,
    tmp: PathBuf,
    path: PathBuf,
    writer: Option<ArrowWriter<File>>,
    time_idx: usize,
    rows: u64,
    time_range: Option<(i64, i64)>,
    replaces: Vec<String>,
}

impl PartWriter {
    /// Starts `dir/part-<id>.parquet`; `replaces` is written as `vigil.replaces` metadata.
    pub fn create(
        table: &str,
        dir: &Path,
        id: u64,
        schema: SchemaRef,
        time_idx: usize,
        replaces: Vec<String>,
    ) -> Result<Self, StoreError> {
        create_dir_durable(dir)?;
        let path = dir.join(file_name(id));
        let tmp = dir.join(format!("{}.tmp", file_name(id)));
        let file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
            .set_created_by(format!("vigil {}", env!("CARGO_PKG_VERSION")));
        if !replaces.is_empty() {
            props = props.set_key_value_metadata(Some(vec![KeyValue::new(
                REPLACES_KEY.to_string(),
                replaces.join(","),
            )]));
        }
        let writer = match ArrowWriter::try_new(file, schema, Some(props.build())) {
            Ok(w) => w,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(StoreError::parquet(&tmp, e));
            }
        };
        Ok(Self {
            table: table.to_string(),
            tmp,
            path,
            writer: Some(writer),
            time_idx,
            rows: 0,
            time_range: None,
            replaces,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), StoreError> {
        let times = time_values(&self.table, batch, self.time_idx)?;
        if let (Some(lo), Some(hi)) = (arrow::compute::min(times), arrow::compute::max(times)) {
            self.time_range = Some(match self.time_range {
                Some((a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            });
        }
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        writer
            .write(batch)
            .map_err(|e| StoreError::parquet(&self.tmp, e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Closes, fsyncs and renames the file; returns its final path and what it holds.
    pub fn finish(mut self) -> Result<(PathBuf, FileMeta), StoreError> {
        let Some(writer) = self.writer.take() else {
            return Err(StoreError::io(
                &self.tmp,
                std::io::Error::other("writer already finished"),
            ));
        };
        let file = writer
            .into_inner()
            .map_err(|e| StoreError::parquet(&self.tmp, e))?;
        file.sync_all().map_err(|e| StoreError::io(&self.tmp, e))?;
        let bytes = file
            .metadata()
            .map_err(|e| StoreError::io(&self.tmp, e))?
            .len();
        drop(file);
        fs::rename(&self.tmp, &self.path).map_err(|e| StoreError::io(&self.path, e))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        let meta = FileMeta {
            rows: self.rows,
            bytes,
            time_range: self.time_range,
            replaces: std::mem::take(&mut self.replaces),
        };
        Ok((self.path.clone(), meta))
    }
}

impl Drop for PartWriter {
    /// An unfinished writer removes its temporary file (a crash leaves it for `open`).
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Reads a store file's footer: row count, time range from the row-group statistics of the
/// time column, `vigil.replaces`, and checks its schema against the table's.
pub(crate) fn read_footer(
    table: &str,
    path: &Path,
    schema: &SchemaRef,
    time_column: &str,
) -> Result<FileMeta, StoreError> {
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let bytes = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
        .map_err(|e| StoreError::parquet(path, e))?;
    check_schema(schema, meta.schema()).map_err(|detail| StoreError::FileSchemaMismatch {
        table: table.to_string(),
        path: path.to_path_buf(),
        detail,
    })?;
    let pq = meta.metadata();
    let rows = u64::try_from(pq.file_metadata().num_rows()).unwrap_or(0);
    let replaces = pq
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter(|kv| kv.key == REPLACES_KEY)
        .filter_map(|kv| kv.value.as_deref())
        .flat_map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()))
        .map(str::to_string)
        .collect();
    let leaf = pq
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().parts() == [time_column.to_string()]);
    let mut time_range: Option<(i64, i64)> = None;
    let mut complete = leaf.is_some();
    if let Some(leaf) = leaf {
        for rg in pq.row_groups() {
            if rg.num_rows() == 0 {
                continue;
            }
            match rg.column(leaf).statistics() {
                Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                    (Some(&lo), Some(&hi)) => {
                        time_range = Some(match time_range {
                            Some((a, b)) => (a.min(lo), b.max(hi)),
                            None => (lo, hi),
                        });
                    }
                    _ => complete = false,
                },
                _ => complete = false,
            }
        }
    }
    Ok(FileMeta {
        rows,
        bytes,
        // Without statistics for every row group the file is never pruned by time.
        time_range: if complete { time_range } else { None },
        replaces,
    })
}

/// Same field names and types, in the same order (nullability and metadata may differ).
pub(crate) fn check_schema(expected: &SchemaRef, found: &SchemaRef) -> Result<(), String> {
    if expected.fields().len() != found.fields().len() {
        return Err(format!(
            "{} columns, expected {}",
            found.fields().len(),
            expected.fields().len()
        ));
    }
    for (e, f) in expected.fields().iter().zip(found.fields().iter()) {
        if e.name() != f.name() {
            return Err(format!(
                "column `{}` where `{}` was expected",
                f.name(),
                e.name()
            ));
        }
        if e.data_type() != f.data_type() {
            return Err(format!(
                "column `{}` is {}, expected {}",
                f.name(),
                f.data_type(),
                e.data_type()
            ));
        }
    }
    Ok(())
}

/// Creates a directory and its missing parents, fsyncing each parent whose entry list
/// changed, so a new partition survives a crash with the file in it.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    // a relative path's last parent is "": the working directory, which exists
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        create_dir_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(StoreError::io(dir, e)),
    }
    sync_dir(parent.unwrap_or(Path::new(".")))
}

/// fsync a directory, so a rename or a new entry in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// Sub-directories of `dir` with their names (missing `dir`: none).
pub(crate) fn sub_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let path = entry.path();
        if path.is_dir()
            && let Some(name) = entry.file_name().to_str()
        {
            out.push((name.to_string(), path));
        }
    }
    out.sort();
    Ok(out)
}

/// Every hour partition directory under a table directory, with its hour.
pub(crate) fn partitions(table_dir: &Path) -> Result<Vec<(Hour, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for (date_name, date_path) in sub_dirs(table_dir)? {
        let Some(day) = parse_date_dir(&date_name) else {
            continue;
        };
        for (hour_name, hour_path) in sub_dirs(&date_path)? {
            if let Some(h) = parse_hour_dir(&hour_name) {
                out.push((day * 24 + h, hour_path));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(0x1234), "part-0000000000001234.parquet");
        assert_eq!(
            parse_file_name("part-0000000000001234.parquet"),
            Some(0x1234)
        );
        assert_eq!(parse_file_name("part-1234.parquet"), None);
        assert_eq!(parse_file_name("part-0000000000001234.parquet.tmp"), None);
        // 2024-03-05T07:xx
        let hour = days_from_civil(2024, 3, 5) * 24 + 7;
        let p = partition_path(hour);
        assert_eq!(p, PathBuf::from("date=2024-03-05/hour=07"));
        let day = parse_date_dir("date=2024-03-05").unwrap();
        let h = parse_hour_dir("hour=07").unwrap();
        assert_eq!(day * 24 + h, hour);
        assert_eq!(parse_hour_dir("hour=24"), None);
        assert_eq!(hour_of(-1), -1);
    }
}
