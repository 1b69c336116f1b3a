//! The processes of an experiment: the workspace's release binaries started on loopback, killed
//! when dropped (so an interrupted experiment leaves nothing running), with their CPU time read
//! from /proc.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the binaries are: `OWNSTREAM_BIN_DIR`, else `target/release` of this workspace.
pub(crate) fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("OWNSTREAM_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target").join("release"));
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the release binaries first (cargo build --release --bins)",
            path.display()
        );
    }
    Ok(path)
}

/// The workspace's root.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// A child process, killed when dropped; its stderr goes to a log file.
pub(crate) struct Proc {
    /// Its name in messages.
    pub name: String,
    child: Child,
}

impl Proc {
    /// Starts `cmd` with stderr into `log`.
    pub(crate) fn spawn(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self {
            name: name.to_string(),
            child,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Takes the piped stdout.
    pub(crate) fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Whether it is still running.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGINT (the binaries flush their stats on it), then waits up to `limit` for the exit.
    pub(crate) fn interrupt(&mut self, limit: Duration) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !self.running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{} did not stop within {limit:?} of SIGINT; killing it",
            self.name
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Handshake limits for a testbed whose every peer connects from 127.0.0.1: the supervisor's
/// per-address defaults are sized for one household or office behind one address, not for a
/// thousand viewers on one machine.
pub(crate) const ONE_ADDRESS_LIMITS: [&str; 8] = [
    "--max-pending-handshakes-per-addr",
    "4096",
    "--handshake-burst-per-addr",
    "100000",
    "--handshakes-per-addr-per-sec",
    "100000",
    "--decrypts-per-sec",
    "100000",
];

/// A supervisor on a free loopback port with `extra` arguments, and its address; `token` guards
/// its monitor API and `publish_token` lets the experiment's broadcaster go live.
pub(crate) fn supervisor(
    token: &str,
    publish_token: &str,
    log: &Path,
    extra: &[String],
) -> anyhow::Result<(Proc, String)> {
    let mut cmd = Command::new(bin("supervisor")?);
    cmd.args(["--listen", "127.0.0.1:0", "--admin-token", token])
        .args(["--publish-token", publish_token])
        .args(extra)
        .stdout(Stdio::piped());
    let mut proc = Proc::spawn("supervisor", &mut cmd, log)?;
    let stdout = proc.stdout().context("the supervisor's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let Some(line) = lines.next() else {
            bail!("the supervisor exited at start; see {}", log.display());
        };
        let line = line?;
        if let Some(rest) = line.strip_prefix("supervisor listening on http://") {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    // Keep reading so the supervisor never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok((proc, addr))
}

/// CPU seconds (user + system) a process has used, from /proc; 0 if it is gone.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Runs a command to completion, failing with its stderr.
pub(crate) fn run(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// The paper-like clip (Table I), made by `scripts/make-paper-clip.sh` at first use and cached.
pub(crate) fn paper_clip(seconds: u32) -> anyhow::Result<PathBuf> {
    let script = workspace().join("scripts").join("make-paper-clip.sh");
    let out = run(
        Command::new("bash").arg(&script).arg(seconds.to_string()),
        "scripts/make-paper-clip.sh (needs ffmpeg)",
    )?;
    Ok(workspace().join(out.trim()))
}
