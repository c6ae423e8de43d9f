//! Scoring throughput, against parsing the same lines (the baseline, measured in the same run):
//!
//! - `parse`: simulated NGINX lines parsed and normalized into event batches (the baseline);
//! - `score/rules`: those batches through the scorer with models off (features + rules +
//!   policy);
//! - `score/rules-and-models`: the default scorer (features + rules + the built-in models);
//! - `tract/<model>`: inference alone on feature rows, 256 rows per call;
//!
//! then, outside criterion, the memory of one million tracked subjects (bytes per subject, as
//! counted by this binary's allocator). Prints events/s, rows/s and the ratios at the end.
//!
//! `cargo bench -p vigil-scoring --bench score` (add `-- --quick` for a short run).

use arrow::array::RecordBatch;
use criterion::{BatchSize, Criterion, Throughput};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use vigil_enforce::SubjectKind;
use vigil_ingest::event::EventBatchBuilder;
use vigil_ingest::formats::{FormatName, FormatOptions};
use vigil_ingest::normalize::{NormalizeConfig, Normalizer};
use vigil_ingest::pipeline::{IngestStats, LineChunk, LineSplitter, Parser};
use vigil_ingest::simulate::{SimConfig, SimFormat, Simulation, write_logs};
use vigil_scoring::features::{FeatureConfig, FeatureStore, Observation};
use vigil_scoring::model::{ModelSet, ModelsConfig};
use vigil_scoring::{Scorer, ScoringConfig};

/// Bytes currently allocated through this binary's allocator.
struct Counting;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed on as is.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        ALLOCATED.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const LINES: u64 = 200_000;
const BATCH: usize = 8192;
const TRACT_ROWS: usize = 256;

fn lines() -> Vec<u8> {
    let sim = Simulation::new(SimConfig {
        benign_users: 2000,
        duration_secs: 2 * 3600,
        ..Default::default()
    })
    .expect("simulation config");
    let mut out = Vec::new();
    write_logs(&sim, SimFormat::Nginx, Some(LINES), &mut out).expect("in-memory write");
    out
}

fn chunks(data: &[u8]) -> Vec<LineChunk> {
    let mut out = Vec::new();
    let mut s = LineSplitter::new(0, 1 << 20);
    for part in data.chunks(1 << 20) {
        let mut chunk = LineChunk::new("bench".into(), 7);
        s.push(part, &mut chunk);
        out.push(chunk);
    }
    let mut last = LineChunk::new("bench".into(), 7);
    s.finish(&mut last);
    out.push(last);
    out
}

fn parser() -> Parser {
    Parser::new(
        "bench",
        FormatName::Nginx,
        FormatOptions::default(),
        Normalizer::new(NormalizeConfig::default()).expect("default normalize config"),
        Arc::new(IngestStats::default()),
    )
    .expect("format builds")
}

/// Parses `chunks` into batches of at most [`BATCH`] events.
fn parse(parser: &mut Parser, chunks: &[LineChunk]) -> Vec<RecordBatch> {
    let mut builder = EventBatchBuilder::with_capacity(BATCH);
    let mut dead = Vec::new();
    let mut out = Vec::new();
    for c in chunks {
        parser.parse_chunk(c, &mut builder, &mut dead);
        if builder.len() >= BATCH {
            out.push(builder.finish());
        }
    }
    if !builder.is_empty() {
        out.push(builder.finish());
    }
    assert!(dead.is_empty(), "simulated lines parse");
    out
}

fn scoring_config(models: bool) -> ScoringConfig {
    let mut cfg = ScoringConfig::default();
    cfg.models.enabled = models;
    cfg
}

fn score_all(scorer: &mut Scorer, batches: &[RecordBatch]) -> usize {
    let mut decisions = 0;
    for b in batches {
        decisions += scorer.score_batch(b).expect("scores").decisions.len();
    }
    decisions
}

fn bench(c: &mut Criterion) {
    let data = lines();
    let chunks = chunks(&data);
    let mut p = parser();
    let batches = parse(&mut p, &chunks);
    let events: usize = batches.iter().map(|b| b.num_rows()).sum();

    let mut group = c.benchmark_group("score");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events as u64));
    group.bench_function("parse", |b| {
        b.iter(|| parse(&mut p, &chunks).len());
    });
    for (name, models) in [("rules", false), ("rules-and-models", true)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || Scorer::new(&scoring_config(models)).expect("scorer"),
                |mut s| score_all(&mut s, &batches),
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();

    // inference alone, on the feature rows this traffic produces
    let scorer = Scorer::new(&scoring_config(false)).expect("scorer");
    let schema = scorer.features_schema().clone();
    let set = ModelSet::load(&ModelsConfig::default(), &schema).expect("built-in models");
    let mut feature_rows = Scorer::new(&scoring_config(false)).expect("scorer");
    let mut features = Vec::new();
    for b in &batches {
        features.extend(feature_rows.score_batch(b).expect("scores").features);
    }
    let mut group = c.benchmark_group("tract");
    group.sample_size(10);
    for m in &set.models {
        let kind = SubjectKind::Ip;
        let mut rows = Vec::new();
        for f in &features {
            m.gather(kind, f, &mut rows).expect("gather");
            if rows.len() >= TRACT_ROWS * m.width() {
                break;
            }
        }
        rows.truncate(TRACT_ROWS * m.width());
        let n = rows.len() / m.width();
        assert!(n > 0, "feature rows for {}", m.name());
        group.throughput(Throughput::Elements(n as u64));
        let mut out = Vec::with_capacity(n);
        group.bench_function(m.name(), |b| {
            b.iter(|| {
                out.clear();
                m.predict(&rows, &mut out).expect("inference");
                out.len()
            });
        });
    }
    group.finish();
}

/// Bytes allocated per tracked subject with one million IP subjects in the feature store,
/// each seen `times` times (once: kept as its event; more: a full state).
/// Bytes allocated per subject for a million IP subjects each seen `times` times, their
/// requests carrying attack evidence or not (a subject with rare signals keeps a record of
/// them besides its state).
fn bytes_per_subject(times: usize, evidence: bool) -> f64 {
    const N: usize = 1_000_000;
    let ids: Vec<String> = (0..N)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    let before = ALLOCATED.load(Ordering::Relaxed);
    let mut store = FeatureStore::new(FeatureConfig {
        max_subjects_per_kind: 2 * N,
        ..Default::default()
    })
    .expect("feature config");
    for (i, id) in ids.iter().enumerate().cycle().take(times * N) {
        let o = Observation {
            t_us: 1_790_000_000_000_000 + i as i64,
            status: 200,
            bytes_out: 512,
            route: Some("/api/items/{id}"),
            path: Some("/api/items/7"),
            ip: Some(id),
            user_agent: Some("bench/1"),
            attack_classes: u16::from(evidence),
            ..Default::default()
        };
        store.observe(SubjectKind::Ip, id, &o);
    }
    assert_eq!(store.tracked()[2], N);
    assert_eq!(store.seen_once(), if times == 1 { N } else { 0 });
    let rare = if evidence && times > 1 { N } else { 0 };
    assert_eq!(store.with_rare_signals(), rare);
    let after = ALLOCATED.load(Ordering::Relaxed);
    let per = (after - before) as f64 / N as f64;
    drop(store);
    per
}

/// Mean time per iteration of a finished benchmark, from criterion's estimates file.
fn mean_ns(id: &str) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let text =
        std::fs::read_to_string(target.join("criterion").join(id).join("new/estimates.json"))
            .ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn report(events: usize) {
    let per_sec = |id: &str, n: f64| mean_ns(id).map(|ns| n / (ns / 1e9));
    let n = events as f64;
    if let Some(base) = per_sec("score/parse", n) {
        println!("\nstage                 events/s    vs parse ({base:.0} events/s)");
        for id in ["rules", "rules-and-models"] {
            if let Some(eps) = per_sec(&format!("score/{id}"), n) {
                println!("{id:<20} {eps:>10.0}   {:.3}x", eps / base);
            }
        }
    }
    let set = ScoringConfig::default();
    let scorer = Scorer::new(&set).expect("scorer");
    if let Ok(models) = ModelSet::load(&ModelsConfig::default(), scorer.features_schema()) {
        for m in &models.models {
            if let Some(rps) = per_sec(&format!("tract/{}", m.name()), TRACT_ROWS as f64) {
                println!(
                    "tract {:<14} {rps:>10.0} rows/s ({TRACT_ROWS} rows per call)",
                    m.name()
                );
            }
        }
    }
    println!(
        "subject state: {} bytes (struct), {} for a subject seen once; bytes allocated per \
         subject with 1,000,000 subjects: {:.0} seen once, {:.0} seen twice, {:.0} seen \
         twice with attack evidence",
        std::mem::size_of::<vigil_scoring::features::SubjectState>(),
        std::mem::size_of::<vigil_scoring::features::FirstSeen>(),
        bytes_per_subject(1, false),
        bytes_per_subject(2, false),
        bytes_per_subject(2, true)
    );
}

/// Feature rows (evaluations: each is one inference per model) per event of the bench traffic.
fn rows_per_event(batches: &[RecordBatch]) -> f64 {
    let mut scorer = Scorer::new(&scoring_config(false)).expect("scorer");
    let mut rows = 0;
    for b in batches {
        let out = scorer.score_batch(b).expect("scores");
        rows += out.features.iter().map(|f| f.num_rows()).sum::<usize>();
    }
    let events: usize = batches.iter().map(|b| b.num_rows()).sum();
    rows as f64 / events as f64
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    let batches = parse(&mut parser(), &chunks(&lines()));
    let events = batches.iter().map(|b| b.num_rows()).sum();
    report(events);
    println!("feature rows per event: {:.2}", rows_per_event(&batches));
}
