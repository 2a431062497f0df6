//! A contiguous watermark over sequence numbers: the highest `W` such that every seq `<= W` has
//! been marked. Marks may arrive out of order (lanes run concurrently).

use std::collections::BTreeSet;

use lockstep_journal::Seq;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Watermark {
    through: Seq,
    ahead: BTreeSet<Seq>,
}

impl Watermark {
    /// A watermark that already covers every seq `<= through`.
    pub fn starting_at(through: Seq) -> Self {
        Watermark {
            through,
            ahead: BTreeSet::new(),
        }
    }

    /// Every seq `<= through()` is marked.
    pub fn through(&self) -> Seq {
        self.through
    }

    /// The highest seq marked (contiguous or not).
    pub fn highest(&self) -> Seq {
        self.ahead.last().copied().unwrap_or(self.through)
    }

    /// Marks `seq`; returns the new watermark.
    pub fn mark(&mut self, seq: Seq) -> Seq {
        if seq <= self.through {
            return self.through;
        }
        self.ahead.insert(seq);
        while self.ahead.first() == Some(&(self.through + 1)) {
            self.ahead.pop_first();
            self.through += 1;
        }
        self.through
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn advances_only_over_contiguous_marks() {
        let mut w = Watermark::default();
        assert_eq!(w.mark(2), 0);
        assert_eq!(w.mark(3), 0);
        assert_eq!(w.mark(1), 3);
        assert_eq!(w.mark(5), 3);
        assert_eq!(w.mark(3), 3);
        assert_eq!(w.mark(4), 5);
        assert_eq!(w.highest(), 5);
        w.mark(9);
        assert_eq!((w.through(), w.highest()), (5, 9));
    }

    proptest! {
        #[test]
        fn any_permutation_of_1_to_n_ends_at_n(mut seqs in Just((1..=40u64).collect::<Vec<_>>()).prop_shuffle()) {
            let mut w = Watermark::default();
            let last = seqs.pop().unwrap();
            for s in &seqs { w.mark(*s); }
            prop_assert!(w.through() < last);
            prop_assert_eq!(w.mark(last), 40);
        }
    }
}
