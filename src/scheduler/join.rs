//! The Join system call.

use std::time::Instant;

use crate::error::Error;
use crate::scheduler::table::{State, Wait};
use crate::scheduler::Scheduler;
use crate::syscall::{SysReturn, Tids};
use crate::task::{Joined, Tid};

impl Scheduler {
    /// PyOPUS's Join: at most one finished child, the lowest tid first; an empty list means any
    /// child; a blocking join with nothing finished waits until a matching child finishes. A
    /// join that is an error is answered at once (`Some`), before any other task runs.
    pub(crate) fn handle_join(
        &mut self,
        tid: Tid,
        tids: Tids,
        block: bool,
        deadline: Option<Instant>,
    ) -> Option<SysReturn> {
        match self.find_finished(tid, tids.as_slice()) {
            Err(e) => return Some(SysReturn::Joined(Err(e))),
            Ok(Some(joined)) => self.reply(tid, SysReturn::Joined(Ok(Some(joined)))),
            Ok(None) if !block || self.has_no_children(tid, tids.as_slice()) => {
                self.reply(tid, SysReturn::Joined(Ok(None)))
            }
            Ok(None) => {
                log::debug!(target: "cos", "task {tid} waits in join on {tids:?}");
                if let Some(e) = self.tasks.get_mut(&tid) {
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

    fn has_no_children(&self, tid: Tid, tids: &[Tid]) -> bool {
        tids.is_empty() && self.tasks.get(&tid).is_some_and(|e| e.children() == 0 && e.finished.is_empty())
    }

    /// Checks the listed tids and takes the lowest finished one out of the caller's map.
    fn find_finished(&mut self, tid: Tid, tids: &[Tid]) -> Result<Option<Joined>, Error> {
        if tids.is_empty() {
            let me = self.tasks.get_mut(&tid).expect("caller present");
            return Ok(me.finished.pop_first().map(|(tid, result)| Joined { tid, result }));
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
        Ok(lowest.and_then(|t| me.finished.remove(&t).map(|result| Joined { tid: t, result })))
    }
}
