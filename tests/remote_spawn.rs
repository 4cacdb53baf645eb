//! Remote spawns with PyOPUS's `Spawn` options (`remote`, `targetHostID`, `block`, `enqueue`,
//! `extendedReturnValue`), the fallback to local tasks, `setVM`'s rules and slot counts, on the
//! deterministic `SimVm` and on the worker threads of `ThreadVm`.

mod common;

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex};

use common::remote_failure;
use cos::{Error, HostId, Registry, RemoteFn, SimEvent, SimVm, Spawn, ThreadVm};

static DOUBLE: RemoteFn<u32, u32> = RemoteFn::new("double", |x| 2 * x);
/// The name of the thread that runs the call: a worker's, or the spawner's own.
static WHERE: RemoteFn<(), String> =
    RemoteFn::new("where", |()| std::thread::current().name().unwrap_or("").to_string());
/// Returns its value once its gate is open, so that a test decides when a worker finishes.
static GATED: RemoteFn<(u64, u32), u32> = RemoteFn::new("gated", |(gate, x)| {
    wait_gate(gate);
    x
});
/// Never registered anywhere.
static UNREGISTERED: RemoteFn<u32, u32> = RemoteFn::new("unregistered", |x| x);

static OPEN_GATES: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());
static GATE_OPENED: Condvar = Condvar::new();

fn wait_gate(gate: u64) {
    let mut open = OPEN_GATES.lock().unwrap();
    while !open.contains(&gate) {
        open = GATE_OPENED.wait(open).unwrap();
    }
}

/// A gate for the workers of one test; opened at the latest when dropped, so that a failing
/// test does not leave workers waiting forever.
struct Gate(u64);

impl Gate {
    fn open(&self) {
        OPEN_GATES.lock().unwrap().insert(self.0);
        GATE_OPENED.notify_all();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

fn registry() -> Registry {
    Registry::new().with(&DOUBLE).with(&WHERE).with(&GATED)
}

fn host(n: u32) -> HostId {
    HostId::new(format!("host{n}"))
}

fn sim(hosts: usize, slots: usize) -> SimVm {
    SimVm::new(registry(), hosts, slots)
}

fn thread_vm(hosts: usize, slots: usize) -> ThreadVm {
    ThreadVm::builder(registry()).hosts(hosts).slots_per_host(slots).build()
}

fn spawn_events(events: &[SimEvent]) -> Vec<(cos::TaskId, HostId, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            SimEvent::Spawn { task, host, function, .. } => Some((*task, host.clone(), function.clone())),
            SimEvent::Done { .. } => None,
        })
        .collect()
}

// ---- remote(true) / remote(false) and the extended return value ----

#[test]
fn sim_remote_spawn_runs_on_a_host_and_reports_it() {
    let vm = sim(2, 1);
    let trace = vm.trace();
    assert_eq!(cos::set_vm(vm), Ok(true));

    let s = Spawn::new(&DOUBLE, 21).start().unwrap();
    let id = s.task_id.expect("a remote task has a task id");
    assert_eq!(s.host, Some(host(0)));
    assert_eq!(cos::remote_task_count(), 1);
    assert_eq!(spawn_events(&trace.events()), vec![(id, host(0), "double".to_string())]);
    assert_eq!(cos::join(s.task).unwrap(), 42);
    assert_eq!(cos::remote_task_count(), 0);

    let w = Spawn::new(&WHERE, ()).remote(true).start().unwrap();
    assert!(w.task_id.is_some());
    assert_eq!(cos::join(w.task).unwrap(), "cos-sim-worker");
    cos::finalize();
}

#[test]
fn sim_remote_false_runs_a_local_task() {
    let vm = sim(2, 1);
    let trace = vm.trace();
    cos::set_vm(vm).unwrap();

    let s = Spawn::new(&DOUBLE, 5).remote(false).start().unwrap();
    assert_eq!((s.task_id, s.host), (None, None));
    assert_eq!(cos::remote_task_count(), 0);
    assert_eq!(cos::join(s.task).unwrap(), 10);

    let w = Spawn::new(&WHERE, ()).remote(false).start().unwrap();
    let me = std::thread::current().name().unwrap().to_string();
    assert_eq!(cos::join(w.task).unwrap(), me);
    assert!(trace.events().is_empty(), "nothing ran in the machine");
    cos::finalize();
}

#[test]
fn thread_vm_remote_true_and_false() {
    cos::set_vm(thread_vm(2, 1)).unwrap();

    let r = Spawn::new(&WHERE, ()).start().unwrap();
    let id = r.task_id.expect("a remote task has a task id");
    assert!(cos::hosts().contains(r.host.as_ref().unwrap()));
    assert_eq!(cos::join(r.task).unwrap(), format!("cos-worker-{}", id.worker));

    let l = Spawn::new(&WHERE, ()).remote(false).start().unwrap();
    assert_eq!((l.task_id, l.host), (None, None));
    let me = std::thread::current().name().unwrap().to_string();
    assert_eq!(cos::join(l.task).unwrap(), me);

    let d = Spawn::new(&DOUBLE, 8).start().unwrap();
    assert!(d.task_id.is_some());
    assert_eq!(cos::join(d.task).unwrap(), 16);
    cos::finalize();
}

#[test]
fn remote_spawn_without_a_machine_falls_back_to_a_local_task() {
    assert_eq!(cos::slots(), None);
    let s = Spawn::new(&DOUBLE, 4).start().unwrap();
    assert_eq!((s.task_id, s.host), (None, None));
    // A local child runs before its spawner goes on.
    assert_eq!(cos::finished_tasks(), 1);
    assert_eq!(cos::join(s.task).unwrap(), 8);

    let t = cos::spawn_remote(&WHERE, ()).unwrap();
    assert_eq!(cos::join(t).unwrap(), std::thread::current().name().unwrap());

    // Every option is accepted and ignored without a machine.
    let s = Spawn::new(&DOUBLE, 1).host(host(1)).block(false).enqueue(false).start().unwrap();
    assert_eq!((s.task_id, s.host), (None, None));
    assert_eq!(cos::join(s.task).unwrap(), 2);
}

// ---- host targeting ----

#[test]
fn sim_host_targeting_runs_on_the_target() {
    let vm = sim(2, 1);
    let trace = vm.trace();
    cos::set_vm(vm).unwrap();

    let b = Spawn::new(&DOUBLE, 3).host(host(1)).start().unwrap();
    assert_eq!(b.host, Some(host(1)));
    let a = Spawn::new(&DOUBLE, 2).host(host(0)).start().unwrap();
    assert_eq!(a.host, Some(host(0)));
    let events = spawn_events(&trace.events());
    assert_eq!(
        events,
        vec![
            (b.task_id.unwrap(), host(1), "double".to_string()),
            (a.task_id.unwrap(), host(0), "double".to_string())
        ]
    );
    assert_eq!(cos::join(a.task).unwrap(), 4);
    assert_eq!(cos::join(b.task).unwrap(), 6);
    cos::finalize();
}

#[test]
fn sim_targeted_blocking_spawn_waits_for_its_host_while_another_is_free() {
    let vm = sim(2, 1);
    let trace = vm.trace();
    cos::set_vm(vm).unwrap();

    let first = Spawn::new(&DOUBLE, 1).start().unwrap();
    assert_eq!(first.host, Some(host(0)));
    assert_eq!(cos::free_slots(), Some(1));
    // host1 is free, but this spawn wants host0: it waits until `first` is done.
    let second = Spawn::new(&DOUBLE, 2).host(host(0)).start().unwrap();
    assert_eq!(second.host, Some(host(0)));
    let events = trace.events();
    let done_first = events
        .iter()
        .position(|e| matches!(e, SimEvent::Done { task, .. } if Some(*task) == first.task_id))
        .expect("first is done");
    let spawn_second = events
        .iter()
        .position(|e| matches!(e, SimEvent::Spawn { task, .. } if Some(*task) == second.task_id))
        .expect("second started");
    assert!(done_first < spawn_second, "{events:?}");
    // `first` finished while its spawner waited; it is joinable.
    assert_eq!(cos::finished_tasks(), 1);
    assert_eq!(cos::join(first.task).unwrap(), 2);
    assert_eq!(cos::join(second.task).unwrap(), 4);
    cos::finalize();
}

#[test]
fn thread_vm_host_targeting_runs_on_the_target() {
    cos::set_vm(thread_vm(2, 1)).unwrap();
    for target in [1, 0, 1] {
        let s = Spawn::new(&WHERE, ()).host(host(target)).start().unwrap();
        assert_eq!(s.host, Some(host(target)));
        let id = s.task_id.unwrap();
        // One slot per host: host n's worker is slot n + 1.
        assert_eq!(id.worker, target + 1);
        assert_eq!(cos::join(s.task).unwrap(), format!("cos-worker-{}", target + 1));
    }
    cos::finalize();
}

// ---- block(false) with enqueue(false) / enqueue(true) ----

#[test]
fn sim_nonblocking_spawn_without_enqueue_fails_when_no_slot_is_free() {
    cos::set_vm(sim(2, 1)).unwrap();
    // With a free slot it starts remotely.
    let a = Spawn::new(&DOUBLE, 1).block(false).enqueue(false).start().unwrap();
    assert!(a.task_id.is_some());
    let b = Spawn::new(&DOUBLE, 2).start().unwrap();
    assert_eq!(cos::free_slots(), Some(0));

    let r = Spawn::new(&DOUBLE, 3).block(false).enqueue(false).start();
    assert_eq!(r.unwrap_err(), Error::NoFreeSlot);
    let r = Spawn::new(&DOUBLE, 3).host(host(1)).block(false).enqueue(false).start();
    assert_eq!(r.unwrap_err(), Error::NoFreeSlot);
    assert_eq!(cos::remote_task_count(), 2);
    assert_eq!(cos::task_count(), 3);

    assert_eq!(cos::join(a.task).unwrap(), 2);
    assert_eq!(cos::join(b.task).unwrap(), 4);
    assert_eq!(cos::free_slots(), Some(2));
    cos::finalize();
}

#[test]
fn sim_nonblocking_enqueued_spawn_returns_a_reserved_tid_and_runs_later() {
    // Task n's virtual duration: a (1) ends first and frees host0, then b (2) frees host1.
    let vm = sim(2, 1).latency(|_, n| [0, 10, 20, 100, 5][n as usize]);
    let trace = vm.trace();
    cos::set_vm(vm).unwrap();
    let a = Spawn::new(&DOUBLE, 1).start().unwrap();
    let b = Spawn::new(&DOUBLE, 2).start().unwrap();
    assert_eq!(cos::free_slots(), Some(0));

    // Returns at once, without a task id: the task waits for a slot.
    let c = Spawn::new(&DOUBLE, 3).block(false).start().unwrap();
    assert_eq!((c.task_id, c.host.clone()), (None, None));
    assert!(c.task.tid() > b.task.tid());
    // A targeted one reports the host it waits for.
    let d = Spawn::new(&DOUBLE, 4).host(host(1)).block(false).enqueue(true).start().unwrap();
    assert_eq!((d.task_id, d.host.clone()), (None, Some(host(1))));
    assert!(d.task.tid() > c.task.tid());
    assert_eq!(cos::remote_task_count(), 4);
    assert_eq!(spawn_events(&trace.events()).len(), 2, "c and d have not started");

    // Joined before it started: the join waits for the slot, the start and the end.
    assert_eq!(cos::join(d.task).unwrap(), 8);
    assert_eq!(cos::join(c.task).unwrap(), 6);
    assert_eq!(cos::join(a.task).unwrap(), 2);
    assert_eq!(cos::join(b.task).unwrap(), 4);
    let started = spawn_events(&trace.events());
    assert_eq!(started.len(), 4);
    assert_eq!(started[2].1, host(0), "c took the first free slot");
    assert_eq!(started[3].1, host(1), "d ran on its target");
    assert_eq!(cos::remote_task_count(), 0);
    assert_eq!(cos::free_slots(), Some(2));
    cos::finalize();
}

#[test]
fn sim_many_nonblocking_enqueued_spawns_all_run() {
    cos::set_vm(sim(1, 1)).unwrap();
    let spawned: Vec<_> = (0..6).map(|i| Spawn::new(&DOUBLE, i).block(false).start().unwrap()).collect();
    assert!(spawned[0].task_id.is_some());
    assert!(spawned[1..].iter().all(|s| s.task_id.is_none()));
    let mut got = Vec::new();
    while let Some(j) = cos::join_any().unwrap() {
        let i = spawned.iter().position(|s| s.task.tid() == j.tid).unwrap() as u32;
        got.push((i, j.value::<u32>().unwrap()));
    }
    got.sort();
    assert_eq!(got, (0..6).map(|i| (i, 2 * i)).collect::<Vec<_>>());
    cos::finalize();
}

#[test]
fn thread_vm_nonblocking_spawns_with_no_free_slot() {
    let gate = Gate(1);
    cos::set_vm(thread_vm(1, 2)).unwrap();
    let a = Spawn::new(&GATED, (gate.0, 1)).start().unwrap();
    let b = Spawn::new(&GATED, (gate.0, 2)).start().unwrap();
    // Neither can finish before the gate opens, so both slots stay busy.
    assert_eq!(cos::free_slots(), Some(0));
    assert_eq!(Spawn::new(&DOUBLE, 3).block(false).enqueue(false).start().unwrap_err(), Error::NoFreeSlot);

    let c = Spawn::new(&DOUBLE, 3).block(false).enqueue(true).start().unwrap();
    assert_eq!((c.task_id, c.host.clone()), (None, None));
    assert_eq!(cos::try_join(c.task).unwrap(), None);
    assert_eq!(cos::remote_task_count(), 3);

    gate.open();
    assert_eq!(cos::join(c.task).unwrap(), 6);
    assert_eq!(cos::join(a.task).unwrap(), 1);
    assert_eq!(cos::join(b.task).unwrap(), 2);
    assert_eq!(cos::free_slots(), Some(2));
    cos::finalize();
}

// ---- set_vm and slot counts ----

#[test]
fn set_vm_ignores_a_machine_with_fewer_than_two_slots() {
    assert_eq!(cos::set_vm(SimVm::new(registry(), 0, 4)), Ok(false));
    assert_eq!(cos::slots(), None);
    assert_eq!(cos::set_vm(SimVm::new(registry(), 3, 0)), Ok(false));
    assert_eq!(cos::slots(), None);

    // An ignored machine changes nothing: the machine set before stays (tests/set_vm_rules.rs).
    assert_eq!(cos::set_vm(sim(1, 1)), Ok(true));
    assert_eq!(cos::slots(), Some(2));
    assert_eq!(cos::set_vm(SimVm::new(registry(), 1, 0)), Ok(false));
    assert_eq!((cos::slots(), cos::free_slots()), (Some(2), Some(1)));
    cos::finalize();
    let s = Spawn::new(&DOUBLE, 1).start().unwrap();
    assert_eq!(s.task_id, None);
    assert_eq!(cos::join(s.task).unwrap(), 2);

    // The smallest ThreadVm has two slots: the spawner's and one worker.
    assert_eq!(cos::set_vm(thread_vm(1, 1)), Ok(true));
    assert_eq!(cos::slots(), Some(2));
    cos::finalize();
    assert_eq!(cos::slots(), None);
}

#[test]
fn set_vm_is_refused_while_remote_tasks_run() {
    cos::set_vm(sim(2, 1)).unwrap();
    let a = Spawn::new(&DOUBLE, 1).start().unwrap();
    let e = cos::set_vm(sim(3, 1)).unwrap_err();
    assert_eq!(e, Error::MachineInUse { remote_tasks: 1 });
    assert_eq!(cos::slots(), Some(3), "the old machine stays");

    // A spawn still waiting for a slot counts as running.
    let _b = Spawn::new(&DOUBLE, 2).start().unwrap();
    let c = Spawn::new(&DOUBLE, 3).block(false).start().unwrap();
    assert_eq!(c.task_id, None);
    assert_eq!(cos::join(a.task).unwrap(), 2);
    assert!(matches!(cos::set_vm(sim(3, 1)), Err(Error::MachineInUse { .. })));
    while cos::join_any().unwrap().is_some() {}

    assert_eq!(cos::set_vm(sim(3, 1)), Ok(true));
    assert_eq!(cos::slots(), Some(4));
    cos::finalize();
}

#[test]
fn thread_vm_set_vm_is_refused_while_a_worker_runs() {
    let gate = Gate(2);
    cos::set_vm(thread_vm(1, 1)).unwrap();
    let a = Spawn::new(&GATED, (gate.0, 7)).start().unwrap();
    assert_eq!(cos::set_vm(sim(1, 1)), Err(Error::MachineInUse { remote_tasks: 1 }));
    gate.open();
    assert_eq!(cos::join(a.task).unwrap(), 7);
    assert_eq!(cos::set_vm(sim(1, 1)), Ok(true));
    cos::finalize();
}

#[test]
fn slot_counts_follow_the_machine() {
    assert_eq!((cos::slots(), cos::free_slots()), (None, None));
    assert!(cos::hosts().is_empty());

    cos::set_vm(sim(2, 2)).unwrap();
    assert_eq!((cos::slots(), cos::free_slots()), (Some(5), Some(4)));
    assert_eq!(cos::hosts(), vec![host(0), host(1)]);
    let tasks: Vec<_> = (0..3).map(|i| Spawn::new(&DOUBLE, i).start().unwrap().task).collect();
    assert_eq!(cos::free_slots(), Some(1));
    for t in tasks {
        cos::join(t).unwrap();
    }
    assert_eq!(cos::free_slots(), Some(4));
    cos::finalize();

    let gate = Gate(3);
    cos::set_vm(thread_vm(2, 1)).unwrap();
    assert_eq!((cos::slots(), cos::free_slots()), (Some(3), Some(2)));
    assert_eq!(cos::hosts(), vec![host(0), host(1)]);
    let t = Spawn::new(&GATED, (gate.0, 0)).start().unwrap().task;
    assert_eq!(cos::free_slots(), Some(1));
    gate.open();
    cos::join(t).unwrap();
    assert_eq!(cos::free_slots(), Some(2));
    cos::finalize();
    assert_eq!(cos::slots(), None);
}

// ---- an unknown function name ----

#[test]
fn sim_unknown_function_fails_at_join_and_the_worker_lives_on() {
    cos::set_vm(sim(1, 1)).unwrap();
    let s = Spawn::new(&UNREGISTERED, 1).start().unwrap();
    assert!(s.task_id.is_some(), "the machine cannot know the name is unknown before it runs");
    let r = cos::join(s.task);
    assert_eq!(remote_failure(&r), Some((cos::RemoteErrorKind::UnknownFunction, "unregistered")), "{r:?}");
    assert_eq!(cos::free_slots(), Some(1));
    let t = Spawn::new(&DOUBLE, 5).start().unwrap();
    assert!(t.task_id.is_some());
    assert_eq!(cos::join(t.task).unwrap(), 10);
    cos::finalize();
}

#[test]
fn thread_vm_unknown_function_fails_at_join_and_the_worker_lives_on() {
    cos::set_vm(thread_vm(1, 1)).unwrap();
    let s = Spawn::new(&UNREGISTERED, 1).start().unwrap();
    assert_eq!(s.task_id.map(|t| t.worker), Some(1));
    let r = cos::join(s.task);
    assert_eq!(remote_failure(&r), Some((cos::RemoteErrorKind::UnknownFunction, "unregistered")), "{r:?}");
    assert_eq!(cos::free_slots(), Some(1));
    // The same (single) worker takes the next job.
    let t = Spawn::new(&WHERE, ()).start().unwrap();
    assert_eq!(t.task_id.map(|t| t.worker), Some(1));
    assert_eq!(cos::join(t.task).unwrap(), "cos-worker-1");
    assert_eq!(cos::join(Spawn::new(&DOUBLE, 6).start().unwrap().task).unwrap(), 12);
    cos::finalize();
}

// ---- task ids ----

#[test]
fn sim_tasks_running_at_once_have_distinct_workers() {
    // Task n takes 10 n: the first ends first and frees its slot while the second runs.
    let vm = SimVm::new(registry(), 2, 2).latency(|_, n| 10 * n);
    cos::set_vm(vm).unwrap();
    let a = Spawn::new(&DOUBLE, 1).host(host(0)).start().unwrap();
    let b = Spawn::new(&DOUBLE, 2).host(host(0)).start().unwrap();
    assert_ne!(a.task_id.unwrap().worker, b.task_id.unwrap().worker);
    assert_eq!(cos::join(a.task).unwrap(), 2);
    // a's slot is free again; c takes it while b still runs.
    let c = Spawn::new(&DOUBLE, 3).host(host(0)).start().unwrap();
    assert_eq!(c.host, Some(host(0)));
    assert_ne!(c.task_id.unwrap().worker, b.task_id.unwrap().worker, "c and b run at once");
    assert_eq!(c.task_id.unwrap().worker, a.task_id.unwrap().worker);
    // host1's slots come after host0's.
    let d = Spawn::new(&DOUBLE, 4).host(host(1)).start().unwrap();
    assert!(d.task_id.unwrap().worker > 2);
    for t in [b.task, c.task, d.task] {
        cos::join(t).unwrap();
    }
    cos::finalize();
}

#[test]
fn sim_blocking_spawn_on_an_unknown_host_is_a_deadlock_not_a_hang() {
    cos::set_vm(sim(2, 1)).unwrap();
    let running = Spawn::new(&DOUBLE, 1).start().unwrap();
    match Spawn::new(&DOUBLE, 2).host(HostId::new("nowhere")).start() {
        Err(Error::Deadlock(report)) => {
            assert_eq!(report.waiting, vec![(cos::Tid::MAIN, cos::WaitReason::Slot(Some("nowhere".into())))])
        }
        other => panic!("unexpected {other:?}"),
    }
    // The task that ran meanwhile is still joinable, and the machine still works.
    assert_eq!(cos::join(running.task).unwrap(), 2);
    assert_eq!(cos::join(Spawn::new(&DOUBLE, 3).start().unwrap().task).unwrap(), 6);
    assert_eq!(
        Spawn::new(&DOUBLE, 2).host(HostId::new("nowhere")).block(false).enqueue(false).start().unwrap_err(),
        Error::NoFreeSlot
    );
    cos::finalize();
}
