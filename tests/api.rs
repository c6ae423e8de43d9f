//! The engine's API end to end (`vigil run` as a child process, requests over 127.0.0.1):
//! SQL over the store in three formats, read-only refusals, bearer tokens and roles, data
//! surviving a restart, subjects, manual decisions and revokes, backtests, the OpenAPI document.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use support::{Vigil, free_port, http_request, wait_until};

const READ: &str = "read-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const INGEST: &str = "ingest-token-0123456789";

fn config(dir: &Path, port: u16) -> std::path::PathBuf {
    let p = dir.join("vigil.toml");
    std::fs::write(
        &p,
        format!(
            r#"data_dir = "{data}"

[server]
listen = "127.0.0.1:{port}"

[store]
flush_interval_ms = 300
retention_days = 0

[api]
tokens = [
  {{ name = "dash", token = "{READ}", role = "read" }},
  {{ name = "ops", token = "{ADMIN}", role = "admin" }},
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

fn start(cfg: &Path, dir: &Path, port: u16) -> Vigil {
    let v = Vigil::run(cfg, &dir.join("events.ndjson"));
    wait_until(60, "the engine listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    v
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// A JSON request with `auth` (`Bearer …`): (status, headers, body).
fn authorized(
    port: u16,
    method: &str,
    path: &str,
    auth: &str,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    http_request(
        port,
        method,
        path,
        &[
            ("authorization", auth),
            ("content-type", "application/json"),
        ],
        body,
    )
}

/// `POST /v1/sql` as JSON with the read token.
fn sql(port: u16, q: &str) -> serde_json::Value {
    let body = serde_json::json!({ "sql": q }).to_string();
    let auth = bearer(READ);
    let (status, _, b) = authorized(port, "POST", "/v1/sql", &auth, body.as_bytes());
    assert_eq!(status, 200, "{q}: {}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

fn count(port: u16, q: &str) -> i64 {
    sql(port, q)["rows"][0]
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|v| v.as_i64())
        .unwrap_or(-1)
}

fn push(port: u16, lines: &[String]) {
    let auth = bearer(INGEST);
    let body = lines.join("\n") + "\n";
    let (status, _, b) = http_request(
        port,
        "POST",
        "/v1/ingest",
        &[("authorization", &auth), ("content-type", "text/plain")],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
}

fn line(ip: &str, user: &str, sec: u32, path: &str, status: u16) -> String {
    format!(
        r#"{ip} - {user} [24/Nov/2026:10:{:02}:{:02} +0000] "GET {path} HTTP/1.1" {status} 512 "-" "Mozilla/5.0""#,
        sec / 60,
        sec % 60
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Unix seconds as (NGINX's `$time_local` in UTC, RFC 3339).
fn times(unix: i64) -> (String, String) {
    // days to a civil date (H. Hinnant's algorithm)
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    (
        format!(
            "{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02} +0000",
            MONTHS[(m - 1) as usize]
        ),
        format!("{y}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
    )
}

/// A line at unix time `t`.
fn line_at(ip: &str, user: &str, t: i64, path: &str, status: u16) -> String {
    format!(
        r#"{ip} - {user} [{}] "GET {path} HTTP/1.1" {status} 512 "-" "Mozilla/5.0""#,
        times(t).0
    )
}

#[test]
fn civil_times() {
    assert_eq!(
        times(1_795_514_400),
        (
            "24/Nov/2026:10:00:00 +0000".to_string(),
            "2026-11-24T10:00:00Z".to_string()
        )
    );
}

#[test]
fn sql_over_the_store_in_three_formats_and_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port);
    let v = start(&cfg, dir.path(), port);
    let lines: Vec<String> = (0..50)
        .map(|i| {
            line(
                &format!("198.51.100.{}", i % 5),
                "-",
                i,
                &format!("/api/items/{i}"),
                200,
            )
        })
        .collect();
    push(port, &lines);
    wait_until(30, "50 events in SQL", || {
        count(port, "SELECT count(*) AS n FROM events") == 50
    });
    const BY_IP: &str =
        "SELECT client_ip, count(*) AS n FROM events GROUP BY client_ip ORDER BY client_ip";
    let r = sql(port, BY_IP);
    let by_ip = r.clone();
    assert_eq!(r["row_count"], 5);
    assert_eq!(r["truncated"], false);
    assert_eq!(r["schema"][0]["name"], "client_ip");
    assert_eq!(r["rows"][0]["client_ip"], "198.51.100.0");
    assert_eq!(r["rows"][0]["n"], 10);

    // CSV and Arrow IPC by Accept
    let auth = bearer(READ);
    let q = br#"{"sql":"SELECT event_id, path, forwarded_for FROM events ORDER BY timestamp"}"#;
    let (status, headers, body) = http_request(
        port,
        "POST",
        "/v1/sql",
        &[("authorization", &auth), ("accept", "text/csv")],
        q,
    );
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "text/csv")
    );
    let csv = String::from_utf8(body).unwrap();
    assert_eq!(csv.lines().count(), 51, "{csv}");
    assert!(csv.starts_with("event_id,path,forwarded_for"));
    let (status, headers, body) = http_request(
        port,
        "POST",
        "/v1/sql",
        &[
            ("authorization", &auth),
            ("accept", "application/vnd.apache.arrow.stream"),
        ],
        q,
    );
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "vigil-truncated" && v == "false")
    );
    let (_, _, by_ip_ipc) = http_request(
        port,
        "POST",
        "/v1/sql",
        &[
            ("authorization", &auth),
            ("accept", "application/vnd.apache.arrow.stream"),
        ],
        serde_json::json!({ "sql": BY_IP }).to_string().as_bytes(),
    );
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 50);

    // SHOW and DESCRIBE work on the store's tables
    let tables = sql(port, "SHOW TABLES");
    for t in ["events", "scores", "decisions"] {
        assert!(
            tables["rows"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["table_name"] == t),
            "{tables}"
        );
    }
    let described = sql(port, "DESCRIBE decisions");
    assert_eq!(described["row_count"], 12, "{described}");

    // read-only, with clear errors
    for bad in [
        "DROP TABLE events",
        "COPY (SELECT 1) TO '/tmp/vigil-copy.csv'",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "SELECT * FROM '/etc/passwd'",
        "SELEC 1",
    ] {
        let body = serde_json::json!({ "sql": bad }).to_string();
        let (status, headers, b) = http_request(
            port,
            "POST",
            "/v1/sql",
            &[("authorization", &auth)],
            body.as_bytes(),
        );
        assert_eq!(status, 400, "{bad}: {}", String::from_utf8_lossy(&b));
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "content-type" && v == "application/problem+json")
        );
        let p: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert!(!p["detail"].as_str().unwrap().is_empty());
    }
    let (status, _, _) = http_request(
        port,
        "POST",
        "/v1/sql",
        &[("authorization", &auth), ("accept", "image/png")],
        q,
    );
    assert_eq!(status, 406);

    // tokens and roles
    let (status, headers, _) = http_request(port, "POST", "/v1/sql", &[], q);
    assert_eq!(status, 401);
    assert!(headers.iter().any(|(k, _)| k == "www-authenticate"));
    let (status, _, _) = http_request(
        port,
        "POST",
        "/v1/sql",
        &[("authorization", "Bearer not-a-token-at-all")],
        q,
    );
    assert_eq!(status, 401);
    let (status, _, _) = http_request(port, "GET", "/metrics", &[], b"");
    assert_eq!(status, 401);
    let (status, _, _) = http_request(port, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200);
    let ingest = bearer(INGEST);
    let (status, _, _) = http_request(port, "POST", "/v1/sql", &[("authorization", &ingest)], q);
    assert_eq!(status, 403);
    let (status, _, _) = authorized(
        port,
        "POST",
        "/v1/decisions",
        &auth,
        br#"{"subject":{"kind":"ip","id":"192.0.2.1"},"action":"block"}"#,
    );
    assert_eq!(status, 403);
    let (status, _, m) = authorized(port, "GET", "/metrics", &auth, b"");
    assert_eq!(status, 200);
    let m = String::from_utf8(m).unwrap();
    assert!(
        m.contains("vigil_store_rows_flushed_total{table=\"events\"} 50"),
        "{m}"
    );

    // a restart finds everything
    v.stop();
    let files = walk(&dir.path().join("data/store/events"));
    assert!(
        files
            .iter()
            .all(|f| f.contains("/date=2026-11-24/hour=10/")),
        "{files:?}"
    );
    assert!(!files.is_empty());
    // real clients agree with vigil's SQL: pyarrow reads the Arrow IPC answer, and DuckDB and
    // pyarrow's Hive-partitioned dataset read the Parquet files as they are
    let python = std::env::var_os("VIGIL_VENV")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/vigil-venv")))
        .map(|v| v.join("bin/python"))
        .filter(|p| p.exists())
        .expect("no Python venv with pyarrow and duckdb: run scripts/setup");
    let ipc_path = dir.path().join("answer.arrows");
    std::fs::write(&ipc_path, &by_ip_ipc).unwrap();
    let out = Command::new(python)
        .arg("-c")
        .arg(
            "import sys, json, duckdb, pyarrow as pa, pyarrow.dataset as ds\n\
             ipc = pa.ipc.open_stream(open(sys.argv[1], 'rb').read()).read_all()\n\
             d = sys.argv[2]\n\
             duck = duckdb.sql(f\"SELECT client_ip, count(*) AS n, count(DISTINCT event_id) AS u \
             FROM read_parquet('{d}/*/*/*.parquet', hive_partitioning = true) \
             GROUP BY client_ip ORDER BY client_ip\").fetchall()\n\
             t = ds.dataset(d, format='parquet', partitioning='hive').to_table()\n\
             print(json.dumps({'ipc': [[r['client_ip'], r['n']] for r in ipc.to_pylist()], \
             'duckdb': [[r[0], r[1]] for r in duck], 'duckdb_distinct': sum(r[2] for r in duck), \
             'pyarrow_rows': t.num_rows, 'hours': sorted(set(t.column('hour').to_pylist()))}))",
        )
        .arg(&ipc_path)
        .arg(dir.path().join("data/store/events"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clients: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vigil_by_ip: Vec<serde_json::Value> = by_ip["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| serde_json::json!([r["client_ip"], r["n"]]))
        .collect();
    assert_eq!(clients["ipc"], serde_json::json!(vigil_by_ip), "{clients}");
    assert_eq!(
        clients["duckdb"],
        serde_json::json!(vigil_by_ip),
        "{clients}"
    );
    assert_eq!(clients["duckdb_distinct"], 50);
    assert_eq!(clients["pyarrow_rows"], 50);
    assert_eq!(clients["hours"], serde_json::json!([10]));
    let _v = start(&cfg, dir.path(), port);
    assert_eq!(count(port, "SELECT count(*) FROM events"), 50);
    assert_eq!(
        count(port, "SELECT count(DISTINCT event_id) FROM events"),
        50
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn subjects_manual_decisions_and_backtests() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port);
    let _v = start(&cfg, dir.path(), port);
    // a scanner probing sensitive files, and a quiet user, over the last two minutes (decisions
    // are issued at event time, so the scanner's is in force now)
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t0 = now - 120;
    let mut lines = Vec::new();
    for i in 0..40 {
        let path = [
            "/.env",
            "/.git/config",
            "/wp-config.php.bak",
            "/admin/backup.sql",
        ][i % 4];
        lines.push(line_at("203.0.113.66", "-", t0 + i as i64, path, 404));
        lines.push(line_at(
            "198.51.100.7",
            "alice",
            t0 + i as i64 * 2,
            "/api/orders/1",
            200,
        ));
    }
    let (from, to) = (times(t0 - 60).1, times(now + 60).1);
    push(port, &lines);
    wait_until(30, "80 events in SQL", || {
        count(port, "SELECT count(*) FROM events") == 80
    });
    let read = bearer(READ);
    let admin = bearer(ADMIN);

    let (status, _, b) = authorized(port, "GET", "/v1/subjects/ip/203.0.113.66", &read, b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    let s: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(s["tracked"], true);
    assert!(
        s["features"]["sensitive_hits_1m"].as_f64().unwrap() > 5.0,
        "{s}"
    );
    assert!(s["score"].as_f64().unwrap() > 0.5, "{s}");
    assert!(
        s["decision"]["action"].is_string(),
        "the scanner has a decision: {s}"
    );
    // the pillar view: the scanner's decision is evidence against the application workload
    wait_until(30, "the scanner's decision in SQL", || {
        count(
            port,
            "SELECT count(*) FROM decisions WHERE subject = '203.0.113.66'",
        ) > 0
    });
    let p = sql(
        port,
        "SELECT pillar, count(*) AS n FROM pillars WHERE subject = '203.0.113.66' \
         GROUP BY pillar ORDER BY pillar",
    );
    let pillars: Vec<&str> = p["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["pillar"].as_str())
        .collect();
    assert!(pillars.contains(&"application_workload"), "{p}");
    assert!(
        count(port, "SELECT count(*) FROM rules WHERE pillar = 'device'") >= 2,
        "the device rules"
    );
    assert!(
        count(
            port,
            "SELECT count(*) FROM features WHERE name = 'bytes_out_1m' AND pillar = 'data'"
        ) == 1
    );

    let (status, _, b) = authorized(port, "GET", "/v1/subjects/ip/192.0.2.250", &read, b"");
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&b));
    let (status, _, _) = authorized(port, "GET", "/v1/subjects/planet/x", &read, b"");
    assert_eq!(status, 400);

    // manual block, then revoke
    let (status, _, b) = authorized(port, "POST", "/v1/decisions", &admin, br#"{"subject":{"kind":"identity","id":"mallory"},"action":"block","ttl_secs":600,"reason":"ticket 42"}"#);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&b));
    let d: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(d["origin"], "manual");
    assert!(
        d["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "manual:ops")
    );
    let (status, _, b) = authorized(
        port,
        "GET",
        "/v1/decisions?active=true&kind=identity",
        &read,
        b"",
    );
    assert_eq!(status, 200);
    let l: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert!(
        l["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["subject"]["id"] == "mallory"),
        "{l}"
    );
    let (status, _, b) = authorized(
        port,
        "DELETE",
        "/v1/decisions/identity/mallory",
        &admin,
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    let r: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(r["revoked"]["action"], "block");
    let (_, _, b) = authorized(
        port,
        "GET",
        "/v1/decisions?active=true&kind=identity",
        &read,
        b"",
    );
    let l: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert!(
        !l["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["subject"]["id"] == "mallory")
    );
    // both are in the decisions table, marked manual
    wait_until(30, "manual decisions in SQL", || {
        count(
            port,
            "SELECT count(*) FROM decisions WHERE subject = 'mallory' AND origin = 'manual'",
        ) == 2
    });
    let h = sql(
        port,
        "SELECT change FROM decisions WHERE subject = 'mallory' ORDER BY issued_at",
    );
    assert_eq!(h["rows"][0]["change"], "issue");
    assert_eq!(h["rows"][1]["change"], "revoke");
    let (status, _, b) = authorized(
        port,
        "GET",
        "/v1/decisions?kind=ip&subject=203.0.113.66",
        &read,
        b"",
    );
    assert_eq!(status, 200);
    let l: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert!(l["count"].as_u64().unwrap() >= 1, "{l}");

    // a backtest finds the scanner and not the user
    let body = serde_json::json!({
        "rule": {"kind": "ip", "when": "sensitive_hits_1m >= 5"},
        "from": from,
        "to": to,
    })
    .to_string();
    let (status, _, b) = authorized(port, "POST", "/v1/backtest", &read, body.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    let bt: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(bt["events"], 80);
    let hit: Vec<&str> = bt["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    assert_eq!(hit, ["203.0.113.66"], "{bt}");
    let bad = serde_json::json!({
        "rule": {"kind": "ip", "when": "no_such_feature > 1"},
        "from": from,
        "to": to,
    })
    .to_string();
    let (status, _, b) = authorized(port, "POST", "/v1/backtest", &read, bad.as_bytes());
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&b).contains("no_such_feature"));

    // the CLI clients
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["sql", "--config"])
        .arg(&cfg)
        .args([
            "--token",
            READ,
            "--format",
            "table",
            "SELECT count(*) AS n FROM events",
        ])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| 80"), "{table}");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "backtest",
            "sensitive_hits_1m >= 5",
            "--kind",
            "ip",
            "--config",
        ])
        .arg(&cfg)
        .args(["--token", READ, "--from", &from, "--to", &to])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("203.0.113.66"));
}

#[test]
fn every_documented_path_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port);
    let _v = start(&cfg, dir.path(), port);
    let admin = bearer(ADMIN);
    let (status, _, b) = authorized(port, "GET", "/v1/openapi.json", &admin, b"");
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 12);
    for (path, ops) in paths {
        let concrete = path.replace("{kind}", "ip").replace("{id}", "192.0.2.9");
        for method in ops.as_object().unwrap().keys() {
            if path == "/v1/decisions/stream" {
                continue; // an endless stream; covered by the feed tests
            }
            let (status, _, body) = http_request(
                port,
                &method.to_uppercase(),
                &concrete,
                &[
                    ("authorization", &admin),
                    ("content-type", "application/json"),
                ],
                b"{}",
            );
            assert!(
                status != 404 || path.contains("{id}"),
                "{method} {path}: {status}"
            );
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                status < 500,
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}

#[test]
fn replay_into_a_data_dir_then_sql_and_backtest_offline() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("traffic.log");
    let data = dir.path().join("data");
    let vigil = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
        c.env("VIGIL_LOG", "warn");
        c
    };
    let out = vigil()
        .args(["simulate", "--seed", "7", "--duration-secs", "300"])
        .args(["--start-unix-secs", "1795514400", "--scenarios"])
        .args(["sensitive_path_scan,credential_stuffing", "--out"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = vigil()
        .args([
            "replay",
            "--format",
            "nginx",
            "--output",
            "json",
            "--data-dir",
        ])
        .arg(&data)
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = summary["events_parsed"].as_i64().unwrap();
    assert!(events > 1000, "{summary}");

    let sql = |q: &str, format: &str| {
        vigil()
            .args(["sql", "--format", format, "--data-dir"])
            .arg(&data)
            .arg(q)
            .output()
            .unwrap()
    };
    let out = sql(
        "SELECT count(*) AS n, count(DISTINCT event_id) AS u FROM events",
        "json",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["rows"][0]["n"], events);
    assert_eq!(r["rows"][0]["u"], events);
    // the decisions replay counted are the decisions stored
    let out = sql(
        "SELECT action, count(*) AS n FROM decisions GROUP BY action ORDER BY action",
        "csv",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut stored = serde_json::Map::new();
    for l in csv.lines().skip(1) {
        let (a, n) = l.split_once(',').unwrap();
        stored.insert(a.to_string(), n.parse::<i64>().unwrap().into());
    }
    assert_eq!(
        serde_json::Value::Object(stored),
        summary["decisions"],
        "{csv}"
    );
    assert!(
        summary["decisions"]["block"].as_i64().unwrap_or(0) > 0,
        "{summary}"
    );
    // refusals exit non-zero with the reason
    let out = sql("DROP TABLE events", "table");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only queries"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sql("SELECT nope FROM events", "table");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    // a backtest over the same directory
    let out = vigil()
        .args([
            "backtest",
            "sensitive_hits_1m >= 5",
            "--kind",
            "ip",
            "--format",
            "json",
        ])
        .args([
            "--from",
            "2026-11-24T10:00:00Z",
            "--to",
            "2026-11-24T10:10:00Z",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bt["events"], events);
    assert!(bt["subjects_total"].as_u64().unwrap() >= 1, "{bt}");
}
