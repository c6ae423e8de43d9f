//! One enforcement point, assembled: the proxy on `listen` (TLS when configured; one
//! single-threaded event loop per `worker_threads`, each with its own socket on the port), the
//! forward-auth endpoint on `authz.listen` (when set), its decision feed, the admin listener,
//! and the upkeep tasks, all in one [`JoinSet`] that ends when
//! `shutdown` is cancelled. `vigil run` and `vigil proxy` both start it this way.

use crate::config::{FeedSource, ProxySettings};
use crate::enforcement::{Enforcement, TableEnforcer};
use crate::error::EnforceError;
use crate::events::EventSink;
use crate::feed::FeedStatus;
use crate::feed::kafka::KafkaFeed;
use crate::feed::sse::HttpFeed;
use crate::metrics::RenderMetrics;
use crate::proxy::Proxy;
use crate::server::Readiness;
use crate::table::DecisionTable;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What a started enforcement point exposes.
pub struct RunningPoint {
    /// Where the proxy listens (the bound address, when `listen` asked for port 0).
    pub addr: SocketAddr,
    /// Where the admin listener listens, if configured.
    pub admin_addr: Option<SocketAddr>,
    /// Where the forward-auth endpoint listens, if configured.
    pub authz_addr: Option<SocketAddr>,
    /// The proxy's readiness (false once shutdown starts).
    pub readiness: Readiness,
    /// The decision feed's health; `None` for the in-process feed.
    pub feed: Option<Arc<FeedStatus>>,
    /// The enforcement state; also the proxy's Prometheus text ([`RenderMetrics`]).
    pub enforcement: Arc<Enforcement<TableEnforcer>>,
    /// Serving, feed, admin and upkeep tasks; all end after `shutdown` is cancelled.
    pub tasks: JoinSet<()>,
}

impl std::fmt::Debug for RunningPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningPoint")
            .field("addr", &self.addr)
            .field("admin_addr", &self.admin_addr)
            .field("feed", &self.feed.as_ref().map(|f| f.kind()))
            .finish_non_exhaustive()
    }
}

impl RunningPoint {
    /// The proxy's metrics page source, for the engine's `/metrics`.
    pub fn metrics(&self) -> Arc<dyn RenderMetrics> {
        self.enforcement.clone()
    }
}

async fn bind(key: &str, addr: SocketAddr) -> Result<TcpListener, EnforceError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| EnforceError::config(key, format!("cannot listen on {addr}: {e}")))
}

/// Starts the enforcement point of `settings` on `table`.
///
/// `kafka` is the engine's `[kafka]` client settings (`bootstrap.servers` and options), used
/// by a Kafka feed that names no brokers itself; pass `&[]` when there is none. `events`
/// receives the proxy's access events (bounded; dropped and counted when full).
pub async fn start(
    settings: ProxySettings,
    table: Arc<DecisionTable>,
    kafka: &[(String, String)],
    events: Option<EventSink>,
    shutdown: CancellationToken,
) -> Result<RunningPoint, EnforceError> {
    enum Feed {
        Kafka(KafkaFeed),
        Http(HttpFeed),
    }
    let feed = match &settings.feed.source {
        FeedSource::InProcess => None,
        FeedSource::Kafka { .. } => Some(Feed::Kafka(KafkaFeed::new(&settings.feed, kafka)?)),
        FeedSource::Http { .. } => Some(Feed::Http(HttpFeed::new(&settings.feed)?)),
    };
    let status = feed.as_ref().map(|f| match f {
        Feed::Kafka(k) => k.status(),
        Feed::Http(h) => h.status(),
    });
    let threads = match settings.worker_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let listeners = reuseport_listeners(settings.listen, threads)?;
    let admin = match settings.admin_listen {
        Some(a) => Some(bind("proxy.admin_listen", a).await?),
        None => None,
    };
    let authz = match settings.authz_listen {
        Some(a) => Some(bind("proxy.authz.listen", a).await?),
        None => None,
    };
    let sweep = settings.sweep_interval;
    let enforcement = Enforcement::with_feed(
        settings,
        TableEnforcer::new(table.clone()),
        events,
        status.clone(),
    )
    .await?;
    let addr = listeners[0].local_addr()?;
    let admin_addr = admin.as_ref().map(|l| l.local_addr()).transpose()?;
    let authz_addr = authz.as_ref().map(|l| l.local_addr()).transpose()?;
    let readiness = Readiness::new(false);
    let mut tasks = JoinSet::new();
    match (feed, &status) {
        (Some(Feed::Kafka(k)), Some(st)) => {
            let (t, st, s) = (table.clone(), st.clone(), shutdown.clone());
            tasks.spawn(async move {
                if let Err(error) = k.run(t, st, s).await {
                    tracing::error!(%error, "the Kafka decision feed stopped");
                }
            });
        }
        (Some(Feed::Http(h)), Some(st)) => {
            tasks.spawn(h.run(table.clone(), st.clone(), shutdown.clone()));
        }
        _ => {}
    }
    if let Some(l) = admin {
        let router = crate::admin::router(enforcement.clone(), readiness.clone(), status.clone());
        tasks.spawn(crate::admin::serve(l, router, shutdown.clone()));
    }
    if let Some(l) = authz {
        let server = crate::authz::AuthzServer::new(enforcement.clone());
        tasks.spawn(server.serve(l, shutdown.clone()));
    }
    tasks.spawn(serve_on_event_loops(
        enforcement.clone(),
        readiness.clone(),
        listeners,
        shutdown.clone(),
    ));
    tasks.spawn(enforcement.clone().run_maintenance(shutdown.clone()));
    tasks.spawn(table.run_sweeper(sweep, shutdown));
    tracing::info!(listen = %addr, admin = ?admin_addr, authz = ?authz_addr, feed = status.as_ref().map_or("in_process", |s| s.kind()), "enforcement point running");
    Ok(RunningPoint {
        addr,
        admin_addr,
        authz_addr,
        readiness,
        feed: status,
        enforcement,
        tasks,
    })
}

/// `n` listening sockets on `addr` sharing the port (`SO_REUSEPORT`); port 0 picks one port
/// for all of them.
fn reuseport_listeners(addr: SocketAddr, n: usize) -> Result<Vec<TcpListener>, EnforceError> {
    let mut out = Vec::with_capacity(n);
    let mut at = addr;
    for _ in 0..n {
        let err = |e: std::io::Error| {
            EnforceError::config("proxy.listen", format!("cannot listen on {at}: {e}"))
        };
        let socket = if at.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(err)?;
        socket.set_reuseaddr(true).map_err(err)?;
        socket.set_reuseport(true).map_err(err)?;
        socket.bind(at).map_err(err)?;
        let l = socket.listen(1024).map_err(err)?;
        at = l.local_addr().map_err(err)?;
        out.push(l);
    }
    Ok(out)
}

/// Serves the proxy on one single-threaded event loop (an OS thread with a current-thread
/// runtime) per listener, until `shutdown`; returns when every loop has drained.
async fn serve_on_event_loops(
    enforcement: Arc<Enforcement<TableEnforcer>>,
    readiness: Readiness,
    listeners: Vec<TcpListener>,
    shutdown: CancellationToken,
) {
    let mut threads = Vec::with_capacity(listeners.len());
    for (i, l) in listeners.into_iter().enumerate() {
        // a tokio listener belongs to the runtime that made it: hand the socket over as std
        let std_listener = match l.into_std() {
            Ok(s) => s,
            Err(error) => {
                tracing::error!(%error, "cannot hand the listener to its event loop");
                continue;
            }
        };
        let (enf, ready, stop) = (enforcement.clone(), readiness.clone(), shutdown.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("vigil-proxy-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(error) => {
                        tracing::error!(%error, "cannot start a proxy event loop");
                        return;
                    }
                };
                rt.block_on(async move {
                    match TcpListener::from_std(std_listener) {
                        Ok(l) => Proxy::with_readiness(enf, ready).serve(l, stop).await,
                        Err(error) => tracing::error!(%error, "cannot use the listener"),
                    }
                });
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(error) => tracing::error!(%error, "cannot start a proxy thread"),
        }
    }
    // every loop ends after `shutdown` (drain deadline included); wait for them off the
    // async workers
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
}
