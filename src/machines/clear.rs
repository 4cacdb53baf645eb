//! PyOPUS's `clearLocalStorage(timeout)`: the spawner runs the local storage cleaner on every
//! host of its machine, then on its own host.

use std::time::Duration;

use crate::environment::clear_local_storage;
use crate::error::Error;
use crate::spawn::Spawn;
use crate::vm::message::encode;
use crate::vm::{machine, MachineErrorKind, RemoteCall, RemoteErrorKind, RemoteFailure, RemoteFn};

/// The name of the cleaner job, which every worker knows without registering it.
pub(crate) const CLEANER: &str = "cos::clear_local_storage";

/// The cleaner as the spawner sends it (its body runs only if a machine without a usable slot
/// makes the spawn run here, which clears this host as the spawner does anyway).
static CLEANER_FN: RemoteFn<(), ()> = RemoteFn::new(CLEANER, |()| {
    let _ = clear_local_storage();
});

/// Whether `call` is the cleaner job.
pub(crate) fn is_cleaner(call: &RemoteCall) -> bool {
    &*call.function == CLEANER
}

/// The cleaner job on a worker: [`clear_local_storage`] on its host; a failure is the job's
/// [`RemoteErrorKind::Environment`] failure, naming the path and the cause.
pub(crate) fn run_cleaner() -> Result<Vec<u8>, RemoteFailure> {
    match clear_local_storage() {
        Ok(()) => encode(&()).map_err(|e| RemoteFailure::new(RemoteErrorKind::BadResult, e.to_string())),
        Err(e) => Err(RemoteFailure::new(RemoteErrorKind::Environment, e.to_string())),
    }
}

/// PyOPUS's `clearLocalStorage(timeout)`, on the spawner: removes everything under
/// `PARALLEL_LOCAL_STORAGE/cos-<user>` on every host of the machine (one cleaner task per
/// host, each with `timeout` as its time limit) and then on the spawner's own host (see
/// [`clear_local_storage`]): the storage of every task, persistent or not, of every run of this
/// user. Without a machine only the spawner's host is cleared.
///
/// Every host is tried; the first failure is returned after the others were cleared.
///
/// # Errors
/// [`Error::Vm`] with [`MachineErrorKind::Refused`] when remote tasks are running (their
/// storage would go from under them) or when called on a worker; a host's failure as that
/// task's error: [`Error::Remote`] with [`RemoteErrorKind::Environment`] naming the task and
/// host, [`Error::Timeout`] when a host took longer than `timeout`, [`Error::WorkerLost`]; the
/// spawner's own failure as [`Error::Storage`].
///
/// ```
/// cos::set_vm(cos::ThreadVm::builder(cos::Registry::new()).slots_per_host(2).build()).unwrap();
/// cos::clear_local_storage_everywhere(std::time::Duration::from_secs(60)).unwrap();
/// cos::finalize();
/// ```
pub fn clear_local_storage_everywhere(timeout: Duration) -> Result<(), Error> {
    if crate::spawner_call::on_worker()
        || crate::machines::process::is_worker_process()
        || crate::environment::task_storage().is_some()
    {
        return Err(machine(MachineErrorKind::Refused, "local storage is cleared from the spawner only"));
    }
    let running = crate::os::remote_task_count();
    if running > 0 {
        return Err(machine(
            MachineErrorKind::Refused,
            format!("{running} remote tasks are running: their storage cannot be cleared"),
        ));
    }
    let mut first = None;
    let mut tasks = Vec::new();
    for host in crate::os::hosts() {
        match Spawn::new(&CLEANER_FN, ()).host(host).time_limit(timeout).start() {
            Ok(s) => tasks.push(s.task),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    for task in tasks {
        if let Err(e) = crate::os::join(task) {
            first.get_or_insert(e);
        }
    }
    if let Err(e) = clear_local_storage() {
        first.get_or_insert(Error::Storage(e));
    }
    first.map_or(Ok(()), Err)
}
