//! The HTTP push source through its axum router: answers after the lines are handled, clear
//! 400/413/415 answers, OTLP/JSON, and the same body giving the same event ids.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use support::Harness;
use tower::ServiceExt;
use vigil_ingest::formats::FormatName;
use vigil_ingest::source::http::{HttpSourceConfig, IngestRoutes};
use vigil_ingest::source::{SourceConfig, SourceKind};

const NGINX: &str = "203.0.113.7 - alice [24/Nov/2026:10:00:00 +0000] \"GET /a/1 HTTP/1.1\" 200 10 \"-\" \"curl/8\"\n\
203.0.113.8 - bob [24/Nov/2026:10:00:01 +0000] \"POST /login HTTP/1.1\" 401 10 \"-\" \"curl/8\"\n\
not a log line\n";

fn start(max_body_bytes: usize) -> (Harness, axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SourceConfig {
        format: FormatName::Nginx,
        fields: Default::default(),
        kind: SourceKind::Http(HttpSourceConfig {
            max_body_bytes,
            ack_timeout_ms: 5000,
        }),
    };
    let mut h = Harness::start("push", &cfg, dir.path());
    let mut routes = IngestRoutes::default();
    routes.add(
        h.source
            .http
            .take()
            .unwrap()
            .with_default_format(FormatName::Nginx),
    );
    (h, routes.router(), dir)
}

async fn post(
    app: &axum::Router,
    uri: &str,
    ct: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, serde_json::Value, String) {
    let mut req = Request::post(uri);
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    let resp = app
        .clone()
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        ctype,
    )
}

#[tokio::test]
async fn lines_are_answered_after_they_are_handled() {
    let (h, app, _dir) = start(1 << 20);
    let (status, body, _) = post(&app, "/v1/ingest", Some("text/plain"), NGINX).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["lines"], 3);
    assert_eq!(body["events"], 2);
    assert_eq!(body["dead_letters"], 1);
    assert_eq!(h.event_count(), 2, "events are handled before the answer");
    let first_ids: Vec<String> = h
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].to_string())
        .collect();

    // A resent body (the client saw no answer) yields the same ids, so it can be deduplicated.
    let (status, _, _) = post(
        &app,
        "/v1/ingest?format=nginx",
        Some("text/plain; charset=utf-8"),
        NGINX,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let all: Vec<String> = h
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].to_string())
        .collect();
    assert_eq!(all[2..], first_ids[..]);

    // The format can be chosen per request.
    let json =
        r#"{"timestamp":"2026-11-24T10:00:00Z","status":200,"identity":"carol","path":"/x"}"#;
    let (status, body, _) = post(
        &app,
        "/v1/ingest?format=json",
        Some("application/x-ndjson"),
        json,
    )
    .await;
    assert_eq!((status, body["events"].as_u64()), (StatusCode::OK, Some(1)));
    let dead = h.dead_letters();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| d.origin.starts_with("http:push:")));
    h.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_answers() {
    let (h, app, _dir) = start(256);
    let (status, body, ct) = post(
        &app,
        "/v1/ingest",
        Some("application/x-www-form-urlencoded"),
        NGINX,
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(ct, "application/problem+json");
    assert!(
        body["detail"].as_str().unwrap().contains("text/plain"),
        "{body}"
    );

    let (status, body, _) = post(&app, "/v1/ingest", None, NGINX).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");

    let (status, body, _) = post(&app, "/v1/ingest?format=apache", Some("text/plain"), "x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("unknown format `apache`"),
        "{body}"
    );

    let (status, body, _) = post(&app, "/v1/ingest?source=nope", Some("text/plain"), "x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("push"), "{body}");

    let big = "x".repeat(10_000);
    let (status, body, _) = post(&app, "/v1/ingest", Some("text/plain"), big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    let (status, body, _) =
        post(&app, "/v1/logs", Some("application/x-protobuf"), "\x0a\x00").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(body["detail"].as_str().unwrap().contains("JSON"), "{body}");

    // An empty body is fine and does nothing.
    let (status, body, _) = post(&app, "/v1/ingest", Some("text/plain"), "").await;
    assert_eq!((status, body["lines"].as_u64()), (StatusCode::OK, Some(0)));
    assert_eq!(h.event_count(), 0);
    h.stop().await;
}

#[tokio::test]
async fn otlp_logs_are_accepted_with_partial_success() {
    let (h, app, _dir) = start(1 << 20);
    let export = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
        {"timeUnixNano":"1795514400000000000","attributes":[
          {"key":"http.request.method","value":{"stringValue":"GET"}},
          {"key":"url.path","value":{"stringValue":"/a"}},
          {"key":"http.response.status_code","value":{"intValue":"200"}},
          {"key":"client.address","value":{"stringValue":"203.0.113.1"}}]},
        {"timeUnixNano":"1795514400000000000","body":{"stringValue":"not an access log"}}
    ]}]}]}"#;
    let (status, body, _) = post(&app, "/v1/logs", Some("application/json"), export).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["partialSuccess"]["rejectedLogRecords"], "1");
    assert_eq!(h.event_count(), 1);
    let (status, body, _) = post(&app, "/v1/logs", Some("application/json"), export.replace(
        "not an access log",
        r#"[2026-11-24T10:00:00.000Z] \"GET /b HTTP/1.1\" 200 - 0 1 2 1 \"1.2.3.4\" \"ua\" \"id\" \"h\" \"u\""#,
    )).await;
    assert_eq!((status, body), (StatusCode::OK, serde_json::json!({})));
    assert_eq!(h.event_count(), 3);
    h.stop().await;
}
