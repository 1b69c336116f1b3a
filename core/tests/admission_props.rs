//! Property tests of admission: the caps hold under any sequence of arrivals and departures, a
//! refused address is admitted again once its window has passed, and an address that keeps to the
//! configured rate is never refused.

use ownstream_core::admission::{Admission, AdmissionConfig, Refusal};
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

fn addr(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))
}

fn small() -> AdmissionConfig {
    AdmissionConfig {
        max_pending: 12,
        max_pending_per_addr: 4,
        attempts_per_sec: 5,
        attempts_burst: 8,
        decrypts_per_sec: 3,
        decrypts_burst: 4,
        global_decrypts_per_sec: 10,
        max_tracked_addrs: 6,
    }
}

#[derive(Clone, Debug)]
enum Op {
    Admit(u8),
    Release(u8),
    Decrypt(u8),
}

fn op() -> impl Strategy<Value = (Op, u64)> {
    let which = prop_oneof![
        3 => (0u8..8).prop_map(Op::Admit),
        2 => (0u8..8).prop_map(Op::Release),
        1 => (0u8..8).prop_map(Op::Decrypt),
    ];
    (which, 0u64..400)
}

proptest! {
    #[test]
    fn pending_never_exceeds_the_caps(ops in prop::collection::vec(op(), 1..400)) {
        let c = small();
        let mut a = Admission::new(c, 0);
        let mut held: HashMap<u8, usize> = HashMap::new();
        let mut now = 0;
        let mut decrypts_at: Vec<u64> = Vec::new();
        for (op, dt) in ops {
            now += dt;
            match op {
                Op::Admit(i) => {
                    if a.admit(addr(i), now).is_ok() {
                        *held.entry(i).or_default() += 1;
                    }
                }
                Op::Release(i) => {
                    // Only connections that were admitted are released, as the shell does.
                    if let Some(n) = held.get_mut(&i).filter(|n| **n > 0) {
                        *n -= 1;
                        a.release(addr(i));
                    }
                }
                Op::Decrypt(i) => {
                    if a.decrypt(addr(i), now).is_ok() {
                        decrypts_at.push(now);
                    }
                }
            }
            let total: usize = held.values().sum();
            prop_assert_eq!(a.pending(), total);
            prop_assert!(a.pending() <= c.max_pending);
            for (i, n) in &held {
                prop_assert_eq!(a.pending_from(addr(*i)), *n);
                prop_assert!(*n <= c.max_pending_per_addr);
            }
            prop_assert!(a.tracked_addrs() <= c.max_tracked_addrs);
            // In any one-second window, at most a full bucket plus what refills in that second.
            let recent = decrypts_at.iter().filter(|t| **t + 1000 > now).count() as u64;
            prop_assert!(recent <= 2 * u64::from(c.global_decrypts_per_sec));
        }
    }

    #[test]
    fn a_refused_address_recovers_after_its_window(
        extra in 1u32..20,
        wait_slack in 0u64..5_000,
    ) {
        let c = small();
        let mut a = Admission::new(c, 0);
        let me = addr(1);
        // Spend the whole burst (releasing each at once) and then some.
        let mut refused = None;
        for _ in 0..(c.attempts_burst + extra) {
            match a.admit(me, 0) {
                Ok(()) => a.release(me),
                Err(r) => refused = Some(r),
            }
        }
        let Some(Refusal::AddrRate { retry_after_ms }) = refused else {
            return Err(TestCaseError::fail("the burst was not limited"));
        };
        prop_assert!(a.admit(me, retry_after_ms - 1).is_err());
        prop_assert_eq!(a.admit(me, retry_after_ms + wait_slack), Ok(()));
        // Another address was never affected.
        prop_assert_eq!(a.admit(addr(2), 0), Ok(()));
    }

    #[test]
    fn an_address_at_the_configured_rate_is_never_refused(
        rate in 1u32..50,
        burst in 1u32..50,
        n in 1usize..300,
        jitter in prop::collection::vec(0u64..50, 300),
    ) {
        let c = AdmissionConfig {
            attempts_per_sec: rate,
            attempts_burst: burst,
            decrypts_per_sec: rate,
            decrypts_burst: burst,
            global_decrypts_per_sec: rate,
            ..small()
        };
        let mut a = Admission::new(c, 0);
        let me = addr(7);
        let interval = 1000u64.div_ceil(u64::from(rate));
        let mut now = 0;
        for j in jitter.iter().take(n) {
            // At most one attempt per interval; a late one never hurts.
            now += interval + j;
            prop_assert_eq!(a.admit(me, now), Ok(()));
            prop_assert_eq!(a.decrypt(me, now), Ok(()));
            a.release(me);
        }
    }

    #[test]
    fn caps_refuse_with_the_right_reason(k in 1usize..10) {
        let c = AdmissionConfig {
            max_pending_per_addr: k,
            max_pending: 2 * k,
            attempts_burst: 100,
            ..small()
        };
        let mut a = Admission::new(c, 0);
        for _ in 0..k {
            prop_assert_eq!(a.admit(addr(1), 0), Ok(()));
        }
        prop_assert_eq!(a.admit(addr(1), 0), Err(Refusal::AddrPending));
        for _ in 0..k {
            prop_assert_eq!(a.admit(addr(2), 0), Ok(()));
        }
        prop_assert_eq!(a.admit(addr(3), 0), Err(Refusal::Busy));
        a.release(addr(1));
        prop_assert_eq!(a.admit(addr(3), 0), Ok(()));
        let refused = a.counters().refused;
        prop_assert_eq!(refused[0], 1);
        prop_assert_eq!(refused[1], 1);
    }
}
