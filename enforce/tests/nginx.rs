//! Forward-auth behind a real NGINX (Debian's package; `scripts/setup` installs it):
//! `auth_request` against `/v1/authz`. NGINX is started by the test on free 127.0.0.1 ports
//! with a config, pid file and logs in a temporary directory, and killed at the end.

mod support;

use hyper::StatusCode;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::kafka::free_port;
use support::*;
use vigil_enforce::subjects::api_key_id_salted;
use vigil_enforce::{Action, Decision, ProxyConfig, Subject, SubjectKind};

/// The nginx binary: `VIGIL_NGINX`, `nginx` on PATH, or Debian's `/usr/sbin/nginx`. Panics
/// (never skips) when there is none.
fn nginx_bin() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("VIGIL_NGINX")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Some(paths) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&paths).map(|d| d.join("nginx")));
    }
    candidates.push("/usr/sbin/nginx".into());
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nginx not found: run scripts/setup (installs Debian's nginx), or set VIGIL_NGINX"
            )
        })
}

/// A running NGINX, killed when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    fn start(authz: SocketAddr, upstream: SocketAddr) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display().to_string();
        let conf = format!(
            r#"
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /_vigil;
            # auth_request passes only 401/403; vigil's 429 (throttle) arrives as an error
            auth_request_set $vigil_status $upstream_status;
            auth_request_set $vigil_retry_after $upstream_http_retry_after;
            error_page 500 = @vigil_error;
            auth_request_set $vigil_action $upstream_http_x_vigil_action;
            auth_request_set $vigil_api_key_id $upstream_http_x_vigil_api_key_id;
            proxy_set_header X-Vigil-Action $vigil_action;
            proxy_set_header X-Vigil-Api-Key-Id $vigil_api_key_id;
            proxy_pass http://{upstream};
        }}
        location @vigil_error {{
            if ($vigil_status = 429) {{
                add_header Retry-After $vigil_retry_after always;
                return 429;
            }}
            return 500;
        }}
        location = /_vigil {{
            internal;
            proxy_pass http://{authz}/v1/authz;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $http_x_forwarded_for;
        }}
    }}
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut n = Nginx { child, addr, dir };
        let start = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = n.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = n.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("nginx exited with {status}: {err}\n{}", n.error_log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx did not listen on {addr}: {}",
                n.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_blocks_and_allows() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let up = Upstream::start().await;
        // the forward-auth listener of an enforcement point, started as the binary starts it
        let mut cfg = ProxyConfig {
            trusted_proxies: vec!["127.0.0.0/8".into()],
            upstream: up.url(),
            ..Default::default()
        };
        cfg.authz.listen = Some("127.0.0.1:0".into());
        let authz = Point::start(cfg).await;
        let nginx = Nginx::start(authz.running.authz_addr.expect("authz listener"), up.addr);
        let subject = |raw: &str| Subject::new(SubjectKind::ApiKey, api_key_id_salted("", raw));
        let blocked = Decision::new(
            subject("key-blocked"),
            Action::Block,
            0.97,
            "rule",
            Duration::from_secs(60),
        );
        authz.table.insert(blocked).unwrap();
        authz
            .table
            .insert(Decision::new(
                subject("key-step-up"),
                Action::StepUp,
                0.6,
                "rule",
                Duration::from_secs(60),
            ))
            .unwrap();

        // a blocked subject gets 403 through NGINX, and the upstream sees nothing
        let r = send_h1(
            nginx.addr,
            get("/orders/7?full=1", &[("x-api-key", "key-blocked")]),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", nginx.error_log());
        assert_eq!(up.hits(), 0);
        // step-up is a 401 (NGINX passes 401 and 403 through)
        let r = send_h1(
            nginx.addr,
            get("/orders/7", &[("x-api-key", "key-step-up")]),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(up.hits(), 0);

        // throttle: vigil's 429 and Retry-After, mapped back by the config above
        authz
            .table
            .insert(
                Decision::new(
                    subject("key-throttled"),
                    Action::Throttle,
                    0.7,
                    "rule",
                    Duration::from_secs(60),
                )
                .with_throttle_rps(0.01),
            )
            .unwrap();
        let first = send_h1(nginx.addr, get("/t", &[("x-api-key", "key-throttled")])).await;
        assert_eq!(
            first.status,
            StatusCode::OK,
            "the bucket starts with one token"
        );
        let r = send_h1(nginx.addr, get("/t", &[("x-api-key", "key-throttled")])).await;
        assert_eq!(
            r.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            nginx.error_log()
        );
        assert!(
            r.header("retry-after")
                .is_some_and(|v| v.parse::<u64>().is_ok()),
            "{:?}",
            r.headers
        );
        let hits = up.hits();

        // an allowed subject reaches the upstream, with vigil's verdict copied by NGINX
        let r = send_h1(nginx.addr, get("/orders/8", &[("x-api-key", "key-fine")])).await;
        assert_eq!(r.status, StatusCode::OK, "{}", nginx.error_log());
        assert_eq!(&r.body[..], b"ok");
        assert_eq!(up.hits(), hits + 1);
        let seen = up.last();
        assert_eq!(seen.uri, "/orders/8");
        assert_eq!(seen.headers["x-vigil-action"], "allow");
        assert_eq!(
            seen.headers["x-vigil-api-key-id"],
            api_key_id_salted("", "key-fine").as_str()
        );

        // revoking the block lets the subject through
        authz.table.revoke(&subject("key-blocked"));
        let r = send_h1(
            nginx.addr,
            get("/orders/9", &[("x-api-key", "key-blocked")]),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(authz.table.len(), 2);
        let m = authz.metrics().await;
        assert!(
            m.contains("vigil_authz_checks_total{action=\"block\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("vigil_authz_checks_total{action=\"allow\"} 2"),
            "{m}"
        );
        assert!(
            m.contains("vigil_authz_checks_total{action=\"throttle\"} 2"),
            "{m}"
        );
    })
    .await
    .expect("test took too long");
}
