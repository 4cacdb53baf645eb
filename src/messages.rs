//! User messages between the spawner and its running remote tasks (PyOPUS's `sendMessage` and
//! `receiveMessage`), typed with serde and carried by each machine's transport in frames of
//! their own, so that they never mix with the machine's traffic (jobs, results, spawner calls).
//!
//! - In the spawner, [`send_message`] goes to a running remote task by its [`TaskId`], and
//!   [`receive_message`] takes the oldest message any remote task sent: a system call, so only
//!   the calling task waits while the others run.
//! - In a remote task (the remote function or a local task it spawned), [`send_message`] goes
//!   to the spawner ([`crate::RemoteTaskInfo::parent`]), and [`receive_message`] takes the next
//!   message the spawner sent to this task; while it waits, the task's other local tasks run.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::os;
use crate::spawner_call;
use crate::syscall::SysReturn;
use crate::vm::message::{decode, encode};
use crate::vm::{machine, MachineErrorKind, TaskId};

pub use crate::scheduler::SPAWNER_MAILBOX_LIMIT;

/// How long a waiting receive in a remote task that has other local tasks lets them run before
/// it looks at its transport again.
const WORKER_SLICE: Duration = Duration::from_millis(1);

/// Sends `message` to task `to`: from the spawner, to a running remote task; from a remote
/// task, to its spawner (`to` must be [`TaskId::SPAWNER`]).
///
/// Messages from one sender to one receiver arrive in the order sent; a remote task's
/// messages arrive before its end.
///
/// # Errors
/// [`Error::WrongContext`] where no task runs (see [`crate::Context`]); [`Error::Decode`] when the
/// message cannot be encoded; [`Error::Remote`] of kind [`crate::RemoteErrorKind::TooLarge`] when
/// its encoding is over the limit every machine keeps to (a little under 256 MiB);
/// [`Error::Vm`] with [`MachineErrorKind::NoSuchTask`] when `to`
/// is not a running remote task (it has ended, or was never started) or, in a remote task,
/// is not the spawner; [`MachineErrorKind::Unsupported`] on a machine that cannot deliver it
/// (SimVm runs a task to its end at its spawn, so no message can reach it; MpiVm has no
/// messages yet).
///
/// ```
/// // No machine, so no remote task to send to.
/// let r = cos::send_message(cos::TaskId { worker: 1, number: 1 }, &"hi");
/// assert!(matches!(r, Err(cos::Error::Vm(e)) if e.kind() == cos::MachineErrorKind::NoSuchTask));
/// ```
pub fn send_message<T: Serialize + ?Sized>(to: TaskId, message: &T) -> Result<(), Error> {
    os::task_context()?;
    let bytes = encode(message)?;
    crate::vm::within_limit("a message", bytes.len()).map_err(|f| Error::Remote(f.at(None, None)))?;
    if let Some(sent) = spawner_call::with_link(|task, link| {
        if to != TaskId::SPAWNER {
            return Err(no_such_task(to, "a remote task can send messages to its spawner only"));
        }
        link.send_message(task, bytes.clone())
    }) {
        return sent;
    }
    let sent = os::with(|s| {
        if !s.remote.contains_key(&to) {
            return Err(no_such_task(to, "no such running remote task"));
        }
        match s.vm.as_mut() {
            Some(vm) => vm.send_message(to, bytes),
            None => Err(no_such_task(to, "no machine")),
        }
    });
    sent.map_err(Error::WrongContext)?
}

/// The next message, decoded as `T`, and its sender, waiting at most `timeout` (`None`: as
/// long as it takes); `Ok(None)` when none came in time. In the spawner it also returns
/// `Ok(None)` as soon as no remote task runs that could send one.
///
/// In the spawner the messages of every remote task come to whichever task receives first;
/// up to [`SPAWNER_MAILBOX_LIMIT`] wait there to be received (one beyond is dropped and
/// logged). In a remote task only the messages sent to it come.
///
/// # Errors
/// [`Error::WrongContext`] where no task runs; [`Error::Decode`] when the message does not
/// decode as `T` (the message is used up); [`Error::Vm`] when the transport broke or the
/// machine cannot deliver messages to its tasks ([`MachineErrorKind::Unsupported`]).
///
/// ```
/// // No remote task runs, so no message can come.
/// assert_eq!(cos::receive_message::<String>(None).unwrap(), None);
/// ```
pub fn receive_message<T: DeserializeOwned>(timeout: Option<Duration>) -> Result<Option<(TaskId, T)>, Error> {
    os::task_context()?;
    let now = os::with(|s| s.now()).unwrap_or_else(|_| Instant::now());
    let deadline = timeout.map(|t| now + t);
    let got = if spawner_call::with_link(|_, _| ()).is_some() {
        receive_in_worker(deadline)?.map(|bytes| (TaskId::SPAWNER, bytes))
    } else {
        match os::syscall(crate::coroutine::SysCall::Receive { deadline })? {
            SysReturn::Received(r) => r?,
            _ => unreachable!("receive answered with another call's answer"),
        }
    };
    match got {
        Some((from, bytes)) => decode::<T>(&bytes).map(|m| Some((from, m))),
        None => Ok(None),
    }
}

/// A remote task's receive: looks at the transport, and while the task has other local tasks
/// lets them run between looks.
fn receive_in_worker(deadline: Option<Instant>) -> Result<Option<Vec<u8>>, Error> {
    loop {
        let now = Instant::now();
        // The worker's main program and its serving task, and any local task of the job.
        let others = crate::context::task_count() > 2;
        let until = match (others, deadline) {
            (true, Some(at)) => at.min(now + WORKER_SLICE),
            (true, None) => now + WORKER_SLICE,
            (false, Some(at)) => at,
            (false, None) => now + Duration::from_secs(3600),
        };
        let got = spawner_call::with_link(|task, link| link.receive_message(task, until));
        match got {
            Some(Ok(Some(bytes))) => return Ok(Some(bytes)),
            Some(Ok(None)) => {}
            Some(Err(e)) => return Err(e),
            None => return Ok(None),
        }
        if deadline.is_some_and(|at| Instant::now() >= at) {
            return Ok(None);
        }
        if others {
            os::yield_now();
        }
    }
}

fn no_such_task(to: TaskId, why: &str) -> Error {
    machine(MachineErrorKind::NoSuchTask, format!("cannot send a message to task {to}: {why}"))
}
