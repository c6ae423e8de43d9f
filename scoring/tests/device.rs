//! The device pillar end to end: one scripted client rotating 200 identities over 200 IPs
//! behind one fingerprint is flagged as one device within 60 s of event time, while 300
//! browser users sharing three common browser fingerprints are left alone.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
mod support;

use vigil_scoring::scorer::EVENT_COLUMNS;
use vigil_scoring::{Scorer, ScoringConfig};

const T0: f64 = 1_795_500_000.0;

/// Three browsers: (user agent, JA4, JA4H). The JA4H parts are as a browser's would be: a
/// dozen headers, a language, the same header set (`b`) for every user of the browser.
const BROWSERS: [(&str, &str, &str); 3] = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
        "t13d1516h2_8daaf6152771_e5627efa2ab1",
        "ge20cr14enus_a1b2c3d4e5f6_000000000000_000000000000",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
        "t13d1715h2_5b57614c22b0_3d5424432f57",
        "ge11cr12enus_0f1e2d3c4b5a_000000000000_000000000000",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "t13d2014h2_a09f3c656075_14788d8d241b",
        "ge20cr11engb_9a8b7c6d5e4f_000000000000_000000000000",
    ),
];

/// The scripted client: a Python TLS stack without ALPN, a short header set without a
/// language, and a browser user agent it does not live up to.
const SCRIPT: (&str, &str, &str) = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "t13d1812i1_e8a523a41297_d0ce7ed58c61",
    "po11nn050000_530ceba2075f_000000000000_000000000000",
);

const ATTACK_START_S: f64 = 180.0;

struct Line {
    t: f64,
    json: String,
}

#[allow(clippy::too_many_arguments)]
fn line(
    t: f64,
    ip: &str,
    identity: &str,
    method: &str,
    path: &str,
    status: u16,
    client: (&str, &str, &str),
) -> Line {
    let json = serde_json::json!({
        "timestamp": T0 + t, "client_ip": ip, "identity": identity, "method": method,
        "path": path, "status": status, "bytes_out": 512, "user_agent": client.0,
        "tls_fingerprint": client.1, "http_fingerprint": client.2,
    })
    .to_string();
    Line { t, json }
}

fn traffic() -> Vec<Line> {
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let mut out = Vec::new();
    // 300 people, 100 per browser, each from their own address, browsing for 10 minutes
    // after logging in (a few mistype their password first).
    for u in 0..300 {
        let browser = BROWSERS[u % 3];
        let ip = format!("198.51.{}.{}", u / 200, u % 200 + 1);
        let who = format!("user-{u}");
        let mut t = rng.random_range(0.0..120.0);
        if rng.random_bool(0.05) {
            out.push(line(t, &ip, &who, "POST", "/login", 401, browser));
            t += rng.random_range(3.0..10.0);
        }
        out.push(line(t, &ip, &who, "POST", "/login", 200, browser));
        while t < 600.0 {
            t += rng.random_range(4.0..40.0);
            let path = format!("/api/v1/products/{}", rng.random_range(1..5000));
            out.push(line(t, &ip, &who, "GET", &path, 200, browser));
        }
    }
    // The scripted client: one login attempt a second, each for another account from
    // another address; almost all fail.
    for k in 0..200 {
        let t = ATTACK_START_S + k as f64 * rng.random_range(0.8..1.2);
        let ip = format!("203.0.{}.{}", k / 250, k % 250 + 1);
        let status = if rng.random_bool(0.03) { 200 } else { 401 };
        out.push(line(
            t,
            &ip,
            &format!("victim-{k}"),
            "POST",
            "/login",
            status,
            SCRIPT,
        ));
    }
    out.sort_by(|a, b| a.t.total_cmp(&b.t));
    out
}

#[test]
fn one_scripted_client_rotating_accounts_and_addresses_is_one_blocked_device() {
    let lines = traffic();
    let mut text = String::new();
    for l in &lines {
        text.push_str(&l.json);
        text.push('\n');
    }
    let events = support::events_from_json_lines(&text);

    // the whole scorer: rules and models
    let mut scorer = Scorer::new(&ScoringConfig::default()).unwrap();
    let mut decisions = Vec::new();
    // batches of 2,000 events, as a stream would bring them
    let mut off = 0;
    while off < events.num_rows() {
        let n = 2_000.min(events.num_rows() - off);
        decisions.extend(scorer.score_batch(&events.slice(off, n)).unwrap().decisions);
        off += n;
    }

    let device = format!(
        "device:{}_{}",
        SCRIPT.1,
        SCRIPT.2.split('_').nth(1).unwrap()
    );
    let blocked = decisions
        .iter()
        .find(|d| d.subject.key() == device && d.action.as_str() == "block")
        .unwrap_or_else(|| {
            panic!(
                "{device} not blocked; decisions: {:#?}",
                decisions
                    .iter()
                    .map(|d| (d.subject.key(), d.action.as_str(), &d.reasons))
                    .collect::<Vec<_>>()
            )
        });
    let after_s = blocked.issued_at.0 as f64 / 1e6 - (T0 + ATTACK_START_S);
    eprintln!(
        "scripted client blocked as one device {after_s:.1} s after its first attempt: {:?}",
        blocked.reasons
    );
    assert!(after_s <= 60.0, "{after_s}");

    // no benign browser user, their address or their browser's device is blocked
    for d in &decisions {
        let key = d.subject.key();
        let benign = key.starts_with("identity:user-")
            || key.starts_with("ip:198.51.")
            || BROWSERS.iter().any(|b| key.contains(b.1));
        assert!(
            !(benign && matches!(d.action.as_str(), "block" | "throttle")),
            "benign {key} got {} ({:?})",
            d.action.as_str(),
            d.reasons
        );
    }
}

/// The scorer reads only [`EVENT_COLUMNS`]: on the events projected to them, it issues the
/// same decisions as on all the columns (here, where decisions come from rules, models and
/// evidence alike), and a batch without one of them is refused, naming it.
#[test]
fn the_scorer_reads_only_its_event_columns() {
    let mut text = String::new();
    for l in &traffic() {
        text.push_str(&l.json);
        text.push('\n');
    }
    let events = support::events_from_json_lines(&text);
    let schema = events.schema();
    let projection: Vec<usize> = EVENT_COLUMNS
        .iter()
        .map(|c| schema.index_of(c).unwrap())
        .collect();
    let projected = events.project(&projection).unwrap();
    let decide = |batch: &arrow::array::RecordBatch| {
        let mut scorer = Scorer::new(&ScoringConfig::default()).unwrap();
        let mut out = Vec::new();
        let mut off = 0;
        while off < batch.num_rows() {
            let n = 2_000.min(batch.num_rows() - off);
            for d in scorer.score_batch(&batch.slice(off, n)).unwrap().decisions {
                out.push((
                    d.subject.key(),
                    d.action.as_str().to_string(),
                    d.score.to_bits(),
                    d.reasons,
                    d.issued_at.0,
                    d.expires_at.0,
                ));
            }
            off += n;
        }
        out
    };
    let all = decide(&events);
    assert!(all.iter().any(|d| d.1 == "block"), "{all:?}");
    assert_eq!(decide(&projected), all);

    let short: Vec<usize> = projection[1..].to_vec();
    let err = Scorer::new(&ScoringConfig::default())
        .unwrap()
        .score_batch(&events.project(&short).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains(EVENT_COLUMNS[0]), "{err}");
}
