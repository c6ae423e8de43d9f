//! Property tests: no format panics on any input, and every line read comes out as events or
//! dead letters. Inputs are arbitrary bytes, log-shaped strings, and mutations of the golden
//! sample lines (which reach much deeper into each parser than random bytes do).

use proptest::prelude::*;
use std::sync::Arc;
use vigil_ingest::event::EventBatchBuilder;
use vigil_ingest::formats::{FormatName, FormatOptions};
use vigil_ingest::normalize::{NormalizeConfig, Normalizer};
use vigil_ingest::pipeline::{IngestStats, LineChunk, LineSplitter, Parser};

fn samples() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut lines = Vec::new();
    for f in FormatName::ALL {
        let text = std::fs::read(dir.join(format!("{}.log", f.as_str()))).unwrap();
        lines.extend(
            text.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    lines
}

fn check_all_formats(input: &[u8]) {
    for format in FormatName::ALL {
        let mut parser = Parser::new(
            "prop",
            format,
            FormatOptions::default(),
            Normalizer::new(NormalizeConfig {
                trusted_proxies: vec!["10.0.0.0/8".into(), "::1".into()],
                ..Default::default()
            })
            .unwrap(),
            Arc::new(IngestStats::default()),
        )
        .unwrap();
        let mut chunk = LineChunk::new("prop".into(), 1);
        let mut splitter = LineSplitter::new(0, 4096);
        splitter.push(input, &mut chunk);
        splitter.finish(&mut chunk);
        let mut builder = EventBatchBuilder::default();
        let mut dead = Vec::new();
        let out = parser.parse_chunk(&chunk, &mut builder, &mut dead);
        let batch = builder.finish();
        assert_eq!(batch.num_rows() as u64, out.events);
        assert_eq!(dead.len() as u64, out.dead_letters);
        // every non-blank line is accounted for (OTLP lines may hold several records)
        assert!(
            out.events + out.dead_letters >= out.lines,
            "{format}: a line vanished"
        );
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        (
            any::<usize>(),
            prop::collection::vec(
                prop_oneof![
                    Just(b'"'),
                    Just(b'\\'),
                    Just(b'['),
                    Just(b']'),
                    Just(b'{'),
                    Just(b'}'),
                    Just(b' '),
                    Just(b':'),
                    Just(b','),
                    Just(b'-'),
                    any::<u8>()
                ],
                1..8
            )
        )
            .prop_map(|(i, v)| Edit::Insert(i, v)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut line: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = line.len().max(1);
        match e {
            Edit::Flip(i, b) if !line.is_empty() => line[i % len] = *b,
            Edit::Delete(i, n) if !line.is_empty() => {
                let s = i % len;
                let e = (s + n).min(line.len());
                line.drain(s..e);
            }
            Edit::Insert(i, v) => {
                let at = i % (line.len() + 1);
                line.splice(at..at, v.iter().copied());
            }
            Edit::Truncate(i) => line.truncate(i % len),
            _ => {}
        }
    }
    line
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..600)) {
        check_all_formats(&input);
    }

    #[test]
    fn log_shaped_text(input in "[ -~\t\n]{0,400}") {
        check_all_formats(input.as_bytes());
    }

    #[test]
    fn mutated_samples(pick in any::<usize>(), edits in prop::collection::vec(edit(), 1..6)) {
        let samples = samples();
        let line = apply(samples[pick % samples.len()].clone(), &edits);
        check_all_formats(&line);
    }
}

#[test]
fn huge_numbers_and_deep_nesting_do_not_panic() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let nested = format!(
        "{{\"request\":{}1{}}}",
        "{\"a\":".repeat(2000),
        "}".repeat(2000)
    );
    for input in [
        r#"{"started_at":1e308,"response":{"status":1e308},"latencies":{"request":-1e308}}"#.to_string(),
        r#"{"timestamp":"9999-12-31T23:59:59.999999999Z","status":200,"bytes_out":18446744073709551616}"#.to_string(),
        r#"1.2.3.4 - - [24/Nov/2026:10:00:00 +9999] "GET / HTTP/1.1" 200 99999999999999999999999 "-" "-""#.to_string(),
        r#"[9999-99-99T99:99:99Z] "GET / HTTP/1.1" 200 - 0 0 0 0 "-" "-" "-" "-" "-""#.to_string(),
        deep,
        nested,
    ] {
        check_all_formats(input.as_bytes());
    }
}
