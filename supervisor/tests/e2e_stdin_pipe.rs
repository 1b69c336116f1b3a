//! End to end over real WebRTC on loopback: `broadcaster --stdin` fed by a live pipe (another
//! process's stdout) reaches a tree of three receivers whole, whether the pipe's clusters start on
//! keyframes or not, and when it is a browser's MediaRecorder output (unknown-size clusters).

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Three receivers and a broadcaster reading `source`'s stdout; holds the media until the three are
/// connected, so every receiver gets the stream from its first byte. Returns each receiver's
/// decoded video frame count, after checking that every process exited cleanly and every output
/// decodes without error.
fn broadcast_pipe(test: &str, source: &mut Proc) -> Vec<u64> {
    let sup = Supervisor::start(&[]);
    let dir = out_dir(test);
    let mut receivers: Vec<Proc> = (0..3)
        .map(|i| receiver(&sup, &dir, &format!("r{i}"), &[]))
        .collect();
    let pipe = source
        .child
        .stdout
        .take()
        .expect("the source's stdout is piped");
    let mut b = broadcaster_stdin(&sup, Stdio::from(pipe), &["--wait-viewers", "3"]);
    for p in receivers.iter_mut().chain(std::iter::once(&mut b)) {
        let status = p.wait_exit(Duration::from_secs(90));
        assert!(status.success(), "{} exited with {status}", p.name);
    }
    let status = source.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{} exited with {status}", source.name);
    (0..3)
        .map(|i| {
            let name = format!("r{i}");
            let st = stats(&dir, &name);
            assert_eq!(st["chunks_rejected"], 0, "{name}: {st}");
            let out = dir.join(format!("{name}.webm"));
            assert_eq!(decode_errors(&out), "", "{name}'s output decodes cleanly");
            video_frames(&out)
        })
        .collect()
}

#[test]
fn live_ffmpeg_pipe_reaches_every_receiver_whole() {
    // 6 s at 30 fps, paced in real time (-re): a live source. The broadcaster reads nothing until
    // its three viewers are connected, so ffmpeg blocks on the full pipe meanwhile; nothing is
    // dropped, and every receiver gets every frame ffmpeg encoded.
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg
        .args(["-v", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "6", "-c:v", "libvpx", "-g", "30", "-b:v", "300k"])
        .args(["-c:a", "libopus", "-f", "webm", "-"])
        .stdout(Stdio::piped());
    let mut ffmpeg = Proc::spawn("ffmpeg", &mut ffmpeg);
    let frames = broadcast_pipe("stdin_pipe_ffmpeg", &mut ffmpeg);
    assert_eq!(frames, vec![180; 3], "6 s x 30 fps in every output");
}

#[test]
fn pipe_whose_clusters_do_not_start_on_keyframes_reaches_every_receiver_whole() {
    // clip-pipe.webm is what ffmpeg writes to a pipe: an unknown-size Segment and ~3 clusters per
    // GOP, the keyframe usually mid-cluster. `cat` makes it a real pipe.
    let source = clip("clip-pipe.webm");
    let source_frames = video_frames(&source);
    assert_eq!(source_frames, 240, "8 s x 30 fps");
    let mut cat = Command::new("cat");
    cat.arg(&source).stdout(Stdio::piped());
    let mut cat = Proc::spawn("cat", &mut cat);
    let frames = broadcast_pipe("stdin_pipe_mid_gop_clusters", &mut cat);
    assert_eq!(
        frames,
        vec![source_frames; 3],
        "every frame in every output"
    );
}

#[test]
fn media_recorder_output_with_unknown_size_clusters_reaches_every_receiver_whole() {
    // A real recording of Chromium's MediaRecorder (testdata/record-mediarecorder.mjs): an
    // unknown-size Segment and Clusters, Opus as track 1, VP8 as track 2, no Cues.
    let source = clip("clip-mediarecorder.webm");
    let source_frames = video_frames(&source);
    let mut cat = Command::new("cat");
    cat.arg(&source).stdout(Stdio::piped());
    let mut cat = Proc::spawn("cat", &mut cat);
    let frames = broadcast_pipe("stdin_pipe_media_recorder", &mut cat);
    assert_eq!(
        frames,
        vec![source_frames; 3],
        "every frame in every output"
    );
}

#[test]
fn webcam_encoder_settings_give_a_keyframe_every_second() {
    // `--webcam` captures a camera with these encoder settings; no camera here, so the same
    // settings encode a test pattern and a tone, live (-re), into the same kind of pipe.
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg
        .args(["-v", "error", "-nostdin", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30:duration=6",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=6",
        ])
        .args(ownstream_broadcaster::webcam::output_args("500k", true))
        .stdout(Stdio::piped());
    let mut ffmpeg = Proc::spawn("ffmpeg", &mut ffmpeg);
    let frames = broadcast_pipe("stdin_pipe_webcam_settings", &mut ffmpeg);
    assert_eq!(frames, vec![180; 3], "6 s x 30 fps in every output");
    let out = repo_root().join("target/e2e/stdin_pipe_webcam_settings/r0.webm");
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-skip_frame",
            "nokey",
        ])
        .args(["-show_entries", "frame=pts_time", "-of", "csv=p=0"])
        .arg(&out)
        .output()
        .unwrap();
    let keys: Vec<f64> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(keys.len(), 6, "one keyframe per second: {keys:?}");
    for (i, t) in keys.iter().enumerate() {
        assert!((t - i as f64).abs() < 0.05, "keyframe {i} at {t} s");
    }
}
