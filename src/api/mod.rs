//! The engine's HTTP API under `/v1` (axum): SQL over the store, subjects, decisions (list,
//! manual, revoke), rule backtests and reloads, the OpenAPI document. Every route but
//! `/healthz` and `/readyz` sits behind [`auth`]'s bearer-token check. Errors are
//! [`ApiError`] values, answered as RFC 9457 problem details in one place.

pub mod auth;
pub mod backtest;
pub mod sql;
mod subjects;

use crate::decisions::DecisionSink;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use std::sync::{Arc, Mutex};
use vigil_ingest::store::Store;
use vigil_scoring::{Scorer, ScoringConfig};

/// What the API handlers share.
pub struct Api {
    pub store: Option<Arc<Store>>,
    /// The live scorer (the consumer holds it while it scores a batch).
    pub scorer: Arc<Mutex<Scorer>>,
    /// For backtests: features computed as live scoring computes them.
    pub scoring: ScoringConfig,
    pub decisions: Arc<DecisionSink>,
    pub sql: sql::SqlService,
}

/// An error answered as `application/problem+json`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Short, stable kind of problem: `bad-request`, `sql`, `unauthorized`, …
    pub kind: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// A failure on our side: the detail goes to the log, the client gets a generic message.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the engine's log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": format!("https://vigil.dev/problems/{}", self.kind),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut r = (self.status, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"vigil\""),
            );
        }
        r
    }
}

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// A JSON request body, whatever its content type says (`curl -d` sends a form type), with
/// bad JSON answered as a problem.
pub struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "bad-request", e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("the body is not the JSON expected: {e}")))
    }
}

/// The `/v1` routes of the API (without auth: [`auth::layer`] wraps the whole app).
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/sql", post(sql::handle))
        .route("/v1/subjects/{kind}/{id}", get(subjects::subject))
        .route(
            "/v1/decisions",
            get(subjects::list_decisions).post(subjects::manual_decision),
        )
        .route("/v1/decisions/{kind}/{id}", delete(subjects::revoke))
        .route("/v1/backtest", post(backtest::handle))
        .route("/v1/rules/reload", post(subjects::reload_rules))
        .route("/v1/openapi.json", get(openapi))
        .with_state(api)
}
