//! Cost of inspecting one request at realistic sizes, and of one reputation lookup in a
//! table of a million entries.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use vigil_detect::reputation::{self, ListFormat, Reputation};
use vigil_detect::{Detectors, Evidence, Request};

const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

fn inspect(c: &mut Criterion) {
    let detectors = Detectors::builtin().expect("builtin detectors compile");
    let long_query = "/api/v1/products?category=outdoor%20gear&sort=-price&page=3&per_page=50\
        &filter=%7B%22brand%22%3A%22acme%22%2C%22in_stock%22%3Atrue%7D&utm_source=newsletter\
        &utm_medium=email&utm_campaign=spring_sale_2024&q=waterproof+hiking+boots+for+women";
    let cases = [
        (
            "clean_60B",
            "/api/v1/users/8412/orders?page=2&sort=-created_at&lang=en",
        ),
        ("clean_200B_query", long_query),
        (
            "attack_sqli",
            "/item?id=1%27%20UNION%20SELECT%20username%2Cpassword%20FROM%20users--%20-",
        ),
        (
            "attack_traversal_double_encoded",
            "/download?file=%252e%252e%252f%252e%252e%252f%252e%252e%252fetc%252fpasswd",
        ),
    ];
    let mut group = c.benchmark_group("inspect");
    for (name, target) in cases {
        let mut out = Evidence::new();
        let req = Request {
            method: "GET",
            target,
            query: None,
            protocol: Some("HTTP/1.1"),
            user_agent: Some(UA),
            referer: Some("https://www.example.com/shop"),
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                detectors.inspect(black_box(&req), &mut out);
                black_box(out.is_empty())
            })
        });
        // The same request without the memo of clean parts (each part inspected as if seen
        // for the first time), and with every pattern list matched in full (no literal gate,
        // no memo): the cost before each step, measured in the same run.
        group.bench_function(format!("{name}/unmemoized"), |b| {
            b.iter(|| {
                detectors.inspect_unmemoized(black_box(&req), &mut out);
                black_box(out.is_empty())
            })
        });
        group.bench_function(format!("{name}/reference"), |b| {
            b.iter(|| {
                detectors.inspect_reference(black_box(&req), &mut out);
                black_box(out.is_empty())
            })
        });
    }
    group.finish();
}

/// User agents as a busy API sees them: a handful of browsers, mobile apps and HTTP clients,
/// each repeated thousands of times.
const REALISTIC_UAS: [&str; 8] = [
    UA,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.71 Mobile Safari/537.36",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
    "shop-ios/5.14.2 (iPhone15,3; iOS 17.5; Scale/3.00)",
];

/// Targets and referers of ordinary API traffic.
const REALISTIC_TARGETS: [&str; 10] = [
    "/api/v1/users/8412/orders?page=2&sort=-created_at&lang=en",
    "/api/v1/products?category=outdoor%20gear&sort=-price&page=3&per_page=50",
    "/api/v1/cart",
    "/api/v1/products/B07XJ8C8F5",
    "/api/v1/search?q=waterproof+hiking+boots&limit=20",
    "/static/js/app.3f9a2c.js",
    "/api/v2/sessions/refresh",
    "/api/v1/users/me/addresses?include=default",
    "/healthz",
    "/api/v1/orders/7731/items?page=1&per_page=25&fields=id,sku,qty",
];
const REALISTIC_REFERERS: [Option<&str>; 3] = [
    Some("https://www.example.com/shop"),
    Some("https://www.example.com/shop/cart?step=2"),
    None,
];

/// Twenty distinct clean requests, cycled: the same user agents, referers and targets recur,
/// as they do in a real access log.
fn inspect_mixed(c: &mut Criterion) {
    let detectors = Detectors::builtin().expect("builtin detectors compile");
    let requests: Vec<Request<'static>> = (0..20)
        .map(|i| Request {
            method: if i % 5 == 4 { "POST" } else { "GET" },
            target: REALISTIC_TARGETS[i % REALISTIC_TARGETS.len()],
            query: None,
            protocol: Some("HTTP/1.1"),
            user_agent: Some(REALISTIC_UAS[i % REALISTIC_UAS.len()]),
            referer: REALISTIC_REFERERS[i % REALISTIC_REFERERS.len()],
        })
        .collect();
    let mut out = Evidence::new();
    for req in &requests {
        detectors.inspect(req, &mut out);
        assert!(out.is_empty(), "{req:?} is clean: {:?}", out.matches());
    }
    // The same clients on 4,000 distinct targets (ids in the path and query), as an API sees
    // them: the user agents and referers recur, the targets mostly do not.
    let targets: Vec<String> = (0..4000)
        .map(|i| {
            let (user, order) = (8000 + i * 7, 100_000 + i * 13);
            format!(
                "/api/v1/users/{user}/orders/{order}?page={}&sort=-created_at",
                i % 9
            )
        })
        .collect();
    let unique: Vec<Request<'_>> = targets
        .iter()
        .zip(requests.iter().cycle())
        .map(|(target, req)| Request { target, ..*req })
        .collect();
    let mut group = c.benchmark_group("inspect");
    for (name, cases) in [
        ("mixed_20_clean", &requests),
        ("mixed_unique_targets", &unique),
    ] {
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % cases.len();
                detectors.inspect(black_box(&cases[i]), &mut out);
                black_box(out.is_empty())
            })
        });
        let mut i = 0;
        group.bench_function(format!("{name}/unmemoized"), |b| {
            b.iter(|| {
                i = (i + 1) % cases.len();
                detectors.inspect_unmemoized(black_box(&cases[i]), &mut out);
                black_box(out.is_empty())
            })
        });
    }
    group.finish();
}

fn lookup(c: &mut Criterion) {
    // One million pseudo-random /32s and /24s, as a big blocklist would hold.
    let mut text = String::with_capacity(20 << 20);
    let mut x: u32 = 0x1234_5678;
    for i in 0..1_000_000u32 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let ip = Ipv4Addr::from(x);
        if i % 10 == 0 {
            text.push_str(&format!("{ip}/24\n"));
        } else {
            text.push_str(&format!("{ip}\n"));
        }
    }
    let list = reputation::parse(ListFormat::Plain, "bench", &text).expect("parses");
    let rep = Reputation::new([list]);
    let probes: Vec<IpAddr> = (0..1024u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761))))
        .collect();
    let mut i = 0;
    c.bench_function("reputation_lookup_1M", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(rep.lookup(black_box(probes[i])).count())
        })
    });
}

criterion_group!(benches, inspect, inspect_mixed, lookup);
criterion_main!(benches);
