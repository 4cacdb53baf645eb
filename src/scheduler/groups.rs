//! Task groups: children joined together, without a tid list (see [`crate::TaskGroup`]).

use std::collections::BTreeSet;

use crate::scheduler::table::FastMap;
use crate::task::Tid;

/// A group's id, never reused.
pub(crate) type GroupId = u64;

/// One group: its owner (the only task that may add to it and join it), how many of its
/// members still run, and its finished members not joined yet.
pub(crate) struct Group {
    pub owner: Tid,
    pub running: usize,
    pub finished: BTreeSet<Tid>,
}

/// Every group of this thread's OS.
#[derive(Default)]
pub(crate) struct Groups {
    map: FastMap<GroupId, Group>,
    next: GroupId,
}

impl Groups {
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A new, empty group owned by `owner`.
    pub(crate) fn create(&mut self, owner: Tid) -> GroupId {
        self.next += 1;
        self.map.insert(self.next, Group { owner, running: 0, finished: BTreeSet::new() });
        self.next
    }

    pub(crate) fn get(&self, id: GroupId) -> Option<&Group> {
        self.map.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: GroupId) -> Option<&mut Group> {
        self.map.get_mut(&id)
    }

    pub(crate) fn remove(&mut self, id: GroupId) {
        self.map.remove(&id);
    }

    /// Members not joined yet.
    pub(crate) fn len(&self, id: GroupId) -> usize {
        self.map.get(&id).map_or(0, |g| g.running + g.finished.len())
    }

    /// A member of `group` finished; `owner_waits`: its owner waits on the group and gets the
    /// value now, so it is not kept as finished.
    pub(crate) fn member_finished(&mut self, group: GroupId, tid: Tid, owner_waits: bool) {
        if let Some(g) = self.map.get_mut(&group) {
            g.running -= 1;
            if !owner_waits {
                g.finished.insert(tid);
            }
        }
    }

    /// `owner`'s finished child `tid` was joined some other way (by tid, or as any child): it
    /// leaves whichever of `owner`'s groups held it.
    pub(crate) fn forget_finished(&mut self, owner: Tid, tid: Tid) {
        for g in self.map.values_mut() {
            if g.owner == owner && g.finished.remove(&tid) {
                return;
            }
        }
    }

    /// `owner` finished: its groups go with it.
    pub(crate) fn remove_owned_by(&mut self, owner: Tid) {
        self.map.retain(|_, g| g.owner != owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_counts_its_running_and_finished_members() {
        let mut groups = Groups::default();
        let a = groups.create(Tid::MAIN);
        let b = groups.create(Tid(5));
        assert_ne!(a, b);
        groups.get_mut(a).unwrap().running = 3;
        groups.member_finished(a, Tid(9), false);
        groups.member_finished(a, Tid(7), false);
        groups.member_finished(a, Tid(8), true);
        assert_eq!(groups.len(a), 2, "one running, two finished; the delivered one is gone");
        assert_eq!(groups.get(a).unwrap().finished.first(), Some(&Tid(7)));
        groups.forget_finished(Tid::MAIN, Tid(7));
        assert_eq!(groups.len(a), 1);
        groups.forget_finished(Tid(5), Tid(9));
        assert_eq!(groups.len(a), 1, "another owner's join does not touch this group");
        groups.remove_owned_by(Tid::MAIN);
        assert!(groups.get(a).is_none() && groups.get(b).is_some());
        groups.remove(b);
        assert!(groups.is_empty());
    }
}
