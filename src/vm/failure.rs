//! Structured failures of the machine layer: why a remote task failed (and where), and why a
//! machine refused or failed an operation (with the `io::Error` behind it, if any).

use std::fmt;
use std::io;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::vm::{HostId, TaskId};

/// What went wrong in a remote task.
///
/// ```
/// assert_eq!(cos::RemoteErrorKind::Panicked.to_string(), "panicked");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// The worker's registry has no function of that name.
    UnknownFunction,
    /// The arguments did not decode as the function's argument type.
    BadArguments,
    /// The function panicked.
    Panicked,
    /// The function's value could not be encoded.
    BadResult,
    /// The function overflowed its stack (the worker ran it as a local task and was retired).
    StackOverflow,
    /// The task's environment could not be prepared on its worker (its storage could not be
    /// made, a mirrored file is missing on that host, the startup directory does not exist
    /// there): the function did not run. The message names the path and the cause; the
    /// [`RemoteError`] at the joiner names the task and the host.
    Environment,
    /// The function registered under the call's name has other argument or result types than
    /// the function the caller named (a build whose function of that name differs): the
    /// worker refused the call before decoding its arguments. The message is the function's
    /// name.
    SignatureMismatch,
    /// A value too large for any machine's transport: the function's encoded value (the
    /// worker reports this instead of it and serves on), a job's encoded arguments (refused
    /// at the spawn, before any worker sees it) or a user message (refused at the send).
    /// `bytes` is the encoded size, `limit` the largest taken (the same on every machine,
    /// whatever the transport).
    ///
    /// ```
    /// let k = cos::RemoteErrorKind::TooLarge { bytes: 10, limit: 4 };
    /// assert_eq!(k.to_string(), "too large: 10 bytes, over the limit of 4");
    /// ```
    TooLarge {
        /// The value's encoded size.
        bytes: usize,
        /// The largest encoded size taken.
        limit: usize,
    },
}

impl fmt::Display for RemoteErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoteErrorKind::UnknownFunction => "unknown function",
            RemoteErrorKind::BadArguments => "bad arguments",
            RemoteErrorKind::Panicked => "panicked",
            RemoteErrorKind::BadResult => "result cannot be encoded",
            RemoteErrorKind::StackOverflow => "stack overflow",
            RemoteErrorKind::Environment => "task environment cannot be prepared",
            RemoteErrorKind::SignatureMismatch => "argument or result types differ from the worker's",
            RemoteErrorKind::TooLarge { bytes, limit } => {
                return write!(f, "too large: {bytes} bytes, over the limit of {limit}")
            }
        })
    }
}

/// The largest encoded value (a function's value, a job's arguments, a user message) any
/// machine carries: what fits in one frame of the process machine with room for its envelope.
/// Every machine keeps to it, so that a job behaves the same on each.
pub(crate) const MAX_VALUE: usize = (256 << 20) - 4096;

/// The failure of a value of `bytes` encoded bytes, over [`MAX_VALUE`]; `what` says which.
pub(crate) fn too_large(what: &str, bytes: usize) -> RemoteFailure {
    RemoteFailure::new(RemoteErrorKind::TooLarge { bytes, limit: MAX_VALUE }, what)
}

/// `Err(too_large(..))` when `bytes` is over [`MAX_VALUE`].
pub(crate) fn within_limit(what: &str, bytes: usize) -> Result<(), RemoteFailure> {
    if bytes > MAX_VALUE {
        Err(too_large(what, bytes))
    } else {
        Ok(())
    }
}

/// Why a remote task failed, as it crosses back from its worker: a kind and a message (the
/// panic's text, the decoding error, the function's name).
///
/// ```
/// let f = cos::RemoteFailure::new(cos::RemoteErrorKind::UnknownFunction, "f");
/// assert_eq!((f.kind, f.message.as_str()), (cos::RemoteErrorKind::UnknownFunction, "f"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFailure {
    /// What went wrong.
    pub kind: RemoteErrorKind,
    /// Its details.
    pub message: String,
}

impl RemoteFailure {
    /// A failure of `kind` with `message`.
    ///
    /// ```
    /// let f = cos::RemoteFailure::new(cos::RemoteErrorKind::Panicked, "boom");
    /// assert_eq!(f.to_string(), "panicked: boom");
    /// ```
    pub fn new(kind: RemoteErrorKind, message: impl Into<String>) -> Self {
        RemoteFailure { kind, message: message.into() }
    }

    /// The failure as the spawner reports it, with the task it ran as and its host.
    pub(crate) fn at(self, task: Option<TaskId>, host: Option<HostId>) -> RemoteError {
        RemoteError { kind: self.kind, message: self.message, task, host }
    }
}

impl fmt::Display for RemoteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.message)
        }
    }
}

/// A remote task's failure as its joiner sees it ([`crate::Error::Remote`]): what went wrong,
/// and the task id and host it ran as.
///
/// ```
/// static BOOM: cos::RemoteFn<(), u8> = cos::RemoteFn::new("boom", |()| panic!("no"));
/// cos::set_vm(cos::SimVm::new(cos::Registry::new().with(&BOOM), 1, 1)).unwrap();
/// match cos::dispatch_single(cos::job(&BOOM, ())) {
///     Err(cos::Error::Remote(e)) => {
///         assert_eq!((e.kind, e.message.as_str()), (cos::RemoteErrorKind::Panicked, "no"));
///         assert_eq!(e.host, Some(cos::HostId::new("host0")));
///         assert_eq!(e.task.map(|t| t.worker), Some(1));
///     }
///     other => panic!("{other:?}"),
/// }
/// cos::finalize();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// What went wrong.
    pub kind: RemoteErrorKind,
    /// Its details (the panic's text, the decoding error, the function's name).
    pub message: String,
    /// The task id it ran as (`None` for a call that ran in the spawner).
    pub task: Option<TaskId>,
    /// The host it ran on.
    pub host: Option<HostId>,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("remote task")?;
        if let Some(t) = self.task {
            write!(f, " {t}")?;
        }
        if let Some(h) = &self.host {
            write!(f, " on {h}")?;
        }
        write!(f, " failed: {}", self.kind)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for RemoteError {}

/// What kind of machine error it is.
///
/// ```
/// assert_eq!(cos::MachineErrorKind::Finalized.to_string(), "finalized");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MachineErrorKind {
    /// An operating-system call failed (its `io::Error` is the [`source`](std::error::Error::source)).
    Io,
    /// The call is not allowed now or here (a worker starting workers, replacing a machine
    /// while remote tasks run, ...).
    Refused,
    /// The machine cannot do this at all (cancel on a machine that cannot stop tasks, MPI in a
    /// build without the `mpi` feature).
    Unsupported,
    /// The machine was finalized.
    Finalized,
    /// The task is not running on the machine.
    NoSuchTask,
    /// A peer broke the protocol: a malformed or unexpected frame, a worker that did not start.
    Protocol,
    /// A configuration that makes no sense (an unknown machine name, ...).
    Config,
    /// Anything else.
    Other,
}

impl fmt::Display for MachineErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MachineErrorKind::Io => "i/o error",
            MachineErrorKind::Refused => "refused",
            MachineErrorKind::Unsupported => "unsupported",
            MachineErrorKind::Finalized => "finalized",
            MachineErrorKind::NoSuchTask => "no such task",
            MachineErrorKind::Protocol => "protocol error",
            MachineErrorKind::Config => "configuration error",
            MachineErrorKind::Other => "error",
        })
    }
}

/// A machine refused or failed an operation ([`crate::Error::Vm`]): its kind, what it was
/// doing, and the `io::Error` behind it when there is one.
///
/// ```
/// use std::error::Error as _;
/// let e = cos::MachineError::io("cannot start worker", std::io::Error::other("no"));
/// assert_eq!(e.kind(), cos::MachineErrorKind::Io);
/// assert!(e.source().is_some());
/// ```
#[derive(Debug, Clone)]
pub struct MachineError {
    kind: MachineErrorKind,
    context: String,
    source: Option<Arc<io::Error>>,
}

impl MachineError {
    /// An error of `kind` while doing `context`.
    ///
    /// ```
    /// let e = cos::MachineError::new(cos::MachineErrorKind::Refused, "not now");
    /// assert_eq!(e.to_string(), "refused: not now");
    /// ```
    pub fn new(kind: MachineErrorKind, context: impl Into<String>) -> Self {
        MachineError { kind, context: context.into(), source: None }
    }

    /// An operating-system error `source` while doing `context`.
    ///
    /// ```
    /// let e = cos::MachineError::io("cannot listen", std::io::Error::other("busy"));
    /// assert_eq!(e.io_error().map(|e| e.kind()), Some(std::io::ErrorKind::Other));
    /// ```
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        MachineError { kind: MachineErrorKind::Io, context: context.into(), source: Some(Arc::new(source)) }
    }

    /// What kind of error it is.
    ///
    /// ```
    /// let e = cos::MachineError::new(cos::MachineErrorKind::Finalized, "gone");
    /// assert_eq!(e.kind(), cos::MachineErrorKind::Finalized);
    /// ```
    pub fn kind(&self) -> MachineErrorKind {
        self.kind
    }

    /// What the machine was doing.
    ///
    /// ```
    /// let e = cos::MachineError::new(cos::MachineErrorKind::Config, "unknown machine");
    /// assert_eq!(e.context(), "unknown machine");
    /// ```
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The operating-system error behind it, if any.
    ///
    /// ```
    /// assert!(cos::MachineError::new(cos::MachineErrorKind::Other, "x").io_error().is_none());
    /// ```
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_deref()
    }
}

/// Equal when of one kind and context, with sources of one `io::ErrorKind`.
impl PartialEq for MachineError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.context == other.context
            && self.source.as_ref().map(|e| e.kind()) == other.source.as_ref().map(|e| e.kind())
    }
}

impl Eq for MachineError {}

impl fmt::Display for MachineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.context)?;
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for MachineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A machine error of kind [`MachineErrorKind::Other`] with this text (for code that has no
/// better kind at hand).
impl From<&str> for MachineError {
    fn from(context: &str) -> Self {
        MachineError::new(MachineErrorKind::Other, context)
    }
}

/// Shorthand for machine errors inside the crate.
pub(crate) fn machine(kind: MachineErrorKind, context: impl Into<String>) -> crate::Error {
    crate::Error::Vm(MachineError::new(kind, context))
}

/// Shorthand for an operating-system error inside the crate.
pub(crate) fn io_error(context: impl Into<String>, source: io::Error) -> crate::Error {
    crate::Error::Vm(MachineError::io(context, source))
}

/// Why a worker was lost.
///
/// ```
/// assert_eq!(cos::LostCause::Signal(9).to_string(), "killed by signal 9");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostCause {
    /// The worker process was killed by this signal.
    Signal(i32),
    /// The worker process exited with this status.
    Exit(i32),
    /// The worker panicked outside the remote function (for example while it encoded the
    /// function's value); the panic's text.
    Panicked(String),
    /// The connection to the worker broke or carried garbage.
    Connection(String),
    /// The worker could not be started, or did not connect in time.
    Start(String),
    /// Anything else (for example a user's machine).
    Other(String),
    /// Nothing came from the worker for this long (no heartbeat: the process or rank is
    /// stopped, dead, stuck outside its job, or cut off), or a frame it began took this long;
    /// the machine killed it (a process) or took it out of service (an MPI rank). See
    /// `ProcessVmBuilder::heartbeat` and `MpiVm`.
    Silent(std::time::Duration),
}

impl fmt::Display for LostCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LostCause::Signal(s) => write!(f, "killed by signal {s}"),
            LostCause::Exit(c) => write!(f, "exited with status {c}"),
            LostCause::Panicked(m) => write!(f, "panicked outside the function: {m}"),
            LostCause::Connection(m) => write!(f, "connection broken: {m}"),
            LostCause::Start(m) => write!(f, "not started: {m}"),
            LostCause::Other(m) => f.write_str(m),
            LostCause::Silent(d) => write!(f, "silent for {d:?}"),
        }
    }
}

/// A lost worker as the joiner of its task sees it ([`crate::Error::WorkerLost`]): why, and
/// the task id and host the task ran as.
///
/// ```
/// let lost = cos::LostWorker { task: None, host: Some(cos::HostId::new("host0")), cause: cos::LostCause::Exit(3) };
/// assert_eq!(lost.to_string(), "the worker on host0 was lost: exited with status 3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostWorker {
    /// The task it ran.
    pub task: Option<TaskId>,
    /// Its host.
    pub host: Option<HostId>,
    /// What happened to it.
    pub cause: LostCause,
}

impl fmt::Display for LostWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the worker")?;
        if let Some(t) = self.task {
            write!(f, " of task {t}")?;
        }
        if let Some(h) = &self.host {
            write!(f, " on {h}")?;
        }
        write!(f, " was lost: {}", self.cause)
    }
}

impl std::error::Error for LostWorker {}
