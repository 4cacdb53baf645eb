//! Spawns waiting for a free slot: the any-host queue is served first in, first out as slots
//! free; a spawn waiting for a host is served as soon as that host frees a slot, before older
//! spawns waiting for any host (PyOPUS's `waitingOnSlot` / `waitingOnSlotOnHost`). The start
//! order is read from `SimVm`'s trace, with scripted virtual latencies.

use std::cell::RefCell;
use std::rc::Rc;

use cos::{HostId, Registry, RemoteFn, SimEvent, SimVm, Spawn};

/// One function per job, so that the trace names the job that started.
static JOB: [RemoteFn<u32, u32>; 6] = [
    RemoteFn::new("job0", |x| x + 100),
    RemoteFn::new("job1", |x| x + 100),
    RemoteFn::new("job2", |x| x + 100),
    RemoteFn::new("job3", |x| x + 100),
    RemoteFn::new("job4", |x| x + 100),
    RemoteFn::new("job5", |x| x + 100),
];
static BLOCKER0: RemoteFn<u32, u32> = RemoteFn::new("blocker0", |x| x);
static BLOCKER1: RemoteFn<u32, u32> = RemoteFn::new("blocker1", |x| x);

fn registry() -> Registry {
    JOB.iter().fold(Registry::new().with(&BLOCKER0).with(&BLOCKER1), |r, f| r.with(f))
}

fn host(n: u32) -> HostId {
    HostId::new(format!("host{n}"))
}

/// A machine whose tasks take the virtual time `latency(function name)`.
fn sim(hosts: usize, latency: fn(&str) -> u64) -> SimVm {
    SimVm::new(registry(), hosts, 1).latency(move |call, _| latency(&call.function))
}

/// The functions in start order, with their hosts.
fn starts(events: &[SimEvent]) -> Vec<(String, HostId)> {
    events
        .iter()
        .filter_map(|e| match e {
            SimEvent::Spawn { function, host, .. } => Some((function.clone(), host.clone())),
            SimEvent::Done { .. } => None,
        })
        .collect()
}

/// A local task that yields `delay` times, notes its arrival, then waits in a blocking remote
/// spawn of job `i` (targeted at `target` if given) and joins it.
fn waiter(
    i: usize,
    delay: usize,
    target: Option<HostId>,
    arrivals: Rc<RefCell<Vec<usize>>>,
) -> cos::Task<u32> {
    cos::spawn(move || {
        for _ in 0..delay {
            cos::yield_now();
        }
        arrivals.borrow_mut().push(i);
        let mut spawn = Spawn::new(&JOB[i], i as u32);
        if let Some(h) = target {
            spawn = spawn.host(h);
        }
        let s = spawn.start().unwrap();
        cos::join(s.task).unwrap()
    })
    .unwrap()
}

fn names(jobs: &[usize]) -> Vec<String> {
    jobs.iter().map(|i| format!("job{i}")).collect()
}

#[test]
fn any_host_queue_is_first_in_first_out_on_one_slot() {
    // Later jobs are shorter, so a queue served by length or by tid would show it.
    let vm = sim(1, |f| match f {
        "blocker0" => 50,
        f => 100 - f[3..].parse::<u64>().unwrap() * 10,
    });
    let trace = vm.trace();
    assert_eq!(cos::set_vm(vm), Ok(true));
    let blocker = Spawn::new(&BLOCKER0, 0).start().unwrap();
    assert_eq!(cos::free_slots(), Some(0));

    let arrivals = Rc::new(RefCell::new(Vec::new()));
    let delays = [3, 0, 5, 1, 2];
    let waiters: Vec<_> =
        delays.iter().enumerate().map(|(i, &d)| waiter(i, d, None, arrivals.clone())).collect();
    assert_eq!(cos::join(blocker.task).unwrap(), 0);
    for (i, w) in waiters.into_iter().enumerate() {
        assert_eq!(cos::join(w).unwrap(), i as u32 + 100);
    }

    let arrived = arrivals.borrow().clone();
    assert_ne!(arrived, vec![0, 1, 2, 3, 4], "arrival order differs from spawn (tid) order");
    let served: Vec<String> = starts(&trace.events()).into_iter().map(|(f, _)| f).collect();
    assert_eq!(served[0], "blocker0");
    assert_eq!(served[1..], names(&arrived)[..]);
    cos::finalize();
}

#[test]
fn any_host_queue_is_first_in_first_out_on_two_hosts() {
    let vm = sim(2, |f| match f {
        "blocker0" => 20,
        "blocker1" => 10,
        "job0" => 50,
        "job1" => 5,
        "job2" => 30,
        "job3" => 1,
        "job4" => 7,
        _ => 3,
    });
    let trace = vm.trace();
    cos::set_vm(vm).unwrap();
    let b0 = Spawn::new(&BLOCKER0, 0).start().unwrap();
    let b1 = Spawn::new(&BLOCKER1, 1).start().unwrap();
    assert_eq!((b0.host, b1.host), (Some(host(0)), Some(host(1))));

    let arrivals = Rc::new(RefCell::new(Vec::new()));
    let delays = [4, 2, 0, 3, 1, 5];
    let waiters: Vec<_> =
        delays.iter().enumerate().map(|(i, &d)| waiter(i, d, None, arrivals.clone())).collect();
    while cos::join_any().unwrap().is_some() {}
    drop(waiters);

    let arrived = arrivals.borrow().clone();
    assert_ne!(arrived, vec![0, 1, 2, 3, 4, 5]);
    let served: Vec<String> = starts(&trace.events()).into_iter().skip(2).map(|(f, _)| f).collect();
    assert_eq!(served, names(&arrived));
    // Each start follows the end of a task (two start at once: none is free before).
    let events = trace.events();
    let first_done = events.iter().position(|e| matches!(e, SimEvent::Done { .. })).unwrap();
    assert_eq!(first_done, 2, "{events:?}");
    cos::finalize();
}

#[test]
fn host_waiter_is_served_before_older_any_host_waiters() {
    // blocker1 frees host1 first (t=50), then blocker0 frees host0 (t=100).
    let vm = sim(2, |f| match f {
        "blocker0" => 100,
        "blocker1" => 50,
        "job0" => 1000,
        "job2" => 10,
        _ => 1,
    });
    let trace = vm.trace();
    cos::set_vm(vm).unwrap();
    let b0 = Spawn::new(&BLOCKER0, 0).start().unwrap();
    let b1 = Spawn::new(&BLOCKER1, 1).start().unwrap();
    assert_eq!((b0.host, b1.host), (Some(host(0)), Some(host(1))));

    // job0 and job1 wait for any host, then job2 for host0, in this order.
    let arrivals = Rc::new(RefCell::new(Vec::new()));
    let w0 = waiter(0, 0, None, arrivals.clone());
    let w1 = waiter(1, 1, None, arrivals.clone());
    let w2 = waiter(2, 2, Some(host(0)), arrivals.clone());
    while cos::join_any().unwrap().is_some() {}
    assert_eq!(*arrivals.borrow(), vec![0, 1, 2]);
    let _ = (w0, w1, w2);

    // host1 frees first: the oldest any-host waiter (job0) takes it; host0 frees next: job2,
    // waiting for host0, goes before the older job1; job1 gets host0 when job2 ends.
    assert_eq!(
        starts(&trace.events()),
        vec![
            ("blocker0".to_string(), host(0)),
            ("blocker1".to_string(), host(1)),
            ("job0".to_string(), host(1)),
            ("job2".to_string(), host(0)),
            ("job1".to_string(), host(0)),
        ]
    );
    cos::finalize();
}

#[test]
fn host_queue_is_first_in_first_out() {
    let vm = sim(2, |f| match f {
        "blocker0" => 10,
        "blocker1" => 1000,
        _ => 5,
    });
    let trace = vm.trace();
    cos::set_vm(vm).unwrap();
    Spawn::new(&BLOCKER0, 0).start().unwrap();
    Spawn::new(&BLOCKER1, 1).start().unwrap();

    let arrivals = Rc::new(RefCell::new(Vec::new()));
    for (i, d) in [2, 0, 3, 1].into_iter().enumerate() {
        waiter(i, d, Some(host(0)), arrivals.clone());
    }
    while cos::join_any().unwrap().is_some() {}

    let arrived = arrivals.borrow().clone();
    assert_ne!(arrived, vec![0, 1, 2, 3]);
    let started = starts(&trace.events());
    assert!(started[2..].iter().all(|(_, h)| *h == host(0)), "{started:?}");
    let served: Vec<String> = started[2..].iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(served, names(&arrived));
    cos::finalize();
}

#[test]
fn blocking_spawn_queued_behind_an_orphaned_spawn_gets_a_slot() {
    let vm = sim(1, |f| if f == "blocker0" { 10 } else { 5 });
    let trace = vm.trace();
    cos::set_vm(vm).unwrap();
    let blocker = Spawn::new(&BLOCKER0, 0).start().unwrap();

    // A task queues a non-blocking spawn and finishes without joining it: an orphan to be.
    let orphaner = cos::spawn(|| {
        let s = Spawn::new(&JOB[0], 0).block(false).start().unwrap();
        assert_eq!(s.task_id, None);
        s.task.tid()
    })
    .unwrap();
    let orphan = cos::join(orphaner).unwrap();

    // The main program's blocking spawn waits behind it.
    let mine = Spawn::new(&JOB[1], 1).start().expect("a slot frees for this spawn");
    assert!(mine.task_id.is_some());
    assert_eq!(cos::join(mine.task).unwrap(), 101);
    assert_eq!(cos::join(blocker.task).unwrap(), 0);
    assert!(matches!(cos::join_list(&[orphan], false), Err(cos::Error::UnknownTask(_))));

    // Like a local orphan, the orphaned spawn ran on; its value was dropped.
    let served: Vec<String> = starts(&trace.events()).into_iter().map(|(f, _)| f).collect();
    assert_eq!(served, vec!["blocker0", "job0", "job1"]);
    assert_eq!(cos::remote_task_count(), 0);
    assert_eq!(cos::free_slots(), Some(1));
    cos::finalize();
}
