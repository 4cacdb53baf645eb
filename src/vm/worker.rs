//! The worker side shared by the machines: run one registered call and answer with messages.

use std::rc::Rc;
use std::thread;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::error::Error;
use crate::vm::{Registry, RemoteCall, RemoteFailure};

/// A thread that runs calls one at a time, synchronously, as the main program of its own
/// cooperative OS (so a remote function may spawn local tasks of its own).
pub(crate) struct InlineWorker {
    to: Option<Sender<RemoteCall>>,
    from: Receiver<Result<Vec<u8>, RemoteFailure>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl InlineWorker {
    pub(crate) fn new(registry: Registry) -> Self {
        let (to, jobs) = bounded::<RemoteCall>(1);
        let (results, from) = bounded(1);
        let handle = thread::Builder::new()
            .name("cos-sim-worker".into())
            .spawn(move || {
                for call in jobs {
                    if results.send(registry.run(&call)).is_err() {
                        break;
                    }
                }
            })
            .ok();
        InlineWorker { to: Some(to), from, handle }
    }

    /// Runs `call` and waits for its result.
    pub(crate) fn run(&mut self, call: RemoteCall) -> Result<Result<Vec<u8>, RemoteFailure>, Error> {
        let lost = || Error::WorkerLost("simulation worker thread is gone".into());
        self.to.as_ref().ok_or_else(lost)?.send(call).map_err(|_| lost())?;
        self.from.recv().map_err(|_| lost())
    }
}

impl Drop for InlineWorker {
    fn drop(&mut self) {
        self.to = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The stack size of the local task a worker runs calls in (only the pages a call touches
/// take memory).
pub(crate) const WORKER_TASK_STACK: usize = 8 * 1024 * 1024;

/// Runs `call` as a local task of this thread's OS, so that a stack overflow in the function
/// ends only the call, with [`RemoteFailure::StackOverflow`].
///
/// # Errors
/// The error that ended the task otherwise: a panic that escaped the registry's own catching
/// ([`Error::Panicked`]), or no stack for the task.
pub(crate) fn run_guarded(
    registry: &Rc<Registry>,
    call: RemoteCall,
) -> Result<Result<Vec<u8>, RemoteFailure>, Error> {
    if crate::os::stack_size() < WORKER_TASK_STACK {
        crate::os::set_stack_size(WORKER_TASK_STACK);
    }
    let registry = Rc::clone(registry);
    match crate::os::spawn(move || registry.run(&call)).and_then(crate::os::join) {
        Ok(result) => Ok(result),
        Err(Error::StackOverflow(_)) => Ok(Err(RemoteFailure::StackOverflow)),
        Err(e) => Err(e),
    }
}
