//! Harness for the end-to-end tests: runs the workspace's real binaries (supervisor, broadcaster,
//! receivers) as processes on loopback, kills every one of them when dropped, and checks outputs with
//! ffmpeg. Waits poll a condition against a deadline; none sleeps a fixed time to "let things happen".
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The workspace's root directory.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A test clip committed under `testdata/`.
pub(crate) fn clip(name: &str) -> PathBuf {
    repo_root().join("testdata").join(name)
}

/// A binary of this workspace, built by `cargo test` (or `cargo build --bins`) next to the test.
pub(crate) fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests from the workspace root (`cargo test` builds every binary), \
         or `cargo build --bins` first",
        path.display()
    );
    path
}

/// A child process that is killed when dropped, so a failing test leaves nothing behind. Its
/// stderr is echoed (prefixed with its name) and kept, so tests can read what it printed.
pub(crate) struct Proc {
    pub name: String,
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub(crate) fn spawn(name: &str, cmd: &mut Command) -> Self {
        Self::spawn_with_stdin(name, cmd, Stdio::null())
    }

    /// The peer id a broadcaster or receiver announced on its first line.
    pub(crate) fn peer_id(&self) -> String {
        wait_for(
            &format!("{} to announce its peer id", self.name),
            Duration::from_secs(30),
            || {
                self.lines.lock().unwrap().iter().find_map(|l| {
                    let mut words = l.split_whitespace();
                    match (words.next(), words.next()) {
                        (Some("receiver" | "broadcaster"), Some(id)) if id.len() == 36 => {
                            Some(id.to_string())
                        }
                        _ => None,
                    }
                })
            },
        )
    }

    /// SIGKILL: a crash, not a clean leave.
    pub(crate) fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself; panics after `limit`.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` after `limit`.
pub(crate) fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A supervisor process on a free loopback port.
pub(crate) struct Supervisor {
    pub proc: Proc,
    pub addr: String,
    /// Its key's fingerprint, as printed.
    pub fingerprint: String,
    /// The publish token it made and printed at start (`None` when `extra` gave credentials).
    pub publish_token: Option<String>,
}

impl Supervisor {
    pub(crate) fn start(extra: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", extra)
    }

    /// A supervisor on `listen` (a port chosen beforehand, so a restart can take the same one).
    pub(crate) fn start_on(listen: &str, extra: &[&str]) -> Self {
        Self::start_with_env(listen, extra, &[])
    }

    /// A supervisor on `listen` with these environment variables set.
    pub(crate) fn start_with_env(listen: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(bin("supervisor"));
        cmd.args(["--listen", listen])
            .args(extra)
            .envs(env.iter().copied());
        if !extra.iter().any(|a| *a == "--data-dir" || *a == "--key") {
            // Each test its own key, kept out of the user's data directory.
            let dir = std::env::temp_dir().join(format!(
                "ownstream-test-data-{}-{}",
                std::process::id(),
                listen.replace([':', '.'], "_")
            ));
            cmd.arg("--data-dir").arg(dir);
        }
        cmd.stdout(Stdio::piped());
        let mut proc = Proc::spawn("supervisor", &mut cmd);
        let stdout = proc.child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut next = || {
            lines
                .next()
                .expect("supervisor exited before printing its address, key and publish token")
                .unwrap()
        };
        let mut addr = None;
        let fingerprint = loop {
            let line = next();
            if let Some(rest) = line.strip_prefix("supervisor listening on http://") {
                addr = Some(rest.split_whitespace().next().unwrap().to_string());
            }
            if let Some(rest) = line.strip_prefix("supervisor key fingerprint: ") {
                break rest.trim().to_string();
            }
        };
        let addr = addr.expect("the address is printed before the key");
        let publish_token = loop {
            let line = next();
            if let Some(rest) = line.strip_prefix("publish token: ") {
                break Some(rest.split_whitespace().next().unwrap().to_string());
            }
            if line.starts_with("publish credentials: ") {
                break None;
            }
        };
        // Keep draining stdout so the supervisor never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            proc,
            addr,
            fingerprint,
            publish_token,
        }
    }

    /// `--publish-token` with the token the supervisor printed, if it made one.
    pub(crate) fn publish_args(&self) -> Vec<String> {
        match &self.publish_token {
            Some(t) => vec!["--publish-token".into(), t.clone()],
            None => Vec::new(),
        }
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// GET a JSON document from the API; `None` on a non-200 answer.
    pub(crate) fn get_json(&self, path: &str) -> Option<serde_json::Value> {
        let (status, body) = http_get(&self.addr, path);
        (status == 200).then(|| serde_json::from_str(&body).unwrap())
    }

    /// `(id, parent, depth)` of every node of `stream`'s tree.
    pub(crate) fn tree(&self, stream: &str) -> Vec<(String, Option<String>, u64)> {
        let Some(tree) = self.get_json(&format!("/api/streams/{stream}/tree")) else {
            return Vec::new();
        };
        tree["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["id"].as_str().unwrap().to_string(),
                    n["parent"].as_str().map(str::to_string),
                    n["depth"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

/// A minimal HTTP/1.0 GET, enough for the JSON API.
pub(crate) fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Common peer flags for loopback tests.
pub(crate) fn peer_args(sup: &Supervisor) -> Vec<String> {
    vec![
        "--supervisor".into(),
        sup.ws_url(),
        "--webrtc-ip".into(),
        "127.0.0.1".into(),
    ]
}

/// Starts a headless receiver writing `out.webm` and `stats.json` under `dir/name`.
pub(crate) fn receiver(sup: &Supervisor, dir: &Path, name: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(bin("receiver"));
    cmd.args(peer_args(sup))
        .args(["--stream", "s"])
        .arg("--out")
        .arg(dir.join(format!("{name}.webm")))
        .arg("--stats")
        .arg(dir.join(format!("{name}.json")))
        .args(extra);
    Proc::spawn(name, &mut cmd)
}

/// Starts the broadcaster of `clip` as stream `s`.
pub(crate) fn broadcaster(sup: &Supervisor, clip: &Path, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(bin("broadcaster"));
    cmd.args(peer_args(sup))
        .args(sup.publish_args())
        .args(["--name", "s", "--file"])
        .arg(clip)
        .args(extra);
    Proc::spawn("broadcaster", &mut cmd)
}

/// Reads a receiver's `--stats` JSON.
pub(crate) fn stats(dir: &Path, name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(format!("{name}.json")))
        .unwrap_or_else(|e| panic!("no stats for {name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Number of video frames ffprobe decodes from `file`.
pub(crate) fn video_frames(file: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect(
            "ffprobe is needed by the end-to-end tests (scripts/install-prereqs.sh installs it)",
        );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "ffprobe could not count frames of {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Decodes `file` fully with ffmpeg; returns its error output (empty when clean).
pub(crate) fn decode_errors(file: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg is needed by the end-to-end tests");
    let mut errors = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        errors.push_str(&format!("\nffmpeg exited with {}", out.status));
    }
    errors
}

/// A fresh directory under the target dir for one test's outputs (kept for inspection).
pub(crate) fn out_dir(test: &str) -> PathBuf {
    let dir = repo_root().join("target").join("e2e").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Per-node stats the supervisor holds for `stream`, by peer id.
pub(crate) fn live_stats(sup: &Supervisor, stream: &str) -> Vec<(String, serde_json::Value)> {
    sup.get_json(&format!("/api/streams/{stream}/stats"))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|n| (n["id"].as_str().unwrap().to_string(), n["stats"].clone()))
        .collect()
}

/// Runs the spine scenario: a supervisor with `supervisor_args`, seven receivers, a broadcaster of
/// the keyframe clip holding until they are connected; mid-stream, the depth-1 receiver `victim`
/// picks is killed. Every surviving receiver must exit cleanly with every frame of the source.
pub(crate) fn crash_scenario(test: &str, supervisor_args: &[&str]) {
    let sup = Supervisor::start(supervisor_args);
    let dir = out_dir(test);
    let source = clip("clip-keyframe-clusters.webm");
    let source_frames = video_frames(&source);
    let mut receivers: Vec<Proc> = (0..7)
        .map(|i| receiver(&sup, &dir, &format!("r{i}"), &[]))
        .collect();
    let mut b = broadcaster(&sup, &source, &["--wait-viewers", "7"]);
    let ids: Vec<String> = receivers.iter().map(Proc::peer_id).collect();
    wait_for("seven viewers in the tree", Duration::from_secs(60), || {
        (sup.tree("s").len() == 8).then_some(())
    });
    let tree = sup.tree("s");
    let victim_id = tree.iter().find(|n| n.2 == 1).map(|n| n.0.clone()).unwrap();
    let orphans: Vec<String> = tree
        .iter()
        .filter(|n| n.1.as_deref() == Some(&victim_id))
        .map(|n| n.0.clone())
        .collect();
    assert!(!orphans.is_empty(), "the depth-1 victim has children");
    let victim = ids.iter().position(|i| *i == victim_id).unwrap();
    // Crash mid-stream: once the victim has relayed a few seconds of media.
    wait_for(
        "the victim to hold 3 s of media",
        Duration::from_secs(60),
        || {
            live_stats(&sup, "s")
                .into_iter()
                .find(|(id, _)| *id == victim_id)
                .and_then(|(_, st)| (st["last_seq"].as_u64().unwrap_or(0) >= 3).then_some(()))
        },
    );
    receivers[victim].crash();
    for (i, r) in receivers.iter_mut().enumerate() {
        if i != victim {
            let status = r.wait_exit(Duration::from_secs(90));
            assert!(status.success(), "{} exited with {status}", r.name);
        }
    }
    let status = b.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "broadcaster exited with {status}");
    for (i, id) in ids.iter().enumerate() {
        if i == victim {
            continue;
        }
        let name = format!("r{i}");
        let st = stats(&dir, &name);
        assert_eq!(st["chunks_rejected"], 0, "{name}: {st}");
        if orphans.contains(id) {
            assert!(
                st["repairs"].as_u64().unwrap() >= 1,
                "{name} was re-attached: {st}"
            );
        }
        let out = dir.join(format!("{name}.webm"));
        assert_eq!(decode_errors(&out), "", "{name}'s output decodes cleanly");
        assert_eq!(
            video_frames(&out),
            source_frames,
            "{name} holds every frame of the source"
        );
    }
}

/// Starts the broadcaster of stream `s` reading a live WebM from `stdin` (`--stdin`).
pub(crate) fn broadcaster_stdin(sup: &Supervisor, stdin: Stdio, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(bin("broadcaster"));
    cmd.args(peer_args(sup))
        .args(sup.publish_args())
        .args(["--name", "s", "--stdin"])
        .args(extra);
    Proc::spawn_with_stdin("broadcaster", &mut cmd, stdin)
}

impl Proc {
    /// Like [`Proc::spawn`], with the child reading `stdin` (a pipe from another process, a file)
    /// instead of nothing.
    pub(crate) fn spawn_with_stdin(name: &str, cmd: &mut Command, stdin: Stdio) -> Self {
        let mut child = cmd
            .stdin(stdin)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let (keep, prefix) = (lines.clone(), name.to_string());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{prefix}] {line}");
                keep.lock().unwrap().push(line);
            }
        });
        Self {
            name: name.to_string(),
            child,
            lines,
        }
    }

    /// Everything the process printed on stderr, once a line satisfying `done` has been read (a
    /// binary's closing error comes last, so the text is then complete up to it); panics after
    /// `limit`.
    pub(crate) fn stderr_until(&self, done: impl Fn(&str) -> bool, limit: Duration) -> String {
        wait_for(&format!("{}'s closing line", self.name), limit, || {
            let lines = self.lines.lock().unwrap();
            lines.iter().any(|l| done(l)).then(|| lines.join("\n"))
        })
    }
}

/// Sends `sig` (`-STOP`, `-CONT`, `-INT`, ...) to the process, as an operator's `kill` would.
pub(crate) fn signal(p: &Proc, sig: &str) {
    let pid = p.child.id().to_string();
    let status = Command::new("kill").args([sig, &pid]).status().unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}
