//! The scheduler: task table, FIFO ready queue, spawn-wait queues and the loop's steps.
//!
//! The loop itself is driven by [`crate::os`] on the main program's stack: it asks
//! [`Scheduler::next`] what to do, resumes a local task without holding the scheduler, and hands
//! the result to [`Scheduler::after_run`].

mod cancel;
mod deadlock;
mod join;
mod remote;
mod spawn;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use crate::error::Error;
use crate::syscall::{SysCall, SysReturn};
use crate::task::table::{Body, Entry, FastMap, State, TaskTable, Wait};
use crate::task::{Joined, LocalTask, Outcome, StackPool, Step, Tid};
use crate::vm::{HostId, TaskId, VirtualMachine};

pub(crate) use spawn::Queued;

/// Default size of a local task's stack.
pub(crate) const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// What the driver does next.
pub(crate) enum Next {
    /// The main program runs again with this answer.
    Main(SysReturn),
    /// Resume this local task with this answer.
    Run(Tid, LocalTask, SysReturn),
}

/// The state of one thread's cooperative OS.
pub(crate) struct Scheduler {
    pub(crate) tasks: TaskTable,
    pub(crate) ready: VecDeque<Tid>,
    next_tid: u64,
    /// The task that runs now (tid 1 while the main program or the loop runs).
    pub(crate) current: Tid,
    pub(crate) stacks: StackPool,
    pub(crate) vm: Option<Box<dyn VirtualMachine>>,
    /// Remote tasks started in the machine, by their machine task id.
    pub(crate) remote: FastMap<TaskId, Tid>,
    /// Spawns waiting for a free slot on any host, oldest first.
    pub(crate) queue_any: VecDeque<Queued>,
    /// Spawns waiting for a free slot on a given host, oldest first.
    pub(crate) queue_host: BTreeMap<HostId, VecDeque<Queued>>,
    /// Orders queued spawns across queues.
    pub(crate) queue_seq: u64,
    /// Values the scheduler let go of (orphans' values, unjoined children of finished tasks);
    /// the driver drops them once the scheduler is no longer borrowed.
    dropped: Vec<Outcome>,
    /// Cancelled local tasks, unwound by the driver outside the scheduler's borrow.
    pub(crate) unwind: Vec<LocalTask>,
    /// Deadlines of blocked joins and of remote tasks, earliest first.
    pub(crate) timers: BTreeSet<(Instant, Tid)>,
}

/// What the scheduler let go of, destroyed by the driver once the scheduler is not borrowed:
/// values (their destructors may use the OS) and cancelled tasks (unwinding runs their
/// destructors).
pub(crate) struct Graveyard {
    values: Vec<Outcome>,
    tasks: Vec<LocalTask>,
}

impl Drop for Graveyard {
    fn drop(&mut self) {
        self.values.clear();
        for t in self.tasks.drain(..) {
            drop(t.into_stack());
        }
    }
}

impl Scheduler {
    pub(crate) fn new() -> Self {
        let mut tasks = TaskTable::default();
        tasks.insert(Tid::MAIN, Entry::new(Tid::SCHEDULER, Body::Main));
        Scheduler {
            tasks,
            ready: VecDeque::new(),
            next_tid: 2,
            current: Tid::MAIN,
            stacks: StackPool::new(DEFAULT_STACK_SIZE),
            vm: None,
            remote: FastMap::default(),
            queue_any: VecDeque::new(),
            queue_host: BTreeMap::new(),
            queue_seq: 0,
            dropped: Vec::new(),
            unwind: Vec::new(),
            timers: BTreeSet::new(),
        }
    }

    pub(crate) fn new_tid(&mut self) -> Tid {
        let t = Tid(self.next_tid);
        self.next_tid += 1;
        t
    }

    /// Appends a runnable task to the ready queue, unless it is there already.
    pub(crate) fn schedule(&mut self, tid: Tid) {
        if let Some(e) = self.tasks.get_mut(&tid) {
            Self::enqueue_entry(&mut self.ready, tid, e);
        }
    }

    /// Appends `e` (the entry of `tid`) to the ready queue unless it is there already.
    fn enqueue_entry(ready: &mut VecDeque<Tid>, tid: Tid, e: &mut Entry) {
        debug_assert!(!e.is_remote(), "remote task {tid} scheduled");
        if !e.scheduled {
            e.scheduled = true;
            e.state = State::Runnable;
            ready.push_back(tid);
            log::trace!(target: "cos", "task {tid} scheduled");
        }
    }

    /// Gives `tid` its answer and schedules it.
    pub(crate) fn reply(&mut self, tid: Tid, answer: SysReturn) {
        if let Some(e) = self.tasks.get_mut(&tid) {
            e.sendval = answer;
            if let Some(at) = e.deadline.take() {
                self.timers.remove(&(at, tid));
            }
            Self::enqueue_entry(&mut self.ready, tid, e);
        }
    }

    /// Handles a system call made by `tid`.
    pub(crate) fn handle(&mut self, tid: Tid, call: SysCall) {
        match call {
            SysCall::Yield => self.schedule(tid),
            SysCall::Spawn(s) => self.handle_spawn(tid, s),
            SysCall::Join { tids, block, deadline } => self.handle_join(tid, tids, block, deadline),
        }
    }

    /// The loop's step: drain the machine's messages, then pick the next ready task.
    pub(crate) fn next(&mut self) -> Next {
        loop {
            self.poll_vm();
            if !self.timers.is_empty() {
                self.expire_timers();
            }
            let Some(tid) = self.ready.pop_front() else {
                if let Some(&(at, _)) = self.timers.first() {
                    // Nothing can run and no machine message can come: only time passes.
                    std::thread::sleep(at.saturating_duration_since(self.now()));
                    continue;
                }
                return Next::Main(self.deadlock());
            };
            let Some(e) = self.tasks.get_mut(&tid) else { continue };
            e.scheduled = false;
            let input = std::mem::replace(&mut e.sendval, SysReturn::Nothing);
            match &mut e.body {
                Body::Main => {
                    self.current = Tid::MAIN;
                    return Next::Main(input);
                }
                Body::Local(slot) => {
                    if let Some(task) = slot.take() {
                        self.current = tid;
                        return Next::Run(tid, task, input);
                    }
                }
                Body::Remote(_) => {}
            }
        }
    }

    /// Takes back a local task after it ran.
    pub(crate) fn after_run(&mut self, tid: Tid, task: LocalTask, step: Step) {
        self.current = Tid::MAIN;
        match step {
            Step::Call(call) => {
                let Some(e) = self.tasks.get_mut(&tid) else { return };
                if let Body::Local(slot) = &mut e.body {
                    *slot = Some(task);
                }
                match call {
                    // The commonest call, handled with the entry at hand.
                    SysCall::Yield => Self::enqueue_entry(&mut self.ready, tid, e),
                    call => self.handle(tid, call),
                }
            }
            Step::Done(outcome) => {
                log::debug!(target: "cos", "local task {tid} finished");
                if let Some(stack) = task.into_stack() {
                    self.stacks.give(stack);
                }
                self.finish(tid, outcome);
            }
        }
    }

    /// Ends a task: its parent gets the outcome now if it waits for it, or later from its
    /// finished-children map. A task whose parent has finished is an orphan: its outcome is
    /// dropped.
    pub(crate) fn finish(&mut self, tid: Tid, outcome: Outcome) {
        let Some(entry) = self.tasks.remove(&tid) else { return };
        self.shrink_table();
        let parent_tid = entry.parent;
        if !entry.finished.is_empty() {
            self.dropped.extend(entry.finished.into_values());
        }
        let Some(parent) = self.tasks.get_mut(&parent_tid) else {
            log::debug!(target: "cos", "orphan task {tid} finished; its value is dropped");
            self.dropped.push(outcome);
            return;
        };
        parent.children -= 1;
        let waits = match &parent.state {
            State::Waiting(Wait::Join(list)) => list.as_slice().is_empty() || list.as_slice().contains(&tid),
            _ => false,
        };
        if waits {
            log::debug!(target: "cos", "task {parent_tid} waits on task {tid}: value delivered");
            let joined = Joined { tid, result: outcome };
            self.reply(parent_tid, SysReturn::Joined(Ok(Some(joined))));
        } else {
            parent.finished.insert(tid, outcome);
        }
    }

    /// Gives memory back once most tasks of a large burst have finished: a table sized for a
    /// million tasks would keep every later lookup spread over megabytes.
    fn shrink_table(&mut self) {
        let capacity = self.tasks.capacity();
        if capacity > 4096 && self.tasks.len() < capacity / 16 {
            self.tasks.shrink_to(self.tasks.len() * 2);
        }
    }

    /// The values let go of since the last call, to be dropped outside the scheduler's borrow.
    pub(crate) fn take_dropped(&mut self) -> Option<Graveyard> {
        if self.dropped.is_empty() && self.unwind.is_empty() {
            None
        } else {
            Some(Graveyard {
                values: std::mem::take(&mut self.dropped),
                tasks: std::mem::take(&mut self.unwind),
            })
        }
    }

    /// Changes the stack size of local tasks spawned from now on.
    pub(crate) fn set_stack_size(&mut self, size: usize) {
        self.stacks.set_size(size);
    }

    /// The running tasks' count of finished, unjoined children.
    pub(crate) fn finished_children(&self, tid: Tid) -> usize {
        self.tasks.get(&tid).map_or(0, |e| e.finished.len())
    }

    /// Tasks spawned remotely that have not finished (queued ones included).
    pub(crate) fn remote_count(&self) -> usize {
        self.tasks.values().filter(|e| e.is_remote()).count()
    }

    pub(crate) fn stack_size(&self) -> usize {
        self.stacks.size()
    }

    pub(crate) fn fail(&mut self, tid: Tid, e: Error) {
        self.finish(tid, Err(e));
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // Unwind suspended local tasks so that their destructors run, then let the machine go.
        let locals: Vec<LocalTask> = self
            .tasks
            .values_mut()
            .filter_map(|e| match &mut e.body {
                Body::Local(slot) => slot.take(),
                _ => None,
            })
            .collect();
        for t in locals {
            drop(t.into_stack());
        }
        if let Some(mut vm) = self.vm.take() {
            vm.finalize();
        }
    }
}
