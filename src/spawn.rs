//! Spawning registered functions, remotely when a machine has a slot (PyOPUS's `Spawn` with
//! `remote`, `targetHostID`, `block`, `enqueue` and `extendedReturnValue`).

use std::marker::PhantomData;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::coroutine::SpawnCall;
use crate::error::Error;
use crate::os;
use crate::syscall::RemoteSpawn;
use crate::task::{Outcome, Task, Value};
use crate::vm::message::{decode, encode};
use crate::vm::{HostId, RemoteCall, RemoteFn, TaskId};

/// A spawn of a registered function with PyOPUS's options. By default it is remote, blocking
/// and enqueued; without a machine (or with `remote(false)`) it runs as a local task.
///
/// ```
/// static DOUBLE: cos::RemoteFn<u32, u32> = cos::RemoteFn::new("double", |x| x * 2);
/// // No machine is set, so this runs as a local task.
/// let s = cos::Spawn::new(&DOUBLE, 21).start().unwrap();
/// assert_eq!(s.task_id, None);
/// assert_eq!(cos::join(s.task).unwrap(), 42);
/// ```
pub struct Spawn<R> {
    spawn: Result<Box<RemoteSpawn>, Error>,
    marker: PhantomData<fn() -> R>,
}

/// A started spawn (PyOPUS's extended return value `(tid, taskID, hostID)`).
///
/// ```
/// static ONE: cos::RemoteFn<(), u8> = cos::RemoteFn::new("one", |()| 1);
/// let s: cos::Spawned<u8> = cos::Spawn::new(&ONE, ()).start().unwrap();
/// assert_eq!((s.task_id, s.host), (None, None)); // no machine: a local task
/// assert_eq!(cos::join(s.task).unwrap(), 1);
/// ```
#[derive(Debug)]
pub struct Spawned<R> {
    /// The task: join it like any other.
    pub task: Task<R>,
    /// Its id in the machine; `None` when it runs locally or still waits for a slot.
    pub task_id: Option<TaskId>,
    /// Its host; for a spawn still waiting, the host it waits for.
    pub host: Option<HostId>,
}

fn decode_value<R: DeserializeOwned + 'static>(bytes: &[u8]) -> Outcome {
    decode::<R>(bytes).map(Value::new)
}

impl<R: DeserializeOwned + 'static> Spawn<R> {
    /// A spawn of `f(args)`.
    ///
    /// ```
    /// static INC: cos::RemoteFn<i32, i32> = cos::RemoteFn::new("inc", |x| x + 1);
    /// let t = cos::Spawn::new(&INC, 1).start().unwrap().task;
    /// assert_eq!(cos::join(t).unwrap(), 2);
    /// ```
    pub fn new<A>(f: &'static RemoteFn<A, R>, args: A) -> Self
    where
        A: Serialize + DeserializeOwned + 'static,
    {
        let func = f.func();
        let spawn = encode(&args).map(|bytes| {
            Box::new(RemoteSpawn {
                call: RemoteCall {
                    function: f.name().into(),
                    args: bytes,
                    send_back: true,
                    signature: Some(f.signature()),
                },
                decode: decode_value::<R>,
                local: Rc::new(move |bytes: Vec<u8>| decode::<A>(&bytes).map(|a| Value::new(func(a)))),
                target: None,
                block: true,
                enqueue: true,
                remote: true,
                limit: None,
                reserved: None,
            })
        });
        Spawn { spawn, marker: PhantomData }
    }

    /// A fresh copy of this spawn, to start again after its task was lost (a spawn already
    /// served keeps no reserved tid, so the copy starts as a new task).
    pub(crate) fn duplicate(&self) -> Spawn<R> {
        let spawn = match &self.spawn {
            Ok(s) => Ok(Box::new(RemoteSpawn { reserved: None, ..RemoteSpawn::clone(s) })),
            Err(e) => Err(e.clone()),
        };
        Spawn { spawn, marker: PhantomData }
    }

    /// The call this spawn makes (`None` when its arguments could not be encoded).
    pub(crate) fn call(&self) -> Option<&RemoteCall> {
        self.spawn.as_ref().ok().map(|s| &s.call)
    }

    /// The host this spawn is pinned to, if any.
    pub(crate) fn target(&self) -> Option<&HostId> {
        self.spawn.as_ref().ok().and_then(|s| s.target.as_ref())
    }

    fn set(mut self, f: impl FnOnce(&mut RemoteSpawn)) -> Self {
        if let Ok(s) = &mut self.spawn {
            f(s);
        }
        self
    }

    /// Whether to run remotely when a machine has a slot (default `true`).
    ///
    /// ```
    /// static ONE: cos::RemoteFn<(), u8> = cos::RemoteFn::new("one", |()| 1);
    /// let s = cos::Spawn::new(&ONE, ()).remote(false).start().unwrap();
    /// assert_eq!(cos::join(s.task).unwrap(), 1);
    /// ```
    pub fn remote(self, remote: bool) -> Self {
        self.set(|s| s.remote = remote)
    }

    /// Runs the task on this host only (PyOPUS's `targetHostID`).
    ///
    /// ```
    /// static ONE: cos::RemoteFn<(), u8> = cos::RemoteFn::new("one", |()| 1);
    /// let s = cos::Spawn::new(&ONE, ()).host(cos::HostId::new("h0")).start().unwrap();
    /// # cos::join(s.task).unwrap();
    /// ```
    pub fn host(self, host: HostId) -> Self {
        self.set(|s| s.target = Some(host))
    }

    /// Whether to wait for a free slot (default `true`; implies `enqueue`).
    ///
    /// ```
    /// static ONE: cos::RemoteFn<(), u8> = cos::RemoteFn::new("one", |()| 1);
    /// let s = cos::Spawn::new(&ONE, ()).block(false).start().unwrap();
    /// # cos::join(s.task).unwrap();
    /// ```
    pub fn block(self, block: bool) -> Self {
        self.set(|s| s.block = block)
    }

    /// Whether a non-blocking spawn with no free slot waits in the queue (default `true`; its
    /// tid is given at once and its task starts when a slot frees) or fails with
    /// [`Error::NoFreeSlot`].
    ///
    /// ```
    /// static ONE: cos::RemoteFn<(), u8> = cos::RemoteFn::new("one", |()| 1);
    /// let s = cos::Spawn::new(&ONE, ()).block(false).enqueue(false).start().unwrap();
    /// # cos::join(s.task).unwrap();
    /// ```
    pub fn enqueue(self, enqueue: bool) -> Self {
        self.set(|s| s.enqueue = enqueue)
    }

    /// Cancels the remote task when it runs longer than `limit` (counted from its start on a
    /// worker); its joiner then gets [`Error::Timeout`] and its slot is freed. Needs a machine
    /// that can cancel tasks (the process machine kills and restarts the worker); a local
    /// fallback task is not limited.
    ///
    /// ```
    /// static ONE: cos::RemoteFn<(), u8> = cos::RemoteFn::new("one", |()| 1);
    /// let s = cos::Spawn::new(&ONE, ()).time_limit(std::time::Duration::from_secs(60)).start().unwrap();
    /// assert_eq!(cos::join(s.task).unwrap(), 1);
    /// ```
    pub fn time_limit(self, limit: std::time::Duration) -> Self {
        self.set(|s| s.limit = Some(limit))
    }

    /// Does not send the function's value back (PyOPUS's `sendBack=False`): the remote
    /// function runs as usual, but its worker drops the value unencoded and reports only the
    /// task's end. A failure (a panic, a stack overflow, a lost worker, a time limit) still
    /// comes back as the task's error. The task's value is therefore `()`: the spawn becomes a
    /// `Spawn<()>` and its task a `Task<()>`, joined as `Ok(())`. The function's value type
    /// need not encode (its `Serialize` is never called remotely); a local fallback task runs
    /// the function and drops its value too.
    ///
    /// ```
    /// static ONE: cos::RemoteFn<(), u8> = cos::RemoteFn::new("one", |()| 1);
    /// let s: cos::Spawned<()> = cos::Spawn::new(&ONE, ()).no_send_back().start().unwrap();
    /// assert_eq!(cos::join(s.task).unwrap(), ());
    /// ```
    pub fn no_send_back(self) -> Spawn<()> {
        let spawn = self.spawn.map(|mut s| {
            s.call.send_back = false;
            s.decode = |_| Ok(Value::new(()));
            let local = Rc::clone(&s.local);
            s.local = Rc::new(move |bytes: Vec<u8>| local(bytes).map(|_| Value::new(())));
            s
        });
        Spawn { spawn, marker: PhantomData }
    }

    /// Starts the task.
    ///
    /// # Errors
    /// [`Error::NoFreeSlot`] for a non-blocking, non-enqueued spawn with no free slot;
    /// [`Error::Decode`] when the arguments cannot be encoded; [`Error::Deadlock`] when a
    /// blocking spawn can never get a slot; a machine's error when it cannot start the task.
    ///
    /// ```
    /// static ONE: cos::RemoteFn<(), u8> = cos::RemoteFn::new("one", |()| 1);
    /// let s = cos::Spawn::new(&ONE, ()).start().unwrap();
    /// assert_eq!(cos::join(s.task).unwrap(), 1);
    /// ```
    pub fn start(self) -> Result<Spawned<R>, Error> {
        let info = os::spawn_call(SpawnCall::Remote(self.spawn?))?;
        Ok(Spawned { task: Task::new(info.tid), task_id: info.task_id, host: info.host })
    }
}

/// Spawns `f(args)` remotely when a machine has (or will have) a slot, locally otherwise, and
/// waits for a slot if none is free.
///
/// # Errors
/// As [`Spawn::start`].
///
/// ```
/// static SQ: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("sq", |x| x * x);
/// let t = cos::spawn_remote(&SQ, 9).unwrap();
/// assert_eq!(cos::join(t).unwrap(), 81);
/// ```
pub fn spawn_remote<A, R>(f: &'static RemoteFn<A, R>, args: A) -> Result<Task<R>, Error>
where
    A: Serialize + DeserializeOwned + 'static,
    R: DeserializeOwned + 'static,
{
    Spawn::new(f, args).start().map(|s| s.task)
}
