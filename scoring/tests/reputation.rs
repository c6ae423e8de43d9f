//! Reputation lists end to end: lists from files and from URLs served by a real HTTP server on
//! 127.0.0.1 (each format, refreshes, failed downloads, an offline start from the cache), and
//! what a match does to a subject: the feature, the reason, the list's weight in the trust
//! score, and its action when it has one.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_enforce::Decision;
use vigil_scoring::reputation::{ReputationSource, Reputations, resolve_cache_paths};
use vigil_scoring::{Scorer, ScoringConfig};

/// What the test server answers on a path.
#[derive(Clone)]
enum Reply {
    /// 200 with this body.
    List(String),
    /// This status, with a short body.
    Status(u16),
    /// 302 to this location.
    Redirect(String),
    /// Nothing for this long, then 200 with an empty body.
    Stall(Duration),
}

/// A tiny HTTP/1.1 server on 127.0.0.1 (one thread per connection, `Connection: close`),
/// answering each path with what [`ListServer::set`] last gave it, 404 otherwise.
struct ListServer {
    addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    /// The head of every request received, in order.
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl ListServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, h, s) = (routes.clone(), heads.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (routes, heads) = (r.clone(), h.clone());
                std::thread::spawn(move || answer(conn, &routes, &heads));
            }
        });
        Self {
            addr,
            routes,
            heads,
            stop,
            accept: Some(accept),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn set(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
    }
}

impl Drop for ListServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // wake the accept loop so it sees the flag
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut conn: TcpStream, routes: &Mutex<HashMap<String, Reply>>, heads: &Mutex<Vec<String>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    heads.lock().unwrap().push(head.clone());
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let reply = routes.lock().unwrap().get(&path).cloned();
    let (status, extra, body) = match reply {
        Some(Reply::List(body)) => (200, String::new(), body),
        Some(Reply::Status(code)) => (code, String::new(), format!("status {code}\n")),
        Some(Reply::Redirect(to)) => (302, format!("Location: {to}\r\n"), String::new()),
        Some(Reply::Stall(d)) => {
            std::thread::sleep(d);
            (200, String::new(), String::new())
        }
        None => (404, String::new(), "not found\n".to_string()),
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
}

const NETSET: &str = "#\n# firehol_level1 (test copy)\n#\n203.0.113.0/24\n";
const CROWDSEC: &str = r#"[
  {"value": "198.51.100.20", "scope": "Ip", "type": "ban", "duration": "3h", "scenario": "crowdsecurity/ssh-bf", "origin": "CAPI"},
  {"value": "DE", "scope": "Country", "type": "ban", "duration": "1h", "scenario": "manual", "origin": "cscli"}
]"#;

fn url_list(name: &str, url: String, format: &str) -> ReputationSource {
    ReputationSource {
        name: name.into(),
        url: Some(url),
        format: format.into(),
        ..Default::default()
    }
}

fn events(ips: &[&str], n: usize) -> arrow::array::RecordBatch {
    let mut text = String::new();
    for (i, ip) in ips.iter().cycle().take(n).enumerate() {
        text.push_str(
            &serde_json::json!({
                "timestamp": 1_795_500_000.0 + i as f64, "client_ip": ip, "method": "GET",
                "path": "/api/v1/products", "status": 200, "user_agent": "Mozilla/5.0",
            })
            .to_string(),
        );
        text.push('\n');
    }
    support::events_from_json_lines(&text)
}

fn scorer_with(lists: Vec<ReputationSource>) -> Scorer {
    let mut cfg = ScoringConfig::default();
    cfg.models.enabled = false;
    cfg.reputation = lists;
    Scorer::new(&cfg).unwrap()
}

fn decisions_of(scorer: &mut Scorer, ips: &[&str]) -> Vec<Decision> {
    scorer.score_batch(&events(ips, 6)).unwrap().decisions
}

/// Calls `maybe_reload` until `done` holds, for at most ten seconds.
async fn reload_until(r: &mut Reputations, what: &str, done: impl Fn(&Reputations) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        r.maybe_reload();
        if done(r) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn an_address_on_a_list_is_monitored_with_the_lists_name() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("firehol_level1.netset");
    std::fs::write(&list, NETSET).unwrap();
    let mut scorer = scorer_with(vec![ReputationSource {
        name: "firehol_level1".into(),
        path: Some(list),
        format: "netset".into(),
        ..Default::default()
    }]);
    let got: Vec<_> = decisions_of(&mut scorer, &["203.0.113.9", "198.51.100.4"])
        .into_iter()
        .map(|d| (d.subject.key(), d.action.as_str(), d.origin, d.reasons))
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    let (subject, action, origin, reasons) = &got[0];
    // without an `action` the list blocks nothing: the default rule records it, no more
    assert_eq!(
        (subject.as_str(), *action, origin.as_str()),
        ("ip:203.0.113.9", "monitor", "rule")
    );
    assert!(
        reasons.contains(&"rule:bad_reputation".to_string()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"reputation:firehol_level1".to_string()),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn each_format_loads_from_its_url() {
    let server = ListServer::start();
    server.set("/firehol_level1.netset", Reply::List(NETSET.into()));
    server.set("/plain.txt", Reply::List("# mine\n192.0.2.7\n".into()));
    server.set("/moved", Reply::Redirect("/plain.txt".into()));
    server.set("/decisions.json", Reply::List(CROWDSEC.into()));
    let dir = tempfile::tempdir().unwrap();
    let mut sources = vec![
        url_list(
            "firehol_level1",
            server.url("/firehol_level1.netset"),
            "netset",
        ),
        // through a redirect
        url_list("mine", server.url("/moved"), "plain"),
        url_list("crowdsec", server.url("/decisions.json"), "crowdsec"),
    ];
    resolve_cache_paths(&mut sources, dir.path());
    let mut r = Reputations::load(&sources).unwrap();
    assert!(
        r.lists_of("203.0.113.9").is_empty(),
        "nothing before the first download"
    );
    let feeds = r.feeds();
    for f in feeds.iter() {
        let entries = f.refresh().await.unwrap();
        assert_eq!(entries, 1, "{}", f.name());
    }
    r.maybe_reload();
    assert_eq!(r.lists_of("203.0.113.9"), ["firehol_level1"]);
    assert_eq!(r.lists_of("192.0.2.7"), ["mine"]);
    assert_eq!(r.lists_of("198.51.100.20"), ["crowdsec"]);
    assert!(r.lists_of("198.51.100.21").is_empty());
    // each download is kept under the data directory for the next start
    let cache = dir.path().join("reputation");
    assert_eq!(read(&cache.join("firehol_level1.netset")), NETSET);
    assert_eq!(read(&cache.join("mine.txt")), "# mine\n192.0.2.7\n");
    assert_eq!(read(&cache.join("crowdsec.json")), CROWDSEC);
    let status = feeds.get("crowdsec").unwrap().status();
    assert_eq!(
        (status.downloads_ok, status.downloads_failed, status.entries),
        (1, 0, 1)
    );
    assert!(status.last_success_unix_secs > 0 && status.last_error.is_none());
}

#[tokio::test]
async fn headers_go_to_the_lists_own_origin_only() {
    let lapi = ListServer::start();
    let elsewhere = ListServer::start();
    lapi.set("/v1/decisions", Reply::List(CROWDSEC.into()));
    lapi.set("/moved", Reply::Redirect(elsewhere.url("/copy.json")));
    elsewhere.set("/copy.json", Reply::List(CROWDSEC.into()));
    let dir = tempfile::tempdir().unwrap();
    let with_key = |name: &str, url: String| ReputationSource {
        headers: [("X-Api-Key".to_string(), "s3cret-key".to_string())].into(),
        ..url_list(name, url, "crowdsec")
    };
    let mut sources = vec![
        with_key("lapi", lapi.url("/v1/decisions")),
        with_key("moved", lapi.url("/moved")),
    ];
    resolve_cache_paths(&mut sources, dir.path());
    let r = Reputations::load(&sources).unwrap();
    for f in r.feeds().iter() {
        assert_eq!(f.refresh().await.unwrap(), 1, "{}", f.name());
    }
    let heads = |s: &ListServer| s.heads.lock().unwrap().clone();
    let lapi_heads = heads(&lapi);
    assert_eq!(lapi_heads.len(), 2);
    for h in &lapi_heads {
        assert!(
            h.to_ascii_lowercase().contains("x-api-key: s3cret-key"),
            "the key goes to the list's origin: {h}"
        );
    }
    let elsewhere_heads = heads(&elsewhere);
    assert_eq!(elsewhere_heads.len(), 1);
    assert!(
        !elsewhere_heads[0].contains("s3cret-key"),
        "the key does not follow a redirect to another origin: {}",
        elsewhere_heads[0]
    );
}

#[tokio::test]
async fn a_changed_list_is_picked_up_on_the_next_scheduled_download() {
    let server = ListServer::start();
    server.set("/l.txt", Reply::List("203.0.113.9\n".into()));
    let dir = tempfile::tempdir().unwrap();
    let mut sources = vec![ReputationSource {
        refresh_secs: Some(1),
        ..url_list("l", server.url("/l.txt"), "plain")
    }];
    resolve_cache_paths(&mut sources, dir.path());
    let mut r = Reputations::load(&sources).unwrap();
    let feed = r.feeds().get("l").unwrap().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(feed.clone().run(async move {
        let _ = stopped.await;
    }));
    reload_until(&mut r, "the first download", |r| {
        r.lists_of("203.0.113.9") == ["l"]
    })
    .await;
    server.set("/l.txt", Reply::List("198.51.100.1\n".into()));
    reload_until(&mut r, "the changed list", |r| {
        r.lists_of("198.51.100.1") == ["l"] && r.lists_of("203.0.113.9").is_empty()
    })
    .await;
    assert!(feed.status().downloads_ok >= 2);
    assert_eq!(read(&dir.path().join("reputation/l.txt")), "198.51.100.1\n");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the feed stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn failed_downloads_keep_the_last_good_list() {
    let server = ListServer::start();
    server.set("/l.txt", Reply::List("203.0.113.9\n".into()));
    let dir = tempfile::tempdir().unwrap();
    let mut sources = vec![ReputationSource {
        timeout_ms: Some(500),
        max_bytes: Some(1024),
        ..url_list("l", server.url("/l.txt"), "plain")
    }];
    resolve_cache_paths(&mut sources, dir.path());
    let cache = sources[0].cache_path.clone().unwrap();
    let mut r = Reputations::load(&sources).unwrap();
    let feeds = r.feeds();
    let feed = feeds.get("l").unwrap();
    feed.refresh().await.unwrap();
    r.maybe_reload();
    assert_eq!(r.lists_of("203.0.113.9"), ["l"]);

    let failures = [
        (Reply::Status(500), "status 500"),
        (
            Reply::List("<html><body>Service Unavailable</body></html>\n".into()),
            "does not parse",
        ),
        (Reply::List("192.0.2.1\n".repeat(200)), "max_bytes"),
        (Reply::Stall(Duration::from_secs(3)), "timed out"),
        (Reply::Redirect("/elsewhere".into()), "status 404"),
    ];
    for (n, (reply, reason)) in failures.into_iter().enumerate() {
        server.set("/l.txt", reply);
        let e = feed.refresh().await.expect_err(reason).to_string();
        assert!(e.contains("`l`") && e.contains(reason), "{e}");
        r.maybe_reload();
        assert_eq!(r.lists_of("203.0.113.9"), ["l"], "after {reason}");
        assert_eq!(read(&cache), "203.0.113.9\n", "after {reason}");
        let status = feed.status();
        assert_eq!(
            (status.downloads_ok, status.downloads_failed),
            (1, n as u64 + 1)
        );
        assert!(status.last_error.unwrap().contains(reason));
    }
    let mut metrics = String::new();
    feeds.render_metrics(&mut metrics);
    assert!(
        metrics.contains("vigil_reputation_downloads_total{list=\"l\",outcome=\"error\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_reputation_downloads_total{list=\"l\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_reputation_entries{list=\"l\"} 1"),
        "{metrics}"
    );

    // the feed comes back: the next download replaces the list and clears the error
    server.set("/l.txt", Reply::List("198.51.100.1\n".into()));
    feed.refresh().await.unwrap();
    r.maybe_reload();
    assert_eq!(r.lists_of("198.51.100.1"), ["l"]);
    assert!(feed.status().last_error.is_none());
}

#[tokio::test]
async fn an_offline_start_uses_the_cache_of_the_last_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut sources;
    {
        // the last run downloaded the list, then the feed went away
        let server = ListServer::start();
        server.set("/l.netset", Reply::List(NETSET.into()));
        sources = vec![url_list("l", server.url("/l.netset"), "netset")];
        resolve_cache_paths(&mut sources, dir.path());
        let r = Reputations::load(&sources).unwrap();
        r.feeds().get("l").unwrap().refresh().await.unwrap();
    }
    let mut r = Reputations::load(&sources).unwrap();
    assert_eq!(r.lists_of("203.0.113.9"), ["l"], "loaded from the cache");
    let feeds = r.feeds();
    let feed = feeds.get("l").unwrap();
    let e = feed
        .refresh()
        .await
        .expect_err("nothing listens")
        .to_string();
    assert!(e.contains("`l`") && e.contains("connect"), "{e}");
    assert_eq!(feed.status().entries, 1);
    r.maybe_reload();
    assert_eq!(r.lists_of("203.0.113.9"), ["l"], "the cache stays in use");
}

#[test]
fn a_lists_weight_raises_the_trust_score() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.txt");
    std::fs::write(&path, "203.0.113.0/24\n").unwrap();
    let score_with = |weight: f64| {
        let mut scorer = scorer_with(vec![ReputationSource {
            name: "l".into(),
            path: Some(path.clone()),
            weight,
            ..Default::default()
        }]);
        let d = decisions_of(&mut scorer, &["203.0.113.9"]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            d[0].action.as_str(),
            "monitor",
            "a weight alone blocks nothing"
        );
        let assessed = scorer
            .assess(vigil_enforce::SubjectKind::Ip, "203.0.113.9")
            .unwrap()
            .unwrap();
        assert!(
            assessed
                .features
                .contains(&("reputation_lists".to_string(), Some(1.0))),
            "{:?}",
            assessed.features
        );
        assert!((assessed.score - d[0].score).abs() < 1e-9);
        d[0].score
    };
    // `bad_reputation` (severity low, 0.3) fires either way; the weight comes on top of it
    let plain = score_with(0.0);
    let weighted = score_with(0.6);
    assert!((plain - 0.3).abs() < 1e-9, "{plain}");
    assert!((weighted - (1.0 - 0.7 * 0.4)).abs() < 1e-9, "{weighted}");
}

#[tokio::test]
async fn a_list_with_action_block_blocks_and_names_itself() {
    let server = ListServer::start();
    server.set("/abuse.txt", Reply::List("203.0.113.0/24\n".into()));
    let dir = tempfile::tempdir().unwrap();
    let mut sources = vec![ReputationSource {
        action: Some("block".into()),
        ttl_secs: Some(1800),
        weight: 0.9,
        ..url_list("abuse", server.url("/abuse.txt"), "plain")
    }];
    resolve_cache_paths(&mut sources, dir.path());
    let mut scorer = scorer_with(sources);
    scorer
        .reputation_feeds()
        .get("abuse")
        .unwrap()
        .refresh()
        .await
        .unwrap();
    let d = decisions_of(&mut scorer, &["203.0.113.9", "198.51.100.4"]);
    assert_eq!(d.len(), 1, "only the listed address: {d:?}");
    let d = &d[0];
    assert_eq!(
        (
            d.subject.key().as_str(),
            d.action.as_str(),
            d.origin.as_str()
        ),
        ("ip:203.0.113.9", "block", "reputation")
    );
    assert!(
        d.reasons.contains(&"reputation:abuse".to_string()),
        "{:?}",
        d.reasons
    );
    assert_eq!(d.expires_at.0 - d.issued_at.0, 1_800_000_000);
    assert!((d.score - (1.0 - 0.7 * 0.1)).abs() < 1e-9, "{}", d.score);
}

fn config_error(lists: Vec<ReputationSource>) -> String {
    let cfg = ScoringConfig {
        reputation: lists,
        ..ScoringConfig::default()
    };
    Scorer::new(&cfg).err().expect("an error").to_string()
}

#[test]
fn config_errors_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.txt");
    std::fs::write(&path, "192.0.2.1\n").unwrap();
    let file = ReputationSource {
        name: "l".into(),
        path: Some(path.clone()),
        ..Default::default()
    };
    let url = ReputationSource {
        name: "u".into(),
        url: Some("https://lists.example/u.txt".into()),
        cache_path: Some(dir.path().join("u.txt")),
        ..Default::default()
    };
    let cases = [
        (
            ReputationSource {
                url: url.url.clone(),
                ..file.clone()
            },
            "`scoring.reputation[0]`: give exactly one of `path` and `url`",
        ),
        (
            ReputationSource {
                path: None,
                ..file.clone()
            },
            "`scoring.reputation[0]`: give exactly one of `path` and `url`",
        ),
        (
            ReputationSource {
                action: Some("ban".into()),
                ..file.clone()
            },
            "`scoring.reputation[0].action`",
        ),
        (
            ReputationSource {
                weight: -0.5,
                ..file.clone()
            },
            "`scoring.reputation[0].weight`",
        ),
        (
            ReputationSource {
                weight: 1.5,
                ..file.clone()
            },
            "`scoring.reputation[0].weight`",
        ),
        (
            ReputationSource {
                ttl_secs: Some(60),
                ..file.clone()
            },
            "`scoring.reputation[0].ttl_secs`",
        ),
        (
            ReputationSource {
                timeout_ms: Some(100),
                ..file.clone()
            },
            "`scoring.reputation[0].timeout_ms`",
        ),
        (
            ReputationSource {
                name: "../etc/passwd".into(),
                ..url.clone()
            },
            "`scoring.reputation[0].name`",
        ),
        (
            ReputationSource {
                url: Some("ftp://lists.example/u.txt".into()),
                ..url.clone()
            },
            "`scoring.reputation[0].url`",
        ),
        (
            ReputationSource {
                refresh_secs: Some(0),
                ..url.clone()
            },
            "`scoring.reputation[0].refresh_secs`",
        ),
        (
            ReputationSource {
                cache_path: None,
                ..url.clone()
            },
            "`scoring.reputation[0].cache_path`",
        ),
        (
            ReputationSource {
                path: Some(dir.path().join("none.txt")),
                ..file.clone()
            },
            "`scoring.reputation[0].path`",
        ),
        (
            ReputationSource {
                headers: [("X-Api-Key".to_string(), "k".to_string())].into(),
                ..file.clone()
            },
            "`scoring.reputation[0].headers`",
        ),
        (
            ReputationSource {
                headers: [("X Api Key".to_string(), "k".to_string())].into(),
                ..url.clone()
            },
            "`scoring.reputation[0].headers.X Api Key`",
        ),
        (
            ReputationSource {
                headers: [("X-Api-Key".to_string(), "line\nbreak".to_string())].into(),
                ..url.clone()
            },
            "`scoring.reputation[0].headers.X-Api-Key`",
        ),
        (
            ReputationSource {
                ca_file: Some(dir.path().join("no-ca.pem").display().to_string()),
                ..url.clone()
            },
            "`scoring.reputation[0].ca_file`",
        ),
    ];
    for (list, want) in cases {
        let e = config_error(vec![list]);
        assert!(e.contains(want), "{e}\nshould contain {want}");
    }
    let e = config_error(vec![
        file.clone(),
        ReputationSource {
            name: "l".into(),
            ..url.clone()
        },
    ]);
    assert!(e.contains("`scoring.reputation[1].name`"), "{e}");
    // a good pair loads, and the keys read from TOML as documented
    let cfg: ScoringConfig = toml::from_str(&format!(
        r#"
[models]
enabled = false
[[reputation]]
name = "l"
path = {path:?}
weight = 0.5
[[reputation]]
name = "u"
url = "https://lists.example/u.netset"
format = "netset"
refresh_secs = 600
action = "block"
ttl_secs = 900
timeout_ms = 5000
max_bytes = 1048576
cache_path = {cache:?}
headers = {{ "X-Api-Key" = "k" }}
"#,
        path = path.display().to_string(),
        cache = dir.path().join("u.netset").display().to_string(),
    ))
    .unwrap();
    assert_eq!(cfg.reputation[1].action.as_deref(), Some("block"));
    let scorer = Scorer::new(&cfg).unwrap();
    assert_eq!(scorer.reputation_feeds().iter().count(), 1);
}
