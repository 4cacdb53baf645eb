//! Ids and calls that cross between the spawner and its workers, and their encoding.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::vm::RemoteFn;

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

impl TaskId {
    /// The spawner's own task id in its machine (worker 0), every remote task's
    /// [`parent`](crate::RemoteTaskInfo::parent).
    ///
    /// ```
    /// assert_eq!(cos::TaskId::SPAWNER.to_string(), "0:0");
    /// ```
    pub const SPAWNER: TaskId = TaskId { worker: 0, number: 0 };
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.worker, self.number)
    }
}

/// A call of a registered remote function: its name, its postcard-encoded arguments and the
/// fingerprint of the function's types.
///
/// The typed calls ([`crate::Spawn`], [`crate::spawn_remote`], [`crate::dispatch`],
/// [`crate::spawner_call`]) and [`RemoteCall::of`] fill [`signature`](RemoteCall::signature)
/// from the [`crate::RemoteFn`] they are given, so a worker whose function of that name has other
/// argument or result types refuses the call with [`crate::RemoteErrorKind::SignatureMismatch`]
/// before it decodes anything. [`RemoteCall::new`] knows only a name: its call carries no
/// signature and the worker runs it unchecked, decoding the bytes as its function's argument
/// type (arguments that do not decode give [`crate::RemoteErrorKind::BadArguments`]; bytes of
/// another type that happen to decode are taken as they are).
///
/// ```
/// static DOUBLE: cos::RemoteFn<u32, u32> = cos::RemoteFn::new("double", |x| x * 2);
/// let c = cos::RemoteCall::of(&DOUBLE, &21).unwrap();
/// assert_eq!((c.function.as_ref(), c.signature), ("double", Some(DOUBLE.signature())));
/// let raw = cos::RemoteCall::new("double", &21u32).unwrap();
/// assert_eq!(raw.signature, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteCall {
    /// The registered name.
    pub function: Cow<'static, str>,
    /// The arguments, postcard-encoded.
    pub args: Vec<u8>,
    /// Whether the worker sends the function's value back (PyOPUS's `sendBack`, default
    /// `true`). When `false` the worker drops the value without encoding it and reports only
    /// the task's end, with empty bytes (a failure is still reported as usual).
    pub send_back: bool,
    /// The fingerprint of the called function's argument and result types
    /// ([`crate::RemoteFn::signature`]), checked by the worker before it decodes the arguments;
    /// `None`: unchecked (see above).
    pub signature: Option<u64>,
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
        Ok(RemoteCall {
            function: Cow::Owned(function.to_string()),
            args: encode(args)?,
            send_back: true,
            signature: None,
        })
    }

    /// Encodes `args` for a call of `f`, with `f`'s [signature](crate::RemoteFn::signature):
    /// a worker whose function of that name has other types refuses it.
    ///
    /// # Errors
    /// [`Error::Decode`] when the arguments cannot be encoded.
    ///
    /// ```
    /// static LEN: cos::RemoteFn<String, u64> = cos::RemoteFn::new("len", |s| s.len() as u64);
    /// static LEN_OF_U64: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("len", |x| x);
    /// let reg = cos::Registry::new().with(&LEN);
    /// let err = reg.run(&cos::RemoteCall::of(&LEN_OF_U64, &0).unwrap()).unwrap_err();
    /// assert_eq!(err.kind, cos::RemoteErrorKind::SignatureMismatch);
    /// assert!(reg.run(&cos::RemoteCall::of(&LEN, &"ab".to_string()).unwrap()).is_ok());
    /// ```
    pub fn of<A: Serialize, R>(f: &RemoteFn<A, R>, args: &A) -> Result<Self, Error> {
        Ok(RemoteCall {
            function: Cow::Borrowed(f.name()),
            args: encode(args)?,
            send_back: true,
            signature: Some(f.signature()),
        })
    }

    /// This call with its value sent back or not (PyOPUS's `sendBack`; see
    /// [`RemoteCall::send_back`]).
    ///
    /// ```
    /// let c = cos::RemoteCall::new("f", &1u8).unwrap().with_send_back(false);
    /// assert!(!c.send_back);
    /// ```
    pub fn with_send_back(self, send_back: bool) -> Self {
        RemoteCall { send_back, ..self }
    }
}

/// A job as it crosses to a worker: the task, where it runs and who spawned it, and the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Job {
    /// The task's id.
    pub(crate) task: TaskId,
    /// The host of the slot it runs on, as the spawner names it.
    pub(crate) host: HostId,
    /// The spawner's task id.
    pub(crate) parent: TaskId,
    /// The call, with its `send_back`: when `false` the serving loop's registry drops the
    /// value unencoded and reports the job's end with empty bytes.
    pub(crate) call: RemoteCall,
}

impl Job {
    /// A job of `call` as `task` on `host`, spawned by the spawner.
    pub(crate) fn new(task: TaskId, host: HostId, call: RemoteCall) -> Self {
        Job { task, host, parent: TaskId::SPAWNER, call }
    }
}

/// A [`Job`] by reference, for the machines that encode it: the same bytes as the `Job`, with
/// no copy of the host's name and the call's arguments.
#[derive(Debug, Serialize)]
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub(crate) struct JobRef<'a> {
    pub(crate) task: TaskId,
    pub(crate) host: &'a HostId,
    pub(crate) parent: TaskId,
    pub(crate) call: &'a RemoteCall,
}

#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
impl<'a> JobRef<'a> {
    /// A job of `call` as `task` on `host`, spawned by the spawner.
    pub(crate) fn new(task: TaskId, host: &'a HostId, call: &'a RemoteCall) -> Self {
        JobRef { task, host, parent: TaskId::SPAWNER, call }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_by_reference_encodes_as_the_job() {
        let call = RemoteCall::new("f", &(7u64, "x".to_string())).unwrap().with_send_back(false);
        let host = HostId::new("node-17");
        let task = TaskId { worker: 3, number: 99 };
        let by_value = encode(&Job::new(task, host.clone(), call.clone())).unwrap();
        let by_ref = encode(&JobRef::new(task, &host, &call)).unwrap();
        assert_eq!(by_ref, by_value);
        assert_eq!(decode::<Job>(&by_ref).unwrap(), Job::new(task, host, call));
    }
}
