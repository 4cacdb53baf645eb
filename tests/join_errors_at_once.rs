//! A join that is an error returns its error to the caller at once, as PyOPUS raises it in the
//! caller: no other task runs between the call and the error.

use std::cell::Cell;
use std::rc::Rc;

use cos::{Error, Tid};

/// A task that is ready to run (it yielded once) and counts its turns.
fn ready_task(turns: &Rc<Cell<u32>>) -> cos::Task<()> {
    let t = turns.clone();
    cos::spawn(move || loop {
        cos::yield_now();
        t.set(t.get() + 1);
    })
    .unwrap()
}

fn errors(stranger: Tid, joined: Tid, unknown: Tid, ok: Tid) -> Vec<(Vec<Tid>, Error)> {
    let me = cos::tid();
    vec![
        (vec![Tid::SCHEDULER], Error::JoinScheduler),
        (vec![unknown], Error::UnknownTask(unknown)),
        (vec![joined], Error::UnknownTask(joined)),
        (vec![stranger], Error::NotAChild { tid: stranger, caller: me }),
        (vec![ok, Tid::SCHEDULER], Error::JoinScheduler),
    ]
}

fn check_all(stranger: Tid, turns: &Rc<Cell<u32>>) {
    let done = cos::spawn(|| ()).unwrap();
    cos::join(done).unwrap();
    let unknown = Tid(1_000_000);
    let ok = ready_task(turns);
    for (tids, error) in errors(stranger, done.tid(), unknown, ok.tid()) {
        for block in [true, false] {
            let before = turns.get();
            assert_eq!(cos::join_list(&tids, block).unwrap_err(), error, "{tids:?}");
            assert_eq!(turns.get(), before, "no task ran before the error of a join on {tids:?}");
        }
    }
    let before = turns.get();
    let timed = cos::join_timeout(&[Tid::SCHEDULER], std::time::Duration::from_secs(5));
    assert_eq!(timed.unwrap_err(), Error::JoinScheduler);
    assert_eq!(turns.get(), before);
    cos::cancel(ok.tid()).unwrap();
}

#[test]
fn join_errors_reach_the_main_program_at_once() {
    let turns = Rc::new(Cell::new(0));
    let busy = ready_task(&turns);
    // A task of another parent, for NotAChild: it runs until told to stop.
    let stranger = Rc::new(Cell::new(Tid(0)));
    let stop = Rc::new(Cell::new(false));
    let (s, st) = (stranger.clone(), stop.clone());
    let parent = cos::spawn(move || {
        let t = cos::spawn(move || {
            while !st.get() {
                cos::yield_now()
            }
        })
        .unwrap();
        s.set(t.tid());
        cos::join(t).unwrap();
    })
    .unwrap();
    while stranger.get() == Tid(0) {
        cos::yield_now();
    }
    check_all(stranger.get(), &turns);
    stop.set(true);
    cos::join(parent).unwrap();
    cos::cancel(busy.tid()).unwrap();
}

#[test]
fn join_errors_reach_a_task_at_once() {
    let turns = Rc::new(Cell::new(0));
    let busy = ready_task(&turns);
    let t = turns.clone();
    let checker = cos::spawn(move || check_all(Tid::MAIN, &t)).unwrap();
    cos::join(checker).unwrap();
    cos::cancel(busy.tid()).unwrap();
}
