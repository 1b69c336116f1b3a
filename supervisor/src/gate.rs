//! The shell around [`ownstream_core::admission::Admission`]: one lock, the supervisor's clock, and
//! a guard that gives a connection's handshake slot back however the connection ends.

use crate::hub::now_ms;
use ownstream_core::admission::{Admission, AdmissionConfig, AdmissionCounters, Refusal};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Admission shared by every connection of one supervisor.
#[derive(Clone, Debug)]
pub struct Gate {
    inner: Arc<Mutex<Admission>>,
}

impl Gate {
    /// A gate with these limits.
    pub fn new(config: AdmissionConfig) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Admission::new(config, now_ms()))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Admission> {
        // The core never panics while the lock is held; if a thread did, its counts are still sane.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks to start a handshake from `addr`; the slot is held until the [`Pending`] is dropped.
    pub fn admit(&self, addr: IpAddr) -> Result<Pending, Refusal> {
        self.lock().admit(addr, now_ms())?;
        Ok(Pending {
            gate: self.clone(),
            addr,
        })
    }

    /// Asks to decrypt a challenge answer from `addr` now.
    pub fn decrypt(&self, addr: IpAddr) -> Result<(), Refusal> {
        self.lock().decrypt(addr, now_ms())
    }

    /// Handshakes in progress and the totals so far.
    pub fn snapshot(&self) -> (usize, AdmissionCounters) {
        let a = self.lock();
        (a.pending(), a.counters())
    }
}

/// One admitted connection's handshake slot.
#[derive(Debug)]
pub struct Pending {
    gate: Gate,
    addr: IpAddr,
}

impl Pending {
    /// The address the connection came from.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.gate.lock().release(self.addr);
    }
}
