//! A Wing–Gong linearizability checker (with Lowe's memoization of visited configurations) for
//! one bank account seen as a counter: deposits of 1 that return the new balance, and reads that
//! return the balance.
//!
//! Operations are intervals of simulated time. An operation that never returned (`returned =
//! None`) may take effect at any point after its invocation, or never.

use std::collections::HashSet;
use std::time::Duration;

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A deposit of 1; the balance it returned, when it returned.
    Deposit(Option<i64>),
    /// A read; the balance it returned.
    Read(i64),
}

/// One operation on the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub invoked: Duration,
    pub returned: Option<Duration>,
    pub action: Action,
}

/// The most operations one history may hold (one bit each).
pub const MAX_OPERATIONS: usize = 128;

/// Whether `history` (at most [`MAX_OPERATIONS`] operations) is linearizable for a counter that
/// starts at 0.
pub fn is_linearizable(history: &[Operation]) -> bool {
    assert!(
        history.len() <= MAX_OPERATIONS,
        "a history of {} operations is over the checker's limit",
        history.len()
    );
    let required: u128 = history
        .iter()
        .enumerate()
        .filter(|(_, op)| op.returned.is_some())
        .fold(0, |mask, (i, _)| mask | 1 << i);
    let mut seen = HashSet::new();
    search(history, required, 0, 0, &mut seen)
}

/// Depth-first search over linearization orders: `done` holds the operations already placed,
/// `balance` is the counter after them.
fn search(
    history: &[Operation],
    required: u128,
    done: u128,
    balance: i64,
    seen: &mut HashSet<(u128, i64)>,
) -> bool {
    if done & required == required {
        return true;
    }
    if !seen.insert((done, balance)) {
        return false;
    }
    // The earliest return among the operations not placed yet: an operation invoked after it
    // cannot come next, because that one finished before it started.
    let horizon = history
        .iter()
        .enumerate()
        .filter(|(i, _)| done & (1 << i) == 0)
        .filter_map(|(_, op)| op.returned)
        .min();
    for (i, op) in history.iter().enumerate() {
        if done & (1 << i) != 0 || horizon.is_some_and(|h| h < op.invoked) {
            continue;
        }
        let next = match op.action {
            Action::Deposit(returned) if returned.is_none_or(|b| b == balance + 1) => balance + 1,
            Action::Read(seen_balance) if seen_balance == balance => balance,
            _ => continue,
        };
        if search(history, required, done | 1 << i, next, seen) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(from: u64, to: Option<u64>, action: Action) -> Operation {
        Operation {
            invoked: Duration::from_millis(from),
            returned: to.map(Duration::from_millis),
            action,
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [
            op(0, Some(1), Action::Deposit(Some(1))),
            op(2, Some(3), Action::Read(1)),
            op(4, Some(5), Action::Deposit(Some(2))),
        ];
        assert!(is_linearizable(&h));
    }

    #[test]
    fn stale_read_after_a_completed_deposit_is_not() {
        let h = [
            op(0, Some(1), Action::Deposit(Some(1))),
            op(2, Some(3), Action::Read(0)),
        ];
        assert!(!is_linearizable(&h));
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        for seen in [0, 1] {
            let h = [
                op(0, Some(10), Action::Deposit(Some(1))),
                op(2, Some(3), Action::Read(seen)),
            ];
            assert!(is_linearizable(&h), "read {seen}");
        }
    }

    #[test]
    fn reads_going_backwards_are_not() {
        let h = [
            op(0, Some(10), Action::Deposit(Some(1))),
            op(1, Some(2), Action::Read(1)),
            op(3, Some(4), Action::Read(0)),
        ];
        assert!(!is_linearizable(&h));
    }

    #[test]
    fn a_duplicated_deposit_is_not() {
        let h = [
            op(0, Some(1), Action::Deposit(Some(1))),
            op(2, Some(3), Action::Read(2)),
        ];
        assert!(!is_linearizable(&h));
    }

    #[test]
    fn a_pending_deposit_may_or_may_not_have_happened() {
        let h = [
            op(0, None, Action::Deposit(None)),
            op(2, Some(3), Action::Read(1)),
            op(4, Some(5), Action::Read(1)),
        ];
        assert!(is_linearizable(&h));
        let h = [
            op(0, None, Action::Deposit(None)),
            op(2, Some(3), Action::Read(0)),
        ];
        assert!(is_linearizable(&h));
    }
}
