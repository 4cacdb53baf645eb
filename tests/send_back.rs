//! A spawn with `no_send_back()` (PyOPUS's `sendBack=False`): the remote function runs, its value
//! is neither encoded nor sent back, the joiner gets `()`, and a failure still comes back.

mod common;

use std::sync::Mutex;

use common::remote_failure;
use cos::{Error, Registry, RemoteErrorKind, RemoteFn, Spawn};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The arguments `note` ran with (the machines of this file run their workers in this process).
static NOTED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

static NOTE: RemoteFn<u32, u32> = RemoteFn::new("note", |x| {
    NOTED.lock().unwrap().push(x);
    x * 2
});

static COUNT: RemoteFn<u32, u32> = RemoteFn::new("count", |x| x * 2);

/// A value whose encoding panics.
#[derive(Debug)]
struct Poison;

impl Serialize for Poison {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("this value cannot be serialized")
    }
}

impl<'de> Deserialize<'de> for Poison {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Poison)
    }
}

static POISON: RemoteFn<(), Poison> = RemoteFn::new("poison", |()| Poison);
static BOOM: RemoteFn<u32, u32> = RemoteFn::new("boom", |x| panic!("boom {x}"));

fn registry() -> Registry {
    Registry::new().with(&NOTE).with(&COUNT).with(&POISON).with(&BOOM)
}

machine_test!(the_joiner_gets_unit_and_the_function_runs, [sim, thread], |on| {
    on.set(registry(), 1, 2);
    // An argument of this machine's own, as the machines' tests run side by side.
    let x = if on == common::On::Sim { 1 } else { 2 };
    let s: cos::Spawned<()> = Spawn::new(&NOTE, x).no_send_back().start().unwrap();
    assert!(s.task_id.is_some(), "it ran remotely");
    assert_eq!(cos::join(s.task), Ok(()));
    let ran = NOTED.lock().unwrap().iter().filter(|&&n| n == x).count();
    assert_eq!(ran, 1, "the function ran once");
    // The same spawn with its value sent back still gives the value.
    assert_eq!(cos::join(Spawn::new(&COUNT, 21).start().unwrap().task), Ok(42));
});

machine_test!(a_value_that_cannot_be_encoded_is_never_encoded, [sim, thread], |on| {
    on.set(registry(), 1, 2);
    let s = Spawn::new(&POISON, ()).no_send_back().start().unwrap();
    assert!(s.task_id.is_some(), "it ran remotely");
    assert_eq!(cos::join(s.task), Ok(()));
    // Sent back, the same value breaks its worker at its encoding.
    let r = cos::join(Spawn::new(&POISON, ()).start().unwrap().task);
    assert!(matches!(r, Err(Error::WorkerLost(_))), "{r:?}");
});

machine_test!(a_panic_is_still_reported, [sim, thread], |on| {
    on.set(registry(), 1, 2);
    let s = Spawn::new(&BOOM, 7).no_send_back().start().unwrap();
    let r = cos::join(s.task);
    assert_eq!(remote_failure(&r), Some((RemoteErrorKind::Panicked, "boom 7")), "{r:?}");
    match r {
        Err(Error::Remote(e)) => assert_eq!((e.task, e.host), (s.task_id, s.host)),
        other => panic!("{other:?}"),
    }
    // The worker serves on.
    assert_eq!(cos::join(Spawn::new(&COUNT, 1).no_send_back().start().unwrap().task), Ok(()));
});
