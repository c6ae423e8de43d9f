//! Client software stacks: what a TLS and an HTTP fingerprint show of the program behind a
//! request, whatever user agent it claims.
//!
//! Each simulated actor runs one [`Stack`]. A benign user's stack is the one its user agent
//! names (a Chrome user agent comes from Chrome); an attacker's is its tool's, so a script that
//! rotates browser user agents keeps one fingerprint, and a stolen token replayed from a script
//! shows a different stack than its owner's browser.
//!
//! The JA4 strings are stand-ins in JA4's format (`t13d1516h2_<ciphers>_<extensions>`), one per
//! stack, with the shape of the real client's (cipher and extension counts, ALPN); Chrome's and
//! Firefox's are the values FoxIO's published test data gives for those browsers, curl's the
//! one this project computed from Debian curl's ClientHello (enforce/tests/data). The JA4H is
//! computed per request from the stack's header names in order, exactly as a gateway module
//! computes it (method, version, cookie and referer flags, header count, language, then
//! truncated SHA-256 of the header names, cookie names and cookie pairs).

use sha2::{Digest, Sha256};

/// One client program: its TLS fingerprint and the headers it sends, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stack {
    /// What the stack is, for readers of the table.
    pub name: &'static str,
    /// JA4 of its TLS 1.3 ClientHello; a TLS 1.2 connection shows `t12` instead of `t13`.
    pub ja4: &'static str,
    /// JA4H's version digits: `20` for HTTP/2 clients, `11` for HTTP/1.1.
    pub http: &'static str,
    /// Header names in the order sent, without credentials, `Cookie` and `Referer`.
    pub headers: &'static [&'static str],
    /// Where `Authorization` or `X-Api-Key` goes in `headers` (index).
    pub auth_at: usize,
    /// A browser engine (user agents of browsers are expected from it).
    pub browser: bool,
}

const fn stack(
    name: &'static str,
    ja4: &'static str,
    http: &'static str,
    headers: &'static [&'static str],
    auth_at: usize,
    browser: bool,
) -> Stack {
    Stack {
        name,
        ja4,
        http,
        headers,
        auth_at,
        browser,
    }
}

pub(crate) static CHROME: Stack = stack(
    "Chromium (Chrome, Edge, Samsung Internet, headless Chrome)",
    "t13d1516h2_8daaf6152771_02713d6af862",
    "20",
    &[
        "sec-ch-ua",
        "sec-ch-ua-mobile",
        "sec-ch-ua-platform",
        "user-agent",
        "accept",
        "sec-fetch-site",
        "sec-fetch-mode",
        "sec-fetch-dest",
        "accept-encoding",
        "accept-language",
        "priority",
    ],
    3,
    true,
);

pub(crate) static FIREFOX: Stack = stack(
    "Firefox",
    "t13d1715h2_5b57614c22b0_3d5424432f57",
    "20",
    &[
        "user-agent",
        "accept",
        "accept-language",
        "accept-encoding",
        "sec-fetch-dest",
        "sec-fetch-mode",
        "sec-fetch-site",
        "priority",
        "te",
    ],
    4,
    true,
);

pub(crate) static SAFARI: Stack = stack(
    "Safari and WebKit on macOS and iOS",
    "t13d2014h2_a09f3c656075_14788d8d241b",
    "20",
    &[
        "accept",
        "sec-fetch-site",
        "accept-language",
        "sec-fetch-mode",
        "accept-encoding",
        "user-agent",
        "sec-fetch-dest",
        "priority",
    ],
    5,
    true,
);

pub(crate) static IOS_APP: Stack = stack(
    "The shop's iOS app (URLSession)",
    "t13d2014h2_a09f3c656075_e42f34c56612",
    "20",
    &["accept", "accept-language", "accept-encoding", "user-agent"],
    1,
    false,
);

pub(crate) static ANDROID_APP: Stack = stack(
    "The shop's Android app (OkHttp on Conscrypt)",
    "t13d1713h2_5b57614c22b0_eca864cca44a",
    "20",
    &["accept", "accept-language", "user-agent", "accept-encoding"],
    0,
    false,
);

pub(crate) static PYTHON: Stack = stack(
    "Python (requests, httpx, Scrapy, sqlmap) on OpenSSL",
    "t13d1812h1_85036bcba153_375ca2c5e164",
    "11",
    &[
        "Host",
        "User-Agent",
        "Accept-Encoding",
        "Accept",
        "Connection",
    ],
    5,
    false,
);

pub(crate) static GO: Stack = stack(
    "Go net/http (Go clients, nuclei, gobuster, ffuf, zgrab)",
    "t13d1312h2_f57a46bbacb6_e7c285222651",
    "11",
    &["Host", "User-Agent", "Accept-Encoding"],
    2,
    false,
);

pub(crate) static CURL: Stack = stack(
    "curl on OpenSSL",
    "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6",
    "20",
    &["user-agent", "accept"],
    2,
    false,
);

pub(crate) static NODE: Stack = stack(
    "Node.js (axios, node-fetch)",
    "t13d1715h1_5b57614c22b0_7121afd63204",
    "11",
    &[
        "Accept",
        "User-Agent",
        "Accept-Encoding",
        "Host",
        "Connection",
    ],
    1,
    false,
);

pub(crate) static JAVA: Stack = stack(
    "JVM clients (Apache HttpClient, OkHttp on a server)",
    "t13d4613h1_2a6d72b7d2e5_ea56f5b2e4c5",
    "11",
    &["Host", "Connection", "User-Agent", "Accept-Encoding"],
    3,
    false,
);

pub(crate) static OPENSSL_TOOL: Stack = stack(
    "Perl, Ruby and Lua scanners on OpenSSL (Nikto, WPScan, Nmap scripts)",
    "t12d4605h1_85626a9a5f7f_aaf95bb78ec9",
    "11",
    &["Host", "User-Agent", "Connection"],
    2,
    false,
);

/// Scripted stacks an attacker hides behind a borrowed browser user agent.
const SCRIPTED: [&Stack; 3] = [&PYTHON, &GO, &NODE];

/// The stack a user agent names; tools by their name, browsers by their engine.
pub(crate) fn of_user_agent(ua: &str) -> &'static Stack {
    let has = |s: &str| ua.contains(s);
    if ua.starts_with("ShopApp/") {
        return if has("Android") || has("okhttp") {
            &ANDROID_APP
        } else {
            &IOS_APP
        };
    }
    if has("python") || has("Scrapy") || has("sqlmap") {
        &PYTHON
    } else if has("Go-http-client")
        || has("Nuclei")
        || has("gobuster")
        || has("zgrab")
        || has("Fuzz Faster")
    {
        &GO
    } else if ua.starts_with("curl/") {
        &CURL
    } else if has("axios") || has("node-fetch") {
        &NODE
    } else if has("okhttp") || has("Apache-HttpClient") || has("Java/") {
        &JAVA
    } else if has("Nikto") || has("WPScan") || has("Nmap") {
        &OPENSSL_TOOL
    } else if has("Firefox/") {
        &FIREFOX
    } else if has("Chrome/") || has("Chromium/") {
        &CHROME
    } else if has("Safari/") || has("iPhone") || has("Macintosh") {
        &SAFARI
    } else {
        &PYTHON
    }
}

/// The stack of an automated client using `ua`: the named tool's own, or, behind a borrowed
/// browser user agent (`Mozilla/…` from a non-headless browser), a scripting stack picked by
/// `key` (stable per attacker).
pub(crate) fn of_tool(ua: &str, key: &str) -> &'static Stack {
    let named = of_user_agent(ua);
    if named.browser && !ua.contains("HeadlessChrome") {
        scripted(key)
    } else {
        named
    }
}

/// A scripting stack picked by `key`.
pub(crate) fn scripted(key: &str) -> &'static Stack {
    let h = key
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    SCRIPTED[h as usize % SCRIPTED.len()]
}

/// What a request carried that shows in its JA4H.
pub(crate) struct Sent<'a> {
    pub method: &'a str,
    /// `Authorization` (a bearer token).
    pub authorization: bool,
    pub api_key: bool,
    /// The `session` cookie's value.
    pub session: Option<&'a str>,
    pub referer: bool,
}

impl Stack {
    /// Whether it sends `Accept-Language` (always `en-US` here).
    pub(crate) fn language(&self) -> bool {
        self.headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("accept-language"))
    }

    /// The JA4 this stack shows over `tls_version` (`"TLSv1.2"` or `"TLSv1.3"`).
    pub(crate) fn ja4(&self, tls_version: &str) -> String {
        let mut s = self.ja4.to_owned();
        if tls_version == "TLSv1.2" {
            s.replace_range(1..3, "12");
        }
        s
    }

    /// The JA4H of one request of this stack.
    pub(crate) fn ja4h(&self, sent: &Sent<'_>) -> String {
        let lower = self.http == "20";
        let auth = match (sent.authorization, sent.api_key, lower) {
            (true, _, true) => Some("authorization"),
            (true, _, false) => Some("Authorization"),
            (false, true, true) => Some("x-api-key"),
            (false, true, false) => Some("X-Api-Key"),
            (false, false, _) => None,
        };
        let count = self.headers.len() + usize::from(auth.is_some());
        let mut names = Sha256::new();
        let mut first = true;
        let mut add = |name: &str| {
            if !first {
                names.update(b",");
            }
            first = false;
            names.update(name.as_bytes());
        };
        for (i, name) in self.headers.iter().enumerate() {
            if i == self.auth_at
                && let Some(a) = auth
            {
                add(a);
            }
            add(name);
        }
        if self.auth_at >= self.headers.len()
            && let Some(a) = auth
        {
            add(a);
        }

        let mut out = String::with_capacity(51);
        let m = sent.method.as_bytes();
        for i in 0..2 {
            out.push(m.get(i).map_or('0', |b| char::from(b.to_ascii_lowercase())));
        }
        out.push_str(self.http);
        out.push(if sent.session.is_some() { 'c' } else { 'n' });
        out.push(if sent.referer { 'r' } else { 'n' });
        let count = count.min(99);
        out.push(char::from(b'0' + (count / 10) as u8));
        out.push(char::from(b'0' + (count % 10) as u8));
        out.push_str(if self.language() { "enus" } else { "0000" });
        out.push('_');
        push_hash12(&mut out, names);
        match sent.session {
            None => out.push_str("_000000000000_000000000000"),
            Some(sid) => {
                out.push('_');
                push_hash12(&mut out, Sha256::new_with_prefix(b"session"));
                out.push('_');
                let mut pair = Sha256::new_with_prefix(b"session=");
                pair.update(sid.as_bytes());
                push_hash12(&mut out, pair);
            }
        }
        out
    }
}

fn push_hash12(out: &mut String, h: Sha256) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in &h.finalize()[..6] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&Stack; 11] = [
        &CHROME,
        &FIREFOX,
        &SAFARI,
        &IOS_APP,
        &ANDROID_APP,
        &PYTHON,
        &GO,
        &CURL,
        &NODE,
        &JAVA,
        &OPENSSL_TOOL,
    ];

    fn plain(method: &str) -> Sent<'_> {
        Sent {
            method,
            authorization: false,
            api_key: false,
            session: None,
            referer: false,
        }
    }

    #[test]
    fn ja4h_follows_the_specification() {
        // FoxIO's published example `ge11nr06ruru_cc6ec9a91856_…`: Host, Connection, User-Agent,
        // Accept, Accept-Encoding, Accept-Language, with a referer. Our stacks only speak
        // `en-US`, so check the hash part and the counts against the same header list.
        let s = stack(
            "spec",
            "t13d0000h1_000000000000_000000000000",
            "11",
            &[
                "Host",
                "Connection",
                "User-Agent",
                "Accept",
                "Accept-Encoding",
                "Accept-Language",
            ],
            9,
            false,
        );
        let sent = Sent {
            referer: true,
            ..plain("GET")
        };
        let h = s.ja4h(&sent);
        assert_eq!(
            h, "ge11nr06enus_cc6ec9a91856_000000000000_000000000000",
            "{h}"
        );
    }

    #[test]
    fn stacks_differ_and_browsers_send_a_language() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.ja4, b.ja4, "{} / {}", a.name, b.name);
                assert_ne!(
                    a.ja4h(&plain("GET")).split('_').nth(1),
                    b.ja4h(&plain("GET")).split('_').nth(1),
                    "{} / {}",
                    a.name,
                    b.name
                );
            }
            assert_eq!(a.ja4.len(), 36, "{}", a.name);
            if a.browser {
                assert!(a.language() && a.headers.len() >= 6, "{}", a.name);
            }
        }
    }

    #[test]
    fn credentials_and_cookies_show() {
        let bare = CHROME.ja4h(&plain("GET"));
        let with = CHROME.ja4h(&Sent {
            authorization: true,
            session: Some("s1"),
            referer: true,
            ..plain("POST")
        });
        assert!(bare.starts_with("ge20nn11enus_"), "{bare}");
        assert!(with.starts_with("po20cr12enus_"), "{with}");
        let other = CHROME.ja4h(&Sent {
            authorization: true,
            session: Some("s2"),
            referer: true,
            ..plain("POST")
        });
        // Same cookie name, another value: `c` equal, `d` differs.
        let parts = |s: &str| s.split('_').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(parts(&with)[2], parts(&other)[2]);
        assert_ne!(parts(&with)[3], parts(&other)[3]);
        assert_eq!(
            CHROME.ja4("TLSv1.2"),
            "t12d1516h2_8daaf6152771_02713d6af862"
        );
    }

    #[test]
    fn user_agents_name_their_stacks() {
        for (ua, want) in [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                &CHROME,
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
                &FIREFOX,
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1.1 Mobile/15E148 Safari/604.1",
                &SAFARI,
            ),
            (
                "ShopApp/4.12.1 (Android 14; Pixel 8) okhttp/4.12.0",
                &ANDROID_APP,
            ),
            (
                "ShopApp/4.12.1 CFNetwork/1568.200.51 Darwin/24.1.0",
                &IOS_APP,
            ),
            ("python-requests/2.31.0", &PYTHON),
            ("sqlmap/1.7.12#stable (https://sqlmap.org)", &PYTHON),
            ("Go-http-client/1.1", &GO),
            ("curl/8.5.0", &CURL),
            ("Apache-HttpClient/4.5.14 (Java/17.0.9)", &JAVA),
            (
                "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000003)",
                &OPENSSL_TOOL,
            ),
        ] {
            assert_eq!(of_user_agent(ua).name, want.name, "{ua}");
        }
        let chrome_ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
        assert!(!of_tool(chrome_ua, "203.0.113.9").browser);
        assert_eq!(of_tool(chrome_ua, "k"), of_tool(chrome_ua, "k"));
        let headless = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.6367.60 Safari/537.36";
        assert_eq!(of_tool(headless, "k").name, CHROME.name);
    }
}
