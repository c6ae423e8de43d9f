//! Shared by the scoring tests: events from generic-JSON log lines, through the real parser
//! and normalizer.
#![allow(dead_code)]

use std::sync::Arc;
use vigil_ingest::event::EventBatchBuilder;
use vigil_ingest::formats::{FormatName, FormatOptions};
use vigil_ingest::normalize::{NormalizeConfig, Normalizer};
use vigil_ingest::pipeline::{IngestStats, LineChunk, LineSplitter, Parser};

/// The events of `text` (generic JSON lines), as one batch; every line must parse.
pub fn events_from_json_lines(text: &str) -> arrow::array::RecordBatch {
    let mut parser = Parser::new(
        "test",
        FormatName::Json,
        FormatOptions::default(),
        Normalizer::new(NormalizeConfig::default()).unwrap(),
        Arc::new(IngestStats::default()),
    )
    .unwrap();
    let mut chunk = LineChunk::new("test".into(), 1);
    let mut split = LineSplitter::new(0, 1 << 24);
    split.push(text.as_bytes(), &mut chunk);
    split.finish(&mut chunk);
    let mut builder = EventBatchBuilder::default();
    let mut dead = Vec::new();
    parser.parse_chunk(&chunk, &mut builder, &mut dead);
    assert!(dead.is_empty(), "{dead:?}");
    builder.finish()
}
