//! The one place that touches `corosensei`: local task coroutines and their stack pool.

use std::any::Any;
use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

use corosensei::stack::DefaultStack;
use corosensei::stack::Stack;
use corosensei::trap::{CoroutineTrapHandler, TrapHandlerRegs};
use corosensei::{Coroutine, CoroutineResult, Yielder};

use crate::coroutine::overflow::{in_guard_page, page_size};
use crate::error::{panic_text, Error};
use crate::syscall::{SpawnCallOf, SysCallOf, SysReturn};
use crate::task::Outcome;

pub(crate) mod overflow;

/// A system call as a local task makes it.
pub(crate) type SysCall = SysCallOf<LocalTask>;
/// A spawn as a local task makes it.
pub(crate) type SpawnCall = SpawnCallOf<LocalTask>;

/// How a coroutine's body ended; the scheduler, which knows the task's tid, turns a panic or an
/// overflow into the task's error.
pub(crate) enum Ended {
    /// The task's function returned.
    Returned(Outcome),
    /// It panicked, with this message.
    Panicked(String),
    /// It overflowed its stack.
    Overflowed,
}

/// The coroutine only switches stacks: what a task and the driver hand each other (a call, its
/// answer, the body's end) waits in [`Exchange`], so that a yield moves no large value through
/// the switch.
type Co = Coroutine<(), (), (), DefaultStack>;
type Y = Yielder<(), ()>;

/// One slot of the [`Exchange`]: written by one side just before a switch and taken by the
/// other just after it, so it is empty whenever no switch is under way. Its value is never
/// dropped by the thread-local's end (a `ManuallyDrop`, so that the thread-local has no
/// destructor and stays usable while the OS is torn down); being empty then, it leaks nothing.
struct Slot<T>(Cell<ManuallyDrop<Option<T>>>);

impl<T> Slot<T> {
    const fn new() -> Self {
        Slot(Cell::new(ManuallyDrop::new(None)))
    }

    #[inline]
    fn put(&self, value: T) {
        let old = self.0.replace(ManuallyDrop::new(Some(value)));
        debug_assert!(old.is_none(), "an exchange slot written twice");
        drop(ManuallyDrop::into_inner(old));
    }

    #[inline]
    fn take(&self) -> Option<T> {
        ManuallyDrop::into_inner(self.0.replace(ManuallyDrop::new(None)))
    }
}

/// The running task's side of the thread: what the switch, the signal handler and the unwinding
/// of a task need to find, in one thread-local.
struct Exchange {
    /// The yielder of the local task running on this thread right now; null when the code that
    /// runs is the main program (or the scheduler loop, which runs on the main program's stack).
    yielder: Cell<*const Y>,
    /// The running task's trap handler and the bottom of its stack's mapping (the guard page),
    /// for the stack-overflow signal handler.
    trap: Cell<Option<(CoroutineTrapHandler<()>, usize)>>,
    /// Set while the scheduler unwinds a suspended task's stack on purpose, so that the task's
    /// own panic catcher lets that unwinding through.
    unwinding: Cell<bool>,
    /// The call a task suspends with, but a yield (the commonest call, which needs no value).
    call: Slot<SysCall>,
    /// The answer a task resumes with, but nothing to say.
    answer: Slot<SysReturn>,
    /// How a task's body ended.
    ended: Slot<Ended>,
}

thread_local! {
    static EXCHANGE: Exchange = const {
        Exchange {
            yielder: Cell::new(ptr::null()),
            trap: Cell::new(None),
            unwinding: Cell::new(false),
            call: Slot::new(),
            answer: Slot::new(),
            ended: Slot::new(),
        }
    };
}

/// A local task: a coroutine on its own stack. Its record is boxed, so that the task moves as
/// one pointer between the table's entries and the driver; the box goes back to the
/// [`StackPool`] with the stack when the task ends, so a spawn allocates neither.
pub(crate) struct LocalTask(Box<Record>);

/// A task's record, or a spare one holding a stack for the next task.
enum Record {
    /// A task's coroutine and the bottom of its stack's mapping (its guard page).
    Live { co: Co, limit: usize },
    /// A stack waiting in the pool, in the box the next task's record will use.
    Spare(DefaultStack),
    /// Between two uses (never seen outside this module's functions).
    Empty,
}

/// A stack, in its box, from the [`StackPool`]: what [`LocalTask::new`] is made from.
pub(crate) struct Spare(Box<Record>);

impl LocalTask {
    #[inline(always)]
    fn co(&mut self) -> (&mut Co, usize) {
        match &mut *self.0 {
            Record::Live { co, limit } => (co, *limit),
            _ => unreachable!("a local task's record is live"),
        }
    }
}

/// What a local task did when it gave control back.
pub(crate) enum Step {
    /// It yielded.
    Yield,
    /// It made another system call and waits for its answer.
    Call(SysCall),
    /// It ended.
    Done(Ended),
}

impl LocalTask {
    /// A task that runs `f` on the spare's stack when first resumed.
    pub(crate) fn new<F>(spare: Spare, f: F) -> Self
    where
        F: FnOnce() -> Outcome + 'static,
    {
        crate::coroutine::overflow::install();
        let Spare(mut record) = spare;
        let Record::Spare(stack) = std::mem::replace(&mut *record, Record::Empty) else {
            unreachable!("a spare record holds a stack")
        };
        let limit = stack.limit().get();
        let co = Co::with_stack(stack, move |yielder: &Y, ()| {
            // A task's first resume has nothing to say; should it have had, that answer goes.
            drop(EXCHANGE.with(|x| {
                x.yielder.set(yielder);
                x.answer.take()
            }));
            let ended = match panic::catch_unwind(AssertUnwindSafe(f)) {
                Ok(outcome) => Ended::Returned(outcome),
                Err(payload) => {
                    if EXCHANGE.with(|x| x.unwinding.get()) {
                        panic::resume_unwind(payload);
                    }
                    let message = panic_text(&*payload);
                    discard_panic(payload);
                    Ended::Panicked(message)
                }
            };
            EXCHANGE.with(|x| x.ended.put(ended));
        });
        *record = Record::Live { co, limit };
        LocalTask(record)
    }

    /// Runs the task until its next system call or its end; the answer it resumes with, if it
    /// has one, was left in the exchange by [`answer`].
    #[inline]
    pub(crate) fn resume(&mut self) -> Step {
        /// Clears the running task's yielder and trap when the task gives control back, also
        /// when a panic escapes it: a yielder left behind would point into a finished stack.
        struct Running;
        impl Drop for Running {
            #[inline]
            fn drop(&mut self) {
                EXCHANGE.with(|x| {
                    x.trap.set(None);
                    x.yielder.set(ptr::null());
                });
            }
        }
        let (co, limit) = self.co();
        EXCHANGE.with(|x| x.trap.set(Some((co.trap_handler(), limit))));
        let running = Running;
        let r = co.resume(());
        drop(running);
        match r {
            CoroutineResult::Yield(()) => match EXCHANGE.with(|x| x.call.take()) {
                None => Step::Yield,
                Some(call) => Step::Call(call),
            },
            CoroutineResult::Return(()) => {
                Step::Done(EXCHANGE.with(|x| x.ended.take()).expect("a task's body records its end"))
            }
        }
    }

    /// The stack of a finished task in its box, for reuse; `None` for a task that has not
    /// finished (its stack is unwound, running its destructors, and freed).
    pub(crate) fn into_stack(mut self) -> Option<Spare> {
        if self.co().0.done() {
            let Record::Live { co, .. } = std::mem::replace(&mut *self.0, Record::Empty) else {
                unreachable!("a local task's record is live")
            };
            *self.0 = Record::Spare(co.into_stack());
            return Some(Spare(self.0));
        }
        if self.co().0.started() {
            EXCHANGE.with(|x| x.unwinding.set(true));
            let r = panic::catch_unwind(AssertUnwindSafe(|| self.co().0.force_unwind()));
            EXCHANGE.with(|x| x.unwinding.set(false));
            if r.is_err() {
                log::warn!(target: "cos", "a destructor panicked while a task was unwound");
            }
        }
        drop(self);
        None
    }
}

/// Called by the signal handler on a memory fault: when the fault hit the guard page of the
/// running task's stack, that task is made to return [`Ended::Overflowed`] once the handler
/// returns; the registers to set in the interrupted context come back.
///
/// # Safety
/// Only from a SIGSEGV/SIGBUS handler running on an alternate signal stack, on the thread that
/// faulted, and the caller must then set the returned registers in the interrupted context.
pub(crate) unsafe fn trap_stack_overflow(stack_ptr: usize, fault: usize) -> Option<TrapHandlerRegs> {
    let (trap, limit) = EXCHANGE.with(|x| x.trap.take())?;
    if !trap.stack_ptr_in_bounds(stack_ptr) || !in_guard_page(fault, limit, page_size()) {
        EXCHANGE.with(|x| x.trap.set(Some((trap, limit))));
        return None;
    }
    // SAFETY: corosensei's contract for `setup_trap_handler`, clause by clause:
    // - "The result of [`stack_ptr_in_bounds`] is only meaningful if the coroutine has not been
    //   dropped yet": the exchange holds the handler only while `LocalTask::resume` runs, which holds
    //   the coroutine by `&mut`; the guard in `resume` clears it on every way out.
    // - "the exception context must have its stack pointer within the interrupted coroutine, as
    //   checked by `stack_ptr_in_bounds`": checked above, on the interrupted context's rsp; the
    //   fault itself lies in this coroutine's guard page (`in_guard_page`), so the interrupted
    //   code is this task's, not the scheduler's or a signal handler's.
    // - "the trap handler *must* update the interrupted register context as specified in the
    //   `TrapHandlerRegs`": our caller's contract (above); `overflow::handler` sets rip, rsp,
    //   rbp, rdi and rsi, every field of x86-64's `TrapHandlerRegs`.
    // - "It is safe for the provided function to panic ... However no further traps may happen
    //   after this": the function only records `Ended::Overflowed` in the exchange (a store
    //   into a thread-local cell that is empty then, see `Slot`), and does not panic.
    // - "The coroutine must not write to any memory outside of itself except through volatile
    //   operations or assembly": a task cannot promise this; it writes shared memory like any
    //   Rust code. What is written stays written: the abandoned frames never run again, so
    //   whatever they held stays held (a lock stays locked, a `RefCell` stays borrowed, heap
    //   memory is leaked), and a structure they were changing is left as it was at the fault
    //   (for example half updated, if the fault hit inside the update). This is the documented cost of
    //   recovering (docs/architecture.md, "Stack overflow"). Values pinned on the abandoned
    //   frames are not dropped either; the stack is reset and reused, so code that relies on a
    //   pinned stack value's destructor (a `std::thread::scope` whose threads borrow from the
    //   stack) must not overflow.
    Some(unsafe { trap.setup_trap_handler(|| EXCHANGE.with(|x| x.ended.put(Ended::Overflowed))) })
}

/// Drops a panic's payload, whose own destructor may panic again: that second payload is
/// leaked rather than dropped (its destructor might panic once more), so nothing unwinds out.
pub(crate) fn discard_panic(payload: Box<dyn Any + Send>) {
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        log::warn!(target: "cos", "a panic payload's destructor panicked; that payload is leaked");
        std::mem::forget(again);
    }
}

/// Leaves `input` for the local task the driver resumes next, or for the main program when it
/// goes on (the scheduler calls this as it picks the one that runs, so the answer waits in the
/// exchange instead of moving with the task or back through the loop).
#[inline]
pub(crate) fn answer(input: SysReturn) {
    if matches!(input, SysReturn::Nothing) {
        // That variant owns nothing: forgetting it skips the enum's drop glue.
        std::mem::forget(input);
    } else {
        EXCHANGE.with(|x| x.answer.put(input));
    }
}

/// The answer the main program goes on with, left by the scheduler with [`answer`] when it
/// let the main program run again; nothing to say when none was left.
#[inline]
pub(crate) fn take_answer() -> SysReturn {
    EXCHANGE.with(|x| x.answer.take()).unwrap_or(SysReturn::Nothing)
}

/// Hands `call` to the scheduler from inside a local task and returns its answer.
///
/// # Panics
/// When called outside a local task (the caller checks the context first).
pub(crate) fn suspend(call: SysCall) -> SysReturn {
    let y = EXCHANGE.with(|x| {
        if matches!(call, SysCall::Yield) {
            // That variant owns nothing: forgetting it skips the enum's drop glue.
            std::mem::forget(call);
        } else {
            x.call.put(call);
        }
        x.yielder.get()
    });
    assert!(!y.is_null(), "suspend called outside a local task");
    // SAFETY: `y` was stored by this task's coroutine body from the `&Yielder` corosensei passed
    // it; that yielder lives on this coroutine's stack for as long as the body runs, and the body
    // is running (we are on its stack), so the pointer is valid here.
    unsafe { &*y }.suspend(());
    EXCHANGE.with(|x| {
        // The scheduler cleared the yielder when this task suspended; it runs again now.
        x.yielder.set(y);
        x.answer.take().unwrap_or(SysReturn::Nothing)
    })
}

/// Reusable task stacks, so that a spawn does not cost an `mmap` each time. Their size follows
/// [`crate::set_stack_size`].
pub(crate) struct StackPool {
    size: usize,
    free: Vec<Spare>,
}

/// How many idle stacks the pool keeps.
const POOL_MAX: usize = 4096;

impl StackPool {
    pub(crate) fn new() -> Self {
        StackPool { size: crate::context::stack_size(), free: Vec::new() }
    }

    /// A stack of the size asked for now; idle stacks of an older size are freed.
    pub(crate) fn take(&mut self) -> Result<Spare, Error> {
        let size = crate::context::stack_size();
        if size != self.size {
            self.size = size;
            self.free.clear();
        }
        match self.free.pop() {
            Some(s) => Ok(s),
            None => DefaultStack::new(self.size)
                .map(|stack| Spare(Box::new(Record::Spare(stack))))
                .map_err(|e| Error::StackAlloc(e.to_string())),
        }
    }

    pub(crate) fn give(&mut self, spare: Spare) {
        let Record::Spare(stack) = &*spare.0 else { return };
        let fits = stack.base().get() - stack.limit().get() >= self.size;
        if fits && self.free.len() < POOL_MAX {
            self.free.push(spare);
        }
    }
}
