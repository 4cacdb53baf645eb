//! Where the code that calls `cos` runs: the main program, a task, or code the scheduler runs
//! for itself. Every public call asks [`current`] first; this module is the one place that
//! knows the answer.
//!
//! The context lives in a thread-local `Cell` without a destructor, so it can be read at any
//! time, even while the thread's OS is being destroyed. So do the task counts the public calls
//! report, which the task table keeps here as it changes.

use std::cell::Cell;
use std::fmt;

use crate::task::Tid;

/// Where a call into `cos` is made from; [`crate::Error::WrongContext`] names it when a call
/// cannot be made there.
///
/// | Context | Switching calls (`spawn`, `join*`, `cancel`, `set_vm`, `remove_vm`, `Spawn::start`, `dispatch`, `send_message`, `receive_message`) | `yield_now`, `finalize` | `tid()` | counts, `stack_size`, `remote_task` | `slots`, `free_slots`, `hosts`, `with_vm`, `format_spawner_config` |
/// |---|---|---|---|---|---|
/// | `Main`, `Task` | work | work | the caller's tid | work | work |
/// | `Scheduler` | `Err(WrongContext(Scheduler))` | return at once | `Tid::SCHEDULER` | work | work |
/// | `Machine` | `Err(WrongContext(Machine))` | return at once | `Tid::SCHEDULER` | work | `None` / empty: the machine is busy |
/// | `Teardown` | `Err(WrongContext(Teardown))` | return at once | `Tid::SCHEDULER` | work | `None` / empty |
///
/// ```
/// assert_eq!(cos::context(), cos::Context::Main);
/// let t = cos::spawn(cos::context).unwrap();
/// assert_eq!(cos::join(t).unwrap(), cos::Context::Task(t.tid()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Context {
    /// The main program (task 1), on the thread's own stack.
    Main,
    /// A local task.
    Task(Tid),
    /// Code the scheduler runs on its own behalf, between tasks: destructors of the values it
    /// lets go of (orphans' values, unjoined values of a finished task) and of the tasks it
    /// unwinds (cancelled ones). No task runs, so nothing can wait here.
    Scheduler,
    /// A machine's code: its [`crate::VirtualMachine`] methods as the scheduler calls them
    /// (and the jobs it runs on this thread from there), the closure of [`crate::with_vm`], the
    /// `finalize` and `Drop` of a machine that `set_vm` or `finalize` lets go of. The scheduler
    /// and the machine are busy.
    Machine,
    /// The thread is ending and its OS is being destroyed: destructors of tasks still
    /// suspended, and the `finalize` of a machine still set (call [`crate::finalize`] before
    /// the thread ends so that it runs as machine code of a living OS instead).
    Teardown,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Context::Main => f.write_str("the main program"),
            Context::Task(t) => write!(f, "task {t}"),
            Context::Scheduler => f.write_str("a destructor run by the scheduler"),
            Context::Machine => f.write_str("the machine's code"),
            Context::Teardown => f.write_str("the thread's OS teardown"),
        }
    }
}

impl Context {
    /// Whether a task (or the main program) runs here, so that calls may switch tasks.
    pub(crate) fn has_task(self) -> bool {
        matches!(self, Context::Main | Context::Task(_))
    }

    /// The tid [`crate::tid`] reports here.
    pub(crate) fn tid(self) -> Tid {
        match self {
            Context::Main => Tid::MAIN,
            Context::Task(t) => t,
            _ => Tid::SCHEDULER,
        }
    }
}

/// What a call can read without borrowing the scheduler.
struct Public {
    context: Cell<Context>,
    /// Unfinished tasks, the main program included.
    tasks: Cell<usize>,
    /// Unfinished remote tasks (queued ones included).
    remote: Cell<usize>,
    /// The stack size of local tasks spawned from now on.
    stack_size: Cell<usize>,
}

/// Default size of a local task's stack.
pub(crate) const DEFAULT_STACK_SIZE: usize = 256 * 1024;

thread_local! {
    static PUBLIC: Public = const {
        Public {
            context: Cell::new(Context::Main),
            tasks: Cell::new(1),
            remote: Cell::new(0),
            stack_size: Cell::new(DEFAULT_STACK_SIZE),
        }
    };
}

/// The context the calling code runs in.
///
/// ```
/// assert_eq!(cos::context(), cos::Context::Main);
/// assert_eq!(cos::with_vm(|_| ()), None); // no machine, so no machine code ran
/// ```
#[inline]
pub fn context() -> Context {
    PUBLIC.with(|p| p.context.get())
}

/// Runs the code that follows in `context` until the guard is dropped (also when it unwinds).
#[inline]
pub(crate) fn enter(context: Context) -> Restore {
    Restore(PUBLIC.with(|p| p.context.replace(context)))
}

/// Puts back the context that was current before [`enter`].
pub(crate) struct Restore(Context);

impl Drop for Restore {
    #[inline]
    fn drop(&mut self) {
        PUBLIC.with(|p| p.context.set(self.0));
    }
}

/// Sets the context for good (the OS teardown, which never ends in another context).
pub(crate) fn set(context: Context) {
    PUBLIC.with(|p| p.context.set(context));
}

/// Publishes the task table's counts.
#[inline]
pub(crate) fn set_counts(tasks: usize, remote: usize) {
    PUBLIC.with(|p| {
        p.tasks.set(tasks);
        p.remote.set(remote);
    });
}

/// Unfinished tasks, the main program included.
pub(crate) fn task_count() -> usize {
    PUBLIC.with(|p| p.tasks.get())
}

/// Unfinished remote tasks.
pub(crate) fn remote_count() -> usize {
    PUBLIC.with(|p| p.remote.get())
}

/// The stack size of local tasks spawned from now on.
pub(crate) fn stack_size() -> usize {
    PUBLIC.with(|p| p.stack_size.get())
}

/// Sets the stack size of local tasks spawned from now on.
pub(crate) fn set_stack_size(bytes: usize) {
    PUBLIC.with(|p| p.stack_size.set(bytes));
}
