//! Simulated hosts over numbered worker slots, shared by the thread and process machines.

use crate::error::Error;
use crate::vm::{HostId, TaskId};

/// Slot `s` (0-based) lies on host `s / per_host` (named `host0`, `host1`, ...), and the tasks
/// it runs have the worker id `s + 1` (0 is the spawner).
#[derive(Debug)]
pub(crate) struct HostLayout {
    hosts: Vec<HostId>,
    per_host: usize,
    next_number: u64,
}

impl HostLayout {
    pub(crate) fn new(hosts: usize, per_host: usize) -> Self {
        HostLayout {
            hosts: (0..hosts.max(1)).map(|h| HostId::new(format!("host{h}"))).collect(),
            per_host: per_host.max(1),
            next_number: 0,
        }
    }

    /// The number of worker slots.
    pub(crate) fn slots(&self) -> usize {
        self.hosts.len() * self.per_host
    }

    pub(crate) fn hosts(&self) -> &[HostId] {
        &self.hosts
    }

    pub(crate) fn host_of_slot(&self, slot: usize) -> &HostId {
        &self.hosts[slot / self.per_host]
    }

    /// The slot a task id names.
    pub(crate) fn slot_of(task: TaskId) -> Option<usize> {
        (task.worker as usize).checked_sub(1)
    }

    /// A task's host; the spawner's (`"spawner"`) for worker 0 or no task.
    pub(crate) fn host_id(&self, task: Option<TaskId>) -> Option<HostId> {
        match task.and_then(Self::slot_of) {
            Some(slot) => self.hosts.get(slot / self.per_host).cloned(),
            None => Some(HostId::new("spawner")),
        }
    }

    /// Hosts with a slot for which `free` holds, in order.
    pub(crate) fn hosts_with_free_slots(&self, free: impl Fn(usize) -> bool) -> Vec<HostId> {
        let mut v: Vec<HostId> =
            (0..self.slots()).filter(|&s| free(s)).map(|s| self.host_of_slot(s).clone()).collect();
        v.dedup();
        v
    }

    /// The lowest free slot (on one of `targets`, when given) and a new task id for it.
    ///
    /// # Errors
    /// [`Error::NoFreeSlot`] when there is none.
    pub(crate) fn pick(
        &mut self,
        targets: Option<&[HostId]>,
        free: impl Fn(usize) -> bool,
    ) -> Result<(usize, TaskId), Error> {
        let slot = (0..self.slots())
            .find(|&s| free(s) && targets.is_none_or(|t| t.contains(self.host_of_slot(s))))
            .ok_or(Error::NoFreeSlot)?;
        self.next_number += 1;
        Ok((slot, TaskId { worker: slot as u32 + 1, number: self.next_number }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_map_to_hosts_and_task_ids() {
        let mut l = HostLayout::new(2, 2);
        assert_eq!(l.slots(), 4);
        assert_eq!(l.host_of_slot(3), &HostId::new("host1"));
        let (slot, task) = l.pick(Some(&[HostId::new("host1")]), |s| s != 2).unwrap();
        assert_eq!((slot, task.worker, task.number), (3, 4, 1));
        assert_eq!(l.host_id(Some(task)), Some(HostId::new("host1")));
        assert_eq!(l.host_id(None), Some(HostId::new("spawner")));
        assert_eq!(l.hosts_with_free_slots(|s| s < 2), vec![HostId::new("host0")]);
        assert_eq!(l.pick(None, |_| false).unwrap_err(), Error::NoFreeSlot);
    }
}
