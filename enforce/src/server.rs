//! Serving connections: HTTP/1.1 and HTTP/2 (h2c, by prior knowledge) on one listener via
//! hyper-util's `auto` builder, with the header-read timeout, head size and count limits, the
//! smuggling guard, and graceful shutdown.
//!
//! Shutdown, once `shutdown` is cancelled:
//! 1. readiness turns false (and stays so for `shutdown_readiness_delay_ms`, still serving,
//!    so load balancers move away first);
//! 2. the listener is closed (new connections are refused);
//! 3. every connection is told to finish: HTTP/1 answers its in-flight request with
//!    `Connection: close`, HTTP/2 sends GOAWAY;
//! 4. after `shutdown_drain_timeout_ms` the connections still open are cut.

use crate::config::ProxySettings;
use crate::framing::{FramingGuard, FramingLog};
use crate::response::ProxyBody;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Whether the server wants new traffic; false from the start of shutdown. Expose it on a
/// health endpoint (`/readyz`).
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn new(ready: bool) -> Self {
        Readiness(Arc::new(AtomicBool::new(ready)))
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }
}

/// One client connection, as a request handler sees it.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub(crate) framing: Arc<FramingLog>,
    seen_request: AtomicBool,
}

impl ConnInfo {
    pub(crate) fn mark_request(&self) {
        self.seen_request.store(true, Ordering::Relaxed);
    }
}

/// What serves requests on a connection.
pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'static;
}

#[derive(Debug, Clone)]
pub(crate) struct ServerOptions {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_header_count: usize,
    pub http2_max_concurrent_streams: u32,
    pub readiness_delay: Duration,
    pub drain_timeout: Duration,
}

impl ServerOptions {
    pub fn from_settings(s: &ProxySettings) -> Self {
        ServerOptions {
            header_read_timeout: s.header_read_timeout,
            max_header_bytes: s.max_header_bytes,
            max_header_count: s.max_header_count,
            http2_max_concurrent_streams: s.http2_max_concurrent_streams,
            readiness_delay: s.shutdown_readiness_delay,
            drain_timeout: s.shutdown_drain_timeout,
        }
    }
}

/// Serves `handler` on `listener` until `shutdown`, then drains (see the module docs).
pub(crate) async fn serve<H: Handler>(
    listener: TcpListener,
    opts: ServerOptions,
    readiness: Readiness,
    shutdown: CancellationToken,
    handler: Arc<H>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_header_bytes.max(8192))
        .max_headers(opts.max_header_count);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(opts.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(opts.http2_max_concurrent_streams);
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    readiness.set(true);
    let mut draining_at: Option<tokio::time::Instant> = None;
    loop {
        let until_close = async {
            match draining_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled(), if draining_at.is_none() => {
                readiness.set(false);
                draining_at = Some(tokio::time::Instant::now() + opts.readiness_delay);
            }
            _ = until_close => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let info = Arc::new(ConnInfo {
                        peer,
                        framing: Arc::default(),
                        seen_request: AtomicBool::new(false),
                    });
                    let io = TokioIo::new(FramingGuard::new(
                        stream,
                        opts.max_header_bytes,
                        info.framing.clone(),
                    ));
                    let h = handler.clone();
                    let svc_info = info.clone();
                    let svc = hyper::service::service_fn(move |req| {
                        let h = h.clone();
                        let info = svc_info.clone();
                        async move { Ok::<_, Infallible>(h.handle(req, info).await) }
                    });
                    let conn = graceful.watch(builder.serve_connection(io, svc).into_owned());
                    let first_request_deadline = opts.header_read_timeout;
                    conns.spawn(async move {
                        tokio::pin!(conn);
                        // hyper's header-read timeout starts once it knows the protocol; a
                        // client that sends (almost) nothing is cut here.
                        tokio::select! {
                            r = &mut conn => {
                                if let Err(error) = r {
                                    tracing::debug!(%error, %peer, "connection ended with an error");
                                }
                                return;
                            }
                            _ = tokio::time::sleep(first_request_deadline) => {}
                        }
                        if !info.seen_request.load(Ordering::Relaxed) {
                            tracing::debug!(%peer, "no request within the header-read timeout");
                            return;
                        }
                        if let Err(error) = conn.await {
                            tracing::debug!(%error, %peer, "connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    // e.g. out of file descriptors: back off instead of spinning
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(open, "draining connections");
    if tokio::time::timeout(opts.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = conns.len(),
            "drain deadline passed; cutting connections"
        );
    }
    conns.shutdown().await;
}
