//! Calls from a worker back into the spawner (PyOPUS's `spawnerCall`).
//!
//! A worker loop installs its link to the spawner in a thread-local for the life of the loop
//! and names the task it runs for the life of each task; [`spawner_call`] uses that link when
//! there is one, and calls the function here otherwise.

use std::cell::RefCell;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::vm::message::{decode, encode};
use crate::vm::{RemoteCall, RemoteFailure, RemoteFn, TaskId};

/// A worker's way of reaching its spawner.
pub(crate) trait SpawnerLink {
    /// Sends the spawner a call made by `task`; with `wait`, blocks for the reply and returns
    /// it.
    fn call(
        &mut self,
        task: TaskId,
        call: RemoteCall,
        wait: bool,
    ) -> Result<Option<Result<Vec<u8>, RemoteFailure>>, Error>;
    /// Sends the spawner a user message from `task`.
    fn send_message(&mut self, task: TaskId, bytes: Vec<u8>) -> Result<(), Error>;
    /// The next user message for `task` from the spawner, waiting until `deadline` at most
    /// (`Ok(None)`: none came in time). Messages for another task (one that ended before its
    /// message arrived) are dropped.
    fn receive_message(&mut self, task: TaskId, deadline: Instant) -> Result<Option<Vec<u8>>, Error>;
}

struct WorkerSide {
    link: Box<dyn SpawnerLink>,
    task: Option<TaskId>,
}

thread_local! {
    static WORKER: RefCell<Option<WorkerSide>> = const { RefCell::new(None) };
}

/// Makes this thread a worker with `link` to its spawner until the guard is dropped.
pub(crate) fn install(link: Box<dyn SpawnerLink>) -> LinkGuard {
    WORKER.with(|w| *w.borrow_mut() = Some(WorkerSide { link, task: None }));
    LinkGuard(())
}

/// Whether this thread runs remote tasks for a spawner (a worker thread or process).
pub(crate) fn on_worker() -> bool {
    WORKER.try_with(|w| w.borrow().is_some()).unwrap_or(false)
}

/// Removes the thread's link when dropped.
pub(crate) struct LinkGuard(());

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = WORKER.try_with(|w| w.borrow_mut().take());
    }
}

/// Names the task this worker thread runs until the guard is dropped.
pub(crate) fn running(task: TaskId) -> TaskGuard {
    set_task(Some(task));
    TaskGuard(())
}

/// Clears the running task when dropped.
pub(crate) struct TaskGuard(());

impl Drop for TaskGuard {
    fn drop(&mut self) {
        set_task(None);
    }
}

/// Clears the running task (after a task ended without dropping its guard: its frames were
/// abandoned by a stack overflow).
pub(crate) fn clear_task() {
    set_task(None);
}

fn set_task(task: Option<TaskId>) {
    let _ = WORKER.try_with(|w| {
        if let Some(side) = w.borrow_mut().as_mut() {
            side.task = task;
        }
    });
}

/// Runs `f(args)` in the spawner (PyOPUS's `spawnerCall`).
///
/// On a worker (a [`crate::ThreadVm`] worker thread or a [`crate::ProcessVm`] worker process,
/// from the remote function or any local task it spawned) the call goes to the spawner, whose
/// machine runs it with its own [`crate::Registry`], so `f` must be registered there. In the
/// spawner, or with no machine at all, `f` is called here and its value returned, whatever
/// `asynchr` says.
///
/// With `asynchr == false` the caller waits for the value (`Ok(Some(value))`). With
/// `asynchr == true` it goes on at once (`Ok(None)`); the call still runs in the spawner before
/// the calling task's own result reaches it: the spawner holds what the task reports after the
/// call until the call has run.
///
/// The spawner runs these calls one at a time, in the order they came, on a thread of its own
/// with its own cooperative OS (so `f` may spawn local tasks, and must not expect the
/// spawner's thread-locals), guarded as a worker runs its jobs: a panic or a stack overflow in
/// `f` is the caller's error, not the spawner's end. The spawner's scheduler does not wait for
/// a call: its other tasks run meanwhile and the calling task's
/// [`time_limit`](crate::Spawn::time_limit) still fires; a call still running when its task
/// ends that way is abandoned on its thread, and the next call runs on a new one.
///
/// The call carries `f`'s [signature](RemoteFn::signature): the spawner refuses it when its
/// function of that name has other types.
///
/// # Errors
/// [`Error::Decode`] when the arguments cannot be encoded or the value cannot be decoded;
/// [`Error::Remote`] when the spawner's registry lacks `f`, has it with other types, or `f`
/// failed in the spawner (with [`crate::RemoteErrorKind::UnknownFunction`],
/// [`crate::RemoteErrorKind::SignatureMismatch`], [`crate::RemoteErrorKind::Panicked`],
/// [`crate::RemoteErrorKind::StackOverflow`], ...; no task id, the spawner's host);
/// [`Error::Vm`] when the spawner cannot be reached.
///
/// ```
/// static ADD: cos::RemoteFn<(u32, u32), u32> = cos::RemoteFn::new("add", |(a, b)| a + b);
/// // No machine: the function runs here.
/// assert_eq!(cos::spawner_call(&ADD, (2, 3), false).unwrap(), Some(5));
/// ```
pub fn spawner_call<A, R>(f: &RemoteFn<A, R>, args: A, asynchr: bool) -> Result<Option<R>, Error>
where
    A: Serialize,
    R: DeserializeOwned,
{
    let Some((task, mut side)) = take_link() else {
        return Ok(Some(f.call(args)));
    };
    let sent = encode(&args).and_then(|bytes| {
        let call = RemoteCall {
            function: f.name().into(),
            args: bytes,
            send_back: true,
            signature: Some(f.signature()),
        };
        log::debug!(target: "cos", "task {task} calls {} in the spawner", call.function);
        side.link.call(task, call, !asynchr)
    });
    WORKER.with(|w| *w.borrow_mut() = Some(side));
    match sent? {
        None => Ok(None),
        Some(Ok(bytes)) => decode::<R>(&bytes).map(Some),
        Some(Err(failure)) => Err(Error::Remote(failure.at(None, Some(crate::vm::HostId::new("spawner"))))),
    }
}

/// Runs `f` with the link of the worker task this thread runs (taken out of the thread-local
/// while `f` runs); `None` when this thread runs no task of a worker.
pub(crate) fn with_link<R>(f: impl FnOnce(TaskId, &mut dyn SpawnerLink) -> R) -> Option<R> {
    let (task, mut side) = take_link()?;
    let r = f(task, side.link.as_mut());
    WORKER.with(|w| *w.borrow_mut() = Some(side));
    Some(r)
}

/// Takes the link out of the thread-local while it is used, when this thread runs a task of a
/// worker.
fn take_link() -> Option<(TaskId, WorkerSide)> {
    WORKER.with(|w| {
        let mut slot = w.borrow_mut();
        let task = slot.as_ref()?.task?;
        slot.take().map(|side| (task, side))
    })
}
