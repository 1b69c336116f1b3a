//! The broadcaster: reads a WebM source (file, stdin or bytes in memory), cuts it into the init
//! segment and clusters with the core's chunker, paces them in real time by their timestamps, tags
//! each with the stream key the supervisor issued and signs it with the broadcaster's own Ed25519
//! key (whose public half the supervisor bound to the stream), and hands them to the node, which relays them to
//! its children.
//!
//! With `looped`, the source restarts at its end and every timestamp of the next pass is shifted by
//! the previous pass's end, so the stream's time keeps increasing and players see one seamless stream.

pub mod source;
pub mod webcam;

use ownstream_core::frame::SigningKey;
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
    let chunk_ms = config.node.latency.chunk_ms();
    let (node, handle) = Node::new(config.node, &config.name);
    let stopper = handle.clone();
    tokio::spawn(async move {
        stop.await;
        stopper.stop();
    });
    let feeder = handle.clone();
    let source = config.source;
    let source_task = tokio::spawn(async move {
        let Some(signer) = feeder.wait_ready().await else {
            return Ok(());
        };
        source
            .stream(&signer, chunk_ms, |chunk| feeder.push(chunk))
            .await
    });
    let summary = node.run().await;
    source_task.abort();
    match source_task.await {
        Ok(Err(e)) => Err(anyhow::Error::new(e).context("the source failed; the stream was ended")),
        _ => Ok(summary),
    }
}

/// Loads the broadcaster's Ed25519 signing key from `path` (its 32-byte seed in base64, one
/// line), or makes a fresh one and writes it there (readable by the owner only) if the file does
/// not exist. Keeping the key lets the operator recognise the same broadcaster across runs.
pub fn signing_key_file(path: &std::path::Path) -> anyhow::Result<SigningKey> {
    use anyhow::Context as _;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let seed: [u8; 32] = b64
                .decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .with_context(|| {
                    format!(
                        "{} does not hold a signing key (a 32-byte seed in base64)",
                        path.display()
                    )
                })?;
            Ok(SigningKey::from_seed(seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::random(&mut rand::rng());
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            std::io::Write::write_all(
                &mut file,
                format!("{}\n", b64.encode(key.seed())).as_bytes(),
            )
            .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_signing_key_file_is_made_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let made = signing_key_file(&path).unwrap();
        let again = signing_key_file(&path).unwrap();
        assert_eq!(made.verifying_key(), again.verifying_key());
        std::fs::write(&path, "not a key").unwrap();
        let err = signing_key_file(&path).unwrap_err().to_string();
        assert!(err.contains("does not hold a signing key"), "{err}");
    }
}
