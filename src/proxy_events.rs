//! The in-process proxy's own access events into ingest: each request the enforcement point
//! answered or forwarded becomes one row of the `events` table (gateway `vigil-proxy`), so
//! traffic that passes the proxy is scored like any gateway's.
//!
//! The proxy has already resolved the request's subjects (client IP through its trusted
//! proxies, identity and session from a *verified* token, the salted API-key id), so rows are
//! built from those directly: nothing is re-derived from headers here.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigil_enforce::events::AccessEvent;
use vigil_ingest::event::{EventBatchBuilder, LineOrigin, stream_seed};
use vigil_ingest::normalize::{NormalizeConfig, Normalizer};
use vigil_ingest::pipeline::{EventBatch, IngestStats};
use vigil_ingest::record::{AccessRecord, FoundEvidence};

/// The gateway and format name of the proxy's rows.
pub const GATEWAY: &str = "vigil-proxy";

/// Rows per batch at most; a partial batch leaves after [`FLUSH_EVERY`].
const BATCH_MAX: usize = 4096;
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// The record of one proxy access event. The client IP goes in as the peer of a normalizer
/// that trusts no proxy, so it is kept as the proxy resolved it.
fn record(e: &AccessEvent) -> AccessRecord<'_> {
    fn text(s: &Option<String>) -> Option<Cow<'_, str>> {
        s.as_deref().map(Cow::Borrowed)
    }
    AccessRecord {
        timestamp_us: e.timestamp.0,
        request_id: Some(Cow::Borrowed(&e.request_id)),
        peer: Some(Cow::Owned(e.client_ip.unwrap_or(e.peer).to_string())),
        forwarded_for: text(&e.forwarded_for),
        identity: text(&e.identity),
        session: text(&e.session),
        api_key_id: text(&e.api_key_id),
        method: Some(Cow::Borrowed(&e.method)),
        host: text(&e.host),
        target: Some(Cow::Borrowed(&e.path)),
        // the query is not carried, only whether there was one
        query: e.query_present.then_some(Cow::Borrowed("?")),
        protocol: Some(Cow::Borrowed(e.protocol)),
        status: e.status,
        bytes_in: Some(e.bytes_in),
        bytes_out: Some(e.bytes_out),
        latency_ms: Some(e.latency_us as f64 / 1000.0),
        upstream_latency_ms: e.upstream_latency_us.map(|u| u as f64 / 1000.0),
        user_agent: text(&e.user_agent),
        referer: text(&e.referer),
        enforced: Some(Cow::Borrowed(e.enforced())),
        tls_fingerprint: text(&e.tls_fingerprint),
        http_fingerprint: text(&e.http_fingerprint),
        found: e.inline_detection.as_ref().map(|d| FoundEvidence {
            classes: d.classes.iter().collect(),
            description: Cow::Borrowed(&d.evidence),
        }),
        ..Default::default()
    }
}

/// Appends one access event as one row, counted as a line and an event of the proxy source.
fn append(
    builder: &mut EventBatchBuilder,
    norm: &mut Normalizer,
    stats: &IngestStats,
    e: &AccessEvent,
    origin: &LineOrigin<'_>,
) {
    builder.append(&record(e), origin, 0, norm);
    stats.lines.fetch_add(1, Ordering::Relaxed);
    stats.events.fetch_add(1, Ordering::Relaxed);
}

/// Turns the proxy's access events into event batches on `out` until the event queue closes
/// or `shutdown` fires (the partial batch is sent first). `stream` names the proxy (its
/// listen address) in each row's origin.
pub async fn forward(
    mut events: mpsc::Receiver<AccessEvent>,
    out: mpsc::Sender<EventBatch>,
    stream: String,
    stats: Arc<IngestStats>,
    telemetry: Option<Arc<crate::telemetry::Telemetry>>,
    shutdown: CancellationToken,
) {
    let origin_stream = format!("proxy:{stream}");
    // a new seed per process start: positions restart at 0, ids must not repeat
    let started = vigil_ingest::pipeline::now_us().to_le_bytes();
    let seed = stream_seed(GATEWAY, &[stream.as_bytes(), &started].concat());
    let mut norm = match Normalizer::new(NormalizeConfig {
        jwt_claims: false,
        ..Default::default()
    }) {
        Ok(n) => n,
        Err(error) => {
            tracing::error!(%error, "proxy events: normalizer");
            return;
        }
    };
    let gateway: Arc<str> = Arc::from(GATEWAY);
    let mut builder = EventBatchBuilder::with_capacity(BATCH_MAX);
    let mut position = 0u64;
    let origin = |position| LineOrigin {
        gateway: GATEWAY,
        format: GATEWAY,
        stream: &origin_stream,
        id_seed: seed,
        position,
        sub: 0,
    };
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush = tokio::select! {
            e = events.recv() => match e {
                Some(e) => {
                    if let Some(t) = &telemetry {
                        t.proxy_request(&e);
                    }
                    append(&mut builder, &mut norm, &stats, &e, &origin(position));
                    position += 1;
                    builder.len() >= BATCH_MAX
                }
                None => break,
            },
            _ = tick.tick() => !builder.is_empty(),
            () = shutdown.cancelled() => break,
        };
        if flush
            && out
                .send(EventBatch::in_process(gateway.clone(), builder.finish()))
                .await
                .is_err()
        {
            return;
        }
    }
    // what is already queued still counts
    while let Ok(e) = events.try_recv() {
        append(&mut builder, &mut norm, &stats, &e, &origin(position));
        position += 1;
    }
    if !builder.is_empty() {
        let _ = out
            .send(EventBatch::in_process(gateway, builder.finish()))
            .await;
    }
}

/// One access event as the generic `json` ingest format reads it (its default field names;
/// `api_key_id` is taken as already hashed; `enforced` is the action applied;
/// `tls_fingerprint` and `http_fingerprint` are the proxy's JA4 and JA4H). `action` (the
/// same, under its older name) and `decision_id` ride along for whoever reads the topic.
pub fn to_json(e: &AccessEvent) -> String {
    serde_json::json!({
        "timestamp": e.timestamp.0,
        "gateway": GATEWAY,
        "request_id": e.request_id,
        "client_ip": e.client_ip.unwrap_or(e.peer).to_string(),
        "forwarded_for": e.forwarded_for,
        "identity": e.identity,
        "session": e.session,
        "api_key_id": e.api_key_id,
        "method": e.method,
        "host": e.host,
        "path": e.path,
        // only whether there was a query is known
        "query": if e.query_present { Some("?") } else { None },
        "protocol": e.protocol,
        "status": e.status,
        "bytes_in": e.bytes_in,
        "bytes_out": e.bytes_out,
        "latency_ms": e.latency_us as f64 / 1000.0,
        "upstream_latency_ms": e.upstream_latency_us.map(|u| u as f64 / 1000.0),
        "user_agent": e.user_agent,
        "referer": e.referer,
        "enforced": e.enforced(),
        "tls_fingerprint": e.tls_fingerprint,
        "http_fingerprint": e.http_fingerprint,
        "action": e.action.as_str(),
        "decision_id": e.decision_id,
    })
    .to_string()
}

/// `vigil proxy`'s access events to the Kafka `topic` until the queue closes (the proxy has
/// drained and dropped its sink); then what the producer still holds is flushed (up to 10 s).
/// A record the producer cannot queue is dropped and logged, never waited for: the request
/// path is not slowed by Kafka.
pub async fn to_kafka(
    mut events: mpsc::Receiver<AccessEvent>,
    settings: Vec<(String, String)>,
    topic: String,
) -> anyhow::Result<()> {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let mut cc = rdkafka::ClientConfig::new();
    for (k, v) in &settings {
        cc.set(k, v);
    }
    cc.set("linger.ms", "20");
    let producer: ThreadedProducer<DefaultProducerContext> = cc
        .create()
        .map_err(|e| anyhow::anyhow!("proxy.events_topic: cannot create the producer: {e}"))?;
    let mut dropped = 0u64;
    while let Some(e) = events.recv().await {
        let key = e.client_ip.unwrap_or(e.peer).to_string();
        let value = to_json(&e);
        if let Err((error, _)) = producer.send(BaseRecord::to(&topic).key(&key).payload(&value)) {
            dropped += 1;
            if dropped.is_power_of_two() {
                tracing::warn!(%error, dropped, %topic, "proxy access events dropped");
            }
        }
    }
    tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10)))
        .await?
        .map_err(|e| anyhow::anyhow!("flushing proxy access events to {topic}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, StringArray, UInt16Array};
    use vigil_enforce::Action;
    use vigil_enforce::decision::UnixMicros;

    /// Ingest names a client's device as the proxy does (the rule is written in both crates,
    /// as enforce depends on no vigil crate): the proxy's decisions on devices must find the
    /// devices scoring decides on.
    #[test]
    fn ingest_and_the_proxy_name_devices_alike() {
        let ja4 = "t13d1516h2_8daaf6152771_e5627efa2ab1";
        let ja4h = "ge11cr05da00_8ddaef5d77af_280f366eaa04_c2fb0fe53442";
        let long = "x".repeat(200);
        for (tls, http) in [
            (Some(ja4), Some(ja4h)),
            (Some(ja4), None),
            (None, Some(ja4h)),
            (None, None),
            (Some(long.as_str()), Some(ja4h)),
            (None, Some("no-underscore")),
            (None, Some("a__b")),
        ] {
            let mut s = String::new();
            let ingest = vigil_ingest::normalize::write_device(tls, http, &mut s).then_some(s);
            let proxy = vigil_enforce::fingerprint::device_id(tls, http);
            assert_eq!(ingest, proxy, "{tls:?} {http:?}");
        }
    }

    fn event(i: u16) -> AccessEvent {
        AccessEvent {
            timestamp: UnixMicros(1_790_000_000_000_000 + i64::from(i)),
            request_id: format!("req-{i}"),
            client_ip: Some("203.0.113.7".parse().unwrap()),
            peer: "10.0.0.1".parse().unwrap(),
            forwarded_for: Some("203.0.113.7".into()),
            identity: Some("alice".into()),
            session: Some("s-1".into()),
            api_key_id: Some("00112233445566778899aabbccddeeff".into()),
            method: "GET".into(),
            host: Some("api.example".into()),
            path: format!("/v1/orders/{i}"),
            query_present: true,
            protocol: "HTTP/1.1",
            status: 200 + i,
            bytes_in: 0,
            bytes_out: 42,
            latency_us: 1500,
            upstream_latency_us: Some(1000),
            user_agent: Some("curl/8".into()),
            referer: None,
            action: Action::Allow,
            decision_id: None,
            completed: true,
            forwarded: true,
            tls_fingerprint: (i == 0).then(|| "t13d1516h2_8daaf6152771_e5627efa2ab1".into()),
            http_fingerprint: Some(format!("ge11nn05enus_{i:012}_000000000000_000000000000")),
            inline_detection: None,
        }
    }

    #[tokio::test]
    async fn events_become_rows_with_the_proxys_subjects() {
        let (tx, rx) = mpsc::channel(16);
        let (out_tx, mut out_rx) = mpsc::channel(4);
        let stats = Arc::new(IngestStats::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(forward(
            rx,
            out_tx,
            "127.0.0.1:8080".into(),
            stats.clone(),
            None,
            shutdown.clone(),
        ));
        for i in 0..3 {
            let mut e = event(i);
            if i == 1 {
                // blocked inline for a query the row does not carry
                e.action = vigil_enforce::Action::Block;
                e.forwarded = false;
                e.inline_detection = Some(vigil_enforce::inline_detect::Detection {
                    classes: [vigil_detect::AttackClass::Sqli].into_iter().collect(),
                    evidence: "sqli in query parameter `id` (sqli.libinjection)".into(),
                });
            }
            tx.send(e).await.unwrap();
        }
        drop(tx);
        let batch = out_rx.recv().await.expect("a batch");
        task.await.unwrap();
        assert!(out_rx.recv().await.is_none());
        let ev = &batch.events;
        assert_eq!(ev.num_rows(), 3);
        assert_eq!(stats.events.load(Ordering::Relaxed), 3);
        let s = |name: &str| {
            ev.column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        // the client IP the proxy resolved, not its TCP peer
        assert_eq!(s("client_ip").value(0), "203.0.113.7");
        assert_eq!(s("identity").value(1), "alice");
        assert_eq!(s("session").value(1), "s-1");
        assert_eq!(s("api_key_id").value(2), "00112233445566778899aabbccddeeff");
        assert_eq!(s("route").value(2), "/v1/orders/{id}");
        assert_eq!(s("gateway").value(0), GATEWAY);
        let ids = s("event_id");
        assert_ne!(ids.value(0), ids.value(1));
        let status = ev
            .column_by_name("status")
            .unwrap()
            .as_any()
            .downcast_ref::<UInt16Array>()
            .unwrap();
        assert_eq!(status.value(2), 202);
        assert!(!s("referer").is_valid(0));
        // the inline detection's evidence, for scoring to count
        let classes = ev
            .column_by_name("attack_classes")
            .unwrap()
            .as_list::<i32>();
        let row = classes.value(1);
        assert_eq!(
            row.as_string::<i32>().iter().flatten().collect::<Vec<_>>(),
            ["sqli"]
        );
        assert_eq!(classes.value(0).len(), 0, "nothing found in a clean row");
        assert_eq!(
            s("evidence").value(1),
            "sqli in query parameter `id` (sqli.libinjection)"
        );
        assert_eq!(s("enforced").value(1), "block");
        let strong = ev.column_by_name("evidence_strong").unwrap().as_boolean();
        assert!(strong.value(1) && !strong.value(0));
        // the proxy's fingerprints, as computed
        let tls = s("tls_fingerprint");
        assert_eq!(tls.value(0), "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert!(!tls.is_valid(1), "cleartext: no JA4");
        assert_eq!(
            s("http_fingerprint").value(2),
            "ge11nn05enus_000000000002_000000000000_000000000000"
        );
    }

    #[test]
    fn json_carries_the_fingerprints() {
        let v: serde_json::Value = serde_json::from_str(&to_json(&event(0))).unwrap();
        assert_eq!(v["tls_fingerprint"], "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert_eq!(
            v["http_fingerprint"],
            "ge11nn05enus_000000000000_000000000000_000000000000"
        );
        let v: serde_json::Value = serde_json::from_str(&to_json(&event(1))).unwrap();
        assert!(v["tls_fingerprint"].is_null());
    }
}
