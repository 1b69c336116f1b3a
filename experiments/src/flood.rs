//! `experiments flood`: a supervisor under a flood of unauthenticated WebSockets while honest
//! peers join a live stream, then under handshake spam (answers of random bytes at step 6).
//!
//! The idle flood keeps `idle` sockets open from `addrs` loopback source addresses (127.0.0.2 and
//! up): each socket completes the HTTP upgrade, never answers the handshake, and is opened again
//! when the supervisor closes it or refuses it (after its Retry-After), as an attacker would. The
//! honest peers (127.0.0.1) authenticate and send JOIN_STREAM in rounds while the flood holds;
//! their latency is connect to JOINED. The spam phase runs `spam_conns` connections that complete
//! steps 1-5 with a real public key and answer the challenge with random bytes, so that each answer
//! that is decrypted costs the supervisor one RSA private-key operation.
//!
//! Both this process and the supervisor need more descriptors than the usual soft limit of 1024:
//! the run raises each one's RLIMIT_NOFILE soft limit to its hard limit with `prlimit` and reports it.

use crate::api::Api;
use crate::procs::{self, Proc};
use crate::stats::{median, percentile};
use anyhow::{bail, Context};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use ownstream_core::auth::{Identity, PeerHandshake};
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{Agent, ComponentType, PeerMessage, ServerMessage};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

const STREAM: &str = "flood";

/// One run's settings.
#[derive(Clone, Debug)]
pub(crate) struct FloodConfig {
    /// Idle sockets to keep open.
    pub idle: usize,
    /// Loopback source addresses the idle sockets come from.
    pub addrs: u8,
    /// Honest joins per round.
    pub honest: usize,
    /// How long the flood holds once ramped up; honest rounds run meanwhile.
    pub hold: Duration,
    /// Length of the spam phase (zero: none).
    pub spam: Duration,
    /// Concurrent spam connections (over 4 source addresses).
    pub spam_conns: usize,
    /// Names this run in the results.
    pub label: String,
    /// Extra supervisor arguments.
    pub supervisor_args: Vec<String>,
}

#[derive(Default)]
struct Tally {
    open: AtomicUsize,
    peak_open: AtomicUsize,
    upgraded: AtomicU64,
    closed_by_server: AtomicU64,
    refused_429: AtomicU64,
    refused_503: AtomicU64,
    errors: AtomicU64,
}

#[derive(Default)]
struct SpamTally {
    decrypted: AtomicU64,
    throttled: AtomicU64,
    refused_http: AtomicU64,
    other: AtomicU64,
}

/// Runs one configuration and writes `<label>.json` and a line of `flood.csv` under `out`.
pub(crate) fn run(out: &Path, clip: &Path, cfg: &FloodConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let dir = out.join("raw").join(&cfg.label);
    std::fs::create_dir_all(&dir)?;
    let own_nofile = raise_nofile(std::process::id())?;
    let token: String = (0..32)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    let publish_token: String = (0..32)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    let (supervisor, addr) = procs::supervisor(
        &token,
        &publish_token,
        &dir.join("supervisor.log"),
        &cfg.supervisor_args,
    )?;
    let sup_nofile = raise_nofile(supervisor.pid())?;
    let mut bc = Command::new(procs::bin("broadcaster")?);
    bc.args(["--supervisor", &format!("ws://{addr}/ws")])
        .args(["--publish-token", &publish_token])
        .args([
            "--webrtc-ip",
            "127.0.0.1",
            "--name",
            STREAM,
            "--loop",
            "--file",
        ])
        .arg(clip);
    let _broadcaster = Proc::spawn("broadcaster", &mut bc, &dir.join("broadcaster.log"))?;
    let api = Api::new(&addr, &token);
    wait_live(&api)?;
    let rss_before_kib = status_kib(supervisor.pid(), "VmRSS");
    let server: SocketAddr = addr.parse().context("the supervisor's address")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let key = Arc::new(Identity::generate(&mut rand::rng(), 2048)?);
    let flood = rt.block_on(flood_phase(server, cfg, key.clone(), &supervisor))?;
    let rss_peak_kib = status_kib(supervisor.pid(), "VmHWM");
    let cpu0 = procs::cpu_seconds(supervisor.pid());
    let spam = rt.block_on(spam_phase(server, cfg, &key))?;
    let spam_cpu = procs::cpu_seconds(supervisor.pid()) - cpu0;
    let metrics = metrics_lines(&addr);
    let secs = cfg.spam.as_secs_f64().max(1e-9);
    let result = json!({
        "label": cfg.label,
        "supervisor_args": cfg.supervisor_args,
        "machine": crate::machine(),
        "nofile_soft_limit": {"experiments": own_nofile, "supervisor": sup_nofile},
        "idle_target": cfg.idle,
        "source_addresses": cfg.addrs,
        "supervisor_rss_mib_before": kib_to_mib(rss_before_kib),
        "supervisor_rss_mib_peak": kib_to_mib(rss_peak_kib),
        "flood": flood,
        "spam": {
            "seconds": cfg.spam.as_secs_f64(),
            "connections": cfg.spam_conns,
            "decrypted_per_sec": spam.decrypted.load(Relaxed) as f64 / secs,
            "decrypted": spam.decrypted.load(Relaxed),
            "throttled": spam.throttled.load(Relaxed),
            "refused_http": spam.refused_http.load(Relaxed),
            "other": spam.other.load(Relaxed),
            "supervisor_cpu_percent": 100.0 * spam_cpu / secs,
        },
        "metrics": metrics,
    });
    std::fs::write(
        out.join(format!("{}.json", cfg.label)),
        serde_json::to_string_pretty(&result)?,
    )?;
    append_csv(out, &result)?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

async fn flood_phase(
    server: SocketAddr,
    cfg: &FloodConfig,
    key: Arc<Identity>,
    supervisor: &Proc,
) -> anyhow::Result<Value> {
    let tally = Arc::new(Tally::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(cfg.idle);
    for i in 0..cfg.idle {
        let src = source(2 + (i % usize::from(cfg.addrs.max(1))) as u8);
        tasks.push(tokio::spawn(hold_idle(
            server,
            src,
            tally.clone(),
            stop_rx.clone(),
        )));
    }
    // Ramp: until the open count stops growing for 3 s (or 60 s in all).
    let mut last = 0;
    let mut still = Instant::now();
    while started.elapsed() < Duration::from_secs(60) && still.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = tally.peak_open.load(Relaxed);
        if now > last {
            last = now;
            still = Instant::now();
        }
    }
    let ramp_s = started.elapsed().as_secs_f64();
    let rss_ramped_kib = status_kib(supervisor.pid(), "VmRSS");
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let mut max_rss_kib = rss_ramped_kib;
    let hold_end = Instant::now() + cfg.hold;
    while Instant::now() < hold_end {
        let round: Vec<_> = (0..cfg.honest)
            .map(|_| tokio::spawn(honest_join(server, key.clone())))
            .collect();
        for r in round {
            match r.await? {
                Ok(ms) => latencies.push(ms),
                Err(e) => failures.push(e),
            }
        }
        max_rss_kib = max_rss_kib.max(status_kib(supervisor.pid(), "VmRSS"));
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let open_at_end = tally.open.load(Relaxed);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let failed = failures.len();
    failures.truncate(5);
    Ok(json!({
        "ramp_seconds": ramp_s,
        "peak_open": tally.peak_open.load(Relaxed),
        "open_at_end": open_at_end,
        "upgraded": tally.upgraded.load(Relaxed),
        "closed_by_server": tally.closed_by_server.load(Relaxed),
        "refused_429": tally.refused_429.load(Relaxed),
        "refused_503": tally.refused_503.load(Relaxed),
        "connect_errors": tally.errors.load(Relaxed),
        "supervisor_rss_mib_ramped": kib_to_mib(rss_ramped_kib),
        "supervisor_rss_mib_max_sampled": kib_to_mib(max_rss_kib),
        "honest_joins": latencies.len(),
        "honest_failed": failed,
        "honest_failure_examples": failures,
        "honest_join_ms_median": median(&latencies),
        "honest_join_ms_p95": percentile(&latencies, 95.0),
        "honest_join_ms_max": latencies.iter().copied().fold(0.0, f64::max),
    }))
}

fn source(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

enum Upgrade {
    Open(TcpStream),
    Refused(u16, u64),
}

/// Keeps one idle socket open from `src` until told to stop, reopening it whenever it ends.
async fn hold_idle(
    server: SocketAddr,
    src: IpAddr,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let wait = match tokio::time::timeout(Duration::from_secs(10), open_idle(server, src)).await
        {
            Ok(Ok(Upgrade::Open(mut stream))) => {
                tally.upgraded.fetch_add(1, Relaxed);
                let n = tally.open.fetch_add(1, Relaxed) + 1;
                tally.peak_open.fetch_max(n, Relaxed);
                let mut buf = [0u8; 256];
                loop {
                    tokio::select! {
                        r = stream.read(&mut buf) => match r {
                            Ok(0) | Err(_) => {
                                tally.closed_by_server.fetch_add(1, Relaxed);
                                break;
                            }
                            Ok(_) => {}
                        },
                        _ = stop.changed() => break,
                    }
                }
                tally.open.fetch_sub(1, Relaxed);
                Duration::ZERO
            }
            Ok(Ok(Upgrade::Refused(status, retry_s))) => {
                let counter = if status == 503 {
                    &tally.refused_503
                } else {
                    &tally.refused_429
                };
                counter.fetch_add(1, Relaxed);
                Duration::from_secs(retry_s.clamp(1, 10))
            }
            Ok(Err(_)) | Err(_) => {
                tally.errors.fetch_add(1, Relaxed);
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Connects from `src`, asks for the WebSocket upgrade and reads the answer's head.
async fn open_idle(server: SocketAddr, src: IpAddr) -> std::io::Result<Upgrade> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(src, 0))?;
    let mut stream = sock.connect(server).await?;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 8192 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status == 101 {
        return Ok(Upgrade::Open(stream));
    }
    let retry = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("retry-after")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(1);
    Ok(Upgrade::Refused(status, retry))
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn ws_from(server: SocketAddr, src: IpAddr) -> Result<Ws, String> {
    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(SocketAddr::new(src, 0))
        .map_err(|e| e.to_string())?;
    let stream = sock.connect(server).await.map_err(|e| e.to_string())?;
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let url = format!("ws://{server}/ws");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    Ok(ws)
}

async fn next_server(ws: &mut Ws) -> Result<ServerMessage, String> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .map_err(|_| "no message within 20 s".to_string())?;
        match next {
            Some(Ok(Message::Text(t))) => {
                return ServerMessage::decode(&t).map_err(|e| e.to_string())
            }
            Some(Ok(Message::Close(f))) => {
                return Err(f.map(|f| f.reason.to_string()).unwrap_or_default())
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("error: {e}")),
            None => return Err("ended".into()),
        }
    }
}

/// One honest peer from 127.0.0.1: handshake then JOIN_STREAM; milliseconds to JOINED.
async fn honest_join(server: SocketAddr, key: Arc<Identity>) -> Result<f64, String> {
    let start = Instant::now();
    let mut ws = ws_from(server, source(1)).await?;
    let mut hs = PeerHandshake::new(key, PeerId::random(), ComponentType::Receiver, None);
    loop {
        let msg = next_server(&mut ws).await?;
        let done = hs
            .handle_message(msg, &mut rand::rng())
            .map_err(|e| e.to_string())?;
        while let Some(out) = hs.poll_message() {
            ws.send(Message::text(out.encode()))
                .await
                .map_err(|e| e.to_string())?;
        }
        if done.is_some() {
            break;
        }
    }
    let join = PeerMessage::JoinStream {
        stream: STREAM.into(),
        wait: false,
        relay: true,
    };
    ws.send(Message::text(join.encode()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        if let ServerMessage::Joined { .. } = next_server(&mut ws).await? {
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            let _ = ws.close(None).await;
            return Ok(ms);
        }
    }
}

async fn spam_phase(
    server: SocketAddr,
    cfg: &FloodConfig,
    key: &Identity,
) -> anyhow::Result<Arc<SpamTally>> {
    let tally = Arc::new(SpamTally::default());
    if cfg.spam.is_zero() {
        return Ok(tally);
    }
    let der = base64::engine::general_purpose::STANDARD.encode(key.public_der());
    let end = Instant::now() + cfg.spam;
    let tasks: Vec<_> = (0..cfg.spam_conns)
        .map(|i| {
            let (tally, der) = (tally.clone(), der.clone());
            let src = source(200 + (i % 4) as u8);
            tokio::spawn(async move {
                while Instant::now() < end {
                    let outcome = tokio::time::timeout_at(end.into(), spam_once(server, src, &der));
                    match outcome.await {
                        Ok(Ok(reason)) => {
                            let counter = if reason.contains("does not match")
                                || reason.contains("could not decrypt")
                            {
                                &tally.decrypted
                            } else if reason.contains("too many") {
                                &tally.throttled
                            } else {
                                &tally.other
                            };
                            counter.fetch_add(1, Relaxed);
                        }
                        Ok(Err(e)) if e.contains("429") || e.contains("503") => {
                            tally.refused_http.fetch_add(1, Relaxed);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Ok(Err(_)) => {
                            tally.other.fetch_add(1, Relaxed);
                        }
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    Ok(tally)
}

/// Steps 1-5 honestly, then random bytes as the answer; returns the close reason.
async fn spam_once(server: SocketAddr, src: IpAddr, der: &str) -> Result<String, String> {
    let mut ws = ws_from(server, src).await?;
    next_server(&mut ws).await?;
    let info = PeerMessage::CollectPeerInfoResponse {
        peer_id: PeerId::random(),
        public_key: der.to_string(),
        component_type: ComponentType::Receiver,
        agent: Agent::Native,
    };
    let send = |m: PeerMessage| Message::text(m.encode());
    ws.send(send(info)).await.map_err(|e| e.to_string())?;
    next_server(&mut ws).await?;
    ws.send(send(PeerMessage::AuthenticationResponse {}))
        .await
        .map_err(|e| e.to_string())?;
    next_server(&mut ws).await?;
    let junk: [u8; 256] = rand::random();
    let response = base64::engine::general_purpose::STANDARD.encode(junk);
    ws.send(send(PeerMessage::AuthenticationChallengeResponse {
        response,
    }))
    .await
    .map_err(|e| e.to_string())?;
    match next_server(&mut ws).await {
        Err(reason) => Ok(reason),
        Ok(_) => Err("the supervisor accepted a random answer".into()),
    }
}

/// Raises `pid`'s soft RLIMIT_NOFILE to its hard limit (with `prlimit`); returns the new soft limit.
fn raise_nofile(pid: u32) -> anyhow::Result<u64> {
    let hard = nofile(pid, 4).context("cannot read the open-files limit")?;
    let status = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={hard}:{hard}"),
        ])
        .status()
        .context("cannot run prlimit (util-linux)")?;
    if !status.success() {
        bail!("prlimit could not raise the open-files limit of {pid}");
    }
    nofile(pid, 3).context("cannot read the open-files limit")
}

/// Field `col` (3: soft, 4: hard) of "Max open files" in /proc/PID/limits.
fn nofile(pid: u32, col: usize) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(col)?.parse().ok()
}

/// A `kB` field of /proc/PID/status.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn kib_to_mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

fn wait_live(api: &Api) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.tree(STREAM).is_empty() {
        if Instant::now() > deadline {
            bail!("the stream `{STREAM}` did not go live within 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The supervisor's admission metrics (absent before they existed).
fn metrics_lines(addr: &str) -> Vec<String> {
    let text = ureq::get(format!("http://{addr}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    text.lines()
        .filter(|l| {
            !l.starts_with('#')
                && (l.contains("handshake")
                    || l.contains("answer_decryptions")
                    || l.contains("auth_failures"))
        })
        .map(str::to_string)
        .collect()
}

fn append_csv(out: &Path, r: &Value) -> anyhow::Result<()> {
    use std::io::Write;
    let path = out.join("flood.csv");
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    if new {
        writeln!(f, "label,idle_target,peak_open,rss_mib_before,rss_mib_peak,refused_429,refused_503,closed_by_server,honest_joins,honest_failures,join_ms_median,join_ms_p95,spam_decrypted_per_sec,spam_throttled,spam_cpu_percent")?;
    }
    let fl = &r["flood"];
    let sp = &r["spam"];
    writeln!(
        f,
        "{},{},{},{},{},{},{},{},{},{},{:.1},{:.1},{:.1},{},{:.1}",
        r["label"].as_str().unwrap_or_default(),
        r["idle_target"],
        fl["peak_open"],
        r["supervisor_rss_mib_before"],
        r["supervisor_rss_mib_peak"],
        fl["refused_429"],
        fl["refused_503"],
        fl["closed_by_server"],
        fl["honest_joins"],
        fl["honest_failed"],
        fl["honest_join_ms_median"].as_f64().unwrap_or(0.0),
        fl["honest_join_ms_p95"].as_f64().unwrap_or(0.0),
        sp["decrypted_per_sec"].as_f64().unwrap_or(0.0),
        sp["throttled"],
        sp["supervisor_cpu_percent"].as_f64().unwrap_or(0.0),
    )?;
    Ok(())
}
