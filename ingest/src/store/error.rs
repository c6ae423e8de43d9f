//! The store's one error type: what failed, and on which file or table.

use std::path::{Path, PathBuf};

use arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::parquet::errors::ParquetError;

/// A failure of the analytics store. Errors about input (`UnknownTable`, `SchemaMismatch`) are
/// the caller's; the others are the store's side, and [`StoreError::retryable`] says whether
/// the same operation may succeed later (a full disk, a transient I/O error).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parquet error on {path}: {source}", path = .path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("arrow error in table `{table}`: {source}")]
    Arrow {
        table: String,
        #[source]
        source: ArrowError,
    },
    #[error("datafusion error: {0}")]
    DataFusion(#[from] DataFusionError),
    #[error("unknown table `{0}`")]
    UnknownTable(String),
    /// A batch appended to `table` does not have the table's schema.
    #[error("schema mismatch for table `{table}`: {detail}")]
    SchemaMismatch { table: String, detail: String },
    /// A Parquet file found in `table`'s directory does not have the table's schema.
    #[error("file {path} does not match the schema of table `{table}`: {detail}", path = .path.display())]
    FileSchemaMismatch {
        table: String,
        path: PathBuf,
        detail: String,
    },
    /// A [`TableSpec`](super::TableSpec) that cannot work (bad name, missing time column).
    #[error("invalid table `{table}`: {detail}")]
    InvalidTable { table: String, detail: String },
    /// A write to a store opened with [`Store::open_read_only`](super::Store::open_read_only).
    #[error("the store is open read-only")]
    ReadOnly,
}

impl StoreError {
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub(crate) fn parquet(path: impl AsRef<Path>, source: ParquetError) -> Self {
        Self::Parquet {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub(crate) fn arrow(table: &str, source: ArrowError) -> Self {
        Self::Arrow {
            table: table.to_string(),
            source,
        }
    }

    /// Whether the operation may succeed if tried again (I/O trouble: a full disk, a
    /// transient error). Schema and table errors never will.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::Parquet { .. })
    }
}
