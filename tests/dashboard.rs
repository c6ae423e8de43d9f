//! The web dashboard in a real browser: `vigil run` with a read token, simulated traffic pushed
//! over HTTP with timestamps near now, then Debian's headless Chromium loads the page twice:
//! once for a screenshot (saved as `target/test-artifacts/dashboard.png`), once with
//! `?selftest=1`, where the page clicks the first subject of a "top risky" table and waits for
//! the subject page (`body[data-selftest]`). The page must log nothing to the console (no
//! uncaught errors, no Content-Security-Policy violations), and its tables and charts must
//! show the pushed data.
//!
//! Chromium is required, never skipped: `scripts/setup` installs it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Vigil, free_port, http_request, wait_until};

const READ: &str = "dashboard-read-token-0123456789";
const INGEST: &str = "dashboard-ingest-token-0123456789";
/// Longest one Chromium run may take before it is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

fn config(dir: &Path, port: u16) -> PathBuf {
    let p = dir.join("vigil.toml");
    std::fs::write(
        &p,
        format!(
            r#"data_dir = "{data}"

[server]
listen = "127.0.0.1:{port}"

[store]
flush_interval_ms = 500
retention_days = 0

[api]
tokens = [
  {{ name = "dash", token = "{READ}", role = "read" }},
  {{ name = "shipper", token = "{INGEST}", role = "ingest" }},
]

[sources.push]
type = "http"
format = "nginx"
"#,
            data = dir.join("data").display()
        ),
    )
    .unwrap();
    p
}

/// Debian's `chromium` (or `chromium-browser`) on PATH, or `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "no Chromium: the dashboard test needs Debian's headless chromium; \
                 run scripts/setup (it installs `chromium` with apt-get)"
            )
        })
}

/// `POST /v1/sql` with the read token; the answer's rows.
fn sql(port: u16, q: &str) -> Vec<serde_json::Value> {
    let body = serde_json::json!({ "sql": q }).to_string();
    let auth = format!("Bearer {READ}");
    let (status, _, b) = http_request(
        port,
        "POST",
        "/v1/sql",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{q}: {}", String::from_utf8_lossy(&b));
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    v["rows"].as_array().cloned().unwrap_or_default()
}

/// JavaScript's `encodeURIComponent`, as the page builds its subject links.
fn uri_component(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `href="#/subject/KIND/ID"` as the page writes it (`'` needs no escaping in a quoted
/// attribute; `&` would, and subject ids hold none).
fn subject_href(kind: &str, id: &str) -> String {
    format!(
        "href=\"#/subject/{}/{}\"",
        uri_component(kind),
        uri_component(id)
    )
}

fn count(port: u16, q: &str) -> i64 {
    sql(port, q)
        .first()
        .and_then(|r| r.as_object())
        .and_then(|o| o.values().next())
        .and_then(|v| v.as_i64())
        .unwrap_or(-1)
}

/// One headless Chromium run with `args` then `url`, killed after [`CHROMIUM_TIMEOUT`]:
/// (stdout, stderr).
fn run_chromium(bin: &Path, profile: &Path, args: &[&str], url: &str) -> (String, String) {
    let out_path = profile.with_extension("stdout");
    let err_path = profile.with_extension("stderr");
    let mut child = Command::new(bin)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,900",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > CHROMIUM_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {CHROMIUM_TIMEOUT:?} ({url}); stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "chromium exited with {status}:\n{stderr}");
    (stdout, stderr)
}

/// Lines of Chromium's log that come from the page: console messages (`...:CONSOLE...]`,
/// which also carry uncaught exceptions and Content-Security-Policy violations) and load
/// failures. Chromium's own noise (D-Bus, GPU, sandbox warnings) is not matched. The
/// dashboard logs nothing on purpose, so any such line is a failure.
fn page_problems(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            l.contains(":CONSOLE")
                || l.contains("Uncaught")
                || l.contains("Refused to")
                || l.contains("Content Security Policy")
                || l.contains("Failed to load resource")
                || l.contains("Page load failed")
        })
        .collect()
}

#[test]
fn dashboard_in_headless_chromium() {
    let started = Instant::now();
    let chromium = chromium();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port);
    let vigil = Vigil::run(&cfg, &dir.path().join("events.ndjson"));
    wait_until(60, "the engine listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    // the page and its assets are served without a token, with the CSP
    for path in ["/", "/assets/app.js", "/assets/style.css"] {
        let (status, headers, body) = http_request(port, "GET", path, &[], b"");
        assert_eq!(status, 200, "{path}");
        assert!(!body.is_empty(), "{path} is empty");
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "content-security-policy" && v.contains("script-src 'self'")),
            "{path} has no CSP: {headers:?}"
        );
    }
    // the API needs it
    let (status, _, _) = http_request(port, "GET", "/metrics", &[], b"");
    assert_eq!(status, 401);

    // ten minutes of simulated traffic ending now: decisions are issued at event time and
    // expire, so the dashboard's "last hour" and "in force now" views see them
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let log = dir.path().join("traffic.log");
    let status = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["simulate", "--format", "nginx", "--seed", "11"])
        .args(["--start-unix-secs", &(now - 600).to_string()])
        .args(["--duration-secs", "600", "--benign-users", "50"])
        .args(["--attackers-per-scenario", "1", "--out"])
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "vigil simulate failed");
    let body = std::fs::read(&log).unwrap();
    let auth = format!("Bearer {INGEST}");
    let (status, _, b) = http_request(
        port,
        "POST",
        "/v1/ingest",
        &[("authorization", &auth), ("content-type", "text/plain")],
        &body,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    wait_until(60, "decisions", || {
        count(port, "SELECT count(*) FROM decisions") > 0
    });

    // what the page must show, from the same API
    let events = count(port, "SELECT count(*) FROM events");
    assert!(events > 1000, "{events} events");
    let blocked: Vec<(String, String)> = sql(
        port,
        "SELECT DISTINCT kind, subject FROM decisions WHERE action = 'block'",
    )
    .iter()
    .map(|r| {
        (
            r["kind"].as_str().unwrap().to_string(),
            r["subject"].as_str().unwrap().to_string(),
        )
    })
    .collect();
    assert!(!blocked.is_empty(), "the simulated attacks got no block");
    let decided: Vec<String> = sql(port, "SELECT DISTINCT kind, subject FROM decisions")
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["kind"].as_str().unwrap(),
                r["subject"].as_str().unwrap()
            )
        })
        .collect();

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let base = format!("http://127.0.0.1:{port}/");

    // 1. the overview, as a screenshot
    let (_, err1) = run_chromium(
        &chromium,
        &dir.path().join("profile-shot"),
        &[&format!("--screenshot={}", shot.display())],
        &format!("{base}?token={READ}"),
    );
    let problems = page_problems(&err1);
    assert!(
        problems.is_empty(),
        "the page logged to the console:\n{}",
        problems.join("\n")
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "a blank screenshot? {} bytes",
        png.len()
    );
    println!("screenshot: {}", shot.display());

    // 2. the self-test: click a top-risky subject, the subject page renders; dump the DOM
    let (dom, err2) = run_chromium(
        &chromium,
        &dir.path().join("profile-selftest"),
        &["--dump-dom"],
        &format!("{base}?selftest=1&token={READ}"),
    );
    let problems = page_problems(&err2);
    assert!(
        problems.is_empty(),
        "the page logged to the console:\n{}",
        problems.join("\n")
    );
    std::fs::write(artifacts.join("dashboard-selftest.html"), &dom).unwrap();
    assert!(
        dom.contains("data-selftest=\"ok\""),
        "self-test did not pass: {}",
        dom.split("data-selftest=")
            .nth(1)
            .map(|s| s.chars().take(200).collect::<String>())
            .unwrap_or_else(|| "no data-selftest attribute (the script did not run?)".into())
    );
    // the header read /metrics
    assert!(
        dom.contains(">ready<"),
        "the header does not say ready (metrics not read)"
    );
    // the sources table shows the pushed events (numbers are formatted en-US)
    let formatted = {
        let s = events.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    assert!(
        dom.contains(&format!(">{formatted}<")),
        "the sources panel does not show the {formatted} events pushed"
    );
    // the charts are drawn from real rows: stacked bars per action, the score histogram
    assert!(
        dom.contains("class=\"bar a-"),
        "the decisions-by-action chart has no bars"
    );
    assert!(
        dom.contains("class=\"bar k-"),
        "the score histogram has no bars"
    );
    // the top risky tables and the live feed link real decided subjects, and a block shows
    let linked: Vec<&String> = decided
        .iter()
        .filter(|s| {
            let (kind, id) = s.split_once('/').unwrap();
            dom.contains(&subject_href(kind, id))
        })
        .collect();
    assert!(
        linked.len() >= 3,
        "only {linked:?} of the decided subjects are linked on the page"
    );
    assert!(
        blocked
            .iter()
            .any(|(k, id)| dom.contains(&subject_href(k, id))),
        "no blocked subject ({blocked:?}) on the page"
    );
    assert!(
        dom.contains("class=\"badge a-block\""),
        "no block badge on the page"
    );
    assert!(dom.contains("top-risky"), "no top risky table on the page");
    // the subject page the click opened: a decided subject, with its features
    let shown = dom
        .split("id=\"s-id\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or_default()
        .to_string();
    let shown_kind = dom
        .split("id=\"s-kind\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or_default()
        .to_string();
    let scored = count(
        port,
        &format!(
            "SELECT count(*) FROM scores WHERE kind = '{}' AND subject = '{}'",
            shown_kind.replace('\'', "''"),
            shown.replace('\'', "''")
        ),
    );
    assert!(
        !shown.is_empty() && scored > 0,
        "the subject page shows {shown_kind} {shown:?}, not a scored subject"
    );
    assert!(dom.contains("id=\"subject-features\""), "no features table");
    assert!(dom.contains(">requests_1m<"), "features table without rows");

    vigil.stop();
    println!(
        "dashboard test: {} decided subjects, {} linked; {:.1}s",
        decided.len(),
        linked.len(),
        started.elapsed().as_secs_f64()
    );
}
