//! Golden files: every format's sample lines (real-looking, with malformed ones) and what vigil
//! makes of them — events as NDJSON with the `events` schema's names, then the dead letters.
//!
//! Regenerate after an intended change with `VIGIL_BLESS=1 cargo test -p vigil-ingest --test
//! golden`, and review the diff of `ingest/tests/golden/*.out.ndjson`.

use std::path::PathBuf;
use std::sync::Arc;
use vigil_ingest::event::{EventBatchBuilder, write_ndjson};
use vigil_ingest::formats::{FormatName, FormatOptions};
use vigil_ingest::normalize::{NormalizeConfig, Normalizer};
use vigil_ingest::pipeline::{IngestStats, LineChunk, LineSplitter, Parser};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Parses `input` as `format` and renders the events and dead letters.
fn render(format: FormatName, input: &[u8]) -> String {
    let normalize = NormalizeConfig {
        trusted_proxies: vec!["10.0.0.0/8".into()],
        ..Default::default()
    };
    let mut parser = Parser::new(
        "golden",
        format,
        FormatOptions::default(),
        Normalizer::new(normalize).unwrap(),
        Arc::new(IngestStats::default()),
    )
    .unwrap();
    let mut chunk = LineChunk::new(format!("file:{}.log", format.as_str()).into(), 42);
    let mut splitter = LineSplitter::new(0, 64 * 1024);
    splitter.push(input, &mut chunk);
    splitter.finish(&mut chunk);
    let mut builder = EventBatchBuilder::default();
    let mut dead = Vec::new();
    let outcome = parser.parse_chunk(&chunk, &mut builder, &mut dead);
    assert_eq!(
        outcome.lines,
        outcome.events + outcome.dead_letters - extra_records(&outcome),
        "every line is an event or a dead letter"
    );
    let mut out = Vec::new();
    write_ndjson(&mut out, &builder.finish()).unwrap();
    for d in dead {
        let mut v = serde_json::to_value(&d).unwrap();
        v.as_object_mut().unwrap().remove("received_at");
        out.extend_from_slice(format!("{{\"dead_letter\":{v}}}\n").as_bytes());
    }
    String::from_utf8(out).unwrap()
}

/// Lines that hold several records (OTLP) count once in `lines` but several times in
/// events + dead letters; for other formats this is 0.
fn extra_records(o: &vigil_ingest::pipeline::ChunkOutcome) -> u64 {
    (o.events + o.dead_letters).saturating_sub(o.lines)
}

#[test]
fn every_format_matches_its_golden_file() {
    let bless = std::env::var_os("VIGIL_BLESS").is_some();
    let mut failures = Vec::new();
    for format in FormatName::ALL {
        let dir = golden_dir();
        let input = std::fs::read(dir.join(format!("{}.log", format.as_str())))
            .unwrap_or_else(|e| panic!("golden input for {format}: {e}"));
        let got = render(format, &input);
        let expected_path = dir.join(format!("{}.out.ndjson", format.as_str()));
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
            panic!("{}: {e} (run with VIGIL_BLESS=1)", expected_path.display())
        });
        if got != expected {
            failures.push(format!(
                "{format}:\n--- expected\n{expected}\n--- got\n{got}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_golden_input_has_good_and_bad_lines() {
    for format in FormatName::ALL {
        let input = std::fs::read(golden_dir().join(format!("{}.log", format.as_str()))).unwrap();
        let out = render(format, &input);
        assert!(
            out.lines().any(|l| l.starts_with("{\"event_id\"")),
            "{format}: no events"
        );
        assert!(
            out.lines().any(|l| l.starts_with("{\"dead_letter\"")),
            "{format}: no dead letters"
        );
    }
}
