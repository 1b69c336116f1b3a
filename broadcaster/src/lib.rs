//! The broadcaster: reads a WebM source (file, stdin or bytes in memory), cuts it into the init
//! segment and clusters with the core's chunker, paces them in real time by their timestamps, signs
//! each with the stream key the supervisor issued, and hands them to the node, which relays them to
//! its children.
//!
//! With `looped`, the source restarts at its end and every timestamp of the next pass is shifted by
//! the previous pass's end, so the stream's time keeps increasing and players see one seamless stream.

pub mod source;
pub mod webcam;

use ownstream_peer::node::{Node, NodeConfig, Summary};
pub use source::{Source, SourceError};

/// What to broadcast and under which name.
pub struct BroadcastConfig {
    /// Peer settings (identity, supervisor URL, relay, `wait_viewers`).
    pub node: NodeConfig,
    /// Stream name to register.
    pub name: String,
    /// Where the WebM comes from.
    pub source: Source,
}

/// Runs a broadcast to its end: the source's end (without looping), a stop request, or the loss of
/// the supervisor. A source error ends the stream cleanly for the viewers and is returned.
pub async fn run(
    config: BroadcastConfig,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Summary> {
    let (node, handle) = Node::new(config.node, &config.name);
    let stopper = handle.clone();
    tokio::spawn(async move {
        stop.await;
        stopper.stop();
    });
    let feeder = handle.clone();
    let source = config.source;
    let source_task = tokio::spawn(async move {
        let Some(key) = feeder.wait_ready().await else {
            return Ok(());
        };
        source.stream(&key, |chunk| feeder.push(chunk)).await
    });
    let summary = node.run().await;
    source_task.abort();
    match source_task.await {
        Ok(Err(e)) => Err(anyhow::Error::new(e).context("the source failed; the stream was ended")),
        _ => Ok(summary),
    }
}
