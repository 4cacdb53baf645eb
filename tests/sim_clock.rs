//! `SimVm`'s virtual clock is the scheduler's clock: timed joins and remote time limits on it
//! are deterministic and take no real time, however long they are in virtual time.

use std::time::{Duration, Instant};

use cos::{Error, Registry, RemoteFn, SimVm, Spawn};

/// Its argument is its virtual duration in seconds (see the latency script below).
static TAKES: RemoteFn<u64, u64> = RemoteFn::new("takes", |s| s);

const HOUR: u64 = 3600;

fn sim() -> SimVm {
    // Each task's virtual latency is its argument, in seconds.
    SimVm::new(Registry::new().with(&TAKES), 2, 1)
        .latency(|call, _| postcard::from_bytes::<u64>(&call.args).unwrap() * 1_000_000)
}

/// The machine's clock now.
fn now() -> Instant {
    cos::with_vm(|vm| vm.now()).expect("a machine")
}

#[test]
fn a_timed_join_expires_at_its_virtual_deadline() {
    cos::set_vm(sim()).unwrap();
    let t0 = now();
    let task = cos::spawn_remote(&TAKES, 2 * HOUR).unwrap();
    assert_eq!(cos::join_timeout(&[task.tid()], Duration::from_secs(HOUR)).unwrap_err(), Error::JoinTimeout);
    assert_eq!(now() - t0, Duration::from_secs(HOUR), "the clock stopped at the deadline");
    assert_eq!(cos::join(task), Ok(2 * HOUR));
    assert_eq!(now() - t0, Duration::from_secs(2 * HOUR), "the task ended at its latency");
    cos::finalize();
}

#[test]
fn a_time_limit_cancels_at_its_virtual_deadline_and_frees_the_slot() {
    cos::set_vm(sim()).unwrap();
    let t0 = now();
    let long = Spawn::new(&TAKES, 5 * HOUR).time_limit(Duration::from_secs(HOUR)).start().unwrap();
    let short = Spawn::new(&TAKES, HOUR / 2).time_limit(Duration::from_secs(HOUR)).start().unwrap();
    assert_eq!(cos::join(short.task), Ok(HOUR / 2));
    assert_eq!(now() - t0, Duration::from_secs(HOUR / 2));
    assert_eq!(cos::join(long.task), Err(Error::Timeout));
    assert_eq!(now() - t0, Duration::from_secs(HOUR));
    assert_eq!(cos::free_slots(), Some(2));
    cos::finalize();
}

#[test]
fn a_timed_join_of_a_local_task_follows_the_virtual_clock_too() {
    cos::set_vm(sim()).unwrap();
    let t0 = now();
    // A local task that waits for a long remote task of its own.
    let waiter = cos::spawn(|| cos::join(cos::spawn_remote(&TAKES, 20 * HOUR).unwrap())).unwrap();
    let r = cos::join_timeout(&[waiter.tid()], Duration::from_secs(10 * HOUR));
    assert_eq!(r.unwrap_err(), Error::JoinTimeout);
    assert_eq!(now() - t0, Duration::from_secs(10 * HOUR));
    assert_eq!(cos::join(waiter), Ok(Ok(20 * HOUR)));
    assert_eq!(now() - t0, Duration::from_secs(20 * HOUR));
    cos::finalize();
}
