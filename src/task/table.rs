//! The task table: every task that has not finished, by tid.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use crate::syscall::SysReturn;
use crate::task::{LocalTask, Outcome, Tid};
use crate::vm::HostId;

/// What a blocked task waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wait {
    /// A blocking join on these tids (empty: any child).
    Join(Vec<Tid>),
    /// A blocking remote spawn waiting for a free slot (on a host, or on any).
    Slot(Option<HostId>),
}

/// A task's state as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Can run (it may or may not be in the ready queue).
    Runnable,
    /// Blocked in a system call.
    Waiting(Wait),
}

/// A remote task as the spawner knows it.
pub(crate) struct Remote {
    /// Turns its result bytes into its value.
    pub decode: fn(&[u8]) -> Outcome,
    /// Its result, once the result message came (the exit message finishes it).
    pub result: Option<Outcome>,
}

/// What runs a task.
pub(crate) enum Body {
    /// The main program (tid 1), running on the thread's own stack.
    Main,
    /// A local coroutine; `None` while it runs (the driver holds it then).
    Local(Option<LocalTask>),
    /// A task on a worker of the virtual machine.
    Remote(Remote),
}

/// One task that has not finished.
pub(crate) struct Entry {
    pub parent: Tid,
    /// Running children.
    pub children: usize,
    /// Finished children not joined yet; the lowest tid is joined first.
    pub finished: BTreeMap<Tid, Outcome>,
    pub state: State,
    /// Whether it is in the ready queue (a task is never queued twice).
    pub scheduled: bool,
    pub body: Body,
    /// The answer it gets when it next runs.
    pub sendval: SysReturn,
    /// When its blocking join gives up (local tasks), or when it is cancelled (remote tasks).
    pub deadline: Option<Instant>,
}

impl Entry {
    pub(crate) fn new(parent: Tid, body: Body) -> Self {
        Entry {
            parent,
            children: 0,
            finished: BTreeMap::new(),
            state: State::Runnable,
            scheduled: false,
            body,
            sendval: SysReturn::Nothing,
            deadline: None,
        }
    }

    pub(crate) fn is_remote(&self) -> bool {
        matches!(self.body, Body::Remote(_))
    }
}

/// Tids are dense and sequential, so a multiplicative hash spreads them well at a fraction of
/// SipHash's cost.
#[derive(Default)]
pub(crate) struct TidHasher(u64);

impl Hasher for TidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Every task that has not finished, by tid.
pub(crate) type TaskTable = HashMap<Tid, Entry, BuildHasherDefault<TidHasher>>;
