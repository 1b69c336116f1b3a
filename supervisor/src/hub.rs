//! The hub task: the only owner of the registry. Connections and HTTP handlers talk to it over a
//! channel; it applies the registry's outputs by writing to each peer's outbound queue.

use crate::config::Config;
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{Agent, ComponentType, PeerMessage, ServerMessage};
use ownstream_core::publish::{PublishPolicy, TokenGrant};
use ownstream_core::registry::{Output, Registry, RegistryConfig};
use rand::RngExt;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Messages a connection may have queued before the hub considers the peer stuck and drops it.
pub const OUTBOUND_QUEUE: usize = 1024;

/// Milliseconds on the supervisor's monotonic clock (shared by the hub and the handshakes).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// What the hub asks a connection task to do.
#[derive(Debug)]
pub enum Outbound {
    /// Send this message.
    Message(ServerMessage),
    /// Close the connection with this reason.
    Close(String),
}

type Query = Box<dyn FnOnce(&mut Registry, u64) + Send>;

enum Command {
    Connect {
        peer: PeerId,
        component: ComponentType,
        agent: Agent,
        key_fingerprint: String,
        outbound: mpsc::Sender<Outbound>,
        accepted: oneshot::Sender<Option<u64>>,
    },
    Message(PeerId, u64, PeerMessage),
    Disconnect(PeerId, u64),
    Query(Query),
}

/// A cheap, cloneable handle to the hub.
#[derive(Clone)]
pub struct HubHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl HubHandle {
    /// Registers an authenticated peer (`key_fingerprint`: of the key it proved it holds);
    /// returns the connection's number, which its later messages and its disconnection carry, or
    /// `None` if its id is already connected.
    pub async fn connect(
        &self,
        peer: PeerId,
        component: ComponentType,
        agent: Agent,
        key_fingerprint: String,
        outbound: mpsc::Sender<Outbound>,
    ) -> Option<u64> {
        let (accepted, rx) = oneshot::channel();
        let cmd = Command::Connect {
            peer,
            component,
            agent,
            key_fingerprint,
            outbound,
            accepted,
        };
        self.tx.send(cmd).ok()?;
        rx.await.ok().flatten()
    }

    /// Forwards a message from connection `conn` of an authenticated peer.
    pub fn message(&self, peer: PeerId, conn: u64, msg: PeerMessage) {
        let _ = self.tx.send(Command::Message(peer, conn, msg));
    }

    /// Reports that connection `conn` of a peer ended. A killed peer may already be back on a new
    /// connection under the same id: only the connection that ended is forgotten.
    pub fn disconnect(&self, peer: PeerId, conn: u64) {
        let _ = self.tx.send(Command::Disconnect(peer, conn));
    }

    /// Runs `f` against the registry inside the hub and returns its result.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Registry, u64) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let q: Query = Box::new(move |reg, now| {
            let _ = tx.send(f(reg, now));
        });
        self.tx.send(Command::Query(q)).ok()?;
        rx.await.ok()
    }
}

/// The hub, ready to run.
pub struct HubTask {
    registry: Registry,
    rx: mpsc::UnboundedReceiver<Command>,
    /// Connected peers: their connection's number and outbound queue.
    peers: HashMap<PeerId, (u64, mpsc::Sender<Outbound>)>,
    next_conn: u64,
}

impl HubTask {
    /// A hub and its handle.
    pub fn new(config: &Config) -> (Self, HubHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let registry_config = RegistryConfig {
            topology: config.topology,
            fanout: config.fanout,
            heartbeat_timeout_ms: config.heartbeat_timeout_ms,
        };
        let seed: [u8; 32] = rand::rng().random();
        let mut registry = Registry::new(registry_config, seed);
        registry.set_publish_policy(PublishPolicy::new(
            &config.publish_tokens,
            &config.publisher_keys,
        ));
        let task = Self {
            registry,
            rx,
            peers: HashMap::new(),
            next_conn: 1,
        };
        (task, HubHandle { tx })
    }

    /// Also lets `grant` publish (before the hub runs: an in-process broadcaster's token).
    pub fn allow_publish_token(&mut self, grant: TokenGrant) {
        self.registry.publish_policy_mut().allow_token(grant);
    }

    /// Runs until every handle is dropped.
    pub async fn run(mut self) {
        loop {
            let deadline = self.registry.poll_timeout(now_ms());
            let sleep = async {
                match deadline {
                    Some(at) => {
                        tokio::time::sleep(std::time::Duration::from_millis(
                            at.saturating_sub(now_ms()),
                        ))
                        .await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => return,
                },
                () = sleep => self.registry.handle_timeout(now_ms()),
            }
            self.flush();
        }
    }

    fn handle(&mut self, cmd: Command) {
        let now = now_ms();
        match cmd {
            Command::Connect {
                peer,
                component,
                agent,
                key_fingerprint,
                outbound,
                accepted,
            } => {
                let conn = self
                    .registry
                    .handle_authenticated(now, peer, component)
                    .then(|| {
                        self.next_conn += 1;
                        self.next_conn
                    });
                if let Some(conn) = conn {
                    self.registry.set_agent(peer, agent);
                    self.registry.set_key_fingerprint(peer, key_fingerprint);
                    self.peers.insert(peer, (conn, outbound));
                }
                let _ = accepted.send(conn);
            }
            Command::Message(peer, conn, msg) => {
                if self.current(peer, conn) {
                    self.registry.handle_message(now, peer, msg);
                }
            }
            Command::Disconnect(peer, conn) => {
                if self.current(peer, conn) {
                    self.peers.remove(&peer);
                    self.registry.handle_disconnected(now, peer);
                }
            }
            Command::Query(f) => f(&mut self.registry, now),
        }
    }

    fn current(&self, peer: PeerId, conn: u64) -> bool {
        self.peers.get(&peer).is_some_and(|(c, _)| *c == conn)
    }

    fn flush(&mut self) {
        while let Some(out) = self.registry.poll_output() {
            match out {
                Output::Send(peer, msg) => self.deliver(peer, Outbound::Message(msg)),
                Output::Close(peer, reason) => {
                    self.deliver(peer, Outbound::Close(reason));
                    self.peers.remove(&peer);
                }
            }
        }
    }

    fn deliver(&mut self, peer: PeerId, out: Outbound) {
        let Some((_, tx)) = self.peers.get(&peer) else {
            return;
        };
        if tx.try_send(out).is_err() {
            // The connection is gone or not reading: treat it as failed so the tree is repaired
            // instead of queueing without bound.
            tracing::warn!(%peer, "outbound queue full or closed; dropping peer");
            self.peers.remove(&peer);
            self.registry
                .fail_peer(now_ms(), peer, "not reading its signaling messages");
        }
    }
}
