//! The raw material of simulated traffic: random distributions, address ranges, user-agent
//! pools, identifiers (request ids, session ids, JWTs, API keys) and the assembly of one
//! [`SimRequest`] from who sent it and what the upstream answered.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use super::stacks::{Sent, Stack};
use super::text::{push_json_str, push_u64};
use super::{Scenario, SimRequest};

pub(crate) type SimRng = ChaCha8Rng;

// ---------------------------------------------------------------------------------------------
// Distributions (rand_distr is not a dependency; these are the textbook transforms).

/// A standard normal variate (Box–Muller).
pub(crate) fn normal(rng: &mut SimRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A log-normal variate with the given median and shape.
pub(crate) fn lognormal(rng: &mut SimRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// An exponential variate with the given mean.
pub(crate) fn exponential(rng: &mut SimRng, mean: f64) -> f64 {
    -mean * (1.0 - rng.random::<f64>()).ln()
}

/// True with probability `p`.
pub(crate) fn chance(rng: &mut SimRng, p: f64) -> bool {
    rng.random::<f64>() < p
}

/// Uniform in `[lo, hi)`; `lo` when the range is empty.
pub(crate) fn uniform(rng: &mut SimRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo).max(0.0) * rng.random::<f64>()
}

/// Uniform index in `0..len` (0 when `len` is 0, so callers must not index an empty slice).
pub(crate) fn index(rng: &mut SimRng, len: usize) -> usize {
    if len <= 1 {
        0
    } else {
        rng.random_range(0..len)
    }
}

/// One element of a non-empty constant pool.
pub(crate) fn pick<T: Copy>(rng: &mut SimRng, items: &[T]) -> T {
    items[index(rng, items.len())]
}

/// One value of a constant, non-empty weighted table.
pub(crate) fn weighted<T: Copy>(rng: &mut SimRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|x| x.1).sum();
    let mut r = rng.random_range(0..total.max(1));
    for &(v, w) in items {
        if r < w {
            return v;
        }
        r -= w;
    }
    items[items.len() - 1].0
}

/// Seconds to whole microseconds, clamped to `[0, 10^12]` (about 11.6 days).
pub(crate) fn secs_us(secs: f64) -> i64 {
    (secs * 1e6).clamp(0.0, 1e12) as i64
}

/// Rounds to microsecond resolution, so rendered durations are exact.
pub(crate) fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// Relative request rate of interactive users at an instant: low at night (03:00 UTC), highest
/// in the afternoon (15:00 UTC).
pub(crate) fn diurnal(ts_us: i64) -> f64 {
    let hour = ts_us.div_euclid(1_000_000).rem_euclid(86_400) as f64 / 3600.0;
    let phase = (hour - 3.0) / 24.0 * std::f64::consts::TAU;
    0.3 + 0.7 * (0.5 - 0.5 * phase.cos())
}

// ---------------------------------------------------------------------------------------------
// Addresses. Each class of actor draws from its own (first octet, second-octet range) blocks,
// so the classes never collide and labels on IPs stay unambiguous.

/// `(first octet, lowest second octet, highest second octet)`.
pub(crate) type Block = (u8, u8, u8);

/// Home broadband.
pub(crate) const RESIDENTIAL: &[Block] = &[
    (24, 0, 255),
    (47, 128, 255),
    (50, 0, 255),
    (67, 160, 191),
    (68, 0, 127),
    (71, 0, 255),
    (73, 0, 255),
    (76, 0, 255),
    (81, 0, 255),
    (82, 0, 255),
    (84, 0, 255),
    (86, 0, 255),
    (88, 0, 255),
    (90, 0, 255),
    (92, 0, 255),
    (98, 0, 255),
    (108, 0, 63),
    (174, 0, 127),
    (176, 0, 255),
    (178, 0, 255),
    (188, 0, 255),
    (217, 0, 255),
];
/// Mobile carriers' egress (carrier-grade NAT: many subscribers behind each address).
pub(crate) const MOBILE: &[Block] = &[
    (172, 56, 58),
    (166, 128, 255),
    (174, 192, 255),
    (107, 64, 127),
    (37, 160, 175),
    (39, 32, 63),
];
/// Office egress NATs.
pub(crate) const CORPORATE: &[Block] = &[
    (62, 0, 255),
    (80, 0, 255),
    (193, 0, 255),
    (195, 0, 255),
    (12, 0, 255),
    (63, 64, 127),
];
/// Cloud providers, where benign API clients run.
pub(crate) const CLOUD: &[Block] = &[
    (34, 64, 127),
    (35, 184, 247),
    (52, 0, 95),
    (54, 64, 255),
    (3, 208, 255),
    (18, 128, 223),
    (20, 0, 127),
    (40, 64, 127),
];
/// VPS and bullet-proof hosting, where attack tools run.
pub(crate) const HOSTING: &[Block] = &[
    (45, 0, 255),
    (185, 0, 255),
    (5, 188, 188),
    (91, 92, 92),
    (141, 98, 98),
    (159, 203, 203),
    (167, 99, 99),
    (104, 248, 248),
    (146, 70, 70),
    (23, 94, 94),
    (209, 141, 141),
    (89, 248, 248),
];
/// Compromised home routers and IoT devices (botnets, residential proxies).
pub(crate) const BOTNET: &[Block] = &[
    (14, 0, 255),
    (36, 0, 127),
    (41, 0, 255),
    (58, 0, 127),
    (110, 0, 255),
    (113, 0, 255),
    (117, 0, 255),
    (125, 0, 255),
    (177, 0, 255),
    (186, 0, 255),
    (187, 0, 255),
    (200, 0, 255),
];

/// A random IPv4 address in one of `blocks`, as a number.
pub(crate) fn ip_u32(rng: &mut SimRng, blocks: &[Block]) -> u32 {
    let (a, lo, hi) = pick(rng, blocks);
    let b = rng.random_range(lo..=hi);
    let c: u8 = rng.random();
    let d = rng.random_range(1u8..=254);
    u32::from_be_bytes([a, b, c, d])
}

/// Dotted-quad text of an address.
pub(crate) fn ip_string(ip: u32) -> String {
    let mut s = String::with_capacity(15);
    for (i, o) in ip.to_be_bytes().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        push_u64(&mut s, u64::from(o));
    }
    s
}

/// A random address in `blocks`.
pub(crate) fn ip_in(rng: &mut SimRng, blocks: &[Block]) -> String {
    ip_string(ip_u32(rng, blocks))
}

/// A random address in `blocks` that is not yet in `used` (gives up uniqueness after many
/// collisions, which only very large configurations could cause).
pub(crate) fn unique_ip(
    rng: &mut SimRng,
    blocks: &[Block],
    used: &mut std::collections::HashSet<u32>,
) -> String {
    let mut ip = ip_u32(rng, blocks);
    for _ in 0..64 {
        if used.insert(ip) {
            break;
        }
        ip = ip_u32(rng, blocks);
    }
    ip_string(ip)
}

/// A private address behind a client-side proxy, as it shows up in `X-Forwarded-For`.
pub(crate) fn internal_ip(rng: &mut SimRng) -> String {
    let o: [u8; 3] = [rng.random(), rng.random(), rng.random_range(2u8..=254)];
    let mut s = String::with_capacity(15);
    s.push_str("10.");
    push_u64(&mut s, u64::from(o[0]));
    s.push('.');
    push_u64(&mut s, u64::from(o[1]));
    s.push('.');
    push_u64(&mut s, u64::from(o[2]));
    s
}

// ---------------------------------------------------------------------------------------------
// User agents.

/// Desktop and mobile browsers, weighted roughly by market share.
pub(crate) const BROWSERS: &[(&str, u32)] = &[
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        30,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        8,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        9,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        9,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        8,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        5,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        2,
    ),
    (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        1,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1.1 Mobile/15E148 Safari/604.1",
        14,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        4,
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
        10,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        2,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        2,
    ),
];

/// The shop's own mobile app.
pub(crate) const APPS: &[(&str, u32)] = &[
    ("ShopApp/4.12.1 (iPhone; iOS 18.1.1; Scale/3.00)", 30),
    ("ShopApp/4.12.0 (iPhone; iOS 17.6.1; Scale/3.00)", 8),
    ("ShopApp/4.12.1 CFNetwork/1568.200.51 Darwin/24.1.0", 6),
    ("ShopApp/4.12.1 (Android 14; Pixel 8) okhttp/4.12.0", 18),
    ("ShopApp/4.11.3 (Android 13; SM-A536B) okhttp/4.12.0", 14),
    (
        "ShopApp/4.12.0 (Android 12; Redmi Note 11) okhttp/4.12.0",
        6,
    ),
];

/// HTTP libraries used by server-to-server integrations.
pub(crate) const LIBRARIES: &[(&str, u32)] = &[
    ("python-requests/2.31.0", 6),
    ("okhttp/4.12.0", 4),
    ("Go-http-client/2.0", 5),
    ("axios/1.7.7", 3),
    ("Apache-HttpClient/4.5.14 (Java/17.0.9)", 3),
    ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", 1),
];

/// Scripting tools as attackers leave them (no effort to look like a browser).
pub(crate) const BOT_TOOLS: &[&str] = &[
    "python-requests/2.31.0",
    "python-requests/2.28.1",
    "Go-http-client/1.1",
    "curl/8.5.0",
    "axios/1.6.8",
    "python-httpx/0.27.0",
    "okhttp/3.14.9",
];

/// Vulnerability scanners and reconnaissance tools.
pub(crate) const SCANNERS: &[&str] = &[
    "sqlmap/1.7.12#stable (https://sqlmap.org)",
    "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000003)",
    "Mozilla/5.0 zgrab/0.x",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/74.0.3729.169 Safari/537.36 Nuclei",
    "gobuster/3.6",
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
    "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)",
    "Fuzz Faster U Fool v2.1.0-dev",
];

/// Crawlers and headless browsers.
pub(crate) const CRAWLERS: &[&str] = &[
    "Scrapy/2.11.2 (+https://scrapy.org)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.6367.60 Safari/537.36",
    "python-requests/2.31.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
];

/// Just the browser strings of [`BROWSERS`], for attackers that rotate through them.
pub(crate) fn browser(rng: &mut SimRng) -> &'static str {
    weighted(rng, BROWSERS)
}

/// How an attacker picks its user agent for each request.
#[derive(Clone, Copy, Debug)]
pub(crate) enum UaMode {
    /// One string for every request.
    Fixed(&'static str),
    /// A new pick from a pool for every request.
    Rotate(&'static [&'static str]),
    /// A new browser string (weighted) for every request.
    RotateBrowsers,
}

impl UaMode {
    pub(crate) fn pick(self, rng: &mut SimRng) -> &'static str {
        match self {
            UaMode::Fixed(ua) => ua,
            UaMode::Rotate(pool) => pick(rng, pool),
            UaMode::RotateBrowsers => browser(rng),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Identifiers.

/// A random version-4 UUID in its canonical text form.
pub(crate) fn uuid_v4(rng: &mut SimRng) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_text(b)
}

/// A stable UUID-shaped id derived from a name (for gateway-side ids such as Kong consumers).
pub(crate) fn uuid_from_name(name: &str, salt: &str) -> String {
    let h = xxhash_rust::xxh3::xxh3_128_with_seed(
        name.as_bytes(),
        xxhash_rust::xxh3::xxh3_64(salt.as_bytes()),
    );
    let mut b = h.to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_text(b)
}

fn uuid_text(b: [u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, byte) in b.into_iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(char::from(HEX[usize::from(byte >> 4)]));
        s.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    s
}

/// A session id as a session cookie carries it (24 base64url characters).
pub(crate) fn session_id(rng: &mut SimRng) -> String {
    let mut b = [0u8; 18];
    rng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// A raw API key: `vk_live_` and 32 base62 characters.
pub(crate) fn api_key(rng: &mut SimRng) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut s = String::with_capacity(40);
    s.push_str("vk_live_");
    for _ in 0..32 {
        s.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    s
}

/// Who issues the JWTs, derived from the gateway's domain.
pub(crate) fn issuer(gateway_host: &str) -> String {
    format!("https://auth.{}/", base_domain(gateway_host))
}

/// The shop's web origin (what browsers send as `Referer`), derived from the gateway's domain.
pub(crate) fn web_origin(gateway_host: &str) -> String {
    format!("https://shop.{}", base_domain(gateway_host))
}

fn base_domain(host: &str) -> &str {
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    match host.split_once('.') {
        Some((first, rest))
            if rest.contains('.') && matches!(first, "api" | "gw" | "gateway" | "edge") =>
        {
            rest
        }
        _ => host,
    }
}

/// A compact JWT (`header.payload.signature`, base64url) with `sub`, `sid`, `iss`, `iat` and
/// `exp`. The signature is random bytes of RS256's length: well-formed, not verifiable.
pub(crate) fn jwt(
    rng: &mut SimRng,
    iss: &str,
    sub: &str,
    sid: &str,
    iat_s: i64,
    exp_s: i64,
) -> String {
    const HEADER: &str = r#"{"alg":"RS256","typ":"JWT","kid":"vigil-sim-2026"}"#;
    let mut payload = String::with_capacity(160);
    payload.push_str("{\"sub\":");
    push_json_str(&mut payload, sub);
    payload.push_str(",\"sid\":");
    push_json_str(&mut payload, sid);
    payload.push_str(",\"iss\":");
    push_json_str(&mut payload, iss);
    payload.push_str(",\"iat\":");
    payload.push_str(&iat_s.to_string());
    payload.push_str(",\"exp\":");
    payload.push_str(&exp_s.to_string());
    payload.push('}');
    let mut sig = [0u8; 256];
    rng.fill_bytes(&mut sig);
    let mut out = String::with_capacity(520);
    URL_SAFE_NO_PAD.encode_string(HEADER, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Upstream services.

/// The upstream service a route is proxied to. Its number is the third octet of the service's
/// upstream addresses (`10.0.<n>.<replica>:8080`), which renderers map back to a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Products = 1,
    Orders = 2,
    Users = 3,
    Static = 4,
    Auth = 5,
    Search = 6,
    Reports = 7,
    Web = 8,
    Inventory = 9,
    Events = 10,
}

/// The service name behind an upstream address written by [`Service::upstream`].
pub(crate) fn service_name(upstream: &str) -> &'static str {
    let third = upstream
        .split('.')
        .nth(2)
        .and_then(|o| o.parse::<u8>().ok());
    match third {
        Some(1) => "products",
        Some(2) => "orders",
        Some(3) => "users",
        Some(4) => "static",
        Some(5) => "auth",
        Some(6) => "search",
        Some(7) => "reports",
        Some(8) => "web",
        Some(9) => "inventory",
        Some(10) => "events",
        _ => "shop",
    }
}

impl Service {
    /// One of the service's three replicas.
    fn upstream(self, rng: &mut SimRng) -> String {
        let mut s = String::with_capacity(16);
        s.push_str("10.0.");
        push_u64(&mut s, self as u64);
        s.push('.');
        push_u64(&mut s, rng.random_range(11u64..=13));
        s.push_str(":8080");
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Assembling a request.

/// What the client sent besides the request line: its address and credentials.
pub(crate) struct Who {
    pub client_ip: String,
    pub forwarded_for: Vec<String>,
    pub identity: Option<String>,
    pub session: Option<String>,
    pub jwt: Option<String>,
    pub api_key: Option<String>,
    pub user_agent: &'static str,
    pub referer: Option<String>,
    pub tls_version: &'static str,
    /// The client program, whatever `user_agent` says.
    pub stack: &'static Stack,
}

/// The request line and what the upstream answered.
pub(crate) struct Draft {
    pub method: &'static str,
    pub path: String,
    pub status: u16,
    /// Request body bytes (headers are estimated from the rest of the request).
    pub body_in: u64,
    pub bytes_out: u64,
    pub upstream_ms: f64,
    pub service: Service,
}

impl Draft {
    pub(crate) fn get(
        path: String,
        status: u16,
        bytes_out: u64,
        upstream_ms: f64,
        service: Service,
    ) -> Draft {
        Draft {
            method: "GET",
            path,
            status,
            body_in: 0,
            bytes_out,
            upstream_ms,
            service,
        }
    }
}

/// Size of a JSON error body for a status, as the upstream's framework writes it.
pub(crate) fn error_body(rng: &mut SimRng, status: u16) -> u64 {
    let base = match status {
        400 => 112,
        401 => 61,
        402 => 96,
        403 => 74,
        404 => 88,
        409 => 102,
        422 => 140,
        429 => 83,
        _ => 150,
    };
    base + rng.random_range(0..24)
}

/// A rare server error (0.12 % of proxied requests), as `(status, bytes_out, upstream_ms)`.
pub(crate) fn maybe_server_error(rng: &mut SimRng) -> Option<(u16, u64, f64)> {
    if !chance(rng, 0.0012) {
        return None;
    }
    Some(match rng.random_range(0..10) {
        0..=4 => (502, 150 + rng.random_range(0..20), uniform(rng, 0.4, 4.0)),
        5..=7 => (503, 182 + rng.random_range(0..20), uniform(rng, 0.2, 2.0)),
        8 => (
            500,
            120 + rng.random_range(0..60),
            lognormal(rng, 40.0, 0.6),
        ),
        _ => (
            504,
            160 + rng.random_range(0..20),
            15_000.0 + uniform(rng, 0.0, 20.0),
        ),
    })
}

/// Builds the request: request id, upstream replica, request size and gateway latency.
pub(crate) fn finish(
    rng: &mut SimRng,
    timestamp_us: i64,
    host: &str,
    who: Who,
    draft: Draft,
    scenario: Option<Scenario>,
) -> SimRequest {
    let mut bytes_in = 96
        + draft.method.len()
        + draft.path.len()
        + host.len()
        + who.user_agent.len()
        + rng.random_range(0..48);
    if let Some(j) = &who.jwt {
        bytes_in += 23 + j.len();
    }
    if let Some(k) = &who.api_key {
        bytes_in += 13 + k.len();
    }
    if let Some(s) = &who.session {
        bytes_in += 19 + s.len();
    }
    if let Some(r) = &who.referer {
        bytes_in += 11 + r.len();
    }
    for f in &who.forwarded_for {
        bytes_in += 19 + f.len();
    }
    let sent = Sent {
        method: draft.method,
        authorization: who.jwt.is_some(),
        api_key: who.api_key.is_some(),
        session: who.session.as_deref(),
        referer: who.referer.is_some(),
    };
    let http_fingerprint = who.stack.ja4h(&sent);
    let tls_fingerprint = who.stack.ja4(who.tls_version);
    let upstream_ms = round_ms(draft.upstream_ms.max(0.05));
    let overhead = lognormal(rng, 0.6, 0.5).min(40.0);
    let latency_ms = round_ms(upstream_ms + overhead);
    SimRequest {
        timestamp_us,
        client_ip: who.client_ip,
        forwarded_for: who.forwarded_for,
        identity: who.identity,
        session: who.session,
        jwt: who.jwt,
        api_key: who.api_key,
        method: draft.method,
        host: host.to_owned(),
        path: draft.path,
        status: draft.status,
        bytes_in: bytes_in as u64 + draft.body_in,
        bytes_out: draft.bytes_out,
        latency_ms,
        upstream_latency_ms: upstream_ms,
        user_agent: who.user_agent.to_owned(),
        referer: who.referer,
        request_id: uuid_v4(rng),
        tls_version: who.tls_version,
        tls_fingerprint,
        http_fingerprint,
        header_names: who.stack.headers,
        upstream: draft.service.upstream(rng),
        scenario,
    }
}

// ---------------------------------------------------------------------------------------------
// Catalogue data.

/// Product ids run from 1 to this.
pub(crate) const PRODUCT_MAX: u32 = 60_000;

/// A product id by popularity: log-uniform, so a few hundred ids take most views.
pub(crate) fn popular_product(rng: &mut SimRng) -> u32 {
    let id = f64::from(PRODUCT_MAX).powf(rng.random::<f64>()) as u32;
    id.clamp(1, PRODUCT_MAX)
}

/// Whether a product id exists (about 4 % of ids are gaps: deleted or never used).
pub(crate) fn product_exists(id: u32) -> bool {
    xxhash_rust::xxh3::xxh3_64(&id.to_le_bytes()) % 100 >= 4
}

pub(crate) const SEARCH_TERMS: &[&str] = &[
    "running+shoes",
    "wireless+headphones",
    "usb-c+cable",
    "coffee+maker",
    "yoga+mat",
    "winter+jacket",
    "phone+case",
    "laptop+stand",
    "water+bottle",
    "led+desk+lamp",
    "kids+toys",
    "gift+card",
    "backpack",
    "sunglasses",
    "bluetooth+speaker",
    "air+fryer",
    "board+games",
    "sneakers",
    "mechanical+keyboard",
    "office+chair",
    "skincare",
    "dog+food",
    "camping+tent",
    "smart+watch",
    "black+friday+deals",
    "t-shirt",
    "jeans",
    "vacuum+cleaner",
    "monitor+27",
    "sale",
    "gaming+mouse",
    "electric+toothbrush",
    "%C3%A9charpe",
    "caf%C3%A9+beans",
];

pub(crate) const CATEGORIES: &[&str] = &[
    "electronics",
    "shoes",
    "home",
    "garden",
    "toys",
    "books",
    "beauty",
    "sports",
    "grocery",
    "fashion",
    "pets",
    "office",
];

const FIRST_NAMES: &[&str] = &[
    "james",
    "mary",
    "john",
    "patricia",
    "robert",
    "jennifer",
    "michael",
    "linda",
    "david",
    "elizabeth",
    "william",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "chris",
    "karen",
    "daniel",
    "lisa",
    "matt",
    "nancy",
    "anthony",
    "sandra",
    "mark",
    "ashley",
    "ahmed",
    "maria",
    "wei",
    "olga",
    "lucas",
    "sofia",
    "mohammed",
    "anna",
    "kenji",
    "fatima",
];
const LAST_NAMES: &[&str] = &[
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "thompson",
    "white",
    "harris",
    "clark",
    "lewis",
    "walker",
    "hall",
    "young",
    "muller",
    "rossi",
    "kowalski",
    "ivanova",
    "chen",
    "tanaka",
    "silva",
    "nguyen",
];
const MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "aol.com",
    "icloud.com",
    "mail.ru",
    "gmx.de",
    "web.de",
    "yahoo.co.uk",
    "live.com",
    "comcast.net",
];

/// A username as it appears in leaked combo lists: mostly e-mail addresses.
pub(crate) fn combo_username(rng: &mut SimRng) -> String {
    let first = pick(rng, FIRST_NAMES);
    let last = pick(rng, LAST_NAMES);
    let n = rng.random_range(1..100);
    match rng.random_range(0..6) {
        0 => format!("{first}.{last}@{}", pick(rng, MAIL_DOMAINS)),
        1 => format!("{first}{last}{n}@{}", pick(rng, MAIL_DOMAINS)),
        2 => format!(
            "{}{last}{}@{}",
            &first[..1],
            1950 + n,
            pick(rng, MAIL_DOMAINS)
        ),
        3 => format!("{first}_{last}{n}"),
        4 => format!("{first}{n}"),
        _ => format!("{last}.{first}@{}", pick(rng, MAIL_DOMAINS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn distributions_have_the_stated_centre() {
        let mut rng = SimRng::seed_from_u64(1);
        let mut v: Vec<f64> = (0..20_001).map(|_| lognormal(&mut rng, 5.0, 0.8)).collect();
        v.sort_by(f64::total_cmp);
        let median = v[10_000];
        assert!((4.6..5.4).contains(&median), "{median}");
        let mean: f64 = (0..20_000).map(|_| exponential(&mut rng, 2.0)).sum::<f64>() / 20_000.0;
        assert!((1.9..2.1).contains(&mean), "{mean}");
    }

    #[test]
    fn diurnal_peaks_in_the_afternoon() {
        let day = 86_400_000_000i64 * 20_000;
        let at = |h: i64| diurnal(day + h * 3_600_000_000);
        assert!((at(3) - 0.3).abs() < 1e-9);
        assert!((at(15) - 1.0).abs() < 1e-9);
        assert!(at(10) > at(5));
    }

    #[test]
    fn address_classes_are_disjoint() {
        let classes = [RESIDENTIAL, MOBILE, CORPORATE, CLOUD, HOSTING, BOTNET];
        for (i, a) in classes.iter().enumerate() {
            for b in &classes[i + 1..] {
                for &(fa, la, ha) in *a {
                    for &(fb, lb, hb) in *b {
                        assert!(
                            fa != fb || ha < lb || hb < la,
                            "{fa}.{la}-{ha} vs {fb}.{lb}-{hb}"
                        );
                    }
                }
            }
        }
        for class in classes {
            for &(first, _, _) in class {
                assert!(!matches!(
                    first,
                    0 | 10 | 100 | 127 | 169 | 192 | 198 | 203 | 224..=255
                ));
            }
            for &(first, lo, hi) in class {
                assert!(lo <= hi);
                assert!(first != 172 || !(16..=31).contains(&lo));
            }
        }
    }

    #[test]
    fn identifiers_are_well_formed() {
        let mut rng = SimRng::seed_from_u64(2);
        let id = uuid_v4(&mut rng);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_eq!(uuid_from_name("user-1", "c"), uuid_from_name("user-1", "c"));
        assert_ne!(uuid_from_name("user-1", "c"), uuid_from_name("user-1", "d"));
        let key = api_key(&mut rng);
        assert!(key.starts_with("vk_live_") && key.len() == 40, "{key}");
        let sid = session_id(&mut rng);
        assert_eq!(sid.len(), 24);
        let token = jwt(&mut rng, &issuer("api.example.com"), "user-7", &sid, 10, 20);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let payload = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(claims["sub"], "user-7");
        assert_eq!(claims["sid"], sid.as_str());
        assert_eq!(claims["iss"], "https://auth.example.com/");
        assert_eq!(claims["iat"], 10);
        assert_eq!(claims["exp"], 20);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
    }

    #[test]
    fn origins_follow_the_gateway_domain() {
        assert_eq!(web_origin("api.example.com"), "https://shop.example.com");
        assert_eq!(
            web_origin("api.example.com:8443"),
            "https://shop.example.com"
        );
        assert_eq!(web_origin("localhost"), "https://shop.localhost");
        assert_eq!(issuer("gw.corp.example"), "https://auth.corp.example/");
        assert_eq!(service_name("10.0.3.12:8080"), "users");
        assert_eq!(service_name("nonsense"), "shop");
    }
}
