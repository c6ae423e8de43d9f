//! `vigil demo`: the whole loop on one machine, with no external service. It starts
//!
//! - a small built-in upstream (answers every request with the status and size the traffic
//!   driver asks for, as the simulated API would have answered);
//! - the engine on the embedded default, with the enforcement proxy in front of that upstream
//!   (its access events are scored in process) and the dashboard at `/`;
//! - a traffic driver: the labelled simulator's benign users, API clients and one attacker per
//!   scenario, replayed in real time through the proxy (client IPs in `X-Forwarded-For`, which
//!   the proxy trusts from 127.0.0.1; user tokens re-signed with the demo's HS256 key so the
//!   proxy verifies them; login attempts as HTTP Basic, whose user name the proxy takes as the
//!   identity the attempt was for).
//!
//! The driver tallies what clients saw: a request refused by the proxy (403 block, 429 throttle,
//! as problem+json) counts against its sender, and so (separately) does a step-up challenge
//! (401 from the proxy). An attacker is "blocked" once any of its requests was blocked or
//! throttled; its detection time is from its first request to that refusal. A benign user is
//! "blocked" when any of its requests was blocked (403), "throttled" when one was throttled.
//!
//! Benign users answer a step-up challenge as people do: they complete the stronger login, and
//! their later requests carry a token with `acr: mfa`, which satisfies the proxy's step-up. An
//! attacker holding a stolen session or token cannot, and keeps being challenged.

use crate::Output;
use anyhow::{Context, Result};
use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode};
use base64::Engine as _;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use vigil_ingest::simulate::{Scenario, SimConfig, SimRequest, Simulation};

/// The HS256 key the demo's proxy verifies user tokens with (the demo signs them).
const DEMO_JWT_SECRET: &str = "vigil-demo-signing-key-not-a-secret-0123456789";
/// Attacks play this many times faster than in `vigil simulate`, so that a minute shows what
/// a few minutes of each attack do (an insider's bulk exports, a botnet's spread-out logins).
const ATTACK_PACE: u32 = 4;
/// Requests the driver keeps in flight at most.
const IN_FLIGHT: usize = 256;

#[derive(Args)]
pub struct DemoArgs {
    /// Run this many seconds, then print the summary and exit. Default: until Ctrl-C.
    #[arg(long)]
    duration: Option<u64>,
    /// `text` (a live line on a terminal, then a summary) or `json` (one JSON line at the end).
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    /// The engine's API and dashboard.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: String,
    /// The enforcement proxy the simulated clients call.
    #[arg(long, default_value = "127.0.0.1:8080")]
    proxy_listen: String,
    /// Seed of the simulated traffic.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Benign interactive users.
    #[arg(long, default_value_t = 40)]
    benign_users: usize,
    /// Keep the engine's data here. Default: a temporary directory, removed at exit.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    requests: u64,
    refused: u64,
    challenged: u64,
    errors: u64,
    /// Per scenario (one attacker each): when it started, when it was first refused, when it
    /// was first challenged (µs).
    attackers: BTreeMap<&'static str, (i64, Option<i64>, Option<i64>)>,
    /// Per benign user (identity, API key or IP): what it was ever answered.
    benign: HashMap<String, Seen>,
    /// Benign users (`identity:…`) who completed a step-up after a challenge.
    stepped_up: HashSet<String>,
}

/// What a benign user was ever answered.
#[derive(Default, Clone, Copy)]
struct Seen {
    blocked: bool,
    throttled: bool,
    challenged: bool,
}

#[derive(Serialize)]
struct Summary {
    duration_secs: f64,
    requests: u64,
    /// Requests the proxy refused (403 block, 429 throttle).
    refused: u64,
    /// Requests the proxy answered with a step-up challenge (401).
    challenged: u64,
    errors: u64,
    decisions: BTreeMap<String, u64>,
    attackers_total: usize,
    /// Attackers with at least one request blocked or throttled.
    attackers_blocked: usize,
    /// Attackers challenged to step up but never blocked or throttled.
    attackers_challenged_only: usize,
    benign_users: usize,
    /// Benign users with at least one request blocked (403).
    benign_blocked: usize,
    /// Benign users throttled (429) at least once, never blocked.
    benign_throttled: usize,
    /// Benign users challenged to step up (never blocked or throttled).
    benign_challenged: usize,
    /// Benign users who completed a step-up after a challenge.
    benign_stepped_up: usize,
    /// Who was blocked or throttled (at most 20): `identity:…`, `api_key:…` or `ip:…`.
    benign_blocked_users: Vec<String>,
    median_detect_secs: Option<f64>,
    /// Per scenario: seconds from the attacker's first request to its first refusal (null:
    /// never refused).
    detect_secs: BTreeMap<&'static str, Option<f64>>,
    dashboard: String,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The largest response the built-in upstream sends (the simulated exports are up to 80 MB).
const MAX_BODY: usize = 64 << 20;

/// The built-in upstream: the status of `x-vigil-demo-status` and a body of
/// `x-vigil-demo-bytes` bytes (at most [`MAX_BODY`]), streamed in 64 KiB chunks of one static
/// buffer.
async fn upstream(req: Request<Body>) -> Response<Body> {
    static FILL: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let status = h("x-vigil-demo-status")
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    let mut left = h("x-vigil-demo-bytes").unwrap_or(64).min(MAX_BODY as u64) as usize;
    let chunks = std::iter::from_fn(move || {
        let n = left.min(FILL.len());
        left -= n;
        (n > 0).then(|| Ok::<_, std::convert::Infallible>(Bytes::from_static(&FILL[..n])))
    });
    let mut r = Response::new(Body::from_stream(futures::stream::iter(chunks)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/csv"),
    );
    r
}

/// The engine's config: the embedded default plus the proxy in front of `upstream`.
fn config(
    args: &DemoArgs,
    data_dir: &std::path::Path,
    upstream: std::net::SocketAddr,
) -> Result<crate::config::Config> {
    let text = format!(
        r#"data_dir = {data_dir:?}

[server]
listen = {listen:?}

[store]
flush_interval_ms = 1000

[proxy]
listen = {proxy:?}
upstream = "http://{upstream}"
trusted_proxies = ["127.0.0.1/32"]
basic_auth_identity = true

[proxy.jwt]
algorithms = ["HS256"]

[[proxy.jwt.keys]]
kid = "vigil-demo"
algorithm = "HS256"
secret = {secret:?}
"#,
        data_dir = data_dir.display().to_string(),
        listen = args.listen,
        proxy = args.proxy_listen,
        secret = DEMO_JWT_SECRET,
    );
    crate::config::Config::parse(&text, "vigil demo", Vec::new())
}

/// Re-signs a simulated token (random RS256 bytes) with the demo key, keeping its claims.
/// `jwt`'s claims signed with the demo's key; with `acr: mfa` when `stepped_up` (the user
/// completed a stronger login).
fn resign(
    jwt: &str,
    stepped_up: bool,
    cache: &mut HashMap<(String, bool), String>,
) -> Option<String> {
    if let Some(t) = cache.get(&(jwt.to_string(), stepped_up)) {
        return Some(t.clone());
    }
    let payload = jwt.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let mut claims: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    if stepped_up && let Some(c) = claims.as_object_mut() {
        c.insert("acr".into(), "mfa".into());
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("vigil-demo".into());
    let t = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(DEMO_JWT_SECRET.as_bytes()),
    )
    .ok()?;
    if cache.len() > 100_000 {
        cache.clear();
    }
    cache.insert((jwt.to_string(), stepped_up), t.clone());
    Some(t)
}

/// Who sent a request, for the tally.
fn sender(r: &SimRequest) -> Result<&'static str, String> {
    match r.scenario {
        Some(s) => Ok(s.as_str()),
        None => Err(match (&r.identity, &r.api_key) {
            (Some(i), _) => format!("identity:{i}"),
            // as the proxy names it (the demo's proxy has no salt), never the key itself
            (None, Some(k)) => format!(
                "api_key:{}",
                vigil_enforce::subjects::api_key_id_salted("", k)
            ),
            _ => format!("ip:{}", r.client_ip),
        }),
    }
}

/// A value for a header the client program sends, as that kind of program fills it in.
fn header_value<'a>(name: &str, r: &'a SimRequest) -> Option<&'a str> {
    let browser = r.header_names.iter().any(|h| h.starts_with("sec-fetch"));
    Some(match name.to_ascii_lowercase().as_str() {
        // hyper writes `Host` itself, first
        "host" => return None,
        "user-agent" => &r.user_agent,
        "accept" if browser => "application/json, text/plain, */*",
        "accept" => "*/*",
        "accept-language" => "en-US,en;q=0.9",
        "accept-encoding" => "gzip, deflate, br",
        "connection" => "keep-alive",
        "sec-ch-ua" => "\"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"",
        "sec-ch-ua-mobile" => "?0",
        "sec-ch-ua-platform" => "\"Windows\"",
        "sec-fetch-site" => "same-origin",
        "sec-fetch-mode" => "cors",
        "sec-fetch-dest" => "empty",
        "priority" => "u=1, i",
        "te" => "trailers",
        _ => "?",
    })
}

fn request(r: &SimRequest, proxy: &str, jwt: Option<String>) -> Result<Request<Full<Bytes>>> {
    let method: axum::http::Method = r.method.parse()?;
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{proxy}{}", r.path))
        .header("host", &r.host);
    // The header set of the program that sent it (its JA4H at the proxy): a browser's for a
    // browser user, a script's for a script, whatever user agent it claims.
    for name in r.header_names {
        if let Some(v) = header_value(name, r) {
            b = b.header(*name, v);
        }
    }
    b = b
        .header("x-vigil-demo-status", r.status.to_string())
        .header("x-vigil-demo-bytes", r.bytes_out.to_string());
    let mut xff = r.forwarded_for.clone();
    xff.push(r.client_ip.clone());
    b = b.header("x-forwarded-for", xff.join(", "));
    if let Some(referer) = &r.referer {
        b = b.header("referer", referer);
    }
    if let Some(t) = jwt {
        b = b.header("authorization", format!("Bearer {t}"));
    } else if let Some(user) = &r.identity {
        let creds = base64::engine::general_purpose::STANDARD.encode(format!("{user}:guess"));
        b = b.header("authorization", format!("Basic {creds}"));
    }
    if let Some(s) = &r.session {
        b = b.header("cookie", format!("session={s}"));
    }
    if let Some(k) = &r.api_key {
        b = b.header("x-api-key", k);
    }
    Ok(b.body(Full::new(Bytes::new()))?)
}

/// What the proxy (not the upstream, which never answers problem+json) did to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Passed,
    /// 403.
    Blocked,
    /// 429.
    Throttled,
    /// 401 with a step-up challenge.
    Challenged,
}

fn verdict(status: StatusCode, headers: &HeaderMap) -> Verdict {
    let problem = headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    match status {
        StatusCode::FORBIDDEN if problem => Verdict::Blocked,
        StatusCode::TOO_MANY_REQUESTS if problem => Verdict::Throttled,
        StatusCode::UNAUTHORIZED if problem => Verdict::Challenged,
        _ => Verdict::Passed,
    }
}

/// Replays simulations back to back through the proxy until `stop`.
async fn drive(
    args_seed: u64,
    round_secs: u64,
    benign_users: usize,
    proxy: String,
    tally: Arc<Mutex<Tally>>,
    stop: CancellationToken,
) -> Result<()> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut cache = HashMap::new();
    let mut round = 0u64;
    while !stop.is_cancelled() {
        let start_s = now_us() / 1_000_000 + 1;
        let sim = Simulation::new(SimConfig {
            seed: args_seed + round,
            start_unix_secs: start_s,
            duration_secs: round_secs,
            benign_users,
            benign_api_clients: 4,
            attackers_per_scenario: 1,
            attack_pace: ATTACK_PACE,
            scenarios: Scenario::ALL.to_vec(),
            ..SimConfig::default()
        })?;
        round += 1;
        for r in sim.requests() {
            let wait_us = r.timestamp_us - now_us();
            if wait_us > 0 {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_micros(wait_us as u64)) => {}
                }
            }
            let who = sender(&r);
            // Who can complete a step-up: a person with their own account, and the insider
            // exfiltrating with theirs; not a thief holding someone else's session or
            // token, nor a botnet guessing a password.
            let login = match &who {
                Err(u) => Some(u.clone()),
                Ok(s) if *s == Scenario::DataExfiltration.as_str() => Some(format!("attacker:{s}")),
                Ok(_) => None,
            };
            let stepped_up = login.as_ref().is_some_and(|u| {
                tally
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .stepped_up
                    .contains(u)
            });
            let jwt = r
                .jwt
                .as_deref()
                .and_then(|t| resign(t, stepped_up, &mut cache));
            let step_up_as = login.filter(|_| jwt.is_some());
            let req = request(&r, &proxy, jwt)?;
            {
                let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                t.requests += 1;
                match &who {
                    Ok(s) => {
                        t.attackers.entry(s).or_insert((now_us(), None, None));
                    }
                    Err(u) => {
                        t.benign.entry(u.clone()).or_default();
                    }
                }
            }
            let permit = tokio::select! {
                () = stop.cancelled() => break,
                p = slots.clone().acquire_owned() => p?,
            };
            let client = client.clone();
            let tally = tally.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let exchange = async {
                    let resp = client.request(req).await?;
                    let denied = verdict(resp.status(), resp.headers());
                    // read the body so the connection goes back to the pool
                    resp.into_body().collect().await?;
                    anyhow::Ok(denied)
                };
                let Ok(Ok(denied)) = tokio::time::timeout(Duration::from_secs(10), exchange).await
                else {
                    tally.lock().unwrap_or_else(|p| p.into_inner()).errors += 1;
                    return;
                };
                if denied == Verdict::Passed {
                    return;
                }
                let refused = matches!(denied, Verdict::Blocked | Verdict::Throttled);
                let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                if denied == Verdict::Challenged
                    && let Some(u) = step_up_as
                {
                    // completes the stronger login asked for
                    t.stepped_up.insert(u);
                }
                if refused {
                    t.refused += 1;
                } else {
                    t.challenged += 1;
                }
                match who {
                    Ok(s) => {
                        if let Some(a) = t.attackers.get_mut(s) {
                            if refused {
                                a.1.get_or_insert_with(now_us);
                            } else {
                                a.2.get_or_insert_with(now_us);
                            }
                        }
                    }
                    Err(u) => {
                        let b = t.benign.entry(u).or_default();
                        match denied {
                            Verdict::Blocked => b.blocked = true,
                            Verdict::Throttled => b.throttled = true,
                            _ => b.challenged = true,
                        }
                    }
                }
            });
        }
    }
    // wait for the requests in flight
    let _ = slots.acquire_many(IN_FLIGHT as u32).await;
    Ok(())
}

/// Decisions by action, from the engine's `/metrics`.
async fn decisions(listen: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let Ok(uri) = format!("http://{listen}/metrics").parse::<axum::http::Uri>() else {
        return out;
    };
    let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(5), client.get(uri)).await else {
        return out;
    };
    let Ok(body) = resp.into_body().collect().await else {
        return out;
    };
    let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("vigil_decisions_total{action=\"")
            && let Some((action, n)) = rest.split_once("\"} ")
            && let Ok(n) = n.trim().parse()
        {
            out.insert(action.to_string(), n);
        }
    }
    out
}

fn summarize(
    t: &Tally,
    decisions: BTreeMap<String, u64>,
    elapsed: Duration,
    listen: &str,
) -> Summary {
    let detect: BTreeMap<&'static str, Option<f64>> = t
        .attackers
        .iter()
        .map(|(s, (first, det, _))| (*s, det.map(|d| (d - first).max(0) as f64 / 1e6)))
        .collect();
    let mut times: Vec<f64> = detect.values().filter_map(|d| *d).collect();
    times.sort_by(f64::total_cmp);
    let median = (!times.is_empty()).then(|| {
        let m = times.len() / 2;
        if times.len() % 2 == 1 {
            times[m]
        } else {
            (times[m - 1] + times[m]) / 2.0
        }
    });
    Summary {
        duration_secs: elapsed.as_secs_f64(),
        requests: t.requests,
        refused: t.refused,
        challenged: t.challenged,
        errors: t.errors,
        decisions,
        attackers_total: t.attackers.len(),
        attackers_blocked: times.len(),
        attackers_challenged_only: t
            .attackers
            .values()
            .filter(|a| a.1.is_none() && a.2.is_some())
            .count(),
        benign_users: t.benign.len(),
        benign_blocked: t.benign.values().filter(|b| b.blocked).count(),
        benign_throttled: t
            .benign
            .values()
            .filter(|b| !b.blocked && b.throttled)
            .count(),
        benign_challenged: t
            .benign
            .values()
            .filter(|b| !b.blocked && !b.throttled && b.challenged)
            .count(),
        benign_stepped_up: t
            .stepped_up
            .iter()
            .filter(|u| !u.starts_with("attacker:"))
            .count(),
        benign_blocked_users: {
            let mut v: Vec<String> = t
                .benign
                .iter()
                .filter(|(_, b)| b.blocked || b.throttled)
                .map(|(u, _)| u.clone())
                .collect();
            v.sort();
            v.truncate(20);
            v
        },
        median_detect_secs: median,
        detect_secs: detect,
        dashboard: format!("http://{listen}/"),
    }
}

pub fn demo(args: DemoArgs) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run(args))
}

async fn run(args: DemoArgs) -> Result<()> {
    let (data_dir, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("vigil-demo-{}", std::process::id())),
            true,
        ),
    };
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let up_addr = up.local_addr()?;
    let stop = CancellationToken::new();
    let up_stop = stop.clone();
    let upstream_task = tokio::spawn(async move {
        let app = axum::Router::new().fallback(upstream);
        axum::serve(up, app)
            .with_graceful_shutdown(up_stop.cancelled_owned())
            .await
    });
    let cfg = config(&args, &data_dir, up_addr)?;
    let engine_stop = CancellationToken::new();
    let es = engine_stop.clone();
    let engine = tokio::spawn(crate::run::run_until(cfg, None, async move {
        es.cancelled().await
    }));
    // ready when the proxy and the API answer (or the engine failed to start)
    let proxy_ready = async {
        loop {
            if tokio::net::TcpStream::connect(&args.proxy_listen)
                .await
                .is_ok()
                && tokio::net::TcpStream::connect(&args.listen).await.is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut engine = engine;
    tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(60), proxy_ready) => {
            r.map_err(|_| anyhow::anyhow!("the engine did not start within 60 s"))?;
        }
        r = &mut engine => {
            stop.cancel();
            return Err(match r {
                Ok(Err(e)) => e,
                Ok(Ok(())) => anyhow::anyhow!("the engine stopped"),
                Err(e) => e.into(),
            });
        }
    }
    let terminal = args.output == Output::Text && std::io::stderr().is_terminal();
    if args.output == Output::Text {
        eprintln!(
            "vigil demo: dashboard http://{}/  proxy http://{}  (Ctrl-C to stop)",
            args.listen, args.proxy_listen
        );
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    // a bounded demo is one simulation of its length (attacks start in its first half);
    // an open-ended one, five-minute simulations back to back
    let driver = tokio::spawn(drive(
        args.seed,
        args.duration.map_or(300, |d| d.clamp(10, 3600)),
        args.benign_users,
        args.proxy_listen.clone(),
        tally.clone(),
        stop.clone(),
    ));
    let deadline = async {
        match args.duration {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let ctrl_c = crate::run::shutdown_signal();
    tokio::pin!(ctrl_c);
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            () = &mut deadline => break,
            () = &mut ctrl_c => break,
            _ = ticker.tick() => {
                if terminal {
                    let d = decisions(&args.listen).await;
                    let s = summarize(&tally.lock().unwrap_or_else(|p| p.into_inner()), d, started.elapsed(), &args.listen);
                    let by: Vec<String> = s.decisions.iter().filter(|(_, n)| **n > 0).map(|(a, n)| format!("{a} {n}")).collect();
                    eprint!(
                        "\r{:>5.0}s  requests {}  refused {}  decisions [{}]  attackers blocked {}/{}  benign blocked {}/{}   ",
                        s.duration_secs, s.requests, s.refused, by.join(", "),
                        s.attackers_blocked, s.attackers_total, s.benign_blocked, s.benign_users
                    );
                }
            }
        }
    }
    if terminal {
        eprintln!();
    }
    stop.cancel();
    driver.await.context("the traffic driver failed")??;
    let d = decisions(&args.listen).await;
    let summary = summarize(
        &tally.lock().unwrap_or_else(|p| p.into_inner()),
        d,
        started.elapsed(),
        &args.listen,
    );
    engine_stop.cancel();
    engine.await.context("the engine failed")??;
    let _ = upstream_task.await;
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string(&summary)?),
        Output::Text => {
            println!(
                "{} requests in {:.0}s, {} refused by the proxy",
                summary.requests, summary.duration_secs, summary.refused
            );
            let by: Vec<String> = summary
                .decisions
                .iter()
                .map(|(a, n)| format!("{a} {n}"))
                .collect();
            println!("decisions: {}", by.join(", "));
            println!(
                "attackers blocked or throttled: {}/{} (median {} to detect)",
                summary.attackers_blocked,
                summary.attackers_total,
                summary
                    .median_detect_secs
                    .map_or("-".to_string(), |m| format!("{m:.1}s"))
            );
            for (s, d) in &summary.detect_secs {
                println!(
                    "  {s:<26} {}",
                    d.map_or("not blocked".to_string(), |d| format!("{d:.1}s"))
                );
            }
            println!(
                "attackers only challenged to step up: {}",
                summary.attackers_challenged_only
            );
            println!(
                "benign users blocked: {}/{}, throttled: {}, challenged to step up: {} ({} stepped up)",
                summary.benign_blocked,
                summary.benign_users,
                summary.benign_throttled,
                summary.benign_challenged,
                summary.benign_stepped_up
            );
        }
    }
    Ok(())
}
