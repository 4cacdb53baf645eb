//! PyOPUS's `dispatch` and `dispatchSingle`: results in job order, endless job sequences stopped
//! by the collector, host ids for the collector, `buildResultList`, `remote`, and the same
//! results whether the jobs run locally, on worker threads, or on a simulated machine.

use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use cos::{Dispatch, HostId, Registry, RemoteFn, SimEvent, SimVm, ThreadVm};

static DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x| 2 * x);
/// A little work whose result depends on every argument bit.
static MIX: RemoteFn<(u64, u64), u64> = RemoteFn::new("mix", |(i, x)| {
    let mut z = x.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for _ in 0..100 {
        z = (z ^ (z >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    }
    z
});
/// Job 0 of the host test: waits until the job sequence has handed out job 2.
static WAIT_FOR_JOB2: RemoteFn<u64, u64> = RemoteFn::new("wait_for_job2", |x| {
    let mut given = JOB2_GIVEN.lock().unwrap();
    while !*given {
        given = JOB2_GIVEN_CV.wait(given).unwrap();
    }
    x
});
static JOB2_GIVEN: Mutex<bool> = Mutex::new(false);
static JOB2_GIVEN_CV: Condvar = Condvar::new();
static HOST_TEST_RAN: AtomicBool = AtomicBool::new(false);

fn registry() -> Registry {
    Registry::new().with(&DOUBLE).with(&MIX).with(&WAIT_FOR_JOB2)
}

fn host(n: u32) -> HostId {
    HostId::new(format!("host{n}"))
}

fn doubles(n: u64) -> impl Iterator<Item = cos::Job<u64>> {
    (0..n).map(|i| cos::job(&DOUBLE, i))
}

fn done_order(events: &[SimEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| if let SimEvent::Done { task, .. } = e { Some(task.number) } else { None })
        .collect()
}

#[test]
fn fixed_list_gives_results_in_job_order_though_jobs_end_out_of_order() {
    // Task n takes 1000 - 10 n: later jobs end first.
    let vm = SimVm::new(registry(), 2, 2).latency(|_, n| 1000 - 10 * n);
    let trace = vm.trace();
    cos::set_vm(vm).unwrap();
    let results = cos::dispatch(doubles(20)).unwrap();
    assert_eq!(results, (0..20).map(|i| Ok(2 * i)).collect::<Vec<_>>());
    let done = done_order(&trace.events());
    assert_eq!(done.len(), 20);
    assert_ne!(done, (1..=20).collect::<Vec<_>>(), "jobs ended out of order");
    cos::finalize();

    // The same without a machine, and for an empty list.
    assert_eq!(cos::dispatch(doubles(5)).unwrap(), vec![Ok(0), Ok(2), Ok(4), Ok(6), Ok(8)]);
    assert_eq!(cos::dispatch(doubles(0)).unwrap(), vec![]);
}

#[test]
fn fixed_list_on_thread_vm() {
    cos::set_vm(ThreadVm::builder(registry()).hosts(2).slots_per_host(2).build()).unwrap();
    let results = cos::dispatch(doubles(50)).unwrap();
    assert_eq!(results, (0..50).map(|i| Ok(2 * i)).collect::<Vec<_>>());
    assert_eq!(cos::free_slots(), Some(4));
    cos::finalize();
}

/// Runs an endless sequence of doubling jobs until the collector sees a result of `stop_at` or
/// more; returns the number of jobs taken and the collected (index, result) pairs.
fn run_endless(stop_at: u64) -> (usize, Vec<(usize, u64)>) {
    let taken = Cell::new(0usize);
    let mut collected = Vec::new();
    let jobs = (0..).map(|i| {
        taken.set(taken.get() + 1);
        cos::job(&DOUBLE, i)
    });
    let list = Dispatch::new(jobs)
        .collector(|c| {
            let r = *c.result.as_ref().unwrap();
            collected.push((c.index, r));
            if r >= stop_at {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .run()
        .unwrap();
    assert!(list.is_empty(), "no result list with a collector");
    (taken.get(), collected)
}

fn check_endless(taken: usize, mut collected: Vec<(usize, u64)>) {
    // Every job taken was run and collected, none twice; the stop result is among them.
    assert_eq!(collected.len(), taken);
    collected.sort();
    assert_eq!(collected, (0..taken).map(|i| (i, 2 * i as u64)).collect::<Vec<_>>());
    assert!(collected.iter().any(|&(_, r)| r >= 30));
}

#[test]
fn endless_sequence_is_stopped_by_the_collector() {
    // Without a machine the jobs run one at a time: exactly up to the stop result.
    let (taken, collected) = run_endless(30);
    assert_eq!(taken, 16);
    assert_eq!(collected, (0..16).map(|i| (i, 2 * i as u64)).collect::<Vec<_>>());

    // On a machine the jobs still running at the stop are collected too, and no more are taken.
    let vm = SimVm::new(registry(), 3, 1).seed(11);
    let trace = vm.trace();
    cos::set_vm(vm).unwrap();
    let (taken, collected) = run_endless(30);
    assert!((16..=16 + 2 * 3).contains(&taken), "{taken} jobs taken");
    assert_eq!(trace.events().iter().filter(|e| matches!(e, SimEvent::Spawn { .. })).count(), taken);
    check_endless(taken, collected);
    cos::finalize();

    cos::set_vm(ThreadVm::builder(registry()).hosts(1).slots_per_host(3).build()).unwrap();
    let (taken, collected) = run_endless(30);
    assert!((16..=16 + 2 * 3).contains(&taken), "{taken} jobs taken");
    check_endless(taken, collected);
    cos::finalize();
}

#[test]
fn collector_sees_host_ids_on_thread_vm() {
    assert!(!HOST_TEST_RAN.swap(true, Ordering::SeqCst));
    cos::set_vm(ThreadVm::builder(registry()).hosts(2).slots_per_host(1).build()).unwrap();
    // Job 0 cannot end before job 2 is taken, so jobs 0 and 1 run at the same time: on the two
    // hosts.
    let jobs = (0..10u64).map(|i| {
        if i == 2 {
            *JOB2_GIVEN.lock().unwrap() = true;
            JOB2_GIVEN_CV.notify_all();
        }
        if i == 0 {
            cos::job(&WAIT_FOR_JOB2, i)
        } else {
            cos::job(&DOUBLE, i)
        }
    });
    let mut seen: Vec<(usize, Option<HostId>, u64)> = Vec::new();
    Dispatch::new(jobs)
        .collector(|c| {
            seen.push((c.index, c.host.cloned(), *c.result.as_ref().unwrap()));
            ControlFlow::Continue(())
        })
        .run()
        .unwrap();
    seen.sort_by_key(|s| s.0);
    assert_eq!(seen.len(), 10);
    let hosts = cos::hosts();
    for (i, h, r) in &seen {
        assert!(hosts.contains(h.as_ref().unwrap()), "job {i} on {h:?}");
        assert_eq!(*r, if *i == 0 { 0 } else { 2 * *i as u64 });
    }
    let first_two: Vec<HostId> = {
        let mut v = vec![seen[0].1.clone().unwrap(), seen[1].1.clone().unwrap()];
        v.sort();
        v
    };
    assert_eq!(first_two, vec![host(0), host(1)]);

    // Jobs run locally report no host.
    let mut local_hosts = Vec::new();
    Dispatch::new(doubles(4))
        .remote(false)
        .collector(|c| {
            local_hosts.push(c.host.cloned());
            ControlFlow::Continue(())
        })
        .run()
        .unwrap();
    assert_eq!(local_hosts, vec![None; 4]);
    cos::finalize();
}

#[test]
fn build_result_list_with_a_collector() {
    let vm = SimVm::new(registry(), 2, 1).latency(|_, n| 100 - n);
    cos::set_vm(vm).unwrap();
    let order = RefCell::new(Vec::new());
    let list = Dispatch::new(doubles(8))
        .collector(|c| {
            assert_eq!(*c.result, Ok(2 * c.index as u64));
            order.borrow_mut().push(c.index);
            ControlFlow::Continue(())
        })
        .build_result_list(true)
        .run()
        .unwrap();
    assert_eq!(list, (0..8).map(|i| Ok(2 * i)).collect::<Vec<_>>());
    let mut seen = order.borrow().clone();
    assert_ne!(seen, (0..8).collect::<Vec<_>>(), "collected in completion order");
    seen.sort();
    assert_eq!(seen, (0..8).collect::<Vec<_>>());

    // build_result_list(false) without a collector returns no list.
    assert_eq!(Dispatch::new(doubles(3)).build_result_list(false).run().unwrap(), vec![]);
    cos::finalize();
}

#[test]
fn dispatch_remote_option_overrides_the_jobs() {
    let vm = SimVm::new(registry(), 2, 1);
    let trace = vm.trace();
    cos::set_vm(vm).unwrap();

    let mut hosts = Vec::new();
    let list = Dispatch::new(doubles(5))
        .remote(false)
        .collector(|c| {
            hosts.push(c.host.cloned());
            ControlFlow::Continue(())
        })
        .build_result_list(true)
        .run()
        .unwrap();
    assert_eq!(list, (0..5).map(|i| Ok(2 * i)).collect::<Vec<_>>());
    assert_eq!(hosts, vec![None; 5]);
    assert!(trace.events().is_empty(), "nothing ran in the machine");

    // Jobs that ask to run locally are sent out with remote(true).
    let jobs = (0..4).map(|i| cos::job(&DOUBLE, i).remote(false));
    let list = Dispatch::new(jobs).remote(true).run().unwrap();
    assert_eq!(list, (0..4).map(|i| Ok(2 * i)).collect::<Vec<_>>());
    assert_eq!(trace.events().iter().filter(|e| matches!(e, SimEvent::Spawn { .. })).count(), 4);
    cos::finalize();
}

#[test]
fn dispatch_single_joins_its_own_task() {
    // Without a machine.
    assert_eq!(cos::dispatch_single(cos::job(&DOUBLE, 4)).unwrap(), 8);

    // Another child has finished first: dispatch_single still returns its own job's value.
    let vm = SimVm::new(registry(), 2, 1);
    let trace = vm.trace();
    cos::set_vm(vm).unwrap();
    let other = cos::spawn(|| 1000u64).unwrap();
    assert_eq!(cos::finished_tasks(), 1);
    assert_eq!(cos::dispatch_single(cos::job(&DOUBLE, 21)).unwrap(), 42);
    assert_eq!(trace.events().len(), 2, "one remote task, started and done");
    assert_eq!(cos::join(other).unwrap(), 1000);
    assert_eq!(cos::dispatch_single(cos::job(&DOUBLE, 1).remote(false)).unwrap(), 2);
    assert_eq!(trace.events().len(), 2);
    cos::finalize();

    cos::set_vm(ThreadVm::builder(registry()).hosts(1).slots_per_host(2).build()).unwrap();
    let other = cos::spawn(|| 7u64).unwrap();
    assert_eq!(cos::dispatch_single(cos::job(&MIX, (1, 2))).unwrap(), MIX.call((1, 2)));
    assert_eq!(cos::join(other).unwrap(), 7);
    cos::finalize();
}

#[test]
fn results_are_the_same_locally_on_threads_and_on_simulated_machines() {
    const N: u64 = 60;
    let jobs = || (0..N).map(|i| cos::job(&MIX, (i, 1234567)));
    let expected: Vec<Result<u64, cos::Error>> = (0..N).map(|i| Ok(MIX.call((i, 1234567)))).collect();

    let local = cos::dispatch(jobs()).unwrap();
    assert_eq!(local, expected);

    cos::set_vm(ThreadVm::builder(registry()).hosts(2).slots_per_host(2).build()).unwrap();
    let threads = cos::dispatch(jobs()).unwrap();
    cos::finalize();
    assert_eq!(threads, expected);

    let mut orders = Vec::new();
    for seed in [1, 2] {
        let vm = SimVm::new(registry(), 3, 2).seed(seed);
        let trace = vm.trace();
        cos::set_vm(vm).unwrap();
        let sim = cos::dispatch(jobs()).unwrap();
        cos::finalize();
        assert_eq!(sim, expected, "seed {seed}");
        orders.push(done_order(&trace.events()));
    }
    assert_ne!(orders[0], orders[1], "the seeds give different completion orders");
}
