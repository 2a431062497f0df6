//! Deliberate misbehaviour for tests: a slow backend and a backend that drifts.
//!
//! Both are off by default; a correct demo instance has `Faults::default()`.

use std::time::Duration;

/// Faults injected into an otherwise correct instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// After this many successful state changes, every deposit credits `amount + 1`, so the
    /// instance's answers and state drift from a correct copy.
    pub diverge_after: Option<u64>,
    /// Sleep this long before handling every POST or DELETE, to look like a slow backend.
    pub delay: Duration,
    /// Refuse about this percentage of POST and DELETE requests without processing them, with
    /// `503` or `429` and `Retry-After: 0`, as a service shedding load does. The choice is a
    /// pure function of the request's number, so a run can be repeated.
    pub shed_percent: u8,
}

impl Faults {
    /// The amount a deposit actually credits, given how many writes succeeded before it.
    pub(crate) fn deposit_amount(&self, requested: i64, writes_so_far: u64) -> i64 {
        match self.diverge_after {
            // `requested` is at most MAX_AMOUNT, so the +1 cannot overflow.
            Some(n) if writes_so_far >= n => requested + 1,
            _ => requested,
        }
    }
}

impl Faults {
    /// Whether the `n`th request is shed, and with which status (`503` or `429`).
    pub(crate) fn shed(&self, n: u64) -> Option<u16> {
        if self.shed_percent == 0 {
            return None;
        }
        // A 64-bit mix (splitmix64's finalizer) of the request number: spread, repeatable.
        let mut x = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        (x % 100 < u64::from(self.shed_percent)).then_some(if x & 0x100 == 0 { 503 } else { 429 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_the_requested_amount_by_default() {
        assert_eq!(Faults::default().deposit_amount(10, 1_000), 10);
    }

    #[test]
    fn sheds_about_the_requested_share_with_both_statuses() {
        let faults = Faults {
            shed_percent: 10,
            ..Faults::default()
        };
        let shed: Vec<u16> = (0..10_000).filter_map(|n| faults.shed(n)).collect();
        assert!((800..1200).contains(&shed.len()), "{}", shed.len());
        assert!(shed.contains(&503) && shed.contains(&429));
        assert_eq!(Faults::default().shed(7), None);
    }

    #[test]
    fn credits_one_more_once_diverged() {
        let faults = Faults {
            diverge_after: Some(3),
            ..Faults::default()
        };
        assert_eq!(faults.deposit_amount(10, 2), 10);
        assert_eq!(faults.deposit_amount(10, 3), 11);
    }
}
