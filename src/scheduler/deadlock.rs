//! What the loop does when no task can run and nothing outside can wake one.

use crate::error::{DeadlockReport, Error, WaitReason};
use crate::scheduler::queues::Waiter;
use crate::scheduler::table::{State, Wait};
use crate::scheduler::Scheduler;
use crate::syscall::{SysReturn, Tids};
use crate::task::Tid;

impl Scheduler {
    /// The tids a join names, for the report: a group's running members in tid order.
    fn named(&self, tids: &Tids) -> Vec<Tid> {
        match tids {
            Tids::One(t) => vec![*t],
            Tids::List(l) => l.clone(),
            Tids::Group(g) => {
                let mut members: Vec<Tid> =
                    self.tasks.iter().filter(|(_, e)| e.group == Some(*g)).map(|(t, _)| *t).collect();
                members.sort();
                members
            }
        }
    }

    /// Every task is blocked and no remote task can end: the main program's blocked call returns
    /// a deadlock error naming who waits on whom. The other blocked tasks stay blocked.
    pub(crate) fn deadlock(&mut self) -> SysReturn {
        let mut waiting: Vec<(Tid, WaitReason)> = self
            .tasks
            .iter()
            .filter_map(|(tid, e)| match &e.state {
                State::Waiting(Wait::Join(tids)) => Some((*tid, WaitReason::Join(self.named(tids)))),
                State::Waiting(Wait::Slot(h)) => {
                    Some((*tid, WaitReason::Slot(h.as_ref().map(|h| h.to_string()))))
                }
                State::Waiting(Wait::Message) => Some((*tid, WaitReason::Message)),
                State::Runnable => None,
            })
            .collect();
        waiting.sort_by_key(|w| w.0);
        log::warn!(target: "cos", "deadlock: {}", DeadlockReport { waiting: waiting.clone() });
        let error = Error::Deadlock(DeadlockReport { waiting });
        self.current = Tid::MAIN;
        let main = self.tasks.get_mut(&Tid::MAIN).expect("main task present");
        let was = std::mem::replace(&mut main.state, State::Runnable);
        match was {
            State::Waiting(Wait::Slot(_)) => {
                self.queues.remove(Waiter::Spawner(Tid::MAIN));
                SysReturn::Spawned(Err(error))
            }
            State::Waiting(Wait::Message) => SysReturn::Received(Err(error)),
            _ => SysReturn::Joined(Err(error)),
        }
    }
}
