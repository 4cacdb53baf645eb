//! The slot core shared by the machines: hosts, their worker slots, which slot runs which
//! task, and free counts kept as they change (O(1) to read). The free slots are also kept as
//! a bit set, so that picking the lowest free slot of a machine of thousands of slots reads a
//! few words, not every slot.
//!
//! Slot `s` (0-based) is worker `s + 1` in a [`TaskId`] (0 is the spawner): a worker thread,
//! a worker process or the MPI rank `s + 1`.

use crate::error::Error;
use crate::vm::{HostId, TaskId};

/// One worker slot.
#[derive(Debug, Clone)]
struct Slot {
    /// Index into `Slots::hosts`.
    host: usize,
    /// The task it runs.
    task: Option<TaskId>,
    /// `false` while the slot is out of service (an MPI rank that cannot be replaced, or one
    /// that still owes the end of a cancelled task).
    in_service: bool,
}

/// Hosts and their slots.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    /// Every host, sorted, without repeats.
    hosts: Vec<HostId>,
    /// The spawner's own host (`host_id(None)`).
    spawner_host: HostId,
    slots: Vec<Slot>,
    /// Free slots per host index.
    free_on: Vec<usize>,
    free: usize,
    /// Bit `s % 64` of word `s / 64` is set while slot `s` is free (in service, no task).
    free_bits: Vec<u64>,
    next_number: u64,
}

impl Slots {
    /// `hosts` simulated hosts (`host0`, `host1`, ...) of `per_host` slots each, host-major; the
    /// spawner's host is `"spawner"`.
    pub(crate) fn grid(hosts: usize, per_host: usize) -> Self {
        let names = (0..hosts).map(|h| HostId::new(format!("host{h}"))).collect();
        let of_slot = (0..hosts * per_host).map(|s| s / per_host).collect();
        Self::with_hosts(names, of_slot, HostId::new("spawner"))
    }

    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    /// Slots on named hosts: `slot_hosts[s]` is slot `s`'s host (MPI: rank `s + 1`'s processor
    /// name); `spawner` is the spawner's own.
    pub(crate) fn named(slot_hosts: &[HostId], spawner: HostId) -> Self {
        let mut names: Vec<HostId> = slot_hosts.iter().cloned().chain([spawner.clone()]).collect();
        names.sort();
        names.dedup();
        let of_slot = slot_hosts.iter().map(|h| names.binary_search(h).expect("host listed")).collect();
        Self::with_hosts(names, of_slot, spawner)
    }

    fn with_hosts(hosts: Vec<HostId>, of_slot: Vec<usize>, spawner_host: HostId) -> Self {
        let mut free_on = vec![0; hosts.len()];
        for &h in &of_slot {
            free_on[h] += 1;
        }
        let slots: Vec<Slot> =
            of_slot.into_iter().map(|host| Slot { host, task: None, in_service: true }).collect();
        let free_bits = vec![0u64; slots.len().div_ceil(64)];
        let mut all =
            Slots { free: slots.len(), hosts, spawner_host, slots, free_on, free_bits, next_number: 0 };
        for s in 0..all.slots.len() {
            all.mark(s, true);
        }
        all
    }

    /// The number of worker slots (in service or not).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Free slots.
    pub(crate) fn free(&self) -> usize {
        self.free
    }

    /// Every host, sorted.
    pub(crate) fn hosts(&self) -> Vec<HostId> {
        self.hosts.clone()
    }

    /// Hosts with a free slot, sorted.
    pub(crate) fn hosts_with_free_slots(&self) -> Vec<HostId> {
        self.hosts.iter().zip(&self.free_on).filter(|(_, &n)| n > 0).map(|(h, _)| h.clone()).collect()
    }

    /// How many worker slots `host` has (in service or not).
    pub(crate) fn count_on(&self, host: &HostId) -> usize {
        self.hosts.binary_search(host).map_or(0, |h| self.slots.iter().filter(|s| s.host == h).count())
    }

    /// A slot's host.
    pub(crate) fn host_of_slot(&self, slot: usize) -> &HostId {
        &self.hosts[self.slots[slot].host]
    }

    /// The slot a task id names (whether or not it runs there).
    pub(crate) fn slot_of(task: TaskId) -> Option<usize> {
        (task.worker as usize).checked_sub(1)
    }

    /// A task's host; the spawner's for worker 0 or no task.
    pub(crate) fn host_id(&self, task: Option<TaskId>) -> Option<HostId> {
        match task.and_then(Self::slot_of) {
            Some(slot) => self.slots.get(slot).map(|s| self.hosts[s.host].clone()),
            None => Some(self.spawner_host.clone()),
        }
    }

    /// The task `slot` runs.
    pub(crate) fn task(&self, slot: usize) -> Option<TaskId> {
        self.slots.get(slot).and_then(|s| s.task)
    }

    /// The slot running `task`, if it runs.
    pub(crate) fn running(&self, task: TaskId) -> Option<usize> {
        let slot = Self::slot_of(task)?;
        (self.task(slot) == Some(task)).then_some(slot)
    }

    /// Every running task with its slot, in slot order.
    pub(crate) fn tasks(&self) -> impl Iterator<Item = (usize, TaskId)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.task.map(|t| (i, t)))
    }

    fn is_free(&self, slot: usize) -> bool {
        let s = &self.slots[slot];
        s.in_service && s.task.is_none()
    }

    /// The lowest free slot (on one of `targets`, when given) and a new task id for it; the
    /// slot is not taken until [`Slots::start`].
    ///
    /// # Errors
    /// [`Error::NoFreeSlot`] when there is none.
    pub(crate) fn pick(&mut self, targets: Option<&[HostId]>) -> Result<(usize, TaskId), Error> {
        if self.free == 0 {
            return Err(Error::NoFreeSlot);
        }
        let slot = self
            .free_slots()
            .find(|&s| targets.is_none_or(|t| t.contains(self.host_of_slot(s))))
            .ok_or(Error::NoFreeSlot)?;
        debug_assert!(self.is_free(slot));
        self.next_number += 1;
        Ok((slot, TaskId { worker: slot as u32 + 1, number: self.next_number }))
    }

    /// The free slots, lowest first, from the bit set.
    fn free_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.free_bits.iter().enumerate().flat_map(|(w, &bits)| {
            let mut bits = bits;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some(w * 64 + b)
            })
        })
    }

    /// Notes in the bit set whether `slot` is free.
    fn mark(&mut self, slot: usize, free: bool) {
        let (w, bit) = (slot / 64, 1u64 << (slot % 64));
        if free {
            self.free_bits[w] |= bit;
        } else {
            self.free_bits[w] &= !bit;
        }
    }

    /// `slot` runs `task` from now on.
    pub(crate) fn start(&mut self, slot: usize, task: TaskId) {
        debug_assert!(self.is_free(slot), "slot {slot} is not free");
        let s = &mut self.slots[slot];
        s.task = Some(task);
        self.free -= 1;
        self.free_on[s.host] -= 1;
        self.mark(slot, false);
    }

    /// `task` ended: its slot is free again. The slot, or `None` when the task did not run.
    pub(crate) fn end(&mut self, task: TaskId) -> Option<usize> {
        let slot = self.running(task)?;
        let s = &mut self.slots[slot];
        s.task = None;
        if s.in_service {
            self.free += 1;
            self.free_on[s.host] += 1;
            self.mark(slot, true);
        }
        Some(slot)
    }

    /// Ends every task (the machine was finalized).
    pub(crate) fn end_all(&mut self) {
        let running: Vec<TaskId> = self.tasks().map(|(_, t)| t).collect();
        for t in running {
            self.end(t);
        }
    }

    /// Puts `slot` back in service (an MPI rank that has reported its cancelled job's end).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn restore(&mut self, slot: usize) {
        self.set_in_service(slot, true);
    }

    /// Takes `slot` out of service (after its task, if any, ends it is not free): for good, or
    /// until [`Slots::restore`].
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn retire(&mut self, slot: usize) {
        self.set_in_service(slot, false);
    }

    /// Takes `slot` out of service (`false`: it is down, and not free even once its task, if
    /// any, ends) or puts it back (`true`: free when it runs no task).
    pub(crate) fn set_in_service(&mut self, slot: usize, in_service: bool) {
        let s = &mut self.slots[slot];
        if s.in_service == in_service {
            return;
        }
        s.in_service = in_service;
        if s.task.is_none() {
            if in_service {
                self.free += 1;
                self.free_on[s.host] += 1;
            } else {
                self.free -= 1;
                self.free_on[s.host] -= 1;
            }
            self.mark(slot, in_service);
        }
    }

    /// How many slots are out of service.
    pub(crate) fn down(&self) -> usize {
        self.slots.iter().filter(|s| !s.in_service).count()
    }
}

/// The [`VirtualMachine`](crate::VirtualMachine) queries that a machine keeping its slots in a
/// `slots: Slots` field answers from it alone (`slots`, `free_slots`, `hosts`,
/// `hosts_with_free_slots`, `host_id`, `slots_on`), written once for every such machine.
macro_rules! slot_queries {
    () => {
        fn slots(&self) -> usize {
            self.slots.len() + 1
        }

        fn free_slots(&self) -> usize {
            self.slots.free()
        }

        fn hosts(&self) -> Vec<$crate::vm::HostId> {
            self.slots.hosts()
        }

        fn hosts_with_free_slots(&self) -> Vec<$crate::vm::HostId> {
            self.slots.hosts_with_free_slots()
        }

        fn host_id(&self, task: Option<$crate::vm::TaskId>) -> Option<$crate::vm::HostId> {
            self.slots.host_id(task)
        }

        fn slots_on(&self, host: &$crate::vm::HostId) -> Option<usize> {
            Some(self.slots.count_on(host))
        }
    };
}
pub(crate) use slot_queries;

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: &str) -> HostId {
        HostId::new(n)
    }

    #[test]
    fn slots_map_to_hosts_and_task_ids() {
        let mut l = Slots::grid(2, 2);
        assert_eq!((l.len(), l.free()), (4, 4));
        assert_eq!(l.host_of_slot(3), &h("host1"));
        let (slot, task) = l.pick(Some(&[h("host1")])).unwrap();
        assert_eq!((slot, task.worker, task.number), (2, 3, 1));
        l.start(slot, task);
        assert_eq!(l.host_id(Some(task)), Some(h("host1")));
        assert_eq!(l.host_id(None), Some(h("spawner")));
        assert_eq!(l.running(task), Some(2));
        assert_eq!(l.free(), 3);
    }

    #[test]
    fn free_counts_follow_starts_ends_and_retirements() {
        let mut l = Slots::grid(2, 1);
        let (s0, t0) = l.pick(None).unwrap();
        l.start(s0, t0);
        assert_eq!(l.hosts_with_free_slots(), vec![h("host1")]);
        let (s1, t1) = l.pick(None).unwrap();
        l.start(s1, t1);
        assert_eq!(l.pick(None).unwrap_err(), Error::NoFreeSlot);
        assert!(l.hosts_with_free_slots().is_empty());
        assert_eq!(l.end(t0), Some(0));
        assert_eq!(l.end(t0), None, "a task ends once");
        assert_eq!(l.free(), 1);
        // A busy slot retired stays taken after its task ends; an idle one is taken at once.
        l.retire(s1);
        assert_eq!(l.end(t1), Some(1));
        assert_eq!(l.free(), 1);
        l.retire(s0);
        assert_eq!((l.free(), l.hosts_with_free_slots()), (0, vec![]));
        assert_eq!(l.pick(None).unwrap_err(), Error::NoFreeSlot);
    }

    #[test]
    fn a_restored_slot_is_free_again() {
        let mut l = Slots::grid(1, 2);
        let (s0, t0) = l.pick(None).unwrap();
        l.start(s0, t0);
        // A cancelled task: its slot is held until its worker reports the end.
        l.end(t0);
        l.retire(s0);
        assert_eq!((l.free(), l.pick(None).unwrap().0), (1, 1));
        l.restore(s0);
        l.restore(s0);
        assert_eq!((l.free(), l.hosts_with_free_slots()), (2, vec![h("host0")]));
    }

    #[test]
    fn a_slot_down_for_a_while_is_not_free_until_it_is_back() {
        let mut l = Slots::grid(1, 2);
        l.set_in_service(1, false);
        assert_eq!((l.free(), l.down()), (1, 1));
        let (s0, t0) = l.pick(None).unwrap();
        assert_eq!(s0, 0);
        l.start(s0, t0);
        assert_eq!(l.pick(None).unwrap_err(), Error::NoFreeSlot, "the down slot takes nothing");
        l.set_in_service(1, true);
        l.set_in_service(1, true);
        assert_eq!((l.free(), l.down()), (1, 0));
        assert_eq!(l.pick(None).unwrap().0, 1);
        // A busy slot taken down is not free after its task ends, until it is back.
        l.set_in_service(0, false);
        l.end(t0);
        assert_eq!(l.free(), 1);
        l.set_in_service(0, true);
        assert_eq!(l.free(), 2);
    }

    #[test]
    fn named_hosts_are_sorted_and_shared() {
        let l = Slots::named(&[h("b"), h("a"), h("b")], h("a"));
        assert_eq!(l.hosts(), vec![h("a"), h("b")]);
        assert_eq!(l.host_id(Some(TaskId { worker: 3, number: 1 })), Some(h("b")));
        assert_eq!(l.host_id(None), Some(h("a")));
        assert_eq!(l.hosts_with_free_slots(), vec![h("a"), h("b")]);
    }

    #[test]
    fn the_lowest_free_slot_is_picked_across_many_words_of_slots() {
        let mut l = Slots::grid(3, 100);
        let mut tasks = Vec::new();
        for want in 0..300 {
            let (s, t) = l.pick(None).unwrap();
            assert_eq!(s, want);
            l.start(s, t);
            tasks.push(t);
        }
        assert_eq!(l.pick(None).unwrap_err(), Error::NoFreeSlot);
        // Free slots 250, 130 and 70: the lowest is picked first, and a host filter skips the
        // lower slots of other hosts (slots 200-299 are host2's).
        for s in [250, 130, 70] {
            l.end(tasks[s]);
        }
        assert_eq!(l.pick(Some(&[h("host2")])).unwrap().0, 250);
        assert_eq!(l.pick(Some(&[h("host1"), h("host2")])).unwrap().0, 130);
        assert_eq!(l.pick(None).unwrap().0, 70);
        // A slot out of service is skipped; back in service it is the lowest again.
        l.set_in_service(70, false);
        assert_eq!(l.pick(None).unwrap().0, 130);
        l.set_in_service(70, true);
        assert_eq!(l.pick(None).unwrap().0, 70);
        assert_eq!(l.pick(Some(&[h("host9")])).unwrap_err(), Error::NoFreeSlot);
    }
}
