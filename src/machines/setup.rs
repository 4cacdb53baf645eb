//! What every worker of a machine is told once, before its first job: the machine's index
//! and the environment of its remote tasks; and the step of the serving loop that prepares a
//! task's environment, runs the function in it, and ends and cleans up after it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::environment::{cleanup, kill_all, prepare, EnvironmentSpec, TaskEnvironment, WorkerIdentity};
use crate::error::Error;
use crate::machines::{is_cleaner, run_cleaner};
use crate::vm::{Registry, RemoteCall, RemoteErrorKind, RemoteFailure, TaskId};

/// The worker side's settings of one machine, sent to each of its workers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct WorkerSetup {
    /// The machine's index, unique within the spawner's process (PyOPUS's VM index), so that
    /// the storage directories of two machines never collide.
    pub(crate) machine: u64,
    /// The environment of every remote task.
    pub(crate) environment: EnvironmentSpec,
}

/// Checks a machine's environment on the spawner, where its builder is given it: a machine is
/// never built with an environment its workers would refuse.
///
/// # Errors
/// [`Error::Storage`] when the environment does not validate.
pub(crate) fn validated(environment: EnvironmentSpec) -> Result<EnvironmentSpec, Error> {
    environment.validate().map_err(Error::Storage)?;
    Ok(environment)
}

impl WorkerSetup {
    /// The setup of a new machine (with the next machine index of this process) whose tasks
    /// run in `environment` (already [`validated`]).
    pub(crate) fn new(environment: EnvironmentSpec) -> Self {
        WorkerSetup { machine: next_machine_index(), environment }
    }

    /// Who runs `task` on this machine: the machine's index and the task's slot.
    pub(crate) fn identity(&self, task: TaskId) -> WorkerIdentity {
        WorkerIdentity { machine: self.machine, slot: (task.worker as usize).saturating_sub(1) }
    }
}

/// The next machine index of this process.
fn next_machine_index() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The environment of the job a worker runs, kept outside the job's frames so that the
/// serving loop can still clean it up when the job overflowed its stack.
pub(crate) type JobEnvironment = RefCell<Option<TaskEnvironment>>;

/// Runs one job: the built-in cleaner of `clear_local_storage_everywhere` as it is (it
/// removes every task's storage, so it gets none), any other in its environment.
pub(crate) fn run_job(
    setup: &WorkerSetup,
    task: TaskId,
    slot: &JobEnvironment,
    registry: &Registry,
    call: &RemoteCall,
) -> Result<Vec<u8>, RemoteFailure> {
    if is_cleaner(call) {
        return run_cleaner();
    }
    in_environment(setup, task, slot, || registry.run(call))
}

/// Runs one job in its environment: [`prepare`] (a failure is the job's
/// [`RemoteErrorKind::Environment`] failure and `run` is not called),
/// [`TaskEnvironment::enter`], `run`, then [`kill_all`] (the programs the job started, with
/// their children) and [`cleanup`].
pub(crate) fn in_environment(
    setup: &WorkerSetup,
    task: TaskId,
    slot: &JobEnvironment,
    run: impl FnOnce() -> Result<Vec<u8>, RemoteFailure>,
) -> Result<Vec<u8>, RemoteFailure> {
    let env = prepare(&setup.environment, setup.identity(task)).map_err(|e| {
        log::warn!(target: "cos", "task {task}: environment not prepared: {e}");
        RemoteFailure::new(RemoteErrorKind::Environment, e.to_string())
    })?;
    let entered = env.enter();
    *slot.borrow_mut() = Some(env);
    let result = run();
    drop(entered);
    end_job(task, slot);
    result
}

/// After a job (also one that overflowed its stack): ends the programs it left running and
/// removes its storage.
pub(crate) fn end_job(task: TaskId, slot: &JobEnvironment) {
    let killed = kill_all();
    if killed > 0 {
        log::debug!(target: "cos", "task {task}: {killed} process groups left running were ended");
    }
    if let Some(env) = slot.borrow_mut().take() {
        if let Err(e) = cleanup(env) {
            log::warn!(target: "cos", "task {task}: storage left behind: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_get_different_indices() {
        let a = WorkerSetup::new(EnvironmentSpec::new());
        let b = WorkerSetup::new(EnvironmentSpec::new());
        assert_ne!(a.machine, b.machine);
        assert_eq!(a.identity(TaskId { worker: 3, number: 1 }).slot, 2);
    }

    #[test]
    fn an_invalid_environment_is_refused_on_the_spawner() {
        let mut spec = EnvironmentSpec::new();
        spec.startup_dir = Some(crate::StartupDir::Storage("../out".into()));
        assert!(matches!(validated(spec), Err(Error::Storage(_))));
    }
}
