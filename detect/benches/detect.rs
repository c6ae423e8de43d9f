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
        // The same request with every pattern list matched in full (no literal gate): the
        // cost before the gate, measured in the same run.
        group.bench_function(format!("{name}/reference"), |b| {
            b.iter(|| {
                detectors.inspect_reference(black_box(&req), &mut out);
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

criterion_group!(benches, inspect, lookup);
criterion_main!(benches);
