//! Dead letters: every line that did not become an event, with its reason and position, so a
//! user can see exactly what was not understood and replay it once the cause is fixed.
//!
//! A dead letter is written (and, for a file, flushed) before the batch holding its line is
//! acknowledged, so a crash never loses one: at worst it is written twice.

use crate::error::{IngestError, ParseErrorKind};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The longest part of a bad line kept in its dead letter.
pub const MAX_RAW_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// When vigil read the line (RFC 3339, UTC).
    pub received_at: String,
    pub gateway: String,
    pub format: String,
    /// Where the line is: `file:/var/log/nginx/access.log:1234`, `kafka:logs/0:77`, ...
    pub origin: String,
    /// The reason's kind (`bad_status`, `invalid_json`, ...; see `ParseErrorKind`).
    pub reason: &'static str,
    /// What exactly was wrong.
    pub detail: String,
    /// The line (invalid UTF-8 replaced by U+FFFD), cut at [`MAX_RAW_BYTES`].
    pub line: String,
    pub line_truncated: bool,
    #[serde(skip)]
    pub kind: ParseErrorKind,
}

/// Where dead letters go.
pub enum DeadLetterSink {
    /// Appended as NDJSON to a file (the data directory's `dead-letters.ndjson` by default).
    File {
        path: PathBuf,
        file: Mutex<std::io::BufWriter<std::fs::File>>,
    },
    /// Produced to a Kafka topic, keyed by gateway, and awaited.
    Kafka {
        producer: FutureProducer,
        topic: String,
    },
    /// Kept in memory (tests, and `replay` when the caller collects them).
    Memory(Mutex<Vec<DeadLetter>>),
}

impl DeadLetterSink {
    pub fn file(path: &Path) -> Result<Self, IngestError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| IngestError::io(dir.display().to_string(), e))?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| IngestError::io(path.display().to_string(), e))?;
        Ok(Self::File {
            path: path.to_owned(),
            file: Mutex::new(std::io::BufWriter::new(f)),
        })
    }

    pub fn memory() -> Self {
        Self::Memory(Mutex::new(Vec::new()))
    }

    /// Writes `letters` durably (file: written and flushed; Kafka: delivered).
    pub async fn write(&self, letters: &[DeadLetter]) -> Result<(), IngestError> {
        if letters.is_empty() {
            return Ok(());
        }
        match self {
            Self::Kafka { producer, topic } => {
                let what = || format!("produce dead letter to {topic}");
                let mut pending = Vec::with_capacity(letters.len());
                for l in letters {
                    let value = serde_json::to_string(l).unwrap_or_default();
                    let record = FutureRecord::to(topic)
                        .key(l.gateway.as_str())
                        .payload(value.as_str());
                    let fut = producer
                        .send_result(record)
                        .map_err(|(e, _)| IngestError::kafka(what(), e))?;
                    pending.push(fut);
                }
                for fut in pending {
                    match fut.await {
                        Ok(Ok(_)) => {}
                        Ok(Err((e, _))) => return Err(IngestError::kafka(what(), e)),
                        Err(_) => return Err(IngestError::Closed),
                    }
                }
                Ok(())
            }
            Self::File { .. } | Self::Memory(_) => self.write_blocking(letters),
        }
    }

    /// The dead letters kept by a `Memory` sink.
    pub fn take_memory(&self) -> Vec<DeadLetter> {
        match self {
            Self::Memory(v) => std::mem::take(&mut *v.lock().unwrap_or_else(|p| p.into_inner())),
            _ => Vec::new(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::File { path, .. } => format!("file {}", path.display()),
            Self::Kafka { topic, .. } => format!("kafka topic {topic}"),
            Self::Memory(_) => "memory".into(),
        }
    }
}

impl DeadLetterSink {
    /// A sink producing to `topic` with the given librdkafka settings.
    pub fn kafka(settings: &[(String, String)], topic: &str) -> Result<Self, IngestError> {
        let mut cc = rdkafka::config::ClientConfig::new();
        for (k, v) in settings {
            cc.set(k, v);
        }
        cc.set("enable.idempotence", "true");
        let producer: FutureProducer = cc
            .create()
            .map_err(|e| IngestError::kafka("create dead-letter producer", e))?;
        Ok(Self::Kafka {
            producer,
            topic: topic.to_string(),
        })
    }

    /// Writes `letters` from synchronous code (offline replay): `File` and `Memory` sinks.
    pub fn write_blocking(&self, letters: &[DeadLetter]) -> Result<(), IngestError> {
        match self {
            Self::File { path, file } => {
                let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
                let io = |e| IngestError::io(path.display().to_string(), e);
                for l in letters {
                    serde_json::to_writer(&mut *f, l).map_err(|e| io(e.into()))?;
                    f.write_all(b"\n").map_err(io)?;
                }
                f.flush().map_err(io)
            }
            Self::Memory(v) => {
                v.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(letters);
                Ok(())
            }
            Self::Kafka { .. } => Err(IngestError::config(
                "dead_letters.type",
                "a kafka dead-letter sink cannot be written from synchronous code",
            )),
        }
    }
}
