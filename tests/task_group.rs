//! `TaskGroup`: children joined as one set, lowest finished tid first, with the errors of a
//! join on their tids, owned by the task that made it.

use cos::{Error, TaskGroup, Tid, WaitReason};

/// Spawns tasks that finish in an order unlike their tids, then joins them all, alternating
/// non-blocking and blocking joins, through `join`; returns the tids in join order (`None`
/// for a non-blocking join that found nothing).
fn join_order(join: fn(&[Tid], &mut TaskGroup, bool) -> Option<Tid>) -> Vec<Option<Tid>> {
    std::thread::spawn(move || {
        let mut group = TaskGroup::new();
        let mut tids = Vec::new();
        for i in 0..6u32 {
            let t = cos::spawn(move || {
                for _ in 0..(5 - i) * 2 {
                    cos::yield_now();
                }
            })
            .unwrap();
            group.add(t).unwrap();
            tids.push(t.tid());
        }
        let mut order = Vec::new();
        let mut block = false;
        while !tids.is_empty() {
            let j = join(&tids, &mut group, block);
            if let Some(t) = j {
                tids.retain(|x| *x != t);
            }
            order.push(j);
            block = !block;
        }
        assert!(group.is_empty(), "{order:?}");
        order
    })
    .join()
    .unwrap()
}

#[test]
fn a_group_joins_in_the_order_a_tid_list_does() {
    let by_list = join_order(|tids, _, block| cos::join_list(tids, block).unwrap().map(|j| j.tid));
    let by_group = join_order(|_, group, block| {
        if block { group.join_next() } else { group.try_join_next() }.unwrap().map(|j| j.tid)
    });
    assert_eq!(by_group, by_list);
    let joined: Vec<Tid> = by_list.iter().flatten().copied().collect();
    assert!(!joined.is_sorted(), "the tasks finish in an order unlike their tids: {by_list:?}");
}

#[test]
fn finished_members_come_lowest_tid_first() {
    let mut group = TaskGroup::new();
    let tasks: Vec<_> = (0..4u32).map(|i| cos::spawn(move || i).unwrap()).collect();
    for t in tasks.iter().rev() {
        group.add(*t).unwrap();
    }
    assert_eq!(group.len(), 4);
    let order: Vec<Tid> = std::iter::from_fn(|| group.try_join_next().unwrap()).map(|j| j.tid).collect();
    assert_eq!(order, tasks.iter().map(|t| t.tid()).collect::<Vec<_>>());
    assert!(group.is_empty());
    assert!(group.join_next().unwrap().is_none(), "an empty group joins nothing, at once");
    assert_eq!(cos::task_count(), 1);
}

#[test]
fn a_member_joined_by_tid_leaves_the_group_and_non_members_stay_out() {
    let mut group = TaskGroup::new();
    let a = cos::spawn(|| 1u8).unwrap();
    let b = cos::spawn(|| 2u8).unwrap();
    let outsider = cos::spawn(|| 3u8).unwrap();
    group.add(a).unwrap();
    group.add(b).unwrap();
    assert_eq!(cos::join(a), Ok(1));
    assert_eq!(group.len(), 1);
    let j = group.join_next().unwrap().unwrap();
    assert_eq!((j.tid, j.value::<u8>().unwrap()), (b.tid(), 2));
    assert!(group.join_next().unwrap().is_none(), "the outsider is not the group's");
    assert_eq!(cos::join(outsider), Ok(3));
}

#[test]
fn adding_follows_the_join_rules() {
    let mut group = TaskGroup::new();
    assert_eq!(group.add_tid(Tid::SCHEDULER), Err(Error::JoinScheduler));
    assert_eq!(group.add_tid(Tid(999_999)), Err(Error::UnknownTask(Tid(999_999))));
    // A running grandchild (an orphan now) is not the caller's child.
    let parent = cos::spawn(|| {
        cos::spawn(|| loop {
            cos::yield_now()
        })
        .unwrap()
        .tid()
    })
    .unwrap();
    let grandchild = cos::join(parent).unwrap();
    assert_eq!(group.add_tid(grandchild), Err(Error::NotAChild { tid: grandchild, caller: Tid::MAIN }));
    // A finished child not joined yet may join the group; a joined one is gone.
    let done = cos::spawn(|| 4u8).unwrap();
    let joined = cos::spawn(|| 5u8).unwrap();
    assert_eq!(cos::join(joined), Ok(5));
    assert_eq!(group.add(joined), Err(Error::UnknownTask(joined.tid())));
    group.add(done).unwrap();
    assert_eq!(group.join_next().unwrap().unwrap().tid, done.tid());
    assert!(group.is_empty());
}

#[test]
fn only_the_owner_uses_its_group() {
    let mut group = TaskGroup::new();
    let member = cos::spawn(|| 7u8).unwrap();
    group.add(member).unwrap();
    let other = cos::spawn(move || {
        let e = group.join_next().unwrap_err();
        let t = cos::spawn(|| ()).unwrap();
        (e, group.add(t).unwrap_err())
    })
    .unwrap();
    let (join_err, add_err) = cos::join(other).unwrap();
    let owner_err = |caller| Error::NotGroupOwner { owner: Tid::MAIN, caller };
    assert_eq!(join_err, owner_err(other.tid()));
    assert_eq!(add_err, owner_err(other.tid()));
    assert_eq!(cos::join(member), Ok(7), "the member is still the main program's child");
}

static TWICE: cos::RemoteFn<u32, u32> = cos::RemoteFn::new("twice", |x| 2 * x);

#[test]
fn cancelled_members_end_with_cancelled_and_a_stuck_group_is_a_deadlock_naming_its_members() {
    std::thread::spawn(|| {
        let mut group = TaskGroup::new();
        let forever = cos::spawn(|| loop {
            cos::yield_now()
        })
        .unwrap();
        group.add(forever).unwrap();
        assert_eq!(cos::cancel(forever.tid()), Ok(true));
        let j = group.join_next().unwrap().unwrap();
        assert_eq!((j.tid, j.result.unwrap_err()), (forever.tid(), Error::Cancelled(forever.tid())));
        // A member that waits for a slot on a host that does not exist never finishes.
        cos::set_vm(cos::SimVm::new(cos::Registry::new().with(&TWICE), 1, 1)).unwrap();
        let stuck =
            cos::spawn(|| cos::Spawn::new(&TWICE, 1).host(cos::HostId::new("nowhere")).start().map(|_| ()))
                .unwrap();
        group.add(stuck).unwrap();
        match group.join_next() {
            Err(Error::Deadlock(report)) => assert_eq!(
                report.waiting,
                vec![
                    (Tid::MAIN, WaitReason::Join(vec![stuck.tid()])),
                    (stuck.tid(), WaitReason::Slot(Some("nowhere".into()))),
                ]
            ),
            other => panic!("unexpected {other:?}"),
        }
        cos::finalize();
    })
    .join()
    .unwrap();
}
