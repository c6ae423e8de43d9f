//! The web dashboard: the assets of `dashboards/web/`, built into the binary and served at `/`
//! (nothing is loaded from the internet). The page itself holds no data; it calls the API with
//! the bearer token the user gives it. `VIGIL_DASHBOARD_DIR` serves the files from a directory
//! instead (for working on the dashboard without rebuilding).

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const ASSETS: [(&str, &str, &str); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../dashboards/web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboards/web/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../dashboards/web/style.css"),
    ),
];

fn asset(name: &str) -> Response {
    let Some((_, ctype, embedded)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let body = match std::env::var_os("VIGIL_DASHBOARD_DIR") {
        Some(dir) => match std::fs::read_to_string(std::path::Path::new(&dir).join(name)) {
            Ok(s) => s,
            Err(_) => (*embedded).to_string(),
        },
        None => (*embedded).to_string(),
    };
    (
        [
            (header::CONTENT_TYPE, *ctype),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
            ),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("index.html")
}

async fn file(Path(name): Path<String>) -> Response {
    asset(&name)
}

/// `/` and `/assets/{name}`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(file))
}
