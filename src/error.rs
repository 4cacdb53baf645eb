//! The one error type of `cos`.

use std::fmt;

use crate::environment::{ProcessError, StorageError};
use crate::task::Tid;
use crate::vm::{LostWorker, MachineError, RemoteError};

/// What a task is blocked on, as shown in a [`DeadlockReport`].
///
/// ```
/// assert_eq!(cos::WaitReason::Join(vec![]).to_string(), "joins any child");
/// assert_eq!(cos::WaitReason::Slot(Some("host1".into())).to_string(), "waits for a free slot on host host1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitReason {
    /// A blocking join on these tids (empty: any child).
    Join(Vec<Tid>),
    /// A blocking remote spawn waiting for a free slot, on the named host or on any host.
    Slot(Option<String>),
    /// A receive waiting for a message from a remote task.
    Message,
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::Join(tids) if tids.is_empty() => f.write_str("joins any child"),
            WaitReason::Join(tids) => {
                f.write_str("joins ")?;
                for (i, t) in tids.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                Ok(())
            }
            WaitReason::Slot(Some(host)) => write!(f, "waits for a free slot on host {host}"),
            WaitReason::Slot(None) => f.write_str("waits for a free slot on any host"),
            WaitReason::Message => f.write_str("waits for a message"),
        }
    }
}

/// Who waits on whom when no task can run and nothing outside can wake one.
///
/// ```
/// use cos::{DeadlockReport, Tid, WaitReason};
/// let r = DeadlockReport { waiting: vec![(Tid(1), WaitReason::Join(vec![Tid(2)]))] };
/// assert_eq!(r.to_string(), "task 1 joins 2");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlockReport {
    /// Every blocked task with what it waits on, in tid order.
    pub waiting: Vec<(Tid, WaitReason)>,
}

impl fmt::Display for DeadlockReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (tid, why)) in self.waiting.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "task {tid} {why}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in `cos`, for the caller of a call or for the joiner of a task.
///
/// ```
/// let task = cos::spawn(|| -> u32 { panic!("boom") }).unwrap();
/// match cos::join(task) {
///     Err(cos::Error::Panicked { message, .. }) => assert_eq!(message, "boom"),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A join named tid 0, the scheduler.
    JoinScheduler,
    /// A join named a tid that is neither running nor a finished, unjoined child of the caller.
    UnknownTask(Tid),
    /// A join named a running task that is not a child of the caller.
    NotAChild {
        /// The task named in the join.
        tid: Tid,
        /// The caller.
        caller: Tid,
    },
    /// Every task is blocked and nothing can wake any of them.
    Deadlock(DeadlockReport),
    /// The joined local task panicked; the message is the panic's payload when it was a string.
    Panicked {
        /// The task that panicked.
        tid: Tid,
        /// The panic message.
        message: String,
    },
    /// A stack for a new local task could not be allocated (see `vm.max_map_count` on Linux).
    StackAlloc(String),
    /// A joined value was asked for as a type it does not have.
    TypeMismatch(Tid),
    /// A non-blocking, non-enqueued remote spawn found no free slot (PyOPUS returns tid -1).
    NoFreeSlot,
    /// Bytes that do not decode as the expected type.
    Decode(String),
    /// A remote task failed on its worker (it panicked, overflowed its stack, its function is
    /// not registered there, ...): the kind, the message, the task id and the host.
    Remote(RemoteError),
    /// The worker running a remote task was lost (it crashed, exited or was killed).
    WorkerLost(LostWorker),
    /// A virtual machine refused or failed an operation: the kind, what it did, and the
    /// `io::Error` behind it (as [`std::error::Error::source`]).
    Vm(MachineError),
    /// Two different remote functions were registered under one name.
    DuplicateFunction(String),
    /// The task was cancelled before it finished.
    Cancelled(Tid),
    /// The remote task ran past its [`Spawn::time_limit`](crate::Spawn::time_limit) and was
    /// stopped by its machine: the task has ended.
    Timeout,
    /// The local task overflowed its stack (it hit its guard page).
    StackOverflow(Tid),
    /// A mirrored storage path or a task's local storage failed.
    Storage(StorageError),
    /// An external program started by a task failed.
    Process(ProcessError),
    /// The call cannot be made where it was made (for example a spawn from a destructor the
    /// scheduler runs, or from a machine's own code); see [`crate::Context`].
    WrongContext(crate::context::Context),
    /// The machine cannot be replaced or removed while remote tasks run (those waiting for a
    /// slot included).
    MachineInUse {
        /// The remote tasks that have not finished.
        remote_tasks: usize,
    },
    /// A task group used by a task other than the one that made it.
    NotGroupOwner {
        /// The task that made the group.
        owner: Tid,
        /// The caller.
        caller: Tid,
    },
    /// A task group that no longer exists (its owner finished).
    UnknownGroup,
    /// [`join_timeout`](crate::join_timeout) waited its whole time and none of the tasks it
    /// named finished: the call gave up, the tasks run on and stay joinable.
    JoinTimeout,
}

/// Which of the two kinds of failure an [`Error`] is: the joined task ended without its value,
/// or the call itself failed (as tokio's `JoinError` against the errors of the call).
///
/// ```
/// let task = cos::spawn(|| -> u8 { panic!("boom") }).unwrap();
/// let e = cos::join(task).unwrap_err();
/// assert_eq!(e.class(), cos::ErrorClass::TaskEnded);
/// assert_eq!(cos::Error::NoFreeSlot.class(), cos::ErrorClass::CallFailed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The task ended without its value: it panicked, overflowed its stack, was cancelled, ran
    /// past its time limit, failed on its worker, or its worker was lost. The join worked; the
    /// task is gone.
    TaskEnded,
    /// The call failed: it was misused (a wrong tid, a wrong context, a group of another task),
    /// found no slot, gave up waiting, or the machine, the storage or an external program
    /// failed. Any task it named is as it was.
    CallFailed,
}

impl Error {
    /// Whether the joined task ended without its value or the call failed.
    ///
    /// ```
    /// assert_eq!(cos::Error::Timeout.class(), cos::ErrorClass::TaskEnded);
    /// assert_eq!(cos::Error::JoinTimeout.class(), cos::ErrorClass::CallFailed);
    /// ```
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Panicked { .. }
            | Error::StackOverflow(_)
            | Error::Cancelled(_)
            | Error::Timeout
            | Error::Remote(_)
            | Error::WorkerLost(_) => ErrorClass::TaskEnded,
            Error::JoinScheduler
            | Error::UnknownTask(_)
            | Error::NotAChild { .. }
            | Error::Deadlock(_)
            | Error::StackAlloc(_)
            | Error::TypeMismatch(_)
            | Error::NoFreeSlot
            | Error::Decode(_)
            | Error::Vm(_)
            | Error::DuplicateFunction(_)
            | Error::Storage(_)
            | Error::Process(_)
            | Error::WrongContext(_)
            | Error::MachineInUse { .. }
            | Error::NotGroupOwner { .. }
            | Error::UnknownGroup
            | Error::JoinTimeout => ErrorClass::CallFailed,
        }
    }

    /// Whether this is [`ErrorClass::TaskEnded`]: the task is gone, its value will never come.
    ///
    /// ```
    /// assert!(cos::Error::Cancelled(cos::Tid(2)).task_ended());
    /// assert!(!cos::Error::UnknownTask(cos::Tid(2)).task_ended());
    /// ```
    pub fn task_ended(&self) -> bool {
        self.class() == ErrorClass::TaskEnded
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::JoinScheduler => f.write_str("cannot join task 0 (the scheduler)"),
            Error::UnknownTask(t) => write!(f, "task {t} does not exist"),
            Error::NotAChild { tid, caller } => write!(f, "task {tid} is not a child of task {caller}"),
            Error::Deadlock(r) => write!(f, "deadlock: {r}"),
            Error::Panicked { tid, message } => write!(f, "task {tid} panicked: {message}"),
            Error::StackAlloc(e) => write!(f, "cannot allocate a task stack: {e}"),
            Error::TypeMismatch(t) => write!(f, "the value of task {t} has another type"),
            Error::NoFreeSlot => f.write_str("no free slot for a remote task"),
            Error::Decode(e) => write!(f, "malformed message: {e}"),
            Error::Remote(e) => write!(f, "{e}"),
            Error::WorkerLost(e) => write!(f, "{e}"),
            Error::Vm(e) => write!(f, "virtual machine: {e}"),
            Error::DuplicateFunction(n) => write!(f, "two remote functions are registered as {n:?}"),
            Error::Cancelled(t) => write!(f, "task {t} was cancelled"),
            Error::Timeout => f.write_str("the task ran past its time limit"),
            Error::StackOverflow(t) => write!(f, "task {t} overflowed its stack"),
            Error::Storage(e) => write!(f, "storage: {e}"),
            Error::Process(e) => write!(f, "external program: {e}"),
            Error::WrongContext(c) => write!(f, "this call cannot be made from {c}"),
            Error::MachineInUse { remote_tasks } => {
                write!(f, "the machine is in use by {remote_tasks} remote tasks")
            }
            Error::NotGroupOwner { owner, caller } => {
                write!(f, "task {caller} uses a task group of task {owner}")
            }
            Error::UnknownGroup => f.write_str("the task group is gone"),
            Error::JoinTimeout => f.write_str("no task finished before the join's deadline"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Vm(e) => Some(e),
            Error::Remote(e) => Some(e),
            Error::WorkerLost(e) => Some(e),
            Error::Storage(e) => Some(e),
            Error::Process(e) => Some(e),
            _ => None,
        }
    }
}

/// ```
/// fn f() -> Result<(), cos::Error> {
///     cos::to_abstract_path_in("/elsewhere", &["/mnt/share"])?;
///     Ok(())
/// }
/// assert!(matches!(f(), Err(cos::Error::Storage(_))));
/// ```
impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(e)
    }
}

/// ```
/// fn f() -> Result<(), cos::Error> {
///     cos::ProcessGroup::start(&mut std::process::Command::new("no-such-program-x"))?;
///     Ok(())
/// }
/// assert!(matches!(f(), Err(cos::Error::Process(_))));
/// ```
impl From<ProcessError> for Error {
    fn from(e: ProcessError) -> Self {
        Error::Process(e)
    }
}

/// The text of a panic payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
