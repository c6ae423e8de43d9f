//! The DataFusion table over both tiers of one store table.
//!
//! A scan takes one [`Snapshot`](super::table::Snapshot) and plans the union of
//!
//! - a Parquet `DataSourceExec` over the snapshot's files (never a directory listing: that
//!   could see a file not yet registered, or one compaction already replaced), with the
//!   projection, the limit and the filters as the Parquet predicate (row-group and page
//!   pruning, row filtering); files whose time range cannot match the filters on the time
//!   column are left out of the plan altogether;
//! - the snapshot's hot batches, with the same projection.
//!
//! Filters are `Inexact`: DataFusion still applies them above the scan.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::{DataSourceExec, MemorySourceConfig};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr::{Between, BinaryExpr, Cast, TryCast};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;

use super::table::{Table, object_store_url};

/// One store table as a DataFusion [`TableProvider`].
pub(crate) struct StoreTable {
    table: Arc<Table>,
}

impl StoreTable {
    pub fn new(table: Arc<Table>) -> Self {
        Self { table }
    }

    fn plan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = self.table.schema().clone();
        let snap = self.table.snapshot();
        let (lo, hi) = time_bounds(filters, &self.table.spec.time_column);
        let files: Vec<_> = snap
            .files
            .into_iter()
            .filter(|f| {
                let (a, b) = f.time_range();
                b >= lo && a <= hi
            })
            .collect();

        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        let partitions = state.config().target_partitions().max(1);
        if !files.is_empty() {
            let mut groups: Vec<Vec<PartitionedFile>> = (0..partitions.min(files.len()))
                .map(|_| Vec::new())
                .collect();
            let n = groups.len();
            for (i, f) in files.iter().enumerate() {
                let mut pf = PartitionedFile::new(String::new(), f.meta.bytes);
                pf.object_meta.location = f.location.clone();
                if let Some(g) = groups.get_mut(i % n) {
                    g.push(pf);
                }
            }
            let mut source = ParquetSource::new(schema.clone())
                .with_table_parquet_options(state.table_options().parquet.clone())
                .with_pushdown_filters(true)
                .with_enable_page_index(true);
            // The predicate only prunes; if it cannot be planned the scan reads everything
            // and the filter above the scan still applies.
            if let Some(expr) = conjunction(filters.iter().cloned())
                && let Ok(df_schema) = DFSchema::try_from(schema.clone())
                && let Ok(predicate) = state.create_physical_expr(expr, &df_schema)
            {
                source = source.with_predicate(predicate);
            }
            let config = FileScanConfigBuilder::new(object_store_url(), Arc::new(source))
                .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            inputs.push(DataSourceExec::from_data_source(config));
        }
        if !snap.hot.is_empty() {
            let mut parts: Vec<Vec<_>> = (0..partitions.min(snap.hot.len()))
                .map(|_| Vec::new())
                .collect();
            let n = parts.len();
            for (i, b) in snap.hot.into_iter().enumerate() {
                if let Some(p) = parts.get_mut(i % n) {
                    p.push(b);
                }
            }
            let mem = MemorySourceConfig::try_new(&parts, schema.clone(), projection.cloned())?
                .with_limit(limit);
            inputs.push(DataSourceExec::from_data_source(mem));
        }
        match inputs.len() {
            0 => {
                let projected: SchemaRef = match projection {
                    Some(p) => Arc::new(schema.project(p)?),
                    None => schema,
                };
                Ok(Arc::new(EmptyExec::new(projected)))
            }
            _ => UnionExec::try_new(inputs),
        }
    }
}

impl fmt::Debug for StoreTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreTable")
            .field("name", &self.table.name())
            .finish()
    }
}

type PlanFuture<'a> = Pin<Box<dyn Future<Output = DfResult<Arc<dyn ExecutionPlan>>> + Send + 'a>>;

impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema().clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    // `TableProvider::scan` is an `async_trait` method; planning here needs no I/O (the
    // snapshot is in memory), so the future is ready at once.
    fn scan<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        state: &'life1 dyn Session,
        projection: Option<&'life2 Vec<usize>>,
        filters: &'life3 [Expr],
        limit: Option<usize>,
    ) -> PlanFuture<'async_trait>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        let plan = self.plan(state, projection, filters, limit);
        Box::pin(std::future::ready(plan))
    }
}

/// The inclusive range `[lo, hi]` (UTC µs) the time column must lie in for a row to pass
/// all `filters`, from the simple comparisons among them (`>`, `>=`, `<`, `<=`, `=`,
/// `BETWEEN` against a timestamp literal, under `AND`); anything else leaves it open.
pub(crate) fn time_bounds(filters: &[Expr], time_column: &str) -> (i64, i64) {
    let mut b = (i64::MIN, i64::MAX);
    for f in filters {
        narrow(f, time_column, &mut b);
    }
    b
}

fn narrow(e: &Expr, col: &str, b: &mut (i64, i64)) {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if *op == Operator::And {
                narrow(left, col, b);
                narrow(right, col, b);
                return;
            }
            let (op, lit) = if is_time_column(left, col) {
                (*op, literal_us(right))
            } else if is_time_column(right, col) {
                match op.swap() {
                    Some(op) => (op, literal_us(left)),
                    None => return,
                }
            } else {
                return;
            };
            let Some((floor, ceil)) = lit else { return };
            // A strict comparison with an exact microsecond value excludes it.
            let exact = i64::from(floor == ceil);
            match op {
                Operator::GtEq => b.0 = b.0.max(floor),
                Operator::Gt => b.0 = b.0.max(floor.saturating_add(exact)),
                Operator::LtEq => b.1 = b.1.min(ceil),
                Operator::Lt => b.1 = b.1.min(ceil.saturating_sub(exact)),
                Operator::Eq => {
                    b.0 = b.0.max(floor);
                    b.1 = b.1.min(ceil);
                }
                _ => {}
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_time_column(expr, col) => {
            if let Some((floor, _)) = literal_us(low) {
                b.0 = b.0.max(floor);
            }
            if let Some((_, ceil)) = literal_us(high) {
                b.1 = b.1.min(ceil);
            }
        }
        _ => {}
    }
}

/// The time column itself, or a lossless cast of it (to micro- or nanosecond timestamps).
fn is_time_column(e: &Expr, col: &str) -> bool {
    match e {
        Expr::Column(c) => c.name == col,
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            matches!(
                field.data_type(),
                DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _)
            ) && is_time_column(expr, col)
        }
        _ => false,
    }
}

/// A timestamp literal as microseconds, rounded down and up (they differ for nanoseconds).
fn literal_us(e: &Expr) -> Option<(i64, i64)> {
    let Expr::Literal(v, _) = e else { return None };
    match v {
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1_000_000).map(|v| (v, v)),
        ScalarValue::TimestampMillisecond(Some(ms), _) => ms.checked_mul(1_000).map(|v| (v, v)),
        ScalarValue::TimestampMicrosecond(Some(us), _) => Some((*us, *us)),
        ScalarValue::TimestampNanosecond(Some(ns), _) => {
            let floor = ns.div_euclid(1_000);
            Some((floor, floor + i64::from(ns.rem_euclid(1_000) != 0)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(us: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(us),
            Some("+00:00".into()),
        ))
    }

    #[test]
    fn bounds_from_simple_comparisons() {
        let f = vec![col("timestamp").gt_eq(ts(10)), ts(20).gt(col("timestamp"))];
        assert_eq!(time_bounds(&f, "timestamp"), (10, 19));
        let f = vec![col("timestamp").gt(ts(10)), ts(20).gt_eq(col("timestamp"))];
        assert_eq!(time_bounds(&f, "timestamp"), (11, 20));
        let f = vec![
            col("timestamp")
                .between(ts(5), ts(7))
                .and(col("value").gt(lit(3))),
        ];
        assert_eq!(time_bounds(&f, "timestamp"), (5, 7));
        let f = vec![col("timestamp").eq(ts(9))];
        assert_eq!(time_bounds(&f, "timestamp"), (9, 9));
        // OR and other columns leave the range open.
        let f = vec![col("timestamp").gt(ts(5)).or(col("timestamp").lt(ts(1)))];
        assert_eq!(time_bounds(&f, "timestamp"), (i64::MIN, i64::MAX));
        let ns = lit(ScalarValue::TimestampNanosecond(Some(1_500), None));
        let f = vec![col("timestamp").lt(ns.clone()), col("timestamp").gt(ns)];
        assert_eq!(time_bounds(&f, "timestamp"), (1, 2));
    }
}
