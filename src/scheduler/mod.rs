//! The scheduler: task table, FIFO ready queue, spawn-wait queues and the loop's steps.
//!
//! The loop itself is driven by [`crate::os`] on the main program's stack: it asks
//! [`Scheduler::next`] what to do, resumes a local task without holding the scheduler, and hands
//! the result to [`Scheduler::after_run`].

mod cancel;
mod deadlock;
mod finished;
mod graveyard;
pub(crate) mod groups;
mod join;
mod mailbox;
mod queues;
mod remote;
mod spawn;
pub(crate) mod table;
mod timers;

use std::collections::VecDeque;

use crate::context::Context;
use crate::coroutine::SysCall;
use crate::coroutine::{answer, Ended, LocalTask, StackPool, Step};
use crate::error::Error;
use crate::scheduler::groups::Groups;
use crate::scheduler::queues::SpawnQueues;
use crate::scheduler::table::{Entry, FastMap, Key, State, TaskTable, Wait};
use crate::scheduler::timers::Timers;
use crate::syscall::SysReturn;
use crate::task::{Joined, Outcome, Tid};
use crate::vm::{TaskId, VirtualMachine};

pub(crate) use graveyard::Graveyard;
pub use mailbox::SPAWNER_MAILBOX_LIMIT;

/// What the driver does next.
pub(crate) enum Next {
    /// The main program runs again; its answer, if it has one, waits in the exchange
    /// ([`crate::coroutine::answer`]).
    Main,
    /// Resume this local task; its answer, if it has one, waits in the exchange
    /// ([`crate::coroutine::answer`]).
    Run(Key, LocalTask),
}

/// What a yield took the short way did (see [`Scheduler::yield_quiet`]).
pub(crate) enum Quiet {
    /// No other task is ready: the yielding task goes on at once.
    Same(LocalTask),
    /// It went to the back of the ready queue; this local task runs now, with no answer
    /// waiting for it (the common case, kept small so that it moves cheaply).
    Run(Key, LocalTask),
    /// It went to the back of the ready queue; the main program goes on, with no answer.
    Main,
    /// It went to the back of the ready queue; this runs now.
    Switch(Next),
    /// The loop has work of its own (a machine to poll, deadlines, values to drop): the full
    /// step handles the yield.
    Busy(LocalTask),
}

/// The state of one thread's cooperative OS.
pub(crate) struct Scheduler {
    pub(crate) tasks: TaskTable,
    pub(crate) ready: VecDeque<Key>,
    next_tid: u64,
    /// The task that runs now (tid 1 while the main program or the loop runs).
    pub(crate) current: Tid,
    pub(crate) stacks: StackPool,
    pub(crate) vm: Option<Box<dyn VirtualMachine>>,
    /// Remote tasks started in the machine, by their machine task id.
    pub(crate) remote: FastMap<TaskId, Tid>,
    /// Spawns waiting for a free slot.
    pub(crate) queues: SpawnQueues,
    /// Task groups, joined without tid lists.
    pub(crate) groups: Groups,
    /// Values the scheduler let go of (orphans' values, unjoined children of finished tasks);
    /// the driver drops them once the scheduler is no longer borrowed.
    dropped: Vec<Outcome>,
    /// Cancelled local tasks, unwound by the driver outside the scheduler's borrow.
    pub(crate) unwind: Vec<LocalTask>,
    /// Deadlines of blocked joins and of remote tasks, earliest first.
    pub(crate) timers: Timers,
    /// Messages from remote tasks nobody has received yet, and the tasks waiting for one.
    pub(crate) mailbox: mailbox::Mailbox,
}

impl Scheduler {
    pub(crate) fn new() -> Self {
        Scheduler {
            tasks: TaskTable::new(),
            ready: VecDeque::new(),
            next_tid: 2,
            current: Tid::MAIN,
            stacks: StackPool::new(),
            vm: None,
            remote: FastMap::default(),
            queues: SpawnQueues::default(),
            groups: Groups::default(),
            dropped: Vec::new(),
            unwind: Vec::new(),
            timers: Timers::default(),
            mailbox: mailbox::Mailbox::default(),
        }
    }

    pub(crate) fn new_tid(&mut self) -> Tid {
        let t = Tid(self.next_tid);
        self.next_tid += 1;
        t
    }

    /// Appends a runnable task to the ready queue, unless it is there already.
    pub(crate) fn schedule(&mut self, tid: Tid) {
        if let Some(key) = self.tasks.key(tid) {
            self.schedule_at(key);
        }
    }

    /// Appends the runnable task `key` names to the ready queue, unless it is there already.
    #[inline]
    pub(crate) fn schedule_at(&mut self, key: Key) {
        if let Some(e) = self.tasks.at(key) {
            Self::enqueue_entry(&mut self.ready, key, e);
        }
    }

    /// Appends `e` (the entry `key` names) to the ready queue unless it is there already.
    #[inline]
    fn enqueue_entry(ready: &mut VecDeque<Key>, key: Key, e: &mut Entry) {
        debug_assert!(!e.is_remote(), "remote task {} scheduled", key.tid);
        if !e.scheduled {
            e.scheduled = true;
            if !matches!(e.state, State::Runnable) {
                e.state = State::Runnable;
            }
            ready.push_back(key);
            log::trace!(target: "cos", "task {} scheduled", key.tid);
        }
    }

    /// Gives `tid` its answer and schedules it.
    pub(crate) fn reply(&mut self, tid: Tid, answer: SysReturn) {
        if let Some(key) = self.tasks.key(tid) {
            self.reply_at(key, answer);
        }
    }

    /// Gives the task `key` names its answer and schedules it.
    #[inline]
    pub(crate) fn reply_at(&mut self, key: Key, answer: SysReturn) {
        if let Some(e) = self.tasks.at(key) {
            e.sendval = answer;
            if let Some(at) = e.deadline.take() {
                self.timers.remove(at, key.tid);
            }
            Self::enqueue_entry(&mut self.ready, key, e);
        }
    }

    /// The answer to a call of the running task `key` that does not block: given back at once
    /// (`Some`) when the loop is [`quiet`](Self::quiet) and no other task is ready, since the
    /// task would be the next to run anyway; else left for it as [`reply_at`](Self::reply_at)
    /// does, and the task waits for its turn.
    #[inline]
    pub(crate) fn answer_at(&mut self, key: Key, answer: SysReturn) -> Option<SysReturn> {
        if self.ready.is_empty() && self.quiet() {
            return Some(answer);
        }
        self.reply_at(key, answer);
        None
    }

    /// Handles a system call made by `tid`. `Some(answer)`: the caller goes on with it at once,
    /// before any other task runs (a join that is an error, or one answered at once by
    /// [`answer_at`](Self::answer_at)); `None`: the caller runs again when
    /// its turn comes, with the answer `reply` left it.
    #[inline]
    pub(crate) fn handle(&mut self, key: Key, call: SysCall) -> Option<SysReturn> {
        let tid = key.tid;
        match call {
            SysCall::Yield => self.schedule_at(key),
            SysCall::Spawn(s) => self.handle_spawn(key, s),
            SysCall::Join { tids, block, deadline } => return self.handle_join(key, tids, block, deadline),
            SysCall::Receive { deadline } => self.handle_receive(tid, deadline),
        }
        None
    }

    /// Whether the loop's own work is nothing: no remote task that could send an event, no
    /// deadline, nothing let go of to drop. Then its polling point and its timers do nothing, and
    /// a yield needs only the ready queue.
    #[inline]
    fn quiet(&self) -> bool {
        self.remote.is_empty() && self.timers.is_empty() && self.dropped.is_empty() && self.unwind.is_empty()
    }

    /// A yield by the running local task `tid`, taken the short way when the loop is
    /// [`quiet`](Self::quiet): exactly what [`after_run`](Self::after_run) and
    /// [`next`](Self::next) would do then (to the back of the ready queue, the front one runs),
    /// without the polling point. Nothing is dropped and no machine is called, so no user code
    /// runs here.
    #[inline]
    pub(crate) fn yield_quiet(&mut self, key: Key, task: LocalTask) -> Quiet {
        if !self.quiet() {
            return Quiet::Busy(task);
        }
        if self.ready.is_empty() {
            return Quiet::Same(task);
        }
        let Some(e) = self.tasks.at(key) else { return Quiet::Busy(task) };
        let Some(slot) = e.local_slot() else { return Quiet::Busy(task) };
        *slot = Some(task);
        Self::enqueue_entry(&mut self.ready, key, e);
        self.current = Tid::MAIN;
        self.pop_quiet()
    }

    /// A yield by the main program taken the short way, as [`yield_quiet`](Self::yield_quiet):
    /// [`Quiet::Main`] when the main program goes on, [`Quiet::Busy`] never (`None` when the
    /// loop is not quiet).
    #[inline]
    pub(crate) fn main_yield_quiet(&mut self) -> Option<Quiet> {
        if !self.quiet() {
            return None;
        }
        if self.ready.is_empty() {
            return Some(Quiet::Main);
        }
        self.schedule_at(Key::MAIN);
        Some(self.pop_quiet())
    }

    /// The ready queue's front after a quiet yield, in the small forms of [`Quiet`] when it
    /// has no answer waiting.
    #[inline]
    fn pop_quiet(&mut self) -> Quiet {
        while let Some(key) = self.ready.pop_front() {
            let Some(e) = self.tasks.at(key) else { continue };
            if !matches!(e.sendval, SysReturn::Nothing) {
                self.ready.push_front(key);
                break;
            }
            e.scheduled = false;
            if e.is_main() {
                self.current = Tid::MAIN;
                return Quiet::Main;
            }
            if let Some(task) = e.local_slot().and_then(Option::take) {
                self.current = key.tid;
                return Quiet::Run(key, task);
            }
        }
        Quiet::Switch(self.pop_ready().unwrap_or_else(|| self.next()))
    }

    /// Pops ready tasks until one can run (a cancelled task's tid may linger in the queue).
    #[inline]
    fn pop_ready(&mut self) -> Option<Next> {
        while let Some(key) = self.ready.pop_front() {
            let Some(e) = self.tasks.at(key) else { continue };
            e.scheduled = false;
            let input = std::mem::replace(&mut e.sendval, SysReturn::Nothing);
            if e.is_main() {
                self.current = Tid::MAIN;
                answer(input);
                return Some(Next::Main);
            }
            if let Some(task) = e.local_slot().and_then(Option::take) {
                self.current = key.tid;
                answer(input);
                return Some(Next::Run(key, task));
            }
        }
        None
    }

    /// The loop's step: drain the machine's messages, then pick the next ready task.
    pub(crate) fn next(&mut self) -> Next {
        loop {
            self.poll_vm();
            if !self.timers.is_empty() {
                self.expire_timers();
            }
            let Some(key) = self.ready.pop_front() else {
                if let Some(at) = self.timers.earliest() {
                    // Nothing can run and no machine message can come: only time passes.
                    std::thread::sleep(at.saturating_duration_since(self.now()));
                    continue;
                }
                if self.queues.len() > 0 && self.vm.as_ref().is_some_and(|vm| vm.slot_return().is_some()) {
                    // A down slot may come back for a waiting spawn: the next poll waits for it.
                    continue;
                }
                answer(self.deadlock());
                return Next::Main;
            };
            let Some(e) = self.tasks.at(key) else { continue };
            e.scheduled = false;
            let input = std::mem::replace(&mut e.sendval, SysReturn::Nothing);
            if e.is_main() {
                self.current = Tid::MAIN;
                answer(input);
                return Next::Main;
            }
            if let Some(task) = e.local_slot().and_then(Option::take) {
                self.current = key.tid;
                answer(input);
                return Next::Run(key, task);
            }
        }
    }

    /// Takes back a local task after it ran. `Some`: the same task goes on at once with the
    /// answer to its call (see [`handle`](Self::handle)).
    pub(crate) fn after_run(&mut self, key: Key, task: LocalTask, step: Step) -> Option<Next> {
        let tid = key.tid;
        self.current = Tid::MAIN;
        match step {
            Step::Yield | Step::Call(SysCall::Yield) => {
                // The commonest call, handled with the entry at hand.
                let e = self.tasks.at(key)?;
                if let Some(slot) = e.local_slot() {
                    *slot = Some(task);
                }
                Self::enqueue_entry(&mut self.ready, key, e);
            }
            Step::Call(call) => {
                if let Some(answer) = self.handle(key, call) {
                    self.current = tid;
                    crate::coroutine::answer(answer);
                    return Some(Next::Run(key, task));
                }
                if let Some(slot) = self.tasks.at(key).and_then(Entry::local_slot) {
                    *slot = Some(task);
                }
            }
            Step::Done(ended) => {
                log::debug!(target: "cos", "local task {tid} finished");
                if let Some(stack) = task.into_stack() {
                    self.stacks.give(stack);
                }
                let outcome = match ended {
                    Ended::Returned(outcome) => outcome,
                    Ended::Panicked(message) => Err(Error::Panicked { tid, message }),
                    Ended::Overflowed => Err(Error::StackOverflow(tid)),
                };
                self.finish(tid, outcome);
            }
        }
        None
    }

    /// Ends a task: its parent gets the outcome now if it waits for it, or later from its
    /// finished-children map. A task whose parent has finished is an orphan: its outcome is
    /// dropped.
    pub(crate) fn finish(&mut self, tid: Tid, outcome: Outcome) {
        let Some(entry) = self.tasks.remove(tid) else { return };
        if let Some(at) = entry.deadline {
            // Whatever ended the task (an event, a cancel, the machine's finalize), its deadline
            // goes with it: a stale timer would make the loop wait for it.
            self.timers.remove(at, tid);
        }
        let parent_tid = entry.parent;
        if !entry.finished.is_empty() {
            self.dropped.extend(entry.finished.into_values());
        }
        if !self.groups.is_empty() {
            self.groups.remove_owned_by(tid);
        }
        let Some(parent) = self.tasks.get_mut(&parent_tid) else {
            log::debug!(target: "cos", "orphan task {tid} finished; its value is dropped");
            self.dropped.push(outcome);
            return;
        };
        let waits = match &parent.state {
            State::Waiting(Wait::Join(tids)) => tids.names(tid, entry.group),
            _ => false,
        };
        if let Some(g) = entry.group {
            self.groups.member_finished(g, tid, waits);
        }
        if waits {
            log::debug!(target: "cos", "task {parent_tid} waits on task {tid}: value delivered");
            let joined = Joined { tid, result: outcome };
            self.reply(parent_tid, SysReturn::Joined(Ok(Some(joined))));
        } else {
            parent.finished.insert(tid, outcome);
        }
    }

    /// The values let go of since the last call, to be dropped outside the scheduler's borrow.
    pub(crate) fn take_dropped(&mut self) -> Option<Graveyard> {
        if self.dropped.is_empty() && self.unwind.is_empty() {
            None
        } else {
            Some(Graveyard::new(std::mem::take(&mut self.dropped), std::mem::take(&mut self.unwind)))
        }
    }

    /// The running tasks' count of finished, unjoined children.
    pub(crate) fn finished_children(&self, tid: Tid) -> usize {
        self.tasks.get(&tid).map_or(0, |e| e.finished.len())
    }

    /// Tasks spawned remotely that have not finished (queued ones included).
    pub(crate) fn remote_count(&self) -> usize {
        self.tasks.remote_count()
    }

    pub(crate) fn fail(&mut self, tid: Tid, e: Error) {
        self.finish(tid, Err(e));
    }
}

impl Drop for Scheduler {
    /// The thread's OS is destroyed (a thread-local destructor): suspended local tasks are
    /// unwound so that their destructors run, values not joined are dropped, and a machine still
    /// set is finalized, all in [`Context::Teardown`] and each with its panics contained (a panic
    /// escaping a thread-local destructor aborts the process).
    fn drop(&mut self) {
        crate::context::set(Context::Teardown);
        let mut values = std::mem::take(&mut self.dropped);
        let locals = self.tasks.take_locals();
        values.extend(self.tasks.take_finished());
        drop(Graveyard::new(values, locals));
        if let Some(mut vm) = self.vm.take() {
            graveyard::contain("finalizing the machine at thread end", move || {
                vm.finalize();
                drop(vm);
            });
        }
    }
}
