//! The one place that touches `corosensei`: local task coroutines and their stack pool.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

use corosensei::stack::DefaultStack;
use corosensei::stack::Stack;
use corosensei::trap::{CoroutineTrapHandler, TrapHandlerRegs};
use corosensei::{Coroutine, CoroutineResult, Yielder};

use crate::error::{panic_text, Error};
use crate::syscall::{SysCall, SysReturn};
use crate::task::Outcome;

type Co = Coroutine<SysReturn, SysCall, Outcome, DefaultStack>;
type Y = Yielder<SysReturn, SysCall>;

thread_local! {
    /// The yielder of the local task running on this thread right now; null when the code that
    /// runs is the main program (or the scheduler loop, which runs on the main program's stack).
    static YIELDER: Cell<*const Y> = const { Cell::new(ptr::null()) };
    /// The running task's trap handler and the bottom of its stack's mapping (the guard page),
    /// for the stack-overflow signal handler.
    static TRAP: Cell<Option<(CoroutineTrapHandler<Outcome>, usize)>> = const { Cell::new(None) };
    /// Set while the scheduler unwinds a suspended task's stack on purpose, so that the task's
    /// own panic catcher lets that unwinding through.
    static UNWINDING: Cell<bool> = const { Cell::new(false) };
}

/// A local task: a coroutine on its own stack.
pub(crate) struct LocalTask {
    co: Co,
    /// The bottom of the stack's mapping (its guard page).
    limit: usize,
}

/// What a local task did when it gave control back.
pub(crate) enum Step {
    /// It made a system call and waits for its answer.
    Call(SysCall),
    /// It finished.
    Done(Outcome),
}

impl LocalTask {
    /// A task that runs `f` on `stack` when first resumed.
    pub(crate) fn new<F>(stack: DefaultStack, f: F) -> Self
    where
        F: FnOnce() -> Outcome + 'static,
    {
        crate::task::overflow::install();
        let limit = stack.limit().get();
        let co = Co::with_stack(stack, move |yielder: &Y, _first: SysReturn| {
            YIELDER.with(|y| y.set(yielder));
            match panic::catch_unwind(AssertUnwindSafe(f)) {
                Ok(outcome) => outcome,
                Err(payload) => {
                    if UNWINDING.with(Cell::get) {
                        panic::resume_unwind(payload);
                    }
                    Err(Error::Panicked { tid: crate::os::tid(), message: panic_text(&*payload) })
                }
            }
        });
        LocalTask { co, limit }
    }

    /// Runs the task until its next system call or its end.
    pub(crate) fn resume(&mut self, input: SysReturn) -> Step {
        TRAP.with(|t| t.set(Some((self.co.trap_handler(), self.limit))));
        let r = self.co.resume(input);
        TRAP.with(|t| t.set(None));
        YIELDER.with(|y| y.set(ptr::null()));
        match r {
            CoroutineResult::Yield(call) => Step::Call(call),
            CoroutineResult::Return(outcome) => Step::Done(outcome),
        }
    }

    /// The stack of a finished task, for reuse; `None` for a task that has not finished (its
    /// stack is unwound, running its destructors, and freed).
    pub(crate) fn into_stack(mut self) -> Option<DefaultStack> {
        if self.co.done() {
            return Some(self.co.into_stack());
        }
        if self.co.started() {
            UNWINDING.with(|u| u.set(true));
            let r = panic::catch_unwind(AssertUnwindSafe(|| self.co.force_unwind()));
            UNWINDING.with(|u| u.set(false));
            if r.is_err() {
                log::warn!(target: "cos", "a destructor panicked while a task was unwound");
            }
        }
        drop(self);
        None
    }
}

/// Called by the signal handler on a memory fault: when the fault hit the guard page of the
/// running task's stack, that task is made to return [`Error::StackOverflow`] once the handler
/// returns; the registers to set in the interrupted context come back.
///
/// # Safety
/// Only from a SIGSEGV/SIGBUS handler running on an alternate signal stack, on the thread that
/// faulted, and the caller must then set the returned registers in the interrupted context.
pub(crate) unsafe fn trap_stack_overflow(stack_ptr: usize, fault: usize) -> Option<TrapHandlerRegs> {
    let (trap, limit) = TRAP.with(Cell::take)?;
    // `limit` is the bottom of the stack's mapping, whose lowest page is the guard page.
    let guard_top = limit + 4096;
    if !trap.stack_ptr_in_bounds(stack_ptr) || fault >= guard_top || fault < limit.saturating_sub(GUARD_REACH)
    {
        TRAP.with(|t| t.set(Some((trap, limit))));
        return None;
    }
    // SAFETY: the stack pointer is inside this coroutine (checked above), the caller is the
    // fault handler and sets the returned registers; the abandoned frames are never resumed.
    Some(unsafe { trap.setup_trap_handler(|| Err(Error::StackOverflow(crate::os::tid()))) })
}

/// How far below a stack's guard page a fault still counts as an overflow of that stack (the
/// guard page, and frames that probe past it).
const GUARD_REACH: usize = 64 * 1024;

/// Whether the caller runs inside a local task (as opposed to the main program).
pub(crate) fn in_task() -> bool {
    YIELDER.with(|y| !y.get().is_null())
}

/// Hands `call` to the scheduler from inside a local task and returns its answer.
///
/// # Panics
/// When called outside a local task (check [`in_task`] first).
pub(crate) fn suspend(call: SysCall) -> SysReturn {
    let y = YIELDER.with(Cell::get);
    assert!(!y.is_null(), "suspend called outside a local task");
    // SAFETY: `y` was stored by this task's coroutine body from the `&Yielder` corosensei passed
    // it; that yielder lives on this coroutine's stack for as long as the body runs, and the body
    // is running (we are on its stack), so the pointer is valid here.
    let answer = unsafe { &*y }.suspend(call);
    // The scheduler cleared the slot when this task suspended; it runs again now.
    YIELDER.with(|c| c.set(y));
    answer
}

/// Reusable task stacks, so that a spawn does not cost an `mmap` each time.
pub(crate) struct StackPool {
    size: usize,
    free: Vec<DefaultStack>,
}

/// How many idle stacks the pool keeps.
const POOL_MAX: usize = 4096;

impl StackPool {
    pub(crate) fn new(size: usize) -> Self {
        StackPool { size, free: Vec::new() }
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Changes the size of stacks handed out from now on; idle stacks of the old size are freed.
    pub(crate) fn set_size(&mut self, size: usize) {
        if size != self.size {
            self.size = size;
            self.free.clear();
        }
    }

    pub(crate) fn take(&mut self) -> Result<DefaultStack, Error> {
        match self.free.pop() {
            Some(s) => Ok(s),
            None => DefaultStack::new(self.size).map_err(|e| Error::StackAlloc(e.to_string())),
        }
    }

    pub(crate) fn give(&mut self, stack: DefaultStack) {
        use corosensei::stack::Stack;
        let fits = stack.base().get() - stack.limit().get() >= self.size;
        if fits && self.free.len() < POOL_MAX {
            self.free.push(stack);
        }
    }
}
