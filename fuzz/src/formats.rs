//! Log-format invariants: the record level (what a [`LogFormat`] emits) and the pipeline level
//! (what [`Parser::parse_chunk`] makes of the same lines).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{TimestampMicrosecondType, UInt16Type, UInt64Type};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use vigil_ingest::event::{EventBatchBuilder, col, write_ndjson};
use vigil_ingest::formats::auto::Auto;
use vigil_ingest::formats::{FormatName, FormatOptions, JsonMapping, LogFormat, parse_collect};
use vigil_ingest::normalize::{NormalizeConfig, Normalizer, split_target};
use vigil_ingest::pipeline::{IngestStats, LineChunk, LineSplitter, Parser};
use vigil_ingest::record::{AccessRecord, present};
use vigil_ingest::time::{parse_rfc3339, rfc3339_us};
use vigil_ingest::{ParseError, ParseErrorKind};

/// Longest line the pipeline keeps whole (`pipeline.max_line_bytes`); a longer one is one dead
/// letter.
const MAX_LINE: usize = 16 * 1024;

/// A format and the pipeline built on it, made once per process (formats compile their field
/// tables; the normalizer compiles the detectors).
struct Harness {
    format: Box<dyn LogFormat>,
    parser: Parser,
}

thread_local! {
    static HARNESSES: RefCell<HashMap<FormatName, Harness>> = RefCell::new(HashMap::new());
    static AUTO: Auto = Auto::new(&FormatOptions::default()).expect("auto builds by default");
}

fn normalizer() -> Normalizer {
    Normalizer::new(NormalizeConfig {
        trusted_proxies: vec!["10.0.0.0/8".into(), "::1".into()],
        ..Default::default()
    })
    .expect("the fuzz normalizer config is valid")
}

/// Builds `name` with `opts`; `None` when the options are refused (a configuration error is
/// not a parser bug).
fn harness(name: FormatName, opts: &FormatOptions) -> Option<Harness> {
    let format = name.build(opts).ok()?;
    let parser = Parser::new(
        "fuzz",
        name,
        opts.clone(),
        normalizer(),
        Arc::new(IngestStats::default()),
    )
    .expect("a format that builds makes a parser");
    Some(Harness { format, parser })
}

/// Runs every check on `data` as the log stream of format `name` with default options.
pub fn check_format(name: FormatName, data: &[u8]) {
    HARNESSES.with(|h| {
        let mut h = h.borrow_mut();
        let harness = h.entry(name).or_insert_with(|| {
            harness(name, &FormatOptions::default()).expect("default options build")
        });
        check_with(name, harness, data);
    });
}

/// The generic `json` format with a field mapping from the input: its first line, when that is
/// a JSON object that reads as a [`JsonMapping`], is the mapping and the rest is the log; any
/// other input is all log, read with the default table.
pub fn check_json_mapped(data: &[u8]) {
    let (fields, log) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => match serde_json::from_slice::<JsonMapping>(&data[..i]) {
            Ok(m) => (m, &data[i + 1..]),
            Err(_) => (JsonMapping::default(), data),
        },
        None => (JsonMapping::default(), data),
    };
    let opts = FormatOptions { fields };
    // A mapping the format refuses must be refused by the pipeline's parser too.
    let Some(mut harness) = harness(FormatName::Json, &opts) else {
        return;
    };
    check_with(FormatName::Json, &mut harness, log);
}

/// The `auto` format, plus: what auto makes of a line is what the format it detects makes of
/// it.
pub fn check_auto(data: &[u8]) {
    check_format(FormatName::Auto, data);
    AUTO.with(|auto| compare_auto(auto, data));
}

fn compare_auto(auto: &Auto, data: &[u8]) {
    for line in data.split(|b| *b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let got = parse_collect(auto, line);
        match auto.detect(line) {
            Some(detected) => HARNESSES.with(|h| {
                let mut h = h.borrow_mut();
                let own = h.entry(detected).or_insert_with(|| {
                    harness(detected, &FormatOptions::default()).expect("default options build")
                });
                let want = parse_collect(&*own.format, line);
                assert_eq!(
                    format!("{got:?}"),
                    format!("{want:?}"),
                    "auto and {detected} disagree on {line:?}"
                );
            }),
            None => {
                assert_eq!(got.len(), 1, "an undetected line is one error");
                assert!(
                    matches!(&got[0], Err(e) if e.kind == ParseErrorKind::UnrecognizedFormat),
                    "an undetected line is unrecognized: {got:?}"
                );
            }
        }
    }
}

/// What the pipeline should make of one line, from the format alone.
enum Expect<'a> {
    Blank,
    /// Too long or not UTF-8: one dead letter.
    Unreadable,
    Records(Vec<Result<AccessRecord<'a>, ParseError>>),
}

fn check_with(name: FormatName, harness: &mut Harness, data: &[u8]) {
    let mut chunk = LineChunk::new("fuzz".into(), 7);
    let mut splitter = LineSplitter::new(0, MAX_LINE);
    splitter.push(data, &mut chunk);
    splitter.finish(&mut chunk);

    // Record level, line by line, on exactly the bytes the pipeline will see.
    let mut expected = Vec::with_capacity(chunk.lines.len());
    for span in &chunk.lines {
        let raw = &chunk.data[span.start..span.end];
        // the pipeline's order: blank first (even when cut), then too long
        if raw.iter().all(u8::is_ascii_whitespace) {
            expected.push(Expect::Blank);
            continue;
        }
        if span.truncated {
            expected.push(Expect::Unreadable);
            continue;
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            expected.push(Expect::Unreadable);
            continue;
        };
        let records = parse_collect(&*harness.format, line);
        assert!(!records.is_empty(), "{name}: a line vanished: {line:?}");
        for rec in records.iter().flatten() {
            check_record(name, rec, line);
        }
        let again = parse_collect(&*harness.format, line);
        assert_eq!(records, again, "{name}: parsing is not deterministic");
        expected.push(Expect::Records(records));
    }

    // Pipeline level: the same lines through the parser, the normalizer and the Arrow builders.
    let mut builder = EventBatchBuilder::default();
    let mut dead = Vec::new();
    let out = harness.parser.parse_chunk(&chunk, &mut builder, &mut dead);
    let batch = builder.finish();

    let oks: Vec<&AccessRecord<'_>> = expected
        .iter()
        .filter_map(|e| match e {
            Expect::Records(r) => Some(r.iter().flatten()),
            _ => None,
        })
        .flatten()
        .collect();
    let errors = expected
        .iter()
        .map(|e| match e {
            Expect::Blank => 0,
            Expect::Unreadable => 1,
            Expect::Records(r) => r.iter().filter(|r| r.is_err()).count(),
        })
        .sum::<usize>();
    let lines = expected
        .iter()
        .filter(|e| !matches!(e, Expect::Blank))
        .count();
    assert_eq!(out.lines as usize, lines, "{name}: lines counted");
    assert_eq!(out.events as usize, oks.len(), "{name}: events counted");
    assert_eq!(batch.num_rows(), oks.len(), "{name}: one row per record");
    assert_eq!(out.dead_letters as usize, errors, "{name}: dead letters");
    assert_eq!(dead.len(), errors, "{name}: one dead letter per error");
    for d in &dead {
        assert!(!d.detail.is_empty() || !d.reason.is_empty(), "a reason");
    }
    check_rows(name, &batch, &oks);
}

/// The invariants of one accepted record.
fn check_record(name: FormatName, rec: &AccessRecord<'_>, line: &str) {
    assert!(
        rec.status <= 999,
        "{name}: status {} in {line:?}",
        rec.status
    );
    for (what, v) in [
        ("latency_ms", rec.latency_ms),
        ("upstream_latency_ms", rec.upstream_latency_ms),
    ] {
        if let Some(v) = v {
            assert!(
                v.is_finite() && v >= 0.0,
                "{name}: {what} {v} from {line:?}"
            );
        }
    }
    let json_table = matches!(
        name,
        FormatName::NginxJson
            | FormatName::EnvoyJson
            | FormatName::Kong
            | FormatName::AwsApigateway
            | FormatName::TraefikJson
            | FormatName::Json
    );
    for (what, v) in texts(rec) {
        let Some(v) = v else { continue };
        assert!(!v.is_empty(), "{name}: empty {what} from {line:?}");
        if json_table {
            // JSON tables drop placeholders and surrounding whitespace
            assert_eq!(present(v), Some(&**v), "{name}: {what} {v:?} kept as is");
        }
    }
    // Any timestamp in years 0000-9999 reads back from its RFC 3339 form.
    let text = rfc3339_us(rec.timestamp_us);
    if text.len() == 27 && text.as_bytes()[4] == b'-' {
        assert_eq!(
            parse_rfc3339(&text),
            Some(rec.timestamp_us),
            "{name}: timestamp {text} does not round-trip"
        );
    }
}

fn texts<'r>(rec: &'r AccessRecord<'_>) -> [(&'static str, &'r Option<Cow<'r, str>>); 21] {
    [
        ("request_id", &rec.request_id),
        ("peer", &rec.peer),
        ("forwarded_for", &rec.forwarded_for),
        ("identity", &rec.identity),
        ("session", &rec.session),
        ("api_key", &rec.api_key),
        ("api_key_id", &rec.api_key_id),
        ("jwt", &rec.jwt),
        ("cookie", &rec.cookie),
        ("method", &rec.method),
        ("host", &rec.host),
        ("target", &rec.target),
        ("query", &rec.query),
        ("protocol", &rec.protocol),
        ("user_agent", &rec.user_agent),
        ("referer", &rec.referer),
        ("tls_version", &rec.tls_version),
        ("upstream", &rec.upstream),
        ("enforced", &rec.enforced),
        ("tls_fingerprint", &rec.tls_fingerprint),
        ("http_fingerprint", &rec.http_fingerprint),
    ]
}

/// Each row holds its record's mandatory fields and the verbatim ones unchanged, and the batch
/// writes out as NDJSON that reads back.
fn check_rows(name: FormatName, batch: &RecordBatch, oks: &[&AccessRecord<'_>]) {
    let column = |c: &str| {
        batch
            .column_by_name(c)
            .unwrap_or_else(|| panic!("the events table has `{c}`"))
    };
    let ts = column(col::TIMESTAMP).as_primitive::<TimestampMicrosecondType>();
    let status = column(col::STATUS).as_primitive::<UInt16Type>();
    let bytes_out = column(col::BYTES_OUT).as_primitive::<UInt64Type>();
    let method = column(col::METHOD).as_string::<i32>();
    let path = column(col::PATH).as_string::<i32>();
    let ids = column(col::EVENT_ID).as_string::<i32>();
    let mut seen = std::collections::HashSet::new();
    for (i, rec) in oks.iter().enumerate() {
        assert_eq!(ts.value(i), rec.timestamp_us, "{name}: row {i} timestamp");
        assert_eq!(status.value(i), rec.status, "{name}: row {i} status");
        let got_bytes = bytes_out.is_valid(i).then(|| bytes_out.value(i));
        assert_eq!(got_bytes, rec.bytes_out, "{name}: row {i} bytes_out");
        let got_method = method.is_valid(i).then(|| method.value(i));
        assert_eq!(got_method, rec.method.as_deref(), "{name}: row {i} method");
        let want_path = rec.target.as_deref().map(|t| split_target(t).0);
        let got_path = path.is_valid(i).then(|| path.value(i));
        assert_eq!(got_path, want_path, "{name}: row {i} path");
        let id = ids.value(i);
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: event id {id:?}"
        );
        assert!(seen.insert(id.to_string()), "{name}: duplicate event id");
    }
    let mut out = Vec::new();
    write_ndjson(&mut out, batch).expect("a batch of events writes as NDJSON");
    let rows: Vec<serde_json::Value> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("NDJSON rows are JSON"))
        .collect();
    assert_eq!(rows.len(), oks.len(), "{name}: one NDJSON row per event");
    for (row, rec) in rows.iter().zip(oks) {
        assert_eq!(row[col::STATUS], rec.status, "{name}: NDJSON status");
    }
}
