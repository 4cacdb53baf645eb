//! `MpiVm`: the ranks of an MPI job as workers (PyOPUS's MPI virtual machine).
//!
//! Rank 0 is the spawner and runs the main program; every other rank enters the worker loop in
//! [`MpiVm::init`] and leaves it only when the spawner finalizes the machine.
//!
//! - [`wire`]: tags, frames, and polling MPI (a short spin, then sleeps);
//! - [`worker`]: a worker rank's serving loop and its control thread (cancel, finalize,
//!   heartbeats).
//!
//! Protocol (postcard payloads, byte messages on `MPI_COMM_WORLD`): a worker greets the spawner
//! with its processor name; the spawner sends a job (its task id, host, parent and call) to an
//! idle worker, which serves it with the serving loop every machine's workers use and answers
//! with one [`Up`]; while it runs, the rank sends a heartbeat every interval and the spawner
//! may send it the job's cancel; a quit message (with the finalize grace) ends the worker.
//!
//! A rank cannot be replaced, so a rank whose job overflowed its stack (or broke its worker
//! with a panic outside the function) goes out of service for the rest of the run: it reports
//! the job's end, then only waits for the quit message, and the spawner sends it no more jobs
//! (its slot no longer counts as free). Whatever the job's abandoned frames held stays held in
//! that process, where nothing runs any more. A rank silent past the silence limit while busy
//! goes out of service the same way, its task [`Event::Lost`] with [`LostCause::Silent`].
//!
//! A cancelled task's rank stays busy (out of service) until it reports the cancelled job's
//! end; that report is dropped.

mod wire;
mod worker;

use std::fmt;
use std::time::{Duration, Instant};

use ::mpi::environment::Universe;
use ::mpi::topology::{Communicator, SimpleCommunicator};
use ::mpi::{Rank, Threading};

use crate::environment::EnvironmentSpec;
use crate::error::Error;
use crate::machines::setup::{validated, WorkerSetup};
use crate::machines::slots::Slots;
use crate::vm::message::{decode, encode, JobRef};
use crate::vm::{
    machine, Event, HostId, LostCause, MachineErrorKind, Registry, RemoteCall, RemoteErrorKind,
    RemoteFailure, TaskId, VirtualMachine, Wait,
};
use wire::{
    precise_sleeps, receive, send, try_receive, Up, DEFAULT_SPIN, TAG_CANCEL, TAG_HEARTBEAT, TAG_HELLO,
    TAG_JOB, TAG_MESSAGE_DOWN, TAG_MESSAGE_UP, TAG_QUIT, TAG_RESULT, TAG_SETUP,
};
use worker::{quit_frame, worker_loop};

/// How long the spawner looks for frames once more before it calls a busy rank silent.
const CONFIRM_SILENCE: Duration = Duration::from_millis(20);

/// The waiting settings every rank uses (each from its own builder: the same program sets the
/// same everywhere).
#[derive(Debug, Clone, Copy)]
struct Tuning {
    /// How long a wait spins before it sleeps.
    spin: Duration,
    /// How often a busy worker says it is alive.
    heartbeat: Duration,
}

/// Configures an [`MpiVm`]; [`MpiVmBuilder::init`] initializes MPI. Call it with the same
/// settings on every rank (the same program does).
///
/// ```no_run
/// use std::time::Duration;
/// let vm = cos::MpiVm::builder(cos::Registry::new())
///     .finalize_grace(Duration::from_millis(200))
///     .init()
///     .unwrap();
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "mpi")))]
#[derive(Debug)]
pub struct MpiVmBuilder {
    registry: Registry,
    environment: EnvironmentSpec,
    finalize_grace: Duration,
    tuning: Tuning,
    silence_limit: Duration,
}

impl MpiVmBuilder {
    /// The environment of every remote task (see [`MpiVm::init_with`]).
    ///
    /// ```no_run
    /// let spec = cos::EnvironmentSpec::new().local_storage(true);
    /// let b = cos::MpiVm::builder(cos::Registry::new()).environment(spec);
    /// ```
    pub fn environment(mut self, spec: EnvironmentSpec) -> Self {
        self.environment = spec;
        self
    }

    /// How long [`finalize`](VirtualMachine::finalize) waits for ranks still running a job
    /// (default 1 s). Idle ranks quit at once; a busy rank's job has its process groups ended
    /// and the grace to return; a rank whose job still runs after it finalizes MPI and exits
    /// without it, so that `mpirun` ends.
    ///
    /// ```no_run
    /// let b = cos::MpiVm::builder(cos::Registry::new()).finalize_grace(std::time::Duration::ZERO);
    /// ```
    pub fn finalize_grace(mut self, grace: Duration) -> Self {
        self.finalize_grace = grace;
        self
    }

    /// How long a wait for a message polls MPI without sleeping (default 200 µs), on the
    /// spawner and on the workers: a short job's answer comes within it without a sleep's
    /// delay. Longer waits sleep between polls (20 µs growing to 2 ms), so an idle wait costs
    /// little CPU.
    ///
    /// ```no_run
    /// let b = cos::MpiVm::builder(cos::Registry::new()).spin(std::time::Duration::from_micros(100));
    /// ```
    pub fn spin(mut self, spin: Duration) -> Self {
        self.tuning.spin = spin;
        self
    }

    /// How often a busy worker rank tells the spawner it is alive (default 1 s), and how long
    /// the spawner lets a busy rank stay silent before it reports the rank's task lost with
    /// [`LostCause::Silent`] and takes the rank out of service (default 10 s; at least twice
    /// the heartbeat).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let b = cos::MpiVm::builder(cos::Registry::new())
    ///     .heartbeat(Duration::from_millis(200), Duration::from_secs(2));
    /// ```
    pub fn heartbeat(mut self, every: Duration, silence_limit: Duration) -> Self {
        self.tuning.heartbeat = every.max(Duration::from_millis(1));
        self.silence_limit = silence_limit.max(2 * self.tuning.heartbeat);
        self
    }

    /// Initializes MPI; on rank 0 the spawner's machine, on every other rank the worker loop,
    /// which never returns (see [`MpiVm::init`]).
    ///
    /// # Errors
    /// As [`MpiVm::init_with`].
    ///
    /// ```no_run
    /// let vm = cos::MpiVm::builder(cos::Registry::new()).init().unwrap();
    /// ```
    pub fn init(self) -> Result<MpiVm, Error> {
        MpiVm::start(self)
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
    /// Per slot: the cancelled task whose end the rank has not reported yet (the slot is out
    /// of service until it does).
    draining: Vec<Option<TaskId>>,
    /// Per slot: when the rank was last heard from (a frame, or the start of its job).
    heard: Vec<Instant>,
    /// Per slot: whether its rank went silent while busy (dead, or cut off): nothing is sent
    /// to it any more, not even the finalize (a send to a dead rank may never complete).
    gone: Vec<bool>,
    /// Whether the workers have a control thread (cancel, finalize, heartbeats).
    controlled: bool,
    finalize_grace: Duration,
    /// No busy rank can be silent past the limit before this moment (`None`: none is busy): a
    /// lower bound of every busy rank's `heard + silence_limit`, kept as ranks are heard (which
    /// only moves their moments later) and given jobs.
    silence_check: Option<Instant>,
    tuning: Tuning,
    silence_limit: Duration,
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
        Self::builder(registry).environment(environment).init()
    }

    /// A builder with the defaults of [`MpiVm::init`] (no environment, a finalize grace of 1 s,
    /// a 200 µs spin, a heartbeat every second and a silence limit of 10 s).
    ///
    /// ```no_run
    /// let vm = cos::MpiVm::builder(cos::Registry::new()).init().unwrap();
    /// ```
    pub fn builder(registry: Registry) -> MpiVmBuilder {
        MpiVmBuilder {
            registry,
            environment: EnvironmentSpec::new(),
            finalize_grace: Duration::from_secs(1),
            tuning: Tuning { spin: DEFAULT_SPIN, heartbeat: Duration::from_secs(1) },
            silence_limit: Duration::from_secs(10),
        }
    }

    fn start(b: MpiVmBuilder) -> Result<MpiVm, Error> {
        let (universe, threading) = ::mpi::initialize_with_threading(Threading::Multiple)
            .ok_or_else(|| machine(MachineErrorKind::Refused, "MPI is initialized already"))?;
        // Every rank has the same library, so the spawner knows what the workers have.
        let controlled = threading == Threading::Multiple;
        if !controlled {
            log::warn!(target: "cos", "MPI gives no MPI_THREAD_MULTIPLE: no cancel, heartbeat or bounded finalize");
        }
        let tuning = b.tuning;
        let world = universe.world();
        precise_sleeps();
        let name = ::mpi::environment::processor_name()
            .map_err(|e| machine(MachineErrorKind::Protocol, format!("processor name is not UTF-8: {e}")))?;
        if world.rank() != 0 {
            worker_loop(universe, &b.registry, &name, tuning, controlled);
        }
        let setup = WorkerSetup::new(validated(b.environment)?);
        let size = world.size() as usize;
        let mut names: Vec<Option<HostId>> = vec![None; size];
        names[0] = Some(HostId::new(name));
        let mut missing = size - 1;
        while missing > 0 {
            let Some((bytes, rank, tag)) = receive(&world.any_process(), None, tuning.spin) else { continue };
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
            send(&world, rank, &frame, TAG_SETUP, tuning.spin);
        }
        let names: Vec<HostId> = names.into_iter().flatten().collect();
        log::debug!(target: "cos", "MPI machine: {size} ranks on hosts {names:?}");
        Ok(MpiVm {
            universe: Some(universe),
            slots: Slots::named(&names[1..], names[0].clone()),
            draining: vec![None; size - 1],
            heard: vec![Instant::now(); size - 1],
            gone: vec![false; size - 1],
            controlled,
            finalize_grace: b.finalize_grace,
            tuning,
            silence_check: None,
            silence_limit: b.silence_limit,
        })
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

    /// A result frame from `rank`: the event of the task that runs there; `None` for the late
    /// report of a cancelled task (dropped; the rank is in service again).
    fn on_result(&mut self, rank: Rank, bytes: &[u8]) -> Option<Event> {
        let slot = (rank as usize).checked_sub(1)?;
        let up = decode::<Up>(bytes);
        if let Some(cancelled) = self.draining.get(slot).copied().flatten() {
            // The rank runs nothing else until it has reported the cancelled job.
            if up.as_ref().map_or(true, |up| up.task() == cancelled) {
                self.draining[slot] = None;
                let retire = matches!(up, Ok(Up::Finished { retire: true, .. }) | Ok(Up::Lost { .. }));
                if retire {
                    log::warn!(target: "cos", "rank {rank} is out of service after cancelled task {cancelled}");
                } else {
                    self.slots.restore(slot);
                }
                log::debug!(target: "cos", "the late end of cancelled task {cancelled} dropped");
                return None;
            }
        }
        let Some(task) = self.slots.task(slot) else {
            log::warn!(target: "cos", "result from rank {rank}, which runs no task; dropped");
            return None;
        };
        self.slots.end(task);
        match up {
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

    /// How many cancelled tasks' ends the ranks owe.
    fn owed(&self) -> usize {
        self.draining.iter().filter(|d| d.is_some()).count()
    }

    /// Whether `slot`'s rank owes the spawner a report (it runs a task or a cancelled one).
    fn busy(&self, slot: usize) -> bool {
        self.slots.task(slot).is_some() || self.draining[slot].is_some()
    }

    /// The first busy rank silent past the limit: it goes out of service for good; its task,
    /// if it still had one, is lost.
    fn silent_rank(&mut self, now: Instant) -> Option<Event> {
        let slot = self.silent_slot(now)?;
        let silent = now.saturating_duration_since(self.heard[slot]);
        log::warn!(target: "cos", "rank {} silent for {silent:?} while busy; out of service", slot + 1);
        self.draining[slot] = None;
        self.gone[slot] = true;
        self.slots.retire(slot);
        let task = self.slots.task(slot)?;
        self.slots.end(task);
        Some(Event::Lost { task, cause: LostCause::Silent(silent) })
    }

    /// The first busy slot whose rank has been silent past the limit.
    fn silent_slot(&self, now: Instant) -> Option<usize> {
        if !self.controlled {
            return None;
        }
        (0..self.heard.len())
            .find(|&s| self.busy(s) && now.saturating_duration_since(self.heard[s]) > self.silence_limit)
    }

    /// Whether a busy rank has been silent past the limit. The ranks are looked at only once
    /// the earliest moment one can be ([`MpiVm::silence_check`]) has come, and that moment is
    /// then found again: with a thousand ranks, a job does not read every rank's clock.
    fn silence_due(&mut self, now: Instant) -> bool {
        match self.silence_check {
            Some(at) if now >= at => {
                if self.silent_slot(now).is_some() {
                    return true;
                }
                self.silence_check = self.next_silence_deadline();
                false
            }
            _ => false,
        }
    }

    /// When the next busy rank's silence passes the limit.
    fn next_silence_deadline(&self) -> Option<Instant> {
        if !self.controlled {
            return None;
        }
        (0..self.heard.len()).filter(|&s| self.busy(s)).map(|s| self.heard[s] + self.silence_limit).min()
    }
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
        let frame = encode(&JobRef::new(task, self.slots.host_of_slot(slot), call))?;
        send(&world, task.worker as Rank, &frame, TAG_JOB, self.tuning.spin);
        self.slots.start(slot, task);
        let now = Instant::now();
        self.heard[slot] = now;
        if self.controlled {
            let due = now + self.silence_limit;
            self.silence_check = Some(self.silence_check.map_or(due, |t| t.min(due)));
        }
        log::debug!(target: "cos", "task {task} sent to rank {} on {}", task.worker, self.slots.host_of_slot(slot));
        Ok(task)
    }

    fn send_message(&mut self, to: TaskId, bytes: Vec<u8>) -> Result<(), Error> {
        let world = self.world()?;
        if self.slots.running(to).is_none() {
            return Err(machine(MachineErrorKind::NoSuchTask, format!("task {to} does not run here")));
        }
        send(&world, to.worker as Rank, &encode(&(to, bytes))?, TAG_MESSAGE_DOWN, self.tuning.spin);
        Ok(())
    }

    /// Also comes back without an event when a cancelled task's rank reported its end (its
    /// slot is free again; see [`VirtualMachine::settling`]).
    fn receive(&mut self, wait: Wait) -> Result<Option<Event>, Error> {
        let world = self.world()?;
        let deadline = match wait {
            Wait::Poll => Some(Instant::now()),
            Wait::Until(at) => Some(at),
            Wait::Forever => None,
        };
        loop {
            // A rank's silence counts only once every frame that has come is taken: a spawner
            // that was busy elsewhere for longer than the limit finds the heartbeats waiting.
            let got = match try_receive(&world.any_process()) {
                Some(m) => Some(m),
                None if self.silence_due(Instant::now()) => {
                    // A probe may miss frames that have come but that MPI has not progressed
                    // yet: look again for a moment before calling the rank silent.
                    let got = receive(
                        &world.any_process(),
                        Some(Instant::now() + CONFIRM_SILENCE),
                        self.tuning.spin,
                    );
                    if got.is_none() {
                        if let Some(e) = self.silent_rank(Instant::now()) {
                            return Ok(Some(e));
                        }
                    }
                    got
                }
                None => {
                    let until = match (deadline, self.silence_check) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    let got = receive(&world.any_process(), until, self.tuning.spin);
                    if got.is_none() && deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(None);
                    }
                    got
                }
            };
            let Some((bytes, rank, tag)) = got else { continue };
            if let Some(heard) = (rank as usize).checked_sub(1).and_then(|s| self.heard.get_mut(s)) {
                *heard = Instant::now();
            }
            match tag {
                TAG_MESSAGE_UP => {
                    if let Some(e) = self.on_message(rank, &bytes) {
                        return Ok(Some(e));
                    }
                }
                TAG_RESULT => {
                    let owed = self.owed();
                    if let Some(e) = self.on_result(rank, &bytes) {
                        return Ok(Some(e));
                    }
                    if self.owed() < owed {
                        // A cancelled task's rank came back: the scheduler may serve a spawn.
                        return Ok(None);
                    }
                }
                TAG_HEARTBEAT => {}
                _ => log::warn!(target: "cos", "unexpected message (tag {tag}) from rank {rank} ignored"),
            }
        }
    }

    fn settling(&self) -> bool {
        self.draining.iter().any(Option::is_some)
    }

    /// Tells every worker to quit: idle ranks quit at once; busy ones have their job's process
    /// groups ended and get the finalize grace (see [`MpiVmBuilder::finalize_grace`]), during
    /// which the spawner waits for their reports (dropped); then MPI is finalized. MPI cannot
    /// be initialized again in this process.
    fn finalize(&mut self) {
        let Ok(world) = self.world() else { return };
        let frame = quit_frame(self.finalize_grace);
        for rank in 1..world.size() {
            if !self.gone[rank as usize - 1] {
                send(&world, rank, &frame, TAG_QUIT, self.tuning.spin);
            }
        }
        let busy = (0..self.heard.len()).filter(|&s| self.busy(s)).count();
        if busy > 0 {
            log::debug!(target: "cos", "finalize waits for {busy} busy ranks");
        }
        // Without a control thread, a worker cannot leave its job: wait for it (as before).
        let by = self.controlled.then(|| Instant::now() + self.finalize_grace);
        while (0..self.heard.len()).any(|s| self.busy(s)) {
            if by.is_some_and(|by| Instant::now() >= by) {
                log::warn!(target: "cos", "finalize: ranks still busy after the grace are left to exit on their own");
                break;
            }
            if let Some((bytes, rank, TAG_RESULT)) = receive(&world.any_process(), by, self.tuning.spin) {
                let _ = self.on_result(rank, &bytes);
            }
        }
        self.slots.end_all();
        self.draining.iter_mut().for_each(|d| *d = None);
        drop(world);
        self.universe = None;
        log::debug!(target: "cos", "MPI machine finalized");
    }

    /// Sends the task's rank a cancel: the job's process groups are ended there; the job's
    /// late report is dropped, and the rank takes no job until it has come (a job that ignores
    /// the cancel, such as a loop that never returns, keeps its rank busy).
    fn cancel(&mut self, task: TaskId) -> Result<(), Error> {
        let world = self.world()?;
        let slot = self
            .slots
            .running(task)
            .ok_or_else(|| machine(MachineErrorKind::NoSuchTask, format!("no running task {task}")))?;
        send(&world, task.worker as Rank, &encode(&task)?, TAG_CANCEL, self.tuning.spin);
        self.slots.end(task);
        self.slots.retire(slot);
        self.draining[slot] = Some(task);
        log::debug!(target: "cos", "task {task} cancelled on rank {}", task.worker);
        Ok(())
    }
}

impl Drop for MpiVm {
    fn drop(&mut self) {
        self.finalize();
    }
}
