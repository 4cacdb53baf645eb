//! The environment of a remote task on its worker (PyOPUS's `startupDir`, `mirrorMap`,
//! `persistentStorage`, `prepareEnvironment`, `cleanupEnvironment`, `clearLocalStorage`,
//! `localStoragePath`), and the external programs it runs.
//!
//! A machine's builder takes an [`EnvironmentSpec`] and sends it to its workers; before each
//! remote function runs, the worker calls [`prepare`] with its [`WorkerIdentity`] and gets the
//! task's [`TaskEnvironment`]: a private storage directory under
//! `PARALLEL_LOCAL_STORAGE/cos-<user>/`, filled from the mirror map, and a working directory.
//! The task is told both as paths ([`task_storage`], [`task_working_dir`] while the worker
//! has [entered](TaskEnvironment::enter) it): worker threads share one working directory, so
//! nothing changes it. After the task, [`cleanup`] (or dropping the environment, also when the
//! task panics) removes the storage unless it is persistent.
//!
//! A task starts its simulator with [`ProcessGroup::start`], in a process group of its own and
//! in the task's working directory; a deadline ([`ProcessGroup::wait`]), dropping the group, or
//! the worker's [`kill_all`] when the task ends, is cancelled or times out ends the program
//! with every child it forked.
//!
//! ```
//! use cos::{EnvironmentSpec, MirrorEntry, WorkerIdentity};
//! use std::process::Command;
//!
//! let tmp = std::env::temp_dir().join(format!("cos-doc-env-mod-{}", std::process::id()));
//! let share = tmp.join("share");
//! std::fs::create_dir_all(&share).unwrap();
//! std::fs::write(share.join("amp.cir"), "* amp\n").unwrap();
//! let spec = EnvironmentSpec::new().mirror(MirrorEntry::new_in(share.join("*.cir"), "", &[&share]).unwrap());
//!
//! // On the worker, around one task:
//! let env = cos::prepare_in(&spec, WorkerIdentity { machine: 0, slot: 0 }, &tmp, &[&share]).unwrap();
//! let entered = env.enter();
//! let mut sim = cos::ProcessGroup::start(Command::new("cat").arg("amp.cir")).unwrap();
//! sim.wait(None).unwrap();
//! drop(entered);
//! cos::kill_all();
//! cos::cleanup(env).unwrap();
//! # std::fs::remove_dir_all(&tmp).unwrap();
//! ```

mod error;
mod external;
mod glob;
mod local;
mod mirror;
mod prepare;
mod process_error;
mod spec;
pub(crate) mod user;
mod watchdog;

pub use error::{StorageError, StorageErrorKind};
pub use external::{die_with_parent, kill_all, ProcessGroup, KILL_GRACE};
pub(crate) use external::{this_thread_groups, ThreadGroups};
pub use local::{clear_local_storage, clear_local_storage_in, local_storage_root};
pub use prepare::{
    cleanup, prepare, prepare_in, task_storage, task_working_dir, EnteredEnvironment, TaskEnvironment,
};
pub use process_error::{ProcessError, ProcessErrorKind};
pub use spec::{EnvironmentSpec, MirrorEntry, StartupDir, WorkerIdentity};
