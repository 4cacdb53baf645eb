//! What a remote task knows about itself (PyOPUS `vm.taskID()`, `vm.hostID()`,
//! `vm.parentTaskID()`): the remote function and every local task it spawns see the task id
//! and host the spawner was given for it, and the spawner as parent; the spawner sees `None`.
//! The same body runs on SimVm, ThreadVm and ProcessVm (this program has its own `main`, since
//! ProcessVm's workers run it again).

mod common;

use common::On;
use cos::{Registry, RemoteFn, RemoteTaskInfo, Spawn, TaskId};

/// What the remote function sees, and what a local task it spawns sees.
static WHO: RemoteFn<(), (Option<RemoteTaskInfo>, Option<RemoteTaskInfo>)> = RemoteFn::new("who", |()| {
    let own = cos::remote_task();
    let child = cos::spawn(cos::remote_task).and_then(cos::join).expect("a local task");
    (own, child)
});

fn registry() -> Registry {
    Registry::new().with(&WHO)
}

fn a_remote_task_knows_its_id_host_and_parent(m: On) {
    assert_eq!(cos::remote_task(), None, "the main program is the spawner");
    m.set(registry(), 2, 1);
    let hosts = cos::hosts();
    let mut seen = Vec::new();
    for round in 0..2 {
        for host in hosts.iter().filter(|h| h.name() != "spawner") {
            let s = Spawn::new(&WHO, ()).host(host.clone()).start().unwrap();
            let task = s.task_id.expect("runs remotely");
            assert_eq!(s.host.as_ref(), Some(host));
            let (own, child) = cos::join(s.task).unwrap();
            let own = own.expect("the remote function knows it is a remote task");
            assert_eq!(
                own,
                RemoteTaskInfo { task, host: host.clone(), parent: TaskId::SPAWNER },
                "round {round}"
            );
            assert_eq!(child, Some(own), "a local task of the remote function knows the same");
            seen.push(task);
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "every task has its own id");
    // A local task of the spawner is no remote task either.
    assert_eq!(cos::spawn(cos::remote_task).and_then(cos::join).unwrap(), None);
}

fn main() {
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[
        ("sim", || a_remote_task_knows_its_id_host_and_parent(On::Sim)),
        ("thread", || a_remote_task_knows_its_id_host_and_parent(On::Thread)),
        ("process", || a_remote_task_knows_its_id_host_and_parent(On::Process)),
    ];
    common::run_checks(checks);
}
