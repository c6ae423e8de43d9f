//! `[telemetry] otlp_endpoint`: `vigil run` with its proxy delivers spans (one per proxied
//! request, one per pipeline batch) and its metrics to an OTLP/HTTP receiver run here on
//! 127.0.0.1, in OTLP's JSON encoding.

mod support;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use std::sync::{Arc, Mutex};
use support::{Vigil, free_port, http_request, wait_until};

type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

async fn receive(State(r): State<(Received, &'static str)>, body: Bytes) -> &'static str {
    let v: serde_json::Value = serde_json::from_slice(&body).expect("OTLP JSON");
    r.0.lock().unwrap().push((r.1.to_string(), v));
    "{}"
}

fn spans(received: &Received) -> Vec<serde_json::Value> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k == "traces")
        .flat_map(|(_, v)| {
            v["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

fn metric_names(received: &Received) -> Vec<(String, serde_json::Value)> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k == "metrics")
        .flat_map(|(_, v)| {
            v["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|m| (m["name"].as_str().unwrap_or("").to_string(), m))
        .collect()
}

fn attr<'a>(span: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[test]
fn spans_and_metrics_reach_an_otlp_receiver() {
    let received: Received = Arc::default();
    // the receiver and the upstream, on a thread of their own
    let (tx, rx) = std::sync::mpsc::channel();
    let r = received.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/v1/traces",
                    post(receive).with_state((r.clone(), "traces")),
                )
                .route("/v1/metrics", post(receive).with_state((r, "metrics")));
            let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let up = axum::Router::new().fallback(|| async { "hello" });
            let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send((l1.local_addr().unwrap(), l2.local_addr().unwrap()))
                .unwrap();
            let _ = tokio::join!(axum::serve(l1, app), axum::serve(l2, up));
        });
    });
    let (otlp, upstream) = rx.recv().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (api, proxy) = (free_port(), free_port());
    let cfg = dir.path().join("vigil.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"data_dir = "{data}"
[server]
listen = "127.0.0.1:{api}"
[store]
flush_interval_ms = 200
[sources.push]
type = "http"
format = "nginx"
[proxy]
listen = "127.0.0.1:{proxy}"
upstream = "http://{upstream}"
[telemetry]
otlp_endpoint = "http://{otlp}"
export_interval_ms = 300
service_name = "vigil-test"
"#,
            data = dir.path().join("data").display()
        ),
    )
    .unwrap();
    let v = Vigil::run(&cfg, &dir.path().join("events.ndjson"));
    wait_until(60, "the proxy", || {
        std::net::TcpStream::connect(("127.0.0.1", proxy)).is_ok()
    });
    for i in 0..5 {
        let (status, _, body) = http_request(proxy, "GET", &format!("/hello/{i}"), &[], b"");
        assert_eq!((status, body.as_slice()), (200, &b"hello"[..]));
    }
    let line =
        r#"203.0.113.7 - - [24/Nov/2026:10:00:00 +0000] "GET /x HTTP/1.1" 200 5 "-" "curl/8""#;
    let (status, _, _) = http_request(
        api,
        "POST",
        "/v1/ingest",
        &[("content-type", "text/plain")],
        line.as_bytes(),
    );
    assert_eq!(status, 200);

    wait_until(30, "proxy.request and pipeline.batch spans", || {
        let s = spans(&received);
        s.iter().filter(|s| s["name"] == "proxy.request").count() >= 5
            && s.iter().any(|s| s["name"] == "pipeline.batch")
    });
    let all = spans(&received);
    let req = all
        .iter()
        .find(|s| attr(s, "url.path").is_some_and(|p| p["stringValue"] == "/hello/3"))
        .expect("the span of GET /hello/3");
    assert_eq!(
        attr(req, "http.request.method").unwrap()["stringValue"],
        "GET"
    );
    assert_eq!(
        attr(req, "http.response.status_code").unwrap()["intValue"],
        "200"
    );
    assert_eq!(attr(req, "vigil.action").unwrap()["stringValue"], "allow");
    assert_eq!(
        attr(req, "client.address").unwrap()["stringValue"],
        "127.0.0.1"
    );
    assert_eq!(req["traceId"].as_str().unwrap().len(), 32);
    assert_eq!(req["spanId"].as_str().unwrap().len(), 16);
    let (start, end): (u128, u128) = (
        req["startTimeUnixNano"].as_str().unwrap().parse().unwrap(),
        req["endTimeUnixNano"].as_str().unwrap().parse().unwrap(),
    );
    assert!(end >= start && start > 1_700_000_000_000_000_000);
    let batch = all.iter().find(|s| s["name"] == "pipeline.batch").unwrap();
    assert!(attr(batch, "vigil.events").is_some());
    let resource = received.lock().unwrap()[0].1.to_string();
    assert!(resource.contains("vigil-test"), "service.name");

    wait_until(30, "metrics", || {
        let m = metric_names(&received);
        m.iter().any(|(n, _)| n == "vigil_ingest_events_total")
            && m.iter()
                .any(|(n, _)| n == "vigil_proxy_request_duration_seconds")
    });
    let m = metric_names(&received);
    let events = &m
        .iter()
        .rev()
        .find(|(n, _)| n == "vigil_ingest_events_total")
        .unwrap()
        .1;
    assert_eq!(events["sum"]["isMonotonic"], true);
    let hist = &m
        .iter()
        .rev()
        .find(|(n, _)| n == "vigil_proxy_request_duration_seconds")
        .unwrap()
        .1;
    let points = hist["histogram"]["dataPoints"].as_array().unwrap();
    let total: u64 = points
        .iter()
        .map(|p| p["count"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(total >= 5, "{hist}");
    // the exporter reports on itself
    let (_, _, metrics) = http_request(api, "GET", "/metrics", &[], b"");
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("vigil_otlp_spans_exported_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_otlp_export_errors_total 0"),
        "{metrics}"
    );
    v.stop();
}
