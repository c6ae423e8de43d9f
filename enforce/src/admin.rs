//! The admin listener (`[proxy] admin_listen`): `/metrics` (Prometheus text), `/healthz`
//! (the process is up) and `/readyz` (serving, not shutting down, and the decision feed has
//! been warm once). It is kept off the proxied port so that clients cannot read it and no
//! upstream path is shadowed. In `vigil run` the engine's own `/metrics` can include the same
//! text through [`RenderMetrics`].

use crate::feed::FeedStatus;
use crate::metrics::RenderMetrics;
use crate::server::Readiness;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct AdminState {
    metrics: Arc<dyn RenderMetrics>,
    readiness: Readiness,
    feed: Option<Arc<FeedStatus>>,
}

/// `/metrics`, `/healthz`, `/readyz` over `metrics`, `readiness` and the feed, if any.
pub fn router(
    metrics: Arc<dyn RenderMetrics>,
    readiness: Readiness,
    feed: Option<Arc<FeedStatus>>,
) -> Router {
    let state = Arc::new(AdminState {
        metrics,
        readiness,
        feed,
    });
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics_page(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    let mut out = String::with_capacity(8192);
    s.metrics.render_metrics(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

async fn readyz(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    let warm = s.feed.as_ref().is_none_or(|f| f.is_warm());
    if s.readiness.is_ready() && warm {
        (StatusCode::OK, "ready")
    } else if !warm {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: decision feed not warm",
        )
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let r = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = r {
        tracing::warn!(%error, "admin listener failed");
    }
}
