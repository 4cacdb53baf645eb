//! Deadlines: of blocked joins (`join_timeout`) and of remote tasks (`Spawn::time_limit`).

use std::collections::BTreeSet;
use std::time::Instant;

use crate::task::Tid;

/// Pending deadlines, earliest first. A task has at most one deadline that counts: the one in
/// its entry. An entry whose deadline was cleared may leave its timer behind; whoever pops a
/// timer checks it against the entry and ignores a stale one.
#[derive(Default)]
pub(crate) struct Timers {
    set: BTreeSet<(Instant, Tid)>,
}

impl Timers {
    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub(crate) fn insert(&mut self, at: Instant, tid: Tid) {
        self.set.insert((at, tid));
    }

    pub(crate) fn remove(&mut self, at: Instant, tid: Tid) {
        self.set.remove(&(at, tid));
    }

    /// The earliest deadline, if any.
    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.set.first().map(|&(at, _)| at)
    }

    /// Takes out the earliest timer if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Tid)> {
        match self.set.first() {
            Some(&(at, _)) if at <= now => self.set.pop_first(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timers_come_due_in_deadline_order() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = Timers::default();
        assert!(timers.is_empty() && timers.earliest().is_none());
        timers.insert(ms(30), Tid(2));
        timers.insert(ms(10), Tid(3));
        timers.insert(ms(20), Tid(4));
        timers.insert(ms(10), Tid(5));
        timers.remove(ms(20), Tid(4));
        assert_eq!(timers.earliest(), Some(ms(10)));
        assert_eq!(timers.pop_due(ms(5)), None, "nothing is due before its deadline");
        assert_eq!(timers.pop_due(ms(25)), Some((ms(10), Tid(3))));
        assert_eq!(timers.pop_due(ms(25)), Some((ms(10), Tid(5))));
        assert_eq!(timers.pop_due(ms(25)), None, "the removed timer does not come");
        assert_eq!(timers.pop_due(ms(30)), Some((ms(30), Tid(2))));
        assert!(timers.is_empty());
    }
}
