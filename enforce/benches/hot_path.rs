//! The per-request costs of enforcement: a verdict from a table of 1,000,000 decisions, JWT
//! verification per algorithm, without and with the verified-token cache, and the
//! request-content check of `[proxy.inline_detect]` (off, and on for clean and hostile
//! requests). `cargo bench -p vigil-enforce --bench hot_path`.

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::hint::black_box;
use std::time::Duration;
use vigil_enforce::config::{InlineDetectConfig, JwtConfig};
use vigil_enforce::jwt::JwtVerifier;
use vigil_enforce::{
    Action, Decision, DecisionTable, EnforcePoint, Enforcement, InlineMode, ProxyConfig, Subject,
    SubjectKind, TableEnforcer, UnixMicros,
};

fn table(c: &mut Criterion) {
    let t = DecisionTable::with_capacity(1_000_000);
    let now = UnixMicros::now();
    for i in 0..1_000_000u32 {
        let d = Decision::new(
            Subject::new(SubjectKind::Ip, std::net::Ipv4Addr::from(i).to_string()),
            Action::Block,
            0.9,
            "rule",
            Duration::from_secs(3600),
        );
        t.insert_at(d, now).unwrap();
    }
    // a typical request: identity, session, ip, api key; one of them has a decision
    let request = [
        Subject::new(SubjectKind::Identity, "alice"),
        Subject::new(SubjectKind::Session, "s-0123456789"),
        Subject::new(SubjectKind::Ip, "0.0.200.1"),
        Subject::new(SubjectKind::ApiKey, "cb3d2968ced718b79c7c3e3017179cac"),
    ];
    c.bench_function("evaluate 4 subjects, 1M decisions", |b| {
        b.iter(|| black_box(t.evaluate(black_box(&request))))
    });
    let miss = [Subject::new(SubjectKind::Ip, "198.51.100.7")];
    c.bench_function("evaluate 1 subject (miss), 1M decisions", |b| {
        b.iter(|| black_box(t.evaluate(black_box(&miss))))
    });
}

fn jwt(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
    let rsa = std::fs::read_to_string(format!("{dir}/rsa_private.pem")).unwrap();
    let ec = std::fs::read_to_string(format!("{dir}/ec_private.pem")).unwrap();
    let secret = "an-hmac-secret-of-at-least-32-bytes!!";
    let keys = [
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(rsa.as_bytes()).unwrap(),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(ec.as_bytes()).unwrap(),
        ),
        (
            Algorithm::HS256,
            EncodingKey::from_secret(secret.as_bytes()),
        ),
    ];
    let jwks: Vec<serde_json::Value> = keys
        .iter()
        .map(|(alg, k)| {
            let mut j = jsonwebtoken::jwk::Jwk::from_encoding_key(k, *alg).unwrap();
            j.common.key_id = Some(format!("{alg:?}"));
            serde_json::to_value(j).unwrap()
        })
        .collect();
    let path = std::env::temp_dir().join(format!("vigil-bench-jwks-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::json!({ "keys": jwks }).to_string()).unwrap();
    let cfg = JwtConfig {
        jwks_path: Some(path.display().to_string()),
        algorithms: vec!["RS256".into(), "ES256".into(), "HS256".into()],
        ..Default::default()
    };
    let verifier = rt
        .block_on(JwtVerifier::new(cfg.build("proxy.jwt").unwrap().unwrap()))
        .unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({"sub": "alice", "sid": "s-1", "exp": exp});
    for (alg, key) in &keys {
        let mut h = Header::new(*alg);
        h.kid = Some(format!("{alg:?}"));
        let token = jsonwebtoken::encode(&h, &claims, key).unwrap();
        c.bench_function(&format!("verify {alg:?}"), |b| {
            b.iter(|| black_box(verifier.verify_without_cache(black_box(&token)).unwrap()))
        });
        c.bench_function(&format!("verify {alg:?}, cached"), |b| {
            b.iter(|| black_box(verifier.verify(black_box(&token)).unwrap()))
        });
    }
    let _ = std::fs::remove_file(&path);
}

/// `Enforcement::inspect_content` as the proxy calls it for each request its decision lets
/// through: with inline detection off (one branch) and in `block` mode.
fn inline_detect(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let point = |mode| {
        let cfg = ProxyConfig {
            inline_detect: InlineDetectConfig {
                mode,
                ..Default::default()
            },
            ..Default::default()
        };
        let table = std::sync::Arc::new(DecisionTable::new());
        rt.block_on(Enforcement::new(
            cfg.build().unwrap(),
            TableEnforcer::new(table),
            None,
        ))
        .unwrap()
    };
    let off = point(InlineMode::Off);
    let block = point(InlineMode::Block);
    let mut headers = hyper::HeaderMap::new();
    headers.insert(
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "referer",
        "https://shop.example/catalog?page=3".parse().unwrap(),
    );
    let cases = [
        (
            "clean API request",
            "/api/v1/orders/12345?page=2&sort=created_at",
        ),
        (
            "clean ~200-byte query",
            "/api/v1/orders?filter=%7B%22status%22%3A%22open%22%2C%22customer%22%3A%22O%27Brien%22%7D&utm_source=newsletter&utm_medium=email&utm_campaign=winter-sale&fields=id,total,status",
        ),
        (
            "SQL injection",
            "/products?id=1%20UNION%20SELECT%20password%20FROM%20users--",
        ),
    ];
    c.bench_function("inline detect off", |b| {
        b.iter(|| {
            black_box(off.inspect_content(
                EnforcePoint::Proxy,
                "GET",
                black_box(cases[0].1),
                Some("HTTP/1.1"),
                &headers,
                "r",
            ))
        })
    });
    for (name, target) in cases {
        c.bench_function(&format!("inline detect block, {name}"), |b| {
            b.iter(|| {
                black_box(block.inspect_content(
                    EnforcePoint::Proxy,
                    "GET",
                    black_box(target),
                    Some("HTTP/1.1"),
                    &headers,
                    "r",
                ))
            })
        });
    }
}

criterion_group!(benches, table, jwt, inline_detect);
criterion_main!(benches);
