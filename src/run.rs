//! `vigil run`: opens the store, starts the configured sources, the proxy and the HTTP API, and
//! consumes event batches until Ctrl-C / SIGTERM. Shutdown: readiness goes false, the store
//! writes each batch as it arrives, sources stop reading, parse stages flush their partial
//! batches, the consumer scores and stores them, the store's writes acknowledge them (so Kafka
//! offsets and file checkpoints are committed), then the process exits.

use crate::api::Api;
use crate::api::auth::Tokens;
use crate::api::sql::SqlService;
use crate::config::{Config, DeadLetterType, ScaleRole};
use crate::decisions::{ACTIONS, DecisionPublisher, DecisionSink};
use crate::scale::{EventPublisher, ScaleStats, Scoring};
use crate::telemetry::Telemetry;
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
use std::sync::Mutex;
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
use vigil_ingest::store::{Store, TableSpec};

/// Access events the in-process proxy may queue before it drops (and counts) them.
const PROXY_EVENT_QUEUE: usize = 65_536;

/// Shared state of the engine's health and metrics endpoints.
pub struct Engine {
    ready: AtomicBool,
    /// The in-process proxy's readiness, when `[proxy]` is configured.
    proxy_ready: Option<vigil_enforce::Readiness>,
    /// The in-process proxy's metric families.
    proxy_metrics: Option<Arc<dyn vigil_enforce::RenderMetrics>>,
    decisions: Arc<DecisionSink>,
    store: Option<Arc<Store>>,
    api: Arc<Api>,
    /// The OTLP exporter, when `[telemetry] otlp_endpoint` is set.
    telemetry: Option<Arc<Telemetry>>,
    /// The downloaders of `url` reputation lists, for their metrics.
    reputation_feeds: vigil_scoring::reputation::Feeds,
    sources: Vec<(String, &'static str, Arc<IngestStats>)>,
    batches: AtomicU64,
    /// The scale-out role's counters (`[scale] role` other than `all`).
    scale: Option<(ScaleRole, Arc<ScaleStats>)>,
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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(&e),
    )
}

/// Prometheus text of every family (also what the OTLP exporter sends).
fn render_metrics(e: &Engine) -> String {
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
        "# HELP vigil_decisions_total Decisions issued (by scoring or by hand), by action.\n# TYPE vigil_decisions_total counter"
    );
    for a in ACTIONS {
        let _ = writeln!(
            s,
            "vigil_decisions_total{{action=\"{}\"}} {}",
            a.as_str(),
            e.decisions.issued(a)
        );
    }
    if let Some((role, st)) = &e.scale {
        let role = role.as_str();
        for (name, help, v) in [
            (
                "vigil_scale_events_published_total",
                "Records produced to the events topic (parse role), one per subject of an event.",
                &st.published,
            ),
            (
                "vigil_scale_events_consumed_total",
                "Records consumed from the events topic (score role), replayed ones included.",
                &st.consumed,
            ),
            (
                "vigil_scale_events_replayed_total",
                "Records read again to rebuild subject state after taking over a partition.",
                &st.replayed,
            ),
            (
                "vigil_scale_takeovers_total",
                "Partitions of the events topic this instance took over.",
                &st.takeovers,
            ),
            (
                "vigil_scale_decisions_read_back_total",
                "Published decisions read back from the decisions topic on takeovers.",
                &st.decisions_read_back,
            ),
            (
                "vigil_scale_incremental_assignments_total",
                "Partition assignments received through the cooperative rebalance protocol.",
                &st.incremental_assignments,
            ),
            (
                "vigil_scale_bad_records_total",
                "Records of the events topic that were not an event (dead-lettered).",
                &st.bad_records,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{role=\"{role}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        s,
        "# HELP vigil_decisions_revoked_total Decisions revoked by hand.\n# TYPE vigil_decisions_revoked_total counter\nvigil_decisions_revoked_total {}",
        e.decisions.revoked.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP vigil_sql_queries_total SQL queries answered, by outcome.\n# TYPE vigil_sql_queries_total counter\nvigil_sql_queries_total{{outcome=\"ok\"}} {}\nvigil_sql_queries_total{{outcome=\"error\"}} {}",
        e.api.sql.ok.load(Ordering::Relaxed),
        e.api.sql.failed.load(Ordering::Relaxed)
    );
    if let Some(store) = &e.store {
        render_store_metrics(&mut s, store);
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
        e.decisions.feed.seq()
    );
    if let Some(m) = &e.proxy_metrics {
        m.render_metrics(&mut s);
    }
    e.reputation_feeds.render_metrics(&mut s);
    if let Some(t) = &e.telemetry {
        t.render(&mut s);
    }
    s
}

pub async fn run(cfg: Config, events_out: Option<PathBuf>) -> Result<()> {
    run_until(cfg, events_out, shutdown_signal()).await
}

/// [`run`] until `stop` completes (instead of Ctrl-C / SIGTERM): `vigil demo` and tests.
pub async fn run_until(
    cfg: Config,
    events_out: Option<PathBuf>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data_dir {}", cfg.data_dir.display()))?;
    let shutdown = CancellationToken::new();
    let kafka = cfg.kafka.as_ref().map(|k| k.settings()).unwrap_or_default();
    let dead_letters = Arc::new(match cfg.dead_letters.kind {
        DeadLetterType::File => DeadLetterSink::file(&cfg.dead_letters.file_path(&cfg.data_dir))?,
        DeadLetterType::Kafka => DeadLetterSink::kafka(&kafka, &cfg.dead_letters.topic)?,
    });
    // The API's address first: a port in use stops the start before anything runs.
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {} (server.listen)", cfg.server.listen))?;
    // Then the store: sources acknowledge only what it has written. The `parse` role keeps
    // none: its events are stored by the `score` role.
    let role = cfg.scale.role;
    let store = if cfg.store.enabled && role != ScaleRole::Parse {
        let store = Store::open(cfg.store.store_config(&cfg.data_dir), table_specs())
            .context("cannot open the store (store.dir)")?;
        Some(store)
    } else {
        None
    };
    let store_stop = CancellationToken::new();
    // whatever way this function returns, the maintenance thread flushes and ends
    let _store_stop_on_return = store_stop.clone().drop_guard();
    let maintenance = store
        .as_ref()
        .map(|s| s.spawn_maintenance(Duration::from_millis(200), store_stop.clone()));
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
    let telemetry = Telemetry::new(&cfg.telemetry).map(Arc::new);
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
                telemetry.clone(),
                shutdown.clone(),
            ));
            sources.push(("proxy".to_string(), "proxy", stats));
            Some(running)
        }
        None => None,
    };
    drop(out_tx);

    let scale_stats = Arc::new(ScaleStats::default());
    let events_publisher = match (role, &cfg.kafka) {
        (ScaleRole::Parse, Some(k)) => Some(EventPublisher::new(
            &k.settings(),
            &cfg.scale.events_topic,
            scale_stats.clone(),
        )?),
        _ => None,
    };
    let publisher = match &cfg.kafka {
        Some(k) => Some(DecisionPublisher::new(&k.settings(), &k.decisions_topic)?),
        None => None,
    };
    let sink = Arc::new(DecisionSink::new(feed.clone(), publisher, store.clone()));
    let scorer = vigil_scoring::Scorer::new(&cfg.scoring)?;
    // `url` reputation lists: downloaded now and every `refresh_secs`, until shutdown; the
    // tasks end with this function at the latest (a JoinSet aborts them when dropped)
    let reputation_feeds = scorer.reputation_feeds();
    let mut feed_tasks = JoinSet::new();
    for feed in reputation_feeds.iter() {
        let stop = shutdown.clone();
        feed_tasks.spawn(feed.clone().run(async move { stop.cancelled().await }));
    }
    let scorer = Arc::new(Mutex::new(scorer));
    let api = Arc::new(Api {
        store: store.clone(),
        scorer: scorer.clone(),
        scoring: cfg.scoring.clone(),
        decisions: sink.clone(),
        sql: {
            let mut sql = SqlService::new(store.clone(), &cfg.api);
            let catalogue = {
                let s = scorer.lock().unwrap_or_else(|p| p.into_inner());
                let names = vigil_scoring::features::feature_names(s.store().windows());
                vec![
                    (
                        "rules",
                        vigil_scoring::pillar::rules_table(&s.rules().current()),
                    ),
                    ("features", vigil_scoring::pillar::features_table(&names)),
                ]
            };
            sql.register_catalogue(catalogue).await;
            sql
        },
    });
    let tokens = Arc::new(Tokens::new(cfg.api.resolve_tokens()?));
    if tokens.is_empty() {
        let loopback = cfg
            .server
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        if loopback {
            tracing::info!("no [api] tokens configured: the API is open on loopback");
        } else {
            tracing::warn!(listen = %cfg.server.listen, "no [api] tokens configured: the API is open to anyone who reaches server.listen");
        }
    }
    let engine = Arc::new(Engine {
        ready: AtomicBool::new(true),
        proxy_ready: proxy.as_ref().map(|p| p.readiness.clone()),
        proxy_metrics: proxy.as_ref().map(|p| p.metrics.clone()),
        decisions: sink.clone(),
        store: store.clone(),
        api: api.clone(),
        telemetry: telemetry.clone(),
        reputation_feeds,
        sources,
        batches: AtomicU64::new(0),
        scale: (role != ScaleRole::All).then(|| (role, scale_stats.clone())),
    });
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(engine.clone())
        .merge(crate::api::router(api.clone()))
        .merge(crate::dashboard::router())
        .merge(vigil_enforce::feed::sse::router(
            feed.clone(),
            StreamOptions::default(),
            shutdown.clone(),
        ));
    if !routes.is_empty() {
        app = app.merge(routes.router());
    }
    let app = app.layer(axum::middleware::from_fn_with_state(
        tokens,
        crate::api::auth::check,
    ));
    tracing::info!(listen = %cfg.server.listen, dead_letters = %dead_letters.describe(), "vigil running");
    let server_stop = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { server_stop.cancelled().await })
            .await
    });

    // The consumer of event batches: scoring, decisions, the store. A batch's sources are
    // acknowledged once its events are in Parquet (or at once without a store), so a
    // committed Kafka offset means its events are stored and its decisions published.
    let mut writer = match events_out {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(&p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let consumer_engine = engine.clone();
    let consumer_store = store.clone();
    let consumer_telemetry = telemetry.clone();
    let consumer = if role == ScaleRole::Score {
        // no sources here: the events come from the `parse` role through the events topic
        drop(out_rx);
        let parts = Scoring {
            scorer,
            sink,
            store: store.clone(),
            dead_letters: dead_letters.clone(),
            stats: scale_stats.clone(),
        };
        let cfg = cfg.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            crate::scale::score(&cfg, parts, stop.clone()).await?;
            // scoring ends only with the engine: wait for the others to stop
            stop.cancelled().await;
            anyhow::Ok(())
        })
    } else {
        // no sources and no proxy: the engine serves its store and API until stopped
        let idle = cfg.sources.is_empty() && cfg.proxy.is_none();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            while let Some(batch) = out_rx.recv().await {
                if let Some(p) = &events_publisher {
                    // the `parse` role: acknowledged once the broker has every record
                    p.publish(&batch.events).await?;
                    consumer_engine.batches.fetch_add(1, Ordering::Relaxed);
                    batch.ack();
                    continue;
                }
                let started_us = vigil_ingest::pipeline::now_us();
                if let Some(w) = writer.as_mut() {
                    vigil_ingest::event::write_ndjson(&mut *w, &batch.events)?;
                    w.flush()?;
                }
                let rows = batch.events.num_rows();
                // Scoring is CPU work on this task's thread; the runtime moves other tasks away.
                let out = tokio::task::block_in_place(|| {
                    scorer
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .score_batch(&batch.events)
                })?;
                sink.issue(&out.decisions).await?;
                consumer_engine.batches.fetch_add(1, Ordering::Relaxed);
                match &consumer_store {
                    Some(store) => {
                        if let Some(scores) = out.scores.filter(|s| s.num_rows() > 0) {
                            store.append("scores", scores, None)?;
                        }
                        let events = batch.events.clone();
                        let ack = batch.deferred_ack();
                        store.append("events", events, Some(Box::new(move || ack.done())))?;
                    }
                    None => batch.ack(),
                }
                if let Some(t) = &consumer_telemetry {
                    t.batch(
                        started_us,
                        vigil_ingest::pipeline::now_us(),
                        rows,
                        out.decisions.len(),
                        false,
                    );
                }
            }
            if idle {
                stop.cancelled().await;
            }
            anyhow::Ok(())
        })
    };
    // The OTLP exporter: spans and the `/metrics` families, until shutdown (then once more).
    let telemetry_stop = CancellationToken::new();
    let _telemetry_stop_on_return = telemetry_stop.clone().drop_guard();
    if let Some(t) = &telemetry {
        let e = engine.clone();
        tokio::spawn(
            t.clone()
                .run(move || render_metrics(&e), telemetry_stop.clone()),
        );
        tracing::info!(endpoint = ?cfg.telemetry.otlp_endpoint, "exporting traces and metrics over OTLP");
    }

    let signal = stop;
    tokio::pin!(signal);
    let mut consumer = consumer;
    loop {
        tokio::select! {
            () = &mut signal => break,
            // the consumer ends early only on an error (scoring, the decisions topic, the
            // store): nothing downstream of the sources works any more, so stop; what was not
            // stored is not acknowledged and is read again after a restart
            done = &mut consumer => {
                let e = match done {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => anyhow::anyhow!("the event consumer stopped"),
                    Err(e) => e.into(),
                };
                tracing::error!(error = %e, "scoring or storing failed; shutting down");
                engine.ready.store(false, Ordering::Relaxed);
                shutdown.cancel();
                tasks.abort_all();
                store_stop.cancel();
                if let Some(t) = maintenance {
                    let _ = tokio::task::spawn_blocking(move || t.join()).await;
                }
                return Err(e);
            }
            Some(done) = tasks.join_next() => match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "a source failed; shutting down");
                    engine.ready.store(false, Ordering::Relaxed);
                    shutdown.cancel();
                    if let Some(s) = &store {
                        s.set_eager(true);
                    }
                    drain(&mut tasks, &cfg).await;
                    store_stop.cancel();
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            },
        }
    }
    tracing::info!("shutting down");
    engine.ready.store(false, Ordering::Relaxed);
    shutdown.cancel();
    // From now on every batch is written as soon as it arrives, so the sources draining their
    // last batches get their acknowledgements (and commit) before the deadline.
    if let Some(s) = &store {
        s.set_eager(true);
    }
    drain(&mut tasks, &cfg).await;
    let _ = server.await;
    if let Some(mut p) = proxy {
        while p.tasks.join_next().await.is_some() {}
    }
    let consumed = consumer.await;
    // the maintenance thread flushes what is left, then exits
    store_stop.cancel();
    if let Some(t) = maintenance {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    telemetry_stop.cancel();
    consumed??;
    tracing::info!("stopped");
    Ok(())
}

/// The store's tables: `events` (ingest's schema), `scores` and `decisions` (scoring's).
pub fn table_specs() -> Vec<TableSpec> {
    vec![
        TableSpec {
            name: "events".into(),
            schema: vigil_ingest::event::events_schema(),
            time_column: "timestamp".into(),
            // a source replaying what was stored but not yet acknowledged (after a crash)
            // stores it once
            dedupe_column: Some("event_id".into()),
        },
        TableSpec {
            name: "scores".into(),
            schema: vigil_scoring::scorer::scores_schema(),
            time_column: "timestamp".into(),
            dedupe_column: None,
        },
        TableSpec {
            name: "decisions".into(),
            schema: vigil_scoring::tables::decisions_schema(),
            time_column: "issued_at".into(),
            dedupe_column: None,
        },
    ]
}

/// Per table: rows and bytes held in memory, files, rows flushed, flushes, compactions,
/// partitions deleted by retention. Labels are table names (three, fixed).
fn render_store_metrics(s: &mut String, store: &Store) {
    let stats = store.stats();
    type Read = fn(&vigil_ingest::store::TableStats) -> u64;
    let families: [(&str, &str, &str, Read); 8] = [
        (
            "vigil_store_hot_rows",
            "gauge",
            "Rows held in memory, not yet in Parquet.",
            |t| t.hot_rows,
        ),
        (
            "vigil_store_hot_bytes",
            "gauge",
            "Memory held by rows not yet in Parquet.",
            |t| t.hot_bytes,
        ),
        (
            "vigil_store_files",
            "gauge",
            "Parquet files of the table.",
            |t| t.files as u64,
        ),
        (
            "vigil_store_file_bytes",
            "gauge",
            "Bytes of the table's Parquet files.",
            |t| t.file_bytes,
        ),
        (
            "vigil_store_rows_flushed_total",
            "counter",
            "Rows written to Parquet.",
            |t| t.rows_flushed_total,
        ),
        (
            "vigil_store_flushes_total",
            "counter",
            "Flushes of the table.",
            |t| t.flushes_total,
        ),
        (
            "vigil_store_compactions_total",
            "counter",
            "Hour partitions compacted.",
            |t| t.compactions_total,
        ),
        (
            "vigil_store_duplicates_dropped_total",
            "counter",
            "Rows dropped as duplicates of a stored event id (a replay after a crash).",
            |t| t.duplicates_dropped_total,
        ),
    ];
    for (name, ty, help, get) in families {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {ty}");
        for t in &stats {
            let _ = writeln!(s, "{name}{{table=\"{}\"}} {}", t.name, get(t));
        }
    }
    let _ = writeln!(
        s,
        "# HELP vigil_store_flush_failing Whether the table's last flush failed.\n# TYPE vigil_store_flush_failing gauge"
    );
    for t in &stats {
        let _ = writeln!(
            s,
            "vigil_store_flush_failing{{table=\"{}\"}} {}",
            t.name,
            u8::from(t.last_flush_error.is_some())
        );
    }
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
