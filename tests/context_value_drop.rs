//! A value the scheduler lets go of (an orphan's value) is dropped while the main program waits
//! in a join; system calls in its `Drop` get `Error::WrongContext(Context::Scheduler)` and the
//! main program's pending join is not disturbed.

use std::cell::RefCell;
use std::rc::Rc;

use cos::{Context, Error, Tid};

#[derive(Debug, Default, PartialEq)]
struct Seen {
    spawn: Option<Error>,
    join: Option<Error>,
    cancel: Option<Error>,
    tid: Option<Tid>,
}

struct CallsInDrop(Rc<RefCell<Option<Seen>>>);

impl Drop for CallsInDrop {
    fn drop(&mut self) {
        let spawn = cos::spawn(|| ()).err();
        cos::yield_now();
        let join = cos::join_any().err();
        let cancel = cos::cancel(Tid(2)).err();
        *self.0.borrow_mut() = Some(Seen { spawn, join, cancel, tid: Some(cos::tid()) });
    }
}

#[test]
fn system_calls_in_an_orphans_value_drop_do_not_steal_the_main_programs_join() {
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    // The parent finishes at once; its child, an orphan, finishes later with a value whose Drop
    // makes system calls. The scheduler drops that value while main waits for `last`.
    let parent = cos::spawn(move || {
        cos::spawn(move || {
            cos::yield_now();
            CallsInDrop(s)
        })
        .unwrap();
    })
    .unwrap();
    let last = cos::spawn(|| {
        for _ in 0..5 {
            cos::yield_now();
        }
        "last"
    })
    .unwrap();
    assert_eq!(cos::join(parent), Ok(()));
    assert_eq!(cos::join(last), Ok("last"));
    let wrong = Some(Error::WrongContext(Context::Scheduler));
    assert_eq!(
        seen.borrow_mut().take(),
        Some(Seen { spawn: wrong.clone(), join: wrong.clone(), cancel: wrong, tid: Some(Tid::SCHEDULER) })
    );
    assert_eq!(cos::task_count(), 1);
}
