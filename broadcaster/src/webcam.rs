//! `--webcam`: capture a Linux camera (V4L2) and, when present, a microphone (PulseAudio, else
//! ALSA) with ffmpeg into VP8/Opus WebM on a pipe, which the broadcaster then streams like any
//! other live source.
//!
//! The encoder settings make late joins fast: a fixed one-second keyframe interval, and clusters
//! cut at every keyframe (`-cluster_time_limit` just above a GOP), so every chunk starts on a
//! keyframe and a new viewer starts within a second. Realtime VP8 (`-deadline realtime`) keeps the
//! capture live on a modest CPU.
//!
//! What can be checked before the stream is announced is checked first ([`Webcam::check`]): ffmpeg
//! on the PATH, and a camera device at the given path, each with an error that names the fix.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::{Child, ChildStdout, Command};

/// Default camera device.
pub const DEFAULT_DEVICE: &str = "/dev/video0";

/// Where the microphone comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AudioInput {
    /// PulseAudio if it answers, else ALSA if the machine has a sound card, else none.
    Auto,
    /// PulseAudio's default source.
    Pulse,
    /// ALSA's default capture device.
    Alsa,
    /// Video only.
    None,
}

/// A camera capture through ffmpeg.
#[derive(Clone, Debug)]
pub struct Webcam {
    /// The V4L2 device, e.g. `/dev/video0`.
    pub device: PathBuf,
    /// Microphone source.
    pub audio: AudioInput,
    /// Capture size `WIDTHxHEIGHT`, or the camera's default.
    pub size: Option<String>,
    /// Video bitrate for the VP8 encoder, e.g. `1500k`.
    pub bitrate: String,
}

/// Why the capture cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebcamError {
    /// ffmpeg is not on the PATH.
    #[error("--webcam needs ffmpeg, which was not found on the PATH: install it (Debian/Ubuntu: `sudo apt install ffmpeg`)")]
    NoFfmpeg,
    /// No device at the path.
    #[error("no camera at {0}: connect one, or name another device with `--webcam /dev/videoN` (`ls /dev/video*` lists them)")]
    NoCamera(PathBuf),
    /// Something at the path that is not a camera device.
    #[error(
        "{0} is not a camera device (a V4L2 character device such as /dev/video0 was expected)"
    )]
    NotADevice(PathBuf),
    /// ffmpeg could not be started.
    #[error("cannot start ffmpeg")]
    Spawn(#[source] std::io::Error),
}

impl Webcam {
    /// Checks that ffmpeg is installed and the device exists and is a character device.
    pub fn check(&self) -> Result<(), WebcamError> {
        if !on_path("ffmpeg") {
            return Err(WebcamError::NoFfmpeg);
        }
        self.check_device()
    }

    fn check_device(&self) -> Result<(), WebcamError> {
        let meta = std::fs::metadata(&self.device)
            .map_err(|_| WebcamError::NoCamera(self.device.clone()))?;
        if !is_char_device(&meta) {
            return Err(WebcamError::NotADevice(self.device.clone()));
        }
        Ok(())
    }

    /// Starts ffmpeg; its stdout carries the WebM. The process is killed when the returned
    /// [`Capture`] is dropped, so it never outlives the broadcast.
    pub fn spawn(&self) -> Result<Capture, WebcamError> {
        self.check()?;
        let audio = match self.audio {
            AudioInput::Auto => detect_audio(),
            other => other,
        };
        let mut child = Command::new("ffmpeg")
            .args(self.ffmpeg_args(audio))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // ffmpeg runs with `-loglevel error`: whatever it prints is a reason the user needs.
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(WebcamError::Spawn)?;
        let stdout = child.stdout.take().ok_or_else(|| {
            WebcamError::Spawn(std::io::Error::other("ffmpeg's stdout was not piped"))
        })?;
        tracing::info!(device = %self.device.display(), ?audio, "capturing the camera with ffmpeg");
        Ok(Capture {
            _child: child,
            stdout,
        })
    }

    /// The ffmpeg command line (without the program name).
    pub fn ffmpeg_args(&self, audio: AudioInput) -> Vec<String> {
        let mut args: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin"]
            .map(String::from)
            .to_vec();
        args.extend(["-f", "v4l2", "-framerate", "30"].map(String::from));
        if let Some(size) = &self.size {
            args.extend(["-video_size".into(), size.clone()]);
        }
        args.extend(["-i".into(), self.device.display().to_string()]);
        match audio {
            AudioInput::Pulse => args.extend(["-f", "pulse", "-i", "default"].map(String::from)),
            AudioInput::Alsa => args.extend(["-f", "alsa", "-i", "default"].map(String::from)),
            AudioInput::Auto | AudioInput::None => {}
        }
        let with_audio = !matches!(audio, AudioInput::None | AudioInput::Auto);
        args.extend(output_args(&self.bitrate, with_audio));
        args
    }
}

/// The encoder and muxer half of the capture command (after the inputs), for a 30 fps source:
/// realtime VP8 with a keyframe every 30 frames, Opus when there is audio, and WebM clusters cut
/// at every keyframe, written to stdout. The README's camera pipelines use the same settings.
pub fn output_args(bitrate: &str, audio: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-g",
        "30",
        "-keyint_min",
        "30",
        "-auto-alt-ref",
        "0",
        "-b:v",
    ]
    .map(String::from)
    .to_vec();
    args.push(bitrate.to_string());
    if audio {
        args.extend(["-c:a", "libopus", "-b:a", "96k", "-ar", "48000"].map(String::from));
    }
    args.extend(
        [
            "-cluster_size_limit",
            "2M",
            "-cluster_time_limit",
            "1100",
            "-f",
            "webm",
            "-",
        ]
        .map(String::from),
    );
    args
}

/// A running capture: ffmpeg and the pipe it writes WebM to; reading it reads the WebM.
pub struct Capture {
    _child: Child,
    stdout: ChildStdout,
}

impl tokio::io::AsyncRead for Capture {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(program)))
    })
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

fn is_char_device(meta: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        meta.file_type().is_char_device()
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// PulseAudio when its server answers, else ALSA when the kernel lists a sound card, else none.
fn detect_audio() -> AudioInput {
    let pulse = on_path("pactl")
        && std::process::Command::new("pactl")
            .arg("info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if pulse {
        return AudioInput::Pulse;
    }
    let cards = std::fs::read_to_string("/proc/asound/cards").unwrap_or_default();
    if cards
        .lines()
        .any(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
    {
        return AudioInput::Alsa;
    }
    tracing::info!("no microphone found (no PulseAudio server, no ALSA card): video only");
    AudioInput::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(device: &str) -> Webcam {
        Webcam {
            device: device.into(),
            audio: AudioInput::None,
            size: Some("1280x720".into()),
            bitrate: "1500k".into(),
        }
    }

    #[test]
    fn command_line_asks_for_keyframe_first_clusters() {
        let args = cam("/dev/video3").ffmpeg_args(AudioInput::Pulse).join(" ");
        assert!(args.contains("-f v4l2 -framerate 30 -video_size 1280x720 -i /dev/video3"));
        assert!(args.contains("-f pulse -i default"));
        assert!(args.contains("-g 30 -keyint_min 30"));
        assert!(args.contains("-c:a libopus"));
        assert!(args.ends_with("-cluster_size_limit 2M -cluster_time_limit 1100 -f webm -"));
        let silent = cam("/dev/video3").ffmpeg_args(AudioInput::None).join(" ");
        assert!(!silent.contains("libopus") && !silent.contains("pulse"));
    }

    #[test]
    fn a_missing_or_wrong_device_is_refused_with_the_fix() {
        let e = cam("/dev/no-such-camera").check_device().unwrap_err();
        assert!(
            e.to_string().contains("no camera at /dev/no-such-camera"),
            "{e}"
        );
        let e = cam("/etc/hostname").check_device().unwrap_err();
        assert!(e.to_string().contains("is not a camera device"), "{e}");
    }
}
