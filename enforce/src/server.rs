//! Serving connections: HTTP/1.1 and HTTP/2 (h2c by prior knowledge, or TLS with ALPN when a
//! certificate is configured, see [`crate::tls`]) on one listener via hyper-util's `auto`
//! builder, with the header-read timeout, head size and count limits, the smuggling guard, and
//! graceful shutdown.
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
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
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
    /// The connection is TLS.
    pub tls: bool,
    /// JA4 of the connection's ClientHello, peeked before the handshake (see
    /// [`crate::tls::peek_client_hello_ja4`]); `None` on cleartext, with fingerprints off, or
    /// when the hello could not be fingerprinted.
    pub tls_fingerprint: Option<String>,
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

#[derive(Clone)]
pub(crate) struct ServerOptions {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_header_count: usize,
    pub http2_max_concurrent_streams: u32,
    pub readiness_delay: Duration,
    pub drain_timeout: Duration,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Peek each TLS connection's ClientHello for its JA4.
    pub fingerprints: bool,
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
            tls: s.tls.clone().map(tokio_rustls::TlsAcceptor::from),
            fingerprints: s.fingerprints,
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
                    let h = handler.clone();
                    let builder = builder.clone();
                    let watcher = graceful.watcher();
                    let tls = opts.tls.clone();
                    let fingerprints = opts.fingerprints;
                    let max_head = opts.max_header_bytes;
                    let first_request_deadline = opts.header_read_timeout;
                    conns.spawn(async move {
                        let started = tokio::time::Instant::now();
                        // the peek and the handshake count against the header-read timeout
                        let deadline = started + first_request_deadline;
                        let mut tls_fingerprint = None;
                        let stream = match tls {
                            None => ClientStream::Plain(stream),
                            Some(acceptor) => {
                                if fingerprints {
                                    tls_fingerprint =
                                        crate::tls::peek_client_hello_ja4(&stream, deadline).await;
                                }
                                match tokio::time::timeout_at(deadline, acceptor.accept(stream))
                                    .await
                                {
                                    Ok(Ok(s)) => ClientStream::Tls(Box::new(s)),
                                    Ok(Err(error)) => {
                                        tracing::debug!(%error, %peer, "TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!(%peer, "TLS handshake timed out");
                                        return;
                                    }
                                }
                            }
                        };
                        let info = Arc::new(ConnInfo {
                            peer,
                            tls: matches!(stream, ClientStream::Tls(_)),
                            tls_fingerprint,
                            framing: Arc::default(),
                            seen_request: AtomicBool::new(false),
                        });
                        let svc_info = info.clone();
                        let svc = hyper::service::service_fn(move |req| {
                            let h = h.clone();
                            let info = svc_info.clone();
                            async move { Ok::<_, Infallible>(h.handle(req, info).await) }
                        });
                        let io = TokioIo::new(FramingGuard::new(
                            stream,
                            max_head,
                            info.framing.clone(),
                        ));
                        let conn = watcher.watch(builder.serve_connection(io, svc).into_owned());
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
                            _ = tokio::time::sleep_until(started + first_request_deadline) => {}
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

/// A client connection, cleartext or TLS.
pub(crate) enum ClientStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
        }
    }
}
