//! `MpiVm`: the ranks of an MPI job as workers (PyOPUS's MPI virtual machine).
//!
//! Rank 0 is the spawner and runs the main program; every other rank enters the worker loop in
//! [`MpiVm::init`] and leaves it only when the spawner finalizes the machine.
//!
//! OpenMPI's blocking probes and receives spin at full CPU, so both sides wait with
//! non-blocking probes and tests between sleeps that grow by a quarter from 20 µs to 1 ms and
//! start again after every message.
//!
//! Protocol (postcard payloads, byte messages on `MPI_COMM_WORLD`): a worker greets the spawner
//! with its processor name; the spawner sends a job (its task id, host, parent and call) to an idle worker,
//! which serves it with the serving loop every machine's workers use and answers with one
//! [`Up`]; a quit message ends the worker.
//!
//! A rank cannot be replaced, so a rank whose job overflowed its stack (or broke its worker
//! with a panic outside the function) goes out of service for the rest of the run: it reports
//! the job's end, then only waits for the quit message, and the spawner sends it no more jobs
//! (its slot no longer counts as free). Whatever the job's abandoned frames held stays held in
//! that process, where nothing runs any more.

use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use ::mpi::environment::Universe;
use ::mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use ::mpi::topology::{Communicator, SimpleCommunicator};
use ::mpi::{Rank, Tag, Threading};

use serde::{Deserialize, Serialize};

use crate::environment::EnvironmentSpec;
use crate::error::Error;
use crate::spawner_call::{self, SpawnerLink};
use crate::vm::message::{decode, encode, Job};
use crate::vm::setup::{validated, WorkerSetup};
use crate::vm::slots::Slots;
use crate::vm::worker::{serve, End, Report, WorkerLink};
use crate::vm::{
    machine, Event, HostId, LostCause, MachineErrorKind, Registry, RemoteCall, RemoteErrorKind,
    RemoteFailure, TaskId, VirtualMachine, Wait,
};

/// Worker to spawner: the worker's processor name (UTF-8).
const TAG_HELLO: Tag = 11;
/// Spawner to worker: a job (task id, host, parent, call).
const TAG_JOB: Tag = 12;
/// Spawner to worker: leave the loop, finalize MPI and exit.
const TAG_QUIT: Tag = 13;
/// Worker to spawner: the [`Up`] answering the worker's job.
const TAG_RESULT: Tag = 14;
/// Spawner to worker, once after its hello: the machine's [`WorkerSetup`].
const TAG_SETUP: Tag = 15;
/// Worker to spawner: a user message from the running task, `(TaskId, bytes)`.
const TAG_MESSAGE_UP: Tag = 16;
/// Spawner to worker: a user message to a task, `(TaskId, bytes)` (dropped by a rank whose
/// task is no longer that one).
const TAG_MESSAGE_DOWN: Tag = 17;

/// A worker rank's answer to its job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Up {
    /// The job finished; with `retire`, the rank takes no more jobs.
    Finished { task: TaskId, result: Result<Vec<u8>, RemoteFailure>, retire: bool },
    /// The rank's worker broke while it ran the job; it takes no more jobs.
    Lost { task: TaskId, why: String },
}

/// The first sleep between two unsuccessful polls.
const FIRST_WAIT: Duration = Duration::from_micros(20);
/// The longest sleep between two unsuccessful polls.
const LONGEST_WAIT: Duration = Duration::from_millis(1);

/// Makes this thread's short sleeps last as long as asked: Linux lets a sleep overrun by the
/// thread's timer slack (50 µs by default), which would turn the first 20 µs poll interval into
/// about 90 µs on both sides of every job.
fn precise_sleeps() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and changes only this thread's slack.
    let r = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong) };
    if r != 0 {
        log::debug!(target: "cos", "cannot lower the timer slack; polls may sleep longer");
    }
}

/// Sleeps between polls, longer each time up to [`LONGEST_WAIT`].
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(FIRST_WAIT)
    }

    /// Sleeps for the current delay, but not past `deadline`, and makes the delay a quarter
    /// longer (so a message waits at most a quarter of the time already waited, or 1 ms).
    fn wait(&mut self, deadline: Option<Instant>) {
        let mut d = self.0;
        if let Some(end) = deadline {
            d = d.min(end.saturating_duration_since(Instant::now()));
        }
        thread::sleep(d);
        self.0 = (self.0 * 5 / 4).min(LONGEST_WAIT);
    }
}

/// Sends `bytes` to `rank` and waits for the send to complete without spinning (a large
/// message waits until the receiver takes it).
fn send(world: &SimpleCommunicator, rank: Rank, bytes: &[u8], tag: Tag) {
    ::mpi::request::scope(|scope| {
        let mut request = world.process_at_rank(rank).immediate_send_with_tag(scope, bytes, tag);
        let mut backoff = Backoff::new();
        loop {
            match request.test() {
                Ok(_) => return,
                Err(r) => {
                    request = r;
                    backoff.wait(None);
                }
            }
        }
    });
}

/// Receives the next message from `source` (any tag), polling until `deadline` (`None`: no
/// limit). Returns the payload, the sender's rank and the tag.
fn receive<S: Source>(source: &S, deadline: Option<Instant>) -> Option<(Vec<u8>, Rank, Tag)> {
    let mut backoff = Backoff::new();
    loop {
        if let Some(probed) = source.immediate_matched_probe() {
            let (bytes, status) = probed.matched_receive_vec::<u8>();
            return Some((bytes, status.source_rank(), status.tag()));
        }
        if deadline.is_some_and(|end| Instant::now() >= end) {
            return None;
        }
        backoff.wait(deadline);
    }
}

/// The ranks of an MPI job as workers: rank 0 is the spawner, every other rank runs one task at
/// a time. Hosts are the ranks' processor names.
///
/// Start the program with `mpirun`; [`MpiVm::init`] returns only on rank 0, and the other ranks
/// exit when the spawner calls [`crate::finalize`]. Register the same functions on every rank
/// (the program is the same everywhere, so calling `init` with the program's registry does it).
///
/// ```no_run
/// static DOUBLE: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("double", |x| 2 * x);
///
/// fn main() -> Result<(), cos::Error> {
///     // Only rank 0 comes back from init.
///     let vm = cos::MpiVm::init(cos::Registry::new().with(&DOUBLE))?;
///     cos::set_vm(vm)?;
///     let results = cos::dispatch((0..100).map(|i| cos::job(&DOUBLE, i)))?;
///     assert_eq!(results[99], Ok(198));
///     cos::finalize();
///     Ok(())
/// }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "mpi")))]
pub struct MpiVm {
    /// `None` once finalized.
    universe: Option<Universe>,
    /// Rank `s + 1` is slot `s`; hosts are the ranks' processor names.
    slots: Slots,
}

impl MpiVm {
    /// Initializes MPI. On rank 0 it returns the spawner's machine. On every other rank it runs
    /// the worker loop with `registry` and never returns: when the spawner finalizes the
    /// machine, the worker finalizes MPI and exits the process with status 0.
    ///
    /// A worker logs what it does through the `log` crate (target `cos`), so a logger that the
    /// program installs before `init` shows the workers' debug output too.
    ///
    /// # Errors
    /// [`Error::Vm`] when MPI was initialized already, or a rank's processor name cannot be had.
    ///
    /// ```no_run
    /// use cos::VirtualMachine;
    /// let vm = cos::MpiVm::init(cos::Registry::new()).unwrap();
    /// println!("{} slots on hosts {:?}", vm.slots(), vm.hosts());
    /// ```
    pub fn init(registry: Registry) -> Result<MpiVm, Error> {
        Self::init_with(registry, EnvironmentSpec::new())
    }

    /// [`MpiVm::init`] with the environment of every remote task (PyOPUS's `startupDir`,
    /// `mirrorMap` and `persistentStorage`; see
    /// [`ThreadVmBuilder::environment`](crate::ThreadVmBuilder::environment)). Rank 0 validates
    /// `environment` and sends it to every worker rank before any job; the workers ignore
    /// their own argument.
    ///
    /// # Errors
    /// As [`MpiVm::init`]; [`Error::Storage`] on rank 0 when `environment` does not validate
    /// (MPI is not initialized then, and the worker ranks wait for a spawner that never comes:
    /// validate the spec before, as `cos::start_with` does, when that matters).
    ///
    /// ```no_run
    /// let spec = cos::EnvironmentSpec::new().local_storage(true);
    /// let vm = cos::MpiVm::init_with(cos::Registry::new(), spec).unwrap();
    /// ```
    pub fn init_with(registry: Registry, environment: EnvironmentSpec) -> Result<MpiVm, Error> {
        let (universe, _) = ::mpi::initialize_with_threading(Threading::Funneled)
            .ok_or_else(|| machine(MachineErrorKind::Refused, "MPI is initialized already"))?;
        let world = universe.world();
        precise_sleeps();
        let name = ::mpi::environment::processor_name()
            .map_err(|e| machine(MachineErrorKind::Protocol, format!("processor name is not UTF-8: {e}")))?;
        if world.rank() != 0 {
            worker_loop(universe, &registry, &name);
        }
        let setup = WorkerSetup::new(validated(environment)?);
        let size = world.size() as usize;
        let mut names: Vec<Option<HostId>> = vec![None; size];
        names[0] = Some(HostId::new(name));
        let mut missing = size - 1;
        while missing > 0 {
            let Some((bytes, rank, tag)) = receive(&world.any_process(), None) else { continue };
            match (tag, names.get_mut(rank as usize)) {
                (TAG_HELLO, Some(slot @ None)) => {
                    let name = String::from_utf8(bytes).map_err(|e| {
                        machine(
                            MachineErrorKind::Protocol,
                            format!("processor name of rank {rank} is not UTF-8: {e}"),
                        )
                    })?;
                    *slot = Some(HostId::new(name));
                    missing -= 1;
                }
                _ => log::warn!(target: "cos", "unexpected message (tag {tag}) from rank {rank} at start-up"),
            }
        }
        let frame = encode(&setup)?;
        for rank in 1..world.size() {
            send(&world, rank, &frame, TAG_SETUP);
        }
        let names: Vec<HostId> = names.into_iter().flatten().collect();
        log::debug!(target: "cos", "MPI machine: {size} ranks on hosts {names:?}");
        Ok(MpiVm { universe: Some(universe), slots: Slots::named(&names[1..], names[0].clone()) })
    }

    fn world(&self) -> Result<SimpleCommunicator, Error> {
        self.universe
            .as_ref()
            .map(Universe::world)
            .ok_or_else(|| machine(MachineErrorKind::Finalized, "MPI machine finalized"))
    }

    /// A user message from `rank`: the event, when it comes from the task that runs there.
    fn on_message(&mut self, rank: Rank, bytes: &[u8]) -> Option<Event> {
        let running = (rank as usize).checked_sub(1).and_then(|slot| self.slots.task(slot));
        match decode::<(TaskId, Vec<u8>)>(bytes) {
            Ok((from, bytes)) if running == Some(from) => Some(Event::Message { from, bytes }),
            Ok((from, _)) => {
                log::debug!(target: "cos", "a message from task {from}, which does not run, dropped");
                None
            }
            Err(e) => {
                log::error!(target: "cos", "malformed message from rank {rank}: {e}");
                None
            }
        }
    }

    /// A result frame from `rank`: the event of the task that runs there.
    fn on_result(&mut self, rank: Rank, bytes: &[u8]) -> Option<Event> {
        let slot = (rank as usize).checked_sub(1)?;
        let Some(task) = self.slots.task(slot) else {
            log::warn!(target: "cos", "result from rank {rank}, which runs no task; dropped");
            return None;
        };
        self.slots.end(task);
        match decode::<Up>(bytes) {
            Ok(Up::Finished { result, retire, .. }) => {
                if retire {
                    log::warn!(target: "cos", "rank {rank} is out of service after task {task}");
                    self.slots.retire(slot);
                }
                Some(Event::Finished { task, result })
            }
            Ok(Up::Lost { why, .. }) => {
                log::warn!(target: "cos", "rank {rank} is out of service: {why}");
                self.slots.retire(slot);
                Some(Event::Lost { task, cause: LostCause::Panicked(why) })
            }
            Err(e) => Some(Event::Finished {
                task,
                result: Err(RemoteFailure::new(
                    RemoteErrorKind::BadResult,
                    format!("malformed result from rank {rank}: {e}"),
                )),
            }),
        }
    }
}

/// A worker rank's side: jobs from rank 0, answers to it.
struct MpiLink {
    world: SimpleCommunicator,
    rank: Rank,
}

impl WorkerLink for MpiLink {
    fn next_job(&mut self) -> Result<Option<Job>, Error> {
        loop {
            let Some((bytes, _, tag)) = receive(&self.world.process_at_rank(0), None) else { continue };
            match tag {
                TAG_QUIT => return Ok(None),
                TAG_JOB => match decode::<Job>(&bytes) {
                    Ok(job) => {
                        log::debug!(target: "cos", "rank {}: task {} runs {}", self.rank, job.task, job.call.function);
                        return Ok(Some(job));
                    }
                    Err(e) => {
                        log::error!(target: "cos", "rank {}: malformed job: {e}", self.rank);
                        // The spawner knows the task by the rank.
                        let task = TaskId { worker: self.rank as u32, number: 0 };
                        let failure =
                            RemoteFailure::new(RemoteErrorKind::BadArguments, format!("malformed job: {e}"));
                        self.report(Report::Finished { task, result: Err(failure), retire: false })?;
                    }
                },
                TAG_MESSAGE_DOWN => {
                    log::debug!(target: "cos", "rank {}: a message for an ended task dropped", self.rank)
                }
                other => {
                    log::warn!(target: "cos", "rank {}: unexpected message (tag {other}) ignored", self.rank)
                }
            }
        }
    }

    fn report(&mut self, report: Report) -> Result<(), Error> {
        let up = match report {
            Report::Finished { task, result, retire } => Up::Finished { task, result, retire },
            Report::Lost { task, why } => Up::Lost { task, why },
        };
        let frame = encode(&up).or_else(|e| {
            let task = match &up {
                Up::Finished { task, .. } | Up::Lost { task, .. } => *task,
            };
            let failure = RemoteFailure::new(RemoteErrorKind::BadResult, format!("cannot encode: {e}"));
            encode(&Up::Finished { task, result: Err(failure), retire: false })
        })?;
        send(&self.world, 0, &frame, TAG_RESULT);
        Ok(())
    }
}

/// A worker rank's link for its tasks' user messages. Spawner calls are not carried over MPI:
/// they fail with [`MachineErrorKind::Unsupported`].
struct MpiSpawnerLink {
    world: SimpleCommunicator,
}

impl SpawnerLink for MpiSpawnerLink {
    fn call(
        &mut self,
        _task: TaskId,
        call: RemoteCall,
        _wait: bool,
    ) -> Result<Option<Result<Vec<u8>, RemoteFailure>>, Error> {
        Err(machine(
            MachineErrorKind::Unsupported,
            format!("MpiVm carries no spawner calls ({} was called)", call.function),
        ))
    }

    fn send_message(&mut self, task: TaskId, bytes: Vec<u8>) -> Result<(), Error> {
        send(&self.world, 0, &encode(&(task, bytes))?, TAG_MESSAGE_UP);
        Ok(())
    }

    fn receive_message(&mut self, task: TaskId, deadline: Instant) -> Result<Option<Vec<u8>>, Error> {
        let spawner = self.world.process_at_rank(0);
        let mut backoff = Backoff::new();
        loop {
            if let Some(probed) = spawner.immediate_matched_probe_with_tag(TAG_MESSAGE_DOWN) {
                let (bytes, _) = probed.matched_receive_vec::<u8>();
                match decode::<(TaskId, Vec<u8>)>(&bytes) {
                    Ok((to, bytes)) if to == task => return Ok(Some(bytes)),
                    Ok((to, _)) => log::debug!(target: "cos", "a message for ended task {to} dropped"),
                    Err(e) => log::error!(target: "cos", "malformed message from the spawner: {e}"),
                }
                continue;
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            backoff.wait(Some(deadline));
        }
    }
}

/// Greets the spawner, then serves jobs until it says quit; finalizes MPI and exits. A rank
/// that must retire (see the module's documentation) waits for the quit message without
/// serving.
fn worker_loop(universe: Universe, registry: &Registry, name: &str) -> ! {
    let world = universe.world();
    let rank = world.rank();
    log::debug!(target: "cos", "rank {rank} on {name}: worker started");
    send(&world, 0, name.as_bytes(), TAG_HELLO);
    let spawner = world.process_at_rank(0);
    let setup = loop {
        match receive(&spawner, None) {
            Some((bytes, _, TAG_SETUP)) => match decode::<WorkerSetup>(&bytes) {
                Ok(setup) => break Ok(setup),
                Err(e) => break Err(End::Broken(format!("malformed setup: {e}"))),
            },
            Some((_, _, TAG_QUIT)) => break Err(End::HungUp),
            Some((_, _, tag)) => {
                log::warn!(target: "cos", "rank {rank}: unexpected message (tag {tag}) before the setup")
            }
            None => {}
        }
    };
    let _link = spawner_call::install(Box::new(MpiSpawnerLink { world: universe.world() }));
    let served = match setup {
        Ok(setup) => serve(registry, setup, MpiLink { world: universe.world(), rank }),
        Err(end) => end,
    };
    match served {
        End::HungUp => {}
        end => {
            log::warn!(target: "cos", "rank {rank}: out of service ({end:?}); waiting for the end of the run");
            loop {
                if let Some((_, _, TAG_QUIT)) = receive(&spawner, None) {
                    break;
                }
            }
        }
    }
    log::debug!(target: "cos", "rank {rank}: worker quits");
    drop(world);
    drop(universe);
    std::process::exit(0)
}

impl fmt::Debug for MpiVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpiVm")
            .field("ranks", &(self.slots.len() + 1))
            .field("hosts", &self.slots.hosts())
            .field("finalized", &self.universe.is_none())
            .finish()
    }
}

impl VirtualMachine for MpiVm {
    fn slots(&self) -> usize {
        self.slots.len() + 1
    }

    fn free_slots(&self) -> usize {
        if self.universe.is_none() {
            return 0;
        }
        self.slots.free()
    }

    fn hosts(&self) -> Vec<HostId> {
        self.slots.hosts()
    }

    fn hosts_with_free_slots(&self) -> Vec<HostId> {
        if self.universe.is_none() {
            return Vec::new();
        }
        self.slots.hosts_with_free_slots()
    }

    fn host_id(&self, task: Option<TaskId>) -> Option<HostId> {
        self.slots.host_id(task)
    }

    fn slots_on(&self, host: &HostId) -> Option<usize> {
        Some(self.slots.count_on(host))
    }

    fn spawn_function(&mut self, call: &RemoteCall, targets: Option<&[HostId]>) -> Result<TaskId, Error> {
        let world = self.world()?;
        let (slot, task) = self.slots.pick(targets)?;
        let frame = encode(&Job::new(task, self.slots.host_of_slot(slot).clone(), call.clone()))?;
        send(&world, task.worker as Rank, &frame, TAG_JOB);
        self.slots.start(slot, task);
        log::debug!(target: "cos", "task {task} sent to rank {} on {}", task.worker, self.slots.host_of_slot(slot));
        Ok(task)
    }

    fn send_message(&mut self, to: TaskId, bytes: Vec<u8>) -> Result<(), Error> {
        let world = self.world()?;
        if self.slots.running(to).is_none() {
            return Err(machine(MachineErrorKind::NoSuchTask, format!("task {to} does not run here")));
        }
        send(&world, to.worker as Rank, &encode(&(to, bytes))?, TAG_MESSAGE_DOWN);
        Ok(())
    }

    fn receive(&mut self, wait: Wait) -> Result<Option<Event>, Error> {
        let world = self.world()?;
        let deadline = match wait {
            Wait::Poll => Some(Instant::now()),
            Wait::Until(at) => Some(at),
            Wait::Forever => None,
        };
        loop {
            let Some((bytes, rank, tag)) = receive(&world.any_process(), deadline) else { return Ok(None) };
            if tag == TAG_MESSAGE_UP {
                if let Some(e) = self.on_message(rank, &bytes) {
                    return Ok(Some(e));
                }
            } else if tag != TAG_RESULT {
                log::warn!(target: "cos", "unexpected message (tag {tag}) from rank {rank} ignored");
            } else if let Some(e) = self.on_result(rank, &bytes) {
                return Ok(Some(e));
            }
        }
    }

    /// Waits for the tasks that still run (their results are dropped), tells every worker to
    /// quit and finalizes MPI. MPI cannot be initialized again in this process.
    fn finalize(&mut self) {
        let Ok(world) = self.world() else { return };
        let running = self.slots.tasks().count();
        if running > 0 {
            log::debug!(target: "cos", "finalize waits for {running} running tasks");
        }
        while self.slots.tasks().next().is_some() {
            if let Some((bytes, rank, TAG_RESULT)) = receive(&world.any_process(), None) {
                let _ = self.on_result(rank, &bytes);
            }
        }
        for rank in 1..world.size() {
            send(&world, rank, &[], TAG_QUIT);
        }
        drop(world);
        self.universe = None;
        log::debug!(target: "cos", "MPI machine finalized");
    }
}

impl Drop for MpiVm {
    fn drop(&mut self) {
        self.finalize();
    }
}
