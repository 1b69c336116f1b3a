//! Whole system on simulated time: 200 viewers join within one second. Every one of them plays,
//! the tree keeps its fanout and depth bounds, and nobody misses a chunk. (The model leaves out
//! CPU: on a real 2-core machine the same storm is slowed by the handshakes and the edges' set-up,
//! see `experiments scale`.)

use ownstream_sim::{NetConfig, Sim, SimConfig, STREAM};

#[test]
fn a_join_storm_of_200_settles_with_everyone_playing() {
    let mut sim = Sim::new(SimConfig {
        seed: 3,
        verify_fraction: 0.1,
        ..SimConfig::default()
    });
    sim.add_broadcaster(0);
    sim.run_for(2000);
    let start = sim.now();
    let mut viewers = Vec::new();
    for _ in 0..200 {
        viewers.push(sim.add_receiver());
        sim.run_for(5);
    }
    assert!(
        sim.run_while_not(60_000, Sim::all_playing),
        "{} of 200 playing",
        viewers
            .iter()
            .filter(|v| sim.host(**v).node().stats().playing)
            .count()
    );
    println!(
        "200 viewers playing {} ms after the first joined",
        sim.now() - start
    );
    sim.run_for(10_000);
    assert!(sim.tree_problems().is_empty(), "{:?}", sim.tree_problems());
    let tree = sim.registry().tree(STREAM).unwrap();
    assert_eq!(tree.nodes.len(), 201);
    // d_opt(200) = 7 in a binary tree under the broadcaster; the bound is 2 * d_opt + 1.
    let deepest = tree.nodes.iter().map(|n| n.depth).max().unwrap();
    assert!(deepest <= 15, "depth {deepest}");
    for &v in &viewers {
        let s = sim.host(v).node().stats();
        assert_eq!((s.chunks_skipped, s.stalls), (0, 0), "{v:?}: {s:?}");
    }
    assert!(sim.losses_beyond_buffers(&viewers).is_empty());
}

/// `n` viewers arrive within 100 ms; runs until all play (checked every 500 ms) or `limit_ms`.
/// Returns the viewers and how long they took, or `None`.
fn flash_crowd(
    sim: &mut Sim,
    n: usize,
    limit_ms: u64,
) -> (Vec<ownstream_sim::HostId>, Option<u64>) {
    sim.add_broadcaster(0);
    sim.run_for(2000);
    let start = sim.now();
    let viewers: Vec<_> = (0..n)
        .map(|i| {
            if i % 10 == 0 {
                sim.run_for(1);
            }
            sim.add_receiver()
        })
        .collect();
    while sim.now() - start < limit_ms {
        sim.run_for(500);
        if sim.all_playing() {
            return (viewers, Some(sim.now() - start));
        }
    }
    (viewers, None)
}

/// Each edge set-up slows every other one under way by 25 ms (the CPU the hosts share): 600 at
/// once would each take ~15 s, past the 8 s a child waits for its parent's edge, which is what
/// happened on a real 2-core machine. Paced joins keep the set-ups under way few and fast.
#[test]
fn a_flash_crowd_of_1000_on_one_small_machine_all_play_without_moves() {
    let mut sim = Sim::new(SimConfig {
        seed: 5,
        verify_fraction: 0.0,
        net: NetConfig {
            edge_setup_load_ms: 25,
            ..NetConfig::default()
        },
        ..SimConfig::default()
    });
    let (viewers, took) = flash_crowd(&mut sim, 1000, 120_000);
    let playing = viewers
        .iter()
        .filter(|v| sim.host(**v).node().stats().playing)
        .count();
    let took = took.unwrap_or_else(|| panic!("{playing} of 1000 playing after 120 s"));
    println!("1000 viewers at once: all playing after {took} ms");
    assert!(sim.tree_problems().is_empty(), "{:?}", sim.tree_problems());
    assert_eq!(sim.registry().tree(STREAM).unwrap().nodes.len(), 1001);
    // Nobody gave up on a parent: the set-ups stayed fast, so nothing was moved.
    assert_eq!(sim.registry().counters().repairs, 0);
    let (setups, _, queued) = sim.registry().join_pacing_load();
    assert_eq!((setups, queued), (0, 0));
    // Standby edges are set up after the joins, in the slots they leave.
    println!(
        "standby edges still being set up: {}",
        sim.registry().standby_setups()
    );
}

/// Every edge takes 9-12 s to open, longer than a child first waits for it (8 s): each child
/// gives up once, is moved, and waits twice as long for the next parent, which then opens. Without
/// the doubling the children would be moved again and again and never play.
#[test]
fn edges_slower_than_the_open_limit_still_open_after_one_move() {
    let mut sim = Sim::new(SimConfig {
        seed: 6,
        verify_fraction: 0.0,
        net: NetConfig {
            edge_setup_ms: (9_000, 12_000),
            ..NetConfig::default()
        },
        ..SimConfig::default()
    });
    let (viewers, took) = flash_crowd(&mut sim, 30, 120_000);
    let playing = viewers
        .iter()
        .filter(|v| sim.host(**v).node().stats().playing)
        .count();
    let took = took.unwrap_or_else(|| panic!("{playing} of 30 playing after 120 s"));
    println!("30 viewers with 9-12 s edges: all playing after {took} ms");
    // A viewer that switched to its standby (the grandparent, one over its fanout) is moved off
    // make-before-break, over an edge that also takes 9-12 s: let that settle before judging
    // the tree.
    sim.run_for(30_000);
    assert!(sim.tree_problems().is_empty(), "{:?}", sim.tree_problems());
    for &v in &viewers {
        let repairs = sim.host(v).node().stats().repairs;
        assert!(repairs <= 3, "{v:?} moved {repairs} times");
    }
}
