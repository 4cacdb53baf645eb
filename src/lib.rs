//! # cos: a cooperative multitasking OS with task outsourcing
//!
//! A Rust port of PyOPUS's COS (`pyopus.parallel.cooperative`). Local tasks are stackful
//! microthreads scheduled cooperatively on one OS thread; the same `spawn` / `join` calls send
//! registered functions to worker threads, worker processes or MPI ranks through a
//! [`VirtualMachine`], so that asynchronous parallel algorithms read as sequential code.
//!
//! The calls work from plain `main` (the main program is task 1) and from inside any task, at
//! any depth of the call stack:
//!
//! ```
//! fn print_msg(msg: &'static str, n: u32) -> u32 {
//!     for i in 0..n {
//!         println!("{msg} : {i}");
//!         cos::yield_now();
//!     }
//!     n
//! }
//!
//! let a = cos::spawn(|| print_msg("Hello A", 3)).unwrap();
//! let b = cos::spawn(|| print_msg("Hello B", 5)).unwrap();
//! assert_eq!(cos::join(a).unwrap(), 3);
//! assert_eq!(cos::join(b).unwrap(), 5);
//! ```
//!
//! Semantics follow PyOPUS (see `docs/porting.md`): a FIFO ready queue; a spawned child runs
//! before its spawner continues; join returns at most one finished child, the lowest tid first.
//! Unlike PyOPUS, a panicking task ends with an [`Error::Panicked`] at its joiner, a join on a
//! non-child is an [`Error`], and a program whose tasks all wait on each other gets
//! [`Error::Deadlock`] instead of spinning.
//!
//! Orphans: a task may finish before its children. The children run on; when they finish, their
//! values are dropped (nobody can join them), and their own children are handled the same way.
//!
//! Debug output goes through the `log` crate with target `cos`.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod context;
mod coroutine;
mod dispatch;
pub mod environment;
mod error;
mod group;
mod identity;
mod machines;
mod messages;
mod os;
mod scheduler;
mod spawn;
mod spawner_call;
mod storage;
mod syscall;
mod task;
mod vm;

pub use context::{context, Context};
pub use dispatch::{dispatch, dispatch_single, job, Collected, Dispatch, Job};
pub use environment::{
    cleanup, clear_local_storage, clear_local_storage_in, die_with_parent, kill_all, local_storage_root,
    prepare, prepare_in, task_storage, task_working_dir, EnteredEnvironment, EnvironmentSpec, MirrorEntry,
    ProcessError, ProcessErrorKind, ProcessGroup, StartupDir, StorageError, StorageErrorKind,
    TaskEnvironment, WorkerIdentity, KILL_GRACE,
};
pub use error::{DeadlockReport, Error, ErrorClass, WaitReason};
pub use group::TaskGroup;
pub use identity::{format_spawner_config, remote_task, RemoteTaskInfo};
/// The process machine's frame codec, for the fuzz target `fuzz/fuzz_targets/frame.rs`.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use machines::process::frame::fuzz_spawner_stream;
pub use machines::{
    clear_local_storage_everywhere, start, start_with, Machine, ProcessVm, ProcessVmBuilder, SimEvent,
    SimTrace, SimVm, StartOptions, ThreadVm, ThreadVmBuilder,
};
#[cfg(feature = "mpi")]
#[cfg_attr(docsrs, doc(cfg(feature = "mpi")))]
pub use machines::{MpiVm, MpiVmBuilder};
pub use messages::{receive_message, send_message, SPAWNER_MAILBOX_LIMIT};
pub use os::{
    cancel, finalize, finished_tasks, free_slots, hosts, join, join_any, join_list, join_timeout,
    local_task_count, remote_task_count, remove_vm, set_stack_size, set_vm, slots, spawn, stack_size,
    task_count, tid, try_join, try_join_any, with_vm, yield_now,
};
pub use spawn::{spawn_remote, Spawn, Spawned};
pub use spawner_call::spawner_call;
pub use storage::{
    local_storage, mirrored_storage, to_abstract_path, to_abstract_path_in, to_actual_path,
    to_actual_path_in, AbstractPath,
};
pub use task::{Joined, Outcome, Task, Tid, Value};
pub use vm::{
    Event, HostId, LostCause, LostWorker, MachineError, MachineErrorKind, Registry, RemoteCall, RemoteError,
    RemoteErrorKind, RemoteFailure, RemoteFn, TaskId, VirtualMachine, Wait,
};
