//! The thread's cooperative OS and its calls: spawn, yield, join, task information, machine.
//!
//! One OS per thread, created on first use. tid 0 is the scheduler, tid 1 the code that first
//! used it (the main program). The calls work from the main program and from any task, at any
//! depth of the call stack: from the main program they run the scheduler loop on its own stack
//! until it can go on; from a task they switch to that loop.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::context::{self, Context};
use crate::coroutine::{answer, suspend, take_answer};
use crate::coroutine::{LocalTask, Step};
use crate::coroutine::{SpawnCall, SysCall};
use crate::error::Error;
use crate::scheduler::table::Key;
use crate::scheduler::{Next, Quiet, Scheduler};
use crate::syscall::{SpawnInfo, SysReturn, Tids};
use crate::task::{Joined, Outcome, Task, Tid, Value};
use crate::vm::{HostId, VirtualMachine};

thread_local! {
    static OS: RefCell<Scheduler> = RefCell::new(Scheduler::new());
}

/// The one way to borrow the scheduler. User code reached while it is borrowed (a machine's
/// methods, the closure of `with_vm`) runs in [`Context::Machine`], where no call borrows it
/// again.
#[inline]
fn borrow<R>(os: &RefCell<Scheduler>, f: impl FnOnce(&mut Scheduler) -> R) -> R {
    let _machine = context::enter(Context::Machine);
    f(&mut os.borrow_mut())
}

/// Runs `f` on this thread's scheduler, or gives the context in which that is not possible
/// (the machine's code, where the scheduler is borrowed; the OS teardown, where it is gone).
pub(crate) fn with<R>(f: impl FnOnce(&mut Scheduler) -> R) -> Result<R, Context> {
    match context::context() {
        ctx @ (Context::Machine | Context::Teardown) => Err(ctx),
        _ => OS.try_with(|os| borrow(os, f)).map_err(|_| Context::Teardown),
    }
}

/// The context of the caller when a task (or the main program) runs there, so that a call may
/// switch tasks; [`Error::WrongContext`] otherwise.
pub(crate) fn task_context() -> Result<Context, Error> {
    match context::context() {
        ctx if ctx.has_task() => Ok(ctx),
        ctx => Err(Error::WrongContext(ctx)),
    }
}

/// Makes a system call for the running task and returns the scheduler's answer.
///
/// # Errors
/// [`Error::WrongContext`] where no task runs (see [`Context`]).
pub(crate) fn syscall(call: SysCall) -> Result<SysReturn, Error> {
    match task_context()? {
        Context::Task(_) => Ok(suspend(call)),
        _ => Ok(OS.with(|os| {
            let next =
                borrow(os, |s| s.handle(Key::MAIN, call).map(main_goes_on).unwrap_or_else(|| s.next()));
            drive(os, next);
            take_answer()
        })),
    }
}

/// Borrows the scheduler for a task switch that runs no user code: a yield that only moves
/// tasks between the ready queue and their entries ([`Scheduler::yield_quiet`]), which drops
/// nothing and calls no machine. It skips [`borrow`]'s change of context, which only matters
/// when user code can run.
#[inline]
fn borrow_switch<R>(os: &RefCell<Scheduler>, f: impl FnOnce(&mut Scheduler) -> R) -> R {
    f(&mut os.borrow_mut())
}

/// The scheduler loop, on the main program's stack, until the main program may go on. The
/// scheduler is not borrowed while a task runs (in [`Context::Task`]), nor while values it let
/// go of are destroyed (in [`Context::Scheduler`], see the graveyard).
///
/// A yield when the loop has nothing to poll (no remote task, no deadline) takes the short way,
/// [`Scheduler::yield_quiet`]: the yielding task goes on at once when no other task is ready,
/// else it goes to the back of the ready queue and the front one runs, as the full step would
/// do.
fn drive(os: &RefCell<Scheduler>, mut next: Next) {
    'outer: loop {
        let (mut key, mut task) = match next {
            Next::Main => return,
            Next::Run(key, task) => (key, task),
        };
        let step = loop {
            let step = {
                let _task = context::enter(Context::Task(key.tid));
                task.resume()
            };
            if !matches!(step, Step::Yield) {
                break step;
            }
            // A yield owns nothing: forgetting it skips the call enum's drop glue.
            match borrow_switch(os, |s| s.yield_quiet(key, task)) {
                Quiet::Same(t) => {
                    std::mem::forget(step);
                    task = t;
                }
                Quiet::Run(t, other) => {
                    std::mem::forget(step);
                    (key, task) = (t, other);
                }
                Quiet::Main => {
                    std::mem::forget(step);
                    return;
                }
                Quiet::Switch(n) => {
                    std::mem::forget(step);
                    next = n;
                    continue 'outer;
                }
                Quiet::Busy(t) => {
                    task = t;
                    break step;
                }
            }
        };
        let (dropped, n) = borrow(os, |s| {
            let n = s.after_run(key, task, step).unwrap_or_else(|| s.next());
            (s.take_dropped(), n)
        });
        drop(dropped);
        next = n;
    }
}

/// The main program goes on at once with `answer` (see [`Scheduler::handle`]).
fn main_goes_on(answer_now: SysReturn) -> Next {
    answer(answer_now);
    Next::Main
}

pub(crate) fn spawn_call(call: SpawnCall) -> Result<SpawnInfo, Error> {
    match syscall(SysCall::Spawn(call))? {
        SysReturn::Spawned(r) => r,
        _ => unreachable!("spawn answered with another call's answer"),
    }
}

/// Spawns a local task running `f`. Like PyOPUS, the child runs before the spawner goes on.
///
/// # Errors
/// [`Error::StackAlloc`] when no stack can be had for it; [`Error::WrongContext`] where no task
/// runs (a destructor run by the scheduler, a machine's code, the OS teardown: see
/// [`Context`]).
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
    task_context()?;
    let stack = with(|s| s.stacks.take()).map_err(Error::WrongContext)??;
    let task = LocalTask::new(stack, move || -> Outcome { Ok(Value::new(f())) });
    spawn_call(SpawnCall::Local(task)).map(|info| Task::new(info.tid))
}

/// Lets every other ready task run once before the caller goes on (PyOPUS's `Yield`). Where
/// no task runs (see [`Context`]) there is nothing to switch from, and it returns at once.
///
/// ```
/// cos::yield_now(); // with nothing else to run, returns at once
/// ```
pub fn yield_now() {
    let answer = match context::context() {
        Context::Task(_) => suspend(SysCall::Yield),
        Context::Main => OS.with(|os| match borrow_switch(os, Scheduler::main_yield_quiet) {
            Some(Quiet::Main) => SysReturn::Nothing,
            Some(Quiet::Run(key, task)) => {
                drive(os, Next::Run(key, task));
                take_answer()
            }
            Some(Quiet::Switch(next)) => {
                drive(os, next);
                take_answer()
            }
            Some(Quiet::Same(_) | Quiet::Busy(_)) => unreachable!("the main program has no coroutine"),
            None => {
                let next = borrow(os, |s| {
                    s.handle(Key::MAIN, SysCall::Yield).map(main_goes_on).unwrap_or_else(|| s.next())
                });
                drive(os, next);
                take_answer()
            }
        }),
        _ => return,
    };
    forget_nothing(answer);
}

/// Lets go of the answer to a yield, which is always [`SysReturn::Nothing`]: that variant owns
/// nothing, so it is forgotten instead of going through the whole enum's drop glue.
#[inline]
fn forget_nothing(answer: SysReturn) {
    if matches!(answer, SysReturn::Nothing) {
        std::mem::forget(answer);
    } else {
        debug_assert!(false, "a yield answered with another call's answer");
        drop(answer);
    }
}

/// PyOPUS's `Join(tidList, block)`: joins at most one finished child among `tids` (an empty
/// list means any child), the lowest tid first.
///
/// A blocking join waits until one of them finishes; a non-blocking one returns `Ok(None)` when
/// none has. `Ok(None)` also comes at once for an empty list when the caller has no children.
///
/// A join that is an error returns it at once, before any other task runs (as PyOPUS raises it
/// in the caller).
///
/// # Errors
/// [`Error::JoinScheduler`] for tid 0, [`Error::UnknownTask`] for a tid that is neither running
/// nor a finished child, [`Error::NotAChild`] for another task's child, [`Error::Deadlock`] when
/// the join can never return, [`Error::WrongContext`] where no task runs.
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
    match syscall(SysCall::Join { tids: Tids::from_slice(tids), block, deadline })? {
        SysReturn::Joined(r) => r,
        _ => unreachable!("join answered with another call's answer"),
    }
}

/// A blocking [`join_list`] that gives up after `timeout`.
///
/// # Errors
/// [`Error::JoinTimeout`] when no listed child finished in time (the children run on), or an
/// error as in [`join_list`].
///
/// ```
/// use std::time::Duration;
/// let slow = cos::spawn(|| loop { cos::yield_now() }).unwrap();
/// let r = cos::join_timeout(&[slow.tid()], Duration::from_millis(10));
/// assert_eq!(r.unwrap_err(), cos::Error::JoinTimeout);
/// assert_eq!(cos::cancel(slow.tid()), Ok(true));
/// ```
pub fn join_timeout(tids: &[Tid], timeout: Duration) -> Result<Option<Joined>, Error> {
    let now = with(|s| s.now()).map_err(Error::WrongContext)?;
    join_call(tids, true, Some(now + timeout))
}

/// Cancels a child of the running task. A local child is taken off the queues and its stack
/// unwound, so its destructors run (as code of the scheduler, [`Context::Scheduler`]: they see
/// tid 0 and cannot switch tasks); a remote child is
/// stopped by the machine, which frees its slot. Its joiner gets [`Error::Cancelled`]. Its own
/// children run on as orphans.
///
/// Returns `Ok(false)` when the child had already finished: its value stays joinable.
///
/// # Errors
/// [`Error::NotAChild`], [`Error::UnknownTask`] or [`Error::JoinScheduler`] as for a join;
/// [`Error::Vm`] when the machine cannot stop a remote task; [`Error::WrongContext`] where no
/// task runs.
///
/// ```
/// let t = cos::spawn(|| loop { cos::yield_now() }).unwrap();
/// assert_eq!(cos::cancel(t.tid()), Ok(true));
/// assert_eq!(cos::join(t), Err(cos::Error::Cancelled(t.tid())));
/// ```
pub fn cancel(tid: Tid) -> Result<bool, Error> {
    let caller = task_context()?.tid();
    let (result, graveyard) =
        with(|s| (s.cancel(caller, tid), s.take_dropped())).map_err(Error::WrongContext)?;
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

/// The running task's tid (PyOPUS's `getTid`); [`Tid::SCHEDULER`] where no task runs (see
/// [`Context`]).
///
/// ```
/// let t = cos::spawn(cos::tid).unwrap();
/// assert_eq!(cos::join(t).unwrap(), t.tid());
/// ```
pub fn tid() -> Tid {
    context::context().tid()
}

/// Tasks that have not finished, the main program's included.
///
/// ```
/// assert_eq!(cos::task_count(), 1);
/// ```
pub fn task_count() -> usize {
    context::task_count()
}

/// Remote tasks that have not finished (those waiting for a slot included).
///
/// ```
/// assert_eq!(cos::remote_task_count(), 0);
/// ```
pub fn remote_task_count() -> usize {
    context::remote_count()
}

/// Local tasks that have not finished, the main program's included.
///
/// ```
/// assert_eq!(cos::local_task_count(), 1);
/// ```
pub fn local_task_count() -> usize {
    context::task_count() - context::remote_count()
}

/// The running task's finished children that were not joined yet (PyOPUS's `finishedTasks`,
/// which gives -1 without a machine; this counts them always). 0 where no task runs.
///
/// ```
/// let _ = cos::spawn(|| ()).unwrap();
/// assert_eq!(cos::finished_tasks(), 1);
/// ```
pub fn finished_tasks() -> usize {
    match task_context() {
        Ok(ctx) => with(|s| s.finished_children(ctx.tid())).unwrap_or(0),
        Err(_) => 0,
    }
}

/// The machine's slots, the spawner's included; `None` without a machine (PyOPUS: -1), and in
/// the machine's own code or the OS teardown, where the machine cannot be asked (see
/// [`Context`]).
///
/// ```
/// assert_eq!(cos::slots(), None);
/// ```
pub fn slots() -> Option<usize> {
    with(|s| s.vm.as_ref().map(|vm| vm.slots())).ok().flatten()
}

/// The machine's free slots; `None` without a machine (PyOPUS: -1) and where the machine
/// cannot be asked, as for [`slots`].
///
/// ```
/// assert_eq!(cos::free_slots(), None);
/// ```
pub fn free_slots() -> Option<usize> {
    with(|s| s.vm.as_ref().map(|vm| vm.free_slots())).ok().flatten()
}

/// The machine's hosts; empty without a machine and where the machine cannot be asked, as for
/// [`slots`].
///
/// ```
/// assert!(cos::hosts().is_empty());
/// ```
pub fn hosts() -> Vec<HostId> {
    with(|s| s.vm.as_ref().map(|vm| vm.hosts())).ok().flatten().unwrap_or_default()
}

/// Sets the machine that remote spawns use, following PyOPUS's rules: ignored (`Ok(false)`) on
/// a worker (this thread runs remote tasks for a spawner) or
/// with fewer than 2 slots, and then nothing changes (the machine is dropped, a machine set
/// before stays); otherwise the previous machine, if any, is finalized and replaced.
///
/// The machine's own code that this runs (its `slots`, `finalize`, `Drop`)
/// runs in [`Context::Machine`].
///
/// # Errors
/// [`Error::MachineInUse`] while remote tasks run (nothing changes); [`Error::WrongContext`]
/// where no task runs.
///
/// ```
/// let vm = cos::SimVm::new(cos::Registry::new(), 2, 1);
/// assert_eq!(cos::set_vm(vm), Ok(true));
/// cos::finalize();
/// ```
pub fn set_vm<V: VirtualMachine + 'static>(vm: V) -> Result<bool, Error> {
    task_context()?;
    let ignored = {
        let _machine = context::enter(Context::Machine);
        vm.slots() < 2
    } || crate::spawner_call::on_worker();
    if ignored {
        log::debug!(target: "cos", "machine ignored (worker, or fewer than 2 slots)");
        let _machine = context::enter(Context::Machine);
        drop(vm);
        return Ok(false);
    }
    let old = with(take_machine).map_err(Error::WrongContext)??;
    if let Some(mut old) = old {
        let _machine = context::enter(Context::Machine);
        old.finalize();
        drop(old);
    }
    with(|s| s.vm = Some(Box::new(vm))).map_err(Error::WrongContext)?;
    Ok(true)
}

/// Takes the machine out of the scheduler, unless remote tasks still need it.
fn take_machine(s: &mut Scheduler) -> Result<Option<Box<dyn VirtualMachine>>, Error> {
    match s.remote_count() {
        0 => Ok(s.vm.take()),
        n => Err(Error::MachineInUse { remote_tasks: n }),
    }
}

/// Takes the machine out, unfinalized, and gives it back (PyOPUS's `setVM(None)`): remote
/// spawns run locally from now on. `Ok(None)` without a machine.
///
/// # Errors
/// [`Error::MachineInUse`] while remote tasks run (those waiting for a slot included); nothing
/// changes then. [`Error::WrongContext`] where no task runs.
///
/// ```
/// use cos::VirtualMachine;
/// cos::set_vm(cos::SimVm::new(cos::Registry::new(), 2, 1)).unwrap();
/// let mut vm = cos::remove_vm().unwrap().unwrap();
/// assert_eq!(cos::slots(), None);
/// vm.finalize();
/// ```
pub fn remove_vm() -> Result<Option<Box<dyn VirtualMachine>>, Error> {
    task_context()?;
    with(take_machine).map_err(Error::WrongContext)?
}

/// Finalizes and removes the machine, if one is set (PyOPUS's `finalize`). Remote tasks that
/// had not ended, and remote spawns still waiting for a slot, end with [`Error::Vm`]: their
/// joiners get it instead of waiting forever. The machine's `finalize` and `Drop` run in
/// [`Context::Machine`]. Where no task runs (see [`Context`]) it does nothing.
///
/// Call it before the thread ends: a machine still set then is finalized while the thread's
/// OS is destroyed ([`Context::Teardown`]), where the machine's code cannot use the OS nor,
/// for some of them, other thread-locals.
///
/// ```
/// cos::finalize(); // without a machine it does nothing
/// ```
pub fn finalize() {
    if task_context().is_err() {
        return;
    }
    let Ok(Some(mut vm)) = with(|s| s.vm.take()) else { return };
    {
        let _machine = context::enter(Context::Machine);
        vm.finalize();
        drop(vm);
    }
    if let Ok(graveyard) = with(|s| {
        s.machine_gone();
        s.take_dropped()
    }) {
        drop(graveyard);
    }
}

/// Runs `f` with the machine, if one is set; `f` runs in [`Context::Machine`], where calls
/// that switch tasks return [`Error::WrongContext`]. `None` without a machine, and where the
/// machine cannot be lent (inside another `with_vm`, in the machine's own code, in the OS
/// teardown).
///
/// ```
/// assert_eq!(cos::with_vm(|vm| vm.slots()), None);
/// cos::set_vm(cos::SimVm::new(cos::Registry::new(), 2, 1)).unwrap();
/// assert_eq!(cos::with_vm(|vm| (vm.slots(), cos::spawn(|| ()).is_err())), Some((3, true)));
/// cos::finalize();
/// ```
pub fn with_vm<R>(f: impl FnOnce(&mut dyn VirtualMachine) -> R) -> Option<R> {
    with(|s| s.vm.as_mut().map(|vm| f(vm.as_mut()))).ok().flatten()
}

/// Sets the stack size, in bytes, of local tasks spawned from now on (default 256 KiB; each
/// stack also has a guard page, and only the pages a task touches take memory).
///
/// ```
/// cos::set_stack_size(64 * 1024);
/// assert_eq!(cos::stack_size(), 64 * 1024);
/// ```
pub fn set_stack_size(bytes: usize) {
    context::set_stack_size(bytes);
}

/// The stack size of local tasks spawned from now on.
///
/// ```
/// assert!(cos::stack_size() >= 4096);
/// ```
pub fn stack_size() -> usize {
    context::stack_size()
}
