//! The analytics store against real files in a temporary directory and real DataFusion
//! queries: both tiers, the flush boundary under concurrency, hour partitions, restart and
//! crash leftovers, compaction, retention, pruning, callbacks and errors.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt16Array, new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use datafusion::physical_plan::{ExecutionPlan, displayable};
use datafusion::prelude::SessionContext;
use tokio_util::sync::CancellationToken;
use vigil_ingest::store::{REPLACES_KEY, Store, StoreConfig, StoreError, TableSpec};
use vigil_ingest::time::days_from_civil;

const HOUR: i64 = 3_600_000_000;

/// 2025-06-01T10:00:00Z in µs.
fn base() -> i64 {
    days_from_civil(2025, 6, 1) * 24 * HOUR + 10 * HOUR
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
        Field::new("value", DataType::Int64, false),
    ]))
}

fn spec(name: &str) -> TableSpec {
    TableSpec {
        name: name.into(),
        schema: schema(),
        time_column: "timestamp".into(),
        dedupe_column: None,
    }
}

/// Rows `ids` with id `r<i>`, value `i`, at `time(i)`.
fn batch(ids: std::ops::Range<u64>, time: impl Fn(u64) -> i64) -> RecordBatch {
    let id: StringArray = ids.clone().map(|i| Some(format!("r{i}"))).collect();
    let ts = TimestampMicrosecondArray::from(ids.clone().map(&time).collect::<Vec<_>>())
        .with_timezone("+00:00");
    let value = Int64Array::from(ids.map(|i| i as i64).collect::<Vec<_>>());
    RecordBatch::try_new(schema(), vec![Arc::new(id), Arc::new(ts), Arc::new(value)]).unwrap()
}

/// Rows in the 10:00 hour of the base day, one second apart.
fn at_base(ids: std::ops::Range<u64>) -> RecordBatch {
    batch(ids, |i| base() + (i as i64 % 3600) * 1_000_000)
}

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        flush_interval: Duration::from_secs(5),
        hot_max_bytes: 1 << 30,
        retention: None,
        compact_min_files: 1000,
        compaction_grace: Duration::from_secs(60),
        ..StoreConfig::default()
    }
}

fn open(cfg: StoreConfig) -> (Arc<Store>, SessionContext) {
    let store = Store::open(cfg, vec![spec("t")]).unwrap();
    let ctx = SessionContext::new();
    store.register(&ctx).unwrap();
    (store, ctx)
}

async fn query(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

/// The first row's integer columns of a one-row result.
async fn ints(ctx: &SessionContext, sql: &str) -> Vec<i64> {
    let batches = query(ctx, sql).await;
    let b = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    b.columns()
        .iter()
        .map(|c| {
            let c = arrow::compute::cast(c, &DataType::Int64).unwrap();
            let a = c.as_any().downcast_ref::<Int64Array>().unwrap();
            if a.is_null(0) { i64::MIN } else { a.value(0) }
        })
        .collect()
}

async fn count(ctx: &SessionContext, table: &str) -> i64 {
    ints(ctx, &format!("SELECT count(*) FROM {table}")).await[0]
}

/// Every file under `dir` whose name ends with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    files(dir, ".parquet")
}

/// Files the physical plan of `sql` reads, and its Parquet scans' output column counts.
async fn plan_files(ctx: &SessionContext, sql: &str) -> (usize, Vec<usize>, String) {
    let plan = ctx
        .sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    fn walk(p: &Arc<dyn ExecutionPlan>, files: &mut usize, widths: &mut Vec<usize>) {
        if let Some(dse) = p.downcast_ref::<DataSourceExec>()
            && let Some(fsc) = dse.data_source().downcast_ref::<FileScanConfig>()
        {
            *files += fsc.file_groups.iter().map(|g| g.len()).sum::<usize>();
            widths.push(p.schema().fields().len());
        }
        for c in p.children() {
            walk(c, files, widths);
        }
    }
    let (mut n, mut widths) = (0, Vec::new());
    walk(&plan, &mut n, &mut widths);
    (
        n,
        widths,
        displayable(plan.as_ref()).indent(true).to_string(),
    )
}

fn stats(store: &Store) -> vigil_ingest::store::TableStats {
    store.stats().into_iter().find(|s| s.name == "t").unwrap()
}

#[tokio::test]
async fn hot_only_query() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ctx) = open(config(dir.path()));
    // Empty store: the right schema, no rows.
    assert_eq!(count(&ctx, "t").await, 0);
    let none = query(&ctx, "SELECT id, value FROM t").await;
    assert_eq!(none.iter().map(|b| b.num_rows()).sum::<usize>(), 0);

    store.append("t", at_base(0..100), None).unwrap();
    store.append("t", at_base(100..150), None).unwrap();
    assert_eq!(
        ints(
            &ctx,
            "SELECT count(*), sum(value), count(DISTINCT id) FROM t"
        )
        .await,
        vec![150, (0..150).sum::<i64>(), 150]
    );
    assert!(parquet_files(dir.path()).is_empty());
    let s = stats(&store);
    assert_eq!((s.hot_rows, s.files), (150, 0));
    assert!(s.hot_bytes > 0);
}

#[tokio::test]
async fn after_flush_rows_are_in_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ctx) = open(config(dir.path()));
    store.append("t", at_base(0..1000), None).unwrap();
    let report = store.flush().unwrap();
    assert_eq!((report.batches, report.rows, report.files), (1, 1000, 1));

    let files = parquet_files(dir.path());
    assert_eq!(files.len(), 1);
    let rel = files[0]
        .strip_prefix(dir.path())
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(
        rel.starts_with("t/date=2025-06-01/hour=10/part-")
            && rel.len() == "t/date=2025-06-01/hour=10/part-".len() + 16 + 8,
        "{rel}"
    );
    // zstd, statistics on, readable by any Parquet reader.
    let reader = SerializedFileReader::new(std::fs::File::open(&files[0]).unwrap()).unwrap();
    let md = reader.metadata();
    assert_eq!(md.file_metadata().num_rows(), 1000);
    let col = md.row_group(0).column(1);
    assert!(matches!(col.compression(), Compression::ZSTD(_)));
    assert!(col.statistics().is_some());
    assert!(
        col.column_index_offset().is_some(),
        "page statistics are written"
    );

    let s = stats(&store);
    assert_eq!((s.hot_rows, s.hot_bytes, s.files), (0, 0, 1));
    assert_eq!((s.rows_flushed_total, s.flushes_total), (1000, 1));
    assert_eq!(
        ints(
            &ctx,
            "SELECT count(*), sum(value), min(timestamp) = TIMESTAMP '2025-06-01T10:00:00Z' FROM t"
        )
        .await,
        vec![1000, (0..1000).sum::<i64>(), 1]
    );
    // A flush with nothing hot writes nothing.
    assert_eq!(store.flush().unwrap().files, 0);
}

#[tokio::test]
async fn rows_on_both_sides_of_the_boundary_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ctx) = open(config(dir.path()));
    store.append("t", at_base(0..300), None).unwrap();
    store.flush().unwrap();
    store.append("t", at_base(300..500), None).unwrap();
    assert_eq!(
        ints(
            &ctx,
            "SELECT count(*), count(DISTINCT id), sum(value) FROM t"
        )
        .await,
        vec![500, 500, (0..500).sum::<i64>()]
    );
    // Filters apply to both tiers.
    assert_eq!(
        ints(
            &ctx,
            "SELECT count(*) FROM t WHERE value >= 250 AND value < 350"
        )
        .await,
        vec![100]
    );
    assert_eq!(
        ints(
            &ctx,
            "SELECT count(*) FROM t WHERE id = 'r299' OR id = 'r300'"
        )
        .await,
        vec![2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writer_flusher_and_reader_see_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flush_interval = Duration::ZERO;
    cfg.compact_min_files = 4; // compaction races too
    let (store, ctx) = open(cfg);
    let started = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let writer = {
        let (store, started, done) = (store.clone(), started.clone(), done.clone());
        std::thread::spawn(move || {
            let mut next = 0u64;
            // A bounded amount of data, so the test's cost does not grow with the machine's
            // speed; the readers query all along.
            for _ in 0..800 {
                let n = 50;
                started.fetch_add(n, Ordering::SeqCst);
                store.append("t", at_base(next..next + n), None).unwrap();
                done.fetch_add(n, Ordering::SeqCst);
                next += n;
                std::thread::sleep(Duration::from_micros(300));
            }
        })
    };
    let flusher = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::SeqCst) {
                store.maintain(SystemTime::now()).unwrap();
                rounds += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            rounds
        })
    };

    let mut checked = 0;
    let mut k = 0;
    while !writer.is_finished() || k < 20 {
        k += 1;
        let before = done.load(Ordering::SeqCst) as i64;
        // Half the queries go through the Parquet predicate and the time pruning too.
        let sql = if k % 2 == 0 {
            "SELECT count(*), count(DISTINCT id) FROM t"
        } else {
            "SELECT count(*), count(DISTINCT id) FROM t WHERE value >= 0 AND timestamp >= '2025-06-01T10:00:00Z'"
        };
        let r = ints(&ctx, sql).await;
        let after = started.load(Ordering::SeqCst) as i64;
        assert!(
            before <= r[0] && r[0] <= after,
            "{before} <= {} <= {after}",
            r[0]
        );
        assert_eq!(r[0], r[1], "a row was seen twice");
        checked += 1;
    }
    writer.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    let rounds = flusher.join().unwrap();
    assert!(rounds > 5);
    assert!(checked >= 20);
    assert_eq!(done.load(Ordering::SeqCst), 800 * 50);
    store.flush().unwrap();
    let total = done.load(Ordering::SeqCst) as i64;
    assert_eq!(
        ints(&ctx, "SELECT count(*), count(DISTINCT id) FROM t").await,
        vec![total, total]
    );
    let s = stats(&store);
    assert!(s.flushes_total > 1 && s.compactions_total > 0, "{s:?}");
}

#[tokio::test]
async fn a_batch_spanning_hours_lands_in_each_hour() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ctx) = open(config(dir.path()));
    // 22:30, 23:30 on 2025-06-01 and 00:30 on 2025-06-02, interleaved.
    let day_end = days_from_civil(2025, 6, 2) * 24 * HOUR;
    let times = [
        day_end - HOUR - HOUR / 2,
        day_end - HOUR / 2,
        day_end + HOUR / 2,
    ];
    store
        .append(
            "t",
            batch(0..30, |i| times[i as usize % 3] + i as i64),
            None,
        )
        .unwrap();
    assert_eq!(store.flush().unwrap().files, 3);
    let rel: Vec<String> = parquet_files(dir.path())
        .iter()
        .map(|p| {
            let p = p.strip_prefix(dir.path().join("t")).unwrap();
            p.parent().unwrap().to_string_lossy().to_string()
        })
        .collect();
    assert_eq!(
        rel,
        vec![
            "date=2025-06-01/hour=22",
            "date=2025-06-01/hour=23",
            "date=2025-06-02/hour=00"
        ]
    );
    for f in parquet_files(dir.path()) {
        let r = SerializedFileReader::new(std::fs::File::open(&f).unwrap()).unwrap();
        assert_eq!(r.metadata().file_metadata().num_rows(), 10);
    }
    assert_eq!(
        ints(&ctx, "SELECT count(*), count(DISTINCT id) FROM t").await,
        vec![30, 30]
    );
    assert_eq!(
        ints(
            &ctx,
            "SELECT count(*) FROM t WHERE timestamp >= '2025-06-02T00:00:00Z'"
        )
        .await,
        vec![10]
    );
}

#[tokio::test]
async fn restart_finds_flushed_rows_and_ignores_tmp_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _ctx) = open(config(dir.path()));
        store.append("t", at_base(0..100), None).unwrap();
        store.flush().unwrap();
        store.append("t", at_base(100..200), None).unwrap();
        store.flush().unwrap();
        // Hot at the "crash": recovered by the source's replay, not by the store.
        store.append("t", at_base(200..250), None).unwrap();
    }
    // A crash in the middle of a write leaves a temporary file.
    let part = dir.path().join("t/date=2025-06-01/hour=10");
    let tmp = part.join("part-00000000000000ff.parquet.tmp");
    std::fs::write(&tmp, b"half a parquet file").unwrap();

    let (store, ctx) = open(config(dir.path()));
    assert!(!tmp.exists(), "open removes *.tmp");
    assert_eq!(
        ints(
            &ctx,
            "SELECT count(*), count(DISTINCT id), max(value) FROM t"
        )
        .await,
        vec![200, 200, 199]
    );
    let s = stats(&store);
    assert_eq!((s.files, s.hot_rows), (2, 0));
    // New files sort after the recovered ones.
    store.append("t", at_base(200..250), None).unwrap();
    store.flush().unwrap();
    let names = parquet_files(dir.path());
    assert_eq!(names.len(), 3);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    drop(store);
    let (_store, ctx) = open(config(dir.path()));
    assert_eq!(count(&ctx, "t").await, 250);
}

#[tokio::test]
async fn compaction_keeps_every_row_once_and_leaves_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.compact_min_files = 4;
    let (store, ctx) = open(cfg.clone());
    for k in 0..4u64 {
        store
            .append("t", at_base(k * 100..k * 100 + 100), None)
            .unwrap();
        store.flush().unwrap();
    }
    // Another hour with fewer files is left alone.
    store
        .append("t", batch(1000..1010, |i| base() + HOUR + i as i64), None)
        .unwrap();
    store.flush().unwrap();
    let before = parquet_files(dir.path());
    assert_eq!(before.len(), 5);

    let now = SystemTime::now();
    store.maintain(now).unwrap();
    let s = stats(&store);
    assert_eq!((s.files, s.compactions_total), (2, 1));
    assert_eq!(
        ints(
            &ctx,
            "SELECT count(*), count(DISTINCT id), sum(value) FROM t"
        )
        .await,
        vec![410, 410, (0..400).sum::<i64>() + (1000..1010).sum::<i64>()]
    );
    // The replaced files stay for the grace period, for queries planned before the swap.
    let during = parquet_files(dir.path());
    assert_eq!(during.len(), 6);
    let compacted: Vec<_> = during.iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(compacted.len(), 1);
    let reader = SerializedFileReader::new(std::fs::File::open(compacted[0]).unwrap()).unwrap();
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap();
    let replaces = kv.iter().find(|kv| kv.key == REPLACES_KEY).unwrap();
    let expected: Vec<String> = before[..4]
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(replaces.value.as_deref(), Some(expected.join(",").as_str()));

    store.maintain(now + Duration::from_secs(30)).unwrap();
    assert_eq!(parquet_files(dir.path()).len(), 6, "still within the grace");
    store.maintain(now + Duration::from_secs(61)).unwrap();
    assert_eq!(parquet_files(dir.path()).len(), 2);
    assert_eq!(count(&ctx, "t").await, 410);
    drop(store);
    let (_store, ctx) = open(cfg);
    assert_eq!(
        ints(&ctx, "SELECT count(*), count(DISTINCT id) FROM t").await,
        vec![410, 410]
    );
}

#[tokio::test]
async fn the_running_hour_compacts_only_flushed_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.compact_min_files = 2;
    cfg.compaction_grace = Duration::ZERO;
    let (store, ctx) = open(cfg);
    let now = SystemTime::now();
    let now_us = now.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
    let hour_start = now_us - now_us.rem_euclid(HOUR);
    let mut next = 0;
    let mut flush_one = || {
        store
            .append("t", batch(next..next + 10, |i| hour_start + i as i64), None)
            .unwrap();
        store.flush().unwrap();
        next += 10;
    };
    flush_one();
    flush_one();
    store.maintain(now).unwrap();
    assert_eq!(
        (stats(&store).files, stats(&store).compactions_total),
        (1, 1)
    );
    flush_one();
    store.maintain(now).unwrap();
    assert_eq!(
        stats(&store).files,
        2,
        "a compacted file is not rewritten in its running hour"
    );
    flush_one();
    store.maintain(now).unwrap();
    assert_eq!(
        (stats(&store).files, stats(&store).compactions_total),
        (2, 2)
    );
    // Once the hour is over, its files become one.
    store.maintain(now + Duration::from_secs(2 * 3600)).unwrap();
    assert_eq!(
        (stats(&store).files, stats(&store).compactions_total),
        (1, 3)
    );
    assert_eq!(parquet_files(dir.path()).len(), 1);
    assert_eq!(
        ints(&ctx, "SELECT count(*), count(DISTINCT id) FROM t").await,
        vec![40, 40]
    );
}

#[tokio::test]
async fn crash_after_compaction_gives_no_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.compact_min_files = 3;
    {
        let (store, _ctx) = open(cfg.clone());
        for k in 0..3u64 {
            store
                .append("t", at_base(k * 10..k * 10 + 10), None)
                .unwrap();
            store.flush().unwrap();
        }
        store.maintain(SystemTime::now()).unwrap();
        assert_eq!(stats(&store).compactions_total, 1);
        // "Crash" before the grace ends: the compacted file and all it replaces are on disk.
    }
    assert_eq!(parquet_files(dir.path()).len(), 4);
    let (store, ctx) = open(cfg);
    assert_eq!(
        ints(&ctx, "SELECT count(*), count(DISTINCT id) FROM t").await,
        vec![30, 30]
    );
    assert_eq!(parquet_files(dir.path()).len(), 1);
    assert_eq!(stats(&store).files, 1);
}

#[tokio::test]
async fn retention_deletes_old_hour_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.retention = Some(Duration::from_secs(2 * 3600));
    let (store, ctx) = open(cfg);
    let now = SystemTime::now();
    let now_us = now.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
    store
        .append("t", batch(0..10, |_| now_us - 5 * HOUR), None)
        .unwrap();
    store
        .append("t", batch(10..20, |_| now_us - 4 * HOUR), None)
        .unwrap();
    store.append("t", batch(20..30, |_| now_us), None).unwrap();
    store.flush().unwrap();
    assert_eq!(parquet_files(dir.path()).len(), 3);

    store.maintain(now).unwrap();
    assert_eq!(parquet_files(dir.path()).len(), 1);
    assert_eq!(
        ints(&ctx, "SELECT count(*), min(value) FROM t").await,
        vec![10, 20]
    );
    let s = stats(&store);
    assert_eq!((s.files, s.files_deleted_by_retention_total), (1, 2));
    // Only the current hour's directory is left (and its date's).
    let hours: Vec<_> = parquet_files(dir.path())
        .iter()
        .map(|p| p.parent().unwrap().to_path_buf())
        .collect();
    let hour_dirs: usize = std::fs::read_dir(dir.path().join("t"))
        .unwrap()
        .flatten()
        .map(|d| std::fs::read_dir(d.path()).unwrap().count())
        .sum();
    assert_eq!((hours.len(), hour_dirs), (1, 1));
}

#[tokio::test]
async fn time_filters_prune_files_and_projection_is_pushed_down() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ctx) = open(config(dir.path()));
    for h in 0..3u64 {
        store
            .append(
                "t",
                batch(h * 100..h * 100 + 100, |i| {
                    base() + h as i64 * HOUR + i as i64
                }),
                None,
            )
            .unwrap();
    }
    store.flush().unwrap();
    store.append("t", at_base(1000..1005), None).unwrap(); // hot

    let (all, widths, _) = plan_files(&ctx, "SELECT * FROM t").await;
    assert_eq!((all, widths), (3, vec![3]));

    let sql = "SELECT value FROM t WHERE timestamp >= '2025-06-01T11:00:00Z' AND timestamp < '2025-06-01T12:00:00Z'";
    let (n, _, text) = plan_files(&ctx, sql).await;
    assert_eq!(n, 1, "{text}");
    assert!(text.contains("predicate="), "{text}");
    let vals = query(&ctx, sql).await;
    let mut got: Vec<i64> = vals
        .iter()
        .flat_map(|b| {
            assert_eq!(b.num_columns(), 1);
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    got.sort();
    assert_eq!(got, (100..200).collect::<Vec<i64>>());

    let between = "SELECT count(*) FROM t WHERE timestamp BETWEEN TIMESTAMP '2025-06-01T12:00:00Z' AND TIMESTAMP '2025-06-01T12:59:59Z'";
    assert_eq!(plan_files(&ctx, between).await.0, 1);
    assert_eq!(ints(&ctx, between).await, vec![100]);
    // Before every file: none read, the hot rows still answer.
    let early = "SELECT count(*) FROM t WHERE timestamp < '2025-06-01T10:00:00Z'";
    assert_eq!(plan_files(&ctx, early).await.0, 0);
    assert_eq!(ints(&ctx, early).await, vec![0]);
    let eq = "SELECT count(*) FROM t WHERE timestamp = '2025-06-01T10:00:00.000050Z'";
    assert_eq!(plan_files(&ctx, eq).await.0, 1);
    assert_eq!(ints(&ctx, eq).await, vec![1]);
    // Projection: the Parquet scan reads only the column asked for.
    let (_, widths, _) = plan_files(&ctx, "SELECT value FROM t").await;
    assert_eq!(widths, vec![1]);
    assert_eq!(
        ints(&ctx, "SELECT count(*), sum(value) FROM t WHERE value > 150").await,
        vec![149 + 5, (151..300).sum::<i64>() + (1000..1005).sum::<i64>()]
    );
}

#[tokio::test]
async fn on_durable_runs_once_in_order_after_the_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _ctx) = open(config(dir.path()));
    let log = Arc::new(Mutex::new(Vec::new()));
    let cb = |n: u32| {
        let log = log.clone();
        Some(Box::new(move || log.lock().unwrap().push(n)) as vigil_ingest::store::OnDurable)
    };
    store.append("t", at_base(0..10), cb(1)).unwrap();
    store.append("t", at_base(10..10), cb(2)).unwrap(); // empty
    store.append("t", at_base(10..20), cb(3)).unwrap();
    assert!(log.lock().unwrap().is_empty());
    let r = store.flush().unwrap();
    assert_eq!((r.batches, r.callbacks), (3, 3));
    assert_eq!(*log.lock().unwrap(), vec![1, 2, 3]);
    store.append("t", at_base(20..30), cb(4)).unwrap();
    store.flush().unwrap();
    store.flush().unwrap();
    assert_eq!(*log.lock().unwrap(), vec![1, 2, 3, 4]);

    // A failed flush runs no callback and keeps the batch hot; the retry runs it.
    let blocker = dir.path().join("t/date=2025-06-02");
    std::fs::write(&blocker, b"not a directory").unwrap();
    store
        .append("t", batch(30..31, |_| base() + 24 * HOUR), cb(5))
        .unwrap();
    let err = store.flush().unwrap_err();
    assert!(err.to_string().contains("date=2025-06-02"), "{err}");
    assert!(err.retryable());
    let s = stats(&store);
    assert_eq!(s.hot_rows, 1);
    assert!(s.last_flush_error.is_some());
    assert_eq!(log.lock().unwrap().len(), 4);
    std::fs::remove_file(&blocker).unwrap();
    store.flush().unwrap();
    assert_eq!(*log.lock().unwrap(), vec![1, 2, 3, 4, 5]);
    assert!(stats(&store).last_flush_error.is_none());
}

#[tokio::test]
async fn maintain_flushes_by_age_bytes_and_eagerly() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flush_interval = Duration::from_secs(10);
    let (store, _ctx) = open(cfg.clone());
    store.append("t", at_base(0..10), None).unwrap();
    let now = SystemTime::now();
    store.maintain(now).unwrap();
    assert_eq!(stats(&store).hot_rows, 10, "not due yet");
    store.maintain(now + Duration::from_secs(11)).unwrap();
    assert_eq!(stats(&store).hot_rows, 0, "due by age");

    store.append("t", at_base(10..20), None).unwrap();
    store.set_eager(true);
    store.maintain(SystemTime::now()).unwrap();
    assert_eq!(stats(&store).hot_rows, 0, "eager");
    store.set_eager(false);
    drop(store);

    let dir2 = tempfile::tempdir().unwrap();
    let mut cfg = config(dir2.path());
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.hot_max_bytes = 1;
    let (store, _ctx) = open(cfg);
    store.append("t", at_base(0..10), None).unwrap();
    store.maintain(SystemTime::now()).unwrap();
    assert_eq!(stats(&store).hot_rows, 0, "due by bytes");
}

#[tokio::test]
async fn maintenance_thread_flushes_and_flushes_on_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flush_interval = Duration::from_millis(10);
    let (store, ctx) = open(cfg);
    let stop = CancellationToken::new();
    let handle = store.spawn_maintenance(Duration::from_millis(20), stop.clone());
    store.append("t", at_base(0..10), None).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stats(&store).files == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no flush by the maintenance thread"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.append("t", at_base(10..20), None).unwrap();
    stop.cancel();
    handle.join().unwrap();
    let s = stats(&store);
    assert_eq!((s.hot_rows, s.rows_flushed_total), (0, 20));
    assert_eq!(count(&ctx, "t").await, 20);
}

#[tokio::test]
async fn errors_name_the_table_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _ctx) = open(config(dir.path()));
    let e = store.append("nope", at_base(0..1), None).unwrap_err();
    assert!(matches!(e, StoreError::UnknownTable(_)));
    assert!(e.to_string().contains("nope"), "{e}");
    assert!(store.provider("nope").is_none());
    assert!(store.provider("t").is_some());
    assert_eq!(store.table_names(), vec!["t".to_string()]);

    let other = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let wrong = RecordBatch::try_new(other, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
    let e = store.append("t", wrong, None).unwrap_err();
    assert!(matches!(e, StoreError::SchemaMismatch { .. }));
    assert!(e.to_string().contains("`t`"), "{e}");
    assert!(!e.retryable());

    // A file of another schema in the table's directory stops the open, naming the file.
    store.append("t", at_base(0..1), None).unwrap();
    store.flush().unwrap();
    drop(store);
    let mut other_spec = spec("t");
    other_spec.schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
        Field::new("value", DataType::Float64, false),
    ]));
    let e = Store::open(config(dir.path()), vec![other_spec]).unwrap_err();
    let file = parquet_files(dir.path())[0].display().to_string();
    assert!(
        e.to_string().contains(&file) && e.to_string().contains("`t`"),
        "{e}"
    );

    // A time column that is not a timestamp is refused.
    let mut bad = spec("u");
    bad.time_column = "value".into();
    let e = Store::open(config(dir.path()), vec![bad]).unwrap_err();
    assert!(e.to_string().contains("`u`"), "{e}");
}

/// A batch of `n` events: required columns filled, the others null.
fn events_batch(schema: &SchemaRef, from: u64, n: usize, t0: i64) -> RecordBatch {
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.data_type() {
                DataType::Timestamp(..) => Arc::new(
                    TimestampMicrosecondArray::from_iter_values((0..n).map(|i| t0 + i as i64))
                        .with_timezone("+00:00"),
                ),
                _ if f.is_nullable() => new_null_array(f.data_type(), n),
                DataType::Utf8 => Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("{}-{}", f.name(), from + i as u64)),
                )),
                DataType::Boolean => Arc::new(BooleanArray::from(vec![false; n])),
                DataType::UInt16 => Arc::new(UInt16Array::from(vec![200u16; n])),
                other => panic!("no test value for a non-null {other}"),
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), cols).unwrap()
}

#[tokio::test]
async fn events_table_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let schema = vigil_ingest::events_schema();
    let events = TableSpec {
        name: "events".into(),
        schema: schema.clone(),
        time_column: "timestamp".into(),
        dedupe_column: None,
    };
    let store = Store::open(config(dir.path()), vec![events.clone(), spec("t")]).unwrap();
    let ctx = SessionContext::new();
    store.register(&ctx).unwrap();
    store
        .append("events", events_batch(&schema, 0, 500, base()), None)
        .unwrap();
    store.flush().unwrap();
    store
        .append("events", events_batch(&schema, 500, 100, base()), None)
        .unwrap();
    assert_eq!(
        ints(
            &ctx,
            "SELECT count(*), count(DISTINCT event_id), min(status), count(identity) FROM events"
        )
        .await,
        vec![600, 600, 200, 0]
    );
    assert_eq!(count(&ctx, "t").await, 0);
    assert_eq!(
        store.table_names(),
        vec!["events".to_string(), "t".to_string()]
    );
    store.flush().unwrap();
    drop(store);
    let store = Store::open(config(dir.path()), vec![events, spec("t")]).unwrap();
    let ctx = SessionContext::new();
    store.register(&ctx).unwrap();
    assert_eq!(
        ints(
            &ctx,
            "SELECT count(*), count(DISTINCT event_id) FROM events WHERE gateway LIKE 'gateway-%'"
        )
        .await,
        vec![600, 600]
    );
    assert!(dir.path().join("events/date=2025-06-01/hour=10").is_dir());
}

/// A source replaying what was stored but not acknowledged (a crash between the write and the
/// commit) stores it once: within a run, and across the restart the replay comes with.
#[tokio::test]
async fn replayed_rows_are_stored_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keyed = || TableSpec {
        dedupe_column: Some("id".into()),
        ..spec("t")
    };
    let store = Store::open(config(dir.path()), vec![keyed()]).unwrap();
    store.append("t", at_base(0..100), None).unwrap();
    // the same rows again before any flush, and a batch repeating ids within itself
    store.append("t", at_base(90..110), None).unwrap();
    store.flush().unwrap();
    assert_eq!(store.stats()[0].duplicates_dropped_total, 10);
    drop(store);

    // "crash" after the flush, before the source committed: it sends rows 50..150 again
    let store = Store::open(config(dir.path()), vec![keyed()]).unwrap();
    store.append("t", at_base(50..150), None).unwrap();
    store.flush().unwrap();
    assert_eq!(store.stats()[0].duplicates_dropped_total, 60);
    let ctx = SessionContext::new();
    store.register(&ctx).unwrap();
    assert_eq!(
        ints(&ctx, "SELECT count(*), count(DISTINCT id) FROM t").await,
        vec![150, 150]
    );

    // a table without a dedupe column keeps what it is given
    let plain = tempfile::tempdir().unwrap();
    let store = Store::open(config(plain.path()), vec![spec("t")]).unwrap();
    store.append("t", at_base(0..10), None).unwrap();
    store.append("t", at_base(0..10), None).unwrap();
    let ctx = SessionContext::new();
    store.register(&ctx).unwrap();
    assert_eq!(count(&ctx, "t").await, 20);

    // a dedupe column that is not text is refused, naming the table
    let bad = TableSpec {
        dedupe_column: Some("value".into()),
        ..spec("t")
    };
    let e = Store::open(config(plain.path()), vec![bad]).unwrap_err();
    assert!(e.to_string().contains("`t`"), "{e}");
}
