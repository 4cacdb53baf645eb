//! Ids and messages that cross between the spawner and its workers.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A host: a machine (or, for [`crate::ThreadVm`], a simulated one) that has slots for tasks.
///
/// ```
/// let h = cos::HostId::new("node7");
/// assert_eq!(h.name(), "node7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostId(String);

impl HostId {
    /// A host id with the given name.
    ///
    /// ```
    /// assert_eq!(cos::HostId::new("a").to_string(), "a");
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        HostId(name.into())
    }

    /// The host's name.
    ///
    /// ```
    /// assert_eq!(cos::HostId::new("b").name(), "b");
    /// ```
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A task id in a virtual machine: the worker (slot, process or MPI rank) and the task's number
/// there (PyOPUS's MPI `TaskID(rank, number)`).
///
/// ```
/// let t = cos::TaskId { worker: 2, number: 5 };
/// assert_eq!(t.to_string(), "2:5");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId {
    /// The worker: a slot index, a worker process index or an MPI rank; 0 is the spawner.
    pub worker: u32,
    /// The task's number on that worker.
    pub number: u64,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.worker, self.number)
    }
}

/// A call of a registered remote function: its name and its postcard-encoded arguments.
///
/// ```
/// let c = cos::RemoteCall::new("double", &21u32).unwrap();
/// assert_eq!(c.function, "double");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteCall {
    /// The registered name.
    pub function: Cow<'static, str>,
    /// The arguments, postcard-encoded.
    pub args: Vec<u8>,
}

impl RemoteCall {
    /// Encodes `args` for a call of `function`.
    ///
    /// # Errors
    /// [`Error::Decode`] when the arguments cannot be encoded.
    ///
    /// ```
    /// let c = cos::RemoteCall::new("f", &(1u8, "x")).unwrap();
    /// assert!(!c.args.is_empty());
    /// ```
    pub fn new<A: Serialize>(function: &str, args: &A) -> Result<Self, Error> {
        Ok(RemoteCall { function: Cow::Owned(function.to_string()), args: encode(args)? })
    }
}

/// Why a remote task failed, as it crosses back to the spawner.
///
/// ```
/// let e: cos::Error = cos::RemoteFailure::UnknownFunction("f".into()).into();
/// assert_eq!(e, cos::Error::UnknownFunction("f".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteFailure {
    /// The worker's registry has no function of that name.
    UnknownFunction(String),
    /// The arguments did not decode as the function's argument type.
    BadArguments(String),
    /// The function panicked.
    Panicked(String),
    /// The function overflowed its stack (the worker ran it as a local task and lives on).
    StackOverflow,
}

impl From<RemoteFailure> for Error {
    fn from(f: RemoteFailure) -> Self {
        match f {
            RemoteFailure::UnknownFunction(n) => Error::UnknownFunction(n),
            RemoteFailure::BadArguments(e) => Error::Decode(e),
            RemoteFailure::Panicked(m) => Error::Remote(format!("panicked: {m}")),
            RemoteFailure::StackOverflow => Error::Remote("stack overflow".into()),
        }
    }
}

/// A message between tasks of a virtual machine (PyOPUS's `MsgTaskResult`, `MsgTaskExit`,
/// `MsgHostAdd`, `MsgHostDelete`, plus user messages).
///
/// ```
/// let m = cos::Message::TaskResult(Ok(vec![1, 2]));
/// assert!(matches!(m, cos::Message::TaskResult(Ok(_))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A task's result: its postcard-encoded value, or why it failed.
    TaskResult(Result<Vec<u8>, RemoteFailure>),
    /// A task ended (always after its result, if any).
    TaskExit,
    /// Hosts joined the machine.
    HostAdd(Vec<HostId>),
    /// A host left the machine.
    HostDelete(HostId),
    /// The worker running the task was lost before it finished (the spawner's machine makes
    /// this message itself; it ends the task like [`Message::TaskExit`]).
    WorkerLost(String),
    /// Bytes for the user.
    User(Vec<u8>),
    /// From a worker: run `call` in the spawner (PyOPUS's `spawnerCall`); `reply` asks for a
    /// [`Message::SpawnerReply`]. The spawner's machine answers it itself, inside
    /// [`crate::VirtualMachine::receive_message`]; the scheduler never sees it.
    SpawnerCall {
        /// The registered function and its arguments.
        call: RemoteCall,
        /// Whether the worker waits for the value.
        reply: bool,
    },
    /// To a worker: the value of its [`Message::SpawnerCall`].
    SpawnerReply(Result<Vec<u8>, RemoteFailure>),
}

/// Postcard-encodes a value.
pub(crate) fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, Error> {
    // Small messages are the common case: one allocation instead of a few regrowths.
    postcard::to_extend(v, Vec::with_capacity(64)).map_err(|e| Error::Decode(e.to_string()))
}

/// Postcard-decodes a value, insisting that every byte is used.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(Error::Decode(format!("{} trailing bytes", rest.len()))),
        Err(e) => Err(Error::Decode(e.to_string())),
    }
}
