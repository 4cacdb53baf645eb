//! `cos::spawner_call` (PyOPUS's `spawnerCall`): workers of the thread and the process machine
//! run functions in the spawner, waiting for the value or not; without a machine, or in the
//! spawner, the function runs where it is called.
//!
//! Runs without the test harness (`harness = false`): `main` first calls `cos::start`, which
//! turns a started copy into a worker, then runs the checks and prints "N passed, M failed".

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use cos::{Error, ProcessVm, Registry, RemoteFn, ThreadVm};

/// What the spawner's copy of `RECORD` has added up.
static TOTAL: AtomicU64 = AtomicU64::new(0);

/// Runs in the spawner: adds to the total there and returns it.
static RECORD: RemoteFn<u64, u64> = RemoteFn::new("record", |x| TOTAL.fetch_add(x, Ordering::SeqCst) + x);
/// Where a function runs: its process and thread.
static WHERE: RemoteFn<(), Place> = RemoteFn::new("where", |()| here());

/// A process id and a thread name.
type Place = (u32, String);

fn here() -> Place {
    (std::process::id(), std::thread::current().name().unwrap_or("").to_string())
}

/// A job: records `x` in the spawner and returns the total it saw.
static ASK: RemoteFn<u64, u64> =
    RemoteFn::new("ask", |x| cos::spawner_call(&RECORD, x, false).unwrap().unwrap());
/// A job: records `x` in the spawner without waiting; true when the call gave no value.
static TELL: RemoteFn<u64, bool> =
    RemoteFn::new("tell", |x| cos::spawner_call(&RECORD, x, true).unwrap().is_none());
/// A job: where it runs, and where its spawner call runs.
static WHERE_AND_SPAWNER: RemoteFn<(), (Place, Place)> =
    RemoteFn::new("where_and_spawner", |()| (here(), cos::spawner_call(&WHERE, (), false).unwrap().unwrap()));
/// A job whose local tasks call the spawner.
static FROM_LOCAL_TASKS: RemoteFn<u64, u64> = RemoteFn::new("from_local_tasks", |n| {
    let tasks: Vec<_> = (1..=n)
        .map(|i| cos::spawn(move || cos::spawner_call(&RECORD, i, false).unwrap().unwrap()).unwrap())
        .collect();
    tasks.into_iter().map(|t| cos::join(t).unwrap()).max().unwrap_or(0)
});
/// Not registered anywhere.
static UNREGISTERED: RemoteFn<(), ()> = RemoteFn::new("unregistered", |()| ());
/// A job: the error of a spawner call of an unregistered function.
static ASK_UNKNOWN: RemoteFn<(), String> =
    RemoteFn::new("ask_unknown", |()| match cos::spawner_call(&UNREGISTERED, (), false) {
        Err(Error::Remote(e)) if e.kind == cos::RemoteErrorKind::UnknownFunction => e.message,
        other => format!("unexpected {other:?}"),
    });

fn registry() -> Registry {
    Registry::new()
        .with(&RECORD)
        .with(&WHERE)
        .with(&ASK)
        .with(&TELL)
        .with(&WHERE_AND_SPAWNER)
        .with(&FROM_LOCAL_TASKS)
        .with(&ASK_UNKNOWN)
}

fn thread_machine() {
    assert!(cos::set_vm(ThreadVm::builder(registry()).slots_per_host(2).build()).unwrap());
}

fn process_machine() {
    assert!(cos::set_vm(ProcessVm::builder(registry()).slots_per_host(2).build().unwrap()).unwrap());
}

fn without_a_machine_the_call_is_local() {
    TOTAL.store(0, Ordering::SeqCst);
    assert_eq!(cos::spawner_call(&RECORD, 5, false), Ok(Some(5)));
    // Asynchronous or not, a local call gives its value.
    assert_eq!(cos::spawner_call(&RECORD, 2, true), Ok(Some(7)));
    assert_eq!(cos::spawner_call(&WHERE, (), false), Ok(Some(here())));
}

fn in_the_spawner_the_call_is_local() {
    thread_machine();
    assert_eq!(cos::spawner_call(&WHERE, (), true), Ok(Some(here())));
}

/// Every waiting call ran in the spawner, one at a time: the totals the jobs saw are distinct
/// and the last is the sum.
fn synchronous_calls(machine: fn()) {
    machine();
    TOTAL.store(0, Ordering::SeqCst);
    let seen: Vec<u64> =
        cos::dispatch((1..=10).map(|i| cos::job(&ASK, i))).unwrap().into_iter().map(Result::unwrap).collect();
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 10, "{seen:?}");
    assert_eq!(sorted.last(), Some(&55));
    assert_eq!(TOTAL.load(Ordering::SeqCst), 55);
}

/// An asynchronous call gives nothing back, and has run in the spawner before the job's result
/// reaches it.
fn asynchronous_calls(machine: fn()) {
    machine();
    TOTAL.store(0, Ordering::SeqCst);
    let r = cos::dispatch((1..=10).map(|i| cos::job(&TELL, i))).unwrap();
    assert_eq!(r, vec![Ok(true); 10]);
    assert_eq!(TOTAL.load(Ordering::SeqCst), 55);
    let one = cos::spawn_remote(&TELL, 100).unwrap();
    assert_eq!(cos::join(one), Ok(true));
    assert_eq!(TOTAL.load(Ordering::SeqCst), 155);
}

fn calls_from_local_tasks_of_a_worker(machine: fn()) {
    machine();
    TOTAL.store(0, Ordering::SeqCst);
    assert_eq!(cos::dispatch_single(cos::job(&FROM_LOCAL_TASKS, 4)), Ok(10));
    assert_eq!(TOTAL.load(Ordering::SeqCst), 10);
}

fn an_unknown_function_is_an_error_in_the_worker(machine: fn()) {
    machine();
    assert_eq!(cos::dispatch_single(cos::job(&ASK_UNKNOWN, ())), Ok("unregistered".to_string()));
}

fn thread_workers_call_the_spawner() {
    synchronous_calls(thread_machine);
    asynchronous_calls(thread_machine);
    calls_from_local_tasks_of_a_worker(thread_machine);
    an_unknown_function_is_an_error_in_the_worker(thread_machine);
    thread_machine();
    let ((pid, worker_thread), (spawner_pid, spawner_thread)) =
        cos::dispatch_single(cos::job(&WHERE_AND_SPAWNER, ())).unwrap();
    assert_eq!(pid, std::process::id());
    assert_eq!(spawner_pid, std::process::id());
    assert!(worker_thread.starts_with("cos-worker-"), "{worker_thread}");
    assert!(!spawner_thread.starts_with("cos-worker-"), "{spawner_thread}");
}

fn process_workers_call_the_spawner() {
    synchronous_calls(process_machine);
    asynchronous_calls(process_machine);
    calls_from_local_tasks_of_a_worker(process_machine);
    an_unknown_function_is_an_error_in_the_worker(process_machine);
    process_machine();
    let ((pid, _), (spawner_pid, _)) = cos::dispatch_single(cos::job(&WHERE_AND_SPAWNER, ())).unwrap();
    assert_ne!(pid, std::process::id());
    assert_eq!(spawner_pid, std::process::id());
}

fn main() {
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();

    let checks: &[(&str, fn())] = &[
        ("without_a_machine_the_call_is_local", without_a_machine_the_call_is_local),
        ("in_the_spawner_the_call_is_local", in_the_spawner_the_call_is_local),
        ("thread_workers_call_the_spawner", thread_workers_call_the_spawner),
        ("process_workers_call_the_spawner", process_workers_call_the_spawner),
    ];
    common::run_checks(checks);
}
