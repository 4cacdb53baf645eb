//! `SimVm` makes asynchronous algorithms reproducible: the asynchronous loop of PyOPUS demo
//! `demo/parallel/cooperative/05-asyncloop.py` gives the same trace and the same order of
//! results for the same seed, and another order for another seed.

use std::collections::HashMap;

use cos::{Registry, RemoteFn, SimEvent, SimVm, Tid};

static JOB_PROCESSOR: RemoteFn<u64, u64> = RemoteFn::new("job_processor", |value| 2 * value);

const STOP_AT_RESULT: u64 = 150;
const MIN_TASKS: usize = 1;
const MAX_TASKS: usize = 1000;

/// One run of demo 05's loop.
#[derive(Debug, PartialEq)]
struct Run {
    events: Vec<SimEvent>,
    /// (tid, job index, result) in join order.
    joins: Vec<(Tid, usize, u64)>,
    /// Results by job index.
    results: Vec<u64>,
}

/// Keeps spawning while slots are free, joins any finished job, stops spawning at the first
/// result of STOP_AT_RESULT or more, and joins what still runs.
fn async_loop() -> (Vec<(Tid, usize, u64)>, Vec<u64>) {
    let mut running: HashMap<Tid, usize> = HashMap::new();
    let mut joins = Vec::new();
    let mut results: Vec<Option<u64>> = Vec::new();
    let mut at_job = 0usize;
    let mut stop = false;
    while !(stop && running.is_empty()) {
        while !stop
            && (running.is_empty()
                || (cos::slots().is_some() && running.len() < MIN_TASKS)
                || (cos::free_slots().unwrap_or(0) > cos::finished_tasks() && running.len() < MAX_TASKS))
        {
            let task = cos::spawn_remote(&JOB_PROCESSOR, at_job as u64).unwrap();
            running.insert(task.tid(), at_job);
            at_job += 1;
        }
        let joined = cos::join_any().unwrap().expect("a job runs");
        let tid = joined.tid;
        let index = running.remove(&tid).expect("a job of this loop");
        let result = joined.value::<u64>().unwrap();
        joins.push((tid, index, result));
        if index >= results.len() {
            results.resize(index + 1, None);
        }
        results[index] = Some(result);
        if result >= STOP_AT_RESULT {
            stop = true;
        }
    }
    (joins, results.into_iter().map(|r| r.expect("every job joined")).collect())
}

/// Runs the loop on a fresh thread (so a fresh cooperative OS: tids start over) with a SimVm of
/// three one-slot hosts seeded with `seed`.
fn run(seed: u64) -> Run {
    std::thread::spawn(move || {
        let vm = SimVm::new(Registry::new().with(&JOB_PROCESSOR), 3, 1).seed(seed);
        let trace = vm.trace();
        assert_eq!(cos::set_vm(vm), Ok(true));
        let (joins, results) = async_loop();
        cos::finalize();
        Run { events: trace.events(), joins, results }
    })
    .join()
    .expect("the run finished")
}

fn job_order(r: &Run) -> Vec<usize> {
    r.joins.iter().map(|j| j.1).collect()
}

#[test]
fn same_seed_gives_the_same_run() {
    let a = run(5);
    let b = run(5);
    assert_eq!(a.events, b.events);
    assert_eq!(a.joins, b.joins);
    assert_eq!(a, b);
    // Results come back out of job order, yet every job's result is right.
    assert_ne!(job_order(&a), (0..a.results.len()).collect::<Vec<_>>());
    assert_eq!(a.results, (0..a.results.len() as u64).map(|i| 2 * i).collect::<Vec<_>>());
    assert!(a.results.len() >= 76, "job 75 (result 150) or a later one ended the loop");
    // Every job started and ended in the machine.
    let spawns = a.events.iter().filter(|e| matches!(e, SimEvent::Spawn { .. })).count();
    assert_eq!(spawns, a.results.len());
    assert_eq!(a.events.len(), 2 * spawns);
}

#[test]
fn another_seed_gives_another_completion_order() {
    let a = run(5);
    let c = run(6);
    assert_ne!(a.events, c.events);
    assert_ne!(job_order(&a), job_order(&c));
    // The results themselves do not depend on the seed, only how many jobs ran before the stop.
    let n = a.results.len().min(c.results.len());
    assert_eq!(a.results[..n], c.results[..n]);
}

#[test]
fn runs_are_reproducible_for_several_seeds() {
    for seed in [0, 1, 99, u64::MAX] {
        let a = run(seed);
        let b = run(seed);
        assert_eq!(a, b, "seed {seed}");
    }
}
