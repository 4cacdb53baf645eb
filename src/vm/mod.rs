//! Task outsourcing: the virtual machine interface, messages, remote functions and machines.

mod layout;
pub(crate) mod message;
#[cfg(feature = "mpi")]
mod mpi;
pub(crate) mod process;
pub(crate) mod registry;
mod select;
mod sim;
mod thread;
mod wait;
pub(crate) mod worker;

use std::time::Duration;

#[cfg(feature = "mpi")]
pub use self::mpi::MpiVm;
use crate::error::Error;
pub use message::{HostId, Message, RemoteCall, RemoteFailure, TaskId};
pub use process::{ProcessVm, ProcessVmBuilder};
pub use registry::{Registry, RemoteFn};
pub use select::{start, Machine};
pub use sim::{SimEvent, SimTrace, SimVm};
pub use thread::{ThreadVm, ThreadVmBuilder};

/// A set of workers that run registered functions for the spawner (PyOPUS's `VirtualMachine`).
///
/// The scheduler spawns remote tasks through it and polls it for their messages: without
/// blocking while local tasks are ready, blocking (inside the machine, never spinning) when only
/// remote work is outstanding.
///
/// Slot accounting follows PyOPUS's MPI machine: [`slots`](Self::slots) counts every slot,
/// the spawner's own included, and the spawner's slot is never free.
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
    /// This process's own task id (the spawner's, or a worker's).
    fn task_id(&self) -> TaskId;
    /// The host a task runs on (`None`: this process's own host).
    fn host_id(&self, task: Option<TaskId>) -> Option<HostId>;
    /// The spawner's task id when this process is a worker; `None` in the spawner.
    fn parent_task_id(&self) -> Option<TaskId>;
    /// Starts `call` on a free slot, on one of `targets` when given.
    ///
    /// # Errors
    /// [`Error::NoFreeSlot`] when no slot (on the targets) is free; [`Error::Vm`] when the
    /// machine cannot start the task.
    fn spawn_function(&mut self, call: &RemoteCall, targets: Option<&[HostId]>) -> Result<TaskId, Error>;
    /// The next message: `timeout` `None` blocks, `Some(Duration::ZERO)` polls, anything else
    /// waits at most that long. `Ok(None)` means no message came in time.
    ///
    /// # Errors
    /// [`Error::Vm`] when the machine is broken beyond one task.
    fn receive_message(&mut self, timeout: Option<Duration>) -> Result<Option<(TaskId, Message)>, Error>;
    /// Sends a message to a task.
    ///
    /// # Errors
    /// [`Error::Vm`] when the destination is unknown or gone.
    fn send_message(&mut self, dest: TaskId, message: Message) -> Result<(), Error>;
    /// Stops every worker and frees the machine's resources. Called once, at the end.
    fn finalize(&mut self);
    /// Stops a running task and frees its slot; no message of that task comes afterwards.
    /// Machines that cannot stop a task refuse (the default).
    ///
    /// # Errors
    /// [`Error::Vm`] when the machine cannot cancel tasks or does not know the task.
    fn cancel(&mut self, task: TaskId) -> Result<(), Error> {
        Err(Error::Vm(format!("this machine cannot cancel task {task}")))
    }
}
