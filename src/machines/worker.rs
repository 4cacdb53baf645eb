//! The worker side's serving loop, the same on every machine: take a job, run it guarded, say
//! how it ended.
//!
//! Every machine's worker (a [`crate::ThreadVm`] worker thread, the [`crate::SimVm`] helper
//! thread, a [`crate::ProcessVm`] worker process, an MPI rank) runs [`serve`] over its own
//! [`WorkerLink`], so a remote job behaves the same everywhere:
//!
//! - a panic in the function is the job's [`RemoteErrorKind::Panicked`] failure (the registry
//!   catches it) and the worker serves on;
//! - a stack overflow is the job's [`RemoteErrorKind::StackOverflow`] failure, reported with
//!   `retire`, and the worker ends: the overflowed frames were abandoned, not unwound, so
//!   whatever they held (a lock, a `RefCell` borrow, a thread-local) stays held, and no later
//!   job may run where it could inherit that. The machine replaces the worker (a thread or a
//!   process; an MPI rank goes out of service);
//! - a panic that escapes the registry (a value whose encoding panics) reports the job lost and
//!   ends the worker the same way;
//! - a job whose call has `send_back` off (PyOPUS's `sendBack=False`) reports its end with
//!   empty bytes: the registry drops the function's value without encoding it; a failure is
//!   reported as for any job;
//! - a value whose encoding is over the limit every machine keeps to (`MAX_VALUE`, a little
//!   under 256 MiB) is the job's [`RemoteErrorKind::TooLarge`] failure, not a broken
//!   transport, and the worker serves on;
//! - the spawner calls of [`crate::spawner_call`] go through the link the machine installed;
//! - each job runs in its task environment (`setup::run_job`): prepared before the
//!   function (a failure is the job's [`RemoteErrorKind::Environment`] failure), entered while
//!   it runs, and after it every process group the job started is ended and its storage
//!   removed; the same happens after an overflow, and before the worker returns.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::error::Error;
use crate::identity::RemoteTaskInfo;
use crate::machines::setup::{end_job, run_job, JobEnvironment, WorkerSetup};
use crate::spawner_call;
use crate::vm::message::Job;
use crate::vm::{within_limit, Registry, RemoteErrorKind, RemoteFailure, TaskId};

/// The stack size of the local task a worker serves its jobs in (only the pages a job touches
/// take memory).
pub(crate) const WORKER_TASK_STACK: usize = 8 * 1024 * 1024;

/// How a job ended, for the spawner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    /// The job finished: its value's bytes or its failure. With `retire`, the worker ends after
    /// this report and the machine must not send it another job.
    Finished { task: TaskId, result: Result<Vec<u8>, RemoteFailure>, retire: bool },
    /// The worker broke while it ran the job, and ends.
    Lost { task: TaskId, why: String },
}

/// A worker's side of its machine's transport.
pub(crate) trait WorkerLink {
    /// The next job; `Ok(None)` when the spawner hung up.
    ///
    /// # Errors
    /// When the transport broke.
    fn next_job(&mut self) -> Result<Option<Job>, Error>;
    /// Tells the spawner how a job ended.
    ///
    /// # Errors
    /// When the transport broke.
    fn report(&mut self, report: Report) -> Result<(), Error>;
}

/// Why [`serve`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// The spawner hung up: the worker's work is done.
    HungUp,
    /// A job overflowed its stack or a panic escaped the registry: this worker must not serve
    /// again (the spawner knows, from the report).
    Retired,
    /// The transport broke.
    Broken(String),
}

/// Serves jobs from `link` with the functions of `registry`, each in the environment `setup`
/// describes, until the spawner hangs up, the transport breaks or the worker must retire.
///
/// The jobs run inside one long-lived local task of this thread's OS, on a
/// [`WORKER_TASK_STACK`] stack (so a remote function may spawn and join local tasks of its own,
/// and a runaway recursion hits that task's guard page instead of ending the process).
pub(crate) fn serve<L: WorkerLink + 'static>(registry: &Registry, setup: WorkerSetup, link: L) -> End {
    let end = serve_guarded(registry, setup, link);
    // Whatever a local task of the last job still runs goes with the worker.
    crate::environment::kill_all();
    end
}

fn serve_guarded<L: WorkerLink + 'static>(registry: &Registry, setup: WorkerSetup, link: L) -> End {
    if crate::os::stack_size() < WORKER_TASK_STACK {
        crate::os::set_stack_size(WORKER_TASK_STACK);
    }
    let registry = Rc::new(registry.clone());
    let link = Rc::new(RefCell::new(link));
    let current: Rc<Cell<Option<TaskId>>> = Rc::default();
    let env: Rc<JobEnvironment> = Rc::default();
    let (r, l, c, e) = (Rc::clone(&registry), Rc::clone(&link), Rc::clone(&current), Rc::clone(&env));
    let served = crate::os::spawn(move || serve_jobs(&r, &setup, &l, &c, &e)).and_then(crate::os::join);
    spawner_call::clear_task();
    if let Some(task) = current.get() {
        // The job's frames were abandoned (an overflow) or unwound past the registry.
        end_job(task, &env);
    }
    crate::identity::clear();
    let report = match served {
        Ok(end) => return end,
        Err(Error::StackOverflow(_)) => current.take().map(|task| Report::Finished {
            task,
            result: Err(RemoteFailure::new(RemoteErrorKind::StackOverflow, "")),
            retire: true,
        }),
        Err(Error::Panicked { message, .. }) => {
            current.take().map(|task| Report::Lost { task, why: message })
        }
        Err(e) => return End::Broken(e.to_string()),
    };
    if let Some(report) = report {
        log::debug!(target: "cos", "worker retires after {report:?}");
        if let Ok(mut link) = link.try_borrow_mut() {
            if let Err(e) = link.report(report) {
                return End::Broken(e.to_string());
            }
        }
    }
    End::Retired
}

/// The serving task's loop; notes in `current` the task it runs.
fn serve_jobs(
    registry: &Registry,
    setup: &WorkerSetup,
    link: &RefCell<impl WorkerLink>,
    current: &Cell<Option<TaskId>>,
    env: &JobEnvironment,
) -> End {
    loop {
        let job = link.borrow_mut().next_job();
        let job = match job {
            Ok(Some(job)) => job,
            Ok(None) => return End::HungUp,
            Err(e) => return End::Broken(e.to_string()),
        };
        let task = job.task;
        current.set(Some(task));
        let running = (
            spawner_call::running(task),
            crate::identity::running(RemoteTaskInfo { task, host: job.host, parent: job.parent }),
        );
        let result = run_job(setup, task, env, registry, &job.call)
            .and_then(|bytes| within_limit("the function's value", bytes.len()).map(|()| bytes));
        drop(running);
        current.set(None);
        if let Err(e) = link.borrow_mut().report(Report::Finished { task, result, retire: false }) {
            return End::Broken(e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{HostId, RemoteCall, RemoteFn};

    static DOUBLE: RemoteFn<u32, u32> = RemoteFn::new("double", |x| 2 * x);
    static RUNAWAY: RemoteFn<u64, u64> = RemoteFn::new("runaway", runaway);

    fn runaway(n: u64) -> u64 {
        let pad = std::hint::black_box([n; 64]);
        if n == u64::MAX {
            return 0;
        }
        std::hint::black_box(runaway(n + 1)) + pad[1]
    }

    /// Jobs from a list, reports into a shared list.
    struct ListLink {
        jobs: Vec<Job>,
        reports: Rc<RefCell<Vec<Report>>>,
    }

    impl WorkerLink for ListLink {
        fn next_job(&mut self) -> Result<Option<Job>, Error> {
            Ok(if self.jobs.is_empty() { None } else { Some(self.jobs.remove(0)) })
        }
        fn report(&mut self, report: Report) -> Result<(), Error> {
            self.reports.borrow_mut().push(report);
            Ok(())
        }
    }

    fn job<A: serde::Serialize>(n: u64, f: &str, args: &A) -> Job {
        Job::new(task(n), HostId::new("host0"), RemoteCall::new(f, args).unwrap())
    }

    fn task(n: u64) -> TaskId {
        TaskId { worker: 1, number: n }
    }

    #[test]
    fn jobs_are_served_until_the_spawner_hangs_up() {
        let end = std::thread::spawn(|| {
            let reports = Rc::default();
            let jobs = vec![job(1, "double", &4u32)];
            let link = ListLink { jobs, reports: Rc::clone(&reports) };
            let end = serve(&Registry::new().with(&DOUBLE), WorkerSetup::default(), link);
            let r = reports.borrow().clone();
            (end, r)
        })
        .join()
        .unwrap();
        let eight = crate::vm::message::encode(&8u32).unwrap();
        assert_eq!(
            end,
            (End::HungUp, vec![Report::Finished { task: task(1), result: Ok(eight), retire: false }])
        );
    }

    #[test]
    fn a_job_not_sent_back_reports_empty_bytes() {
        let reports = std::thread::spawn(|| {
            let reports = Rc::default();
            let mut quiet = job(1, "double", &4u32);
            quiet.call.send_back = false;
            let link = ListLink { jobs: vec![quiet], reports: Rc::clone(&reports) };
            serve(&Registry::new().with(&DOUBLE), WorkerSetup::default(), link);
            let r = reports.borrow().clone();
            r
        })
        .join()
        .unwrap();
        assert_eq!(reports, vec![Report::Finished { task: task(1), result: Ok(Vec::new()), retire: false }]);
    }

    #[test]
    fn an_overflow_is_reported_with_retire_and_ends_the_serving() {
        let (end, reports) = std::thread::spawn(|| {
            let reports = Rc::default();
            let jobs = vec![job(1, "runaway", &0u64), job(2, "double", &1u32)];
            let link = ListLink { jobs, reports: Rc::clone(&reports) };
            let end = serve(&Registry::new().with(&DOUBLE).with(&RUNAWAY), WorkerSetup::default(), link);
            let r = reports.borrow().clone();
            (end, r)
        })
        .join()
        .unwrap();
        assert_eq!(end, End::Retired);
        assert_eq!(reports.len(), 1, "the job after the overflow is not served: {reports:?}");
        match &reports[0] {
            Report::Finished { task: t, result: Err(f), retire: true } => {
                assert_eq!((*t, f.kind), (task(1), RemoteErrorKind::StackOverflow));
            }
            other => panic!("{other:?}"),
        }
    }
}
