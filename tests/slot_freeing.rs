//! A remote task's slot is free from the moment the task has ended, as in PyOPUS (where the
//! slot frees with the task's exit message): a loop like PyOPUS demo `vm/02-spawn.py`, which
//! receives until `free_slots()` is back at its start value, sees every task's end.

mod common;

use cos::{Registry, RemoteCall, RemoteFn};

static DOUBLE: RemoteFn<u32, u32> = RemoteFn::new("double", |x| 2 * x);
static BOOM: RemoteFn<u32, u32> = RemoteFn::new("boom", |x| panic!("boom {x}"));

fn registry() -> Registry {
    Registry::new().with(&DOUBLE).with(&BOOM)
}

machine_test!(a_free_slot_loop_sees_every_end, [sim, thread], |on| {
    let mut vm = on.machine(registry(), 2, 2);
    common::a_free_slot_loop_sees_every_end(vm.as_mut(), &RemoteCall::new("double", &21u32).unwrap());
});

machine_test!(a_free_slot_loop_sees_every_failed_end, [sim, thread], |on| {
    let mut vm = on.machine(registry(), 1, 3);
    common::a_free_slot_loop_sees_every_end(vm.as_mut(), &RemoteCall::new("boom", &1u32).unwrap());
});

machine_test!(the_slot_is_free_when_the_joined_task_has_ended, [sim, thread], |on| {
    // Through the scheduler: a joined remote task's slot is free again.
    on.set(registry(), 1, 1);
    for i in 0..5 {
        assert_eq!(cos::free_slots(), Some(1));
        assert_eq!(cos::dispatch_single(cos::job(&DOUBLE, i)), Ok(2 * i));
        assert_eq!(cos::free_slots(), Some(1));
    }
});
