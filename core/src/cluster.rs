//! Several supervisors sharing the streams (`--cluster`): which supervisor serves which stream,
//! decided through leases in a shared store (Redis), as a deterministic state machine.
//!
//! The shell (the supervisor's hub and its store driver) owns the store connection and the clock.
//! It asks [`Cluster::route`] about every peer request that names a stream, carries out the
//! [`Command`]s from [`Cluster::poll_command`] against the store, feeds their answers back
//! (`handle_*`), calls [`Cluster::handle_timeout`] at [`Cluster::poll_timeout`], and acts on each
//! [`Event`] from [`Cluster::poll_event`]. The store holds only who owns each stream (a lease), the
//! directory of streams and the supervisors' addresses, each with a time to live; never media.
//!
//! The rules, each once:
//! - a stream is served only while this supervisor holds its lease: a broadcaster's
//!   `REGISTER_STREAM` (and a re-announcing peer) **claims** it (set-if-absent with a time to
//!   live); a viewer's `JOIN_STREAM` only **locates** it;
//! - a request for a stream another supervisor owns is answered with that supervisor's address
//!   ([`Event::Redirect`]); one whose owner no longer advertises an address (it died, its lease has
//!   not expired yet) waits and asks again every [`ClusterConfig::retry_ms`], so a takeover happens
//!   as soon as the dead owner's lease expires;
//! - a held lease is renewed every [`ClusterConfig::renew_every_ms`] by a check-and-set (only the
//!   owner extends it). It is **lost** when the store names another owner, or when no renewal
//!   succeeded in time: the lease counts from when the last successful renewal was *sent* (the
//!   store started its time to live later than that), less [`ClusterConfig::safety_ms`]. A lost
//!   stream is no longer served ([`Event::Lost`]), whatever the store says later;
//! - a stream this supervisor no longer serves is released at once, so another may claim it;
//! - a stream's store requests never overtake each other (the driver runs each in its own task,
//!   so two in flight may reach the store in either order): a release waits for the renewal in
//!   flight, which would otherwise take the lease back after it, and a claim waits for the
//!   release in flight, which would otherwise delete the lease the claim just extended while
//!   this supervisor goes on serving (two owners).
//!
//! Invariants (property-tested below): at most one store request per stream is in flight; a
//! stream is reported [`Cluster::serves`] only before its local lease deadline; every parked
//! request is answered exactly once (served, redirected or refused), and at most
//! [`ClusterConfig::max_parked`] wait at a time.

use crate::protocol::{PeerMessage, StreamInfo};
use std::collections::{BTreeMap, VecDeque};

/// Lease timing and bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Time to live of a lease in the store.
    pub lease_ms: u64,
    /// How often the owner renews.
    pub renew_every_ms: u64,
    /// How long before its computed expiry a lease is given up.
    pub safety_ms: u64,
    /// How often this supervisor advertises its address and reads the directory; the address
    /// lives [`ClusterConfig::lease_ms`] in the store.
    pub refresh_every_ms: u64,
    /// How long a request waits before a store request is tried again (a failed renewal, an owner
    /// without an address).
    pub retry_ms: u64,
    /// Longest a peer's request waits for the store before it is refused.
    pub max_wait_ms: u64,
    /// Most peer requests waiting for the store at once.
    pub max_parked: usize,
}

impl Default for ClusterConfig {
    /// A 3 s lease renewed every second: two renewals in a row may fail (a store hiccup, a slow
    /// round trip) before the owner gives the stream up, yet a dead owner's streams are free
    /// 3 s after its last renewal, the same as the heartbeat timeout after which its peers' edges
    /// are repaired anyway. The 500 ms margin covers the hub's own delay between deciding and
    /// stopping, and clock rate differences between this host and the store.
    fn default() -> Self {
        Self {
            lease_ms: 3000,
            renew_every_ms: 1000,
            safety_ms: 500,
            refresh_every_ms: 1000,
            retry_ms: 250,
            max_wait_ms: 8000,
            max_parked: 4096,
        }
    }
}

/// What a peer's request needs from the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// To serve the stream here: claim its lease unless another supervisor holds it.
    Claim,
    /// Only to know where the stream lives.
    Locate,
}

/// Which requests name a stream, and what each needs: the only messages a supervisor that does
/// not serve the stream must not answer itself.
pub fn need(msg: &PeerMessage) -> Option<(&str, Need)> {
    match msg {
        PeerMessage::RegisterStream { stream, .. } => Some((stream, Need::Claim)),
        // A re-announcement after the owner was lost: here a viewer's claim waits for its
        // broadcaster's, so whichever comes first takes the lease (or is sent to the owner).
        PeerMessage::Resume { stream, .. } => Some((stream, Need::Claim)),
        PeerMessage::JoinStream { stream, .. } => Some((stream, Need::Locate)),
        _ => None,
    }
}

/// A supervisor as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Its id (the lease's value).
    pub id: String,
    /// The URL its peers connect to, if it still advertises one.
    pub url: Option<String>,
}

/// One stream of the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The stream as its owner last described it.
    pub info: StreamInfo,
    /// Who owns it.
    pub owner: Owner,
}

/// The store's directory, as read by a refresh.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    /// Live supervisors: id and URL.
    pub supervisors: Vec<(String, String)>,
    /// Streams with a lease.
    pub streams: Vec<DirectoryEntry>,
}

/// A store operation for the driver; each has exactly one answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Set the lease to this supervisor if nobody holds it; answer
    /// [`Cluster::handle_claimed`] with the owner after the attempt.
    Claim {
        /// The stream.
        stream: String,
        /// When the request was sent (to be given back).
        sent_ms: u64,
    },
    /// Read the lease's owner; answer [`Cluster::handle_located`].
    Locate {
        /// The stream.
        stream: String,
    },
    /// Extend the lease if this supervisor still holds it (re-take it if it vanished), with the
    /// stream's current description; answer [`Cluster::handle_renewed`].
    Renew {
        /// The stream.
        stream: String,
        /// When the request was sent (to be given back).
        sent_ms: u64,
    },
    /// Delete the lease if this supervisor holds it; answer [`Cluster::handle_released`], whatever
    /// the outcome.
    Release {
        /// The stream.
        stream: String,
    },
    /// Advertise this supervisor's URL and read the directory; answer
    /// [`Cluster::handle_directory`] (or nothing if the store failed).
    Refresh,
}

/// What the shell must do about peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<T> {
    /// Serve this parked request here, as if it had just arrived.
    Serve(T),
    /// Tell the peer to go to `url`, where its stream lives, and close its connection.
    Redirect(T, String),
    /// Answer the request with this error (not fatal: the store could not decide in time).
    Refuse(T, String),
    /// This supervisor no longer owns `stream`: stop serving it and send its peers to `url` (the
    /// new owner's, else another live supervisor's, else none).
    Lost {
        /// The stream.
        stream: String,
        /// Where its peers should go.
        url: Option<String>,
    },
}

/// What [`Cluster::route`] decided for a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<T> {
    /// Serve it now.
    Serve(T),
    /// It waits for the store; its outcome comes as an [`Event`].
    Parked,
}

#[derive(Debug)]
struct Lease {
    /// The local deadline: serve no longer than this without a renewal.
    valid_until: u64,
    next_renew: u64,
    /// A renewal is in flight.
    renewing: bool,
}

#[derive(Debug)]
struct Waiting<T> {
    need: Need,
    since: u64,
    item: T,
}

#[derive(Debug)]
struct Pending<T> {
    /// A claim or a locate is in flight.
    asking: bool,
    /// Ask again at this time (the owner had no address).
    retry_at: Option<u64>,
    items: Vec<Waiting<T>>,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self {
            asking: false,
            retry_at: None,
            items: Vec::new(),
        }
    }
}

/// The cluster state of one supervisor: see the module docs.
#[derive(Debug)]
pub struct Cluster<T> {
    config: ClusterConfig,
    me: String,
    leases: BTreeMap<String, Lease>,
    pending: BTreeMap<String, Pending<T>>,
    /// Streams given up whose release is in flight (true) or waits for the renewal in flight
    /// (false); no other request about them is sent meanwhile.
    releasing: BTreeMap<String, bool>,
    parked: usize,
    directory: Directory,
    next_refresh: u64,
    commands: VecDeque<Command>,
    events: VecDeque<Event<T>>,
}

impl<T> Cluster<T> {
    /// A supervisor with id `me` (the value of its leases), holding nothing yet.
    pub fn new(config: ClusterConfig, me: String, now_ms: u64) -> Self {
        Self {
            config,
            me,
            leases: BTreeMap::new(),
            pending: BTreeMap::new(),
            releasing: BTreeMap::new(),
            parked: 0,
            directory: Directory::default(),
            next_refresh: now_ms,
            commands: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// This supervisor's id.
    pub fn id(&self) -> &str {
        &self.me
    }

    /// The settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Whether this supervisor may serve `stream` now.
    pub fn serves(&self, stream: &str, now_ms: u64) -> bool {
        self.leases
            .get(stream)
            .is_some_and(|l| now_ms < l.valid_until)
    }

    /// The streams whose lease this supervisor holds.
    pub fn held(&self) -> impl Iterator<Item = &str> + '_ {
        self.leases.keys().map(String::as_str)
    }

    /// Where a request for `stream` goes: served now if this supervisor holds the lease,
    /// otherwise parked until the store answers.
    pub fn route(&mut self, now_ms: u64, stream: &str, need: Need, item: T) -> Route<T> {
        if self.serves(stream, now_ms) {
            return Route::Serve(item);
        }
        if self.parked >= self.config.max_parked {
            self.events.push_back(Event::Refuse(
                item,
                "too many requests are waiting for the cluster store".into(),
            ));
            return Route::Parked;
        }
        self.parked += 1;
        let pending = self.pending.entry(stream.to_string()).or_default();
        pending.items.push(Waiting {
            need,
            since: now_ms,
            item,
        });
        self.ask(now_ms, stream);
        Route::Parked
    }

    /// This supervisor stopped serving `stream` (its broadcaster left): free the lease.
    pub fn release(&mut self, stream: &str) {
        if let Some(lease) = self.leases.remove(stream) {
            if lease.renewing {
                self.releasing.insert(stream.to_string(), false);
            } else {
                self.send_release(stream);
            }
        }
    }

    /// The answer to [`Command::Release`] (done or failed alike): requests about the stream may
    /// go to the store again.
    pub fn handle_released(&mut self, now_ms: u64, stream: &str) {
        if self.releasing.get(stream) == Some(&true) {
            self.releasing.remove(stream);
            self.ask(now_ms, stream);
        }
    }

    fn send_release(&mut self, stream: &str) {
        self.releasing.insert(stream.to_string(), true);
        self.commands.push_back(Command::Release {
            stream: stream.to_string(),
        });
    }

    /// Releases every held lease whose stream `serving` says is no longer served here and that no
    /// request waits for (the shell calls it after each change of its registry).
    pub fn release_unserved(&mut self, serving: impl Fn(&str) -> bool) {
        let idle: Vec<String> = self
            .leases
            .keys()
            .filter(|s| !serving(s) && !self.pending.contains_key(*s))
            .cloned()
            .collect();
        for stream in idle {
            self.release(&stream);
        }
    }

    /// The answer to [`Command::Claim`]: the lease's owner after the attempt (`None`: the store
    /// failed).
    pub fn handle_claimed(
        &mut self,
        now_ms: u64,
        stream: &str,
        sent_ms: u64,
        owner: Option<Owner>,
    ) {
        let won = owner.as_ref().is_some_and(|o| o.id == self.me);
        let Some(pending) = self.pending.get_mut(stream) else {
            // Everyone who wanted it gave up waiting: do not keep others out for a lease's length.
            if won && !self.leases.contains_key(stream) {
                self.send_release(stream);
            }
            return;
        };
        pending.asking = false;
        match owner {
            Some(_) if won => {
                let lease = self.fresh_lease(sent_ms);
                self.leases.insert(stream.to_string(), lease);
                self.resolve(stream, |_| Some(Resolution::Serve));
            }
            Some(o) => self.owned_elsewhere(now_ms, stream, o.url),
            None => self.retry_later(now_ms, stream),
        }
        self.expire_waits(now_ms);
    }

    /// The answer to [`Command::Locate`] (`Err`: the store failed).
    pub fn handle_located(&mut self, now_ms: u64, stream: &str, owner: Result<Option<Owner>, ()>) {
        let Some(pending) = self.pending.get_mut(stream) else {
            return;
        };
        pending.asking = false;
        match owner {
            Ok(Some(o)) if o.id == self.me => {
                // Only a renewal or a claim makes a lease ours; until one does, claims go on.
                self.resolve(stream, |w| {
                    (w.need == Need::Locate).then_some(Resolution::Serve)
                });
            }
            Ok(Some(o)) => self.owned_elsewhere(now_ms, stream, o.url),
            // Nobody serves it: a viewer is told so (or waits) here; a claim goes ahead.
            Ok(None) => self.resolve(stream, |w| {
                (w.need == Need::Locate).then_some(Resolution::Serve)
            }),
            Err(()) => self.retry_later(now_ms, stream),
        }
        self.ask(now_ms, stream);
        self.expire_waits(now_ms);
    }

    /// The answer to [`Command::Renew`]: `Ok(true)` renewed, `Ok(false)` another supervisor
    /// holds the lease, `Err` the store failed.
    pub fn handle_renewed(
        &mut self,
        now_ms: u64,
        stream: &str,
        sent_ms: u64,
        renewed: Result<bool, ()>,
    ) {
        let fresh = self.fresh_lease(sent_ms);
        let Some(lease) = self.leases.get_mut(stream) else {
            // Given up while this renewal was in flight: its release goes now, after it.
            if self.releasing.get(stream) == Some(&false) {
                self.send_release(stream);
            }
            return;
        };
        lease.renewing = false;
        match renewed {
            Ok(true) => {
                // A late answer must not move the deadline back.
                lease.valid_until = lease.valid_until.max(fresh.valid_until);
                lease.next_renew = fresh.next_renew;
            }
            Ok(false) => self.lose(stream),
            Err(()) => lease.next_renew = now_ms + self.config.retry_ms,
        }
        self.check_leases(now_ms);
    }

    /// The answer to [`Command::Refresh`].
    pub fn handle_directory(&mut self, directory: Directory) {
        self.directory = directory;
    }

    /// Streams in the directory that another supervisor owns, each with the URL it lives at.
    pub fn remote_streams(&self) -> Vec<(StreamInfo, Option<String>)> {
        self.directory
            .streams
            .iter()
            .filter(|e| e.owner.id != self.me && !self.leases.contains_key(&e.info.name))
            .map(|e| (e.info.clone(), e.owner.url.clone()))
            .collect()
    }

    /// The URLs of the other live supervisors, as last read from the store (for peers that keep
    /// a list of supervisors to reconnect to).
    pub fn other_supervisors(&self) -> impl Iterator<Item = &str> + '_ {
        let others = self.directory.supervisors.iter();
        others
            .filter(|(id, _)| *id != self.me)
            .map(|(_, url)| url.as_str())
    }

    /// The URL of the supervisor the directory says owns `stream`, if not this one.
    pub fn remote_owner(&self, stream: &str) -> Option<&str> {
        self.directory
            .streams
            .iter()
            .find(|e| e.info.name == stream && e.owner.id != self.me)
            .and_then(|e| e.owner.url.as_deref())
    }

    /// When [`Cluster::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> u64 {
        let leases = self.leases.values().flat_map(|l| {
            let renew = (!l.renewing).then_some(l.next_renew);
            [Some(l.valid_until), renew]
        });
        let pending = self.pending.values().flat_map(|p| {
            let waits = p.items.iter().map(|w| w.since + self.config.max_wait_ms);
            waits.chain(p.retry_at).map(Some)
        });
        leases
            .chain(pending)
            .flatten()
            .chain([self.next_refresh])
            .min()
            .unwrap_or(self.next_refresh)
    }

    /// Time passed: renew, give up lapsed leases, ask again, refresh the directory.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.check_leases(now_ms);
        let due: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, l)| !l.renewing && now_ms >= l.next_renew)
            .map(|(s, _)| s.clone())
            .collect();
        for stream in due {
            if let Some(l) = self.leases.get_mut(&stream) {
                l.renewing = true;
            }
            self.commands.push_back(Command::Renew {
                stream,
                sent_ms: now_ms,
            });
        }
        let retry: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.retry_at.is_some_and(|t| now_ms >= t))
            .map(|(s, _)| s.clone())
            .collect();
        for stream in retry {
            if let Some(p) = self.pending.get_mut(&stream) {
                p.retry_at = None;
            }
            self.ask(now_ms, &stream);
        }
        self.expire_waits(now_ms);
        if now_ms >= self.next_refresh {
            self.next_refresh = now_ms + self.config.refresh_every_ms;
            self.commands.push_back(Command::Refresh);
        }
    }

    /// The next store operation.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The next thing to do about peers.
    pub fn poll_event(&mut self) -> Option<Event<T>> {
        self.events.pop_front()
    }

    fn fresh_lease(&self, sent_ms: u64) -> Lease {
        let c = &self.config;
        Lease {
            valid_until: sent_ms + c.lease_ms.saturating_sub(c.safety_ms),
            next_renew: sent_ms + c.renew_every_ms,
            renewing: false,
        }
    }

    /// Sends the store request a stream's waiting requests need, unless one is in flight.
    fn ask(&mut self, now_ms: u64, stream: &str) {
        let Some(p) = self.pending.get_mut(stream) else {
            return;
        };
        if p.items.is_empty() {
            self.pending.remove(stream);
            return;
        }
        if p.asking || p.retry_at.is_some() || self.releasing.contains_key(stream) {
            return;
        }
        p.asking = true;
        let stream = stream.to_string();
        // A claim answers a locate too (it reports the owner), so one request serves both.
        let claim = p.items.iter().any(|w| w.need == Need::Claim);
        self.commands.push_back(if claim {
            Command::Claim {
                stream,
                sent_ms: now_ms,
            }
        } else {
            Command::Locate { stream }
        });
    }

    fn owned_elsewhere(&mut self, now_ms: u64, stream: &str, url: Option<String>) {
        match url {
            Some(url) => self.resolve(stream, |_| Some(Resolution::Redirect(url.clone()))),
            // The owner stopped advertising itself: it is gone, and its lease soon will be.
            None => self.retry_later(now_ms, stream),
        }
    }

    fn retry_later(&mut self, now_ms: u64, stream: &str) {
        if let Some(p) = self.pending.get_mut(stream) {
            p.retry_at = Some(now_ms + self.config.retry_ms);
        }
    }

    /// Answers the waiting requests of `stream` that `decide` settles; keeps the others.
    fn resolve(&mut self, stream: &str, decide: impl Fn(&Waiting<T>) -> Option<Resolution>) {
        let Some(p) = self.pending.get_mut(stream) else {
            return;
        };
        let mut kept = Vec::new();
        for w in std::mem::take(&mut p.items) {
            match decide(&w) {
                None => kept.push(w),
                Some(r) => {
                    self.parked -= 1;
                    self.events.push_back(match r {
                        Resolution::Serve => Event::Serve(w.item),
                        Resolution::Redirect(url) => Event::Redirect(w.item, url),
                    });
                }
            }
        }
        p.items = kept;
        if p.items.is_empty() && !p.asking {
            self.pending.remove(stream);
        }
    }

    /// Refuses requests that waited too long for the store.
    fn expire_waits(&mut self, now_ms: u64) {
        let limit = self.config.max_wait_ms;
        for p in self.pending.values_mut() {
            let (late, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut p.items)
                .into_iter()
                .partition(|w| now_ms >= w.since + limit);
            p.items = kept;
            for w in late {
                self.parked -= 1;
                self.events.push_back(Event::Refuse(
                    w.item,
                    "the cluster store did not answer in time".into(),
                ));
            }
        }
        self.pending.retain(|_, p| !p.items.is_empty() || p.asking);
    }

    fn check_leases(&mut self, now_ms: u64) {
        let lapsed: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, l)| now_ms >= l.valid_until)
            .map(|(s, _)| s.clone())
            .collect();
        for stream in lapsed {
            self.lose(&stream);
        }
    }

    fn lose(&mut self, stream: &str) {
        if self.leases.remove(stream).is_none() {
            return;
        }
        let url = self.remote_owner(stream).map(str::to_string).or_else(|| {
            self.directory
                .supervisors
                .iter()
                .find(|(id, _)| *id != self.me)
                .map(|(_, url)| url.clone())
        });
        self.events.push_back(Event::Lost {
            stream: stream.to_string(),
            url,
        });
    }
}

enum Resolution {
    Serve,
    Redirect(String),
}

#[cfg(test)]
mod test;
