//! The browser receiver's files, embedded at build time (see `build.rs`), and the routes that serve
//! them: `/` (stream list), `/watch/{name}` (watch page), `/broadcast` (go live from a camera),
//! `/monitor` (the operator's dashboard, from `monitor/`), `/embed/{name}` (the player alone, for
//! other sites' iframes), `/assets/{path}` (modules, styles; the monitor's under `/assets/monitor/`).
//!
//! Framing: only `/embed/{name}` may be shown inside another site's page (`frame-ancestors`:
//! the `--embed-origin`s, else any site). Every other page refuses to be framed at all, by any
//! origin, its own included (`frame-ancestors 'none'` and `X-Frame-Options: DENY` for browsers
//! without CSP 2): a framed monitor or broadcast page could be overlaid and clicked through
//! (clickjacking its kill buttons or *Go live*), and nothing needs to frame them.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ownstream_core::protocol::validate_stream_name;

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Looks up an embedded file.
pub fn asset(path: &str) -> Option<&'static [u8]> {
    ASSETS.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str) -> Response {
    let Some(bytes) = asset(path) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    // Assets change with the binary; a restart with a new build must not serve stale modules.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A page that no other page may frame (see the module docs).
fn serve_unframed(path: &str) -> Response {
    let mut response = serve(path);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The `frame-ancestors` directive of the embeddable player: the allowed origins, or any site.
pub fn embed_frame_ancestors(origins: &[String]) -> String {
    if origins.is_empty() {
        "frame-ancestors *".to_string()
    } else {
        format!("frame-ancestors 'self' {}", origins.join(" "))
    }
}

/// `GET /`: the list of live streams.
pub async fn index() -> Response {
    serve_unframed("index.html")
}

/// `GET /watch/{name}`: the watch page (it reads the name from its URL).
pub async fn watch(Path(name): Path<String>) -> Response {
    if validate_stream_name(&name).is_err() {
        return (StatusCode::BAD_REQUEST, "invalid stream name").into_response();
    }
    serve_unframed("watch.html")
}

/// `GET /embed/{name}`: the player alone, for an iframe on another site (it reads the name and
/// its options from its URL). Watching needs no credential, so framing it exposes nothing.
pub async fn embed(
    State(state): State<crate::http::AppState>,
    Path(name): Path<String>,
) -> Response {
    if validate_stream_name(&name).is_err() {
        return (StatusCode::BAD_REQUEST, "invalid stream name").into_response();
    }
    let mut response = serve("embed.html");
    let policy = embed_frame_ancestors(&state.config.embed_origins);
    // Origins were checked at start (`parse_embed_origin`): only header-safe characters.
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// `GET /broadcast`: the page that goes live from a camera.
pub async fn broadcast() -> Response {
    serve_unframed("broadcast.html")
}

/// `GET /monitor`: the operator's dashboard (its API needs the admin token; the page asks for it).
pub async fn monitor() -> Response {
    serve_unframed("monitor/index.html")
}

/// `GET /assets/{*path}`: any other embedded file.
pub async fn file(Path(path): Path<String>) -> Response {
    serve(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_is_open_or_limited_to_the_given_origins() {
        assert_eq!(embed_frame_ancestors(&[]), "frame-ancestors *");
        let origins = [
            "https://a.example".to_string(),
            "http://localhost:3000".to_string(),
        ];
        assert_eq!(
            embed_frame_ancestors(&origins),
            "frame-ancestors 'self' https://a.example http://localhost:3000"
        );
    }

    #[test]
    fn types_follow_extensions() {
        assert_eq!(
            content_type("js/tab/receiver.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("watch.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
