//! Sources: where lines come from. Each is a config struct with a `build` step that validates
//! it and a task that reads until shutdown, handing [`LineChunk`]s to its parse stage.
//!
//! | type    | position of a line            | committed when a batch is acked      |
//! |---------|-------------------------------|--------------------------------------|
//! | `kafka` | topic/partition/offset        | the consumer group's offsets          |
//! | `file`  | byte offset in the file       | a checkpoint file in the data dir     |
//! | `http`  | line offset in the request    | the HTTP response (200 after ack)     |
//! | `stdin` | byte offset in the stream     | nothing (stdin cannot be re-read)     |

pub mod file;
pub mod http;
pub mod kafka;
pub mod stdin;

use crate::dead_letter::DeadLetterSink;
use crate::error::IngestError;
use crate::formats::{FormatName, FormatOptions};
use crate::normalize::{NormalizeConfig, Normalizer};
use crate::pipeline::{
    EventBatch, IngestStats, LineChunk, Parser, PipelineConfig, run_parse_stage,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// `[sources.NAME]` in the config: the source's kind under `type`, its format and fields.
// No `deny_unknown_fields` here: serde does not support it with `flatten`. Unknown keys are
// still rejected, by the `type`'s own struct, which receives every key not taken here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceConfig {
    /// Log format of the source's lines (`nginx`, `envoy-json`, `auto`, ...). Default `auto`.
    #[serde(default = "default_format")]
    pub format: FormatName,
    /// Field paths for JSON formats: `[sources.NAME.fields] identity = ["jwt.sub"]`.
    #[serde(default)]
    pub fields: crate::formats::JsonMapping,
    #[serde(flatten)]
    pub kind: SourceKind,
}

fn default_format() -> FormatName {
    FormatName::Auto
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceKind {
    Kafka(kafka::KafkaSourceConfig),
    File(file::FileSourceConfig),
    Http(http::HttpSourceConfig),
    Stdin(stdin::StdinSourceConfig),
}

impl SourceKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Kafka(_) => "kafka",
            Self::File(_) => "file",
            Self::Http(_) => "http",
            Self::Stdin(_) => "stdin",
        }
    }
}

/// What every source is given when it is built.
#[derive(Clone)]
pub struct SourceContext {
    pub name: String,
    pub data_dir: PathBuf,
    pub pipeline: PipelineConfig,
    pub normalize: NormalizeConfig,
    /// librdkafka settings shared by Kafka sources and sinks (`bootstrap.servers`, ...).
    pub kafka: Vec<(String, String)>,
    pub dead_letters: Arc<DeadLetterSink>,
    pub out: mpsc::Sender<EventBatch>,
    pub stats: Arc<IngestStats>,
    pub shutdown: CancellationToken,
}

impl SourceContext {
    fn key(&self, field: &str) -> String {
        format!("sources.{}.{field}", self.name)
    }

    /// Builds this source's parser and spawns its parse stage; returns the chunk sender.
    fn spawn_parse_stage(
        &self,
        cfg: &SourceConfig,
        tasks: &mut JoinSet<Result<(), IngestError>>,
    ) -> Result<mpsc::Sender<LineChunk>, IngestError> {
        let opts = FormatOptions {
            fields: cfg.fields.clone(),
        };
        let parser = Parser::new(
            &self.name,
            cfg.format,
            opts,
            Normalizer::new(self.normalize.clone())?,
            self.stats.clone(),
        )
        .map_err(|e| match e {
            IngestError::Config { key, message } => IngestError::config(self.key(&key), message),
            other => other,
        })?;
        let (tx, rx) = mpsc::channel(self.pipeline.queue_chunks);
        tasks.spawn(run_parse_stage(
            parser,
            self.pipeline.clone(),
            rx,
            self.out.clone(),
            self.dead_letters.clone(),
            self.shutdown.clone(),
        ));
        Ok(tx)
    }
}

/// A built source: its tasks, and for HTTP the handle the API server mounts.
pub struct RunningSource {
    pub name: String,
    pub http: Option<http::HttpIngest>,
}

impl SourceConfig {
    /// Validates the config and starts the source's tasks in `tasks` (they stop on shutdown).
    pub fn build(
        &self,
        ctx: SourceContext,
        tasks: &mut JoinSet<Result<(), IngestError>>,
    ) -> Result<RunningSource, IngestError> {
        let chunks = ctx.spawn_parse_stage(self, tasks)?;
        let mut running = RunningSource {
            name: ctx.name.clone(),
            http: None,
        };
        match &self.kind {
            SourceKind::Kafka(k) => k.build(&ctx, chunks, tasks)?,
            SourceKind::File(f) => f.build(&ctx, chunks, tasks)?,
            SourceKind::Http(h) => running.http = Some(h.build(&ctx, chunks)?),
            SourceKind::Stdin(s) => s.build(&ctx, chunks, tasks)?,
        }
        Ok(running)
    }
}

/// Seed for a stream whose identity is its content: a hash of its first line, so that the
/// same file read twice (or piped through stdin) yields the same event ids.
pub fn content_seed(gateway: &str, first_line: &[u8]) -> u64 {
    crate::event::stream_seed(gateway, first_line)
}
