//! A remote call checks the types behind the function's name: when the spawner's argument or
//! result type differs from those of the function its worker registered under that name, the
//! call fails with `RemoteErrorKind::SignatureMismatch` naming the function, before the
//! worker decodes anything, instead of returning a wrong value as `Ok` (postcard decodes
//! `0u64` as `""`, and `-1i64` read as a `u64` is `1`). The same holds for a spawner call whose
//! function differs from the one the spawner registered. On every machine; a process machine's
//! workers are this program started again (`harness = false`).

mod common;

use common::On;
use cos::{Error, Registry, RemoteErrorKind, RemoteFn};

/// Registered on the workers (and in the spawner, for its spawner calls).
static LEN: RemoteFn<String, u64> = RemoteFn::new("len", |s| s.len() as u64);
static NEG: RemoteFn<i64, i64> = RemoteFn::new("neg", |x| -x);

/// The spawner's view of the same names, with other types: never registered.
static LEN_OF_U64: RemoteFn<u64, u64> = RemoteFn::new("len", |x| x);
static NEG_AS_U64: RemoteFn<i64, u64> = RemoteFn::new("neg", |x| x.unsigned_abs());

/// A job: calls `neg` in the spawner with the wrong result type; the value, or the failure's
/// kind and message.
static ASK_NEG_AS_U64: RemoteFn<i64, Result<u64, (RemoteErrorKind, String)>> =
    RemoteFn::new("ask_neg_as_u64", |x| match cos::spawner_call(&NEG_AS_U64, x, false) {
        Ok(v) => Ok(v.unwrap_or(u64::MAX)),
        Err(Error::Remote(e)) => Err((e.kind, e.message)),
        Err(other) => Err((RemoteErrorKind::Panicked, format!("unexpected {other:?}"))),
    });

fn registry() -> Registry {
    Registry::new().with(&LEN).with(&NEG).with(&ASK_NEG_AS_U64)
}

/// The failure's kind and message, if `r` is a remote failure.
fn failure<T: std::fmt::Debug>(r: Result<T, Error>) -> (RemoteErrorKind, String) {
    match r {
        Err(Error::Remote(e)) => (e.kind, e.message),
        other => panic!("a remote failure expected, got {other:?}"),
    }
}

fn a_call_with_other_types_fails_with_the_name(on: On) {
    on.set(registry(), 1, 2);
    let mismatch = |name: &str| (RemoteErrorKind::SignatureMismatch, name.to_string());
    // Another argument type: `0u64` would decode as "" and give Ok(0).
    let t = cos::spawn_remote(&LEN_OF_U64, 0).unwrap();
    assert_eq!(failure(cos::join(t)), mismatch("len"));
    // Another result type: -1 would read as Ok(1).
    let t = cos::spawn_remote(&NEG_AS_U64, 1).unwrap();
    assert_eq!(failure(cos::join(t)), mismatch("neg"));
    // Through dispatch, and without the value sent back.
    assert_eq!(failure(cos::dispatch_single(cos::job(&LEN_OF_U64, 0))), mismatch("len"));
    let quiet = cos::Spawn::new(&NEG_AS_U64, 1).no_send_back().start().unwrap();
    assert_eq!(failure(cos::join(quiet.task)), mismatch("neg"));
    // The registered types work.
    assert_eq!(cos::join(cos::spawn_remote(&NEG, 1).unwrap()), Ok(-1));
    assert_eq!(cos::join(cos::spawn_remote(&LEN, "abc".to_string()).unwrap()), Ok(3));
    // A spawner call with other types than the spawner's registry fails the same way.
    assert_eq!(cos::dispatch_single(cos::job(&ASK_NEG_AS_U64, 1)), Ok(Err(mismatch("neg"))));
    cos::finalize();
}

fn main() {
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[
        ("sim", || a_call_with_other_types_fails_with_the_name(On::Sim)),
        ("thread", || a_call_with_other_types_fails_with_the_name(On::Thread)),
        ("process", || a_call_with_other_types_fails_with_the_name(On::Process)),
    ];
    common::run_checks(checks);
}
