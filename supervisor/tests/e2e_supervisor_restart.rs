//! End to end over real WebRTC on loopback: playback survives the supervisor. Mid-stream the
//! supervisor is killed (`kill -9`) and started again 3 s later on the same port with the same
//! data directory (so the same key: the peers pin its fingerprint). No peer exits, media keeps
//! flowing meanwhile, every peer re-announces itself and the restarted supervisor serves the same
//! tree; every output holds every frame of the source. Then the same with a relay crashing while
//! no supervisor runs: its children are placed again once one is back, and lose nothing.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A 20 s clip like `clip-keyframe-clusters.webm` (one keyframe-first cluster a second), long
/// enough for a kill, 3 s without a supervisor and the rebuild to happen mid-stream.
fn long_clip(dir: &Path) -> PathBuf {
    let path = dir.join("source.webm");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x240:rate=30:duration=20")
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=20",
        ])
        .args([
            "-c:v",
            "libvpx",
            "-g",
            "30",
            "-keyint_min",
            "30",
            "-b:v",
            "200k",
        ])
        .args([
            "-c:a",
            "libvorbis",
            "-ar",
            "48000",
            "-b:a",
            "64k",
            "-f",
            "webm",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg is needed by the end-to-end tests");
    assert!(status.success(), "ffmpeg could not make the clip");
    path
}

fn free_listen() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// `viewer -> parent` of the stream's tree.
fn edges(sup: &Supervisor) -> BTreeMap<String, Option<String>> {
    sup.tree("s")
        .into_iter()
        .map(|(id, p, _)| (id, p))
        .collect()
}

fn restart_scenario(test: &str, crash_relay: bool) {
    let dir = out_dir(test);
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let source = long_clip(&dir);
    let source_frames = video_frames(&source);
    let listen = free_listen();
    let mut first = Supervisor::start_on(&listen, &["--data-dir", data_arg]);
    let pin = ["--supervisor-fingerprint", first.fingerprint.as_str()];
    let mut receivers: Vec<Proc> = (0..7)
        .map(|i| receiver(&first, &dir, &format!("r{i}"), &pin))
        .collect();
    let mut b = broadcaster(&first, &source, &["--wait-viewers", "7", pin[0], pin[1]]);
    let ids: Vec<String> = receivers.iter().map(Proc::peer_id).collect();
    wait_for("seven viewers in the tree", Duration::from_secs(60), || {
        (first.tree("s").len() == 8).then_some(())
    });
    wait_for(
        "every viewer to hold 3 s of media",
        Duration::from_secs(60),
        || {
            let st = live_stats(&first, "s");
            let playing = st
                .iter()
                .filter(|(id, s)| {
                    ids.contains(id) && s["last_seq"].as_u64().is_some_and(|l| l >= 3)
                })
                .count();
            (playing == 7).then_some(())
        },
    );
    let before = edges(&first);
    let victim = crash_relay.then(|| {
        let tree = first.tree("s");
        let id = tree.iter().find(|n| n.2 == 1).map(|n| n.0.clone()).unwrap();
        ids.iter().position(|i| *i == id).unwrap()
    });
    first.proc.crash();
    if let Some(v) = victim {
        std::thread::sleep(Duration::from_millis(500));
        receivers[v].crash();
    }
    std::thread::sleep(Duration::from_secs(3));
    for (i, r) in receivers.iter_mut().enumerate() {
        if Some(i) != victim {
            assert!(r.child.try_wait().unwrap().is_none(), "{} exited", r.name);
        }
    }
    assert!(
        b.child.try_wait().unwrap().is_none(),
        "the broadcaster exited"
    );
    let second = Supervisor::start_on(&listen, &["--data-dir", data_arg]);
    let restarted = Instant::now();
    assert_eq!(second.fingerprint, first.fingerprint, "the key survived");
    match victim {
        None => {
            wait_for("the same tree again", Duration::from_secs(30), || {
                (edges(&second) == before).then_some(())
            });
            eprintln!(
                "tree rebuilt {} ms after the restart",
                restarted.elapsed().as_millis()
            );
        }
        Some(v) => {
            let gone = &ids[v];
            wait_for("every survivor placed", Duration::from_secs(30), || {
                let now = edges(&second);
                let kept = before
                    .iter()
                    .filter(|(id, p)| *id != gone && p.as_ref() != Some(gone))
                    .all(|(id, p)| now.get(id) == Some(p));
                (now.len() == 7 && !now.contains_key(gone) && kept).then_some(())
            });
            eprintln!(
                "survivors placed {} ms after the restart",
                restarted.elapsed().as_millis()
            );
        }
    }
    for (i, r) in receivers.iter_mut().enumerate() {
        if Some(i) != victim {
            let status = r.wait_exit(Duration::from_secs(90));
            assert!(status.success(), "{} exited with {status}", r.name);
        }
    }
    let status = b.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "broadcaster exited with {status}");
    // The crashed relay's subtree waits for a supervisor to place its orphans: it may stall.
    let below_victim = |id: &String| {
        let Some(v) = victim else { return false };
        let mut at = before.get(id).cloned().flatten();
        while let Some(p) = at {
            if p == ids[v] {
                return true;
            }
            at = before.get(&p).cloned().flatten();
        }
        false
    };
    for (i, id) in ids.iter().enumerate() {
        if Some(i) == victim {
            continue;
        }
        let name = format!("r{i}");
        let st = stats(&dir, &name);
        eprintln!("{name}: stalls {} repairs {}", st["stalls"], st["repairs"]);
        assert_eq!(st["chunks_rejected"], 0, "{name}: {st}");
        assert_eq!(st["chunks_skipped"], 0, "{name}: {st}");
        if !below_victim(id) {
            assert_eq!(st["stalls"], 0, "{name} never stalled: {st}");
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

#[test]
fn peers_outlive_a_supervisor_restart_and_get_the_same_tree_back() {
    restart_scenario("supervisor_restart", false);
}

#[test]
fn a_relay_that_crashes_while_no_supervisor_runs_is_repaired_once_one_is_back() {
    restart_scenario("supervisor_restart_relay_crash", true);
}

/// The measurement behind the closing numbers (not a check: `--ignored`, run by
/// `scripts/measure-supervisor-restart.sh`; CI runs 2 rounds of it with `OWNSTREAM_RESTART_ROUNDS=2`
/// so the measurement keeps working): a looping broadcast to 7 receivers; 10 times, the
/// supervisor is killed, started again 3 s later, and the time from its start to the same tree
/// served again is taken. Prints each time, the median and the receivers' stalls.
#[test]
#[ignore = "a measurement; run scripts/measure-supervisor-restart.sh"]
fn measure_tree_rebuild_time_over_ten_restarts() {
    let dir = out_dir("measure_supervisor_restart");
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let source = clip("clip-keyframe-clusters.webm");
    let listen = free_listen();
    let mut sup = Supervisor::start_on(&listen, &["--data-dir", data_arg]);
    let mut receivers: Vec<Proc> = (0..7)
        .map(|i| receiver(&sup, &dir, &format!("r{i}"), &[]))
        .collect();
    let mut b = broadcaster(&sup, &source, &["--loop", "--wait-viewers", "7"]);
    wait_for("seven viewers playing", Duration::from_secs(60), || {
        let st = live_stats(&sup, "s");
        let playing = st.iter().filter(|(_, s)| s["playing"] == true).count();
        (playing == 7).then_some(())
    });
    let mut times = Vec::new();
    let rounds: usize = std::env::var("OWNSTREAM_RESTART_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for round in 0..rounds {
        std::thread::sleep(Duration::from_secs(2));
        let before = edges(&sup);
        assert_eq!(before.len(), 8, "round {round}: {before:?}");
        sup.proc.crash();
        std::thread::sleep(Duration::from_secs(3));
        sup = Supervisor::start_on(&listen, &["--data-dir", data_arg]);
        let restarted = Instant::now();
        wait_for("the same tree again", Duration::from_secs(30), || {
            (edges(&sup) == before).then_some(())
        });
        let ms = restarted.elapsed().as_millis();
        eprintln!("round {round}: tree rebuilt {ms} ms after the restart");
        times.push(ms);
    }
    std::thread::sleep(Duration::from_secs(2));
    let stalls: Vec<u64> = live_stats(&sup, "s")
        .iter()
        .map(|(_, s)| s["stalls"].as_u64().unwrap_or(0))
        .collect();
    times.sort_unstable();
    eprintln!(
        "MEASURED restart -> same tree: median {} ms (sorted {times:?}); stalls per receiver {stalls:?}",
        (times[(times.len() - 1) / 2] + times[times.len() / 2]) / 2
    );
    for r in receivers.iter_mut() {
        assert!(r.child.try_wait().unwrap().is_none(), "{} exited", r.name);
        r.crash();
    }
    b.crash();
}
