//! A spawner call that overflows its stack, or panics, in the spawner gives its caller a typed
//! `Error::Remote` (kinds `StackOverflow`, `Panicked`) instead of ending the spawner: the
//! spawner runs each call guarded, as a worker runs its jobs. Later calls run on (after an
//! overflow on a fresh runner, since the overflowed frames were abandoned with what they
//! held), and so do the spawner's own tasks. On every machine that carries spawner calls; a
//! process machine's workers are this program started again (`harness = false`).

mod common;

use std::hint::black_box;

use common::On;
use cos::{Error, Registry, RemoteErrorKind, RemoteFn};

fn recurse(n: u64) -> u64 {
    let pad = black_box([n; 64]);
    if n == u64::MAX {
        return 0;
    }
    black_box(recurse(n + 1)) + pad[3]
}

/// Run in the spawner by the jobs below.
static RUNAWAY: RemoteFn<u64, u64> = RemoteFn::new("runaway", recurse);
static BOOM: RemoteFn<u64, u64> = RemoteFn::new("boom", |x| panic!("boom {x}"));
static DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x| 2 * x);

/// What a spawner call of `f(x)` gave the job: its value, or its failure's kind.
type Answer = Result<u64, RemoteErrorKind>;

fn ask(f: &RemoteFn<u64, u64>, x: u64) -> Answer {
    match cos::spawner_call(f, x, false) {
        Ok(Some(v)) => Ok(v),
        Err(Error::Remote(e)) => Err(e.kind),
        other => panic!("unexpected {other:?}"),
    }
}

static ASK_RUNAWAY: RemoteFn<u64, Answer> = RemoteFn::new("ask_runaway", |x| ask(&RUNAWAY, x));
static ASK_BOOM: RemoteFn<u64, Answer> = RemoteFn::new("ask_boom", |x| ask(&BOOM, x));
static ASK_DOUBLE: RemoteFn<u64, Answer> = RemoteFn::new("ask_double", |x| ask(&DOUBLE, x));
/// Overflows in the spawner without waiting for it, then asks for a double.
static TELL_RUNAWAY: RemoteFn<u64, Answer> = RemoteFn::new("tell_runaway", |x| {
    assert_eq!(cos::spawner_call(&RUNAWAY, 0, true), Ok(None));
    ask(&DOUBLE, x)
});

fn registry() -> Registry {
    Registry::new()
        .with(&RUNAWAY)
        .with(&BOOM)
        .with(&DOUBLE)
        .with(&ASK_RUNAWAY)
        .with(&ASK_BOOM)
        .with(&ASK_DOUBLE)
        .with(&TELL_RUNAWAY)
}

fn an_overflowing_spawner_call_fails_its_caller_only(on: On) {
    on.set(registry(), 1, 2);
    let local = cos::spawn(|| {
        cos::yield_now();
        "the spawner's task"
    })
    .unwrap();
    assert_eq!(cos::dispatch_single(cos::job(&ASK_RUNAWAY, 0)), Ok(Err(RemoteErrorKind::StackOverflow)));
    assert_eq!(cos::dispatch_single(cos::job(&ASK_DOUBLE, 21)), Ok(Ok(42)));
    assert_eq!(cos::dispatch_single(cos::job(&ASK_BOOM, 1)), Ok(Err(RemoteErrorKind::Panicked)));
    assert_eq!(cos::dispatch_single(cos::job(&ASK_RUNAWAY, 0)), Ok(Err(RemoteErrorKind::StackOverflow)));
    assert_eq!(cos::dispatch_single(cos::job(&TELL_RUNAWAY, 5)), Ok(Ok(10)));
    let r = cos::dispatch((0..4).map(|i| cos::job(&ASK_DOUBLE, i))).unwrap();
    assert_eq!(r, (0..4).map(|i| Ok(Ok(2 * i))).collect::<Vec<_>>());
    assert_eq!(cos::join(local), Ok("the spawner's task"));
    cos::finalize();
}

fn main() {
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[
        ("sim", || an_overflowing_spawner_call_fails_its_caller_only(On::Sim)),
        ("thread", || an_overflowing_spawner_call_fails_its_caller_only(On::Thread)),
        ("process", || an_overflowing_spawner_call_fails_its_caller_only(On::Process)),
    ];
    common::run_checks(checks);
}
