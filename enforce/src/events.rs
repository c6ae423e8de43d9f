//! The proxy's own access events: one small record per request it answered or forwarded, for
//! ingest to score like any gateway's traffic.
//!
//! The queue is bounded and never blocks a request: when it is full (or its reader is gone)
//! the event is dropped and counted ([`EventSink::dropped`]).

use crate::decision::{Action, UnixMicros};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// One request seen by the proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessEvent {
    /// When the request head arrived.
    pub timestamp: UnixMicros,
    pub request_id: String,
    pub client_ip: Option<IpAddr>,
    /// The TCP peer (the client, or the proxy in front).
    pub peer: IpAddr,
    /// The raw `X-Forwarded-For` the request arrived with, if any.
    pub forwarded_for: Option<String>,
    pub identity: Option<String>,
    pub session: Option<String>,
    pub api_key_id: Option<String>,
    pub method: String,
    pub host: Option<String>,
    /// Path without the query.
    pub path: String,
    pub query_present: bool,
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub protocol: &'static str,
    /// Status sent to the client.
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// From the request head to the end of the response body (or its abandonment).
    pub latency_us: u64,
    /// Time to the upstream's response head; `None` when answered locally.
    pub upstream_latency_us: Option<u64>,
    pub user_agent: Option<String>,
    pub referer: Option<String>,
    /// The action applied. With `[proxy.inline_detect]` on, a request refused for its own
    /// content is `Block` without a `decision_id`, and one that would have been refused in
    /// `monitor` mode is `Monitor` (unless a stricter action was already in force).
    pub action: Action,
    pub decision_id: Option<String>,
    /// The response body ended normally (false: client went away or upstream failed).
    pub completed: bool,
    /// The request went on to the upstream (false: the proxy answered it itself).
    pub forwarded: bool,
    /// JA4 of the connection's TLS ClientHello, when the proxy terminated TLS and could
    /// fingerprint the hello (see [`crate::fingerprint::ja4`]); `None` on cleartext, for a
    /// hello it could not read, and with `[proxy] fingerprints = false`.
    pub tls_fingerprint: Option<String>,
    /// JA4H of the request head as it arrived (see [`crate::fingerprint::ja4h`]); `None` with
    /// `[proxy] fingerprints = false`.
    pub http_fingerprint: Option<String>,
    /// What `[proxy.inline_detect]` found in the request (its query and headers included,
    /// which the event does not carry), in `block` or `monitor` mode: so scoring counts the
    /// request's attack evidence even though it never sees the query.
    pub inline_detection: Option<crate::inline_detect::Detection>,
}

impl AccessEvent {
    /// What the request got, as the `events.enforced` column names it: the action in force,
    /// except that a step-up the request's authentication satisfied (so it was forwarded) is
    /// `stepped_up`. A challenged client that never shows `stepped_up` could not log in
    /// more strongly.
    pub fn enforced(&self) -> &'static str {
        match (self.action, self.forwarded) {
            (Action::StepUp, true) => "stepped_up",
            (a, _) => a.as_str(),
        }
    }
}

/// The sending side of the event queue; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<AccessEvent>,
    dropped: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
}

/// A bounded event queue of `capacity` events.
pub fn event_channel(capacity: usize) -> (EventSink, mpsc::Receiver<AccessEvent>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        EventSink {
            tx,
            dropped: Arc::default(),
            sent: Arc::default(),
        },
        rx,
    )
}

impl EventSink {
    /// Queues `e`, or drops and counts it when the queue is full or closed.
    pub fn emit(&self, e: AccessEvent) {
        match self.tx.try_send(e) {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events dropped because the queue was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events queued.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> AccessEvent {
        AccessEvent {
            timestamp: UnixMicros(0),
            request_id: "r".into(),
            client_ip: None,
            peer: "127.0.0.1".parse().unwrap(),
            forwarded_for: None,
            identity: None,
            session: None,
            api_key_id: None,
            method: "GET".into(),
            host: None,
            path: "/".into(),
            query_present: false,
            protocol: "HTTP/1.1",
            status: 200,
            bytes_in: 0,
            bytes_out: 0,
            latency_us: 0,
            upstream_latency_us: None,
            user_agent: None,
            referer: None,
            action: Action::Allow,
            decision_id: None,
            completed: true,
            forwarded: false,
            tls_fingerprint: None,
            http_fingerprint: None,
            inline_detection: None,
        }
    }

    #[test]
    fn full_queue_drops_with_a_count() {
        let (sink, mut rx) = event_channel(2);
        for _ in 0..5 {
            sink.emit(ev());
        }
        assert_eq!(sink.sent(), 2);
        assert_eq!(sink.dropped(), 3);
        assert!(rx.try_recv().is_ok());
        drop(rx);
        sink.emit(ev());
        assert_eq!(sink.dropped(), 4);
    }
}
