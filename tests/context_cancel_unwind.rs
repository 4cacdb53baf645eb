//! A task cancelled by another task is unwound as code of the scheduler: its destructors see
//! tid 0, not the canceller's, and a yield there does not suspend the canceller.

use std::cell::RefCell;
use std::rc::Rc;

use cos::{Context, Error};

type Log = Rc<RefCell<Vec<String>>>;

struct Guard(Log);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.borrow_mut().push(format!("destructor sees tid {}", cos::tid()));
        cos::yield_now();
        let spawn = cos::spawn(|| ()).err();
        assert_eq!(spawn, Some(Error::WrongContext(Context::Scheduler)));
        self.0.borrow_mut().push("destructor ends".into());
    }
}

#[test]
fn a_child_cancelled_from_a_task_unwinds_without_the_cancellers_identity() {
    let log: Log = Log::default();
    let l = log.clone();
    let canceller = cos::spawn(move || {
        let l2 = l.clone();
        let child = cos::spawn(move || {
            let _g = Guard(l2);
            loop {
                cos::yield_now();
            }
        })
        .unwrap();
        l.borrow_mut().push(format!("canceller {} cancels", cos::tid()));
        assert_eq!(cos::cancel(child.tid()), Ok(true));
        l.borrow_mut().push(format!("canceller {} goes on", cos::tid()));
        assert_eq!(cos::join(child), Err(Error::Cancelled(child.tid())));
        7
    })
    .unwrap();
    let other = cos::spawn({
        let l = log.clone();
        move || l.borrow_mut().push("other task runs".into())
    })
    .unwrap();
    assert_eq!(cos::join(canceller), Ok(7));
    cos::join(other).unwrap();
    let c = canceller.tid();
    assert_eq!(
        *log.borrow(),
        vec![
            format!("canceller {c} cancels"),
            "destructor sees tid 0".to_string(),
            "destructor ends".to_string(),
            format!("canceller {c} goes on"),
            "other task runs".to_string(),
        ]
    );
}
