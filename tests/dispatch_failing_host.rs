//! A node where every job fails (a node without the simulator) does not stop a dispatch: with
//! `retry_remote_failures`, a job that failed on one host runs again on another host, and the
//! failing host is taken out of service; without it, the failure is the job's result and names
//! its host and task. The same body runs on SimVm, ThreadVm and ProcessVm (this program has
//! its own `main`, since ProcessVm's workers run it again).

mod common;

use common::On;
use cos::{Dispatch, Error, HostId, Registry, RemoteErrorKind, RemoteFn};

/// Fails on `host0` (as a run of a missing simulator would), and says where it ran elsewhere.
static NEEDS_A_GOOD_NODE: RemoteFn<u32, (u32, String)> = RemoteFn::new("needs_a_good_node", |x| {
    let host = cos::remote_task().expect("a remote task").host;
    assert!(host.name() != "host0", "cannot run the simulator on {host}");
    (x, host.name().to_string())
});

fn registry() -> Registry {
    Registry::new().with(&NEEDS_A_GOOD_NODE)
}

fn jobs() -> impl Iterator<Item = cos::Job<(u32, String)>> {
    (0..8).map(|i| cos::job(&NEEDS_A_GOOD_NODE, i))
}

fn a_failing_host_is_avoided(m: On) {
    m.set(registry(), 2, 1);
    // Job 0 goes to the lowest free slot, on host0, and fails there.
    let r = Dispatch::new(jobs()).retries(2).host_failure_limit(1).retry_remote_failures(true).run().unwrap();
    let expected: Vec<Result<(u32, String), Error>> = (0..8).map(|i| Ok((i, "host1".to_string()))).collect();
    assert_eq!(r, expected, "every job ran, on the good host");
    // With host0 never out of service, each retry still goes to another host than the one
    // its job failed on (host0 is free again then, and the lowest free slot).
    let r =
        Dispatch::new(jobs()).retries(1).host_failure_limit(100).retry_remote_failures(true).run().unwrap();
    assert_eq!(r, expected, "every retry avoided the host its job failed on");
}

fn without_remote_retries_the_failure_says_where(m: On) {
    m.set(registry(), 2, 1);
    let r = Dispatch::new(jobs()).retries(2).run().unwrap();
    match &r[0] {
        Err(Error::Remote(e)) => {
            assert_eq!(e.kind, RemoteErrorKind::Panicked);
            assert_eq!(e.host, Some(HostId::new("host0")));
            assert_eq!(e.task.map(|t| t.worker), Some(1), "slot 1 is on host0");
        }
        other => panic!("{other:?}"),
    }
    for x in &r {
        match x {
            Ok((_, host)) => assert_eq!(host, "host1"),
            Err(Error::Remote(e)) => assert_eq!(e.host, Some(HostId::new("host0"))),
            other => panic!("{other:?}"),
        }
    }
}

fn main() {
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[
        ("a_failing_host_is_avoided/sim", || a_failing_host_is_avoided(On::Sim)),
        ("a_failing_host_is_avoided/thread", || a_failing_host_is_avoided(On::Thread)),
        ("a_failing_host_is_avoided/process", || a_failing_host_is_avoided(On::Process)),
        ("without_remote_retries_the_failure_says_where/sim", || {
            without_remote_retries_the_failure_says_where(On::Sim)
        }),
        ("without_remote_retries_the_failure_says_where/thread", || {
            without_remote_retries_the_failure_says_where(On::Thread)
        }),
        ("without_remote_retries_the_failure_says_where/process", || {
            without_remote_retries_the_failure_says_where(On::Process)
        }),
    ];
    common::run_checks(checks);
}
