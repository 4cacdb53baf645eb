//! The machines: worker threads, worker processes, MPI ranks and the simulated machine, and
//! what they share, all built on the interface of `crate::vm` and on the scheduler (a worker
//! runs its jobs in an OS of its own).
//!
//! - [`slots`]: the slot core (hosts, slots, which slot runs which task, free counts);
//! - [`worker`]: the worker side's serving loop, the same on every machine;
//! - [`setup`]: what every worker is sent at its start, and the job step of the serving loop;
//! - [`channel`]: worker threads of this process and their channels (thread and simulated
//!   machines);
//! - [`spawner_calls`]: the spawner's runner of the workers' spawner calls, every machine's;
//! - `wait`: the spin-then-park channel receive;
//! - `select`: `cos::start`, which picks a machine; `clear`: clearing every host's storage;
//! - `thread`, `sim`, `process/`, `mpi/`: the machines.

pub(crate) mod channel;
mod clear;
#[cfg(feature = "mpi")]
mod mpi;
pub(crate) mod process;
mod select;
pub(crate) mod setup;
mod sim;
pub(crate) mod slots;
pub(crate) mod spawner_calls;
mod thread;
mod wait;
pub(crate) mod worker;

#[cfg(feature = "mpi")]
pub use self::mpi::{MpiVm, MpiVmBuilder};
pub use clear::clear_local_storage_everywhere;
pub(crate) use clear::{is_cleaner, run_cleaner};
pub use process::{ProcessVm, ProcessVmBuilder};
pub use select::{start, start_with, Machine, StartOptions};
pub use sim::{SimEvent, SimTrace, SimVm};
pub use thread::{ThreadVm, ThreadVmBuilder};
