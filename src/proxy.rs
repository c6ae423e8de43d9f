//! The enforcement point inside the `vigil` binary: `[proxy]` in `vigil run` (sharing the
//! engine's decision table), and `vigil proxy` on its own (its decisions from `[proxy.feed]`:
//! the Kafka topic or the engine's HTTP stream).

use anyhow::Result;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vigil_enforce::events::EventSink;
use vigil_enforce::{DecisionTable, FeedStatus, ProxyConfig, Readiness, RenderMetrics};

/// A started proxy: its readiness, its metrics, its feed's health, and the tasks that serve
/// and maintain it.
pub struct RunningProxy {
    pub readiness: Readiness,
    /// Where the proxy listens.
    pub addr: std::net::SocketAddr,
    /// The proxy's Prometheus families (its feed's included), for the engine's `/metrics`.
    pub metrics: Arc<dyn RenderMetrics>,
    /// The decision feed's health (`None`: in process).
    #[allow(dead_code)] // for a readiness that waits on the feed; the metrics already show it
    pub feed: Option<Arc<FeedStatus>>,
    pub tasks: JoinSet<()>,
}

/// Builds the proxy from `cfg` (errors name the key under `proxy.`), binds its listeners and
/// starts serving requests against `table` until `shutdown`. `kafka` is the `[kafka]` client
/// settings (for a Kafka feed that names no brokers of its own; `&[]` without); `events`
/// receives the proxy's access events.
pub async fn start(
    cfg: &ProxyConfig,
    table: Arc<DecisionTable>,
    kafka: &[(String, String)],
    events: Option<EventSink>,
    shutdown: CancellationToken,
) -> Result<RunningProxy> {
    let settings = cfg.build()?;
    let running = vigil_enforce::service::start(settings, table, kafka, events, shutdown).await?;
    tracing::info!(listen = %running.addr, upstream = %cfg.upstream, "proxy running");
    Ok(RunningProxy {
        readiness: running.readiness.clone(),
        addr: running.addr,
        metrics: running.metrics(),
        feed: running.feed.clone(),
        tasks: running.tasks,
    })
}

/// `vigil proxy`: the proxy alone, until Ctrl-C / SIGTERM; `kafka` is the config file's
/// `[kafka]` client settings.
pub async fn run_standalone(cfg: ProxyConfig, kafka: &[(String, String)]) -> Result<()> {
    let shutdown = CancellationToken::new();
    let table = Arc::new(DecisionTable::new());
    let mut events_task = None;
    let sink = match cfg.events_topic.as_deref().map(str::trim) {
        Some("") => anyhow::bail!("proxy.events_topic: must not be empty"),
        Some(topic) => {
            let settings = events_kafka_settings(&cfg, kafka).ok_or_else(|| {
                anyhow::anyhow!(
                    "proxy.events_topic: no Kafka brokers (set [kafka] brokers or proxy.feed.brokers)"
                )
            })?;
            let (sink, rx) = vigil_enforce::events::event_channel(65_536);
            events_task = Some(tokio::spawn(crate::proxy_events::to_kafka(
                rx,
                settings,
                topic.to_string(),
            )));
            Some(sink)
        }
        None => None,
    };
    let mut running = start(&cfg, table, kafka, sink, shutdown.clone()).await?;
    crate::run::shutdown_signal().await;
    tracing::info!("proxy shutting down");
    shutdown.cancel();
    while running.tasks.join_next().await.is_some() {}
    // the proxy has drained: dropping it closes the event queue, ending the producer task
    drop(running);
    if let Some(t) = events_task {
        match tokio::time::timeout(std::time::Duration::from_secs(15), t).await {
            Ok(r) => r??,
            Err(_) => tracing::warn!("proxy access events: the producer did not finish in 15 s"),
        }
    }
    Ok(())
}

/// The Kafka client settings for the access events of a proxy running alone: the `[kafka]`
/// section's, else the Kafka feed's brokers and options.
fn events_kafka_settings(
    cfg: &ProxyConfig,
    kafka: &[(String, String)],
) -> Option<Vec<(String, String)>> {
    if !kafka.is_empty() {
        return Some(kafka.to_vec());
    }
    let brokers = cfg.feed.brokers.as_ref()?;
    let mut v = vec![("bootstrap.servers".to_string(), brokers.clone())];
    v.extend(cfg.feed.options.iter().map(|(k, v)| (k.clone(), v.clone())));
    Some(v)
}
