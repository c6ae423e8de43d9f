//! JWT verification for the proxy: keys from a JWKS (file or URL, refreshed, matched by
//! `kid`) and/or configured keys, an algorithm allow-list (`none` is impossible: it is not an
//! algorithm `jsonwebtoken` can parse, and the config refuses it), `iss`/`aud`/`exp`/`nbf`
//! checks with a small leeway. All cryptography is `jsonwebtoken`'s (RustCrypto backend).
//!
//! The key set is swapped whole on refresh ([`arc_swap::ArcSwap`]): requests read the current
//! set without a lock, and a failed refresh keeps the previous set.
//!
//! Verified tokens are remembered (keyed by the SHA-256 of the whole token) until their `exp`
//! plus leeway, at most [`TOKEN_CACHE_SECS`], and only while the key set they were verified
//! with is current: a session sends the same token on every request, and an RSA or ECDSA
//! verification costs hundreds of microseconds where a lookup costs one hash. Failures are not
//! remembered.

use crate::config::JwtSettings;
use crate::error::EnforceError;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use sha2::Digest;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Longest token considered, in bytes (larger is rejected before any parsing).
pub const MAX_TOKEN_BYTES: usize = 8192;
/// A verified token is trusted from the cache for at most this long.
pub const TOKEN_CACHE_SECS: u64 = 300;
/// Most tokens remembered; the cache is emptied when it is full.
const TOKEN_CACHE_MAX: usize = 100_000;
/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// An unknown `kid` triggers an early JWKS refresh at most this often.
const MIN_EARLY_REFRESH_SECS: u64 = 10;
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One verification key.
#[derive(Clone)]
struct VerifyKey {
    kid: Option<String>,
    /// `None`: any allowed algorithm of the key's family.
    alg: Option<Algorithm>,
    family: AlgorithmFamily,
    key: DecodingKey,
}

/// What a verified token says about the request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifiedClaims {
    pub sub: Option<String>,
    /// `sid`, else `jti` (as ingest reads logged tokens).
    pub session: Option<String>,
    pub acr: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    exp: Option<serde_json::Value>,
    sub: Option<serde_json::Value>,
    sid: Option<serde_json::Value>,
    jti: Option<serde_json::Value>,
    acr: Option<serde_json::Value>,
}

fn text(v: Option<serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Verifies tokens; shared by every request.
pub struct JwtVerifier {
    settings: JwtSettings,
    static_keys: Vec<VerifyKey>,
    keys: ArcSwap<Vec<VerifyKey>>,
    validations: Vec<(Algorithm, Validation)>,
    client: Client<crate::tls::HttpsConnector, Empty<Bytes>>,
    refresh_now: tokio::sync::Notify,
    last_refresh_secs: AtomicU64,
    /// Bumped on every key set change; cached verifications of older generations are void.
    generation: AtomicU64,
    cache: papaya::HashMap<[u8; 32], Cached>,
}

#[derive(Debug, Clone)]
struct Cached {
    claims: VerifiedClaims,
    valid_until_secs: u64,
    generation: u64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.load().len())
            .field("algorithms", &self.settings.algorithms)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Loads the configured keys and the JWKS (file and/or URL); a JWKS that cannot be read at
    /// start is an error.
    pub async fn new(settings: JwtSettings) -> Result<Arc<Self>, EnforceError> {
        // Both jsonwebtoken backends could end up enabled by another crate of the build; pick
        // ours explicitly (an error only means a provider is already installed).
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let static_keys = settings
            .keys
            .iter()
            .map(|k| VerifyKey {
                kid: k.kid.clone(),
                alg: Some(k.algorithm),
                family: k.algorithm.family(),
                key: k.key.clone(),
            })
            .collect();
        let validations = settings
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.leeway = settings.leeway_secs;
                v.validate_nbf = true;
                let mut required = vec!["exp"];
                if !settings.issuer.is_empty() {
                    v.set_issuer(&settings.issuer);
                    required.push("iss");
                }
                if settings.audience.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&settings.audience);
                    required.push("aud");
                }
                v.set_required_spec_claims(&required);
                (alg, v)
            })
            .collect();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .build(crate::tls::https_connector(connector, &settings.jwks_tls));
        let v = Arc::new(JwtVerifier {
            settings,
            static_keys,
            keys: ArcSwap::from_pointee(Vec::new()),
            validations,
            client,
            refresh_now: tokio::sync::Notify::new(),
            last_refresh_secs: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            cache: papaya::HashMap::new(),
        });
        v.refresh().await?;
        Ok(v)
    }

    /// The cookie that may carry the token.
    pub fn cookie(&self) -> Option<&str> {
        self.settings.cookie.as_deref()
    }

    /// Number of keys currently usable.
    pub fn key_count(&self) -> usize {
        self.keys.load().len()
    }

    /// Re-reads the JWKS sources; on any failure the previous key set stays. Returns the
    /// number of keys now in use.
    pub async fn refresh(&self) -> Result<usize, EnforceError> {
        let mut keys = self.static_keys.clone();
        if let Some(path) = &self.settings.jwks_path {
            let bytes = tokio::fs::read(path).await.map_err(|e| {
                EnforceError::Jwks(format!("cannot read `{}`: {e}", path.display()))
            })?;
            keys.extend(parse_jwks(&bytes)?);
        }
        if let Some(url) = &self.settings.jwks_url {
            let bytes = self.fetch(url).await?;
            keys.extend(parse_jwks(&bytes)?);
        }
        let n = keys.len();
        self.keys.store(Arc::new(keys));
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.last_refresh_secs.store(now_secs(), Ordering::Relaxed);
        Ok(n)
    }

    async fn fetch(&self, url: &hyper::Uri) -> Result<Bytes, EnforceError> {
        let err = |m: String| EnforceError::Jwks(format!("GET {url}: {m}"));
        let req = hyper::Request::get(url.clone())
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| err(e.to_string()))?;
        let resp = tokio::time::timeout(JWKS_FETCH_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| err("timed out".into()))?
            .map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("status {}", resp.status())));
        }
        let body = tokio::time::timeout(
            JWKS_FETCH_TIMEOUT,
            Limited::new(resp.into_body(), MAX_JWKS_BYTES).collect(),
        )
        .await
        .map_err(|_| err("timed out reading the body".into()))?
        .map_err(|e| err(e.to_string()))?;
        Ok(body.to_bytes())
    }

    /// Refreshes every `jwks_refresh_secs` (and early when asked by an unknown `kid`) until
    /// `shutdown`. Does nothing useful without a JWKS source; run it in the owner's task set.
    pub async fn run_refresher(self: Arc<Self>, shutdown: CancellationToken) {
        if self.settings.jwks_path.is_none() && self.settings.jwks_url.is_none() {
            return;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.settings.jwks_refresh) => {}
                _ = self.refresh_now.notified() => {}
            }
            match self.refresh().await {
                Ok(n) => tracing::debug!(keys = n, "JWKS refreshed"),
                Err(error) => {
                    tracing::warn!(%error, "JWKS refresh failed; keeping the previous keys")
                }
            }
        }
    }

    /// Verifies a compact JWT and returns its subject claims.
    pub fn verify(&self, token: &str) -> Result<VerifiedClaims, EnforceError> {
        if token.is_empty() {
            return Err(EnforceError::InvalidToken("empty token".into()));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(EnforceError::InvalidToken("token too large".into()));
        }
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = now_secs();
        // read the generation before the keys: a refresh in between makes the entry stale,
        // never the other way round
        let generation = self.generation.load(Ordering::Acquire);
        let cache = self.cache.pin();
        if let Some(c) = cache.get(&digest)
            && c.generation == generation
            && now < c.valid_until_secs
        {
            return Ok(c.claims.clone());
        }
        let (claims, exp) = self.verify_uncached(token)?;
        let leeway = self.settings.leeway_secs;
        let valid_until_secs = exp
            .saturating_add(leeway)
            .min(now.saturating_add(TOKEN_CACHE_SECS));
        if cache.len() >= TOKEN_CACHE_MAX {
            cache.clear();
        }
        cache.insert(
            digest,
            Cached {
                claims: claims.clone(),
                valid_until_secs,
                generation,
            },
        );
        Ok(claims)
    }

    /// [`verify`](Self::verify) without the cache (for measurements and diagnostics).
    pub fn verify_without_cache(&self, token: &str) -> Result<VerifiedClaims, EnforceError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(EnforceError::InvalidToken("token too large".into()));
        }
        self.verify_uncached(token).map(|(c, _)| c)
    }

    /// Forgets remembered verifications that have lapsed.
    pub fn sweep_cache(&self) -> usize {
        let now = now_secs();
        let generation = self.generation.load(Ordering::Acquire);
        let cache = self.cache.pin();
        let before = cache.len();
        cache.retain(|_, c| c.generation == generation && now < c.valid_until_secs);
        before.saturating_sub(cache.len())
    }

    /// The full verification; returns the claims and `exp`.
    fn verify_uncached(&self, token: &str) -> Result<(VerifiedClaims, u64), EnforceError> {
        let bad = |m: &str| Err(EnforceError::InvalidToken(m.to_string()));
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            // `alg: none` lands here: it is not an algorithm jsonwebtoken can parse.
            Err(_) => return bad("malformed token or unsupported algorithm"),
        };
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return bad("algorithm not allowed");
        };
        let keys = self.keys.load();
        let family = header.alg.family();
        let usable = |k: &&VerifyKey| k.family == family && k.alg.is_none_or(|a| a == header.alg);
        let candidates: Vec<&VerifyKey> = match &header.kid {
            Some(kid) => keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .filter(usable)
                .collect(),
            None => keys.iter().filter(usable).take(8).collect(),
        };
        if candidates.is_empty() {
            if header.kid.is_some() {
                self.ask_early_refresh();
                return bad("unknown key id");
            }
            return bad("no key for this algorithm");
        }
        let mut last = ErrorKind::InvalidSignature;
        for k in candidates {
            match jsonwebtoken::decode::<Claims>(token, &k.key, validation) {
                Ok(data) => {
                    let c = data.claims;
                    // `exp` is required and was validated; a fractional one is rounded down
                    let exp = c
                        .exp
                        .as_ref()
                        .and_then(serde_json::Value::as_f64)
                        .unwrap_or(0.0);
                    let claims = VerifiedClaims {
                        sub: text(c.sub),
                        session: text(c.sid).or_else(|| text(c.jti)),
                        acr: text(c.acr),
                    };
                    return Ok((claims, exp.max(0.0) as u64));
                }
                Err(e) => {
                    last = e.into_kind();
                    // Only a signature mismatch can be cured by another key.
                    if !matches!(last, ErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        bad(match last {
            ErrorKind::ExpiredSignature => "token expired",
            ErrorKind::ImmatureSignature => "token not yet valid (nbf)",
            ErrorKind::InvalidIssuer => "issuer not accepted",
            ErrorKind::InvalidAudience => "audience not accepted",
            ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
            ErrorKind::InvalidSignature => "signature does not verify",
            _ => "token does not verify",
        })
    }

    fn ask_early_refresh(&self) {
        if self.settings.jwks_path.is_none() && self.settings.jwks_url.is_none() {
            return;
        }
        let last = self.last_refresh_secs.load(Ordering::Relaxed);
        if now_secs().saturating_sub(last) >= MIN_EARLY_REFRESH_SECS {
            self.refresh_now.notify_one();
        }
    }
}

/// The usable verification keys of a JWKS document. Keys for encryption, of unknown types or
/// that do not parse are skipped (one odd key must not disable the others); a document that is
/// not `{"keys": [...]}` is an error.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<VerifyKey>, EnforceError> {
    #[derive(Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_slice(bytes)
        .map_err(|e| EnforceError::Jwks(format!("not a JWKS document: {e}")))?;
    let mut out = Vec::with_capacity(doc.keys.len());
    for v in doc.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(v) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let alg = match jwk.common.key_algorithm {
            Some(ka) => match Algorithm::from_str(&ka.to_string()) {
                Ok(a) => Some(a),
                Err(_) => continue,
            },
            None => match &jwk.algorithm {
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => Some(Algorithm::ES256),
                    EllipticCurve::P384 => Some(Algorithm::ES384),
                    _ => continue,
                },
                AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
                _ => None,
            },
        };
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
            AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
            AlgorithmParameters::OctetKeyPair(_) => AlgorithmFamily::Ed,
            AlgorithmParameters::OctetKey(_) => AlgorithmFamily::Hmac,
        };
        if alg.is_some_and(|a| a.family() != family) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        out.push(VerifyKey {
            kid: jwk.common.key_id.clone(),
            alg,
            family,
            key,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{JwtConfig, JwtKeyConfig};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!!";

    async fn verifier(leeway: u64) -> Arc<JwtVerifier> {
        let cfg = JwtConfig {
            keys: vec![JwtKeyConfig {
                kid: Some("k1".into()),
                algorithm: "HS256".into(),
                secret: Some(SECRET.into()),
                pem_path: None,
            }],
            algorithms: vec!["HS256".into()],
            issuer: vec!["https://idp.example".into()],
            audience: vec!["api".into()],
            leeway_secs: leeway,
            ..Default::default()
        };
        JwtVerifier::new(cfg.build("proxy.jwt").unwrap().unwrap())
            .await
            .unwrap()
    }

    fn token(kid: Option<&str>, claims: serde_json::Value, secret: &str) -> String {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = kid.map(str::to_owned);
        encode(&h, &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn claims(exp_from_now: i64) -> serde_json::Value {
        let now = now_secs() as i64;
        serde_json::json!({"sub":"alice","sid":"s-1","iss":"https://idp.example","aud":"api",
            "exp": now + exp_from_now, "acr":"mfa"})
    }

    #[tokio::test]
    async fn verifies_and_rejects() {
        let v = verifier(0).await;
        let c = v.verify(&token(Some("k1"), claims(60), SECRET)).unwrap();
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!(c.session.as_deref(), Some("s-1"));
        assert_eq!(c.acr.as_deref(), Some("mfa"));
        let msg = |t: &str| v.verify(t).unwrap_err().to_string();
        assert!(msg(&token(Some("k1"), claims(-60), SECRET)).contains("expired"));
        assert!(msg(&token(Some("k2"), claims(60), SECRET)).contains("unknown key id"));
        assert!(
            msg(&token(
                Some("k1"),
                claims(60),
                "another-secret-of-32-bytes-or-more!!"
            ))
            .contains("signature")
        );
        let mut wrong_aud = claims(60);
        wrong_aud["aud"] = "other".into();
        assert!(msg(&token(Some("k1"), wrong_aud, SECRET)).contains("audience"));
        let mut no_iss = claims(60);
        no_iss.as_object_mut().unwrap().remove("iss");
        assert!(msg(&token(Some("k1"), no_iss, SECRET)).contains("required claim"));
        let mut early = claims(600);
        early["nbf"] = (now_secs() + 300).into();
        assert!(msg(&token(Some("k1"), early, SECRET)).contains("nbf"));
        // alg=none, unsigned
        let none = format!(
            "{}.{}.",
            B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            B64.encode(claims(60).to_string())
        );
        assert!(msg(&none).contains("unsupported algorithm"));
        assert!(msg("garbage").contains("malformed"));
        assert!(msg(&"a".repeat(MAX_TOKEN_BYTES + 1)).contains("too large"));
    }

    #[tokio::test]
    async fn cached_verifications_end_with_the_key_set() {
        let dir = std::env::temp_dir().join(format!("vigil-jwt-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        let doc = |k: &str| {
            format!(
                r#"{{"keys":[{{"kty":"oct","kid":"h","alg":"HS256","k":"{}"}}]}}"#,
                B64.encode(k)
            )
        };
        std::fs::write(&path, doc(SECRET)).unwrap();
        let cfg = JwtConfig {
            jwks_path: Some(path.display().to_string()),
            algorithms: vec!["HS256".into()],
            ..Default::default()
        };
        let v = JwtVerifier::new(cfg.build("proxy.jwt").unwrap().unwrap())
            .await
            .unwrap();
        let mut c = claims(60);
        c.as_object_mut().unwrap().remove("aud");
        let t = token(Some("h"), c, SECRET);
        assert!(v.verify(&t).is_ok());
        assert!(v.verify(&t).is_ok(), "from the cache");
        assert_eq!(v.cache.len(), 1);
        // the key is rotated out: the remembered verification no longer counts
        std::fs::write(&path, doc("a-completely-different-secret-of-32b!")).unwrap();
        v.refresh().await.unwrap();
        assert!(v.verify(&t).is_err());
        assert_eq!(v.sweep_cache(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn leeway_admits_small_skew() {
        let v = verifier(30).await;
        assert!(v.verify(&token(Some("k1"), claims(-10), SECRET)).is_ok());
        assert!(v.verify(&token(Some("k1"), claims(-60), SECRET)).is_err());
    }

    #[test]
    fn jwks_parsing_skips_odd_keys() {
        let doc = format!(
            r#"{{"keys":[
              {{"kty":"oct","kid":"h","alg":"HS256","k":"{}"}},
              {{"kty":"RSA","use":"enc","kid":"e","n":"AQAB","e":"AQAB"}},
              {{"kty":"weird","kid":"w"}},
              {{"kty":"EC","kid":"x","crv":"P-256","x":"!!","y":"!!"}}
            ]}}"#,
            B64.encode(SECRET)
        );
        let keys = parse_jwks(doc.as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("h"));
        assert!(parse_jwks(b"[]").is_err());
    }
}
