//! What a remote task knows about itself (PyOPUS's `vm.taskID()`, `vm.hostID()`,
//! `vm.parentTaskID()`): set by the serving loop for the life of each job, read by the job and
//! by any local task it spawns on its worker thread.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use crate::vm::{HostId, TaskId};

/// The identity of the remote task running on this worker thread.
///
/// ```
/// let info = cos::RemoteTaskInfo {
///     task: cos::TaskId { worker: 1, number: 1 },
///     host: cos::HostId::new("host0"),
///     parent: cos::TaskId::SPAWNER,
/// };
/// assert_eq!(info.parent.worker, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RemoteTaskInfo {
    /// The task's own id (PyOPUS `vm.taskID()`), the id its spawner's joiner knows it by.
    pub task: TaskId,
    /// The host it runs on (PyOPUS `vm.hostID()`), as the spawner's [`crate::hosts`] names it.
    pub host: HostId,
    /// The spawner's task id (PyOPUS `vm.parentTaskID()`): [`TaskId::SPAWNER`], the spawner's
    /// process as one task of the machine, as in PyOPUS (every local task of the spawner shares
    /// it).
    pub parent: TaskId,
}

thread_local! {
    static CURRENT: RefCell<Option<RemoteTaskInfo>> = const { RefCell::new(None) };
}

/// The remote task this code runs in: from the remote function itself and from any local task
/// it spawned, on every machine; `None` in the spawner (and with no machine).
///
/// It is a plain read of this thread's state, so it works in every [`crate::Context`] (in a
/// destructor or during the thread's teardown it says what it says in the task that ran
/// last on this thread, or `None`).
///
/// ```
/// static WHO: cos::RemoteFn<(), Option<cos::RemoteTaskInfo>> =
///     cos::RemoteFn::new("who", |()| cos::remote_task());
/// assert_eq!(cos::remote_task(), None); // the spawner
/// cos::set_vm(cos::ThreadVm::new(cos::Registry::new().with(&WHO))).unwrap();
/// let s = cos::Spawn::new(&WHO, ()).start().unwrap();
/// let task = s.task_id.expect("a remote task");
/// let info = cos::join(s.task).unwrap().expect("runs remotely");
/// assert_eq!(info.task, task);
/// assert_eq!(info.parent, cos::TaskId::SPAWNER);
/// assert!(cos::hosts().contains(&info.host));
/// cos::finalize();
/// ```
pub fn remote_task() -> Option<RemoteTaskInfo> {
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// Names the remote task this thread runs until the guard is dropped.
pub(crate) fn running(info: RemoteTaskInfo) -> Running {
    let _ = CURRENT.try_with(|c| *c.borrow_mut() = Some(info));
    Running(())
}

/// Clears the running task when dropped.
pub(crate) struct Running(());

impl Drop for Running {
    fn drop(&mut self) {
        clear();
    }
}

/// Clears the running task (after a job whose frames were abandoned by a stack overflow).
pub(crate) fn clear() {
    let _ = CURRENT.try_with(|c| c.borrow_mut().take());
}

/// The machine's layout as text (PyOPUS's `formatSpawnerConfig()`): the spawner's host, then
/// the slot counts, and every host with its worker slots. Empty without a machine (or
/// where the machine cannot be asked, see [`crate::Context`]).
///
/// ```
/// assert_eq!(cos::format_spawner_config(), "");
/// cos::set_vm(cos::SimVm::new(cos::Registry::new(), 2, 3)).unwrap();
/// let text = cos::format_spawner_config();
/// assert!(text.contains("host1: 3 worker slots"), "{text}");
/// cos::finalize();
/// ```
pub fn format_spawner_config() -> String {
    use std::fmt::Write;
    let text = crate::os::with_vm(|vm| {
        let mut s = String::new();
        let spawner = vm.host_id(None).map_or_else(|| "?".to_string(), |h| h.to_string());
        let _ = writeln!(s, "spawner: task {} on host {spawner}", TaskId::SPAWNER);
        let _ = writeln!(s, "slots: {} (the spawner's included), {} free", vm.slots(), vm.free_slots());
        for host in vm.hosts() {
            match vm.slots_on(&host) {
                Some(n) => {
                    let _ = writeln!(s, "  {host}: {n} worker slots");
                }
                None => {
                    let _ = writeln!(s, "  {host}");
                }
            }
        }
        s
    });
    text.unwrap_or_default()
}
