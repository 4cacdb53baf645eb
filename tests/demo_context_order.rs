//! Port of PyOPUS demo `demo/parallel/cooperative/01-context.py`: the exact interleaving of two
//! yielding tasks and the joins of the main program.

use std::cell::RefCell;
use std::rc::Rc;

#[test]
fn demo_01_prints_pyopus_order() {
    let out = Rc::new(RefCell::new(Vec::<String>::new()));
    let print_msg = |msg: &'static str, n: u32, out: Rc<RefCell<Vec<String>>>| {
        move || {
            for i in 0..n {
                out.borrow_mut().push(format!("{msg} : {i}"));
                cos::yield_now();
            }
            n
        }
    };
    let a = cos::spawn(print_msg("Hello A", 10, out.clone())).unwrap();
    let b = cos::spawn(print_msg("Hello B", 20, out.clone())).unwrap();
    out.borrow_mut().push(format!("Running tasks: {{{}, {}}}", a.tid(), b.tid()));
    let mut running = 2;
    while running > 0 {
        if let Some(j) = cos::join_any().unwrap() {
            running -= 1;
            let tid = j.tid;
            out.borrow_mut()
                .push(format!("Task {tid} finished, return value: {}", j.value::<u32>().unwrap()));
        }
    }

    let mut expected = vec!["Hello A : 0", "Hello A : 1", "Hello B : 0", "Running tasks: {2, 3}"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    for i in 2..10 {
        expected.push(format!("Hello A : {i}"));
        expected.push(format!("Hello B : {}", i - 1));
    }
    expected.push("Hello B : 9".into());
    expected.push("Task 2 finished, return value: 10".into());
    for i in 10..20 {
        expected.push(format!("Hello B : {i}"));
    }
    expected.push("Task 3 finished, return value: 20".into());
    assert_eq!(*out.borrow(), expected);
}
