//! What the scheduler lets go of while it is borrowed, destroyed once it is not.

use std::panic::{self, AssertUnwindSafe};

use crate::context::{self, Context};
use crate::coroutine::discard_panic;
use crate::coroutine::LocalTask;
use crate::task::Outcome;

/// Values (orphans' values, the unjoined values of a finished task) and cancelled tasks the
/// scheduler let go of. Dropping the graveyard destroys them in [`Context::Scheduler`] (or the
/// teardown's context, when the OS itself goes): their destructors may call `cos`, getting
/// [`crate::Error::WrongContext`] from the calls that would switch tasks, and a destructor
/// that panics ends only its own value (the panic is logged).
pub(crate) struct Graveyard {
    values: Vec<Outcome>,
    tasks: Vec<LocalTask>,
}

impl Graveyard {
    pub(crate) fn new(values: Vec<Outcome>, tasks: Vec<LocalTask>) -> Self {
        Graveyard { values, tasks }
    }
}

impl Drop for Graveyard {
    fn drop(&mut self) {
        let _scheduler =
            (context::context() != Context::Teardown).then(|| context::enter(Context::Scheduler));
        for value in self.values.drain(..) {
            contain("a destructor of a value the scheduler dropped", move || drop(value));
        }
        for task in self.tasks.drain(..) {
            // Unwinding contains the panics of the task's destructors itself.
            drop(task.into_stack());
        }
    }
}

/// Runs `f`, which destroys something of the user's; a panic in it is logged and its payload
/// discarded, so that it cannot unwind into the scheduler.
pub(crate) fn contain(what: &str, f: impl FnOnce()) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) {
        log::warn!(target: "cos", "{what} panicked; the panic is contained");
        discard_panic(payload);
    }
}
