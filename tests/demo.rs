//! `vigil demo --duration 60 --output json` as a user runs it: the engine, the proxy, the
//! built-in upstream and the simulated clients in one process, ending with one JSON line. While
//! it runs, the engine's `/metrics` is read and checked as Prometheus text.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{free_port, http_request, wait_until};

/// Checks Prometheus text exposition: every sample is `name{labels} value` of a family
/// announced by `# TYPE` before it; returns family name -> label sets seen.
fn parse_prometheus(text: &str) -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
    let mut families: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    let mut typed = BTreeSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap();
            let kind = it.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "{line}"
        );
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap_or_else(|| panic!("{line}"))),
            None => (series, ""),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "no # TYPE before {line}");
        let mut set = BTreeMap::new();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{line}"));
            set.insert(k.to_string(), v.to_string());
        }
        families.entry(family.to_string()).or_default().push(set);
    }
    families
}

#[test]
fn a_bounded_demo_detects_and_enforces_and_reports() {
    let (api, proxy) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["demo", "--duration", "60", "--output", "json"])
        .args(["--listen", &format!("127.0.0.1:{api}")])
        .args(["--proxy-listen", &format!("127.0.0.1:{proxy}")])
        .env("VIGIL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // mid-run: /metrics is Prometheus text with the documented families, and no label
    // carries a subject (an IP, an identity, a path)
    wait_until(30, "the demo's engine", || {
        std::net::TcpStream::connect(("127.0.0.1", api)).is_ok()
    });
    std::thread::sleep(Duration::from_secs(20));
    let (status, _, body) = http_request(api, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let families = parse_prometheus(&text);
    for name in [
        "vigil_ingest_lines_total",
        "vigil_ingest_events_total",
        "vigil_ingest_dead_letters_total",
        "vigil_decisions_total",
        "vigil_pipeline_batches_total",
        "vigil_ready",
        "vigil_sql_queries_total",
        "vigil_store_rows_flushed_total",
        "vigil_store_hot_rows",
        "vigil_proxy_requests_total",
        "vigil_proxy_request_duration_seconds",
        "vigil_proxy_upstream_duration_seconds",
    ] {
        assert!(families.contains_key(name), "{name} missing:\n{text}");
    }
    for (family, sets) in &families {
        for labels in sets {
            for (k, v) in labels {
                assert!(
                    v.parse::<std::net::IpAddr>().is_err()
                        && !v.contains('/')
                        && !v.starts_with("user-"),
                    "{family}{{{k}=\"{v}\"}} names a subject"
                );
            }
        }
    }
    assert!(text.contains("vigil_proxy_requests_total{action=\"allow\"}"));

    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().expect("one JSON line");
    let s: serde_json::Value = serde_json::from_str(last).unwrap();
    eprintln!("{s:#}");
    for key in [
        "requests",
        "decisions",
        "attackers_total",
        "attackers_blocked",
        "benign_users",
        "benign_blocked",
        "median_detect_secs",
    ] {
        assert!(s.get(key).is_some(), "`{key}` missing: {s}");
    }
    let n = |k: &str| s[k].as_u64().unwrap();
    assert!(n("requests") > 300, "{s}");
    assert_eq!(n("errors"), 0, "{s}");
    // every scenario's attacker ran within the minute (attacks start in its first half)
    assert_eq!(n("attackers_total"), 9, "{s}");
    assert!(n("benign_users") >= 20, "{s}");
    // the loop closed: every attacker was blocked or throttled by the proxy on the engine's
    // decisions within the run (those only challenged to step up were blocked once they kept
    // calling without stepping up)
    assert_eq!(n("attackers_blocked"), 9, "{s}");
    assert_eq!(n("attackers_challenged_only"), 0, "{s}");
    assert!(s["median_detect_secs"].as_f64().unwrap() < 30.0, "{s}");
    let d = |a: &str| s["decisions"][a].as_u64().unwrap();
    assert!(d("block") + d("throttle") >= 4, "{s}");
    assert!(n("refused") > 0, "{s}");
    // no benign user is blocked (the client whose API key an attacker stole may be throttled
    // with it); people who were challenged stepped up
    assert_eq!(n("benign_blocked"), 0, "{s}");
    assert!(n("benign_throttled") * 10 <= n("benign_users"), "{s}");
}
