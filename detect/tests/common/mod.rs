//! The labelled attack corpus and the generated benign traffic, shared by the evaluation
//! (`eval.rs`) and the differential test of the gated matcher (`differential.rs`).

// Each test crate compiles this module separately and uses only part of it.
#![allow(dead_code)]
//!
//! Every payload is expanded into variants the way attackers send them: percent-encoded as a
//! browser would, minimally encoded, double-encoded, and (for SQL and XSS, whose keywords are
//! case-insensitive) in mixed case.

use std::fmt::Write as _;

use vigil_detect::{AttackClass, Request};

pub const ATTACKS: &str = include_str!("../../corpus/attacks.tsv");
pub const LOOKALIKES: &str = include_str!("../../corpus/benign_lookalikes.txt");
pub const BENIGN_GENERATED: usize = 20_000;

pub const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

/// One request to classify.
pub struct Sample {
    pub label: Option<AttackClass>,
    pub method: String,
    pub target: String,
    pub user_agent: String,
}

impl Sample {
    /// The sample as an HTTP/1.1 request line with its user agent, the query left in the target.
    pub fn request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            target: &self.target,
            query: None,
            protocol: Some("HTTP/1.1"),
            user_agent: Some(&self.user_agent),
            referer: None,
        }
    }
}

// ---- encodings ----------------------------------------------------------------------------

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// As a browser's form encoding: space as `+`, everything but unreserved as `%XX`.
pub fn encode_form(s: &str) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        match b {
            b' ' => out.push('+'),
            b if is_unreserved(b) => out.push(b as char),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Only what would break the query: `%`, `&`, `#`, `+`, space, and control bytes.
pub fn encode_minimal(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        match ch {
            ' ' => out.push_str("%20"),
            '%' | '&' | '#' | '+' => {
                let _ = write!(out, "%{:02X}", ch as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Encoded, then its `%` encoded again.
pub fn encode_double(s: &str) -> String {
    encode_form(s).replace('%', "%25")
}

pub fn mixed_case(s: &str) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Payloads that already carry their evasion encoding (`%c0%af`, `%u002e`) are sent as is.
fn pre_encoded(payload: &str) -> bool {
    payload.contains('%')
}

pub fn attack_samples() -> Vec<Sample> {
    let mut out = Vec::new();
    for (n, line) in ATTACKS.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut cols = line.splitn(3, '\t');
        let (Some(class), Some(place), Some(payload)) = (cols.next(), cols.next(), cols.next())
        else {
            panic!(
                "attacks.tsv:{}: expected class<TAB>where<TAB>payload",
                n + 1
            );
        };
        let class = AttackClass::from_name(class)
            .unwrap_or_else(|| panic!("attacks.tsv:{}: unknown class {class}", n + 1));
        let mut push = |method: &str, target: String, ua: &str| {
            out.push(Sample {
                label: Some(class),
                method: method.to_owned(),
                target,
                user_agent: ua.to_owned(),
            })
        };
        match place {
            "param" if pre_encoded(payload) => {
                push("GET", format!("/view?id={payload}"), BROWSER_UA);
            }
            "param" => {
                let mut variants = vec![
                    encode_form(payload),
                    encode_minimal(payload),
                    encode_double(payload),
                ];
                if matches!(class, AttackClass::Sqli | AttackClass::Xss) {
                    variants.push(encode_form(&mixed_case(payload)));
                }
                for (i, v) in variants.into_iter().enumerate() {
                    // vary the parameter's position and name
                    let target = match i % 3 {
                        0 => format!("/search?q={v}"),
                        1 => format!("/api/v1/items?page=2&filter={v}&sort=name"),
                        _ => format!("/index.php?lang=en&page={v}"),
                    };
                    push("GET", target, BROWSER_UA);
                }
            }
            "path" => {
                let spaced = payload.replace(' ', "%20");
                push("GET", spaced.clone(), BROWSER_UA);
                if !pre_encoded(payload) {
                    // a different encoding of the same path: dots and quotes escaped
                    let alt = spaced
                        .replace('.', "%2e")
                        .replace('"', "%22")
                        .replace('<', "%3C")
                        .replace('>', "%3E");
                    push("GET", alt, BROWSER_UA);
                }
            }
            "uri" => push("GET", payload.to_owned(), BROWSER_UA),
            "ua" => push("GET", "/".to_owned(), payload),
            "method" => push(payload, "/".to_owned(), BROWSER_UA),
            other => panic!("attacks.tsv:{}: unknown place {other}", n + 1),
        }
    }
    // An over-long URI, built rather than written out.
    out.push(Sample {
        label: Some(AttackClass::Protocol),
        method: "GET".into(),
        target: format!("/search?q={}", "A".repeat(5000)),
        user_agent: BROWSER_UA.into(),
    });
    out
}

// ---- benign traffic -----------------------------------------------------------------------

/// splitmix64: deterministic, dependency-free.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

pub const WORDS: &[&str] = &[
    "red",
    "shoes",
    "running",
    "women",
    "men",
    "kids",
    "winter",
    "jacket",
    "laptop",
    "stand",
    "coffee",
    "maker",
    "best",
    "cheap",
    "near",
    "me",
    "how",
    "to",
    "fix",
    "a",
    "the",
    "for",
    "with",
    "and",
    "or",
    "in",
    "on",
    "of",
    "select",
    "union",
    "station",
    "drop",
    "order",
    "by",
    "table",
    "delete",
    "update",
    "insert",
    "from",
    "where",
    "sleep",
    "script",
    "alert",
    "cat",
    "id",
    "java",
    "php",
    "ping",
    "exec",
    "system",
    "config",
    "class",
    "plan",
    "O'Brien",
    "D'Angelo's",
    "rock & roll",
    "C++",
    "C#",
    "1+1",
    "50% off",
    "5\" screen",
    "<3",
    "admin",
    "login",
    "password",
    "reset",
    "etc",
    "file",
    "path",
    "template",
    "python",
    "shell",
    "bash",
    "echo",
    "curl",
    "like",
    "not",
    "null",
    "true",
    "false",
    "1",
    "2",
    "10",
    "2024",
    "iphone",
    "15",
    "pro",
    "max",
    "case",
    "samsung",
    "galaxy",
    "tv",
    "55\"",
    "4k",
    "desk",
    "chair",
    "it's",
    "don't",
    "kids'",
    "mother's",
    "day",
    "gift",
    "ideas",
    "#1",
    "top-10",
    "$20",
    "under",
    "vs",
    "review",
    "manual",
    "pdf",
    "download",
    "near",
    "open",
    "now",
    "local",
    "host",
    "meta",
    "data",
    "cloud",
    "server",
    "status",
    "union-made",
    "and/or",
    "x=y",
];

const NAMES: &[&str] = &[
    "Jane Doe",
    "O'Brien",
    "Séan O'Connor",
    "Zoë Müller",
    "José García",
    "D'Arcy",
    "Li Wei",
    "Anne-Marie",
    "Jean-Luc Picard",
    "Mary Jane Watson",
    "Nguyễn Văn A",
    "Smith & Sons",
];

const PATHS: &[&str] = &[
    "/",
    "/search",
    "/products",
    "/api/v1/users/{n}",
    "/api/v1/orders",
    "/blog/{w}-{w}",
    "/category/{w}/{w}",
    "/static/js/app.{h}.js",
    "/images/{w}-{n}.jpg",
    "/account/settings",
    "/checkout/cart",
    "/docs/{w}/{w}.html",
    "/api/v2/search",
    "/graphql",
    "/en-us/help/{w}",
    "/wp-content/uploads/2024/05/{w}.png",
    "/feed.xml",
    "/sitemap.xml",
    "/robots.txt",
    "/favicon.ico",
    "/api/v1/products/{n}/reviews",
    "/u/{w}{n}",
    "/t/{w}/{n}",
];

const SITES: &[&str] = &[
    "https://www.example.com/",
    "https://shop.example.org/cart?step=2",
    "https://news.example.net/2024/05/story.html",
    "https://accounts.example.com/signin",
    "https://app.example.io/dashboard#settings",
    "/account",
    "/checkout?step=payment",
];

const UAS: &[&str] = &[
    BROWSER_UA,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "okhttp/4.12.0",
    "Go-http-client/2.0",
    "PostmanRuntime/7.39.0",
    "Dalvik/2.1.0 (Linux; U; Android 13; SM-S911B Build/TP1A.220624.014)",
];

fn fill(rng: &mut Rng, template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').map_or(rest.len(), |e| i + e);
        match &rest[i + 1..end] {
            "n" => {
                let _ = write!(out, "{}", rng.below(100_000));
            }
            "h" => {
                let _ = write!(out, "{:08x}", rng.next() as u32);
            }
            _ => {
                let w = rng.pick(WORDS).to_ascii_lowercase();
                out.push_str(&encode_form(&w.replace([' ', '\'', '"'], "")));
            }
        }
        rest = &rest[(end + 1).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

fn phrase(rng: &mut Rng) -> String {
    let n = 1 + rng.below(5);
    (0..n)
        .map(|_| rng.pick(WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

fn benign_param(rng: &mut Rng) -> (String, String) {
    let kind = rng.below(20);
    let (name, value): (&str, String) = match kind {
        0..=3 => ("q", phrase(rng)),
        4 => ("page", (1 + rng.below(50)).to_string()),
        5 => ("per_page", rng.pick(&["10", "20", "50", "100"]).into()),
        6 => (
            "sort",
            rng.pick(&["name", "-created_at", "price.asc", "relevance"])
                .into(),
        ),
        7 => (
            "filter",
            format!(
                r#"{{"status":"{}","price":{{"gte":{},"lte":{}}},"tags":["{}","{}"]}}"#,
                rng.pick(&["active", "archived", "new"]),
                rng.below(50),
                50 + rng.below(500),
                rng.pick(WORDS),
                rng.pick(WORDS)
            ),
        ),
        8 => (
            "email",
            format!(
                "{}.{}{}@example.com",
                rng.pick(&["jane", "o'neil", "li"]),
                rng.pick(&["doe", "smith"]),
                rng.below(99)
            ),
        ),
        9 => (
            rng.pick(&["utm_source", "utm_medium", "utm_campaign"]),
            rng.pick(&[
                "newsletter",
                "cpc",
                "spring_sale-2024",
                "google",
                "(direct)",
            ])
            .into(),
        ),
        10 => (
            rng.pick(&["redirect", "next", "return_to", "url"]),
            rng.pick(SITES).into(),
        ),
        11 => (
            "from",
            format!(
                "2024-{:02}-{:02}T00:00:00Z",
                1 + rng.below(12),
                1 + rng.below(28)
            ),
        ),
        12 => (
            "lang",
            rng.pick(&["en", "en-US", "fr-FR", "de", "pt-BR", "zh-Hans"])
                .into(),
        ),
        13 => ("token", format!("{:016x}{:016x}", rng.next(), rng.next())),
        14 => ("name", rng.pick(NAMES).into()),
        15 => (
            "ids",
            (0..1 + rng.below(6))
                .map(|_| rng.below(9999).to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        16 => (
            "phone",
            format!("+1 555 {:03} {:04}", rng.below(1000), rng.below(10000)),
        ),
        17 => (
            "callback",
            format!("jQuery{}_{}", rng.below(1 << 30), rng.below(1 << 30)),
        ),
        18 => ("fields", "id,name,price,updated_at".into()),
        _ => (
            "coords",
            format!(
                "{}.{},{}.{}",
                rng.below(90),
                rng.below(10000),
                rng.below(180),
                rng.below(10000)
            ),
        ),
    };
    (name.to_owned(), value)
}

pub fn benign_samples() -> Vec<Sample> {
    let mut rng = Rng(0x5eed_1e55);
    let mut out = Vec::with_capacity(BENIGN_GENERATED + 100);
    for _ in 0..BENIGN_GENERATED {
        let path = rng_pick_path(&mut rng);
        let mut target = fill(&mut rng, path);
        let params = rng.below(5);
        for i in 0..params {
            let (name, value) = benign_param(&mut rng);
            let value = if rng.below(4) == 0 {
                encode_minimal(&value)
            } else {
                encode_form(&value)
            };
            target.push(if i == 0 { '?' } else { '&' });
            target.push_str(&name);
            target.push('=');
            target.push_str(&value);
        }
        out.push(Sample {
            label: None,
            method: rng
                .pick(&[
                    "GET", "GET", "GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE",
                ])
                .into(),
            target,
            user_agent: rng.pick(UAS).into(),
        });
    }
    for line in LOOKALIKES.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        out.push(Sample {
            label: None,
            method: "GET".into(),
            target: line.trim().to_owned(),
            user_agent: BROWSER_UA.into(),
        });
    }
    out
}

fn rng_pick_path(rng: &mut Rng) -> &'static str {
    PATHS[rng.below(PATHS.len())]
}
