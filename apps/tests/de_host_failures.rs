//! Asynchronous DE with evaluations that fail where they run (`De::retries`,
//! `De::host_failure_limit`): on a thread machine of two hosts of one worker each, the host whose
//! worker ran the first evaluation cannot evaluate (as a node without the simulator). Its failed
//! evaluations are retried on the other host, it is taken out of service, and the run makes its
//! whole budget; on a machine whose only host fails, every evaluation fails and the run still ends.

use std::sync::OnceLock;
use std::thread::ThreadId;

use cos::{HostId, Registry, RemoteFn, ThreadVm};
use cos_apps::optimize::{rosenbrock, De, Observed};

/// The worker thread that cannot evaluate: the first one to try.
static BROKEN: OnceLock<ThreadId> = OnceLock::new();

static FLAKY: RemoteFn<Vec<f64>, Result<f64, String>> = RemoteFn::new("flaky_rosenbrock", |x| {
    let me = std::thread::current().id();
    if *BROKEN.get_or_init(|| me) == me {
        Err("no simulator on this host".into())
    } else {
        Ok(rosenbrock(&x))
    }
});

/// Every evaluation fails wherever it runs.
static NEVER: RemoteFn<Vec<f64>, Result<f64, String>> =
    RemoteFn::new("never", |_| Err("no simulator anywhere".into()));

#[test]
fn a_failing_host_is_retried_around_and_taken_out_of_service() {
    let vm = ThreadVm::builder(Registry::new().with(&FLAKY)).hosts(2).slots_per_host(1).build();
    cos::set_vm(vm).unwrap();
    let (mut failed_on, mut retried, mut out, mut evaluated_on) = (Vec::new(), 0, Vec::new(), Vec::new());
    let run = De::new(vec![-2.0; 3], vec![2.0; 3])
        .population(8)
        .max_evals(120)
        .retries(2)
        .host_failure_limit(3)
        .run_observed(
            &FLAKY,
            |x| x.to_vec(),
            |o| match o {
                Observed::Failed { host, retried: r, out_of_service, .. } => {
                    let h: HostId = host.cloned().expect("a remote evaluation has a host");
                    if out_of_service {
                        out.push(h.clone());
                    }
                    failed_on.push(h);
                    retried += usize::from(r);
                }
                Observed::Evaluated { host, .. } => evaluated_on.push(host.cloned().unwrap()),
                Observed::Progress(_) => {}
            },
        )
        .unwrap();
    cos::finalize();

    assert_eq!(run.evals, 120, "the whole budget is made");
    assert!(run.best_cost.is_finite());
    let bad = failed_on.first().cloned().expect("the broken host failed some evaluations");
    assert!(failed_on.iter().all(|h| *h == bad), "failures only on the broken host: {failed_on:?}");
    assert_eq!(retried, failed_on.len(), "each failure was retried (the other host evaluates)");
    assert_eq!(out, vec![bad.clone()], "the broken host, and only it, was taken out of service once");
    // The third failure takes the host out of service when the optimizer sees it; the slot it
    // freed may already have gone to a spawn that was waiting for any host, so at most one more
    // evaluation (one per slot of that host) can fail there, and it is retried like the others.
    assert!(
        (3..=4).contains(&failed_on.len()),
        "after 3 failures in a row at most the one evaluation already sent went there: {failed_on:?}"
    );
    assert_eq!(evaluated_on.len(), 120);
    assert!(evaluated_on.iter().all(|h| *h != bad), "nothing was evaluated on the broken host");
}

#[test]
fn when_every_host_fails_each_evaluation_is_counted_failed_and_the_run_ends() {
    let vm = ThreadVm::builder(Registry::new().with(&NEVER)).hosts(1).slots_per_host(2).build();
    cos::set_vm(vm).unwrap();
    let mut last = None;
    let run = De::new(vec![-2.0; 2], vec![2.0; 2])
        .population(5)
        .max_evals(20)
        .retries(1)
        .run_observed(
            &NEVER,
            |x| x.to_vec(),
            |o| {
                if let Observed::Progress(p) = o {
                    last = Some(*p)
                }
            },
        )
        .unwrap();
    cos::finalize();
    assert_eq!(run.evals, 20);
    assert_eq!(run.best_cost, f64::INFINITY);
    let p = last.unwrap();
    assert_eq!((p.evals, p.failed, p.out_of_service), (20, 20, 1));
}
