//! End to end: bad input and bad settings fail fast, with a message that names the problem, and
//! never with a panic. A source cut short mid-stream still ends the viewers' stream cleanly.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// How long a failing binary may take to give up (debug build, fresh RSA key included).
const FAIL_FAST: Duration = Duration::from_secs(15);

/// Waits for `p` to fail, checks it never panicked, and returns its closing error: one plain
/// line, `error: ` and the chain of causes.
fn failure(p: &mut Proc) -> String {
    let status = p.wait_exit(FAIL_FAST);
    assert!(
        !status.success(),
        "{} should fail, exited with {status}",
        p.name
    );
    closing_error(p)
}

/// The closing `error: ...` line of a process that has exited.
fn closing_error(p: &Proc) -> String {
    let closing = |l: &str| l.starts_with("error: ");
    let stderr = p.stderr_until(closing, Duration::from_secs(5));
    assert!(
        !stderr.contains("panicked"),
        "{} panicked:\n{stderr}",
        p.name
    );
    stderr.lines().find(|l| closing(l)).unwrap().to_string()
}

/// A video packet of a WebM file, as ffprobe lists it.
struct Packet {
    /// Byte offset just past its data.
    end: u64,
    pts: f64,
    keyframe: bool,
}

/// Every video packet of `file`.
fn video_packets(file: &Path) -> Vec<Packet> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=pos,size,pts_time,flags"])
        .args(["-of", "compact=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe is needed by the end-to-end tests");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let field = |key: &str| {
                line.split('|')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .unwrap_or_else(|| panic!("no {key} in ffprobe's `{line}`"))
            };
            Packet {
                end: field("pos").parse::<u64>().unwrap() + field("size").parse::<u64>().unwrap(),
                pts: field("pts_time").parse().unwrap(),
                keyframe: field("flags").starts_with('K'),
            }
        })
        .collect()
}

#[test]
fn truncated_file_fails_the_broadcaster_and_ends_the_viewers_stream_cleanly() {
    let sup = Supervisor::start(&[]);
    let dir = out_dir("bad_input_truncated");
    let whole = std::fs::read(clip("clip-keyframe-clusters.webm")).unwrap();
    let cut = whole.len() * 6 / 10;
    let truncated = dir.join("truncated.webm");
    std::fs::write(&truncated, &whole[..cut]).unwrap();

    let mut receivers: Vec<Proc> = (0..2)
        .map(|i| receiver(&sup, &dir, &format!("r{i}"), &[]))
        .collect();
    let mut b = broadcaster(&sup, &truncated, &["--wait-viewers", "2"]);
    let status = b.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "the broadcaster reports the truncation");
    assert_eq!(
        closing_error(&b),
        format!(
            "error: the source failed; the stream was ended: invalid WebM from {}: \
             truncated Cluster at EOF",
            truncated.display()
        )
    );
    for r in &mut receivers {
        let status = r.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "{} exited with {status}", r.name);
    }

    // Every cluster before the cut is whole; the cut one starts on a keyframe, and its blocks that
    // lie entirely before the cut are delivered too (a pipe that dies mid-cluster keeps them).
    let packets = video_packets(&clip("clip-keyframe-clusters.webm"));
    let before_cut = |p: &&Packet| p.end <= cut as u64;
    let cut_cluster_pts = packets
        .iter()
        .filter(|p| p.keyframe)
        .filter(before_cut)
        .map(|p| p.pts)
        .fold(0.0, f64::max);
    let complete_clusters = packets.iter().filter(|p| p.pts < cut_cluster_pts).count() as u64;
    let whole_blocks = packets.iter().filter(before_cut).count() as u64;
    assert!(complete_clusters >= 120, "the cut is past 4 s of media");
    assert_eq!(video_frames(&truncated), whole_blocks);
    for name in ["r0", "r1"] {
        let st = stats(&dir, name);
        assert_eq!(st["ending"], "stream ended: end of stream", "{name}: {st}");
        assert_eq!(st["chunks_rejected"], 0, "{name}: {st}");
        let out = dir.join(format!("{name}.webm"));
        assert_eq!(decode_errors(&out), "", "{name}'s output decodes cleanly");
        assert_eq!(
            video_frames(&out),
            whole_blocks,
            "{name} holds every complete frame before the cut"
        );
    }
}

#[test]
fn non_webm_file_is_refused_before_the_stream_is_announced() {
    let sup = Supervisor::start(&[]);
    let dir = out_dir("bad_input_not_webm");
    let text = dir.join("notes.txt");
    std::fs::write(&text, "this is a text file, not a video\n").unwrap();
    let mut b = broadcaster(&sup, &text, &[]);
    assert_eq!(
        failure(&mut b),
        format!(
            "error: invalid WebM from {}: not a WebM file: EBML header missing",
            text.display()
        )
    );
    let stderr = b.stderr_until(|l| l.starts_with("error: "), Duration::from_secs(5));
    assert!(
        !stderr.contains("registering"),
        "refused before registering:\n{stderr}"
    );
}

#[test]
fn missing_file_is_refused_with_the_reason() {
    let sup = Supervisor::start(&[]);
    let mut b = broadcaster(&sup, Path::new("/nonexistent"), &[]);
    assert_eq!(
        failure(&mut b),
        "error: cannot read /nonexistent: No such file or directory (os error 2)"
    );
}

#[test]
fn receiver_without_a_supervisor_says_it_cannot_reach_it() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut cmd = Command::new(bin("receiver"));
    cmd.args(["--supervisor", &url, "--stream", "s"]);
    let mut r = Proc::spawn("receiver", &mut cmd);
    let error = failure(&mut r);
    assert!(
        error.starts_with(&format!("error: cannot reach the supervisor at {url}: ")),
        "{error}"
    );
}

#[test]
fn receiver_refuses_a_supervisor_whose_key_does_not_match_its_pin() {
    let sup = Supervisor::start(&[]);
    let dir = out_dir("bad_input_wrong_pin");
    let pin = format!("SHA256:{}", "0".repeat(64));
    let mut r = receiver(&sup, &dir, "r0", &["--supervisor-fingerprint", &pin]);
    let error = failure(&mut r);
    assert!(
        error.starts_with("error: ")
            && error.contains("supervisor key fingerprint SHA256:")
            && error.ends_with(&format!("does not match the pinned {pin}")),
        "{error}"
    );
    assert!(sup.tree("s").is_empty(), "the receiver never joined");
}

/// A `broadcaster --webcam` process (no supervisor is needed: it must fail before connecting).
fn webcam(args: &[&str], path: Option<&str>) -> Proc {
    let mut cmd = Command::new(bin("broadcaster"));
    cmd.args(["--name", "cam", "--webcam"]).args(args);
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    Proc::spawn("broadcaster", &mut cmd)
}

#[test]
fn webcam_without_a_camera_names_the_fix() {
    let mut b = webcam(&["/dev/no-such-camera"], None);
    assert_eq!(
        failure(&mut b),
        "error: no camera at /dev/no-such-camera: connect one, or name another device with \
         `--webcam /dev/videoN` (`ls /dev/video*` lists them)"
    );
    let mut b = webcam(&["/etc/hostname"], None);
    assert!(failure(&mut b).contains("/etc/hostname is not a camera device"));
}

#[test]
fn webcam_without_ffmpeg_names_the_fix() {
    let mut b = webcam(&[], Some("/nonexistent"));
    assert_eq!(
        failure(&mut b),
        "error: --webcam needs ffmpeg, which was not found on the PATH: install it \
         (Debian/Ubuntu: `sudo apt install ffmpeg`)"
    );
}
