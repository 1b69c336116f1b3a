//! The supervisor's cost of planning a stream's standby parents: one removal on a copy of the
//! tree per parent, `O(n^2)`, made again after every change of the tree (a join, a leave, a
//! move). A flash crowd of `n` viewers changes the tree at least `n` times.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ownstream_core::ids::PeerId;
use ownstream_core::topology::{Topology, TopologyKind};
use std::hint::black_box;

fn tree_of(n: u32) -> Topology {
    let mut t = Topology::new(
        TopologyKind::Tree { fanout: 2 },
        PeerId::from_bytes([0; 16]),
    );
    for i in 1..=n {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        t.join(PeerId::from_bytes(id))
            .expect("a tree always has room");
    }
    t
}

fn standby_plan(c: &mut Criterion) {
    let mut group = c.benchmark_group("standby_plan");
    group.sample_size(10);
    for n in [80, 300, 1000] {
        let t = tree_of(n);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| black_box(t.standby_plan()))
        });
    }
    group.finish();
}

criterion_group!(benches, standby_plan);
criterion_main!(benches);
