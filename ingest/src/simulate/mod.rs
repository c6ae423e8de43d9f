//! Labelled synthetic gateway traffic, for tests, benchmarks, the demo and model training.
//!
//! A [`Simulation`] is a deterministic function of its [`SimConfig`] (seed included): benign
//! users browsing a shop through its API gateway (JWT sessions, refreshes, re-logins, office
//! NATs, mobile roaming, diurnal rates), benign server-to-server API clients, and attackers
//! running the labelled [`Scenario`]s. [`Simulation::requests`] streams the requests in
//! non-decreasing event time, holding one heap entry per actor (never the whole run);
//! [`render`] writes a request as one line of any supported gateway format ([`SimFormat`]);
//! [`Simulation::labels`] is the ground truth: for each attacker, the subjects an engine should
//! act on and when the attack started.
//!
//! Guarantees:
//! - Same configuration, same bytes: every random choice comes from ChaCha8 streams seeded by
//!   `seed`, and nothing reads the clock.
//! - Every label's subject appears in requests whose `scenario` is the label's scenario, from
//!   the label's `start_us` on; benign requests have `scenario: None`.
//! - Configuration errors are values ([`SimError`]) naming the key; nothing here panics on
//!   configuration input.

mod actors;
mod attacks;
mod config;
mod injection;
mod plan;
mod render;
mod stacks;
mod text;
mod traffic;
mod users;

use std::io::{self, Write};

use serde::ser::{Serialize, SerializeStruct, Serializer};

pub use actors::Requests;
pub use config::{
    MAX_ATTACKERS_PER_SCENARIO, MAX_BENIGN_API_CLIENTS, MAX_BENIGN_USERS, MAX_DURATION_SECS,
    Scenario, SimConfig, SimError,
};
pub use render::{DEFAULT_OTLP_SERVICE, SimFormat, render, render_otlp_batch};

/// One simulated request, as a gateway saw it. `scenario` is the ground truth and is never
/// rendered.
#[derive(Clone, Debug, PartialEq)]
pub struct SimRequest {
    /// Event time, microseconds since the Unix epoch.
    pub timestamp_us: i64,
    /// The TCP peer's address.
    pub client_ip: String,
    /// `X-Forwarded-For` as received (usually empty; a client-side proxy's internal address,
    /// or a spoofed one).
    pub forwarded_for: Vec<String>,
    /// The JWT `sub` (also inside `jwt`); on `/login` attempts, the username tried.
    pub identity: Option<String>,
    /// The session id: the JWT `sid` and the `session` cookie.
    pub session: Option<String>,
    /// Compact JWT sent as `Authorization: Bearer`, with `sub`, `sid`, `iss`, `iat`, `exp`.
    pub jwt: Option<String>,
    /// The raw API key sent in `X-Api-Key`.
    pub api_key: Option<String>,
    pub method: &'static str,
    pub host: String,
    /// Path including `?query` when there is one.
    pub path: String,
    pub status: u16,
    /// Request size: request line, headers and body.
    pub bytes_in: u64,
    /// Response body size.
    pub bytes_out: u64,
    /// Total time at the gateway, milliseconds (microsecond resolution).
    pub latency_ms: f64,
    /// Time waiting for the upstream, milliseconds (microsecond resolution).
    pub upstream_latency_ms: f64,
    pub user_agent: String,
    pub referer: Option<String>,
    /// UUID-shaped, unique per request.
    pub request_id: String,
    /// `"TLSv1.3"` or `"TLSv1.2"`.
    pub tls_version: &'static str,
    /// The client's JA4 TLS fingerprint, as a gateway module or a CDN header reports it.
    pub tls_fingerprint: String,
    /// The request's JA4H HTTP fingerprint.
    pub http_fingerprint: String,
    /// Header names the client program sends, in its order, without credentials, `Cookie`
    /// and `Referer` (what a replay such as `vigil demo` sends to look like the same program).
    pub header_names: &'static [&'static str],
    /// Upstream replica, `10.0.<service>.<replica>:8080`.
    pub upstream: String,
    /// The attack this request belongs to; `None` for benign traffic.
    pub scenario: Option<Scenario>,
}

/// Ground truth: a subject an engine should act on, because of which scenario, from when.
///
/// Serializes to one NDJSON object:
/// `{"kind":"ip","id":"45.1.2.3","scenario":"credential_stuffing","start":"2026-11-24T06:10:00.000000Z","start_us":1795500600000000}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Subject kind: `"identity"`, `"session"`, `"ip"` or `"api_key"`.
    pub kind: &'static str,
    /// Subject id; for `api_key`, [`crate::normalize::api_key_id`] of the raw key.
    pub id: String,
    pub scenario: Scenario,
    /// Event time of the attacker's first request, microseconds since the Unix epoch.
    pub start_us: i64,
}

impl Serialize for Label {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut start = String::with_capacity(27);
        text::push_rfc3339(&mut start, self.start_us, text::Frac::Micros);
        let mut s = serializer.serialize_struct("Label", 5)?;
        s.serialize_field("kind", self.kind)?;
        s.serialize_field("id", &self.id)?;
        s.serialize_field("scenario", self.scenario.as_str())?;
        s.serialize_field("start", &start)?;
        s.serialize_field("start_us", &self.start_us)?;
        s.end()
    }
}

/// A configured simulation: its cast and labels are fixed at construction; requests are
/// generated lazily and identically on every call of [`Simulation::requests`].
pub struct Simulation {
    cfg: SimConfig,
    plan: plan::Plan,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("cfg", &self.cfg)
            .field("labels", &self.plan.labels.len())
            .finish_non_exhaustive()
    }
}

impl Simulation {
    /// Validates `cfg` (errors name the offending key) and decides the cast.
    pub fn new(cfg: SimConfig) -> Result<Self, SimError> {
        cfg.validate()?;
        let plan = plan::Plan::build(&cfg);
        Ok(Simulation { cfg, plan })
    }

    /// The configuration this simulation was built from.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Ground-truth labels, ordered by attack start.
    pub fn labels(&self) -> &[Label] {
        &self.plan.labels
    }

    /// All requests of the run, in non-decreasing `timestamp_us` order.
    pub fn requests(&self) -> Requests<'_> {
        Requests::new(self)
    }
}

/// Requests rendered per OTLP line by [`write_logs`].
pub const OTLP_BATCH: usize = 50;

/// Writes the simulation's requests as `format` lines (newline terminated) to `out`, at most
/// `limit` requests when given, and returns the number of lines written. OTLP groups up to
/// [`OTLP_BATCH`] requests per line. Output is buffered internally and flushed at the end.
pub fn write_logs<W: Write>(
    sim: &Simulation,
    format: SimFormat,
    limit: Option<u64>,
    mut out: W,
) -> io::Result<u64> {
    const FLUSH_AT: usize = 1 << 16;
    let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut buf = String::with_capacity(FLUSH_AT + 8192);
    let mut lines = 0u64;
    let requests = sim.requests().take(limit);
    if format == SimFormat::Otlp {
        let mut batch = Vec::with_capacity(OTLP_BATCH);
        let flush_batch = |batch: &mut Vec<SimRequest>, buf: &mut String| {
            render_otlp_batch(batch, DEFAULT_OTLP_SERVICE, buf);
            buf.push('\n');
            batch.clear();
        };
        for req in requests {
            batch.push(req);
            if batch.len() == OTLP_BATCH {
                flush_batch(&mut batch, &mut buf);
                lines += 1;
                if buf.len() >= FLUSH_AT {
                    out.write_all(buf.as_bytes())?;
                    buf.clear();
                }
            }
        }
        if !batch.is_empty() {
            flush_batch(&mut batch, &mut buf);
            lines += 1;
        }
    } else {
        for req in requests {
            render(format, &req, &mut buf);
            buf.push('\n');
            lines += 1;
            if buf.len() >= FLUSH_AT {
                out.write_all(buf.as_bytes())?;
                buf.clear();
            }
        }
    }
    out.write_all(buf.as_bytes())?;
    out.flush()?;
    Ok(lines)
}

/// Writes the labels as NDJSON (one [`Label`] object per line) and returns how many.
pub fn write_labels<W: Write>(sim: &Simulation, mut out: W) -> io::Result<u64> {
    let mut n = 0;
    for label in sim.labels() {
        serde_json::to_writer(&mut out, label)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_serializes_to_the_documented_object() {
        let l = Label {
            kind: "ip",
            id: "45.1.2.3".into(),
            scenario: Scenario::CredentialStuffing,
            start_us: 1_795_500_600_000_001,
        };
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"kind":"ip","id":"45.1.2.3","scenario":"credential_stuffing","start":"2026-11-24T06:10:00.000001Z","start_us":1795500600000001}"#
        );
    }

    #[test]
    fn small_runs_are_ordered_and_bounded() {
        let cfg = SimConfig {
            benign_users: 30,
            benign_api_clients: 3,
            attackers_per_scenario: 1,
            duration_secs: 600,
            ..SimConfig::default()
        };
        let sim = Simulation::new(cfg.clone()).unwrap();
        let mut last = i64::MIN;
        let mut n = 0;
        for r in sim.requests() {
            assert!(r.timestamp_us >= last);
            assert!(r.timestamp_us >= cfg.start_us() && r.timestamp_us < cfg.end_us());
            last = r.timestamp_us;
            n += 1;
        }
        assert!(n > 100, "{n}");
    }

    #[test]
    fn tiny_and_empty_runs_work() {
        for cfg in [
            SimConfig {
                duration_secs: 1,
                benign_users: 1,
                benign_api_clients: 1,
                attackers_per_scenario: 1,
                ..SimConfig::default()
            },
            SimConfig {
                benign_users: 0,
                benign_api_clients: 0,
                attackers_per_scenario: 0,
                ..SimConfig::default()
            },
        ] {
            let sim = Simulation::new(cfg.clone()).unwrap();
            let reqs: Vec<_> = sim.requests().collect();
            for l in sim.labels() {
                assert!(
                    reqs.iter().any(|r| r.scenario == Some(l.scenario)),
                    "{l:?} has no request"
                );
            }
            if cfg.attackers_per_scenario == 0 {
                assert!(sim.labels().is_empty());
            }
        }
    }
}
