//! A stream on this machine for an experiment: a supervisor, a looping broadcaster of a clip, and
//! N headless receivers spread over as few `receiver --count` processes as asked, all release
//! binaries on loopback, all ended when the testbed is dropped.

use crate::api::Api;
use crate::procs::{self, Proc};
use anyhow::bail;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The stream's name.
pub(crate) const STREAM: &str = "exp";

/// A running stream.
pub(crate) struct Testbed {
    /// The supervisor's API.
    pub api: Api,
    dir: PathBuf,
    supervisor: Proc,
    broadcaster: Proc,
    receivers: Vec<Proc>,
    /// Receivers asked for.
    pub n: usize,
}

/// CPU seconds used so far, per role.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cpu {
    /// The supervisor.
    pub supervisor: f64,
    /// The broadcaster.
    pub broadcaster: f64,
    /// Every receiver process.
    pub receivers: f64,
}

impl Cpu {
    /// All processes.
    pub(crate) fn total(&self) -> f64 {
        self.supervisor + self.broadcaster + self.receivers
    }

    /// Used between `self` (earlier) and `later`.
    pub(crate) fn until(&self, later: &Self) -> Self {
        Self {
            supervisor: later.supervisor - self.supervisor,
            broadcaster: later.broadcaster - self.broadcaster,
            receivers: later.receivers - self.receivers,
        }
    }
}

/// The broadcaster's `--latency` for every testbed of this run (`experiments --latency`).
static LATENCY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the latency mode the testbeds' broadcasters announce (once, before the first testbed).
pub(crate) fn set_latency(mode: &str) {
    let _ = LATENCY.set(mode.to_string());
}

/// The latency mode of this run's broadcasters.
pub(crate) fn latency() -> &'static str {
    LATENCY.get().map_or("normal", String::as_str)
}

impl Testbed {
    /// Starts everything; `per_process` receivers share one process; `supervisor_args` go to the
    /// supervisor after the experiments' address limits (its topology, say).
    pub(crate) fn start(
        dir: &Path,
        clip: &Path,
        n: usize,
        per_process: usize,
        key_bits: u32,
        supervisor_args: &[String],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let secret = || -> String {
            (0..32)
                .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
                .collect()
        };
        let (token, publish_token) = (secret(), secret());
        let mut args: Vec<String> = procs::ONE_ADDRESS_LIMITS.map(String::from).into();
        args.extend_from_slice(supervisor_args);
        let (supervisor, addr) =
            procs::supervisor(&token, &publish_token, &dir.join("supervisor.log"), &args)?;
        let url = format!("ws://{addr}/ws");
        let peer = |cmd: &mut Command| {
            cmd.args(["--supervisor", &url, "--webrtc-ip", "127.0.0.1"])
                .args(["--key-bits", &key_bits.to_string()]);
        };
        let mut cmd = Command::new(procs::bin("broadcaster")?);
        peer(&mut cmd);
        cmd.args(["--publish-token", &publish_token])
            .args(["--latency", latency()])
            .args(["--name", STREAM, "--loop", "--file"])
            .arg(clip)
            .arg("--stats")
            .arg(dir.join("broadcaster.json"));
        let broadcaster = Proc::spawn("broadcaster", &mut cmd, &dir.join("broadcaster.log"))?;
        let mut receivers = Vec::new();
        let mut left = n;
        let mut i = 0;
        while left > 0 {
            let count = left.min(per_process.max(1));
            let mut cmd = Command::new(procs::bin("receiver")?);
            peer(&mut cmd);
            cmd.args(["--stream", STREAM, "--count", &count.to_string(), "--stats"])
                .arg(dir.join(format!("receivers-{i}.json")));
            receivers.push(Proc::spawn(
                "receivers",
                &mut cmd,
                &dir.join(format!("receivers-{i}.log")),
            )?);
            left -= count;
            i += 1;
        }
        Ok(Self {
            api: Api::new(&addr, &token),
            dir: dir.to_path_buf(),
            supervisor,
            broadcaster,
            receivers,
            n,
        })
    }

    /// Waits until `n` viewers are in the tree and every one of them plays.
    pub(crate) fn wait_playing(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let stats = self.api.stats(STREAM);
            let playing = stats
                .iter()
                .filter(|n| n["parent"].is_string() && n["stats"]["playing"] == true)
                .count();
            if playing >= self.n {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "only {playing} of {} viewers play after {limit:?} (logs in {})",
                    self.n,
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if !self.supervisor.running() || !self.broadcaster.running() {
            bail!(
                "the supervisor or the broadcaster stopped (logs in {})",
                self.dir.display()
            );
        }
        Ok(())
    }

    /// CPU seconds used so far.
    pub(crate) fn cpu(&self) -> Cpu {
        Cpu {
            supervisor: procs::cpu_seconds(self.supervisor.pid()),
            broadcaster: procs::cpu_seconds(self.broadcaster.pid()),
            receivers: self
                .receivers
                .iter()
                .map(|p| procs::cpu_seconds(p.pid()))
                .sum(),
        }
    }

    /// Every node's latest stats.
    pub(crate) fn stats(&self) -> Vec<Value> {
        self.api.stats(STREAM)
    }

    /// Stops every peer with SIGINT so they write their summaries; returns the broadcaster's
    /// summary and every receiver's.
    pub(crate) fn stop(mut self) -> anyhow::Result<(Value, Vec<Value>)> {
        for r in &mut self.receivers {
            r.interrupt(Duration::from_secs(20));
        }
        self.broadcaster.interrupt(Duration::from_secs(20));
        let read = |p: &Path| -> Value {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null)
        };
        let broadcaster = read(&self.dir.join("broadcaster.json"));
        let mut receivers = Vec::new();
        for i in 0..self.receivers.len() {
            if let Value::Array(a) = read(&self.dir.join(format!("receivers-{i}.json"))) {
                receivers.extend(a);
            }
        }
        Ok((broadcaster, receivers))
    }
}
