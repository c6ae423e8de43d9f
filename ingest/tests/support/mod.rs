//! Shared fixtures for ingest's integration tests: run one source in-process and collect what
//! comes out of it (events as NDJSON rows, dead letters), acknowledging every batch.
#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vigil_ingest::IngestError;
use vigil_ingest::dead_letter::{DeadLetter, DeadLetterSink};
use vigil_ingest::normalize::NormalizeConfig;
use vigil_ingest::pipeline::{IngestStats, PipelineConfig};
use vigil_ingest::source::{RunningSource, SourceConfig, SourceContext};

pub struct Harness {
    pub source: RunningSource,
    pub stats: Arc<IngestStats>,
    pub dead: Arc<DeadLetterSink>,
    /// Events seen so far, as JSON objects.
    pub events: Arc<Mutex<Vec<serde_json::Value>>>,
    pub shutdown: CancellationToken,
    tasks: JoinSet<Result<(), IngestError>>,
    consumer: tokio::task::JoinHandle<()>,
}

impl Harness {
    pub fn start(name: &str, cfg: &SourceConfig, data_dir: &Path) -> Harness {
        Self::start_with(
            name,
            cfg,
            data_dir,
            PipelineConfig {
                batch_max_delay_ms: 20,
                ..Default::default()
            },
        )
    }

    pub fn start_with(
        name: &str,
        cfg: &SourceConfig,
        data_dir: &Path,
        pipeline: PipelineConfig,
    ) -> Harness {
        let (tx, mut rx) = mpsc::channel(4);
        let stats = Arc::new(IngestStats::default());
        let dead = Arc::new(DeadLetterSink::memory());
        let shutdown = CancellationToken::new();
        let ctx = SourceContext {
            name: name.to_string(),
            data_dir: data_dir.to_path_buf(),
            pipeline,
            normalize: NormalizeConfig::default(),
            kafka: Vec::new(),
            dead_letters: dead.clone(),
            out: tx,
            stats: stats.clone(),
            shutdown: shutdown.clone(),
        };
        let mut tasks = JoinSet::new();
        let source = cfg.build(ctx, &mut tasks).expect("source builds");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let consumer = tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                let mut buf = Vec::new();
                vigil_ingest::event::write_ndjson(&mut buf, &batch.events).unwrap();
                let rows: Vec<serde_json::Value> = buf
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| serde_json::from_slice(l).unwrap())
                    .collect();
                sink.lock().unwrap().extend(rows);
                batch.ack();
            }
        });
        Harness {
            source,
            stats,
            dead,
            events,
            shutdown,
            tasks,
            consumer,
        }
    }

    pub fn event_count(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// Waits until `f` holds, up to `secs`.
    pub async fn wait_for(&self, secs: u64, what: &str, f: impl Fn(&Harness) -> bool) {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}: {} events, {} dead letters",
                self.event_count(),
                self.stats
                    .dead_letters
                    .load(std::sync::atomic::Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead.take_memory()
    }

    /// Stops the source, waits for its last batches, and returns the events seen.
    pub async fn stop(mut self) -> Vec<serde_json::Value> {
        self.shutdown.cancel();
        while let Some(r) = self.tasks.join_next().await {
            r.expect("task did not panic").expect("task ended cleanly");
        }
        drop(self.source);
        self.consumer.await.unwrap();
        Arc::try_unwrap(self.events).unwrap().into_inner().unwrap()
    }
}
