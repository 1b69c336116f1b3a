//! `--demo`: the supervisor broadcasts a clip on a loop as the stream `demo`, through an in-process
//! broadcaster that authenticates and streams exactly like the standalone `broadcaster` binary.

use anyhow::Context;
use ownstream_broadcaster::{BroadcastConfig, Source};
use ownstream_core::auth::DEFAULT_KEY_BITS;
use ownstream_core::protocol::ComponentType;
use ownstream_peer::node::NodeConfig;
use std::net::SocketAddr;
use std::path::Path;

/// The bundled sample: 8 s of a 320x240 test pattern with a tone, VP8 + Vorbis, one keyframe-first
/// cluster per second (made by `testdata/make-clips.sh`).
static SAMPLE: &[u8] = include_bytes!("../../testdata/clip-keyframe-clusters.webm");

/// Name of the demo stream.
pub(crate) const STREAM: &str = "demo";

/// The bundled sample, or `clip` if given.
pub(crate) fn source(clip: Option<&Path>) -> anyhow::Result<Source> {
    Ok(match clip {
        Some(path) => {
            anyhow::ensure!(path.is_file(), "{} is not a readable file", path.display());
            Source::File {
                path: path.to_path_buf(),
                looped: true,
            }
        }
        None => Source::Memory {
            data: bytes::Bytes::from_static(SAMPLE),
            looped: true,
        },
    })
}

/// Broadcasts `source` to the supervisor at `addr` until `stop`, going live with `publish_token`
/// (granted for the demo stream only, by this process).
pub(crate) async fn run(
    addr: SocketAddr,
    publish_token: String,
    source: Source,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let url = format!("ws://{addr}/ws");
    let mut node = NodeConfig::generate(&url, ComponentType::Broadcaster, DEFAULT_KEY_BITS)?;
    node.publish_token = Some(publish_token);
    println!(
        "demo: broadcasting the sample clip on a loop as stream `{STREAM}`; stop with Ctrl-C."
    );
    println!(
        "  headless: cargo run --release --bin receiver -- --supervisor {url} --stream {STREAM} --out demo.webm"
    );
    let config = BroadcastConfig {
        node,
        name: STREAM.to_string(),
        source,
    };
    let summary = ownstream_broadcaster::run(config, stop)
        .await
        .context("the demo broadcast failed")?;
    tracing::info!(ending = %summary.ending, "demo broadcast finished");
    Ok(())
}
