//! The hub task: the only owner of the registry. Connections and HTTP handlers talk to it over a
//! channel; it applies the registry's outputs by writing to each peer's outbound queue.

use crate::cluster::{Answer, Store};
use crate::config::Config;
use ownstream_core::cluster::{self, Cluster, Event, Route};
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{Agent, ComponentType, PeerMessage, ServerMessage, StreamInfo};
use ownstream_core::publish::{PublishPolicy, TokenGrant};
use ownstream_core::registry::{Output, Registry, RegistryConfig};
use rand::RngExt;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Messages a connection may have queued before the hub considers the peer stuck and drops it.
pub const OUTBOUND_QUEUE: usize = 1024;

/// The Unix time (ms) at which [`now_ms`] read 0: `CLOCK` answers are on the wall clock.
fn clock_base_ms() -> u64 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    unix.saturating_sub(now_ms())
}

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
    Remote(oneshot::Sender<Vec<StreamInfo>>),
}

/// A request that waits for the cluster store: the peer, its connection and the message.
type Parked = (PeerId, u64, PeerMessage);

/// The hub's part of `--cluster`: the core's decisions and the store that carries them out.
struct ClusterPart {
    core: Cluster<Parked>,
    store: std::sync::Arc<Store>,
    answers: mpsc::UnboundedReceiver<Answer>,
    answers_tx: mpsc::UnboundedSender<Answer>,
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

    /// With `--cluster`: the streams other supervisors serve, each naming its supervisor's URL.
    pub async fn remote_streams(&self) -> Vec<StreamInfo> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Remote(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
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
    cluster: Option<ClusterPart>,
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
        registry.set_join_pacing(config.join_pacing);
        registry.set_standby_edges(true);
        registry.set_clock_base(clock_base_ms());
        registry.set_publish_policy(PublishPolicy::new(
            &config.publish_tokens,
            &config.publisher_keys,
        ));
        let task = Self {
            registry,
            rx,
            peers: HashMap::new(),
            next_conn: 1,
            cluster: None,
        };
        (task, HubHandle { tx })
    }

    /// Also lets `grant` publish (before the hub runs: an in-process broadcaster's token).
    pub fn allow_publish_token(&mut self, grant: TokenGrant) {
        self.registry.publish_policy_mut().allow_token(grant);
    }

    /// Shares the streams with other supervisors through `store` (`--cluster`).
    pub fn join_cluster(&mut self, store: std::sync::Arc<Store>, config: cluster::ClusterConfig) {
        let (answers_tx, answers) = mpsc::unbounded_channel();
        self.cluster = Some(ClusterPart {
            core: Cluster::new(config, store.id().to_string(), now_ms()),
            store,
            answers,
            answers_tx,
        });
    }

    /// Runs until every handle is dropped.
    pub async fn run(mut self) {
        loop {
            let cluster_due = self.cluster.as_ref().map(|c| c.core.poll_timeout());
            let deadline = [self.registry.poll_timeout(now_ms()), cluster_due]
                .into_iter()
                .flatten()
                .min();
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
                Some(answer) = next_answer(&mut self.cluster) => self.handle_answer(answer),
                () = sleep => {
                    let now = now_ms();
                    self.registry.handle_timeout(now);
                    if let Some(c) = &mut self.cluster {
                        c.core.handle_timeout(now);
                    }
                }
            }
            self.flush();
            self.step_cluster();
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
                    self.route(now, peer, conn, msg);
                }
            }
            Command::Remote(reply) => {
                let remote = self.cluster.as_ref().map_or_else(Vec::new, |c| {
                    let list = c.core.remote_streams().into_iter();
                    list.map(|(mut info, url)| {
                        info.supervisor = url;
                        info
                    })
                    .collect()
                });
                let _ = reply.send(remote);
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
                Output::Send(peer, ServerMessage::StreamList { mut streams }) => {
                    // The cluster's directory lists the streams other supervisors serve.
                    if let Some(c) = &self.cluster {
                        for (mut info, url) in c.core.remote_streams() {
                            info.supervisor = url;
                            streams.push(info);
                        }
                    }
                    let msg = ServerMessage::StreamList { streams };
                    self.deliver(peer, Outbound::Message(msg));
                }
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

async fn next_answer(cluster: &mut Option<ClusterPart>) -> Option<Answer> {
    match cluster {
        Some(c) => c.answers.recv().await,
        None => std::future::pending().await,
    }
}

/// `--cluster`: which supervisor serves what, and telling peers where to go.
impl HubTask {
    /// A peer's message: served here, unless it names a stream this supervisor does not serve.
    fn route(&mut self, now: u64, peer: PeerId, conn: u64, msg: PeerMessage) {
        let Some(c) = &mut self.cluster else {
            return self.registry.handle_message(now, peer, msg);
        };
        let Some((stream, need)) = cluster::need(&msg) else {
            return self.registry.handle_message(now, peer, msg);
        };
        if self.registry.has_stream(stream) {
            return self.registry.handle_message(now, peer, msg);
        }
        let stream = stream.to_string();
        if let Route::Serve((peer, _, msg)) = c.core.route(now, &stream, need, (peer, conn, msg)) {
            self.registry.handle_message(now, peer, msg);
        }
    }

    fn handle_answer(&mut self, answer: Answer) {
        let now = now_ms();
        let Some(c) = &mut self.cluster else { return };
        match answer {
            Answer::Claimed {
                stream,
                sent_ms,
                owner,
            } => c.core.handle_claimed(now, &stream, sent_ms, owner),
            Answer::Located { stream, owner } => c.core.handle_located(now, &stream, owner),
            Answer::Renewed {
                stream,
                sent_ms,
                renewed,
            } => c.core.handle_renewed(now, &stream, sent_ms, renewed),
            Answer::Released { stream } => c.core.handle_released(now, &stream),
            Answer::Directory(dir) => {
                c.core.handle_directory(dir);
                self.redirect_waiting();
            }
        }
    }

    /// Viewers waiting here for a stream that went live on another supervisor go there.
    fn redirect_waiting(&mut self) {
        let Some(c) = &self.cluster else { return };
        let moves: Vec<(PeerId, String, String)> = self
            .registry
            .waiting()
            .into_iter()
            .filter_map(|(peer, stream)| {
                let url = c.core.remote_owner(&stream)?.to_string();
                Some((peer, stream, url))
            })
            .collect();
        for (peer, stream, url) in moves {
            self.registry.forget(now_ms(), peer);
            self.redirect(peer, stream, Some(url));
        }
    }

    /// Acts on the cluster's events, frees leases of streams no longer served, and hands the
    /// store its operations.
    fn step_cluster(&mut self) {
        let now = now_ms();
        let Some(c) = &mut self.cluster else { return };
        let mut events = Vec::new();
        while let Some(ev) = c.core.poll_event() {
            events.push(ev);
        }
        for ev in events {
            self.cluster_event(now, ev);
        }
        let Some(c) = &mut self.cluster else { return };
        let registry = &self.registry;
        c.core.release_unserved(|s| registry.has_stream(s));
        while let Some(cmd) = c.core.poll_command() {
            let info = match &cmd {
                cluster::Command::Renew { stream, .. } => self
                    .registry
                    .streams()
                    .into_iter()
                    .find(|i| &i.name == stream),
                _ => None,
            };
            c.store.spawn(cmd, info, c.answers_tx.clone());
        }
    }

    fn cluster_event(&mut self, now: u64, ev: Event<Parked>) {
        match ev {
            Event::Serve((peer, conn, msg)) => {
                if self.current(peer, conn) {
                    self.registry.handle_message(now, peer, msg);
                }
            }
            Event::Redirect((peer, conn, msg), url) => {
                if self.current(peer, conn) {
                    let stream = cluster::need(&msg).map(|(s, _)| s.to_string());
                    self.registry.forget(now, peer);
                    self.redirect(peer, stream.unwrap_or_default(), Some(url));
                }
            }
            Event::Refuse((peer, conn, _), reason) => {
                if self.current(peer, conn) {
                    let msg = ServerMessage::Error {
                        code: "cluster_unavailable".into(),
                        message: reason,
                        fatal: false,
                    };
                    self.deliver(peer, Outbound::Message(msg));
                }
            }
            Event::Lost { stream, url } => {
                tracing::warn!(%stream, to = ?url, "lost the stream's lease; sending its peers away");
                for peer in self.registry.evict_stream(&stream) {
                    self.redirect(peer, stream.clone(), url.clone());
                }
            }
        }
    }

    /// Sends a peer to `url` (or just away) and closes its connection.
    fn redirect(&mut self, peer: PeerId, stream: String, url: Option<String>) {
        let reason = match url {
            Some(url) => {
                let reason = format!("stream {stream} is served by {url}");
                self.deliver(
                    peer,
                    Outbound::Message(ServerMessage::Redirect { stream, url }),
                );
                reason
            }
            None => format!("this supervisor no longer serves stream {stream}"),
        };
        self.deliver(peer, Outbound::Close(reason));
        self.peers.remove(&peer);
    }
}
