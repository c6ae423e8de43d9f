//! The traffic simulator: determinism, ordering, labels that point at attack traffic, realistic
//! proportions, well-formed lines in every format (golden files for one fixed request), and a
//! round trip through vigil's own parsers.
//!
//! Golden files live in `tests/golden/simulate/`; regenerate them with `VIGIL_BLESS=1`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use vigil_ingest::formats::{FormatName, FormatOptions, parse_collect};
use vigil_ingest::normalize::{api_key_id, jwt_claims};
use vigil_ingest::simulate::{
    Label, Scenario, SimConfig, SimError, SimFormat, SimRequest, Simulation, render,
    render_otlp_batch, write_labels, write_logs,
};

/// A run small enough for debug-mode tests that still has every scenario.
fn small() -> SimConfig {
    SimConfig {
        benign_users: 80,
        benign_api_clients: 6,
        attackers_per_scenario: 1,
        duration_secs: 1200,
        ..SimConfig::default()
    }
}

fn sim(cfg: SimConfig) -> Simulation {
    Simulation::new(cfg).expect("valid config")
}

fn logs(sim: &Simulation, format: SimFormat, limit: Option<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    write_logs(sim, format, limit, &mut out).unwrap();
    out
}

fn subject_of<'r>(kind: &str, r: &'r SimRequest) -> Option<std::borrow::Cow<'r, str>> {
    use std::borrow::Cow;
    match kind {
        "identity" => r.identity.as_deref().map(Cow::Borrowed),
        "session" => r.session.as_deref().map(Cow::Borrowed),
        "ip" => Some(Cow::Borrowed(r.client_ip.as_str())),
        "api_key" => r.api_key.as_deref().map(|k| Cow::Owned(api_key_id(k))),
        other => panic!("unknown label kind {other}"),
    }
}

fn matches(label: &Label, r: &SimRequest) -> bool {
    subject_of(label.kind, r).is_some_and(|s| s == label.id)
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = sim(small());
    let b = sim(small());
    let c = sim(SimConfig {
        seed: 43,
        ..small()
    });
    for format in SimFormat::ALL {
        let la = logs(&a, format, Some(3000));
        assert!(!la.is_empty());
        assert_eq!(la, logs(&b, format, Some(3000)), "{format}");
        assert_ne!(la, logs(&c, format, Some(3000)), "{format}");
    }
    // Replaying the same simulation gives the same stream, too.
    assert_eq!(
        logs(&a, SimFormat::Json, None),
        logs(&a, SimFormat::Json, None)
    );
    assert_eq!(a.labels(), b.labels());
    assert_ne!(a.labels(), c.labels());
}

#[test]
fn timestamps_never_decrease_and_stay_inside_the_run() {
    let cfg = SimConfig::default();
    let start = cfg.start_unix_secs * 1_000_000;
    let end = start + cfg.duration_secs as i64 * 1_000_000;
    let sim = sim(cfg);
    let mut last = i64::MIN;
    let mut ids = HashSet::new();
    let mut n = 0u64;
    for r in sim.requests() {
        assert!(r.timestamp_us >= last, "out of order at request {n}");
        assert!((start..end).contains(&r.timestamp_us));
        assert!(ids.insert(r.request_id), "duplicate request id");
        last = r.timestamp_us;
        n += 1;
    }
    assert!(n > 20_000, "only {n} requests in an hour of 500 users");
}

#[test]
fn every_scenario_is_labelled_and_labels_point_at_attack_traffic() {
    let sim = sim(SimConfig::default());
    let reqs: Vec<SimRequest> = sim.requests().collect();
    let labelled: HashSet<Scenario> = sim.labels().iter().map(|l| l.scenario).collect();
    for s in Scenario::ALL {
        assert!(labelled.contains(&s), "no label for {s}");
        assert!(
            reqs.iter().any(|r| r.scenario == Some(s)),
            "no traffic for {s}"
        );
    }
    for label in sim.labels() {
        let hits: Vec<&SimRequest> = reqs
            .iter()
            .filter(|r| r.scenario == Some(label.scenario) && matches(label, r))
            .collect();
        assert!(
            hits.len() >= 5,
            "{label:?}: only {} attack requests",
            hits.len()
        );
        assert!(
            hits.iter().all(|r| r.timestamp_us >= label.start_us),
            "{label:?}: attack traffic before the label's start"
        );
        // The label's start is the attacker's first request.
        assert!(
            reqs.iter()
                .any(|r| r.scenario == Some(label.scenario) && r.timestamp_us == label.start_us),
            "{label:?}: no attack request at start_us"
        );
        if label.kind == "ip" {
            // Attackers' addresses are their own: no benign request comes from them.
            assert!(
                !reqs
                    .iter()
                    .any(|r| r.scenario.is_none() && r.client_ip == label.id),
                "{label:?}: benign traffic from a labelled IP"
            );
        }
    }
    // Attacks start in the first half of the run.
    let cfg = sim.config();
    let half = cfg.start_unix_secs * 1_000_000 + cfg.duration_secs as i64 * 500_000;
    assert!(sim.labels().iter().all(|l| l.start_us < half));
    // Benign requests carry no scenario, attack requests always one of the configured ones.
    assert!(reqs.iter().any(|r| r.scenario.is_none()));
}

#[test]
fn benign_traffic_dominates_and_looks_like_a_shop() {
    let sim = sim(SimConfig::default());
    let mut per: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut benign_status: BTreeMap<u16, u64> = BTreeMap::new();
    let mut ids_per_ip: HashMap<String, HashSet<String>> = HashMap::new();
    let mut ips_per_identity: HashMap<String, HashSet<String>> = HashMap::new();
    let mut sessions_per_identity: HashMap<String, HashSet<String>> = HashMap::new();
    let mut keys = 0u64;
    let mut total = 0u64;
    for r in sim.requests() {
        total += 1;
        *per.entry(r.scenario.map_or("benign", |s| s.as_str()))
            .or_default() += 1;
        if r.scenario.is_some() {
            continue;
        }
        *benign_status.entry(r.status).or_default() += 1;
        if r.api_key.is_some() {
            keys += 1;
        }
        if let (Some(id), Some(_)) = (&r.identity, &r.jwt) {
            ids_per_ip
                .entry(r.client_ip.clone())
                .or_default()
                .insert(id.clone());
            ips_per_identity
                .entry(id.clone())
                .or_default()
                .insert(r.client_ip.clone());
            if let Some(s) = &r.session {
                sessions_per_identity
                    .entry(id.clone())
                    .or_default()
                    .insert(s.clone());
            }
            // The JWT's claims agree with the request's subjects.
            let claims = jwt_claims(r.jwt.as_deref().unwrap()).expect("decodable JWT");
            assert_eq!(claims.sub.as_deref(), Some(id.as_str()));
            assert_eq!(claims.session, r.session);
        }
    }
    let benign = per["benign"];
    let share = benign as f64 / total as f64;
    assert!(
        (0.7..0.95).contains(&share),
        "benign share {share:.3}: {per:?}"
    );
    let ok: u64 = [200, 201, 204, 304]
        .iter()
        .map(|s| benign_status.get(s).copied().unwrap_or(0))
        .sum();
    assert!(ok as f64 / benign as f64 > 0.95, "{benign_status:?}");
    for status in [401, 404] {
        let n = benign_status.get(&status).copied().unwrap_or(0);
        assert!(
            n > 0 && (n as f64 / benign as f64) < 0.02,
            "{status}: {benign_status:?}"
        );
    }
    assert!(keys > 1000, "API clients sent {keys} requests");
    // Office NATs: many benign identities behind one address.
    let max_ids = ids_per_ip.values().map(HashSet::len).max().unwrap_or(0);
    assert!(max_ids >= 8, "at most {max_ids} identities per IP");
    // Some users roam between networks, and some log in again with a new session.
    assert!(ips_per_identity.values().any(|s| s.len() >= 2));
    assert!(sessions_per_identity.values().any(|s| s.len() >= 2));
}

#[test]
fn attacks_have_their_signatures() {
    let sim = sim(SimConfig::default());
    let reqs: Vec<SimRequest> = sim.requests().collect();
    let of = |label: &Label| -> Vec<&SimRequest> {
        reqs.iter()
            .filter(|r| r.scenario == Some(label.scenario) && matches(label, r))
            .collect()
    };
    for label in sim.labels() {
        let hits = of(label);
        let distinct = |f: &dyn Fn(&SimRequest) -> Option<String>| -> usize {
            hits.iter()
                .filter_map(|r| f(r))
                .collect::<HashSet<_>>()
                .len()
        };
        let share = |f: &dyn Fn(&SimRequest) -> bool| -> f64 {
            hits.iter().filter(|r| f(r)).count() as f64 / hits.len() as f64
        };
        match label.scenario {
            Scenario::CredentialStuffing => {
                assert!(
                    hits.iter()
                        .all(|r| r.method == "POST" && r.path == "/login")
                );
                assert!(distinct(&|r| r.identity.clone()) > 100, "{label:?}");
                assert!(share(&|r| r.status == 401) > 0.8);
            }
            Scenario::DistributedBruteForce => {
                assert!(distinct(&|r| Some(r.client_ip.clone())) >= 30, "{label:?}");
                assert!(share(&|r| r.status == 401) > 0.9);
                // Each botnet address sends only a few attempts.
                let mut per_ip: HashMap<&str, u32> = HashMap::new();
                for r in &hits {
                    *per_ip.entry(&r.client_ip).or_default() += 1;
                }
                let mean = hits.len() as f64 / per_ip.len() as f64;
                assert!(mean < 8.0, "{mean} attempts per address");
            }
            Scenario::Scraping => {
                let products = distinct(&|r| {
                    r.path
                        .starts_with("/api/v1/products/")
                        .then(|| r.path.clone())
                });
                assert!(products > 1000, "{label:?}: {products} products");
                // Machine-regular pacing: the interval's spread is a few percent of its mean.
                let gaps: Vec<f64> = hits
                    .windows(2)
                    .map(|w| (w[1].timestamp_us - w[0].timestamp_us) as f64)
                    .collect();
                let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
                let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64)
                    .sqrt();
                assert!(sd / mean < 0.05, "interval cv {}", sd / mean);
            }
            Scenario::SensitivePathScan => {
                assert!(share(&|r| matches!(r.status, 403 | 404)) > 0.8);
                assert!(distinct(&|r| Some(r.path.clone())) > 100);
                assert!(hits.iter().any(|r| r.path.contains(".env")));
            }
            Scenario::SessionTheft => {
                // The same session from two networks and two clients, while the victim is active.
                let all: Vec<&SimRequest> = reqs
                    .iter()
                    .filter(|r| r.session.as_deref() == Some(&label.id))
                    .collect();
                let benign: Vec<&&SimRequest> =
                    all.iter().filter(|r| r.scenario.is_none()).collect();
                let first = hits[0].timestamp_us;
                let last = hits[hits.len() - 1].timestamp_us;
                assert!(
                    benign
                        .iter()
                        .any(|r| (first..=last).contains(&r.timestamp_us)),
                    "{label:?}: the victim is idle during the theft"
                );
                let thief_ips: HashSet<&str> = hits.iter().map(|r| r.client_ip.as_str()).collect();
                assert!(
                    benign
                        .iter()
                        .all(|r| !thief_ips.contains(r.client_ip.as_str()))
                );
                assert!(benign.iter().all(|r| r.user_agent != hits[0].user_agent));
                assert!(hits.iter().all(|r| r.jwt.is_some()));
            }
            Scenario::ApiKeyAbuse => {
                assert!(distinct(&|r| Some(r.client_ip.clone())) >= 10);
                let benign_routes: HashSet<String> = reqs
                    .iter()
                    .filter(|r| r.scenario.is_none() && matches(label, r))
                    .map(|r| {
                        r.path
                            .split(['?', '/'])
                            .take(4)
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .collect();
                assert!(!benign_routes.is_empty(), "the key is not used benignly");
                assert!(hits.iter().any(|r| r.path.starts_with("/api/v1/users/")
                    || r.path.starts_with("/api/v1/export")));
                // Much faster than the legitimate client.
                let benign_n = reqs
                    .iter()
                    .filter(|r| r.scenario.is_none() && matches(label, r))
                    .count();
                let cfg = sim.config();
                let benign_rate = benign_n as f64 / cfg.duration_secs as f64;
                let span = (hits[hits.len() - 1].timestamp_us - hits[0].timestamp_us) as f64 / 1e6;
                let attack_rate = hits.len() as f64 / span;
                assert!(
                    attack_rate > 5.0 * benign_rate,
                    "{attack_rate:.2}/s vs {benign_rate:.2}/s"
                );
            }
            Scenario::IdEnumeration => {
                let ids: Vec<u64> = hits
                    .iter()
                    .filter_map(|r| r.path.strip_prefix("/api/v1/users/")?.parse().ok())
                    .collect();
                assert!(ids.len() > 100);
                assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "not sequential");
                for status in [200, 403, 404] {
                    assert!(hits.iter().any(|r| r.status == status), "no {status}");
                }
            }
            Scenario::DataExfiltration => {
                let mut sizes: Vec<u64> = hits
                    .iter()
                    .filter(|r| r.path.contains("/export") || r.path.contains("/download"))
                    .map(|r| r.bytes_out)
                    .collect();
                sizes.sort_unstable();
                assert!(sizes.len() >= 10);
                assert!(
                    sizes[sizes.len() / 2] > 2_000_000,
                    "median {}",
                    sizes[sizes.len() / 2]
                );
            }
            Scenario::InjectionProbing => {
                let payload = share(&|r| {
                    [
                        "%",
                        "..",
                        "/cgi-bin/",
                        "/mgmt/",
                        "/_ignition/",
                        "/actuator/",
                    ]
                    .iter()
                    .any(|m| r.path.contains(m))
                });
                assert!(payload > 0.6, "{label:?}: payload share {payload:.2}");
                assert!(share(&|r| r.status >= 400) > 0.5);
                // One program, whatever user agents it rotates through.
                assert_eq!(distinct(&|r| Some(r.tls_fingerprint.clone())), 1);
            }
        }
    }
}

#[test]
fn config_errors_are_values_naming_the_key() {
    let err = Simulation::new(SimConfig {
        duration_secs: 0,
        ..SimConfig::default()
    })
    .unwrap_err();
    assert!(matches!(
        err,
        SimError::InvalidConfig {
            key: "duration_secs",
            ..
        }
    ));
    assert!(err.to_string().contains("duration_secs"), "{err}");
    let err =
        serde_json::from_str::<SimConfig>(r#"{"duration_secs": 10, "users": 3}"#).unwrap_err();
    assert!(err.to_string().contains("users"), "{err}");
    let cfg: SimConfig =
        serde_json::from_str(r#"{"seed": 9, "scenarios": ["scraping", "session_theft"]}"#).unwrap();
    assert_eq!(
        cfg.scenarios,
        vec![Scenario::Scraping, Scenario::SessionTheft]
    );
    assert!(serde_json::from_str::<SimConfig>(r#"{"scenarios": ["ddos"]}"#).is_err());
    assert!("ddos".parse::<Scenario>().is_err());
    assert!("syslog".parse::<SimFormat>().is_err());
}

#[test]
fn write_logs_counts_lines_and_honours_the_limit() {
    let sim = sim(small());
    let out = logs(&sim, SimFormat::Nginx, Some(120));
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 120);
    let mut buf = Vec::new();
    assert_eq!(
        write_logs(&sim, SimFormat::Otlp, Some(120), &mut buf).unwrap(),
        3
    );
    let records: usize = String::from_utf8(buf)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(records, 120);
    let all = sim.requests().count() as u64;
    assert_eq!(
        write_logs(&sim, SimFormat::Json, None, std::io::sink()).unwrap(),
        all
    );

    let mut labels = Vec::new();
    let n = write_labels(&sim, &mut labels).unwrap();
    assert_eq!(n as usize, sim.labels().len());
    for line in String::from_utf8(labels).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in ["kind", "id", "scenario", "start", "start_us"] {
            assert!(v.get(key).is_some(), "{line}");
        }
        assert!(v["start"].as_str().unwrap().ends_with('Z'));
    }
}

/// Splits an nginx `combined`-style line into its fields: bare words, `[bracketed]` and
/// `"quoted"` (with `\xHH` escapes, so a quoted field contains no raw quote).
fn text_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        rest = rest.trim_start_matches(' ');
        let (field, after) = if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').expect("closing quote");
            (&r[..end], &r[end + 1..])
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').expect("closing bracket");
            (&r[..end], &r[end + 1..])
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        fields.push(field.to_owned());
        rest = after;
    }
    fields
}

#[test]
fn every_format_writes_well_formed_lines() {
    let sim = sim(small());
    let reqs: Vec<SimRequest> = sim.requests().take(4000).collect();
    for format in SimFormat::ALL {
        let mut line = String::new();
        for r in &reqs {
            line.clear();
            render(format, r, &mut line);
            assert!(!line.contains('\n'), "{format}: newline in {line}");
            match format {
                SimFormat::Nginx => {
                    let f = text_fields(&line);
                    assert_eq!(f.len(), 11, "{line}");
                    assert_eq!(f[0], r.client_ip);
                    assert_eq!(f[1], "-");
                    assert_eq!(f[2], r.identity.as_deref().unwrap_or("-"));
                    assert!(f[3].ends_with(" +0000") && f[3].len() == 26, "{line}");
                    assert_eq!(f[4], format!("{} {} HTTP/1.1", r.method, r.path));
                    assert_eq!(f[5], r.status.to_string());
                    assert_eq!(f[6], r.bytes_out.to_string());
                    assert!(f[9].len() >= 5 && f[9].as_bytes()[f[9].len() - 4] == b'.');
                }
                SimFormat::Envoy => {
                    let f = text_fields(&line);
                    assert_eq!(f.len(), 13, "{line}");
                    assert!(f[0].ends_with('Z') && f[0].len() == 24, "{line}");
                    assert_eq!(f[2], r.status.to_string());
                    assert!(f[8].ends_with(&r.client_ip), "{line}");
                    assert_eq!(f[10], r.request_id);
                }
                _ => {
                    let v: serde_json::Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("{format}: {e}: {line}"));
                    assert!(v.is_object());
                }
            }
        }
    }
    let mut batch = String::new();
    render_otlp_batch(&reqs[..50], "edge-gateway", &mut batch);
    let v: serde_json::Value = serde_json::from_str(&batch).unwrap();
    let records = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"];
    assert_eq!(records.as_array().unwrap().len(), 50);
    assert_eq!(
        records[0]["timeUnixNano"],
        format!("{}000", reqs[0].timestamp_us)
    );
}

/// Two fixed requests: one with every optional field (and characters that need escaping), one
/// with none.
fn golden_requests() -> Vec<SimRequest> {
    let full = SimRequest {
        timestamp_us: 1_795_521_600_123_456,
        client_ip: "203.0.113.7".into(),
        forwarded_for: vec!["10.1.2.3".into(), "198.51.100.1".into()],
        identity: Some("user-42".into()),
        session: Some("Zm9vYmFyYmF6cXV4MTIzNDU2".into()),
        jwt: Some("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIiwic2lkIjoiWm05dlltRnlZbUY2Y1hWNE1USXpORFUyIn0.c2lnbmF0dXJl".into()),
        api_key: Some("vk_live_0123456789abcdefABCDEF0123456789".into()),
        method: "GET",
        host: "api.example.com".into(),
        path: "/api/v1/search?q=caf%C3%A9+beans&page=2".into(),
        status: 200,
        bytes_in: 812,
        bytes_out: 23_417,
        latency_ms: 61.234,
        upstream_latency_ms: 58.5,
        user_agent: "Mozilla/5.0 (X11; Linux x86_64) \"quoted\" back\\slash é".into(),
        referer: Some("https://shop.example.com/search?q=caf%C3%A9+beans".into()),
        request_id: "3f0c7a52-9d1e-4b8a-a1f2-5c6d7e8f9a0b".into(),
        tls_version: "TLSv1.3",
        tls_fingerprint: "t13d1516h2_8daaf6152771_02713d6af862".into(),
        http_fingerprint: "ge20cr12enus_1f0d4f2f6a55_0c6b9a5fb0a4_6b1c86a6c6a1".into(),
        header_names: &["user-agent", "accept"],
        upstream: "10.0.6.12:8080".into(),
        scenario: None,
    };
    let bare = SimRequest {
        timestamp_us: 1_795_521_601_000_000,
        client_ip: "45.155.205.3".into(),
        forwarded_for: Vec::new(),
        identity: None,
        session: None,
        jwt: None,
        api_key: None,
        method: "GET",
        host: "api.example.com".into(),
        path: "/.env".into(),
        status: 404,
        bytes_in: 143,
        bytes_out: 97,
        latency_ms: 3.0,
        upstream_latency_ms: 2.4,
        user_agent: "Mozilla/5.0 zgrab/0.x".into(),
        referer: None,
        request_id: "0b9a8f7e-6d5c-4b3a-8f1e-0d9c8b7a6f5e".into(),
        tls_version: "TLSv1.2",
        tls_fingerprint: "t12d1312h2_f57a46bbacb6_e7c285222651".into(),
        http_fingerprint: "ge11nn030000_3a7b4a8c5d21_000000000000_000000000000".into(),
        header_names: &["Host", "User-Agent", "Accept-Encoding"],
        upstream: "10.0.8.11:8080".into(),
        scenario: Some(Scenario::SensitivePathScan),
    };
    vec![full, bare]
}

#[test]
fn rendering_matches_the_golden_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/simulate");
    let bless = std::env::var_os("VIGIL_BLESS").is_some_and(|v| v == "1");
    let reqs = golden_requests();
    let mut failures = Vec::new();
    for format in SimFormat::ALL {
        let mut text = String::new();
        for r in &reqs {
            render(format, r, &mut text);
            text.push('\n');
        }
        let path = dir.join(format!("{}.txt", format.as_str()));
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == text => {}
            Ok(expected) => failures.push(format!(
                "{}: rendering changed (rerun with VIGIL_BLESS=1 to accept)\n--- expected\n{expected}--- actual\n{text}",
                path.display()
            )),
            Err(e) => failures.push(format!(
                "{}: {e} (run with VIGIL_BLESS=1 to create)",
                path.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What each format can carry of a request, as vigil's parser reads it back.
fn expected_target(format: SimFormat, r: &SimRequest) -> String {
    match format {
        // API Gateway logs the stage-prefixed path without the query string.
        SimFormat::AwsApigateway => format!("/prod{}", r.path.split('?').next().unwrap()),
        _ => r.path.clone(),
    }
}

fn expected_identity(format: SimFormat, r: &SimRequest) -> Option<String> {
    match format {
        // Envoy's default text format has no identity, header or cookie field.
        SimFormat::Envoy => None,
        // Envoy's JSON carries the Authorization header only: identity comes from the JWT.
        SimFormat::EnvoyJson => r.jwt.as_ref().and(r.identity.clone()),
        _ => r.identity.clone(),
    }
}

#[test]
fn vigil_parses_every_simulated_format() {
    let sim = sim(small());
    let mut reqs: Vec<SimRequest> = sim.requests().take(3000).collect();
    assert!(reqs.iter().any(|r| r.identity.is_some()));
    // Escapes, absent fields, and the statuses Envoy flags (UF, UT).
    reqs.extend(golden_requests());
    for status in [502, 503, 504] {
        let mut r = golden_requests().remove(0);
        r.status = status;
        reqs.push(r);
    }
    for format in SimFormat::ALL {
        let name: FormatName = format.as_str().parse().unwrap();
        let parser = name.build(&FormatOptions::default()).unwrap();
        let mut lines = Vec::new();
        if format == SimFormat::Otlp {
            for chunk in reqs.chunks(50) {
                let mut l = String::new();
                render_otlp_batch(chunk, "edge-gateway", &mut l);
                lines.push((l, chunk));
            }
        } else {
            for r in &reqs {
                let mut l = String::new();
                render(format, r, &mut l);
                lines.push((l, std::slice::from_ref(r)));
            }
        }
        let mut parsed = 0;
        for (line, sent) in &lines {
            let results = parse_collect(parser.as_ref(), line);
            assert_eq!(results.len(), sent.len(), "{format}: {line}");
            for (res, r) in results.into_iter().zip(sent.iter()) {
                let rec = res.unwrap_or_else(|e| panic!("{format}: {e}: {line}"));
                assert_eq!(rec.status, r.status, "{format}: {line}");
                let mut target = rec.target.as_deref().unwrap_or_default().to_owned();
                if let Some(q) = rec.query.as_deref() {
                    target.push('?');
                    target.push_str(q);
                }
                assert_eq!(target, expected_target(format, r), "{format}: {line}");
                let identity = rec
                    .identity
                    .as_deref()
                    .map(str::to_owned)
                    .or_else(|| rec.jwt.as_deref().and_then(jwt_claims).and_then(|c| c.sub));
                assert_eq!(identity, expected_identity(format, r), "{format}: {line}");
                assert!(
                    rec.timestamp_us <= r.timestamp_us
                        && r.timestamp_us - rec.timestamp_us < 1_000_000,
                    "{format}: time {} vs {}: {line}",
                    rec.timestamp_us,
                    r.timestamp_us
                );
                parsed += 1;
            }
        }
        assert_eq!(parsed, reqs.len(), "{format}");
    }
}

#[test]
fn unusual_configs_never_panic() {
    let subsets: [&[Scenario]; 4] = [
        &[],
        &Scenario::ALL,
        &[Scenario::Scraping, Scenario::CredentialStuffing],
        &[Scenario::DistributedBruteForce],
    ];
    for duration_secs in [1, 2, 59, 900] {
        for benign_users in [0, 1, 3] {
            for benign_api_clients in [0, 1, 3] {
                for attackers_per_scenario in [0, 1, 3] {
                    for scenarios in subsets {
                        let cfg = SimConfig {
                            duration_secs,
                            benign_users,
                            benign_api_clients,
                            attackers_per_scenario,
                            scenarios: scenarios.to_vec(),
                            start_unix_secs: 0,
                            ..SimConfig::default()
                        };
                        let Ok(sim) = Simulation::new(cfg) else {
                            continue;
                        };
                        let reqs: Vec<SimRequest> = sim.requests().collect();
                        for label in sim.labels() {
                            assert!(
                                reqs.iter().any(
                                    |r| r.scenario == Some(label.scenario) && matches(label, r)
                                ),
                                "{label:?}"
                            );
                        }
                    }
                }
            }
        }
    }
    // The last instant every format can write.
    let sim = sim(SimConfig {
        start_unix_secs: 253_402_300_799 - 60,
        duration_secs: 60,
        ..small()
    });
    let mut line = String::new();
    for r in sim.requests() {
        for format in SimFormat::ALL {
            line.clear();
            render(format, &r, &mut line);
        }
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn request() -> impl Strategy<Value = SimRequest> {
        let text = "\\PC{0,24}|[\"\\\\ \t\n\u{0}\u{7f}é]{0,6}";
        (
            (any::<i64>(), text, text, proptest::option::of(text)),
            (
                proptest::option::of(text),
                proptest::option::of(text),
                text,
                text,
            ),
            (any::<u16>(), any::<u64>(), any::<u64>(), -1.0e9f64..1.0e12),
            (
                proptest::collection::vec(text, 0..3),
                proptest::option::of(text),
                text,
            ),
        )
            .prop_map(
                |(
                    (timestamp_us, client_ip, path, identity),
                    (session, api_key, user_agent, host),
                    (status, bytes_in, bytes_out, latency_ms),
                    (forwarded_for, referer, upstream),
                )| SimRequest {
                    timestamp_us,
                    client_ip,
                    forwarded_for,
                    jwt: identity.clone(),
                    identity,
                    session,
                    api_key,
                    method: "GET",
                    host,
                    path,
                    status,
                    bytes_in,
                    bytes_out,
                    latency_ms,
                    upstream_latency_ms: latency_ms / 2.0,
                    user_agent,
                    referer,
                    request_id: "r".into(),
                    tls_version: "TLSv1.3",
                    tls_fingerprint: upstream.clone(),
                    http_fingerprint: String::new(),
                    header_names: &[],
                    upstream,
                    scenario: None,
                },
            )
    }

    proptest! {
        #[test]
        fn any_request_renders_to_one_valid_line(r in request()) {
            for format in SimFormat::ALL {
                let mut line = String::new();
                render(format, &r, &mut line);
                prop_assert!(!line.contains('\n'));
                if format.is_json() {
                    let v: Result<serde_json::Value, _> = serde_json::from_str(&line);
                    prop_assert!(v.is_ok(), "{}: {}", format, line);
                }
            }
            // In nginx's line every quoted value is escaped, so the fields stay put (bare
            // fields starting with `[` would read as the time field, as in nginx itself).
            if !r.client_ip.starts_with('[') && !r.identity.as_deref().unwrap_or("").starts_with('[') {
                let mut line = String::new();
                render(SimFormat::Nginx, &r, &mut line);
                prop_assert_eq!(text_fields(&line).len(), 11, "{}", line);
            }
        }
    }
}

/// Fingerprints follow the client program, not the user agent it claims: a browser user's JA4
/// is its browser's, a botnet runs one program on all its bots, and a stolen session is replayed
/// from another program than its owner's.
#[test]
fn fingerprints_follow_the_client_program() {
    let sim = sim(SimConfig::default());
    let reqs: Vec<SimRequest> = sim.requests().collect();
    for r in &reqs {
        assert_eq!(r.tls_fingerprint.len(), 36, "{r:?}");
        assert_eq!(r.http_fingerprint.len(), 51, "{r:?}");
    }
    let chrome = reqs
        .iter()
        .filter(|r| r.scenario.is_none() && r.user_agent.contains("Chrome/131"));
    for r in chrome {
        assert!(
            r.tls_fingerprint[4..].starts_with("1516h2_8daaf6152771"),
            "{r:?}"
        );
        assert_eq!(&r.http_fingerprint[8..12], "enus", "{r:?}");
    }
    for label in sim.labels() {
        let hits: Vec<&SimRequest> = reqs
            .iter()
            .filter(|r| r.scenario == Some(label.scenario) && matches(label, r))
            .collect();
        let set = |f: &dyn Fn(&SimRequest) -> &str| -> HashSet<String> {
            hits.iter().map(|r| f(r).to_owned()).collect()
        };
        match label.scenario {
            Scenario::DistributedBruteForce => {
                assert_eq!(set(&|r| &r.tls_fingerprint).len(), 1, "{label:?}");
                assert!(set(&|r| &r.client_ip).len() > 20, "{label:?}");
                assert!(set(&|r| &r.user_agent).len() > 3, "{label:?}");
                // Not a browser: no language, a short header list.
                assert!(hits.iter().all(|r| r.http_fingerprint[8..12] == *"0000"));
            }
            Scenario::SessionTheft => {
                let victim: HashSet<&str> = reqs
                    .iter()
                    .filter(|r| r.scenario.is_none() && matches(label, r))
                    .map(|r| r.tls_fingerprint.as_str())
                    .collect();
                let thief = set(&|r| &r.tls_fingerprint);
                assert!(!victim.is_empty() && thief.len() == 1, "{label:?}");
                assert!(
                    thief.iter().all(|t| !victim.contains(t.as_str())),
                    "{label:?}: {thief:?} vs {victim:?}"
                );
            }
            _ => {}
        }
    }
}
