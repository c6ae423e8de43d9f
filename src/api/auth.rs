//! Bearer tokens. Each configured token has a name and a role (`read`, `ingest`, `admin`);
//! every route but `/healthz` and `/readyz` needs one, and the route decides which role:
//!
//! | routes | role |
//! |---|---|
//! | `/healthz`, `/readyz`, the dashboard's page and assets (`/`, `/assets/…`) | none |
//! | `POST /v1/ingest`, `POST /v1/logs` | `ingest` or `admin` |
//! | `POST /v1/decisions`, `DELETE /v1/decisions/…`, `POST /v1/rules/reload` | `admin` |
//! | everything else (SQL, subjects, decisions, backtests, stream, metrics, dashboard) | `read` or `admin` |
//!
//! With no token configured there is no check and every caller is an admin (named `anonymous`).

use super::ApiError;
use crate::config::Role;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Who called: the token's name and role; in the request's extensions after the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The configured tokens.
#[derive(Debug, Default)]
pub struct Tokens {
    tokens: Vec<(String, Vec<u8>, Role)>,
}

impl Tokens {
    pub fn new(tokens: Vec<(String, String, Role)>) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|(n, s, r)| (n, s.into_bytes(), r))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The caller presenting `secret`. Every token is compared, in time independent of where
    /// the first differing byte is.
    fn find(&self, secret: &[u8]) -> Option<Caller> {
        let mut found = None;
        for (name, s, role) in &self.tokens {
            if constant_time_eq(s, secret) {
                found = Some(Caller {
                    name: name.clone(),
                    role: *role,
                });
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The role a request needs; `None`: open.
pub fn required_role(method: &Method, path: &str) -> Option<&'static [Role]> {
    const READ: &[Role] = &[Role::Read, Role::Admin];
    const INGEST: &[Role] = &[Role::Ingest, Role::Admin];
    const ADMIN: &[Role] = &[Role::Admin];
    match path {
        // health, and the dashboard's page and assets (no data: the page asks for a token)
        "/healthz" | "/readyz" | "/" => None,
        p if p.starts_with("/assets/") => None,
        "/v1/ingest" | "/v1/logs" => Some(INGEST),
        "/v1/rules/reload" => Some(ADMIN),
        "/v1/decisions" if method == Method::POST => Some(ADMIN),
        p if p.starts_with("/v1/decisions/") && method == Method::DELETE => Some(ADMIN),
        _ => Some(READ),
    }
}

/// The middleware: checks the bearer token against the route's role.
pub async fn check(
    State(tokens): State<Arc<Tokens>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(roles) = required_role(req.method(), req.uri().path()) else {
        return Ok(next.run(req).await);
    };
    let caller = if tokens.is_empty() {
        Caller {
            name: "anonymous".into(),
            role: Role::Admin,
        }
    } else {
        let secret = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let Some(secret) = secret else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this endpoint needs `Authorization: Bearer <token>`",
            ));
        };
        tokens.find(secret.as_bytes()).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer token is not valid",
            )
        })?
    };
    if !roles.contains(&caller.role) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token `{}` (role {}) may not call {} {}",
                caller.name,
                caller.role.as_str(),
                req.method(),
                req.uri().path()
            ),
        ));
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_by_route() {
        assert_eq!(required_role(&Method::GET, "/healthz"), None);
        assert_eq!(
            required_role(&Method::POST, "/v1/decisions"),
            Some(&[Role::Admin][..])
        );
        assert_eq!(
            required_role(&Method::GET, "/v1/decisions"),
            Some(&[Role::Read, Role::Admin][..])
        );
        assert_eq!(
            required_role(&Method::DELETE, "/v1/decisions/ip/1.2.3.4"),
            Some(&[Role::Admin][..])
        );
        assert_eq!(
            required_role(&Method::POST, "/v1/logs"),
            Some(&[Role::Ingest, Role::Admin][..])
        );
        assert_eq!(
            required_role(&Method::GET, "/metrics"),
            Some(&[Role::Read, Role::Admin][..])
        );
    }

    #[test]
    fn tokens_match_exactly() {
        let t = Tokens::new(vec![("ops".into(), "0123456789abcdef".into(), Role::Admin)]);
        assert_eq!(t.find(b"0123456789abcdef").unwrap().name, "ops");
        assert!(t.find(b"0123456789abcdeF").is_none());
        assert!(t.find(b"0123456789abcde").is_none());
        assert!(t.find(b"").is_none());
    }
}
