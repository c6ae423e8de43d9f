//! `vigil run`: starts the configured sources and the HTTP API, and consumes event batches
//! until Ctrl-C / SIGTERM. Shutdown: readiness goes false, sources stop reading, parse stages
//! flush their partial batches, the consumer acknowledges them (so Kafka offsets and file
//! checkpoints are committed), then the process exits.

use crate::config::{Config, DeadLetterType};
use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vigil_enforce::feed::sse::{BroadcastOptions, DecisionBroadcast, StreamOptions};
use vigil_ingest::dead_letter::DeadLetterSink;
use vigil_ingest::pipeline::{EventBatch, IngestStats};
use vigil_ingest::source::SourceContext;
use vigil_ingest::source::http::IngestRoutes;

/// Access events the in-process proxy may queue before it drops (and counts) them.
const PROXY_EVENT_QUEUE: usize = 65_536;

/// Shared state of the engine's HTTP API.
pub struct Engine {
    ready: AtomicBool,
    /// Decisions issued, by action (index = `Action as usize`).
    decisions_by_action: [AtomicU64; 5],
    /// The in-process proxy's readiness, when `[proxy]` is configured.
    proxy_ready: Option<vigil_enforce::Readiness>,
    /// The in-process proxy's metric families.
    proxy_metrics: Option<Arc<dyn vigil_enforce::RenderMetrics>>,
    /// The decision stream's state (`/v1/decisions/stream`).
    feed: DecisionBroadcast,
    sources: Vec<(String, &'static str, Arc<IngestStats>)>,
    batches: AtomicU64,
}

const ACTIONS: [vigil_enforce::Action; 5] = [
    vigil_enforce::Action::Allow,
    vigil_enforce::Action::Monitor,
    vigil_enforce::Action::StepUp,
    vigil_enforce::Action::Throttle,
    vigil_enforce::Action::Block,
];

impl Engine {
    fn count_decision(&self, a: vigil_enforce::Action) {
        if let Some(i) = ACTIONS.iter().position(|x| *x == a) {
            self.decisions_by_action[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Publishes decisions to the compacted decisions topic: key `kind:id`, value the decision
/// record (schema version 1), awaited until the broker has them.
struct DecisionPublisher {
    producer: rdkafka::producer::FutureProducer,
    topic: String,
}

impl DecisionPublisher {
    fn new(settings: &[(String, String)], topic: &str) -> Result<Self> {
        let mut cc = rdkafka::ClientConfig::new();
        for (k, v) in settings {
            cc.set(k, v);
        }
        cc.set("enable.idempotence", "true");
        Ok(Self {
            producer: cc
                .create()
                .context("cannot create the decisions producer")?,
            topic: topic.to_string(),
        })
    }

    async fn publish(&self, decisions: &[vigil_enforce::Decision]) -> Result<()> {
        let mut pending = Vec::with_capacity(decisions.len());
        for d in decisions {
            let key = d.subject.key();
            let value = d.to_json();
            let record = rdkafka::producer::FutureRecord::to(&self.topic)
                .key(&key)
                .payload(&value);
            let fut = self
                .producer
                .send_result(record)
                .map_err(|(e, _)| anyhow::anyhow!("publish decision to {}: {e}", self.topic))?;
            pending.push(fut);
        }
        for fut in pending {
            match fut.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => anyhow::bail!("publish decision to {}: {e}", self.topic),
                Err(_) => anyhow::bail!("decisions producer closed"),
            }
        }
        Ok(())
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(e): State<Arc<Engine>>) -> impl IntoResponse {
    let proxy_ready = e.proxy_ready.as_ref().is_none_or(|r| r.is_ready());
    if e.ready.load(Ordering::Relaxed) && proxy_ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Prometheus text. Labels are source names and reason kinds: both bounded by config and code.
async fn metrics(State(e): State<Arc<Engine>>) -> impl IntoResponse {
    let mut s = String::new();
    type Read = fn(&IngestStats) -> u64;
    let families: [(&str, &str, Read); 3] = [
        ("vigil_ingest_lines_total", "Lines read by a source.", |s| {
            s.lines.load(Ordering::Relaxed)
        }),
        (
            "vigil_ingest_events_total",
            "Events parsed by a source.",
            |s| s.events.load(Ordering::Relaxed),
        ),
        (
            "vigil_ingest_dead_letters_total",
            "Lines dead-lettered by a source.",
            |s| s.dead_letters.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, get) in families {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
        for (src, kind, st) in &e.sources {
            let _ = writeln!(s, "{name}{{source=\"{src}\",type=\"{kind}\"}} {}", get(st));
        }
    }
    let _ = writeln!(
        s,
        "# HELP vigil_ingest_dead_letters_by_reason_total Dead letters by reason.\n# TYPE vigil_ingest_dead_letters_by_reason_total counter"
    );
    for (src, _, st) in &e.sources {
        for (reason, n) in st.reason_counts() {
            let _ = writeln!(
                s,
                "vigil_ingest_dead_letters_by_reason_total{{source=\"{src}\",reason=\"{reason}\"}} {n}"
            );
        }
    }
    let _ = writeln!(
        s,
        "# HELP vigil_decisions_total Decisions issued by scoring, by action.\n# TYPE vigil_decisions_total counter"
    );
    for (a, n) in ACTIONS.iter().zip(&e.decisions_by_action) {
        let _ = writeln!(
            s,
            "vigil_decisions_total{{action=\"{}\"}} {}",
            a.as_str(),
            n.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        s,
        "# HELP vigil_pipeline_batches_total Event batches handled.\n# TYPE vigil_pipeline_batches_total counter\nvigil_pipeline_batches_total {}",
        e.batches.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP vigil_ready Whether the engine is ready.\n# TYPE vigil_ready gauge\nvigil_ready {}",
        u8::from(e.ready.load(Ordering::Relaxed))
    );
    let _ = writeln!(
        s,
        "# HELP vigil_decisions_stream_seq Sequence number of the last change on the decision stream.\n# TYPE vigil_decisions_stream_seq counter\nvigil_decisions_stream_seq {}",
        e.feed.seq()
    );
    if let Some(m) = &e.proxy_metrics {
        m.render_metrics(&mut s);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s)
}

pub async fn run(cfg: Config, events_out: Option<PathBuf>) -> Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data_dir {}", cfg.data_dir.display()))?;
    let shutdown = CancellationToken::new();
    let kafka = cfg.kafka.as_ref().map(|k| k.settings()).unwrap_or_default();
    let dead_letters = Arc::new(match cfg.dead_letters.kind {
        DeadLetterType::File => DeadLetterSink::file(&cfg.dead_letters.file_path(&cfg.data_dir))?,
        DeadLetterType::Kafka => DeadLetterSink::kafka(&kafka, &cfg.dead_letters.topic)?,
    });
    let (out_tx, mut out_rx) = mpsc::channel::<EventBatch>(4);
    let mut tasks: JoinSet<Result<(), vigil_ingest::IngestError>> = JoinSet::new();
    let mut routes = IngestRoutes::default();
    let mut sources = Vec::new();
    for (name, src) in &cfg.sources {
        let stats = Arc::new(IngestStats::default());
        let ctx = SourceContext {
            name: name.clone(),
            data_dir: cfg.data_dir.clone(),
            pipeline: cfg.pipeline.clone(),
            normalize: cfg.normalize.clone(),
            kafka: kafka.clone(),
            dead_letters: dead_letters.clone(),
            out: out_tx.clone(),
            stats: stats.clone(),
            shutdown: shutdown.clone(),
        };
        let running = src.build(ctx, &mut tasks)?;
        if let Some(h) = running.http {
            routes.add(h.with_default_format(src.format));
        }
        sources.push((name.clone(), src.kind.type_name(), stats));
        tracing::info!(source = %name, r#type = src.kind.type_name(), format = %src.format, "source started");
    }
    // The decision table the in-process proxy enforces. Scoring changes it only through the
    // broadcast, which numbers each change for the followers of `/v1/decisions/stream`.
    let decisions = Arc::new(vigil_enforce::DecisionTable::new());
    let feed = DecisionBroadcast::new(decisions.clone(), BroadcastOptions::default());
    let proxy = match &cfg.proxy {
        Some(p) => {
            // the proxy's own access events are scored like any gateway's
            let (sink, events) = vigil_enforce::events::event_channel(PROXY_EVENT_QUEUE);
            let running =
                crate::proxy::start(p, decisions.clone(), &kafka, Some(sink), shutdown.clone())
                    .await?;
            let stats = Arc::new(IngestStats::default());
            tokio::spawn(crate::proxy_events::forward(
                events,
                out_tx.clone(),
                running.addr.to_string(),
                stats.clone(),
                shutdown.clone(),
            ));
            sources.push(("proxy".to_string(), "proxy", stats));
            Some(running)
        }
        None => None,
    };
    drop(out_tx);
    let engine = Arc::new(Engine {
        ready: AtomicBool::new(true),
        decisions_by_action: Default::default(),
        proxy_ready: proxy.as_ref().map(|p| p.readiness.clone()),
        proxy_metrics: proxy.as_ref().map(|p| p.metrics.clone()),
        feed: feed.clone(),
        sources,
        batches: AtomicU64::new(0),
    });
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(engine.clone())
        .merge(vigil_enforce::feed::sse::router(
            feed.clone(),
            StreamOptions::default(),
            shutdown.clone(),
        ));
    if !routes.is_empty() {
        app = app.merge(routes.router());
    }
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {} (server.listen)", cfg.server.listen))?;
    tracing::info!(listen = %cfg.server.listen, dead_letters = %dead_letters.describe(), "vigil running");
    let server_stop = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { server_stop.cancelled().await })
            .await
    });

    // The consumer of event batches. Later stages (scoring, store) plug in here; for now it
    // counts, optionally writes NDJSON, and acknowledges.
    let mut writer = match events_out {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(&p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let consumer_engine = engine.clone();
    let mut scorer = vigil_scoring::Scorer::new(&cfg.scoring)?;
    let publisher = match &cfg.kafka {
        Some(k) => Some(DecisionPublisher::new(&k.settings(), &k.decisions_topic)?),
        None => None,
    };
    let consumer = tokio::spawn(async move {
        while let Some(batch) = out_rx.recv().await {
            if let Some(w) = writer.as_mut() {
                vigil_ingest::event::write_ndjson(&mut *w, &batch.events)?;
                w.flush()?;
            }
            // Scoring is CPU work on this task's thread; the runtime moves other tasks away.
            let out = tokio::task::block_in_place(|| scorer.score_batch(&batch.events))?;
            for d in &out.decisions {
                consumer_engine.count_decision(d.action);
                if let Err(error) = feed.publish(d.clone()) {
                    tracing::warn!(%error, subject = %d.subject.key(), "decision not applied");
                }
            }
            // Decisions are published before the batch is acknowledged, so a committed offset
            // means its decisions reached the feed.
            if let Some(p) = &publisher {
                p.publish(&out.decisions).await?;
            }
            consumer_engine.batches.fetch_add(1, Ordering::Relaxed);
            batch.ack();
        }
        anyhow::Ok(())
    });

    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            Some(done) = tasks.join_next() => match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "a source failed; shutting down");
                    engine.ready.store(false, Ordering::Relaxed);
                    shutdown.cancel();
                    drain(&mut tasks, &cfg).await;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            },
        }
    }
    tracing::info!("shutting down");
    engine.ready.store(false, Ordering::Relaxed);
    shutdown.cancel();
    drain(&mut tasks, &cfg).await;
    let _ = server.await;
    if let Some(mut p) = proxy {
        while p.tasks.join_next().await.is_some() {}
    }
    consumer.await??;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for the source and parse tasks to finish their last batches, up to the deadline.
async fn drain(tasks: &mut JoinSet<Result<(), vigil_ingest::IngestError>>, cfg: &Config) {
    let deadline = Duration::from_millis(cfg.server.shutdown_timeout_ms);
    let all = async {
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "task ended with an error during shutdown");
            }
        }
    };
    if tokio::time::timeout(deadline, all).await.is_err() {
        tracing::warn!("shutdown deadline passed; abandoning unfinished tasks");
        tasks.abort_all();
    }
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
