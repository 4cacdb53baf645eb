//! Spawns waiting for a free slot: one FIFO queue for any host and one per target host,
//! ordered across queues by a sequence number.

use std::collections::{BTreeMap, VecDeque};

use crate::syscall::RemoteSpawn;
use crate::task::Tid;
use crate::vm::HostId;

/// A spawn waiting for a free slot.
pub(crate) struct Queued {
    seq: u64,
    /// The task that spawned it.
    pub spawner: Tid,
    pub spawn: Box<RemoteSpawn>,
}

/// Who waits in a queue: a blocked spawner (its spawn has no tid yet), or the reserved task
/// of a non-blocking spawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiter {
    /// A spawner blocked in its spawn.
    Spawner(Tid),
    /// The tid a non-blocking enqueued spawn was given.
    Reserved(Tid),
}

impl Queued {
    fn is(&self, waiter: Waiter) -> bool {
        match waiter {
            Waiter::Spawner(t) => self.spawner == t && self.spawn.reserved.is_none(),
            Waiter::Reserved(t) => self.spawn.reserved == Some(t),
        }
    }
}

/// The wait queues of spawns that found no free slot.
#[derive(Default)]
pub(crate) struct SpawnQueues {
    any: VecDeque<Queued>,
    host: BTreeMap<HostId, VecDeque<Queued>>,
    seq: u64,
    len: usize,
}

impl SpawnQueues {
    /// Spawns waiting, in every queue.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Queues `spawn` of `spawner` behind those waiting for the same host (or for any host).
    pub(crate) fn push(&mut self, spawner: Tid, spawn: Box<RemoteSpawn>) {
        self.seq += 1;
        let q = Queued { seq: self.seq, spawner, spawn };
        match q.spawn.target.clone() {
            Some(h) => self.host.entry(h).or_default().push_back(q),
            None => self.any.push_back(q),
        }
        self.len += 1;
    }

    /// The next spawn to serve: the oldest waiting for one of `free_hosts` (hosts with a free
    /// slot, asked for only when some spawn waits for a given host), else the oldest waiting
    /// for any host.
    pub(crate) fn pop(&mut self, free_hosts: impl FnOnce() -> Vec<HostId>) -> Option<Queued> {
        let mut pick: Option<HostId> = None;
        if !self.host.is_empty() {
            let mut best = u64::MAX;
            for h in free_hosts() {
                if let Some(q) = self.host.get(&h).and_then(|q| q.front()) {
                    if q.seq < best {
                        best = q.seq;
                        pick = Some(h);
                    }
                }
            }
        }
        let item = match pick {
            Some(h) => {
                let q = self.host.get_mut(&h).expect("queue present");
                let item = q.pop_front();
                if q.is_empty() {
                    self.host.remove(&h);
                }
                item
            }
            None => self.any.pop_front(),
        };
        self.len -= usize::from(item.is_some());
        item
    }

    /// Takes `waiter` out of every queue (the one way a waiter leaves other than being
    /// served); whether it was there.
    pub(crate) fn remove(&mut self, waiter: Waiter) -> bool {
        let before = self.len;
        let mut kept = 0;
        self.any.retain(|q| !q.is(waiter));
        kept += self.any.len();
        for q in self.host.values_mut() {
            q.retain(|q| !q.is(waiter));
            kept += q.len();
        }
        self.host.retain(|_, q| !q.is_empty());
        self.len = kept;
        kept < before
    }

    /// Every waiting spawn, oldest first, leaving the queues empty.
    pub(crate) fn drain(&mut self) -> Vec<Queued> {
        let mut all: Vec<Queued> = self.any.drain(..).collect();
        for (_, q) in std::mem::take(&mut self.host) {
            all.extend(q);
        }
        all.sort_by_key(|q| q.seq);
        self.len = 0;
        all
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::task::Value;
    use crate::vm::RemoteCall;

    fn spawn(target: Option<&str>, reserved: Option<u64>) -> Box<RemoteSpawn> {
        Box::new(RemoteSpawn {
            call: RemoteCall { function: "f".into(), args: Vec::new(), send_back: true, signature: None },
            decode: |_| Ok(Value::new(())),
            local: Rc::new(|_| Ok(Value::new(()))),
            target: target.map(HostId::new),
            block: reserved.is_none(),
            enqueue: true,
            remote: true,
            limit: None,
            reserved: reserved.map(Tid),
        })
    }

    fn spawners(q: &mut SpawnQueues, free: &[&str]) -> Vec<u64> {
        let free: Vec<HostId> = free.iter().map(|h| HostId::new(*h)).collect();
        std::iter::from_fn(|| q.pop(|| free.clone())).map(|q| q.spawner.0).collect()
    }

    #[test]
    fn host_queues_go_first_oldest_first() {
        let mut q = SpawnQueues::default();
        q.push(Tid(2), spawn(None, None));
        q.push(Tid(3), spawn(Some("a"), None));
        q.push(Tid(4), spawn(Some("b"), None));
        q.push(Tid(5), spawn(Some("a"), None));
        assert_eq!(q.len(), 4);
        // Only host b has a free slot: its spawn first, then those for any host; a's wait.
        assert_eq!(spawners(&mut q, &["b"]), [4, 2]);
        assert_eq!(q.len(), 2);
        assert_eq!(spawners(&mut q, &["a", "b"]), [3, 5]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_waiter_leaves_every_queue_at_once() {
        let mut q = SpawnQueues::default();
        q.push(Tid(2), spawn(None, None));
        q.push(Tid(2), spawn(Some("a"), Some(9)));
        q.push(Tid(3), spawn(Some("a"), None));
        assert!(q.remove(Waiter::Spawner(Tid(2))), "the blocked spawn of task 2 leaves");
        assert_eq!(q.len(), 2, "its reserved, non-blocking spawn stays");
        assert!(!q.remove(Waiter::Spawner(Tid(2))));
        assert!(q.remove(Waiter::Reserved(Tid(9))));
        assert_eq!(q.len(), 1);
        q.push(Tid(4), spawn(None, None));
        let order: Vec<u64> = q.drain().iter().map(|w| w.spawner.0).collect();
        assert_eq!(order, [3, 4], "drained oldest first");
        assert_eq!(q.len(), 0);
    }
}
