//! A task's finished, unjoined children, by tid: the lowest tid is joined first.
//!
//! Tids grow, and children mostly finish in the order they were spawned, so the children sit
//! in a deque in tid order: a finished child is pushed at the back and join-any pops the front,
//! both amortized O(1) with no allocation per child once the deque has grown. A child that
//! finishes a little out of order is inserted near the back; one far out of order goes to an
//! ordered map beside the deque. A child joined by tid from the middle leaves a hole that the
//! deque drops when it reaches either end (or when holes outnumber the children).

use std::collections::{BTreeMap, VecDeque};

use crate::task::{Outcome, Tid};

/// How far from the back of the deque an out-of-order child is still inserted in place.
const NEAR_BACK: usize = 32;

/// A task's finished, unjoined children by tid. Most tasks hold none or one at a time (spawn,
/// then join), which needs no allocation; more go to a [`Many`].
pub(crate) enum Finished {
    Empty,
    One(Tid, Outcome),
    Many(Box<Many>),
}

/// More than one finished child.
pub(crate) struct Many {
    /// In ascending tid order; `None` is a child taken out by tid. Its ends are never `None`.
    run: VecDeque<(Tid, Option<Outcome>)>,
    /// The `Some` entries of `run`.
    live: usize,
    /// Children that finished far out of order (tids below the back of `run`, not in it).
    late: BTreeMap<Tid, Outcome>,
}

impl Many {
    fn new() -> Self {
        Many { run: VecDeque::new(), live: 0, late: BTreeMap::new() }
    }

    fn len(&self) -> usize {
        self.live + self.late.len()
    }

    /// The index of `tid` in `run`, if it is there (a hole included).
    fn find(&self, tid: Tid) -> Option<usize> {
        let i = self.run.partition_point(|(t, _)| *t < tid);
        (i < self.run.len() && self.run[i].0 == tid).then_some(i)
    }

    fn contains_key(&self, tid: Tid) -> bool {
        match self.find(tid) {
            Some(i) => self.run[i].1.is_some(),
            None => self.late.contains_key(&tid),
        }
    }

    fn insert(&mut self, tid: Tid, outcome: Outcome) {
        let at = match self.run.back() {
            None => 0,
            Some((last, _)) if *last < tid => self.run.len(),
            Some(_) => self.run.partition_point(|(t, _)| *t < tid),
        };
        if at < self.run.len() && self.run[at].0 == tid {
            // A hole left by the same tid (a tid is never reused, but stay a map).
            if self.run[at].1.replace(outcome).is_none() {
                self.live += 1;
            }
        } else if self.run.len() - at <= NEAR_BACK {
            self.run.insert(at, (tid, Some(outcome)));
            self.live += 1;
        } else {
            self.late.insert(tid, outcome);
        }
    }

    /// Drops the holes at both ends of `run`, and all of them once they outnumber the children
    /// (so that the holes cost at most one entry per child).
    fn tidy(&mut self) {
        while self.run.front().is_some_and(|(_, o)| o.is_none()) {
            self.run.pop_front();
        }
        while self.run.back().is_some_and(|(_, o)| o.is_none()) {
            self.run.pop_back();
        }
        if self.run.len() - self.live > self.live.max(NEAR_BACK) {
            self.run.retain(|(_, o)| o.is_some());
        }
    }

    fn remove(&mut self, tid: Tid) -> Option<Outcome> {
        match self.find(tid) {
            Some(i) => {
                let o = self.run[i].1.take()?;
                self.live -= 1;
                self.tidy();
                Some(o)
            }
            None => self.late.remove(&tid),
        }
    }

    fn pop_first(&mut self) -> Option<(Tid, Outcome)> {
        let front = self.run.front().map(|(t, _)| *t);
        let late = self.late.first_key_value().map(|(t, _)| *t);
        match (front, late) {
            (Some(f), Some(l)) if l < f => self.late.pop_first(),
            (Some(_), _) => {
                let (t, o) = self.run.pop_front().expect("a front");
                self.live -= 1;
                self.tidy();
                Some((t, o.expect("the ends of the run are children")))
            }
            (None, _) => self.late.pop_first(),
        }
    }

    /// The outcomes in ascending tid order.
    fn into_values(self) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(self.len());
        let mut late = self.late.into_iter().peekable();
        for (t, o) in self.run {
            while let Some(l) = late.next_if(|(l, _)| *l < t) {
                out.push(l.1);
            }
            out.extend(o);
        }
        out.extend(late.map(|(_, o)| o));
        out
    }
}

impl Finished {
    pub(crate) fn len(&self) -> usize {
        match self {
            Finished::Empty => 0,
            Finished::One(..) => 1,
            Finished::Many(m) => m.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn contains_key(&self, tid: &Tid) -> bool {
        match self {
            Finished::Empty => false,
            Finished::One(t, _) => t == tid,
            Finished::Many(m) => m.contains_key(*tid),
        }
    }

    pub(crate) fn insert(&mut self, tid: Tid, outcome: Outcome) {
        match self {
            Finished::Empty => *self = Finished::One(tid, outcome),
            Finished::One(t, _) if *t == tid => *self = Finished::One(tid, outcome),
            Finished::One(..) => {
                let Finished::One(t, o) = std::mem::replace(self, Finished::Empty) else { unreachable!() };
                let mut m = Box::new(Many::new());
                m.insert(t, o);
                m.insert(tid, outcome);
                *self = Finished::Many(m);
            }
            Finished::Many(m) => m.insert(tid, outcome),
        }
    }

    pub(crate) fn remove(&mut self, tid: &Tid) -> Option<Outcome> {
        match self {
            Finished::One(t, _) if t == tid => match std::mem::replace(self, Finished::Empty) {
                Finished::One(_, o) => Some(o),
                _ => unreachable!(),
            },
            Finished::Many(m) => m.remove(*tid),
            _ => None,
        }
    }

    /// The finished child with the lowest tid.
    pub(crate) fn pop_first(&mut self) -> Option<(Tid, Outcome)> {
        match self {
            Finished::Empty => None,
            Finished::One(..) => match std::mem::replace(self, Finished::Empty) {
                Finished::One(t, o) => Some((t, o)),
                _ => unreachable!(),
            },
            Finished::Many(m) => m.pop_first(),
        }
    }

    /// The outcomes, lowest tid first (the order in which they are dropped at teardown).
    pub(crate) fn into_values(self) -> Vec<Outcome> {
        match self {
            Finished::Empty => Vec::new(),
            Finished::One(_, o) => vec![o],
            Finished::Many(m) => m.into_values(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn out(n: u64) -> Outcome {
        Err(Error::Cancelled(Tid(n)))
    }

    fn tid_of(o: &Outcome) -> u64 {
        match o {
            Err(Error::Cancelled(t)) => t.0,
            _ => unreachable!(),
        }
    }

    fn fill(tids: impl IntoIterator<Item = u64>) -> Finished {
        let mut f = Finished::Empty;
        for t in tids {
            f.insert(Tid(t), out(t));
        }
        f
    }

    fn drain(mut f: Finished) -> Vec<u64> {
        let mut v = Vec::new();
        while let Some((t, o)) = f.pop_first() {
            assert_eq!(t.0, tid_of(&o));
            v.push(t.0);
        }
        assert!(f.is_empty());
        v
    }

    #[test]
    fn empty_and_one_need_no_map() {
        let mut f = Finished::Empty;
        assert!(f.is_empty());
        assert!(f.pop_first().is_none());
        f.insert(Tid(5), out(5));
        assert!(matches!(f, Finished::One(..)));
        assert_eq!(f.len(), 1);
        assert!(f.contains_key(&Tid(5)) && !f.contains_key(&Tid(4)));
        assert!(f.remove(&Tid(4)).is_none());
        assert_eq!(f.remove(&Tid(5)).map(|o| tid_of(&o)), Some(5));
        assert!(f.is_empty());
    }

    #[test]
    fn in_order_lowest_first() {
        assert_eq!(drain(fill(1..=1000)), (1..=1000).collect::<Vec<_>>());
    }

    #[test]
    fn any_order_lowest_first() {
        // Reversed (all far out of order), near-back swaps, and a scrambled order.
        let reversed: Vec<u64> = (1..=500).rev().collect();
        let swapped: Vec<u64> = (1..=500).map(|i| if i % 2 == 0 { i - 1 } else { i + 1 }).collect();
        let scrambled: Vec<u64> = (0..500u64).map(|i| (i * 7919) % 500 + 1).collect();
        for order in [reversed, swapped, scrambled] {
            let f = fill(order.iter().copied());
            assert_eq!(f.len(), 500);
            assert_eq!(drain(f), (1..=500).collect::<Vec<_>>());
        }
    }

    #[test]
    fn remove_by_tid_and_pop_mixed() {
        let mut f = fill((1..=200).chain(300..=400).chain(201..=299));
        for t in (2..=400).step_by(3) {
            assert!(f.contains_key(&Tid(t)));
            assert_eq!(f.remove(&Tid(t)).map(|o| tid_of(&o)), Some(t));
            assert!(!f.contains_key(&Tid(t)));
            assert!(f.remove(&Tid(t)).is_none());
        }
        let expect: Vec<u64> = (1..=400).filter(|t| (t + 1) % 3 != 0).collect();
        assert_eq!(f.len(), expect.len());
        assert_eq!(drain(f), expect);
    }

    #[test]
    fn holes_stay_bounded() {
        let mut f = fill(1..=10_000);
        for t in (1..=10_000).filter(|t| t % 100 != 0) {
            f.remove(&Tid(t));
        }
        let Finished::Many(m) = &f else { panic!("many") };
        assert_eq!(m.live, 100);
        assert!(m.run.len() <= 2 * 100 + NEAR_BACK + 1, "{} entries for 100 children", m.run.len());
        assert_eq!(drain(f), (1..=100).map(|i| i * 100).collect::<Vec<_>>());
    }

    #[test]
    fn into_values_in_tid_order() {
        let mut f = fill((100..=200).chain([5, 7, 1, 300]).chain((50..60).rev()));
        f.remove(&Tid(120));
        let got: Vec<u64> = f.into_values().iter().map(tid_of).collect();
        let mut want: Vec<u64> =
            (100..=200).filter(|t| *t != 120).chain([5, 7, 1, 300]).chain(50..60).collect();
        want.sort_unstable();
        assert_eq!(got, want);
    }
}
