//! The `vigil` command as a user runs it: `validate`, `replay`, `simulate`, and `run` with the
//! stdin and HTTP sources, health and metrics.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use support::{free_port, read_ndjson, wait_until};

fn vigil() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.env("RUST_BACKTRACE", "0").env("VIGIL_LOG", "warn");
    c
}

/// A minimal HTTP/1.1 exchange over 127.0.0.1: (status, body).
fn http(port: u16, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

const LINE: &str = r#"203.0.113.7 - alice [24/Nov/2026:10:00:00 +0000] "GET /api/v1/items/12 HTTP/1.1" 200 5 "-" "curl/8""#;

#[test]
fn validate_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[sources.edge]\ntype = \"file\"\npaths = [\"/var/log/a.log\"]\nformat = \"nginx\"\n",
    )
    .unwrap();
    let out = vigil().arg("validate").arg(&good).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (1 source)"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[sources.edge]\ntype = \"file\"\npaths = [\"/x\"]\nformat = \"nginx\"\npoll_interval = 5\n").unwrap();
    let out = vigil().arg("validate").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sources.edge") && err.contains("poll_interval"),
        "{err}"
    );
}

#[test]
fn replay_reports_what_it_understood() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.log");
    std::fs::write(&log, format!("{LINE}\nnot a line\n{LINE}\n")).unwrap();
    let events = dir.path().join("events.ndjson");
    let dead = dir.path().join("dead.ndjson");
    let out = vigil()
        .args([
            "replay",
            "--format",
            "nginx",
            "--output",
            "json",
            "--events-out",
        ])
        .arg(&events)
        .arg("--dead-letters-out")
        .arg(&dead)
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["events_in"], 3);
    assert_eq!(summary["events_parsed"], 2);
    assert_eq!(summary["dead_lettered"], 1);
    assert_eq!(summary["dead_letter_reasons"]["malformed"], 1);
    assert!(summary["events_per_sec"].as_f64().unwrap() > 0.0);
    let ev = read_ndjson(&events);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0]["route"], "/api/v1/items/{id}");
    assert_eq!(read_ndjson(&dead)[0]["line"], "not a line");

    // The same bytes through stdin give the same event ids.
    let mut child = vigil()
        .args([
            "replay",
            "--format",
            "nginx",
            "--output",
            "json",
            "--events-out",
        ])
        .arg(dir.path().join("stdin-events.ndjson"))
        .arg("--dead-letters-out")
        .arg(dir.path().join("stdin-dead.ndjson"))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(std::fs::read(&log).unwrap().as_slice())
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let from_stdin = read_ndjson(&dir.path().join("stdin-events.ndjson"));
    assert_eq!(from_stdin[1]["event_id"], ev[1]["event_id"]);
}

#[test]
fn simulate_is_deterministic_and_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let out = dir.path().join(name);
        let labels = dir.path().join(format!("{name}.labels"));
        let st = vigil()
            .args([
                "simulate",
                "--format",
                "envoy-json",
                "--duration-secs",
                "900",
                "--benign-users",
                "50",
                "--seed",
                seed,
                "--out",
            ])
            .arg(&out)
            .arg("--labels-out")
            .arg(&labels)
            .status()
            .unwrap();
        assert!(st.success());
        (std::fs::read(out).unwrap(), read_ndjson(&labels))
    };
    let (a, labels) = run("a.log", "7");
    let (b, _) = run("b.log", "7");
    let (c, _) = run("c.log", "8");
    assert_eq!(a, b, "same seed, same bytes");
    assert_ne!(a, c);
    assert!(labels.len() >= 9, "a label per attacking subject");
    let scenarios: std::collections::HashSet<&str> = labels
        .iter()
        .map(|l| l["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(scenarios.len(), 9, "{scenarios:?}");
    let out = vigil()
        .args(["simulate", "--duration-secs", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("duration_secs"));
}

#[test]
fn run_serves_stdin_and_http_sources_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("vigil.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[server]\nlisten = \"127.0.0.1:{port}\"\n[pipeline]\nbatch_max_delay_ms = 20\n\
             [sources.pipe]\ntype = \"stdin\"\nformat = \"nginx\"\n[sources.push]\ntype = \"http\"\nformat = \"auto\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let events = dir.path().join("events.ndjson");
    let mut child = vigil()
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--events-out")
        .arg(&events)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{LINE}").unwrap();
    writeln!(stdin, "garbage").unwrap();
    drop(stdin);
    wait_until(20, "the server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert_eq!(http(port, "GET", "/healthz", "text/plain", "").0, 200);
    assert_eq!(http(port, "GET", "/readyz", "text/plain", "").0, 200);
    let (status, body) = http(
        port,
        "POST",
        "/v1/ingest?source=push",
        "text/plain",
        &format!("{LINE}\n{LINE}\n"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"events\":2"), "{body}");
    let (status, body) = http(
        port,
        "POST",
        "/v1/ingest?source=push",
        "application/octet-stream",
        LINE,
    );
    assert_eq!(status, 415, "{body}");
    wait_until(20, "3 events", || read_ndjson(&events).len() == 3);
    let (_, metrics) = http(port, "GET", "/metrics", "text/plain", "");
    assert!(
        metrics.contains("vigil_ingest_events_total{source=\"pipe\",type=\"stdin\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "vigil_ingest_dead_letters_by_reason_total{source=\"pipe\",reason=\"malformed\"} 1"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("203.0.113.7"), "no IP in metric labels");
    let dead = read_ndjson(&dir.path().join("data/dead-letters.ndjson"));
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0]["origin"],
        "stdin:0".replace(":0", &format!(":{}", LINE.len() + 1))
    );
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(child.wait().unwrap().success(), "clean exit on SIGTERM");
}
