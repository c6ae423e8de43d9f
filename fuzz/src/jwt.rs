//! JWT invariants: the proxy's verification (`vigil_enforce::jwt`) and ingest's unverified
//! reading of logged tokens (`vigil_ingest::normalize::jwt_claims`) must name the same
//! identity and session for any token the proxy accepts, since decisions made on events are
//! applied to the requests the proxy sees.
//!
//! An input is either a token (any bytes), or, when it starts with `{`, a claims object that
//! the target signs with the fuzz key first, so the claims reach past the signature check.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey};
use std::sync::Arc;
use vigil_enforce::jwt::{JwtVerifier, MAX_TOKEN_BYTES};
use vigil_ingest::normalize::jwt_claims;

/// The HMAC key of the fuzz enforcement point (HS256).
pub const SECRET: &str = "vigil-fuzz-hmac-secret-of-32-bytes-or-more";

/// `header.payload.signature` under [`SECRET`], from the raw header and payload JSON bytes.
pub fn sign(header: &[u8], payload: &[u8]) -> String {
    let message = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256)
        .expect("HMAC signing cannot fail");
    format!("{message}.{sig}")
}

fn verifier() -> &'static Arc<JwtVerifier> {
    crate::http::enforcement()
        .extractor()
        .jwt()
        .expect("the fuzz enforcement point verifies tokens")
}

pub fn check_jwt(data: &[u8]) {
    let token = if data.first() == Some(&b'{') {
        sign(br#"{"alg":"HS256","typ":"JWT"}"#, data)
    } else {
        match std::str::from_utf8(data) {
            Ok(t) => t.to_string(),
            Err(_) => return,
        }
    };
    check_token(&token);
    // the same token as gateways log it, behind the scheme
    let logged = jwt_claims(&format!("Bearer {token}"));
    assert_eq!(
        logged,
        jwt_claims(&token),
        "a Bearer prefix changes the claims"
    );
}

fn check_token(token: &str) {
    let unverified = jwt_claims(token);
    if let Some(c) = &unverified {
        assert!(c.sub.as_ref().is_none_or(|s| !s.is_empty()), "empty sub");
        assert!(
            c.session.as_ref().is_none_or(|s| !s.is_empty()),
            "empty sid"
        );
    }
    let v = verifier();
    let cached = v.verify(token);
    let fresh = v.verify_without_cache(token);
    assert_eq!(
        cached.as_ref().ok(),
        fresh.as_ref().ok(),
        "the cache changes the outcome"
    );
    // a second look is served from the cache and says the same
    assert_eq!(cached.as_ref().ok(), v.verify(token).as_ref().ok());
    let Ok(claims) = cached else { return };
    assert!(
        token.len() <= MAX_TOKEN_BYTES,
        "an oversized token verified"
    );
    let u = unverified.unwrap_or_else(|| {
        panic!("enforce verified a token ingest cannot read: {token:?} -> {claims:?}")
    });
    assert_eq!(claims.sub, u.sub, "enforce and ingest read different subs");
    assert_eq!(
        claims.session, u.session,
        "enforce and ingest read different sessions"
    );
}
