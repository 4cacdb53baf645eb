//! Asynchronous dispatch of many jobs over the machine's slots (PyOPUS's `dispatch` and
//! `dispatchSingle`).

use std::collections::HashMap;
use std::ops::ControlFlow;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::group::TaskGroup;
use crate::os;
use crate::scheduler::table::FastMap;
use crate::spawn::Spawn;
use crate::task::Tid;
use crate::vm::message::decode;
use crate::vm::{HostId, RemoteCall, RemoteFn};

/// A job for [`dispatch`]: a spawn of a registered function (PyOPUS's `(callable, args)`).
///
/// ```
/// static INC: cos::RemoteFn<u8, u8> = cos::RemoteFn::new("inc", |x| x + 1);
/// let jobs: Vec<cos::Job<u8>> = vec![cos::job(&INC, 1), cos::job(&INC, 2).remote(false)];
/// assert_eq!(cos::dispatch(jobs).unwrap(), vec![Ok(2), Ok(3)]);
/// ```
pub type Job<R> = Spawn<R>;

/// A job calling `f(args)`.
///
/// ```
/// static NEG: cos::RemoteFn<i32, i32> = cos::RemoteFn::new("neg", |x| -x);
/// let results = cos::dispatch((0..3).map(|i| cos::job(&NEG, i))).unwrap();
/// assert_eq!(results, vec![Ok(0), Ok(-1), Ok(-2)]);
/// ```
pub fn job<A, R>(f: &'static RemoteFn<A, R>, args: A) -> Job<R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: DeserializeOwned + 'static,
{
    Spawn::new(f, args)
}

/// One finished job, as the collector sees it.
///
/// ```
/// static INC: cos::RemoteFn<u8, u8> = cos::RemoteFn::new("inc", |x| x + 1);
/// let mut seen = vec![];
/// cos::Dispatch::new((0..2).map(|i| cos::job(&INC, i)))
///     .collector(|c: cos::Collected<'_, u8>| {
///         seen.push((c.index, c.result.clone().unwrap(), c.host.is_none()));
///         std::ops::ControlFlow::Continue(())
///     })
///     .run()
///     .unwrap();
/// assert_eq!(seen, vec![(0, 1, true), (1, 2, true)]);
/// ```
#[derive(Debug)]
pub struct Collected<'a, R> {
    /// The job's index in the job sequence.
    pub index: usize,
    /// The tid of the task that ran it.
    pub tid: Tid,
    /// Its result.
    pub result: &'a Result<R, Error>,
    /// The host it ran on; `None` for a job that ran locally.
    pub host: Option<&'a HostId>,
    /// The job's call: the function's name and its encoded arguments (PyOPUS passes the job
    /// itself); [`Collected::args`] decodes them. `None` when the arguments could not be encoded.
    pub job: Option<&'a RemoteCall>,
}

impl<R> Collected<'_, R> {
    /// The job's arguments, decoded as an `A` (the argument type of its function).
    ///
    /// # Errors
    /// [`Error::Decode`] when they are not an `A`, or when the job has no call.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// static SQ: cos::RemoteFn<u32, u32> = cos::RemoteFn::new("sq", |x| x * x);
    /// let mut pairs = vec![];
    /// cos::Dispatch::new((5..8).map(|i| cos::job(&SQ, i)))
    ///     .collector(|c| {
    ///         pairs.push((c.args::<u32>().unwrap(), *c.result.as_ref().unwrap()));
    ///         ControlFlow::Continue(())
    ///     })
    ///     .run()
    ///     .unwrap();
    /// assert_eq!(pairs, vec![(5, 25), (6, 36), (7, 49)]);
    /// ```
    pub fn args<A: DeserializeOwned>(&self) -> Result<A, Error> {
        let call = self.job.ok_or_else(|| Error::Decode("the job has no encoded arguments".into()))?;
        decode(&call.args)
    }
}

type Collector<'c, R> = Box<dyn FnMut(Collected<'_, R>) -> ControlFlow<()> + 'c>;

/// PyOPUS's `dispatch` with its options: a job sequence (any iterator, endless ones included),
/// an optional collector that sees every finished job and may stop the sequence, and the
/// results in job order.
///
/// It keeps every free slot busy: after each spawn it joins without blocking while slots are
/// free, blocking when none is (PyOPUS's rule: block when there are no more jobs, fewer than 2
/// slots, or no free slot beyond the finished, unjoined jobs). Without a machine the jobs run
/// one after another as local tasks. The running jobs form a [`crate::TaskGroup`], so a join
/// costs the same with ten jobs out as with ten thousand.
///
/// ```
/// use std::ops::ControlFlow;
/// static SQ: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("sq", |x| x * x);
/// let mut sum = 0;
/// // An endless job sequence, stopped by the collector.
/// cos::Dispatch::new((0..).map(|i| cos::job(&SQ, i)))
///     .collector(|c| {
///         sum += c.result.as_ref().unwrap();
///         if c.index == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
///     })
///     .run()
///     .unwrap();
/// assert_eq!(sum, 0 + 1 + 4 + 9);
/// ```
pub struct Dispatch<'c, R, I> {
    jobs: I,
    remote: Option<bool>,
    collector: Option<Collector<'c, R>>,
    build_list: Option<bool>,
    retries: u32,
    host_failure_limit: u32,
    retry_remote_failures: bool,
}

/// A running job: where its result goes, and (with retries) a copy to start again.
/// A job's final outcome, on its way to the collector and the result list.
struct Done<R> {
    index: usize,
    tid: Tid,
    result: Result<R, Error>,
    host: Option<HostId>,
    call: Option<RemoteCall>,
}

struct Running<R> {
    index: usize,
    host: Option<HostId>,
    attempt: u32,
    copy: Option<Spawn<R>>,
    /// The job's call, kept for the collector.
    call: Option<RemoteCall>,
}

/// Which hosts lost their jobs' workers too often in a row (see [`Dispatch::host_failure_limit`]).
#[derive(Default)]
struct HostHealth {
    lost_in_a_row: HashMap<HostId, u32>,
    next: usize,
}

impl HostHealth {
    fn record(&mut self, host: &HostId, lost: bool) {
        let n = self.lost_in_a_row.entry(host.clone()).or_insert(0);
        *n = if lost { n.saturating_add(1) } else { 0 };
    }

    fn out_of_service(&self, host: &HostId, limit: u32) -> bool {
        self.lost_in_a_row.get(host).is_some_and(|&n| n >= limit)
    }

    fn any_out(&self, limit: u32) -> bool {
        self.lost_in_a_row.values().any(|&n| n >= limit)
    }

    /// A host in service other than `avoid` (when there is one), round-robin: among those
    /// with a free slot when there are any, else among all; `None` when every host is out of
    /// service.
    fn pick(&mut self, limit: u32, avoid: Option<&HostId>) -> Option<HostId> {
        let spawner = os::with_vm(|vm| vm.host_id(None)).flatten();
        let worker_hosts = |hs: Vec<HostId>| -> Vec<HostId> {
            // The spawner's own host has no worker slot of its own unless a slot lies there.
            let with_slots = |h: &HostId| {
                Some(h) != spawner.as_ref() || os::with_vm(|vm| vm.slots_on(h)).flatten() != Some(0)
            };
            hs.into_iter().filter(|h| !self.out_of_service(h, limit) && with_slots(h)).collect()
        };
        let other = |hs: Vec<HostId>| -> Vec<HostId> {
            let others: Vec<HostId> = hs.iter().filter(|h| Some(*h) != avoid).cloned().collect();
            if others.is_empty() {
                hs
            } else {
                others
            }
        };
        let free = other(worker_hosts(os::with_vm(|vm| vm.hosts_with_free_slots()).unwrap_or_default()));
        let all = other(worker_hosts(os::hosts()));
        let pool = if free.is_empty() || (avoid.is_some() && free.iter().any(|h| Some(h) == avoid)) {
            all
        } else {
            free
        };
        if pool.is_empty() {
            return None;
        }
        self.next = self.next.wrapping_add(1);
        Some(pool[self.next % pool.len()].clone())
    }
}

/// Whether a job that ended with `e` may run again: its worker was lost or it ran out of time,
/// or (with `remote`) it failed on its worker.
fn retryable(e: &Error, remote: bool) -> bool {
    matches!(e, Error::WorkerLost(_) | Error::Timeout) || (remote && matches!(e, Error::Remote(_)))
}

/// Whether a job that ended with `e` counts against its host.
fn host_failure(e: &Error, remote: bool) -> bool {
    matches!(e, Error::WorkerLost(_)) || (remote && matches!(e, Error::Remote(_)))
}

impl<'c, R, I> Dispatch<'c, R, I>
where
    R: DeserializeOwned + 'static,
    I: Iterator<Item = Job<R>>,
{
    /// A dispatch of `jobs`.
    ///
    /// ```
    /// static ID: cos::RemoteFn<u8, u8> = cos::RemoteFn::new("id", |x| x);
    /// let r = cos::Dispatch::new([cos::job(&ID, 4)]).run().unwrap();
    /// assert_eq!(r, vec![Ok(4)]);
    /// ```
    pub fn new<J: IntoIterator<IntoIter = I>>(jobs: J) -> Self {
        Dispatch {
            jobs: jobs.into_iter(),
            remote: None,
            collector: None,
            build_list: None,
            retries: 0,
            host_failure_limit: 3,
            retry_remote_failures: false,
        }
    }

    /// Runs a job again, up to `n` more times, when its task ended with [`Error::WorkerLost`]
    /// or [`Error::Timeout`] (and [`Error::Remote`] with
    /// [`retry_remote_failures`](Self::retry_remote_failures)) (default 0: no retries). Any
    /// other failure is the job's result at once, and so is the last attempt's failure. A job
    /// not pinned to a host of its own runs again on another host than the one it failed on
    /// when the machine has another host in service. Each job still gives exactly one result
    /// under its own index; the collector sees only that one.
    ///
    /// ```
    /// static ID: cos::RemoteFn<u8, u8> = cos::RemoteFn::new("id", |x| x);
    /// let r = cos::Dispatch::new((0..3).map(|i| cos::job(&ID, i))).retries(2).run().unwrap();
    /// assert_eq!(r, vec![Ok(0), Ok(1), Ok(2)]);
    /// ```
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Takes a host out of service after `k` of its jobs in a row ended with
    /// [`Error::WorkerLost`] (or [`Error::Remote`] with
    /// [`retry_remote_failures`](Self::retry_remote_failures)) (default 3; a job on that host
    /// that ends any other way, a timeout excepted, resets the count). Only counts while [`retries`](Self::retries) is on. While some host is out of
    /// service, every job the dispatch starts (new or retried) that is not pinned to a host of
    /// its own is pinned with [`Spawn::host`] to a host in service, chosen round-robin among
    /// those with a free slot (or among all in service when none is free). A host stays out of
    /// service until the dispatch ends. When every host is out of service, jobs start as they
    /// are and a lost job's failure is its result.
    ///
    /// ```
    /// static ID: cos::RemoteFn<u8, u8> = cos::RemoteFn::new("id", |x| x);
    /// let r = cos::Dispatch::new([cos::job(&ID, 7)]).retries(1).host_failure_limit(2).run();
    /// assert_eq!(r.unwrap(), vec![Ok(7)]);
    /// ```
    pub fn host_failure_limit(mut self, k: u32) -> Self {
        self.host_failure_limit = k.max(1);
        self
    }

    /// Whether a job that failed on its worker ([`Error::Remote`]: it panicked, its function is
    /// missing there, ...) is retried and counts against its host like a lost worker (default
    /// `false`: such a failure is the job's result). For runs where a failure says more about
    /// the node than about the job: a node without the simulator fails every job it gets, and
    /// with this, [`retries`](Self::retries) and
    /// [`host_failure_limit`](Self::host_failure_limit) it is taken out of service while the
    /// run goes on on the other nodes.
    ///
    /// ```
    /// static ID: cos::RemoteFn<u8, u8> = cos::RemoteFn::new("id", |x| x);
    /// let r = cos::Dispatch::new([cos::job(&ID, 7)]).retries(1).retry_remote_failures(true).run();
    /// assert_eq!(r.unwrap(), vec![Ok(7)]);
    /// ```
    pub fn retry_remote_failures(mut self, retry: bool) -> Self {
        self.retry_remote_failures = retry;
        self
    }

    /// Runs every job remotely (`true`) or locally (`false`), whatever the job itself says
    /// (PyOPUS's `remote` argument).
    ///
    /// ```
    /// static ID: cos::RemoteFn<u8, u8> = cos::RemoteFn::new("id", |x| x);
    /// let r = cos::Dispatch::new([cos::job(&ID, 4)]).remote(false).run().unwrap();
    /// assert_eq!(r, vec![Ok(4)]);
    /// ```
    pub fn remote(mut self, remote: bool) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Sends every finished job to `collector`; returning `ControlFlow::Break` stops taking new
    /// jobs (those running are still joined and collected). With a collector the result list is
    /// empty unless [`build_result_list`](Self::build_result_list) asks for it.
    ///
    /// ```
    /// static ID: cos::RemoteFn<u8, u8> = cos::RemoteFn::new("id", |x| x);
    /// let mut seen = vec![];
    /// let r = cos::Dispatch::new((0..3).map(|i| cos::job(&ID, i)))
    ///     .collector(|c| { seen.push(c.index); std::ops::ControlFlow::Continue(()) })
    ///     .run()
    ///     .unwrap();
    /// assert!(r.is_empty());
    /// assert_eq!(seen, vec![0, 1, 2]);
    /// ```
    pub fn collector(mut self, f: impl FnMut(Collected<'_, R>) -> ControlFlow<()> + 'c) -> Self {
        self.collector = Some(Box::new(f));
        self
    }

    /// Whether to return the results in job order (default: only without a collector).
    ///
    /// ```
    /// static ID: cos::RemoteFn<u8, u8> = cos::RemoteFn::new("id", |x| x);
    /// let r = cos::Dispatch::new([cos::job(&ID, 1)])
    ///     .collector(|_| std::ops::ControlFlow::Continue(()))
    ///     .build_result_list(true)
    ///     .run()
    ///     .unwrap();
    /// assert_eq!(r, vec![Ok(1)]);
    /// ```
    pub fn build_result_list(mut self, build: bool) -> Self {
        self.build_list = Some(build);
        self
    }

    /// Runs every job and collects the results.
    ///
    /// # Errors
    /// [`Error::Deadlock`] (or another scheduler error) when joining cannot go on; a job's own
    /// failure is its entry in the list, not an error of the dispatch.
    ///
    /// ```
    /// static ID: cos::RemoteFn<u8, u8> = cos::RemoteFn::new("id", |x| x);
    /// assert_eq!(cos::Dispatch::new(std::iter::empty::<cos::Job<u8>>()).run().unwrap(), vec![]);
    /// ```
    pub fn run(mut self) -> Result<Vec<Result<R, Error>>, Error> {
        let build = self.build_list.unwrap_or(self.collector.is_none());
        let mut results: Vec<Option<Result<R, Error>>> = Vec::new();
        let mut running: FastMap<Tid, Running<R>> = FastMap::default();
        let mut group = TaskGroup::new();
        let mut health = HostHealth::default();
        let mut index = 0usize;
        let mut more = true;
        loop {
            if more {
                match self.jobs.next() {
                    Some(mut job) => {
                        if let Some(r) = self.remote {
                            job = job.remote(r);
                        }
                        let call = if self.collector.is_some() { job.call().cloned() } else { None };
                        if let Err((e, _)) =
                            self.start(job, index, 0, None, &mut health, &mut running, &mut group)
                        {
                            let done = Done { index, tid: Tid::SCHEDULER, result: Err(e), host: None, call };
                            self.deliver(done, build, &mut results, &mut more)
                        }
                        index += 1;
                    }
                    None => more = false,
                }
            }
            if running.is_empty() {
                if more {
                    continue;
                }
                break;
            }
            let block = !more
                || os::slots().is_none_or(|s| s < 2)
                || os::free_slots().unwrap_or(0) <= os::finished_tasks();
            let joined = if block { group.join_next()? } else { group.try_join_next()? };
            if let Some(j) = joined {
                let job = running.remove(&j.tid).expect("dispatched task");
                let mut tid = j.tid;
                let mut result = j.value::<R>();
                let mut host = job.host;
                if let (true, Some(h)) = (self.retries > 0, &host) {
                    if !matches!(result, Err(Error::Timeout)) {
                        let failed = result
                            .as_ref()
                            .err()
                            .is_some_and(|e| host_failure(e, self.retry_remote_failures));
                        health.record(h, failed);
                    }
                }
                if let (Err(e), Some(copy)) = (&result, &job.copy) {
                    if retryable(e, self.retry_remote_failures) && job.attempt < self.retries {
                        log::debug!(
                            target: "cos",
                            "dispatch: job {} lost ({e}), attempt {} of {}",
                            job.index,
                            job.attempt + 2,
                            self.retries + 1
                        );
                        let again = copy.duplicate();
                        match self.start(
                            again,
                            job.index,
                            job.attempt + 1,
                            host.as_ref(),
                            &mut health,
                            &mut running,
                            &mut group,
                        ) {
                            Ok(()) => continue,
                            Err((e, h)) => {
                                result = Err(e);
                                tid = Tid::SCHEDULER;
                                host = h;
                            }
                        }
                    }
                }
                let done = Done { index: job.index, tid, result, host, call: job.call };
                self.deliver(done, build, &mut results, &mut more);
            }
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// Starts attempt `attempt` of job `index`, pinned to a host in service when some host is
    /// out of service or the attempt must avoid the host `avoid` an earlier one failed on, and
    /// records it as running.
    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        mut job: Job<R>,
        index: usize,
        attempt: u32,
        avoid: Option<&HostId>,
        health: &mut HostHealth,
        running: &mut FastMap<Tid, Running<R>>,
        group: &mut TaskGroup,
    ) -> Result<(), (Error, Option<HostId>)> {
        // The copy is taken before pinning, so a retry picks its host afresh.
        let copy = (self.retries > attempt).then(|| job.duplicate());
        let call = if self.collector.is_some() { job.call().cloned() } else { None };
        let mut pinned = None;
        let choose = health.any_out(self.host_failure_limit) || avoid.is_some();
        if self.retries > 0 && job.target().is_none() && choose {
            if let Some(h) = health.pick(self.host_failure_limit, avoid) {
                pinned = Some(h.clone());
                job = job.host(h);
            }
        }
        match job.start() {
            Ok(s) => {
                let tid = s.task.tid();
                log::debug!(target: "cos", "dispatch: job {index} is task {tid}");
                running.insert(tid, Running { index, host: s.host, attempt, copy, call });
                group.add(s.task).map_err(|e| (e, None))
            }
            Err(e) => Err((e, pinned)),
        }
    }

    fn deliver(
        &mut self,
        done: Done<R>,
        build: bool,
        results: &mut Vec<Option<Result<R, Error>>>,
        more: &mut bool,
    ) {
        let Done { index, tid, result, host, call } = done;
        if let Some(c) = self.collector.as_mut() {
            let seen = Collected { index, tid, result: &result, host: host.as_ref(), job: call.as_ref() };
            if c(seen).is_break() {
                *more = false;
            }
        }
        if build {
            if results.len() <= index {
                results.resize_with(index + 1, || None);
            }
            results[index] = Some(result);
        }
    }
}

/// Runs every job and returns the results in job order (PyOPUS's `dispatch(jobList)`).
///
/// # Errors
/// As [`Dispatch::run`].
///
/// ```
/// static DOUBLE: cos::RemoteFn<u32, u32> = cos::RemoteFn::new("double", |x| 2 * x);
/// let r: Vec<u32> = cos::dispatch((0..5).map(|i| cos::job(&DOUBLE, i)))
///     .unwrap()
///     .into_iter()
///     .collect::<Result<_, _>>()
///     .unwrap();
/// assert_eq!(r, vec![0, 2, 4, 6, 8]);
/// ```
pub fn dispatch<R, J>(jobs: J) -> Result<Vec<Result<R, Error>>, Error>
where
    R: DeserializeOwned + 'static,
    J: IntoIterator<Item = Job<R>>,
{
    Dispatch::new(jobs).run()
}

/// Runs one job and waits for its result (PyOPUS's `dispatchSingle`, which joins that very
/// task rather than any child).
///
/// # Errors
/// The job's failure, or a spawn or join error.
///
/// ```
/// static DOUBLE: cos::RemoteFn<u32, u32> = cos::RemoteFn::new("double", |x| 2 * x);
/// assert_eq!(cos::dispatch_single(cos::job(&DOUBLE, 8)).unwrap(), 16);
/// ```
pub fn dispatch_single<R: DeserializeOwned + 'static>(job: Job<R>) -> Result<R, Error> {
    os::join(job.start()?.task)
}
