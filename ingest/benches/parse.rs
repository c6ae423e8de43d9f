//! Parse + normalize throughput per format, against the cost of only splitting the same bytes
//! into lines (the baseline, measured in the same run). Prints lines/s and the ratio to the
//! baseline for every format at the end.
//!
//! `cargo bench -p vigil-ingest --bench parse` (add `-- --quick` for a short run).

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

fn main() {
    if let (Some(n), Some(f)) = (
        std::env::var_os("VIGIL_ITERS"),
        std::env::var_os("VIGIL_FMT"),
    ) {
        let n: u32 = n.to_str().unwrap().parse().unwrap();
        let name: FormatName = f.to_str().unwrap().parse().unwrap();
        let data = sample(name.as_str().parse().unwrap());
        let chunk = chunk_of(&data);
        let mut parser = Parser::new(
            "bench",
            name,
            FormatOptions::default(),
            Normalizer::new(NormalizeConfig::default()).unwrap(),
            Arc::new(IngestStats::default()),
        )
        .unwrap();
        if std::env::var_os("VIGIL_PROJECT").is_some() {
            let m = serde_json::to_value(vigil_ingest::formats::JsonMapping::preset(name)).unwrap();
            let paths: Vec<String> = m
                .as_object()
                .unwrap()
                .values()
                .filter_map(|v| v.as_array())
                .flatten()
                .map(|p| p.as_str().unwrap().to_string())
                .collect();
            let paths = if std::env::var_os("VIGIL_NOPATHS").is_some() {
                vec!["zzz".to_string()]
            } else {
                paths
            };
            let (p, _) = vigil_ingest::json::Projection::new(&paths);
            let lines: Vec<&str> = chunk
                .lines
                .iter()
                .map(|s| std::str::from_utf8(&chunk.data[s.start..s.end]).unwrap())
                .collect();
            let mut out = vec![vigil_ingest::json::Value::Absent; p.slots()];
            let mut text = String::new();
            let mut sc = Vec::new();
            let modes: Vec<String> = std::env::var("VIGIL_MODES")
                .map(|m| m.split(',').map(String::from).collect())
                .unwrap_or_else(|_| {
                    vec![
                        "project".into(),
                        "extract".into(),
                        "scan".into(),
                        "parse".into(),
                    ]
                });
            let mut best = std::collections::BTreeMap::new();
            let format = name.build(&FormatOptions::default()).unwrap();
            for _ in 0..7 {
                for mode in modes.iter().map(String::as_str) {
                    let t = std::time::Instant::now();
                    for _ in 0..n {
                        for l in &lines {
                            if mode.starts_with("parse") {
                                format.parse(l, &mut |r| {
                                    std::hint::black_box(r.is_ok());
                                });
                            } else if mode == "scan" {
                                std::hint::black_box(
                                    memchr::memchr_iter(b'"', l.as_bytes()).count(),
                                );
                            } else if mode.starts_with("project") {
                                p.project(l, &mut out, &mut text).unwrap();
                            } else {
                                p.extract(l, &mut sc).unwrap();
                            }
                        }
                    }
                    let ns = t.elapsed().as_nanos() as f64 / (n as f64 * lines.len() as f64);
                    let e = best.entry(mode).or_insert(f64::MAX);
                    *e = ns.min(*e);
                }
            }
            eprintln!("{best:.0?}");
            return;
        }
        let t = std::time::Instant::now();
        let mut rows = 0;
        for _ in 0..n {
            let mut builder = EventBatchBuilder::with_capacity(8192);
            let mut dead = Vec::new();
            parser.parse_chunk(&chunk, &mut builder, &mut dead);
            rows += builder.finish().num_rows();
        }
        eprintln!("rows {rows} secs {:.3}", t.elapsed().as_secs_f64());
        return;
    }
    if std::env::var_os("VIGIL_DUMP").is_some() {
        for (_, sim) in formats() {
            let d = sample(sim);
            let t = String::from_utf8_lossy(&d);
            for l in t.lines().take(3) {
                println!("{l}");
            }
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    report();
}
