//! PyOPUS's `setVM`: an ignored `set_vm` (a machine with fewer than 2 slots) changes nothing;
//! `remove_vm` (PyOPUS's `setVM(None)`) refuses while remote tasks run and otherwise takes the
//! machine out, unfinalized.

use std::sync::{Condvar, Mutex};

use cos::{Error, Registry, RemoteFn, SimVm, ThreadVm};

static ONE: RemoteFn<(), u8> = RemoteFn::new("one", |()| 1);

static GATE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());
static GATED: RemoteFn<(), u8> = RemoteFn::new("gated", |()| {
    let mut open = GATE.0.lock().unwrap();
    while !*open {
        open = GATE.1.wait(open).unwrap();
    }
    2
});

fn fresh<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

#[test]
fn an_ignored_set_vm_keeps_the_machine_that_was_set() {
    fresh(|| {
        assert_eq!(cos::set_vm(SimVm::new(Registry::new().with(&ONE), 2, 1)), Ok(true));
        assert_eq!(cos::set_vm(SimVm::new(Registry::new(), 1, 0)), Ok(false));
        assert_eq!(cos::slots(), Some(3));
        let s = cos::Spawn::new(&ONE, ()).start().unwrap();
        assert!(s.task_id.is_some(), "the first machine still runs remote tasks");
        assert_eq!(cos::join(s.task), Ok(1));
        cos::finalize();
    });
}

#[test]
fn remove_vm_refuses_while_remote_tasks_run_and_then_removes_the_machine() {
    fresh(|| {
        assert!(matches!(cos::remove_vm(), Ok(None)));
        let vm = ThreadVm::builder(Registry::new().with(&GATED)).hosts(1).slots_per_host(1).build();
        assert_eq!(cos::set_vm(vm), Ok(true));
        let s = cos::Spawn::new(&GATED, ()).start().unwrap();
        assert!(s.task_id.is_some());
        assert_eq!(cos::remove_vm().err(), Some(Error::MachineInUse { remote_tasks: 1 }));
        // The refusal changed nothing: the task runs on and the machine stays.
        assert_eq!(cos::slots(), Some(2));
        *GATE.0.lock().unwrap() = true;
        GATE.1.notify_all();
        assert_eq!(cos::join(s.task), Ok(2));
        let mut vm = cos::remove_vm().unwrap().expect("the machine comes back");
        assert_eq!(cos::slots(), None);
        assert_eq!(vm.slots(), 2, "not finalized: still usable by its owner");
        vm.finalize();
        // Without a machine, remote spawns run locally.
        let s = cos::Spawn::new(&GATED, ()).start().unwrap();
        assert_eq!((s.task_id, cos::join(s.task)), (None, Ok(2)));
    });
}
