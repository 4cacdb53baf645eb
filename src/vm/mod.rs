//! The virtual machine interface: the [`VirtualMachine`] trait the scheduler polls, its
//! events, remote functions and their registry, the wire types (task and host ids, calls) and
//! the failures a machine reports. The machines themselves, built on this interface and on the
//! scheduler, are in `crate::machines`; this module depends on neither.

pub(crate) mod failure;
pub(crate) mod message;
pub(crate) mod registry;

use std::time::Instant;

use crate::error::Error;
pub(crate) use failure::{io_error, machine, within_limit, MAX_VALUE};
pub use failure::{
    LostCause, LostWorker, MachineError, MachineErrorKind, RemoteError, RemoteErrorKind, RemoteFailure,
};
pub use message::{HostId, RemoteCall, TaskId};
pub use registry::{Registry, RemoteFn};

/// How long [`VirtualMachine::receive`] may wait for an event.
///
/// ```
/// let w = cos::Wait::Until(std::time::Instant::now());
/// assert!(matches!(w, cos::Wait::Until(_)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Do not wait: only what has arrived already.
    Poll,
    /// Wait at most until this instant (of the machine's clock, [`VirtualMachine::now`]).
    Until(Instant),
    /// Wait until an event comes.
    Forever,
}

/// What a machine tells the scheduler about one of its remote tasks. Each remote task gives
/// exactly one event that ends it, and its slot is free from that event on.
///
/// ```
/// let t = cos::TaskId { worker: 1, number: 1 };
/// let e = cos::Event::Finished { task: t, result: Ok(vec![42]) };
/// assert_eq!(e.task(), t);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The task finished on its worker: its postcard-encoded value, or why it failed there.
    Finished {
        /// The task.
        task: TaskId,
        /// Its value's bytes, or its failure.
        result: Result<Vec<u8>, RemoteFailure>,
    },
    /// The worker running the task was lost before the task finished (it crashed, exited, was
    /// killed, or its connection broke).
    Lost {
        /// The task.
        task: TaskId,
        /// What happened to the worker.
        cause: LostCause,
    },
    /// A user message from a running remote task to the spawner ([`crate::send_message`] in
    /// the task), postcard-encoded. It comes before the task's end; the task goes on running.
    Message {
        /// The sending task.
        from: TaskId,
        /// The message's bytes.
        bytes: Vec<u8>,
    },
}

impl Event {
    /// The task the event is about.
    ///
    /// ```
    /// let t = cos::TaskId { worker: 2, number: 7 };
    /// assert_eq!(cos::Event::Lost { task: t, cause: cos::LostCause::Signal(9) }.task(), t);
    /// ```
    pub fn task(&self) -> TaskId {
        match self {
            Event::Finished { task, .. } | Event::Lost { task, .. } => *task,
            Event::Message { from, .. } => *from,
        }
    }
}

/// A set of workers that run registered functions for the spawner (PyOPUS's `VirtualMachine`).
///
/// The scheduler spawns remote tasks through it and asks it for their events: polling while
/// local tasks are ready, waiting (inside the machine, never spinning) when only remote work
/// is outstanding, until the earliest deadline of the scheduler's timers, which read the
/// machine's clock ([`now`](Self::now)).
///
/// Slot accounting follows PyOPUS's MPI machine: [`slots`](Self::slots) counts every slot,
/// the spawner's own included, and the spawner's slot is never free. A task's slot is taken
/// from its spawn and free again from the event that ends it.
///
/// ```
/// use cos::VirtualMachine;
/// let vm = cos::SimVm::new(cos::Registry::new(), 3, 1);
/// assert_eq!(vm.slots(), 4);
/// assert_eq!(vm.free_slots(), 3);
/// ```
pub trait VirtualMachine {
    /// All slots, the spawner's included.
    fn slots(&self) -> usize;
    /// Slots that can take a task now.
    fn free_slots(&self) -> usize;
    /// Every host, sorted.
    fn hosts(&self) -> Vec<HostId>;
    /// Hosts with at least one free slot, sorted.
    fn hosts_with_free_slots(&self) -> Vec<HostId>;
    /// The host a task runs on (`None`: the spawner's own host).
    fn host_id(&self, task: Option<TaskId>) -> Option<HostId>;
    /// How many worker slots `host` has (the spawner's own slot not counted); `None` when the
    /// machine does not say (the default).
    fn slots_on(&self, host: &HostId) -> Option<usize> {
        let _ = host;
        None
    }
    /// When a slot that is down now may be free again (its worker is being started again
    /// after a failed start); `None` when none may (the default). While a spawn waits for a
    /// slot, the scheduler waits for the machine until then, and gives the spawn a slot that
    /// is back, instead of reporting a deadlock.
    fn slot_return(&self) -> Option<Instant> {
        None
    }
    /// Starts `call` on a free slot, on one of `targets` when given. The worker checks the
    /// call's [signature](RemoteCall::signature) when it has one (a call made with
    /// [`RemoteCall::of`]; one made with [`RemoteCall::new`] has none and runs unchecked).
    ///
    /// # Errors
    /// [`Error::NoFreeSlot`] when no slot (on the targets) is free; [`Error::Vm`] when the
    /// machine cannot start the task.
    fn spawn_function(&mut self, call: &RemoteCall, targets: Option<&[HostId]>) -> Result<TaskId, Error>;
    /// The next event of a running task, waiting as `wait` says; `Ok(None)` when none came in
    /// time.
    ///
    /// # Errors
    /// [`Error::Vm`] when the machine is broken beyond one task.
    fn receive(&mut self, wait: Wait) -> Result<Option<Event>, Error>;
    /// Stops every worker and frees the machine's resources. Called once, at the end.
    fn finalize(&mut self);
    /// Stops a running task and frees its slot; no event of that task comes afterwards.
    /// Machines that cannot stop a task refuse (the default).
    ///
    /// # Errors
    /// [`Error::Vm`] when the machine cannot cancel tasks or does not know the task.
    fn cancel(&mut self, task: TaskId) -> Result<(), Error> {
        Err(machine(MachineErrorKind::Unsupported, format!("this machine cannot cancel task {task}")))
    }
    /// Whether a slot will become free without an event (an MPI rank still owes the end of a
    /// task that was cancelled): the scheduler then keeps asking for events even with no remote
    /// task running, and serves the spawns waiting for a slot when [`receive`](Self::receive)
    /// comes back having freed one. `false` by default.
    ///
    /// ```
    /// use cos::VirtualMachine;
    /// assert!(!cos::SimVm::new(cos::Registry::new(), 1, 1).settling());
    /// ```
    fn settling(&self) -> bool {
        false
    }
    /// Sends a user message (postcard bytes) to the running task `to`, which receives it with
    /// [`crate::receive_message`]. Machines that cannot reach a running task refuse (the
    /// default).
    ///
    /// # Errors
    /// [`Error::Vm`] with [`MachineErrorKind::NoSuchTask`] when `to` does not run on the
    /// machine, [`MachineErrorKind::Unsupported`] on a machine without messages to tasks.
    fn send_message(&mut self, to: TaskId, bytes: Vec<u8>) -> Result<(), Error> {
        let _ = bytes;
        Err(machine(MachineErrorKind::Unsupported, format!("this machine cannot send messages to task {to}")))
    }
    /// The machine's clock, which the scheduler's deadlines (timed joins, time limits) follow:
    /// the real one by default, a virtual one on [`SimVm`](crate::SimVm).
    fn now(&self) -> Instant {
        Instant::now()
    }
}
