//! Cancellation and deadlines.

use std::time::Instant;

use crate::error::Error;
use crate::scheduler::queues::Waiter;
use crate::scheduler::table::{State, Wait};
use crate::scheduler::Scheduler;
use crate::syscall::SysReturn;
use crate::task::Tid;
use crate::vm::TaskId;

impl Scheduler {
    /// Cancels `caller`'s child `tid`: a local task is taken off the queues and unwound (by the
    /// driver, so its destructors run), a remote one is stopped by the machine; either way its
    /// joiner gets [`Error::Cancelled`]. Its own children run on as orphans.
    ///
    /// `Ok(false)` when the child had already finished (its value stays joinable).
    pub(crate) fn cancel(&mut self, caller: Tid, tid: Tid) -> Result<bool, Error> {
        if tid == Tid::SCHEDULER {
            return Err(Error::JoinScheduler);
        }
        let Some(entry) = self.tasks.get(&tid) else {
            return match self.tasks.get(&caller) {
                Some(me) if me.finished.contains_key(&tid) => Ok(false),
                _ => Err(Error::UnknownTask(tid)),
            };
        };
        if entry.parent != caller {
            return Err(Error::NotAChild { tid, caller });
        }
        if entry.is_remote() {
            self.end_remote(tid, Error::Cancelled(tid))?;
            return Ok(true);
        }
        self.drop_local(tid);
        self.finish(tid, Err(Error::Cancelled(tid)));
        Ok(true)
    }

    /// Takes a local task off every queue and hands its coroutine to the driver to unwind.
    fn drop_local(&mut self, tid: Tid) {
        let Some(e) = self.tasks.get_mut(&tid) else { return };
        if e.scheduled {
            e.scheduled = false;
            self.ready.retain(|k| k.tid != tid);
        }
        if let Some(at) = e.deadline.take() {
            self.timers.remove(at, tid);
        }
        let waits_for_slot = matches!(e.state, State::Waiting(Wait::Slot(_)));
        if let Some(task) = e.local_slot().and_then(Option::take) {
            self.unwind.push(task);
        }
        if waits_for_slot {
            self.queues.remove(Waiter::Spawner(tid));
        }
    }

    /// Ends a remote task (started or still waiting for a slot) with `error`.
    pub(crate) fn end_remote(&mut self, tid: Tid, error: Error) -> Result<(), Error> {
        let started: Option<TaskId> = self.tasks.get(&tid).and_then(|e| e.remote()).and_then(|r| r.id);
        if let Some(id) = started {
            if let Some(vm) = self.vm.as_mut() {
                vm.cancel(id)?;
            }
            self.remote.remove(&id);
        } else {
            self.queues.remove(Waiter::Reserved(tid));
        }
        if let Some(at) = self.tasks.get_mut(&tid).and_then(|e| e.deadline.take()) {
            self.timers.remove(at, tid);
        }
        log::debug!(target: "cos", "remote task {tid} ended: {error}");
        self.finish(tid, Err(error));
        if started.is_some() {
            self.serve_queued();
        }
        Ok(())
    }

    /// Wakes the tasks whose deadline passed: a blocked join returns
    /// [`Error::JoinTimeout`]; a remote task is cancelled with [`Error::Timeout`].
    pub(crate) fn expire_timers(&mut self) {
        let now = self.now();
        while let Some((at, tid)) = self.timers.pop_due(now) {
            let Some(e) = self.tasks.get_mut(&tid) else { continue };
            if e.deadline != Some(at) {
                continue;
            }
            e.deadline = None;
            if e.is_remote() {
                if let Err(err) = self.end_remote(tid, Error::Timeout) {
                    log::warn!(target: "cos", "remote task {tid} passed its deadline but: {err}");
                }
            } else if matches!(e.state, State::Waiting(Wait::Message)) {
                log::debug!(target: "cos", "task {tid}: receive deadline passed");
                self.reply(tid, SysReturn::Received(Ok(None)));
            } else if matches!(e.state, State::Waiting(_)) {
                log::debug!(target: "cos", "task {tid}: join deadline passed");
                self.reply(tid, SysReturn::Joined(Err(Error::JoinTimeout)));
            }
        }
    }

    /// Sets a remote task's deadline.
    pub(crate) fn set_deadline(&mut self, tid: Tid, at: Instant) {
        if let Some(e) = self.tasks.get_mut(&tid) {
            e.deadline = Some(at);
            self.timers.insert(at, tid);
        }
    }
}
