//! The browser receiver's files, embedded at build time (see `build.rs`), and the routes that serve
//! them: `/` (stream list), `/watch/{name}` (watch page), `/broadcast` (go live from a camera),
//! `/monitor` (the operator's dashboard, from `monitor/`), `/assets/{path}` (modules, styles;
//! the monitor's under `/assets/monitor/`).

use axum::extract::Path;
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

/// `GET /`: the list of live streams.
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /watch/{name}`: the watch page (it reads the name from its URL).
pub async fn watch(Path(name): Path<String>) -> Response {
    if validate_stream_name(&name).is_err() {
        return (StatusCode::BAD_REQUEST, "invalid stream name").into_response();
    }
    serve("watch.html")
}

/// `GET /broadcast`: the page that goes live from a camera.
pub async fn broadcast() -> Response {
    serve("broadcast.html")
}

/// `GET /monitor`: the operator's dashboard (its API needs the admin token; the page asks for it).
pub async fn monitor() -> Response {
    serve("monitor/index.html")
}

/// `GET /assets/{*path}`: any other embedded file.
pub async fn file(Path(path): Path<String>) -> Response {
    serve(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

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
