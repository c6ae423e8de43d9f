//! The HTTP decision feed, for deployments without Kafka: the engine serves
//! `GET /v1/decisions/stream` as server-sent events, and enforcement points follow it.
//!
//! # The stream (version 1)
//!
//! Every change the engine makes to its decision table gets the next sequence number of a
//! [`DecisionBroadcast`]. A connection receives, in order:
//!
//! | event | `id` | data |
//! |---|---|---|
//! | `hello` | | `{"epoch":"<uuid>","seq":N}`: the server's instance and its latest sequence number |
//! | `reset` | | `{"seq":S}`: a full snapshot follows; drop every decision that is not in it |
//! | `snapshot` | | up to 512 decision records, one JSON record per line |
//! | `snapshot_end` | `S` | `{"seq":S,"count":n}`: the snapshot reflects every change up to `S` |
//! | `decision` | `N` | a decision record (schema of [`crate::decision`]) |
//! | `revoke` | `N` | `{"subject":{"kind":"ip","id":"203.0.113.7"}}` |
//! | `heartbeat` | | `{"seq":N}`, every `heartbeat_interval` |
//!
//! Resume: `?since=N&epoch=E` (or the `Last-Event-ID` header) sends only the changes after
//! `N`. When `N` is older than the server's ring of recent changes, newer than its latest, or
//! `epoch` names another server instance (a restart), or `since` is absent, a full snapshot
//! (`reset` .. `snapshot_end`) comes first. Every `resync_interval` each connection gets a
//! fresh full snapshot, which also removes anything a follower holds by mistake.
//!
//! # Bounds
//!
//! - The ring of recent changes holds `ring_capacity` changes; older ones are dropped (a
//!   follower resuming from before them gets a snapshot).
//! - Each connection reads changes from a broadcast channel of `channel_capacity`; a
//!   connection that falls that far behind (a slow follower) is sent a full snapshot instead
//!   of the changes it missed. Publishing never waits for followers.
//! - The follower ([`HttpFeed`]) refuses events larger than 16 MiB and reconnects when
//!   nothing (not even a heartbeat) arrives for three heartbeat intervals.

use super::{FeedChange, FeedStatus};
use crate::config::{FeedSettings, FeedSource};
use crate::decision::{Decision, Subject, UnixMicros};
use crate::error::EnforceError;
use crate::table::{DecisionTable, Upsert};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The path the engine serves the stream on.
pub const STREAM_PATH: &str = "/v1/decisions/stream";

/// Decision records per `snapshot` event.
const SNAPSHOT_CHUNK: usize = 512;
/// Largest event a follower accepts.
const MAX_EVENT_BYTES: usize = 16 << 20;

/// One sequenced change.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequenced {
    pub seq: u64,
    pub change: FeedChange,
}

/// Sizes of a [`DecisionBroadcast`].
#[derive(Debug, Clone, Copy)]
pub struct BroadcastOptions {
    /// Recent changes kept for resuming followers. Default 100,000.
    pub ring_capacity: usize,
    /// Changes buffered per connection before it is resynced with a snapshot. Default 16,384.
    pub channel_capacity: usize,
}

impl Default for BroadcastOptions {
    fn default() -> Self {
        BroadcastOptions {
            ring_capacity: 100_000,
            channel_capacity: 16_384,
        }
    }
}

struct Log {
    seq: u64,
    ring: VecDeque<Arc<Sequenced>>,
}

struct BroadcastInner {
    table: Arc<DecisionTable>,
    epoch: String,
    ring_capacity: usize,
    log: Mutex<Log>,
    tx: broadcast::Sender<Arc<Sequenced>>,
}

/// The engine's side of the HTTP feed: it applies each change to the decision table and gives
/// it the next sequence number, under one lock, so followers see changes in the table's order.
/// Cheap to clone.
#[derive(Clone)]
pub struct DecisionBroadcast {
    inner: Arc<BroadcastInner>,
}

impl std::fmt::Debug for DecisionBroadcast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionBroadcast")
            .field("epoch", &self.inner.epoch)
            .field("seq", &self.seq())
            .finish()
    }
}

impl DecisionBroadcast {
    /// A broadcast of the changes made to `table` through it.
    pub fn new(table: Arc<DecisionTable>, opts: BroadcastOptions) -> Self {
        let (tx, _) = broadcast::channel(opts.channel_capacity.max(16));
        DecisionBroadcast {
            inner: Arc::new(BroadcastInner {
                table,
                epoch: uuid::Uuid::now_v7().to_string(),
                ring_capacity: opts.ring_capacity.max(1),
                log: Mutex::new(Log {
                    seq: 0,
                    ring: VecDeque::new(),
                }),
                tx,
            }),
        }
    }

    pub fn table(&self) -> &Arc<DecisionTable> {
        &self.inner.table
    }

    /// This instance's id; a follower that resumes against another epoch gets a snapshot.
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// The latest sequence number (0: nothing published yet).
    pub fn seq(&self) -> u64 {
        self.lock().seq
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        // a panic while holding the lock cannot leave the log half-written (push + pop only)
        self.inner.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `d` in the table and, when it changed the table, sends it to followers.
    pub fn publish(&self, d: Decision) -> Result<Upsert, EnforceError> {
        let mut log = self.lock();
        let d = Arc::new(d);
        let r = self.inner.table.insert(Decision::clone(&d))?;
        if matches!(r, Upsert::Inserted | Upsert::Replaced) {
            self.append(&mut log, FeedChange::Decision(d));
        }
        Ok(r)
    }

    /// Revokes the subject's decision and tells followers (even when none was held: a
    /// follower may hold one this table no longer does).
    pub fn revoke(&self, subject: Subject) -> Option<Arc<Decision>> {
        let mut log = self.lock();
        let old = self.inner.table.revoke(&subject);
        self.append(&mut log, FeedChange::Revoke(subject));
        old
    }

    fn append(&self, log: &mut Log, change: FeedChange) {
        log.seq += 1;
        let item = Arc::new(Sequenced {
            seq: log.seq,
            change,
        });
        if log.ring.len() >= self.inner.ring_capacity {
            log.ring.pop_front();
        }
        log.ring.push_back(item.clone());
        // no follower connected is fine
        let _ = self.inner.tx.send(item);
    }

    /// Changes after `since`, when the ring still holds all of them; `None`: a snapshot is
    /// needed. Returns the latest sequence number too.
    fn replay_after(&self, since: u64) -> (u64, Option<Vec<Arc<Sequenced>>>) {
        let log = self.lock();
        if since > log.seq {
            return (log.seq, None);
        }
        let oldest = log.ring.front().map_or(log.seq + 1, |i| i.seq);
        if since + 1 < oldest {
            return (log.seq, None);
        }
        let items = log.ring.iter().filter(|i| i.seq > since).cloned().collect();
        (log.seq, Some(items))
    }
}

/// How the stream is served.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// A `heartbeat` event this often. Default 5 s.
    pub heartbeat_interval: Duration,
    /// A full snapshot on every connection this often; `None`: only when needed. Default
    /// 300 s.
    pub resync_interval: Option<Duration>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            heartbeat_interval: Duration::from_secs(5),
            resync_interval: Some(Duration::from_secs(300)),
        }
    }
}

struct ServerState {
    feed: DecisionBroadcast,
    opts: StreamOptions,
    shutdown: CancellationToken,
}

/// The engine's `GET /v1/decisions/stream` (see the module docs), as a router to merge into
/// the engine's. Every open stream ends when `shutdown` is cancelled (so a graceful server
/// shutdown is not held open by followers).
pub fn router(feed: DecisionBroadcast, opts: StreamOptions, shutdown: CancellationToken) -> Router {
    let state = Arc::new(ServerState {
        feed,
        opts,
        shutdown,
    });
    Router::new()
        .route(STREAM_PATH, get(stream_handler))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    since: Option<u64>,
    epoch: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Hello {
    epoch: String,
    seq: u64,
}

#[derive(Serialize, Deserialize)]
struct SeqOnly {
    seq: u64,
}

#[derive(Serialize, Deserialize)]
struct SnapshotEnd {
    seq: u64,
    count: u64,
}

#[derive(Serialize, Deserialize)]
struct RevokeData {
    subject: Subject,
}

fn json<T: Serialize>(v: &T) -> String {
    // plain structs of strings and numbers: cannot fail
    serde_json::to_string(v).unwrap_or_default()
}

/// One connection's stream state.
struct Conn {
    feed: DecisionBroadcast,
    shutdown: CancellationToken,
    rx: broadcast::Receiver<Arc<Sequenced>>,
    pending: VecDeque<Event>,
    /// Changes up to this one have been sent (or are in the snapshot being sent).
    last_sent: u64,
    snapshot: Option<(u64, std::vec::IntoIter<Arc<Decision>>, u64)>,
    heartbeat: tokio::time::Interval,
    resync_interval: Option<Duration>,
    resync_at: Option<tokio::time::Instant>,
}

impl Conn {
    fn start_snapshot(&mut self) {
        // every change up to `seq` is in the table (publish applies, then numbers, under the
        // lock); changes after it may show in the copy too and are sent again after it
        let seq = self.feed.seq();
        let items = self.feed.table().snapshot_at(UnixMicros::now());
        self.pending
            .push_back(Event::default().event("reset").data(json(&SeqOnly { seq })));
        self.snapshot = Some((seq, items.into_iter(), 0));
        self.last_sent = seq;
        self.resync_at = self
            .resync_interval
            .map(|d| tokio::time::Instant::now() + d);
    }

    fn change_event(item: &Sequenced) -> Event {
        let e = Event::default().id(item.seq.to_string());
        match &item.change {
            FeedChange::Decision(d) => e.event("decision").data(d.to_json()),
            FeedChange::Revoke(s) => e
                .event("revoke")
                .data(json(&RevokeData { subject: s.clone() })),
        }
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if let Some((seq, items, count)) = &mut self.snapshot {
                let chunk: Vec<String> = items
                    .by_ref()
                    .take(SNAPSHOT_CHUNK)
                    .map(|d| d.to_json())
                    .collect();
                if !chunk.is_empty() {
                    *count += chunk.len() as u64;
                    return Some(Event::default().event("snapshot").data(chunk.join("\n")));
                }
                let end = Event::default()
                    .event("snapshot_end")
                    .id(seq.to_string())
                    .data(json(&SnapshotEnd {
                        seq: *seq,
                        count: *count,
                    }));
                self.snapshot = None;
                return Some(end);
            }
            let resync = async {
                match self.resync_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                r = self.rx.recv() => match r {
                    Ok(item) if item.seq <= self.last_sent => continue,
                    Ok(item) => {
                        self.last_sent = item.seq;
                        return Some(Self::change_event(&item));
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::info!(missed, "decision stream follower fell behind; sending a snapshot");
                        self.start_snapshot();
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => {
                    let seq = self.feed.seq();
                    return Some(Event::default().event("heartbeat").data(json(&SeqOnly { seq })));
                }
                _ = resync => self.start_snapshot(),
            }
        }
    }
}

async fn stream_handler(
    State(s): State<Arc<ServerState>>,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let since = q.since.or_else(|| {
        headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    });
    let feed = s.feed.clone();
    // subscribe before reading the log: nothing published in between is missed
    let rx = feed.inner.tx.subscribe();
    let mut heartbeat =
        tokio::time::interval(s.opts.heartbeat_interval.max(Duration::from_millis(10)));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.reset();
    let mut conn = Conn {
        feed: feed.clone(),
        shutdown: s.shutdown.clone(),
        rx,
        pending: VecDeque::new(),
        last_sent: 0,
        snapshot: None,
        heartbeat,
        resync_interval: s.opts.resync_interval,
        resync_at: s
            .opts
            .resync_interval
            .map(|d| tokio::time::Instant::now() + d),
    };
    let same_epoch = q.epoch.as_deref().is_none_or(|e| e == feed.epoch());
    let (seq, replay) = match since {
        Some(n) if same_epoch => feed.replay_after(n),
        _ => (feed.seq(), None),
    };
    conn.pending
        .push_back(Event::default().event("hello").data(json(&Hello {
            epoch: feed.epoch().to_string(),
            seq,
        })));
    match replay {
        Some(items) => {
            conn.last_sent = since.unwrap_or(0);
            for i in &items {
                conn.pending.push_back(Conn::change_event(i));
                conn.last_sent = i.seq;
            }
        }
        None => conn.start_snapshot(),
    }
    let stream =
        futures_util::stream::unfold(
            conn,
            |mut c| async move { c.next().await.map(|e| (Ok(e), c)) },
        );
    Sse::new(stream)
}

/// The follower of an engine's stream (`[proxy.feed] type = "http"`).
///
/// It owns the table it fills: a full snapshot removes every decision not in it.
#[derive(Debug, Clone)]
pub struct HttpFeed {
    url: Uri,
    token: Option<String>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    stale_after: Duration,
}

/// Where the follower stands.
#[derive(Debug, Default)]
struct Follow {
    epoch: Option<String>,
    last_seq: Option<u64>,
    /// The server's latest sequence number at connect time: warm once reached.
    target: u64,
    snapshot: Option<HashSet<Subject>>,
}

/// Why a connection ended.
enum End {
    Shutdown,
    Retry(String),
}

impl HttpFeed {
    /// The feed of `[proxy.feed]` (which must be `type = "http"`).
    pub fn new(feed: &FeedSettings) -> Result<Self, EnforceError> {
        let FeedSource::Http { url, token } = &feed.source else {
            return Err(EnforceError::config(
                "proxy.feed.type",
                "the HTTP feed needs `type = \"http\"`",
            ));
        };
        Ok(HttpFeed {
            url: url.clone(),
            token: token.clone(),
            connect_timeout: feed.connect_timeout,
            idle_timeout: (feed.heartbeat_interval * 3)
                .min(feed.stale_after.max(Duration::from_millis(100))),
            stale_after: feed.stale_after,
        })
    }

    /// A new status for this feed (`kind` `http`).
    pub fn status(&self) -> Arc<FeedStatus> {
        Arc::new(FeedStatus::new("http", self.stale_after))
    }

    /// Follows the stream into `table` until `shutdown`, reconnecting (with backoff up to
    /// 5 s) and resuming from the last sequence number after every failure.
    pub async fn run(
        self,
        table: Arc<DecisionTable>,
        status: Arc<FeedStatus>,
        shutdown: CancellationToken,
    ) {
        let mut f = Follow::default();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.follow_once(&table, &status, &shutdown, &mut f).await {
                End::Shutdown => return,
                End::Retry(why) => {
                    status.count_error();
                    tracing::warn!(error = %why, url = %self.url, "decision stream interrupted; reconnecting");
                }
            }
            if f.snapshot.take().is_some() {
                tracing::debug!("partial snapshot abandoned");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            if status.since_heartbeat().is_some_and(|d| d < backoff) {
                // the last connection got somewhere: start again quickly
                backoff = Duration::from_millis(100);
            }
        }
    }

    fn request_uri(&self, f: &Follow) -> String {
        let pq = self.url.path_and_query().map_or("/", |p| p.as_str());
        let mut uri = pq.to_string();
        if let (Some(e), Some(s)) = (&f.epoch, f.last_seq) {
            uri.push(if pq.contains('?') { '&' } else { '?' });
            uri.push_str(&format!("since={s}&epoch={e}"));
        }
        uri
    }

    async fn follow_once(
        &self,
        table: &DecisionTable,
        status: &FeedStatus,
        shutdown: &CancellationToken,
        f: &mut Follow,
    ) -> End {
        let Some(authority) = self.url.authority().cloned() else {
            return End::Retry("no host in the feed URL".into());
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(80);
        let connect = async {
            let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            let _ = stream.set_nodelay(true);
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)
        };
        let (mut sender, conn) = tokio::select! {
            _ = shutdown.cancelled() => return End::Shutdown,
            r = tokio::time::timeout(self.connect_timeout, connect) => match r {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return End::Retry(format!("connect: {e}")),
                Err(_) => return End::Retry("connect timed out".into()),
            },
        };
        tokio::pin!(conn);
        let mut req = hyper::Request::get(self.request_uri(f))
            .header(hyper::header::HOST, authority.as_str())
            .header(hyper::header::ACCEPT, "text/event-stream");
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match req.body(Empty::<Bytes>::new()) {
            Ok(r) => r,
            Err(e) => return End::Retry(format!("request: {e}")),
        };
        let resp = tokio::select! {
            _ = shutdown.cancelled() => return End::Shutdown,
            r = &mut conn => return End::Retry(format!("connection closed: {r:?}")),
            r = tokio::time::timeout(self.connect_timeout, sender.send_request(req)) => match r {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return End::Retry(format!("request: {e}")),
                Err(_) => return End::Retry("no response in time".into()),
            },
        };
        if !resp.status().is_success() {
            return End::Retry(format!("the engine answered {}", resp.status()));
        }
        status.count_connect();
        status.heartbeat();
        let mut body = resp.into_body();
        let mut parser = SseParser::default();
        loop {
            let frame = tokio::select! {
                _ = shutdown.cancelled() => return End::Shutdown,
                r = &mut conn => return End::Retry(format!("connection closed: {r:?}")),
                r = tokio::time::timeout(self.idle_timeout, body.frame()) => match r {
                    Err(_) => return End::Retry(format!("nothing received for {:?}", self.idle_timeout)),
                    Ok(None) => return End::Retry("the stream ended".into()),
                    Ok(Some(Err(e))) => return End::Retry(format!("read: {e}")),
                    Ok(Some(Ok(frame))) => frame,
                },
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if let Err(e) = parser.push(&data) {
                return End::Retry(e);
            }
            while let Some(ev) = parser.next_event() {
                status.heartbeat();
                if let Err(e) = self.handle(table, status, f, ev) {
                    return End::Retry(e);
                }
            }
        }
    }

    fn handle(
        &self,
        table: &DecisionTable,
        status: &FeedStatus,
        f: &mut Follow,
        ev: SseEvent,
    ) -> Result<(), String> {
        let id = ev.id.as_deref().and_then(|i| i.parse::<u64>().ok());
        match ev.event.as_str() {
            "hello" => {
                let h: Hello = serde_json::from_str(&ev.data).map_err(|e| format!("hello: {e}"))?;
                if f.epoch.as_deref() != Some(h.epoch.as_str()) {
                    // another server instance: its sequence numbers mean nothing to us
                    f.last_seq = None;
                }
                f.epoch = Some(h.epoch);
                f.target = h.seq;
                if f.last_seq.is_some_and(|s| s >= h.seq) {
                    status.set_warm(true);
                }
            }
            "reset" => {
                status.count_resync();
                f.snapshot = Some(HashSet::new());
            }
            "snapshot" => {
                let Some(seen) = f.snapshot.as_mut() else {
                    return Err("snapshot data outside a snapshot".into());
                };
                for line in ev.data.lines().filter(|l| !l.trim().is_empty()) {
                    match Decision::from_json(line.as_bytes()) {
                        Ok(d) => {
                            seen.insert(d.subject.clone());
                            status.apply(table, FeedChange::Decision(Arc::new(d)));
                        }
                        Err(error) => {
                            tracing::debug!(%error, "invalid decision in the snapshot");
                            status.count_invalid();
                        }
                    }
                }
            }
            "snapshot_end" => {
                let Some(seen) = f.snapshot.take() else {
                    return Err("snapshot_end outside a snapshot".into());
                };
                let removed = table.retain(|s, _| seen.contains(s));
                let end: SnapshotEnd =
                    serde_json::from_str(&ev.data).map_err(|e| format!("snapshot_end: {e}"))?;
                tracing::debug!(
                    seq = end.seq,
                    count = end.count,
                    removed,
                    "decision snapshot applied"
                );
                f.last_seq = Some(id.unwrap_or(end.seq));
                if f.last_seq.is_some_and(|s| s >= f.target) {
                    status.set_warm(true);
                }
            }
            "decision" | "revoke" => {
                let change = if ev.event == "decision" {
                    Decision::from_json(ev.data.as_bytes())
                        .map(|d| FeedChange::Decision(Arc::new(d)))
                } else {
                    serde_json::from_str::<RevokeData>(&ev.data)
                        .map(|r| FeedChange::Revoke(r.subject))
                        .map_err(|e| EnforceError::InvalidDecision(e.to_string()))
                };
                match change {
                    Ok(c) => status.apply(table, c),
                    Err(error) => {
                        tracing::debug!(%error, "invalid change on the decision stream");
                        status.count_invalid();
                    }
                }
                if let Some(n) = id {
                    f.last_seq = Some(n);
                    if n >= f.target {
                        status.set_warm(true);
                    }
                }
            }
            // heartbeat, and events of later versions: contact only
            _ => {}
        }
        Ok(())
    }
}

/// One parsed server-sent event.
#[derive(Debug, Default, Clone, PartialEq)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

/// An incremental `text/event-stream` parser with a bound on buffered bytes.
#[derive(Debug, Default)]
struct SseParser {
    buf: BytesMut,
    current: SseEvent,
    has_data: bool,
    ready: VecDeque<SseEvent>,
}

impl SseParser {
    fn push(&mut self, data: &[u8]) -> Result<(), String> {
        self.buf.extend_from_slice(data);
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let line = self.buf.split_to(nl + 1);
            let line = &line[..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.line(line);
        }
        if self.buf.len() + self.current.data.len() > MAX_EVENT_BYTES {
            return Err(format!("an event is larger than {MAX_EVENT_BYTES} bytes"));
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8]) {
        if line.is_empty() {
            let ev = std::mem::take(&mut self.current);
            if self.has_data || !ev.event.is_empty() {
                self.ready.push_back(SseEvent {
                    event: if ev.event.is_empty() {
                        "message".into()
                    } else {
                        ev.event
                    },
                    ..ev
                });
            }
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.current.event = value.to_string(),
            "id" => self.current.id = Some(value.to_string()),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }

    fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Action, SubjectKind};

    fn dec(id: &str) -> Decision {
        Decision::new(
            Subject::new(SubjectKind::Identity, id),
            Action::Block,
            0.9,
            "rule",
            Duration::from_secs(60),
        )
    }

    #[test]
    fn parser_handles_split_frames_comments_and_multiline_data() {
        let mut p = SseParser::default();
        p.push(b": comment\nevent: snap").unwrap();
        assert!(p.next_event().is_none());
        p.push(b"shot\ndata: a\r\ndata: b\n\nid: 7\nevent: decision\ndata:x\n\n")
            .unwrap();
        let e = p.next_event().unwrap();
        assert_eq!(
            (e.event.as_str(), e.data.as_str(), e.id),
            ("snapshot", "a\nb", None)
        );
        let e = p.next_event().unwrap();
        assert_eq!((e.event.as_str(), e.data.as_str()), ("decision", "x"));
        assert_eq!(e.id.as_deref(), Some("7"));
        let mut p = SseParser::default();
        assert!(p.push(&vec![b'x'; MAX_EVENT_BYTES + 1]).is_err());
    }

    #[test]
    fn ring_replays_or_asks_for_a_snapshot() {
        let t = Arc::new(DecisionTable::new());
        let b = DecisionBroadcast::new(
            t.clone(),
            BroadcastOptions {
                ring_capacity: 3,
                channel_capacity: 16,
            },
        );
        for i in 0..5 {
            b.publish(dec(&format!("u{i}"))).unwrap();
        }
        b.revoke(Subject::new(SubjectKind::Identity, "u0"));
        assert_eq!(b.seq(), 6);
        assert_eq!(t.len(), 4);
        // the ring holds 4..=6
        let (seq, items) = b.replay_after(3);
        assert_eq!(seq, 6);
        let seqs: Vec<u64> = items.unwrap().iter().map(|i| i.seq).collect();
        assert_eq!(seqs, vec![4, 5, 6]);
        assert_eq!(b.replay_after(6).1.unwrap().len(), 0);
        assert!(b.replay_after(2).1.is_none(), "too old");
        assert!(b.replay_after(7).1.is_none(), "from the future");
        // an older decision for a subject does not change the table: not broadcast
        let mut old = dec("u1");
        old.issued_at = UnixMicros(old.issued_at.0 - 10_000_000);
        assert_eq!(b.publish(old).unwrap(), Upsert::Superseded);
        assert_eq!(b.seq(), 6);
    }
}
