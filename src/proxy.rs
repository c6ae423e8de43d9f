//! The enforcement point inside the `vigil` binary: `[proxy]` in `vigil run` (sharing the
//! engine's decision table), and `vigil proxy` on its own (its decisions from `[proxy.feed]`:
//! the Kafka topic or the engine's HTTP stream).

use anyhow::Result;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vigil_enforce::{DecisionTable, FeedStatus, ProxyConfig, Readiness, RenderMetrics};

/// A started proxy: its readiness, its metrics, its feed's health, and the tasks that serve
/// and maintain it.
pub struct RunningProxy {
    pub readiness: Readiness,
    /// The proxy's Prometheus families, for the engine's `/metrics`.
    #[allow(dead_code)] // read once run.rs appends it to the engine's /metrics
    pub metrics: Arc<dyn RenderMetrics>,
    /// The decision feed's health (`None`: in process).
    #[allow(dead_code)]
    pub feed: Option<Arc<FeedStatus>>,
    pub tasks: JoinSet<()>,
}

/// Builds the proxy from `cfg` (errors name the key under `proxy.`), binds its listeners and
/// starts serving requests against `table` until `shutdown`.
pub async fn start(
    cfg: &ProxyConfig,
    table: Arc<DecisionTable>,
    shutdown: CancellationToken,
) -> Result<RunningProxy> {
    start_with_kafka(cfg, table, &[], shutdown).await
}

/// [`start`], with the `[kafka]` client settings a Kafka feed without brokers of its own uses.
pub async fn start_with_kafka(
    cfg: &ProxyConfig,
    table: Arc<DecisionTable>,
    kafka: &[(String, String)],
    shutdown: CancellationToken,
) -> Result<RunningProxy> {
    let settings = cfg.build()?;
    let running = vigil_enforce::service::start(settings, table, kafka, None, shutdown).await?;
    tracing::info!(listen = %running.addr, upstream = %cfg.upstream, "proxy running");
    Ok(RunningProxy {
        readiness: running.readiness.clone(),
        metrics: running.metrics(),
        feed: running.feed.clone(),
        tasks: running.tasks,
    })
}

/// `vigil proxy`: the proxy alone, until Ctrl-C / SIGTERM.
pub async fn run_standalone(cfg: ProxyConfig) -> Result<()> {
    run_standalone_with_kafka(cfg, &[]).await
}

/// [`run_standalone`] with the config file's `[kafka]` client settings.
pub async fn run_standalone_with_kafka(cfg: ProxyConfig, kafka: &[(String, String)]) -> Result<()> {
    let shutdown = CancellationToken::new();
    let table = Arc::new(DecisionTable::new());
    let mut running = start_with_kafka(&cfg, table, kafka, shutdown.clone()).await?;
    crate::run::shutdown_signal().await;
    tracing::info!("proxy shutting down");
    shutdown.cancel();
    while running.tasks.join_next().await.is_some() {}
    Ok(())
}
