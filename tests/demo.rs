//! `vigil demo --duration 60 --output json` as a user runs it: the engine, the proxy, the
//! built-in upstream and the simulated clients in one process, ending with one JSON line.

mod support;

use std::process::Command;
use support::free_port;

#[test]
fn a_bounded_demo_detects_and_enforces_and_reports() {
    let (api, proxy) = (free_port(), free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["demo", "--duration", "60", "--output", "json"])
        .args(["--listen", &format!("127.0.0.1:{api}")])
        .args(["--proxy-listen", &format!("127.0.0.1:{proxy}")])
        .env("VIGIL_LOG", "warn")
        .output()
        .unwrap();
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
    assert_eq!(n("attackers_total"), 8, "{s}");
    assert!(n("benign_users") >= 20, "{s}");
    // the loop closed: attackers were refused by the proxy on the engine's decisions, within
    // seconds, and the decisions the engine counted are those the proxy applied
    assert!(n("attackers_blocked") >= 4, "{s}");
    assert!(s["median_detect_secs"].as_f64().unwrap() < 30.0, "{s}");
    assert!(
        s["decisions"]["block"].as_u64().unwrap() + s["decisions"]["throttle"].as_u64().unwrap()
            >= 4,
        "{s}"
    );
    assert!(n("refused") > 0, "{s}");
    // benign users are rarely refused (an account an attacker also uses can be)
    assert!(n("benign_blocked") * 10 <= n("benign_users"), "{s}");
}
