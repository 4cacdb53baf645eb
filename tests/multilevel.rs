//! Multilevel parallelism: a remote task uses local microthreads of its own (its worker runs
//! it as the main program of the worker's own cooperative OS), as in PyOPUS.

use std::cell::RefCell;
use std::rc::Rc;

use cos::{Registry, RemoteFn, SimVm, ThreadVm};

/// Spawns `n` local tasks that take turns (each yields between its steps), joins them all and
/// returns the order in which their steps ran, plus the sum of their values.
fn interleaved(n: u64) -> (Vec<u64>, u64) {
    let order = Rc::new(RefCell::new(Vec::new()));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let order = order.clone();
            cos::spawn(move || {
                for _ in 0..2 {
                    order.borrow_mut().push(i);
                    cos::yield_now();
                }
                i * i
            })
            .unwrap()
        })
        .collect();
    let sum = tasks.into_iter().map(|t| cos::join(t).unwrap()).sum();
    let order = order.borrow().clone();
    (order, sum)
}

static LOCAL_TREE: RemoteFn<u64, (Vec<u64>, u64)> = RemoteFn::new("local_tree", interleaved);

fn expected(n: u64) -> (Vec<u64>, u64) {
    // Run where no machine is set: the same function as local tasks of this thread's OS.
    std::thread::spawn(move || interleaved(n)).join().unwrap()
}

#[test]
fn remote_tasks_run_their_own_microthreads_on_worker_threads() {
    cos::set_vm(ThreadVm::builder(Registry::new().with(&LOCAL_TREE)).slots_per_host(2).build()).unwrap();
    let results = cos::dispatch((1..=6).map(|n| cos::job(&LOCAL_TREE, n))).unwrap();
    for (n, r) in (1..=6).zip(results) {
        let (order, sum) = r.unwrap();
        assert_eq!(order.len() as u64, 2 * n, "every child ran both of its steps");
        assert_eq!((order, sum), expected(n), "job {n}: the same interleaving as a local run");
    }
    cos::finalize();
}

#[test]
fn remote_tasks_run_their_own_microthreads_on_the_simulated_machine() {
    cos::set_vm(SimVm::new(Registry::new().with(&LOCAL_TREE), 2, 1).seed(11)).unwrap();
    let results = cos::dispatch((1..=4).map(|n| cos::job(&LOCAL_TREE, n))).unwrap();
    for (n, r) in (1..=4).zip(results) {
        assert_eq!(r.unwrap(), expected(n));
    }
    cos::finalize();
}

#[test]
fn the_spawner_runs_its_own_microthreads_while_remote_tasks_run() {
    cos::set_vm(ThreadVm::builder(Registry::new().with(&LOCAL_TREE)).slots_per_host(1).build()).unwrap();
    let remote = cos::spawn_remote(&LOCAL_TREE, 3).unwrap();
    let local = cos::spawn(|| interleaved(4)).unwrap();
    assert_eq!(cos::join(local).unwrap(), expected(4));
    assert_eq!(cos::join(remote).unwrap(), expected(3));
    cos::finalize();
}

/// Tries to set a machine from inside a remote task.
static SETS_A_MACHINE: RemoteFn<(), bool> =
    RemoteFn::new("sets_a_machine", |()| cos::set_vm(SimVm::new(Registry::new(), 2, 1)).unwrap());

#[test]
fn a_remote_task_cannot_set_a_machine_of_its_own() {
    // PyOPUS ignores setVM on a worker: outsourcing happens from the spawner only.
    cos::set_vm(ThreadVm::builder(Registry::new().with(&SETS_A_MACHINE)).slots_per_host(1).build()).unwrap();
    assert_eq!(cos::dispatch_single(cos::job(&SETS_A_MACHINE, ())), Ok(false));
    cos::finalize();
    // Where no machine is set, the same call is an ordinary set_vm.
    let here = std::thread::spawn(|| SETS_A_MACHINE.call(())).join().unwrap();
    assert!(here);
}
