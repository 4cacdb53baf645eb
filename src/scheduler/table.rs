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

/// Every task that has not finished, by tid, with its counts kept as entries come and go (and
/// published for the calls that cannot borrow the scheduler, see [`crate::context`]).
///
/// Invariants it keeps: `remote` is the number of entries whose body is [`Body::Remote`]; a
/// child added with [`insert_child`](Self::insert_child) counts in its parent's `children`,
/// and [`remove`](Self::remove) takes it out of that count again.
pub(crate) struct TaskTable {
    map: FastMap<Tid, Entry>,
    remote: usize,
}

impl TaskTable {
    /// A table holding the main program's entry only.
    pub(crate) fn new() -> Self {
        let mut map = FastMap::default();
        map.insert(Tid::MAIN, Entry::new(Tid::SCHEDULER, Body::Main));
        let table = TaskTable { map, remote: 0 };
        table.publish();
        table
    }

    fn publish(&self) {
        crate::context::set_counts(self.map.len(), self.remote);
    }

    /// Unfinished remote tasks (those waiting for a slot included).
    pub(crate) fn remote_count(&self) -> usize {
        self.remote
    }

    pub(crate) fn get(&self, tid: &Tid) -> Option<&Entry> {
        self.map.get(tid)
    }

    pub(crate) fn get_mut(&mut self, tid: &Tid) -> Option<&mut Entry> {
        self.map.get_mut(tid)
    }

    pub(crate) fn contains_key(&self, tid: &Tid) -> bool {
        self.map.contains_key(tid)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Tid, &Entry)> {
        self.map.iter()
    }

    /// Adds `parent`'s new child `tid` running `body`.
    ///
    /// # Panics
    /// When `parent` has no entry (a spawner is always present while it spawns).
    pub(crate) fn insert_child(&mut self, parent: Tid, tid: Tid, body: Body) {
        self.remote += usize::from(matches!(body, Body::Remote(_)));
        let old = self.map.insert(tid, Entry::new(parent, body));
        debug_assert!(old.is_none(), "tid {tid} reused");
        self.map.get_mut(&parent).expect("spawner present").children += 1;
        self.publish();
    }

    /// Gives `tid` a new body (a reserved remote task that starts, locally or remotely).
    pub(crate) fn set_body(&mut self, tid: Tid, body: Body) {
        let Some(e) = self.map.get_mut(&tid) else { return };
        let was = usize::from(e.is_remote());
        let now = usize::from(matches!(body, Body::Remote(_)));
        e.body = body;
        self.remote = self.remote + now - was;
        self.publish();
    }

    /// Takes a finished task's entry out; its parent, if still there, counts one running child
    /// less.
    pub(crate) fn remove(&mut self, tid: Tid) -> Option<Entry> {
        let entry = self.map.remove(&tid)?;
        self.remote -= usize::from(entry.is_remote());
        if let Some(parent) = self.map.get_mut(&entry.parent) {
            parent.children -= 1;
        }
        self.shrink();
        self.publish();
        Some(entry)
    }

    /// Gives memory back once most tasks of a large burst have finished: a table sized for a
    /// million tasks would keep every later lookup spread over megabytes.
    fn shrink(&mut self) {
        let capacity = self.map.capacity();
        if capacity > 4096 && self.map.len() < capacity / 16 {
            self.map.shrink_to(self.map.len() * 2);
        }
    }

    /// Takes every finished, unjoined value out, for the OS teardown.
    pub(crate) fn take_finished(&mut self) -> Vec<Outcome> {
        self.map
            .values_mut()
            .flat_map(|e| std::mem::replace(&mut e.finished, Finished::Empty).into_values())
            .collect()
    }

    /// Takes every suspended local task out, for the OS teardown.
    pub(crate) fn take_locals(&mut self) -> Vec<LocalTask> {
        self.map
            .values_mut()
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
        assert_eq!((t.map.len(), t.remote_count()), (1, 0));
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
        assert_eq!((t.map.len(), t.remote_count()), (2, 0));
        assert!(t.remove(Tid(4)).is_none(), "a tid leaves once");
        assert!(t.remove(Tid(2)).is_some());
        assert_eq!(t.get(&Tid::MAIN).unwrap().children(), 0);
        assert_eq!((crate::context::task_count(), crate::context::remote_count()), (1, 0));
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
