//! User messages between the spawner and its running remote tasks (PyOPUS `sendMessage` /
//! `receiveMessage`, demo `vm/03-messaging.py`): both ways, typed, in order, each naming its
//! sender; a blocking receive blocks only its own microthread; a message to an ended task and
//! one that does not decode as the asked type are typed errors. Each body runs on every machine
//! that has it: SimVm (messages from tasks only: a simulated task has ended when its spawn
//! returns), ThreadVm and ProcessVm. This program has its own `main`, since ProcessVm's
//! workers run it again.

mod common;

use std::time::Duration;

use common::On;
use cos::{Error, MachineErrorKind, Registry, RemoteFn, Spawn, TaskId};

/// A long wait: only a broken machine takes this long.
const LONG: Option<Duration> = Some(Duration::from_secs(60));

/// Sends `n` progress messages to the spawner, then returns `n`.
static REPORTER: RemoteFn<u32, u32> = RemoteFn::new("reporter", |n| {
    for i in 0..n {
        cos::send_message(TaskId::SPAWNER, &format!("progress {i}")).unwrap();
    }
    n
});

/// Answers every number from the spawner with its square, until 0; returns how many it
/// answered.
static SQUARES: RemoteFn<(), u32> = RemoteFn::new("squares", |()| {
    let mut answered = 0;
    loop {
        let (from, x) = cos::receive_message::<u64>(None).unwrap().expect("a message");
        assert_eq!(from, TaskId::SPAWNER);
        if x == 0 {
            return answered;
        }
        cos::send_message(TaskId::SPAWNER, &(x * x)).unwrap();
        answered += 1;
    }
});

/// Receives while a local task of its own runs: the local task says "ready" to the spawner
/// only after the remote function has started to wait, so the spawner's "go" can come only if
/// the wait let the local task run.
static WAITS_COOPERATIVELY: RemoteFn<(), String> = RemoteFn::new("waits_cooperatively", |()| {
    let helper = cos::spawn(|| {
        cos::yield_now(); // the remote function goes on to its receive
        cos::send_message(TaskId::SPAWNER, "ready").unwrap();
    })
    .unwrap();
    let (_, go) = cos::receive_message::<String>(LONG).unwrap().expect("go");
    cos::join(helper).unwrap();
    go
});

/// Sends a string.
static SENDS_A_STRING: RemoteFn<(), ()> = RemoteFn::new("sends_a_string", |()| {
    cos::send_message(TaskId::SPAWNER, "hello").unwrap();
});

/// Tries to message a task other than its spawner.
static SENDS_TO_A_SIBLING: RemoteFn<(), bool> = RemoteFn::new("sends_to_a_sibling", |()| {
    let r = cos::send_message(TaskId { worker: 2, number: 99 }, &1u8);
    matches!(r, Err(Error::Vm(e)) if e.kind() == MachineErrorKind::NoSuchTask)
});

fn registry() -> Registry {
    Registry::new()
        .with(&REPORTER)
        .with(&SQUARES)
        .with(&WAITS_COOPERATIVELY)
        .with(&SENDS_A_STRING)
        .with(&SENDS_TO_A_SIBLING)
}

fn no_such_task<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Vm(e)) if e.kind() == MachineErrorKind::NoSuchTask)
}

/// Every machine: a task's messages reach the spawner in order, naming the task, before its
/// end; a message to it after its end is an error; a message of another type is an error.
fn messages_from_a_task(m: On) {
    m.set(registry(), 1, 2);
    let s = Spawn::new(&REPORTER, 5).start().unwrap();
    let task = s.task_id.expect("remote");
    for i in 0..5 {
        let got = cos::receive_message::<String>(LONG).unwrap();
        assert_eq!(got, Some((task, format!("progress {i}"))));
    }
    assert_eq!(cos::join(s.task).unwrap(), 5);
    assert!(no_such_task(cos::send_message(task, &1u8)), "a message to an ended task");
    assert_eq!(cos::receive_message::<String>(None).unwrap(), None, "no remote task runs: nothing can come");

    let s = Spawn::new(&SENDS_A_STRING, ()).start().unwrap();
    let r = cos::receive_message::<bool>(LONG);
    assert!(matches!(r, Err(Error::Decode(_))), "{r:?}");
    cos::join(s.task).unwrap();

    let s = Spawn::new(&SENDS_TO_A_SIBLING, ()).start().unwrap();
    assert!(cos::join(s.task).unwrap(), "a remote task reaches only its spawner");
    assert!(no_such_task(cos::send_message(TaskId { worker: 1, number: 12345 }, &1u8)));
}

/// ThreadVm and ProcessVm: the spawner talks with a running task both ways.
fn conversation(m: On) {
    m.set(registry(), 1, 2);
    let s = Spawn::new(&SQUARES, ()).start().unwrap();
    let task = s.task_id.expect("remote");
    for x in 1..=4u64 {
        cos::send_message(task, &x).unwrap();
        assert_eq!(cos::receive_message::<u64>(LONG).unwrap(), Some((task, x * x)));
    }
    // It waits for a number now: nothing comes before the timeout.
    assert_eq!(cos::receive_message::<u64>(Some(Duration::from_millis(20))).unwrap(), None);
    cos::send_message(task, &0u64).unwrap();
    assert_eq!(cos::join(s.task).unwrap(), 4);
}

/// ThreadVm and ProcessVm: a waiting receive blocks only its microthread, in the spawner (a
/// local task waits while the main program goes on) and in the remote task.
fn a_receive_blocks_only_its_microthread(m: On) {
    m.set(registry(), 1, 2);
    let s = Spawn::new(&WAITS_COOPERATIVELY, ()).start().unwrap();
    let task = s.task_id.expect("remote");
    let receiver = cos::spawn(|| cos::receive_message::<String>(LONG)).unwrap();
    // The main program runs on while its local task waits for "ready".
    let joined = cos::join(receiver).unwrap().unwrap();
    assert_eq!(joined, Some((task, "ready".to_string())));
    cos::send_message(task, "go").unwrap();
    assert_eq!(cos::join(s.task).unwrap(), "go");
}

/// SimVm: its tasks end at their spawn, so a message to one cannot be delivered.
fn sim_refuses_messages_to_tasks(m: On) {
    m.set(registry(), 1, 2);
    let s = Spawn::new(&SQUARES, ()).start().unwrap();
    let r = cos::send_message(s.task_id.expect("remote"), &0u64);
    assert!(matches!(r, Err(Error::Vm(ref e)) if e.kind() == MachineErrorKind::Unsupported), "{r:?}");
    // The task's own receive failed with a typed error, so the task failed.
    assert!(matches!(cos::join(s.task), Err(Error::Remote(_))));
}

fn main() {
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[
        ("messages_from_a_task/sim", || messages_from_a_task(On::Sim)),
        ("messages_from_a_task/thread", || messages_from_a_task(On::Thread)),
        ("messages_from_a_task/process", || messages_from_a_task(On::Process)),
        ("conversation/thread", || conversation(On::Thread)),
        ("conversation/process", || conversation(On::Process)),
        ("a_receive_blocks_only_its_microthread/thread", || {
            a_receive_blocks_only_its_microthread(On::Thread)
        }),
        ("a_receive_blocks_only_its_microthread/process", || {
            a_receive_blocks_only_its_microthread(On::Process)
        }),
        ("sim_refuses_messages_to_tasks/sim", || sim_refuses_messages_to_tasks(On::Sim)),
    ];
    common::run_checks(checks);
}
