//! A value too large for the transport is one typed failure, the same on every machine
//! (`Error::Remote` of kind `RemoteErrorKind::TooLarge { bytes, limit }`), never a lost
//! worker: a function's value (the worker reports the failure instead and serves on, and
//! dispatch does not retry it), a job's arguments (refused at the spawn) and a user message
//! from a remote task (refused at its send). This program has its own `main`, since
//! ProcessVm's workers run it again.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::On;
use cos::{Error, Registry, RemoteErrorKind, RemoteFn, Spawn, TaskId};

/// Over the limit of every machine (the process machine's frames take at most 256 MiB).
const OVER: usize = 256 << 20;

/// Counts the calls of `huge` in this process (the thread and simulated machines' workers).
static HUGE_CALLS: AtomicUsize = AtomicUsize::new(0);

static HUGE: RemoteFn<usize, Vec<u8>> = RemoteFn::new("huge", |n| {
    HUGE_CALLS.fetch_add(1, Ordering::SeqCst);
    vec![7; n]
});
static PID: RemoteFn<(), u32> = RemoteFn::new("pid", |()| std::process::id());
static TAKES: RemoteFn<Vec<u8>, usize> = RemoteFn::new("takes", |v| v.len());
/// Sends a message of `n` bytes to the spawner; the error's kind, if the send failed.
static SENDS: RemoteFn<usize, Option<RemoteErrorKind>> =
    RemoteFn::new("sends", |n| match cos::send_message(TaskId::SPAWNER, &vec![1u8; n]) {
        Ok(()) => None,
        Err(Error::Remote(e)) => Some(e.kind),
        Err(e) => panic!("not a typed size error: {e:?}"),
    });

fn registry() -> Registry {
    Registry::new().with(&HUGE).with(&PID).with(&TAKES).with(&SENDS)
}

fn is_too_large(kind: RemoteErrorKind) -> bool {
    matches!(kind, RemoteErrorKind::TooLarge { bytes, limit } if bytes > limit && limit < OVER)
}

/// An oversized value fails its job, is not retried, and its worker serves the next job.
fn an_oversized_value_fails_its_job(on: On) {
    on.set(registry(), 1, 1);
    let before = cos::dispatch_single(cos::job(&PID, ())).unwrap();
    HUGE_CALLS.store(0, Ordering::SeqCst);
    let r = cos::Dispatch::new([cos::job(&HUGE, OVER)]).retries(2).run().unwrap();
    match &r[0] {
        Err(Error::Remote(e)) => {
            assert!(is_too_large(e.kind), "{e:?}");
            assert_eq!(e.task.map(|t| t.worker), Some(1), "names its task");
        }
        other => panic!("not a typed size error: {:?}", other.as_ref().map(Vec::len)),
    }
    if on != On::Process {
        assert_eq!(HUGE_CALLS.load(Ordering::SeqCst), 1, "the job was retried");
    }
    assert_eq!(cos::dispatch_single(cos::job(&PID, ())), Ok(before), "the same worker serves on");
    assert_eq!(cos::dispatch_single(cos::job(&HUGE, 3)), Ok(vec![7; 3]));
}

/// Oversized arguments are refused at the spawn, before a worker sees them.
fn oversized_arguments_are_refused(on: On) {
    on.set(registry(), 1, 1);
    match Spawn::new(&TAKES, vec![0u8; OVER]).start() {
        Err(Error::Remote(e)) => assert!(is_too_large(e.kind), "{e:?}"),
        Err(e) => panic!("not a typed size error: {e:?}"),
        Ok(s) => panic!("started: {:?}", cos::join(s.task)),
    }
    assert_eq!(cos::free_slots(), Some(1), "no slot taken");
    assert_eq!(cos::dispatch_single(cos::job(&TAKES, vec![0u8; 5])), Ok(5));
}

/// A remote task's oversized message is refused at its send; the task runs on.
fn an_oversized_message_is_refused(on: On) {
    on.set(registry(), 1, 1);
    let kind = cos::dispatch_single(cos::job(&SENDS, OVER)).unwrap();
    assert!(kind.is_some_and(is_too_large), "{kind:?}");
    assert_eq!(cos::dispatch_single(cos::job(&SENDS, 4)), Ok(None));
    let got = cos::receive_message::<Vec<u8>>(Some(std::time::Duration::from_secs(60))).unwrap();
    assert_eq!(got.map(|(_, m)| m), Some(vec![1u8; 4]), "only the small message came");
}

fn main() {
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[
        ("an_oversized_value_fails_its_job/sim", || an_oversized_value_fails_its_job(On::Sim)),
        ("an_oversized_value_fails_its_job/thread", || an_oversized_value_fails_its_job(On::Thread)),
        ("an_oversized_value_fails_its_job/process", || an_oversized_value_fails_its_job(On::Process)),
        ("oversized_arguments_are_refused/sim", || oversized_arguments_are_refused(On::Sim)),
        ("oversized_arguments_are_refused/thread", || oversized_arguments_are_refused(On::Thread)),
        ("oversized_arguments_are_refused/process", || oversized_arguments_are_refused(On::Process)),
        ("an_oversized_message_is_refused/thread", || an_oversized_message_is_refused(On::Thread)),
        ("an_oversized_message_is_refused/process", || an_oversized_message_is_refused(On::Process)),
    ];
    common::run_checks(checks);
}
