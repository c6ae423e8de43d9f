//! `type = "http"`: gateways or shippers push lines to `POST /v1/ingest`, and OpenTelemetry
//! exporters push logs to `POST /v1/logs` (OTLP/HTTP, JSON encoding).
//!
//! A request is answered after its lines have gone through the pipeline and been acknowledged,
//! so a 200 means "handled"; a client that gets no answer can resend the same body, which
//! yields the same event ids (they derive from a hash of the body) and is deduplicated.
//! Errors are RFC 9457 problem documents: 400 (bad format name or source), 413 (body over
//! `max_body_bytes`), 415 (content type), 503 (pipeline full or not answering in time).

use super::SourceContext;
use crate::error::IngestError;
use crate::formats::FormatName;
use crate::pipeline::{Ack, ChunkOutcome, LineChunk, LineSplitter};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Largest request body accepted. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Longest a request waits for the pipeline to take and acknowledge its lines before it
    /// is answered 503. Default 30000 ms.
    pub ack_timeout_ms: u64,
}

impl Default for HttpSourceConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            ack_timeout_ms: 30_000,
        }
    }
}

/// A problem document (RFC 9457), the one error shape of vigil's HTTP API.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

/// One HTTP source, ready to take requests.
#[derive(Clone)]
pub struct HttpIngest {
    name: Arc<str>,
    format: FormatName,
    cfg: HttpSourceConfig,
    max_line: usize,
    chunks: mpsc::Sender<LineChunk>,
}

impl HttpSourceConfig {
    pub fn build(
        &self,
        ctx: &SourceContext,
        chunks: mpsc::Sender<LineChunk>,
    ) -> Result<HttpIngest, IngestError> {
        if self.max_body_bytes == 0 {
            return Err(IngestError::config(
                ctx.key("max_body_bytes"),
                "must be at least 1",
            ));
        }
        if self.ack_timeout_ms == 0 {
            return Err(IngestError::config(
                ctx.key("ack_timeout_ms"),
                "must be at least 1",
            ));
        }
        Ok(HttpIngest {
            name: ctx.name.as_str().into(),
            format: FormatName::Auto,
            cfg: self.clone(),
            max_line: ctx.pipeline.max_line_bytes,
            chunks,
        })
    }
}

impl HttpIngest {
    /// The format used when a request names none (the source's `format`).
    pub fn with_default_format(mut self, f: FormatName) -> Self {
        self.format = f;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hands `body` to the pipeline as one chunk and waits for its acknowledgement.
    async fn submit(
        &self,
        body: &[u8],
        format: FormatName,
        whole: bool,
    ) -> Result<ChunkOutcome, Problem> {
        let digest = xxhash_rust::xxh3::xxh3_128(body).to_le_bytes();
        let seed = crate::event::stream_seed(&self.name, &digest);
        let mut chunk = LineChunk::new(format!("http:{}", self.name).into(), seed);
        chunk.format = Some(format);
        if whole {
            // An OTLP export is one JSON document, newlines and all.
            chunk.data.extend_from_slice(body);
            chunk.lines.push(crate::pipeline::LineSpan {
                start: 0,
                end: body.len(),
                position: 0,
                sub: 0,
                truncated: false,
            });
        } else {
            let mut s = LineSplitter::new(0, self.max_line);
            s.push(body, &mut chunk);
            s.finish(&mut chunk);
        }
        if chunk.lines.is_empty() {
            return Ok(ChunkOutcome::default());
        }
        let (tx, rx) = oneshot::channel();
        chunk.ack = Some(Ack::new(move |o| {
            let _ = tx.send(o);
        }));
        let timeout = Duration::from_millis(self.cfg.ack_timeout_ms);
        let busy = || {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the ingest pipeline is busy; retry",
            )
        };
        tokio::time::timeout(timeout, self.chunks.send(chunk))
            .await
            .map_err(|_| busy())?
            .map_err(|_| {
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the ingest pipeline is shutting down",
                )
            })?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(_)) => Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the batch holding these lines was not stored; retry",
            )),
            Err(_) => Err(busy()),
        }
    }
}

/// The HTTP sources of one engine, served under `/v1`.
#[derive(Clone, Default)]
pub struct IngestRoutes {
    sources: BTreeMap<String, HttpIngest>,
}

#[derive(Debug, Deserialize)]
struct IngestQuery {
    format: Option<String>,
    source: Option<String>,
}

#[derive(Debug, Serialize)]
struct IngestAnswer {
    source: String,
    format: &'static str,
    lines: u64,
    events: u64,
    dead_letters: u64,
}

impl IngestRoutes {
    pub fn add(&mut self, src: HttpIngest) {
        self.sources.insert(src.name.to_string(), src);
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Largest body any source accepts (the router's limit; each source checks its own).
    fn body_limit(&self) -> usize {
        self.sources
            .values()
            .map(|s| s.cfg.max_body_bytes)
            .max()
            .unwrap_or(1)
    }

    fn pick(&self, name: Option<&str>) -> Result<&HttpIngest, Problem> {
        match name {
            Some(n) => self.sources.get(n).ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "no http source named `{n}`; configured: {}",
                        self.sources.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
            }),
            None if self.sources.len() == 1 => {
                Ok(self.sources.values().next().expect("one source"))
            }
            None => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "several http sources are configured; name one with ?source=NAME",
            )),
        }
    }

    /// `POST /v1/ingest` and `POST /v1/logs`.
    pub fn router(self) -> Router {
        let limit = self.body_limit();
        Router::new()
            .route("/v1/ingest", post(ingest))
            .route("/v1/logs", post(otlp_logs))
            .layer(DefaultBodyLimit::max(limit))
            .with_state(Arc::new(self))
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn check_size(src: &HttpIngest, body: &Bytes) -> Result<(), Problem> {
    if body.len() > src.cfg.max_body_bytes {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body of {} bytes is over this source's limit of {} bytes",
                body.len(),
                src.cfg.max_body_bytes
            ),
        ));
    }
    Ok(())
}

async fn ingest(
    State(routes): State<Arc<IngestRoutes>>,
    Query(q): Query<IngestQuery>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(|e| Problem::new(e.status(), e.body_text()))?;
    let src = routes.pick(q.source.as_deref())?;
    check_size(src, &body)?;
    let ct = content_type(&headers);
    if !matches!(
        ct.as_str(),
        "application/x-ndjson"
            | "application/jsonl"
            | "application/json"
            | "text/plain"
            | "application/x-jsonlines"
    ) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type `{ct}` is not accepted; send log lines as text/plain or application/x-ndjson (one record per line)"
            ),
        ));
    }
    let format_name = q.format.or_else(|| {
        headers
            .get("x-vigil-format")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let format = match format_name {
        Some(f) => f
            .parse::<FormatName>()
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e))?,
        None => src.format,
    };
    let outcome = src.submit(&body, format, false).await?;
    Ok(axum::Json(IngestAnswer {
        source: src.name.to_string(),
        format: format.as_str(),
        lines: outcome.lines,
        events: outcome.events,
        dead_letters: outcome.dead_letters,
    })
    .into_response())
}

async fn otlp_logs(
    State(routes): State<Arc<IngestRoutes>>,
    Query(q): Query<IngestQuery>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(|e| Problem::new(e.status(), e.body_text()))?;
    let src = routes.pick(q.source.as_deref())?;
    check_size(src, &body)?;
    match content_type(&headers).as_str() {
        "application/json" => {}
        "application/x-protobuf" => {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "OTLP/protobuf is not supported; configure the exporter for OTLP/HTTP with JSON encoding",
            ));
        }
        other => {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content type `{other}` is not OTLP/JSON (application/json)"),
            ));
        }
    }
    let outcome = src.submit(&body, FormatName::Otlp, true).await?;
    // ExportLogsServiceResponse: records that became dead letters are reported as rejected.
    let answer = if outcome.dead_letters > 0 {
        serde_json::json!({"partialSuccess": {
            "rejectedLogRecords": outcome.dead_letters.to_string(),
            "errorMessage": "some log records were not access events; see vigil's dead letters",
        }})
    } else {
        serde_json::json!({})
    };
    Ok(axum::Json(answer).into_response())
}
