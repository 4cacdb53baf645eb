//! Registering two different functions under one name is an error at registration, not a
//! silent replacement; registering the same function again changes nothing.

use std::panic;

use cos::{Error, Registry, RemoteCall, RemoteFn};

static FIRST: RemoteFn<u32, u32> = RemoteFn::new("f", |x| x + 1);
static SECOND: RemoteFn<u32, u32> = RemoteFn::new("f", |x| x + 2);
static OTHER: RemoteFn<u32, u32> = RemoteFn::new("g", |x| x);

fn run(reg: &Registry, x: u32) -> u32 {
    let bytes = reg.run(&RemoteCall::new("f", &x).unwrap()).unwrap();
    postcard::from_bytes(&bytes).unwrap()
}

#[test]
fn a_second_function_under_a_taken_name_is_refused_and_the_first_stays() {
    let mut reg = Registry::new();
    reg.register(&FIRST).unwrap();
    assert_eq!(reg.register(&SECOND).unwrap_err(), Error::DuplicateFunction("f".into()));
    assert_eq!(run(&reg, 1), 2, "the first function stays registered");
    reg.register(&OTHER).unwrap();
    assert_eq!(reg.names(), vec!["f", "g"]);
}

#[test]
fn the_same_function_twice_is_fine() {
    let reg = Registry::new().with(&FIRST).with(&OTHER).with(&FIRST);
    assert_eq!(reg.names(), vec!["f", "g"]);
    assert_eq!(run(&reg, 1), 2);
}

#[test]
fn the_builder_panics_on_a_duplicate_name() {
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let r = panic::catch_unwind(|| Registry::new().with(&FIRST).with(&SECOND));
    panic::set_hook(hook);
    assert!(r.is_err(), "with() accepted a second function named f");
}
