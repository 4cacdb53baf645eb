//! A panic in the destructor of a value the scheduler drops (an orphan's value) is contained:
//! the main program's pending join still gets its child's value.

struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("destructor panics");
    }
}

#[test]
fn a_panicking_destructor_of_a_dropped_value_loses_no_answer() {
    let parent = cos::spawn(|| {
        cos::spawn(|| {
            cos::yield_now();
            PanicsOnDrop
        })
        .unwrap();
    })
    .unwrap();
    let last = cos::spawn(|| {
        for _ in 0..5 {
            cos::yield_now();
        }
        41 + 1
    })
    .unwrap();
    assert_eq!(cos::join(parent), Ok(()));
    let joined = std::panic::catch_unwind(|| cos::join(last));
    assert_eq!(joined.ok(), Some(Ok(42)), "the join returns the value, not a panic");
    assert_eq!(cos::task_count(), 1);
}
