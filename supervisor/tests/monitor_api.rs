//! The monitor's API over real HTTP against a supervisor on port 0: every endpoint refuses a
//! missing or wrong admin token with 401, bad input gets a 400 that says what is wrong, and
//! `/metrics` speaks the Prometheus text format.

use ownstream_supervisor::Config;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "monitor-test-token-0123";

async fn start() -> (String, tokio::sync::oneshot::Sender<()>) {
    let bound = ownstream_supervisor::bind(Config {
        listen: "127.0.0.1:0".into(),
        admin_token: TOKEN.into(),
        ..Config::default()
    })
    .await
    .unwrap();
    let addr = bound.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve(async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// One HTTP/1.1 request (connection closed after it); returns status, body and headers.
async fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut text = Vec::new();
    // The live feed never ends: read what arrives within a moment.
    let _ = tokio::time::timeout(Duration::from_millis(800), s.read_to_end(&mut text)).await;
    let text = String::from_utf8_lossy(&text).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, body.to_string(), head.to_string())
}

const ENDPOINTS: [(&str, &str, Option<&str>); 5] = [
    (
        "POST",
        "/api/streams/s/failures",
        Some(r#"{"distribution":"uniform","rate":1,"duration_s":1}"#),
    ),
    ("DELETE", "/api/streams/s/failures", None),
    ("GET", "/api/streams/s/runs", None),
    (
        "POST",
        "/api/peers/00000000-0000-0000-0000-000000000001/kill",
        None,
    ),
    ("GET", "/api/monitor/events?stream=s", None),
];

#[tokio::test]
async fn every_monitor_endpoint_needs_the_token() {
    let (addr, _stop) = start().await;
    for (method, path, body) in ENDPOINTS {
        for token in [
            None,
            Some("wrong-token-0123456789"),
            Some("monitor-test-token-012"),
        ] {
            let (status, text, head) = request(&addr, method, path, token, body).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {text}");
            assert!(text.contains("admin token"), "{text}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("www-authenticate: bearer"),
                "{head}"
            );
        }
        let (status, text, _) = request(&addr, method, path, Some(TOKEN), body).await;
        assert_ne!(status, 401, "{method} {path} with the token: {text}");
    }
}

#[tokio::test]
async fn bad_parameters_get_a_400_that_says_why() {
    let (addr, _stop) = start().await;
    let cases = [
        (
            r#"{"distribution":"gaussian","rate":1,"duration_s":5}"#,
            "unknown distribution `gaussian`",
        ),
        (
            r#"{"distribution":"uniform","rate":-2,"duration_s":5}"#,
            "rate must be",
        ),
        (
            r#"{"distribution":"binomial","params":{"p":1.5},"rate":1,"duration_s":5}"#,
            "between 0 and 1",
        ),
        (
            r#"{"distribution":"beta","params":{"alpha":-1},"rate":1,"duration_s":5}"#,
            "positive",
        ),
        (
            r#"{"distribution":"uniform","rate":1,"duration_s":0}"#,
            "duration_s must be",
        ),
        (
            r#"{"distribution":"uniform","rate":1}"#,
            "missing field `duration_s`",
        ),
        (
            r#"{"distribution":"uniform","rate":1,"duration_s":5,"speed":3}"#,
            "unknown field `speed`",
        ),
        ("not json", "expected"),
    ];
    for (body, says) in cases {
        let (status, text, _) = request(
            &addr,
            "POST",
            "/api/streams/s/failures",
            Some(TOKEN),
            Some(body),
        )
        .await;
        assert_eq!(status, 400, "{body}: {text}");
        let error = serde_json::from_str::<serde_json::Value>(&text).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(error.contains(says), "{body}: {error}");
    }
    let good = r#"{"distribution":"uniform","rate":2,"duration_s":10,"seed":7}"#;
    let (status, text, _) = request(
        &addr,
        "POST",
        "/api/streams/nope/failures",
        Some(TOKEN),
        Some(good),
    )
    .await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("no live stream named `nope`"), "{text}");
    let (status, text, _) = request(
        &addr,
        "POST",
        "/api/peers/not-a-uuid/kill",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("is not a peer id"), "{text}");
    let kill = "/api/peers/00000000-0000-0000-0000-000000000001/kill";
    let (status, text, _) = request(
        &addr,
        "POST",
        kill,
        Some(TOKEN),
        Some(r#"{"rejoin":"yes"}"#),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let (status, text, _) = request(&addr, "POST", kill, Some(TOKEN), None).await;
    assert_eq!(status, 404, "{text}");
    let big = format!(
        r#"{{"distribution":"uniform","rate":1,"duration_s":5,"params":{{"x":"{}"}}}}"#,
        "a".repeat(20_000)
    );
    let (status, _, _) = request(
        &addr,
        "POST",
        "/api/streams/s/failures",
        Some(TOKEN),
        Some(&big),
    )
    .await;
    assert_eq!(status, 413, "bodies are bounded");
}

#[tokio::test]
async fn metrics_are_in_the_prometheus_text_format() {
    let (addr, _stop) = start().await;
    let (status, text, head) = request(&addr, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    assert!(head.contains("openmetrics-text"), "{head}");
    for name in [
        "ownstream_joins_total 0",
        "ownstream_repairs_total 0",
        "ownstream_auth_failures_total 0",
        "ownstream_chunks_rejected_total 0",
        "ownstream_stalls_total 0",
        "ownstream_peers 0",
    ] {
        assert!(text.contains(name), "{name} in:\n{text}");
    }
    assert!(text.trim_end().ends_with("# EOF"));
}
