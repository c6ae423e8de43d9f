//! Parse + normalize throughput per format, against the cost of only splitting the same bytes
//! into lines (the baseline, measured in the same run). Prints lines/s and the ratio to the
//! baseline for every format at the end.
//!
//! `cargo bench -p vigil-ingest --bench parse` (add `-- --quick` for a short run).
//!
//! With `VIGIL_BENCH_FORMAT=<format>` set, the binary instead parses that format's lines once
//! (`VIGIL_BENCH_PASSES` times) and exits: a fixed amount of work for profilers and instruction
//! counters, e.g. `valgrind --tool=callgrind
//! --toggle-collect=vigil_ingest::pipeline::Parser::parse_chunk <bench binary>`.

use criterion::{BenchmarkId, Criterion, Throughput};
use std::sync::Arc;
use vigil_ingest::event::EventBatchBuilder;
use vigil_ingest::formats::{FormatName, FormatOptions};
use vigil_ingest::normalize::{NormalizeConfig, Normalizer};
use vigil_ingest::pipeline::{IngestStats, LineChunk, LineSplitter, Parser};
use vigil_ingest::simulate::{SimConfig, SimFormat, Simulation, write_logs};

const LINES: u64 = 50_000;

fn formats() -> Vec<(FormatName, SimFormat)> {
    FormatName::ALL
        .into_iter()
        .filter_map(|f| f.as_str().parse::<SimFormat>().ok().map(|s| (f, s)))
        .collect()
}

fn sample(format: SimFormat) -> Vec<u8> {
    let sim = Simulation::new(SimConfig {
        benign_users: 2000,
        duration_secs: 4 * 3600,
        ..Default::default()
    })
    .expect("simulation config");
    let mut out = Vec::new();
    write_logs(&sim, format, Some(LINES), &mut out).expect("in-memory write");
    out
}

fn chunk_of(data: &[u8]) -> LineChunk {
    let mut chunk = LineChunk::new("bench".into(), 7);
    let mut s = LineSplitter::new(0, 1 << 20);
    s.push(data, &mut chunk);
    s.finish(&mut chunk);
    chunk
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.sample_size(10);
    let nginx = sample(SimFormat::Nginx);
    let lines = nginx.iter().filter(|b| **b == b'\n').count() as u64;
    group.throughput(Throughput::Elements(lines));
    group.bench_function("baseline-split-lines", |b| {
        b.iter(|| chunk_of(&nginx).lines.len())
    });
    for (name, sim) in formats() {
        let data = sample(sim);
        let chunk = chunk_of(&data);
        // OTLP packs 50 records in a line: count records, not lines.
        let records = if sim == SimFormat::Otlp {
            LINES
        } else {
            chunk.lines.len() as u64
        };
        group.throughput(Throughput::Elements(records));
        let mut parser = Parser::new(
            "bench",
            name,
            FormatOptions::default(),
            Normalizer::new(NormalizeConfig::default()).expect("default normalize config"),
            Arc::new(IngestStats::default()),
        )
        .expect("format builds");
        group.bench_with_input(
            BenchmarkId::new("parse", name.as_str()),
            &chunk,
            |b, chunk| {
                b.iter(|| {
                    let mut builder = EventBatchBuilder::with_capacity(8192);
                    let mut dead = Vec::new();
                    let out = parser.parse_chunk(chunk, &mut builder, &mut dead);
                    assert_eq!(out.dead_letters, 0);
                    builder.finish().num_rows()
                })
            },
        );
    }
    group.finish();
}

/// Mean time per iteration of a finished benchmark, from criterion's estimates file.
fn mean_ns(id: &str) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let text = std::fs::read_to_string(
        target
            .join("criterion/parse")
            .join(id)
            .join("new/estimates.json"),
    )
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn report() {
    let Some(base) = mean_ns("baseline-split-lines") else {
        return;
    };
    let base_lps = LINES as f64 / (base / 1e9);
    println!("\nformat           lines/s      vs split-only baseline ({base_lps:.0} lines/s)");
    for (name, _) in formats() {
        if let Some(ns) = mean_ns(&format!("parse/{}", name.as_str())) {
            let lps = LINES as f64 / (ns / 1e9);
            println!(
                "{:<16} {:>10.0}   {:.3}x",
                name.as_str(),
                lps,
                lps / base_lps
            );
        }
    }
}

/// The fixed-work mode (see the module docs): `VIGIL_BENCH_FORMAT` lines, parsed
/// `VIGIL_BENCH_PASSES` times (default 1) in 1 MiB chunks into batches of about 8,192 rows,
/// as `vigil replay` reads a file.
fn passes(format: &str) {
    let name: FormatName = format.parse().expect("VIGIL_BENCH_FORMAT: a format name");
    let sim: SimFormat = format
        .parse()
        .expect("VIGIL_BENCH_FORMAT: a format the simulator writes");
    let passes: u32 = std::env::var("VIGIL_BENCH_PASSES")
        .map_or(1, |n| n.parse().expect("VIGIL_BENCH_PASSES: a number"));
    // As `vigil replay` reads: 1 MiB at a time, a batch taken when one has 8,192 rows or more.
    let data = sample(sim);
    let mut splitter = LineSplitter::new(0, 1 << 20);
    let chunks: Vec<LineChunk> = data
        .chunks(1 << 20)
        .map(|piece| {
            let mut chunk = LineChunk::new("bench".into(), 7);
            splitter.push(piece, &mut chunk);
            chunk
        })
        .collect();
    let mut parser = Parser::new(
        "bench",
        name,
        FormatOptions::default(),
        Normalizer::new(NormalizeConfig::default()).expect("default normalize config"),
        Arc::new(IngestStats::default()),
    )
    .expect("format builds");
    let mut builder = EventBatchBuilder::with_capacity(8192);
    let mut dead = Vec::new();
    for _ in 0..passes {
        for chunk in &chunks {
            parser.parse_chunk(chunk, &mut builder, &mut dead);
            if builder.len() >= 8192 {
                builder.finish();
            }
        }
        dead.clear();
    }
    builder.finish();
}

fn main() {
    if let Ok(format) = std::env::var("VIGIL_BENCH_FORMAT") {
        passes(&format);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    report();
}
