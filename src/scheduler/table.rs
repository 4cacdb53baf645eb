//! The task table: every task that has not finished, by tid, and the invariants that tie the
//! entries together (child counts, the count of remote tasks).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use crate::coroutine::LocalTask;
pub(crate) use crate::scheduler::finished::Finished;
use crate::syscall::{SysReturn, Tids};
use crate::task::{Outcome, Tid};
use crate::vm::{HostId, TaskId};

/// What a blocked task waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wait {
    /// A blocking join on these tids (empty: any child).
    Join(Tids),
    /// A blocking remote spawn waiting for a free slot (on a host, or on any).
    Slot(Option<HostId>),
    /// A receive waiting for a message from a remote task.
    Message,
}

/// A task's state as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Can run (it may or may not be in the ready queue).
    Runnable,
    /// Blocked in a system call.
    Waiting(Wait),
}

/// A remote task as the spawner knows it.
pub(crate) struct Remote {
    /// Turns its result bytes into its value.
    pub decode: fn(&[u8]) -> Outcome,
    /// Its id in the machine once it started; `None` while it waits for a slot.
    pub id: Option<TaskId>,
}

/// What runs a task.
pub(crate) enum Body {
    /// The main program (tid 1), running on the thread's own stack.
    Main,
    /// A local coroutine; `None` while it runs (the driver holds it then).
    Local(Option<LocalTask>),
    /// A task on a worker of the virtual machine.
    Remote(Remote),
}

/// One task that has not finished. Its body and its count of running children change only
/// through the [`TaskTable`], which keeps the counts that depend on them.
pub(crate) struct Entry {
    pub parent: Tid,
    /// Running children.
    children: usize,
    /// Finished children not joined yet; the lowest tid is joined first.
    pub finished: Finished,
    pub state: State,
    /// Whether it is in the ready queue (a task is never queued twice).
    pub scheduled: bool,
    body: Body,
    /// The answer it gets when it next runs.
    pub sendval: SysReturn,
    /// When its blocking join gives up (local tasks), or when it is cancelled (remote tasks).
    pub deadline: Option<Instant>,
    /// The task group of its parent's that it belongs to, if any.
    pub group: Option<u64>,
}

impl Entry {
    pub(crate) fn new(parent: Tid, body: Body) -> Self {
        Entry {
            parent,
            children: 0,
            finished: Finished::Empty,
            state: State::Runnable,
            scheduled: false,
            body,
            sendval: SysReturn::Nothing,
            deadline: None,
            group: None,
        }
    }

    pub(crate) fn is_remote(&self) -> bool {
        matches!(self.body, Body::Remote(_))
    }

    pub(crate) fn is_main(&self) -> bool {
        matches!(self.body, Body::Main)
    }

    /// Running children.
    pub(crate) fn children(&self) -> usize {
        self.children
    }

    /// A local task's coroutine slot (`None` inside while the task runs).
    pub(crate) fn local_slot(&mut self) -> Option<&mut Option<LocalTask>> {
        match &mut self.body {
            Body::Local(slot) => Some(slot),
            _ => None,
        }
    }

    /// A remote task's record.
    pub(crate) fn remote(&self) -> Option<&Remote> {
        match &self.body {
            Body::Remote(r) => Some(r),
            _ => None,
        }
    }
}

/// Tids are dense and sequential, so a multiplicative hash spreads them well at a fraction of
/// SipHash's cost.
#[derive(Default)]
pub(crate) struct TidHasher(u64);

impl Hasher for TidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ self.0.rotate_left(5)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A hash map keyed by small integers (tids, machine task ids).
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<TidHasher>>;

/// What [`TaskTable::remove`] keeps of a finished task's entry.
pub(crate) struct Removed {
    pub parent: Tid,
    /// Its finished children not joined (now orphans' values).
    pub finished: Finished,
    pub deadline: Option<Instant>,
    pub group: Option<u64>,
}

/// Where a task's entry lives: its tid and its slot in the [`TaskTable`]. The hot paths (the
/// ready queue, the running task) hold keys and reach the entry without a hash lookup; a key
/// whose task has finished finds nothing, even once its slot holds another task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    pub tid: Tid,
    slot: u32,
}

impl Key {
    /// The main program's key: it has slot 0 for the table's whole life.
    pub(crate) const MAIN: Key = Key { tid: Tid::MAIN, slot: 0 };
}

/// One slot of the table: the entry of task `tid`, or a free slot (`entry` is `None`, and
/// `tid` is the scheduler's, which no key names).
struct Slot {
    tid: Tid,
    entry: Option<Entry>,
}

/// Every task that has not finished, with its counts kept as entries come and go (and
/// published for the calls that cannot borrow the scheduler, see [`crate::context`]).
///
/// The entries live in a slab: a vector of slots reused through a free list, so that a spawn
/// writes its entry in place and a [`Key`] reaches it by index. A map from tid to slot serves
/// the lookups by tid (a join, a cancel, a parent); the main program's slot is always 0 and
/// needs no lookup.
///
/// Invariants it keeps: `index` maps exactly the tids of the occupied slots but the main
/// program's; `remote` is the number of entries whose body is [`Body::Remote`]; a child added
/// with [`insert_child`](Self::insert_child) counts in its parent's `children`, and
/// [`remove`](Self::remove) takes it out of that count again.
pub(crate) struct TaskTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: FastMap<Tid, u32>,
    len: usize,
    remote: usize,
}

impl TaskTable {
    /// A table holding the main program's entry only.
    pub(crate) fn new() -> Self {
        let main = Slot { tid: Tid::MAIN, entry: Some(Entry::new(Tid::SCHEDULER, Body::Main)) };
        let table =
            TaskTable { slots: vec![main], free: Vec::new(), index: FastMap::default(), len: 1, remote: 0 };
        table.publish();
        table
    }

    fn publish(&self) {
        crate::context::set_counts(self.len, self.remote);
    }

    /// Unfinished remote tasks (those waiting for a slot included).
    pub(crate) fn remote_count(&self) -> usize {
        self.remote
    }

    /// The key of `tid`'s entry, if it has one.
    #[inline]
    pub(crate) fn key(&self, tid: Tid) -> Option<Key> {
        if tid == Tid::MAIN {
            return Some(Key::MAIN);
        }
        self.index.get(&tid).map(|&slot| Key { tid, slot })
    }

    /// The entry `key` names, if its task has not finished.
    #[inline]
    pub(crate) fn at(&mut self, key: Key) -> Option<&mut Entry> {
        match self.slots.get_mut(key.slot as usize) {
            Some(Slot { tid, entry }) if *tid == key.tid => entry.as_mut(),
            _ => None,
        }
    }

    pub(crate) fn get(&self, tid: &Tid) -> Option<&Entry> {
        let key = self.key(*tid)?;
        self.slots[key.slot as usize].entry.as_ref()
    }

    pub(crate) fn get_mut(&mut self, tid: &Tid) -> Option<&mut Entry> {
        let key = self.key(*tid)?;
        self.slots[key.slot as usize].entry.as_mut()
    }

    pub(crate) fn contains_key(&self, tid: &Tid) -> bool {
        self.key(*tid).is_some()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Tid, &Entry)> {
        self.slots.iter().filter_map(|s| s.entry.as_ref().map(|e| (&s.tid, e)))
    }

    /// Adds `parent`'s new child `tid` running `body`; its key.
    ///
    /// # Panics
    /// When `parent` has no entry (a spawner is always present while it spawns).
    pub(crate) fn insert_child(&mut self, parent: Tid, tid: Tid, body: Body) -> Key {
        debug_assert!(!self.contains_key(&tid), "tid {tid} reused");
        self.remote += usize::from(matches!(body, Body::Remote(_)));
        self.get_mut(&parent).expect("spawner present").children += 1;
        let slot = match self.free_slot() {
            Some(slot) => slot,
            None => {
                let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 tasks at once");
                self.slots.push(Slot { tid: Tid::SCHEDULER, entry: None });
                slot
            }
        };
        self.slots[slot as usize] = Slot { tid, entry: Some(Entry::new(parent, body)) };
        self.index.insert(tid, slot);
        self.len += 1;
        self.publish();
        Key { tid, slot }
    }

    /// A free slot from the free list. The list may name slots that [`shrink`](Self::shrink)
    /// cut off (and that may have come back since, occupied or listed twice): those are
    /// skipped here rather than searched for there.
    #[inline]
    fn free_slot(&mut self) -> Option<u32> {
        while let Some(slot) = self.free.pop() {
            if self.slots.get(slot as usize).is_some_and(|s| s.entry.is_none()) {
                return Some(slot);
            }
        }
        None
    }

    /// Gives `tid` a new body (a reserved remote task that starts, locally or remotely).
    pub(crate) fn set_body(&mut self, tid: Tid, body: Body) {
        let Some(e) = self.get_mut(&tid) else { return };
        let was = usize::from(e.is_remote());
        let now = usize::from(matches!(body, Body::Remote(_)));
        e.body = body;
        self.remote = self.remote + now - was;
        self.publish();
    }

    /// Takes a finished task's entry out, keeping of it what outlives the task (the rest is
    /// dropped in place, not moved); its parent, if still there, counts one running child less.
    /// The main program's entry stays.
    pub(crate) fn remove(&mut self, tid: Tid) -> Option<Removed> {
        let slot = self.index.remove(&tid)?;
        let s = &mut self.slots[slot as usize];
        s.tid = Tid::SCHEDULER;
        let e = s.entry.as_mut().expect("an indexed slot is occupied");
        let removed = Removed {
            parent: e.parent,
            finished: std::mem::replace(&mut e.finished, Finished::Empty),
            deadline: e.deadline,
            group: e.group,
        };
        self.remote -= usize::from(e.is_remote());
        s.entry = None;
        self.free.push(slot);
        self.len -= 1;
        if let Some(parent) = self.get_mut(&removed.parent) {
            parent.children -= 1;
        }
        self.shrink();
        self.publish();
        Some(removed)
    }

    /// Gives memory back once most tasks of a large burst have finished: a table sized for a
    /// million tasks would keep every later lookup spread over megabytes. The slab drops its
    /// free slots at the end.
    fn shrink(&mut self) {
        let capacity = self.index.capacity();
        if capacity > 4096 && self.index.len() < capacity / 16 {
            self.index.shrink_to(self.index.len() * 2);
        }
        if self.slots.len() > 4096 && self.len < self.slots.len() / 16 {
            let before = self.slots.len();
            while self.slots.last().is_some_and(|s| s.entry.is_none()) {
                self.slots.pop();
            }
            if self.slots.len() <= before / 2 {
                // Cut by half at least: the few steps that get here cost O(n) in all.
                let slots = &self.slots;
                self.free.retain(|&s| slots.get(s as usize).is_some_and(|s| s.entry.is_none()));
                self.slots.shrink_to(self.slots.len() * 2);
                self.free.shrink_to(self.free.len() * 2);
            }
        }
    }

    /// Takes every finished, unjoined value out, for the OS teardown.
    pub(crate) fn take_finished(&mut self) -> Vec<Outcome> {
        self.slots
            .iter_mut()
            .filter_map(|s| s.entry.as_mut())
            .flat_map(|e| std::mem::replace(&mut e.finished, Finished::Empty).into_values())
            .collect()
    }

    /// Takes every suspended local task out, for the OS teardown.
    pub(crate) fn take_locals(&mut self) -> Vec<LocalTask> {
        self.slots
            .iter_mut()
            .filter_map(|s| s.entry.as_mut())
            .filter_map(|e| match &mut e.body {
                Body::Local(slot) => slot.take(),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> Body {
        Body::Remote(Remote { decode: |_| Ok(crate::task::Value::new(())), id: None })
    }

    #[test]
    fn children_and_remote_counts_follow_the_entries() {
        let mut t = TaskTable::new();
        assert_eq!((t.len, t.remote_count()), (1, 0));
        t.insert_child(Tid::MAIN, Tid(2), remote());
        t.insert_child(Tid::MAIN, Tid(3), Body::Local(None));
        t.insert_child(Tid(3), Tid(4), remote());
        assert_eq!(t.get(&Tid::MAIN).unwrap().children(), 2);
        assert_eq!(t.get(&Tid(3)).unwrap().children(), 1);
        assert_eq!(t.remote_count(), 2);
        assert_eq!((crate::context::task_count(), crate::context::remote_count()), (4, 2));
        // A reserved remote task that starts locally stops counting as remote.
        t.set_body(Tid(2), Body::Local(None));
        assert_eq!(t.remote_count(), 1);
        assert!(t.get_mut(&Tid(2)).unwrap().local_slot().is_some());
        // Removing a parent leaves its running child an orphan; removing the child then
        // touches no other count.
        assert!(t.remove(Tid(3)).is_some());
        assert_eq!(t.get(&Tid::MAIN).unwrap().children(), 1);
        assert!(t.remove(Tid(4)).is_some());
        assert_eq!((t.len, t.remote_count()), (2, 0));
        assert!(t.remove(Tid(4)).is_none(), "a tid leaves once");
        assert!(t.remove(Tid(2)).is_some());
        assert_eq!(t.get(&Tid::MAIN).unwrap().children(), 0);
        assert_eq!((crate::context::task_count(), crate::context::remote_count()), (1, 0));
    }

    #[test]
    fn a_key_finds_only_its_own_task_even_in_a_reused_slot() {
        let mut t = TaskTable::new();
        let a = t.insert_child(Tid::MAIN, Tid(2), Body::Local(None));
        assert!(t.at(a).is_some());
        assert!(t.remove(Tid(2)).is_some());
        assert!(t.at(a).is_none(), "a finished task's key finds nothing");
        let b = t.insert_child(Tid::MAIN, Tid(3), Body::Local(None));
        assert_eq!(b.slot, a.slot, "the freed slot is reused");
        assert!(t.at(a).is_none(), "nor once its slot holds another task");
        assert_eq!(t.at(b).map(|e| e.parent), Some(Tid::MAIN));
        assert_eq!(t.key(Tid(3)), Some(b));
        assert_eq!(t.key(Tid::MAIN), Some(Key::MAIN));
        assert_eq!(t.key(Tid(2)), None);
    }

    #[test]
    fn the_slab_gives_its_slots_back_after_a_burst() {
        let mut t = TaskTable::new();
        for tid in 2..20_002 {
            t.insert_child(Tid::MAIN, Tid(tid), Body::Local(None));
        }
        assert_eq!(t.slots.len(), 20_001);
        // One task of the burst lives on, in a low slot.
        for tid in (2..20_002).filter(|&t| t != 10) {
            assert!(t.remove(Tid(tid)).is_some());
        }
        assert_eq!(t.len, 2);
        assert!(t.slots.len() <= 4096, "the free slots at the end are dropped: {}", t.slots.len());
        assert!(t.free.iter().all(|&s| (s as usize) < t.slots.len()), "no free slot past the end");
        // A burst joined from its last task down frees the last slot each time.
        for tid in 30_000..50_000 {
            t.insert_child(Tid::MAIN, Tid(tid), Body::Local(None));
        }
        for tid in (30_000..50_000).rev() {
            assert!(t.remove(Tid(tid)).is_some());
        }
        assert!(t.slots.len() <= 4096, "{}", t.slots.len());
        let keys: Vec<Key> =
            (60_000..60_100).map(|tid| t.insert_child(Tid::MAIN, Tid(tid), Body::Local(None))).collect();
        let mut slots: Vec<u32> = keys.iter().map(|k| k.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 100, "no slot given twice");
        assert!(keys.iter().all(|&k| t.at(k).is_some()));
        for k in keys {
            assert!(t.remove(k.tid).is_some());
        }
        assert_eq!(t.get(&Tid(10)).map(|e| e.parent), Some(Tid::MAIN));
        assert_eq!(t.get(&Tid::MAIN).map(Entry::children), Some(1));
        let k = t.insert_child(Tid::MAIN, Tid(20_002), Body::Local(None));
        assert!(t.at(k).is_some());
    }

    #[test]
    fn finished_children_are_joined_lowest_tid_first() {
        let mut f = Finished::Empty;
        for tid in [7, 3, 5] {
            f.insert(Tid(tid), Ok(crate::task::Value::new(tid)));
        }
        assert_eq!(f.len(), 3);
        assert!(f.remove(&Tid(5)).is_some());
        assert!(!f.contains_key(&Tid(5)));
        assert_eq!(f.pop_first().map(|(t, _)| t), Some(Tid(3)));
        assert_eq!(f.pop_first().map(|(t, _)| t), Some(Tid(7)));
        assert!(f.is_empty());
    }
}
