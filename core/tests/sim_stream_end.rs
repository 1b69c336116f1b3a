//! Whole system on simulated time: the broadcaster's source ends. The end chunk reaches every
//! viewer through the tree, each lets its children drain and ends with the stream, the
//! broadcaster last; the supervisor forgets the stream.

use ownstream_core::node::Ending;
use ownstream_sim::{Sim, SimConfig, STREAM};

#[test]
fn the_end_of_the_stream_reaches_every_viewer_and_everyone_ends() {
    let mut sim = Sim::new(SimConfig::default());
    let b = sim.add_broadcaster(0);
    sim.run_for(100);
    let viewers: Vec<_> = (0..20).map(|_| sim.add_receiver()).collect();
    assert!(sim.run_while_not(30_000, Sim::all_playing));
    sim.run_for(10_000);
    sim.end_stream();
    let end_seq = sim.host(b).delivered.last().unwrap().seq;
    sim.run_for(15_000);
    for &v in &viewers {
        let h = sim.host(v);
        assert_eq!(
            h.delivered.last().map(|d| d.seq),
            Some(end_seq),
            "{v:?} took the end chunk"
        );
        assert!(
            matches!(&h.ended, Some(Ending::StreamEnded(_))),
            "{v:?} ended with the stream: {:?}",
            h.ended
        );
        assert_eq!(h.node().stats().chunks_skipped, 0);
    }
    assert!(matches!(&sim.host(b).ended, Some(Ending::StreamEnded(_))));
    assert!(sim.registry().tree(STREAM).is_none(), "the stream is gone");
}
