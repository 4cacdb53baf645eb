//! The thread's cooperative OS and its calls: spawn, yield, join, task information, machine.
//!
//! One OS per thread, created on first use. tid 0 is the scheduler, tid 1 the code that first
//! used it (the main program). The calls work from the main program and from any task, at any
//! depth of the call stack: from the main program they run the scheduler loop on its own stack
//! until it can go on; from a task they switch to that loop.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::scheduler::{Next, Scheduler};
use crate::syscall::{SpawnCall, SpawnInfo, SysCall, SysReturn, Tids};
use crate::task::coroutine::{in_task, suspend};
use crate::task::{Joined, LocalTask, Outcome, Task, Tid, Value};
use crate::vm::{HostId, VirtualMachine};

thread_local! {
    static OS: RefCell<Scheduler> = RefCell::new(Scheduler::new());
}

/// Runs `f` on this thread's scheduler.
pub(crate) fn with<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    OS.with(|os| f(&mut os.borrow_mut()))
}

/// Makes a system call for the running task and returns the scheduler's answer.
pub(crate) fn syscall(call: SysCall) -> SysReturn {
    if in_task() {
        return suspend(call);
    }
    OS.with(|os| {
        let next = {
            let mut s = os.borrow_mut();
            s.handle(Tid::MAIN, call);
            s.next()
        };
        drive(os, next)
    })
}

/// The scheduler loop, on the main program's stack, until the main program may go on. The
/// scheduler is not borrowed while a task runs, nor while values it dropped are destroyed (their
/// destructors may use the OS).
fn drive(os: &RefCell<Scheduler>, mut next: Next) -> SysReturn {
    loop {
        match next {
            Next::Main(answer) => return answer,
            Next::Run(tid, mut task, input) => {
                let step = task.resume(input);
                let (dropped, n) = {
                    let mut s = os.borrow_mut();
                    s.after_run(tid, task, step);
                    (s.take_dropped(), s.next())
                };
                drop(dropped);
                next = n;
            }
        }
    }
}

pub(crate) fn spawn_call(call: SpawnCall) -> Result<SpawnInfo, Error> {
    match syscall(SysCall::Spawn(call)) {
        SysReturn::Spawned(r) => r,
        _ => unreachable!("spawn answered with another call's answer"),
    }
}

/// Spawns a local task running `f`. Like PyOPUS, the child runs before the spawner goes on.
///
/// # Errors
/// [`Error::StackAlloc`] when no stack can be had for it.
///
/// ```
/// let t = cos::spawn(|| 6 * 7).unwrap();
/// assert_eq!(cos::join(t).unwrap(), 42);
/// ```
pub fn spawn<T, F>(f: F) -> Result<Task<T>, Error>
where
    T: 'static,
    F: FnOnce() -> T + 'static,
{
    let stack = with(|s| s.stacks.take())?;
    let task = LocalTask::new(stack, move || -> Outcome { Ok(Value::new(f())) });
    spawn_call(SpawnCall::Local(task)).map(|info| Task::new(info.tid))
}

/// Lets every other ready task run once before the caller goes on (PyOPUS's `Yield`).
///
/// ```
/// cos::yield_now(); // with nothing else to run, returns at once
/// ```
pub fn yield_now() {
    syscall(SysCall::Yield);
}

/// PyOPUS's `Join(tidList, block)`: joins at most one finished child among `tids` (an empty
/// list means any child), the lowest tid first.
///
/// A blocking join waits until one of them finishes; a non-blocking one returns `Ok(None)` when
/// none has. `Ok(None)` also comes at once for an empty list when the caller has no children.
///
/// # Errors
/// [`Error::JoinScheduler`] for tid 0, [`Error::UnknownTask`] for a tid that is neither running
/// nor a finished child, [`Error::NotAChild`] for another task's child, [`Error::Deadlock`] when
/// the join can never return.
///
/// ```
/// let a = cos::spawn(|| 1u8).unwrap();
/// let b = cos::spawn(|| 2u8).unwrap();
/// let j = cos::join_list(&[b.tid(), a.tid()], true).unwrap().unwrap();
/// assert_eq!(j.tid, a.tid());
/// assert_eq!(cos::join_list(&[b.tid()], false).unwrap().unwrap().value::<u8>().unwrap(), 2);
/// assert!(cos::join_list(&[], true).unwrap().is_none());
/// ```
pub fn join_list(tids: &[Tid], block: bool) -> Result<Option<Joined>, Error> {
    join_call(tids, block, None)
}

fn join_call(tids: &[Tid], block: bool, deadline: Option<Instant>) -> Result<Option<Joined>, Error> {
    match syscall(SysCall::Join { tids: Tids::from_slice(tids), block, deadline }) {
        SysReturn::Joined(r) => r,
        _ => unreachable!("join answered with another call's answer"),
    }
}

/// A blocking [`join_list`] that gives up after `timeout`.
///
/// # Errors
/// [`Error::Timeout`] when no listed child finished in time (the children run on), or an error
/// as in [`join_list`].
///
/// ```
/// use std::time::Duration;
/// let slow = cos::spawn(|| loop { cos::yield_now() }).unwrap();
/// let r = cos::join_timeout(&[slow.tid()], Duration::from_millis(10));
/// assert_eq!(r.unwrap_err(), cos::Error::Timeout);
/// assert_eq!(cos::cancel(slow.tid()), Ok(true));
/// ```
pub fn join_timeout(tids: &[Tid], timeout: Duration) -> Result<Option<Joined>, Error> {
    join_call(tids, true, Some(with(|s| s.now()) + timeout))
}

/// Cancels a child of the running task. A local child is taken off the queues and its stack
/// unwound, so its destructors run (they must not make `cos` system calls); a remote child is
/// stopped by the machine, which frees its slot. Its joiner gets [`Error::Cancelled`]. Its own
/// children run on as orphans.
///
/// Returns `Ok(false)` when the child had already finished: its value stays joinable.
///
/// # Errors
/// [`Error::NotAChild`], [`Error::UnknownTask`] or [`Error::JoinScheduler`] as for a join;
/// [`Error::Vm`] when the machine cannot stop a remote task.
///
/// ```
/// let t = cos::spawn(|| loop { cos::yield_now() }).unwrap();
/// assert_eq!(cos::cancel(t.tid()), Ok(true));
/// assert_eq!(cos::join(t), Err(cos::Error::Cancelled(t.tid())));
/// ```
pub fn cancel(tid: Tid) -> Result<bool, Error> {
    let (result, graveyard) = with(|s| {
        let caller = s.current;
        (s.cancel(caller, tid), s.take_dropped())
    });
    drop(graveyard);
    result
}

/// Waits for any child to finish and joins it (the lowest finished tid first); `Ok(None)` when
/// the caller has no children.
///
/// # Errors
/// [`Error::Deadlock`] when no child can ever finish.
///
/// ```
/// let _ = cos::spawn(|| "x").unwrap();
/// assert!(cos::join_any().unwrap().is_some());
/// assert!(cos::join_any().unwrap().is_none());
/// ```
pub fn join_any() -> Result<Option<Joined>, Error> {
    join_list(&[], true)
}

/// Joins a child that has already finished, if any (the lowest tid first), without waiting.
///
/// # Errors
/// None in practice; the same as [`join_list`].
///
/// ```
/// assert!(cos::try_join_any().unwrap().is_none());
/// ```
pub fn try_join_any() -> Result<Option<Joined>, Error> {
    join_list(&[], false)
}

/// Waits for `task` and returns its value.
///
/// # Errors
/// The error that ended the task (a panic, a remote failure), or a join error as in
/// [`join_list`].
///
/// ```
/// let t = cos::spawn(|| vec![1, 2, 3]).unwrap();
/// assert_eq!(cos::join(t).unwrap(), vec![1, 2, 3]);
/// ```
pub fn join<T: 'static>(task: Task<T>) -> Result<T, Error> {
    match join_list(&[task.tid()], true)? {
        Some(j) => j.value(),
        None => Err(Error::UnknownTask(task.tid())),
    }
}

/// Returns `task`'s value if it has finished, without waiting.
///
/// # Errors
/// As [`join`].
///
/// ```
/// let t = cos::spawn(|| { cos::yield_now(); 5 }).unwrap();
/// assert_eq!(cos::try_join(t).unwrap(), None);
/// cos::yield_now();
/// assert_eq!(cos::try_join(t).unwrap(), Some(5));
/// ```
pub fn try_join<T: 'static>(task: Task<T>) -> Result<Option<T>, Error> {
    join_list(&[task.tid()], false)?.map(Joined::value).transpose()
}

/// The running task's tid (PyOPUS's `getTid`).
///
/// ```
/// let t = cos::spawn(cos::tid).unwrap();
/// assert_eq!(cos::join(t).unwrap(), t.tid());
/// ```
pub fn tid() -> Tid {
    with(|s| s.current)
}

/// Tasks that have not finished, the main program's included.
///
/// ```
/// assert_eq!(cos::task_count(), 1);
/// ```
pub fn task_count() -> usize {
    with(|s| s.tasks.len())
}

/// Remote tasks that have not finished (those waiting for a slot included).
///
/// ```
/// assert_eq!(cos::remote_task_count(), 0);
/// ```
pub fn remote_task_count() -> usize {
    with(|s| s.remote_count())
}

/// Local tasks that have not finished, the main program's included.
///
/// ```
/// assert_eq!(cos::local_task_count(), 1);
/// ```
pub fn local_task_count() -> usize {
    with(|s| s.tasks.len() - s.remote_count())
}

/// The running task's finished children that were not joined yet (PyOPUS's `finishedTasks`,
/// which gives -1 without a machine; this counts them always).
///
/// ```
/// let _ = cos::spawn(|| ()).unwrap();
/// assert_eq!(cos::finished_tasks(), 1);
/// ```
pub fn finished_tasks() -> usize {
    with(|s| s.finished_children(s.current))
}

/// The machine's slots, the spawner's included; `None` without a machine (PyOPUS: -1).
///
/// ```
/// assert_eq!(cos::slots(), None);
/// ```
pub fn slots() -> Option<usize> {
    with(|s| s.vm.as_ref().map(|vm| vm.slots()))
}

/// The machine's free slots; `None` without a machine (PyOPUS: -1).
///
/// ```
/// assert_eq!(cos::free_slots(), None);
/// ```
pub fn free_slots() -> Option<usize> {
    with(|s| s.vm.as_ref().map(|vm| vm.free_slots()))
}

/// The machine's hosts; empty without a machine.
///
/// ```
/// assert!(cos::hosts().is_empty());
/// ```
pub fn hosts() -> Vec<HostId> {
    with(|s| s.vm.as_ref().map(|vm| vm.hosts()).unwrap_or_default())
}

/// Sets the machine that remote spawns use, following PyOPUS's rules: ignored (`Ok(false)`) on
/// a worker (this thread runs remote tasks for a spawner) or
/// with fewer than 2 slots; the previous machine, if any, is finalized.
///
/// # Errors
/// [`Error::Vm`] while remote tasks run.
///
/// ```
/// let vm = cos::SimVm::new(cos::Registry::new(), 2, 1);
/// assert_eq!(cos::set_vm(vm), Ok(true));
/// cos::finalize();
/// ```
pub fn set_vm<V: VirtualMachine + 'static>(vm: V) -> Result<bool, Error> {
    with(|s| {
        if s.remote_count() > 0 {
            return Err(crate::vm::machine(
                crate::vm::MachineErrorKind::Refused,
                "remote tasks run; cannot replace the machine",
            ));
        }
        if let Some(mut old) = s.vm.take() {
            old.finalize();
        }
        if crate::spawner_call::on_worker() || vm.slots() < 2 {
            log::debug!(target: "cos", "machine ignored (worker, or fewer than 2 slots)");
            return Ok(false);
        }
        s.vm = Some(Box::new(vm));
        Ok(true)
    })
}

/// Finalizes and removes the machine, if one is set (PyOPUS's `finalize`). Remote tasks that
/// had not ended, and remote spawns still waiting for a slot, end with [`Error::Vm`]: their
/// joiners get it instead of waiting forever.
///
/// ```
/// cos::finalize(); // without a machine it does nothing
/// ```
pub fn finalize() {
    let vm = with(|s| s.vm.take());
    if let Some(mut vm) = vm {
        vm.finalize();
        let graveyard = with(|s| {
            s.machine_gone();
            s.take_dropped()
        });
        drop(graveyard);
    }
}

/// Runs `f` with the machine, if one is set.
///
/// ```
/// assert_eq!(cos::with_vm(|vm| vm.slots()), None);
/// ```
pub fn with_vm<R>(f: impl FnOnce(&mut dyn VirtualMachine) -> R) -> Option<R> {
    with(|s| s.vm.as_mut().map(|vm| f(vm.as_mut())))
}

/// Sets the stack size, in bytes, of local tasks spawned from now on (default 256 KiB; each
/// stack also has a guard page, and only the pages a task touches take memory).
///
/// ```
/// cos::set_stack_size(64 * 1024);
/// assert_eq!(cos::stack_size(), 64 * 1024);
/// ```
pub fn set_stack_size(bytes: usize) {
    with(|s| s.set_stack_size(bytes));
}

/// The stack size of local tasks spawned from now on.
///
/// ```
/// assert!(cos::stack_size() >= 4096);
/// ```
pub fn stack_size() -> usize {
    with(|s| s.stack_size())
}
