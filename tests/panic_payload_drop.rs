//! A task that panics with a payload whose own `Drop` panics ends with `Error::Panicked`, and
//! the OS stays sound: later calls from the main program and from tasks work.

use cos::Error;

struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("the payload's destructor panics too");
    }
}

#[test]
fn a_payload_whose_drop_panics_ends_only_its_task() {
    let t = cos::spawn(|| -> u8 { std::panic::panic_any(PanicsOnDrop) }).unwrap();
    assert!(matches!(cos::join(t), Err(Error::Panicked { tid, .. }) if tid == t.tid()));
    // The main program is still the main program, and tasks still run and switch.
    assert_eq!(cos::tid(), cos::Tid::MAIN);
    let u = cos::spawn(|| {
        cos::yield_now();
        cos::tid()
    })
    .unwrap();
    cos::yield_now();
    assert_eq!(cos::join(u), Ok(u.tid()));
    assert_eq!(cos::task_count(), 1);
}
