//! The Join system call.

use std::time::Instant;

use crate::error::Error;
use crate::scheduler::groups::GroupId;
use crate::scheduler::table::{Key, State, Wait};
use crate::scheduler::Scheduler;
use crate::syscall::{SysReturn, Tids};
use crate::task::{Joined, Tid};

impl Scheduler {
    /// PyOPUS's Join: at most one finished child, the lowest tid first; an empty list means any
    /// child; a blocking join with nothing finished waits until a matching child finishes. A
    /// join that is an error is answered at once (`Some`), before any other task runs.
    pub(crate) fn handle_join(
        &mut self,
        key: Key,
        tids: Tids,
        block: bool,
        deadline: Option<Instant>,
    ) -> Option<SysReturn> {
        let tid = key.tid;
        let found = match &tids {
            Tids::One(t) => self.find_finished_one(tid, *t),
            Tids::List(list) => self.find_finished(tid, list),
            Tids::Group(g) => self.find_finished_member(tid, *g),
        };
        match found {
            Err(e) => return Some(SysReturn::Joined(Err(e))),
            Ok(Some(joined)) => return self.answer_at(key, SysReturn::Joined(Ok(Some(joined)))),
            Ok(None) if !block || self.nothing_to_wait_for(tid, &tids) => {
                return self.answer_at(key, SysReturn::Joined(Ok(None)));
            }
            Ok(None) => {
                log::debug!(target: "cos", "task {tid} waits in join on {tids:?}");
                if let Some(e) = self.tasks.at(key) {
                    e.state = State::Waiting(Wait::Join(tids));
                    e.deadline = deadline;
                }
                if let Some(at) = deadline {
                    self.timers.insert(at, tid);
                }
            }
        }
        None
    }

    /// A join on any child by a task with none, or on a group with no member left.
    fn nothing_to_wait_for(&self, tid: Tid, tids: &Tids) -> bool {
        match tids {
            Tids::List(l) if l.is_empty() => {
                self.tasks.get(&tid).is_some_and(|e| e.children() == 0 && e.finished.is_empty())
            }
            Tids::Group(g) => self.groups.len(*g) == 0,
            _ => false,
        }
    }

    /// Takes the lowest finished member of group `g` out of the caller's map: O(log k) in the
    /// group's finished members, whatever the group's size.
    fn find_finished_member(&mut self, tid: Tid, g: GroupId) -> Result<Option<Joined>, Error> {
        let group = self.groups.get_mut(g).ok_or(Error::UnknownGroup)?;
        if group.owner != tid {
            return Err(Error::NotGroupOwner { owner: group.owner, caller: tid });
        }
        let me = self.tasks.get_mut(&tid).expect("caller present");
        while let Some(t) = group.finished.pop_first() {
            if let Some(result) = me.finished.remove(&t) {
                return Ok(Some(Joined { tid: t, result }));
            }
        }
        Ok(None)
    }

    /// [`find_finished`](Self::find_finished) of one tid, looking first where a join's child
    /// usually is: in the caller's map of finished children (then it is not in the task table,
    /// and every check of the list's rules passes).
    #[inline]
    fn find_finished_one(&mut self, tid: Tid, t: Tid) -> Result<Option<Joined>, Error> {
        let me = self.tasks.get_mut(&tid).expect("caller present");
        if let Some(result) = me.finished.remove(&t) {
            if !self.groups.is_empty() {
                self.groups.forget_finished(tid, t);
            }
            return Ok(Some(Joined { tid: t, result }));
        }
        self.find_finished(tid, &[t])
    }

    /// Checks the listed tids and takes the lowest finished one out of the caller's map.
    fn find_finished(&mut self, tid: Tid, tids: &[Tid]) -> Result<Option<Joined>, Error> {
        if tids.is_empty() {
            let me = self.tasks.get_mut(&tid).expect("caller present");
            let joined = me.finished.pop_first().map(|(tid, result)| Joined { tid, result });
            if let (Some(j), false) = (&joined, self.groups.is_empty()) {
                self.groups.forget_finished(tid, j.tid);
            }
            return Ok(joined);
        }
        let mut lowest: Option<Tid> = None;
        for &t in tids {
            if t == Tid::SCHEDULER {
                return Err(Error::JoinScheduler);
            }
            if let Some(child) = self.tasks.get(&t) {
                if child.parent != tid {
                    return Err(Error::NotAChild { tid: t, caller: tid });
                }
            } else if self.tasks.get(&tid).is_some_and(|me| me.finished.contains_key(&t)) {
                lowest = Some(lowest.map_or(t, |l| l.min(t)));
            } else {
                return Err(Error::UnknownTask(t));
            }
        }
        let me = self.tasks.get_mut(&tid).expect("caller present");
        let joined = lowest.and_then(|t| me.finished.remove(&t).map(|result| Joined { tid: t, result }));
        if let (Some(j), false) = (&joined, self.groups.is_empty()) {
            self.groups.forget_finished(tid, j.tid);
        }
        Ok(joined)
    }

    /// Adds `caller`'s child `tid` (running, or finished and not joined) to group `g`, taking it
    /// out of another group of the caller's that held it.
    pub(crate) fn add_to_group(&mut self, caller: Tid, g: GroupId, tid: Tid) -> Result<(), Error> {
        let group = self.groups.get(g).ok_or(Error::UnknownGroup)?;
        if group.owner != caller {
            return Err(Error::NotGroupOwner { owner: group.owner, caller });
        }
        if tid == Tid::SCHEDULER {
            return Err(Error::JoinScheduler);
        }
        if let Some(child) = self.tasks.get_mut(&tid) {
            if child.parent != caller {
                return Err(Error::NotAChild { tid, caller });
            }
            let old = child.group.replace(g);
            if let Some(old) = old.and_then(|o| self.groups.get_mut(o)) {
                old.running -= 1;
            }
            self.groups.get_mut(g).expect("group present").running += 1;
            return Ok(());
        }
        if self.tasks.get(&caller).is_some_and(|me| me.finished.contains_key(&tid)) {
            self.groups.forget_finished(caller, tid);
            self.groups.get_mut(g).expect("group present").finished.insert(tid);
            return Ok(());
        }
        Err(Error::UnknownTask(tid))
    }
}
