//! Admission of unauthenticated connections: how many may be in their handshake at once (in all and
//! per source address), how often one address may start a handshake, and how often the supervisor
//! agrees to an RSA private-key operation on a ciphertext a client chose (step 6 of the handshake).
//!
//! The supervisor asks before it upgrades an HTTP request to a WebSocket ([`Admission::admit`]),
//! tells when the handshake ends ([`Admission::release`]), and asks again before it decrypts an
//! answer ([`Admission::decrypt`]). Everything is counted here so `/metrics` can show it.
//!
//! Invariants: the pending count never exceeds `max_pending` in all nor `max_pending_per_addr` for
//! one address; an address's rate buckets refill on the caller's clock (`now_ms`), so a refused
//! address is admitted again once its bucket has refilled; the table of addresses is bounded by
//! `max_tracked_addrs` (an address with nothing pending and full buckets carries no state and is
//! forgotten first). IPv6 addresses are grouped by their /64, the block one host usually holds.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

/// The limits. Rates are per second; a bucket holds at most its burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Connections in their handshake at once, from every address together.
    pub max_pending: usize,
    /// Connections in their handshake at once from one address.
    pub max_pending_per_addr: usize,
    /// Handshakes one address may start per second, sustained.
    pub attempts_per_sec: u32,
    /// Handshakes one address may start in a burst.
    pub attempts_burst: u32,
    /// Challenge answers one address may have decrypted per second, sustained.
    pub decrypts_per_sec: u32,
    /// Challenge answers one address may have decrypted in a burst.
    pub decrypts_burst: u32,
    /// Challenge answers decrypted per second from every address together.
    pub global_decrypts_per_sec: u32,
    /// Addresses whose buckets are remembered; beyond it, new addresses are refused.
    pub max_tracked_addrs: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_pending: 4096,
            max_pending_per_addr: 64,
            attempts_per_sec: 20,
            attempts_burst: 100,
            decrypts_per_sec: 20,
            decrypts_burst: 100,
            global_decrypts_per_sec: 200,
            max_tracked_addrs: 65_536,
        }
    }
}

/// Why a connection or a decryption was refused. The text is what the client is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `max_pending` handshakes are under way.
    #[error("too many handshakes in progress on this supervisor, retry later")]
    Busy,
    /// `max_pending_per_addr` handshakes from this address are under way.
    #[error("too many handshakes in progress from your address")]
    AddrPending,
    /// This address started too many handshakes lately.
    #[error("too many handshakes from your address, retry in {retry_after_ms} ms")]
    AddrRate {
        /// When the address's bucket holds a token again.
        retry_after_ms: u64,
    },
    /// Too many challenge answers to decrypt, from this address or in all.
    #[error("too many authentication answers, retry in {retry_after_ms} ms")]
    DecryptRate {
        /// When a token is available again.
        retry_after_ms: u64,
    },
    /// The address table is full of addresses with state.
    #[error("too many clients are connecting, retry later")]
    TooManyAddrs,
}

impl Refusal {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::AddrPending => "addr_pending",
            Self::AddrRate { .. } => "addr_rate",
            Self::DecryptRate { .. } => "decrypt_rate",
            Self::TooManyAddrs => "too_many_addrs",
        }
    }

    /// Every label, in a fixed order.
    pub const LABELS: [&'static str; 5] = [
        "busy",
        "addr_pending",
        "addr_rate",
        "decrypt_rate",
        "too_many_addrs",
    ];

    /// Milliseconds after which trying again can succeed, when known.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Self::AddrRate { retry_after_ms } | Self::DecryptRate { retry_after_ms } => {
                Some(*retry_after_ms)
            }
            Self::Busy | Self::AddrPending | Self::TooManyAddrs => None,
        }
    }
}

/// A token bucket on a millisecond clock. Tokens are kept in thousandths so rates below one per
/// millisecond refill exactly.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli_tokens: u64,
    at_ms: u64,
}

impl Bucket {
    fn full(burst: u32, now_ms: u64) -> Self {
        Self {
            milli_tokens: u64::from(burst) * 1000,
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, rate: u32, burst: u32, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        // rate tokens per second = rate milli-tokens per millisecond.
        let gained = elapsed.saturating_mul(u64::from(rate));
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(gained)
            .min(u64::from(burst) * 1000);
        self.at_ms = self.at_ms.max(now_ms);
    }

    fn is_full(&self, burst: u32) -> bool {
        self.milli_tokens >= u64::from(burst) * 1000
    }

    /// Milliseconds until one token is there (0: now).
    fn wait_ms(&self, rate: u32) -> u64 {
        let missing = 1000u64.saturating_sub(self.milli_tokens);
        if missing == 0 {
            0
        } else if rate == 0 {
            u64::MAX
        } else {
            missing.div_ceil(u64::from(rate))
        }
    }

    fn take(&mut self) {
        self.milli_tokens -= 1000;
    }
}

#[derive(Clone, Copy, Debug)]
struct AddrState {
    pending: usize,
    attempts: Bucket,
    decrypts: Bucket,
}

/// Counts of what admission decided, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionCounters {
    /// Connections admitted to the handshake.
    pub admitted: u64,
    /// Refusals by [`Refusal::label`], in the order of [`Refusal::LABELS`].
    pub refused: [u64; 5],
    /// Challenge answers allowed to be decrypted.
    pub decrypts: u64,
}

/// The admission state of one supervisor.
#[derive(Debug)]
pub struct Admission {
    config: AdmissionConfig,
    pending: usize,
    addrs: HashMap<IpAddr, AddrState>,
    global_decrypts: Bucket,
    counters: AdmissionCounters,
}

impl Admission {
    /// No connection pending, every bucket full.
    pub fn new(config: AdmissionConfig, now_ms: u64) -> Self {
        let rate = config.global_decrypts_per_sec;
        Self {
            config,
            pending: 0,
            addrs: HashMap::new(),
            global_decrypts: Bucket::full(rate, now_ms),
            counters: AdmissionCounters::default(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Connections in their handshake now.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Connections in their handshake now from `addr` (or its /64).
    pub fn pending_from(&self, addr: IpAddr) -> usize {
        self.addrs.get(&key(addr)).map_or(0, |s| s.pending)
    }

    /// What was decided so far.
    pub fn counters(&self) -> AdmissionCounters {
        self.counters
    }

    /// A connection from `addr` wants to start a handshake. On `Ok` it counts as pending until
    /// [`Admission::release`] is called for the same address.
    pub fn admit(&mut self, addr: IpAddr, now_ms: u64) -> Result<(), Refusal> {
        let result = self.try_admit(key(addr), now_ms);
        match result {
            Ok(()) => self.counters.admitted += 1,
            Err(refusal) => self.count_refusal(refusal),
        }
        result
    }

    fn try_admit(&mut self, addr: IpAddr, now_ms: u64) -> Result<(), Refusal> {
        if self.pending >= self.config.max_pending {
            return Err(Refusal::Busy);
        }
        let c = self.config;
        let state = self.state_of(addr, now_ms)?;
        if state.pending >= c.max_pending_per_addr {
            return Err(Refusal::AddrPending);
        }
        state
            .attempts
            .refill(c.attempts_per_sec, c.attempts_burst, now_ms);
        let wait = state.attempts.wait_ms(c.attempts_per_sec);
        if wait > 0 {
            return Err(Refusal::AddrRate {
                retry_after_ms: wait,
            });
        }
        state.attempts.take();
        state.pending += 1;
        self.pending += 1;
        Ok(())
    }

    /// The handshake of a connection admitted from `addr` ended (authenticated, failed or closed).
    pub fn release(&mut self, addr: IpAddr) {
        if let Some(state) = self.addrs.get_mut(&key(addr)) {
            if state.pending > 0 {
                state.pending -= 1;
                self.pending -= 1;
            }
        }
    }

    /// A connection from `addr` sent its challenge answer: may the supervisor decrypt it now?
    pub fn decrypt(&mut self, addr: IpAddr, now_ms: u64) -> Result<(), Refusal> {
        let result = self.try_decrypt(key(addr), now_ms);
        match result {
            Ok(()) => self.counters.decrypts += 1,
            Err(refusal) => self.count_refusal(refusal),
        }
        result
    }

    fn try_decrypt(&mut self, addr: IpAddr, now_ms: u64) -> Result<(), Refusal> {
        let c = self.config;
        self.global_decrypts
            .refill(c.global_decrypts_per_sec, c.global_decrypts_per_sec, now_ms);
        let global_wait = self.global_decrypts.wait_ms(c.global_decrypts_per_sec);
        let state = self.state_of(addr, now_ms)?;
        state
            .decrypts
            .refill(c.decrypts_per_sec, c.decrypts_burst, now_ms);
        let wait = state.decrypts.wait_ms(c.decrypts_per_sec).max(global_wait);
        if wait > 0 {
            return Err(Refusal::DecryptRate {
                retry_after_ms: wait,
            });
        }
        state.decrypts.take();
        self.global_decrypts.take();
        Ok(())
    }

    fn count_refusal(&mut self, refusal: Refusal) {
        let i = Refusal::LABELS
            .iter()
            .position(|l| *l == refusal.label())
            .unwrap_or_default();
        self.counters.refused[i] += 1;
    }

    /// The state of `addr`, made if absent; forgets idle addresses when the table is full.
    fn state_of(&mut self, addr: IpAddr, now_ms: u64) -> Result<&mut AddrState, Refusal> {
        if !self.addrs.contains_key(&addr) && self.addrs.len() >= self.config.max_tracked_addrs {
            self.forget_idle(now_ms);
            if self.addrs.len() >= self.config.max_tracked_addrs {
                return Err(Refusal::TooManyAddrs);
            }
        }
        let c = self.config;
        Ok(self.addrs.entry(addr).or_insert_with(|| AddrState {
            pending: 0,
            attempts: Bucket::full(c.attempts_burst, now_ms),
            decrypts: Bucket::full(c.decrypts_burst, now_ms),
        }))
    }

    /// Drops every address that has nothing pending and whose buckets are full again: forgetting
    /// it changes no decision, since a new entry starts the same way.
    fn forget_idle(&mut self, now_ms: u64) {
        let c = self.config;
        self.addrs.retain(|_, s| {
            s.attempts
                .refill(c.attempts_per_sec, c.attempts_burst, now_ms);
            s.decrypts
                .refill(c.decrypts_per_sec, c.decrypts_burst, now_ms);
            s.pending > 0
                || !s.attempts.is_full(c.attempts_burst)
                || !s.decrypts.is_full(c.decrypts_burst)
        });
    }

    /// Addresses with state now.
    pub fn tracked_addrs(&self) -> usize {
        self.addrs.len()
    }
}

/// IPv4 (and IPv4-mapped IPv6) by address, other IPv6 by its /64.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn ipv6_hosts_in_one_64_share_a_budget() {
        let config = AdmissionConfig {
            max_pending_per_addr: 1,
            ..AdmissionConfig::default()
        };
        let mut a = Admission::new(config, 0);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(a.admit(one, 0), Ok(()));
        assert_eq!(a.admit(two, 0), Err(Refusal::AddrPending));
        assert_eq!(a.admit(other, 0), Ok(()));
        let mapped: IpAddr = "::ffff:127.0.0.9".parse().unwrap();
        assert_eq!(a.admit(mapped, 0), Ok(()));
        assert_eq!(a.pending_from(v4(9)), 1);
    }

    #[test]
    fn a_full_table_forgets_idle_addresses_first() {
        let config = AdmissionConfig {
            max_tracked_addrs: 2,
            ..AdmissionConfig::default()
        };
        let mut a = Admission::new(config, 0);
        assert_eq!(a.admit(v4(1), 0), Ok(()));
        assert_eq!(a.admit(v4(2), 0), Ok(()));
        assert_eq!(a.admit(v4(3), 0), Err(Refusal::TooManyAddrs));
        a.release(v4(1));
        // One token spent by 127.0.0.1 comes back after 1000/attempts_per_sec ms.
        assert_eq!(a.admit(v4(3), 10), Err(Refusal::TooManyAddrs));
        assert_eq!(a.admit(v4(3), 1000), Ok(()));
        assert_eq!(a.tracked_addrs(), 2);
    }

    #[test]
    fn decrypts_are_bounded_in_all() {
        let config = AdmissionConfig {
            global_decrypts_per_sec: 2,
            ..AdmissionConfig::default()
        };
        let mut a = Admission::new(config, 0);
        assert_eq!(a.decrypt(v4(1), 0), Ok(()));
        assert_eq!(a.decrypt(v4(2), 0), Ok(()));
        assert_eq!(
            a.decrypt(v4(3), 0),
            Err(Refusal::DecryptRate {
                retry_after_ms: 500
            })
        );
        assert_eq!(a.decrypt(v4(3), 500), Ok(()));
        assert_eq!(a.counters().decrypts, 3);
        assert_eq!(a.counters().refused[3], 1);
    }
}
