//! System calls: what a task hands the scheduler, and what it gets back.
//!
//! The calls are generic in `L`, the local task a spawn carries, so that this module does not
//! depend on the coroutine layer that carries the calls (which names them `SysCall` and
//! `SpawnCall` with its `LocalTask`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::task::{Joined, Outcome, Tid};
use crate::vm::{HostId, RemoteCall, TaskId};

/// A system call. The scheduler handles it on behalf of the calling task.
pub(crate) enum SysCallOf<L> {
    /// Start a new task.
    Spawn(SpawnCallOf<L>),
    /// Go to the back of the ready queue.
    Yield,
    /// Join one finished child (PyOPUS's `Join(tidList, block)`).
    Join { tids: Tids, block: bool, deadline: Option<Instant> },
    /// Take the oldest user message that came from a remote task, waiting until `deadline`
    /// (`None`: as long as a remote task runs that could send one).
    Receive { deadline: Option<Instant> },
}

/// The tids a join names: one without an allocation (the common `join(task)`), a list
/// (empty: any child), or the members of a task group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tids {
    One(Tid),
    List(Vec<Tid>),
    Group(u64),
}

impl Tids {
    pub(crate) fn from_slice(tids: &[Tid]) -> Self {
        match tids {
            [one] => Tids::One(*one),
            _ => Tids::List(tids.to_vec()),
        }
    }

    /// Whether a child `tid` (a member of `group`, if any) is one this join waits for.
    pub(crate) fn names(&self, tid: Tid, group: Option<u64>) -> bool {
        match self {
            Tids::One(t) => *t == tid,
            Tids::List(v) => v.is_empty() || v.contains(&tid),
            Tids::Group(g) => group == Some(*g),
        }
    }
}

/// What a spawn starts.
pub(crate) enum SpawnCallOf<L> {
    /// A local task, already built on a stack from the pool.
    Local(L),
    /// A registered function that may run remotely.
    Remote(Box<RemoteSpawn>),
}

/// A remote spawn with PyOPUS's options.
#[derive(Clone)]
pub(crate) struct RemoteSpawn {
    pub call: RemoteCall,
    /// Decodes the remote result into the task's value.
    pub decode: fn(&[u8]) -> Outcome,
    /// Runs the same call here, for the fallback to a local task. Shared, so that a spawn can
    /// be duplicated (dispatch keeps a copy of each running job to run it again).
    pub local: Rc<dyn Fn(Vec<u8>) -> Outcome>,
    pub target: Option<HostId>,
    pub block: bool,
    pub enqueue: bool,
    /// Whether remote execution was asked for; `false` (or no machine) runs `call` locally.
    pub remote: bool,
    /// How long the remote task may run before it is cancelled with [`Error::Timeout`].
    pub limit: Option<Duration>,
    /// The tid given to a non-blocking enqueued spawn, kept when the spawn is served later.
    pub reserved: Option<Tid>,
}

/// Where a spawned task runs (PyOPUS's extended return value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpawnInfo {
    /// The new task's tid.
    pub(crate) tid: Tid,
    /// The remote task id; `None` for a local task or one still waiting for a slot.
    pub(crate) task_id: Option<TaskId>,
    /// The host the task runs on; for a task still waiting, the host it waits for.
    pub(crate) host: Option<HostId>,
}

/// The scheduler's answer to a system call.
pub(crate) enum SysReturn {
    /// Nothing to say (Yield, or the first resume of a task).
    Nothing,
    /// The answer to a spawn.
    Spawned(Result<SpawnInfo, Error>),
    /// The answer to a join.
    Joined(Result<Option<Joined>, Error>),
    /// The answer to a receive: the sender and the message's bytes, or none in time.
    Received(Result<Option<(TaskId, Vec<u8>)>, Error>),
}
