//! Golden-file SQL over the analytics store, across the hot/cold flush boundary.
//!
//! A fixed data set — five minutes of simulated traffic (seed 42, NGINX format, ~3.5k lines),
//! parsed into `events` batches exactly as the pipeline does, with event ids from a fixed
//! stream identity — goes into a [`Store`] in several batches: the rows before
//! [`SPLIT`] (06:02:30Z) are flushed to Parquet (two flushes, so two files), the rest stay in
//! the hot tier. Every query in [`QUERIES`] (each with a deterministic `ORDER BY`) is rendered
//! with `pretty_format_batches` and compared to `tests/golden_sql/<name>.sql.out`: the query
//! as a `-- ` comment line, then the table.
//!
//! The same queries must then give byte-identical output
//! - with everything hot (a second store that never flushed),
//! - after flushing everything (only Parquet),
//! - after dropping the store and opening it again on the same directory (recovery),
//!
//! so neither the flush boundary nor a restart changes any result.
//!
//! Regenerate after an intended change with
//! `VIGIL_BLESS=1 cargo test -p vigil-ingest --test sql_golden` and review the diff of
//! `ingest/tests/golden_sql/*.sql.out`. Blessing writes the files from the mixed-tier run and
//! still checks the other runs against it. Every mismatch is reported (expected vs got), not
//! only the first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::{max, min};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use vigil_ingest::event::{EventBatchBuilder, events_schema, stream_seed};
use vigil_ingest::formats::{FormatName, FormatOptions};
use vigil_ingest::normalize::{NormalizeConfig, Normalizer};
use vigil_ingest::pipeline::{IngestStats, LineChunk, LineSplitter, Parser};
use vigil_ingest::simulate::{SimConfig, SimFormat, Simulation, render};
use vigil_ingest::store::{Store, StoreConfig, TableSpec, TableStats};

const GATEWAY: &str = "edge-nginx";
const STREAM: &str = "file:/var/log/nginx/access.log";
/// Lines per parsed batch (one chunk each), like a pipeline batch.
const BATCH_LINES: usize = 400;
/// Simulation start: 2026-11-24T06:00:00Z.
const START_SECS: i64 = 1_795_500_000;
const DURATION_SECS: u64 = 300;
/// Rows before this instant (06:02:30Z) are flushed to Parquet; the rest stay hot.
const SPLIT_US: i64 = (START_SECS + 150) * 1_000_000;
/// [`SPLIT_US`] as SQL sees it (documentation of the queries below).
const SPLIT: &str = "2026-11-24T06:02:30Z";

/// (name, query). Every query orders its output completely.
const QUERIES: &[(&str, &str)] = &[
    (
        "count",
        "SELECT count(*) AS events, count(DISTINCT event_id) AS distinct_event_ids, \
         count(DISTINCT origin) AS distinct_origins, min(timestamp) AS first, \
         max(timestamp) AS last FROM events",
    ),
    (
        "status_class",
        "SELECT concat(CAST(status / 100 AS VARCHAR), 'xx') AS class, count(*) AS events, \
         sum(bytes_out) AS bytes_out FROM events GROUP BY class ORDER BY class",
    ),
    (
        "status",
        "SELECT status, count(*) AS events FROM events GROUP BY status ORDER BY status",
    ),
    (
        "top_client_ips",
        "SELECT client_ip, count(*) AS requests, count(DISTINCT route) AS routes \
         FROM events GROUP BY client_ip ORDER BY requests DESC, client_ip LIMIT 10",
    ),
    (
        "per_minute",
        "SELECT date_trunc('minute', timestamp) AS minute, count(*) AS requests, \
         count(DISTINCT client_ip) AS ips FROM events \
         WHERE timestamp < TIMESTAMP '2026-11-24T06:05:00Z' \
         GROUP BY minute ORDER BY minute",
    ),
    (
        "not_found_routes",
        "SELECT route, count(*) AS not_found FROM events WHERE status = 404 \
         GROUP BY route ORDER BY not_found DESC, route LIMIT 10",
    ),
    (
        "distinct_identities",
        "SELECT count(DISTINCT identity) AS identities, count(identity) AS with_identity, \
         count(*) - count(identity) AS without_identity, \
         count(DISTINCT session) AS sessions, count(DISTINCT api_key_id) AS api_keys \
         FROM events",
    ),
    (
        "top_identities",
        "SELECT identity, count(*) AS requests, count(DISTINCT client_ip) AS ips, \
         sum(CASE WHEN status IN (401, 403) THEN 1 ELSE 0 END) AS auth_failures \
         FROM events WHERE identity IS NOT NULL \
         GROUP BY identity ORDER BY requests DESC, identity LIMIT 10",
    ),
    (
        "range_cold_only",
        "SELECT count(*) AS events, count(DISTINCT client_ip) AS ips, sum(bytes_out) AS bytes_out \
         FROM events WHERE timestamp >= TIMESTAMP '2026-11-24T06:00:30Z' \
         AND timestamp < TIMESTAMP '2026-11-24T06:02:00Z'",
    ),
    (
        "range_hot_only",
        "SELECT count(*) AS events, count(DISTINCT client_ip) AS ips, sum(bytes_out) AS bytes_out \
         FROM events WHERE timestamp >= TIMESTAMP '2026-11-24T06:03:00Z' \
         AND timestamp < TIMESTAMP '2026-11-24T06:04:30Z'",
    ),
    (
        "range_both",
        "SELECT count(*) AS events, count(DISTINCT client_ip) AS ips, sum(bytes_out) AS bytes_out \
         FROM events WHERE timestamp >= TIMESTAMP '2026-11-24T06:01:00Z' \
         AND timestamp < TIMESTAMP '2026-11-24T06:04:00Z'",
    ),
    (
        "boundary_rows",
        "SELECT timestamp, event_id, client_ip, method, path, status FROM events \
         WHERE timestamp >= TIMESTAMP '2026-11-24T06:02:29Z' \
         AND timestamp < TIMESTAMP '2026-11-24T06:02:31Z' \
         ORDER BY timestamp, event_id",
    ),
    (
        "first_rows",
        "SELECT timestamp, event_id, origin, client_ip, method, path, status, bytes_out \
         FROM events ORDER BY timestamp, event_id LIMIT 20",
    ),
    (
        "last_rows",
        "SELECT timestamp, event_id, origin, client_ip, method, route, status \
         FROM events ORDER BY timestamp DESC, event_id DESC LIMIT 20",
    ),
    (
        "top_user_agents",
        "SELECT user_agent, count(*) AS requests, count(DISTINCT client_ip) AS ips \
         FROM events GROUP BY user_agent ORDER BY requests DESC, user_agent LIMIT 10",
    ),
    (
        "forwarded_for",
        "SELECT forwarded_for IS NULL AS no_xff, array_length(forwarded_for) AS hops, \
         count(*) AS events FROM events GROUP BY no_xff, hops ORDER BY no_xff, hops NULLS FIRST",
    ),
    (
        "methods",
        "SELECT method, count(*) AS requests, sum(bytes_out) AS bytes_out, \
         min(latency_ms) AS min_latency_ms, max(latency_ms) AS max_latency_ms, \
         sum(CASE WHEN query_present THEN 1 ELSE 0 END) AS with_query \
         FROM events GROUP BY method ORDER BY method",
    ),
    (
        "first_request_of_top_ips",
        "SELECT client_ip, timestamp, path, status FROM ( \
           SELECT client_ip, timestamp, path, status, \
             row_number() OVER (PARTITION BY client_ip ORDER BY timestamp, event_id) AS n, \
             count(*) OVER (PARTITION BY client_ip) AS total \
           FROM events) \
         WHERE n = 1 ORDER BY total DESC, client_ip LIMIT 10",
    ),
];

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden_sql")
}

fn specs() -> Vec<TableSpec> {
    vec![TableSpec {
        name: "events".into(),
        schema: events_schema(),
        time_column: "timestamp".into(),
        dedupe_column: None,
    }]
}

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        // Nothing flushes by itself (and no maintenance thread runs anyway).
        flush_interval: Duration::from_secs(24 * 3600),
        hot_max_bytes: 1 << 30,
        retention: None,
        compact_min_files: 1000,
        compaction_grace: Duration::from_secs(60),
        ..StoreConfig::default()
    }
}

fn events_stats(store: &Store) -> TableStats {
    store
        .stats()
        .into_iter()
        .find(|s| s.name == "events")
        .expect("an events table")
}

/// The fixed data set: simulated NGINX lines parsed into `events` batches of at most
/// [`BATCH_LINES`] lines, one stream (positions continue across batches); a batch never
/// straddles [`SPLIT_US`]. Returns (batches before the split, batches from the split on).
fn dataset() -> (Vec<RecordBatch>, Vec<RecordBatch>) {
    let sim = Simulation::new(SimConfig {
        seed: 42,
        start_unix_secs: START_SECS,
        duration_secs: DURATION_SECS,
        benign_users: 80,
        benign_api_clients: 6,
        attackers_per_scenario: 1,
        ..SimConfig::default()
    })
    .expect("valid simulation");
    // Group the rendered lines: a new group at BATCH_LINES lines or at the split.
    let mut groups: Vec<(bool, String, usize)> = Vec::new();
    for req in sim.requests() {
        let cold = req.timestamp_us < SPLIT_US;
        match groups.last_mut() {
            Some((c, text, n)) if *c == cold && *n < BATCH_LINES => {
                render(SimFormat::Nginx, &req, text);
                text.push('\n');
                *n += 1;
            }
            _ => {
                let mut text = String::new();
                render(SimFormat::Nginx, &req, &mut text);
                text.push('\n');
                groups.push((cold, text, 1));
            }
        }
    }
    let mut parser = Parser::new(
        GATEWAY,
        FormatName::Nginx,
        FormatOptions::default(),
        Normalizer::new(NormalizeConfig::default()).expect("default normalizer"),
        Arc::new(IngestStats::default()),
    )
    .expect("nginx parser");
    let seed = stream_seed(GATEWAY, STREAM.as_bytes());
    let stream: Arc<str> = STREAM.into();
    let mut splitter = LineSplitter::new(0, 64 * 1024);
    let (mut cold, mut hot) = (Vec::new(), Vec::new());
    for (is_cold, text, n) in groups {
        let mut chunk = LineChunk::new(stream.clone(), seed);
        splitter.push(text.as_bytes(), &mut chunk);
        assert_eq!(chunk.lines.len(), n, "every rendered line is one line");
        let mut builder = EventBatchBuilder::with_capacity(n);
        let mut dead = Vec::new();
        let outcome = parser.parse_chunk(&chunk, &mut builder, &mut dead);
        assert!(dead.is_empty(), "simulated lines all parse: {dead:?}");
        assert_eq!(outcome.events, n as u64);
        let batch = builder.finish();
        assert_eq!(batch.num_rows(), n);
        if is_cold { &mut cold } else { &mut hot }.push(batch);
    }
    (cold, hot)
}

/// Smallest and largest `timestamp` of `batches`, in µs.
fn time_range(batches: &[RecordBatch]) -> (i64, i64) {
    let mut lo = i64::MAX;
    let mut hi = i64::MIN;
    for b in batches {
        let ts = b
            .column_by_name("timestamp")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .expect("a timestamp column");
        assert_eq!(ts.null_count(), 0);
        lo = lo.min(min(ts).expect("rows"));
        hi = hi.max(max(ts).expect("rows"));
    }
    (lo, hi)
}

/// Runs every query; (name, rendered golden text).
async fn run_all(store: &Store) -> Vec<(&'static str, String)> {
    let ctx = SessionContext::new();
    store.register(&ctx).expect("register the store");
    let mut out = Vec::with_capacity(QUERIES.len());
    for &(name, sql) in QUERIES {
        let batches = ctx
            .sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{name}: plan: {e}"))
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{name}: run: {e}"));
        let table = pretty_format_batches(&batches)
            .unwrap_or_else(|e| panic!("{name}: render: {e}"))
            .to_string();
        out.push((name, format!("-- {sql}\n{table}\n")));
    }
    out
}

/// Compares one run's outputs to the golden files, pushing a report per mismatch.
fn compare(phase: &str, got: &[(&'static str, String)], failures: &mut Vec<String>) {
    for (name, text) in got {
        let path = golden_dir().join(format!("{name}.sql.out"));
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == *text => {}
            Ok(expected) => failures.push(format!(
                "[{phase}] {name} ({}):\n--- expected\n{expected}--- got\n{text}",
                path.display()
            )),
            Err(e) => failures.push(format!(
                "[{phase}] {name}: {}: {e} (run with VIGIL_BLESS=1 to write it)",
                path.display()
            )),
        }
    }
}

#[tokio::test]
async fn sql_results_match_golden_files_across_the_flush_boundary() {
    let bless = std::env::var_os("VIGIL_BLESS").is_some();
    let (cold, hot) = dataset();
    let (cold_lo, cold_hi) = time_range(&cold);
    let (hot_lo, hot_hi) = time_range(&hot);
    assert!(
        cold.len() >= 2 && hot.len() >= 2,
        "several batches per tier"
    );
    assert!(
        cold_hi < SPLIT_US && hot_lo >= SPLIT_US,
        "the tiers split at {SPLIT}"
    );
    assert!(cold_lo >= START_SECS * 1_000_000);
    assert!(hot_hi < (START_SECS + DURATION_SECS as i64) * 1_000_000);
    let cold_rows: usize = cold.iter().map(RecordBatch::num_rows).sum();
    let hot_rows: usize = hot.iter().map(RecordBatch::num_rows).sum();

    // Mixed: the part before the split in Parquet (two flushes), the rest hot.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(config(dir.path()), specs()).expect("open the store");
    let half = cold.len() / 2;
    for (i, b) in cold.iter().enumerate() {
        store.append("events", b.clone(), None).expect("append");
        if i + 1 == half {
            store.flush().expect("first flush");
        }
    }
    store.flush().expect("second flush");
    for b in &hot {
        store.append("events", b.clone(), None).expect("append");
    }
    let s = events_stats(&store);
    assert!(s.files >= 2, "Parquet files: {s:?}");
    assert!(s.hot_rows > 0, "hot rows: {s:?}");
    assert_eq!(s.rows_flushed_total, cold_rows as u64);
    assert_eq!(s.hot_rows, hot_rows as u64);
    let mixed = run_all(&store).await;

    // The totals are right whatever the golden files say.
    let count = &mixed[0];
    assert_eq!(count.0, "count");
    let total = (cold_rows + hot_rows).to_string();
    let row = count.1.lines().nth(4).expect("a result row");
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(
        cells[1..4],
        [total.as_str(), total.as_str(), total.as_str()],
        "count(*) = count(DISTINCT event_id) = count(DISTINCT origin) = rows appended"
    );

    let mut failures = Vec::new();
    if bless {
        std::fs::create_dir_all(golden_dir()).expect("create the golden directory");
        for (name, text) in &mixed {
            std::fs::write(golden_dir().join(format!("{name}.sql.out")), text)
                .expect("write a golden file");
        }
    } else {
        compare("hot + cold", &mixed, &mut failures);
    }

    // All hot: a second store that never flushed.
    let hot_dir = tempfile::tempdir().expect("tempdir");
    let all_hot = Store::open(config(hot_dir.path()), specs()).expect("open the store");
    for b in cold.iter().chain(&hot) {
        all_hot.append("events", b.clone(), None).expect("append");
    }
    let s = events_stats(&all_hot);
    assert_eq!((s.files, s.hot_rows), (0, (cold_rows + hot_rows) as u64));
    compare("all hot", &run_all(&all_hot).await, &mut failures);
    drop(all_hot);

    // All cold: flush the rest.
    store.flush().expect("third flush");
    let s = events_stats(&store);
    assert_eq!(s.hot_rows, 0, "{s:?}");
    assert_eq!(s.rows_flushed_total, (cold_rows + hot_rows) as u64);
    let files = s.files;
    compare("all flushed", &run_all(&store).await, &mut failures);

    // Restart: drop the store and recover it from the directory.
    drop(store);
    let store = Store::open(config(dir.path()), specs()).expect("reopen the store");
    let s = events_stats(&store);
    assert_eq!((s.files, s.hot_rows), (files, 0), "{s:?}");
    compare("reopened", &run_all(&store).await, &mut failures);

    assert!(
        failures.is_empty(),
        "{} golden SQL mismatch(es):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}
