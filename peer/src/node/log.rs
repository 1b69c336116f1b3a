//! What the node's events look like in the log: the state machine has already acted on them.

use ownstream_core::node::NodeEvent;
use ownstream_core::relay::RelayEvent;

/// Logs one event at the level it deserves.
pub(super) fn event(ev: &NodeEvent) {
    match ev {
        NodeEvent::Connected => tracing::debug!("authenticated with the supervisor"),
        NodeEvent::ConnectFailed {
            reason,
            retry_at_ms,
        } => tracing::warn!(%reason, retry_at_ms, "cannot connect to the supervisor; will retry"),
        NodeEvent::SupervisorLost { reason } => {
            tracing::warn!(%reason, "lost the supervisor; reconnecting")
        }
        NodeEvent::Waiting { queued: None } => {
            tracing::info!("stream not live yet; waiting for it");
        }
        NodeEvent::Waiting {
            queued: Some(place),
        } => tracing::info!("many viewers joining at once: number {place} in line"),
        NodeEvent::Redirected { url } => {
            tracing::info!(%url, "another supervisor serves the stream; going there")
        }
        NodeEvent::Joined { parent, depth } => tracing::info!(%parent, depth, "joined"),
        NodeEvent::Reattached { parent, depth } => {
            tracing::info!(%parent, depth, "re-attached to a new parent")
        }
        NodeEvent::Resumed { parent, depth } => {
            tracing::info!(?parent, depth, "re-announced; kept in the rebuilt tree")
        }
        NodeEvent::NewBroadcast => {
            tracing::warn!("a new broadcast under the same name; starting over")
        }
        NodeEvent::ParentOpen { parent } => tracing::debug!(%parent, "parent edge open"),
        NodeEvent::ParentClosed { parent, reason } => {
            tracing::info!(%parent, %reason, "parent edge closed")
        }
        NodeEvent::ParentOpenTimeout { parent } => tracing::warn!(
            %parent,
            "the edge to the parent did not open in time; asking to be moved"
        ),
        NodeEvent::MalformedFromParent { error } => {
            tracing::warn!(%error, "malformed data from parent; asking to be moved")
        }
        NodeEvent::HelloRepeated => tracing::debug!("nothing from the parent yet; repeated HELLO"),
        NodeEvent::ChildHello { child, last } => tracing::debug!(%child, ?last, "child said hello"),
        NodeEvent::ChildMisbehaved { child } => {
            tracing::warn!(%child, "child sent something other than HELLO; closed its edge")
        }
        NodeEvent::ChunkRejected { seq, from, error } => {
            let from = from.map_or_else(|| "?".to_string(), |p| p.to_string());
            tracing::warn!(%seq, %from, %error, "chunk from the parent failed verification; dropped")
        }
        NodeEvent::RelayRefused { error } => tracing::warn!(%error, "relay refused"),
        NodeEvent::Relay(RelayEvent::GapSkipped { child, skipped }) => tracing::warn!(
            %child,
            skipped,
            "child resumed from beyond the buffer; skipped ahead"
        ),
        NodeEvent::Relay(other) => tracing::info!(event = ?other, "relay"),
        NodeEvent::Refused {
            code,
            message,
            fatal,
        } => tracing::warn!(%code, %message, fatal, "supervisor refused a request"),
        NodeEvent::Killed { reason, rejoin } => {
            tracing::warn!(%reason, rejoin, "killed by the operator")
        }
        NodeEvent::StreamEnding { reason } => {
            tracing::info!(%reason, "stream ended; playing out what is left")
        }
        NodeEvent::Viewers { viewers } => tracing::debug!(?viewers, "viewers"),
        NodeEvent::Moving { parent, depth } => {
            tracing::info!(%parent, depth, "moving: keeping the parent until the new edge opens")
        }
        NodeEvent::ParentSilent { parent, silent_ms } => {
            tracing::warn!(%parent, silent_ms, "parent silent; left it")
        }
        NodeEvent::ChildSilent { child } => tracing::warn!(%child, "child silent; dropped it"),
        NodeEvent::SwitchedToStandby { parent } => {
            tracing::info!(%parent, "switched to the standby parent")
        }
        NodeEvent::StandbyChildSwitched { child } => {
            tracing::info!(%child, "a standby child switched here")
        }
    }
}
