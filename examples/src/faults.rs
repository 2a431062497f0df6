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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_the_requested_amount_by_default() {
        assert_eq!(Faults::default().deposit_amount(10, 1_000), 10);
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
