//! The enforcement point inside the `vigil` binary: `[proxy]` in `vigil run` (sharing the
//! engine's decision table), and `vigil proxy` on its own.

use anyhow::{Context, Result};
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vigil_enforce::{DecisionTable, Enforcement, Proxy, ProxyConfig, Readiness, TableEnforcer};

/// A started proxy: its readiness, and the tasks that serve and maintain it.
pub struct RunningProxy {
    pub readiness: Readiness,
    pub tasks: JoinSet<()>,
}

/// Builds the proxy from `cfg` (errors name the key under `proxy.`), binds its listener and
/// starts serving requests against `table` until `shutdown`.
pub async fn start(
    cfg: &ProxyConfig,
    table: Arc<DecisionTable>,
    shutdown: CancellationToken,
) -> Result<RunningProxy> {
    let settings = cfg.build()?;
    let listen = settings.listen;
    let sweep = settings.sweep_interval;
    let enforcement = Enforcement::new(settings, TableEnforcer::new(table.clone()), None).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (proxy.listen)"))?;
    let proxy = Proxy::new(enforcement.clone());
    let readiness = proxy.readiness();
    let mut tasks = JoinSet::new();
    tasks.spawn(proxy.serve(listener, shutdown.clone()));
    tasks.spawn(enforcement.run_maintenance(shutdown.clone()));
    tasks.spawn(table.run_sweeper(sweep, shutdown));
    tracing::info!(listen = %listen, upstream = %cfg.upstream, "proxy running");
    Ok(RunningProxy { readiness, tasks })
}

/// `vigil proxy`: the proxy alone, until Ctrl-C / SIGTERM.
pub async fn run_standalone(cfg: ProxyConfig) -> Result<()> {
    let shutdown = CancellationToken::new();
    let table = Arc::new(DecisionTable::new());
    let mut running = start(&cfg, table, shutdown.clone()).await?;
    crate::run::shutdown_signal().await;
    tracing::info!("proxy shutting down");
    shutdown.cancel();
    while running.tasks.join_next().await.is_some() {}
    Ok(())
}
