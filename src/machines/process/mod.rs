//! `ProcessVm`: worker processes, each the program itself started again in worker mode.
//!
//! The spawner listens on a Unix socket in a private temporary directory and starts every
//! worker as `current_exe()` with the same arguments and two environment variables naming the
//! socket and the worker's slot. [`crate::start`], the first call of `main`, sees them and turns
//! the process into a worker: it connects, says hello, and serves jobs until the spawner hangs
//! up. The workers' own stdout and stderr stay the user's.
//!
//! - `launch.rs`: the socket, the accepting thread, starting a worker process;
//! - `frame.rs`: the frame codec and the frames' message kinds;
//! - `worker.rs`: the worker process's side;
//! - this file: the spawner's machine.

mod auth;
pub(crate) mod frame;
mod launch;
mod outbound;
mod spin;
mod watch;
mod worker;

use std::collections::VecDeque;
use std::fmt;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, TryRecvError};

use crate::environment::EnvironmentSpec;
use crate::error::Error;
use crate::machines::setup::{validated, WorkerSetup};
use crate::machines::slots::Slots;
use crate::machines::spawner_calls::{Answer, Caller, SpawnerCalls};
use crate::vm::failure::too_large;
use crate::vm::message::{encode, Job};
use crate::vm::{
    io_error, machine, Event, HostId, LostCause, MachineErrorKind, Registry, RemoteCall, TaskId,
    VirtualMachine, Wait,
};
use frame::{Down, Hello, Up, MAX_FRAME};

// A value within the limit every machine keeps to fits in a frame with its envelope.
const _: () = assert!(crate::vm::MAX_VALUE < MAX_FRAME);
use launch::{listen, Acceptor, Launcher};
use outbound::WriteFailure;
use spin::{AdaptiveSpin, SOCKET_SPIN};
use watch::{wait_ready, Bounds, Link, Taken};
pub(crate) use worker::{is_worker_process, worker_main};

/// How often the spawner looks at workers that have not connected yet.
const START_CHECK: Duration = Duration::from_millis(50);
/// How often a spawner that waits for its workers looks at a running spawner call anyway: the
/// call's runner wakes the wait on the sockets when it answers (a byte on the wake-up socket),
/// so this only bounds the wait should that byte not come.
const CALL_LOOK: Duration = Duration::from_millis(50);
/// The default wait before a slot's worker is started again after its first failed start; it
/// doubles with each failure in a row, up to [`BACK_OFF_CAP`], and starts over once a worker
/// served (see [`ProcessVmBuilder::start_back_off`]).
const BACK_OFF: Duration = Duration::from_millis(10);
/// The default longest wait between two starts of a slot's worker.
const BACK_OFF_CAP: Duration = Duration::from_secs(5);
/// The default number of failed starts in a row that takes a slot out of service for good
/// (see [`ProcessVmBuilder::max_failed_starts`]).
const MAX_FAILED_STARTS: u32 = 8;

/// How a slot's worker that fails to start is started again.
#[derive(Clone, Copy, Debug)]
struct Restarts {
    /// The wait after the first failed start in a row.
    first: Duration,
    /// The longest wait.
    cap: Duration,
    /// The failed starts in a row after which the slot is out of service for good.
    max_failures: u32,
}

impl Restarts {
    /// The wait before the next start of a worker whose `failures` last starts failed in a row.
    fn back_off(&self, failures: u32) -> Duration {
        self.first.saturating_mul(1 << failures.min(16)).min(self.cap)
    }
}

/// What the accepting thread and the workers' links tell the machine.
pub(crate) enum Inbound {
    /// A new connection said hello.
    Connected { hello: Hello, stream: UnixStream },
    /// A frame from a worker.
    Frame { slot: usize, generation: u64, up: Up },
    /// A worker is gone: its process ended or its connection did (`cause` `None`: the exit
    /// status tells why), it sent what is not a frame, or it went silent.
    Closed { slot: usize, generation: u64, cause: Option<LostCause> },
}

/// Worker processes that run registered functions: the same executable started again, one
/// process per slot, grouped into simulated hosts as in [`crate::ThreadVm`]. Every job, result
/// and message crosses a Unix socket as postcard bytes; the workers print to the user's stdout
/// and stderr.
///
/// A worker that dies (a panic that escapes the registry, an abort, an exit, a signal) ends its
/// running task with [`Event::Lost`] (so the joiner gets [`Error::WorkerLost`]); its slot gets
/// a new process and every other task runs on. A new process is started without waiting for
/// it: its slot counts as free at once, and a job sent to it meanwhile waits in the spawner
/// until it connects (or is lost, if it never does). A process that ends before it connects
/// leaves its slot down (not free) and is started again after a back-off of 10 ms, doubling
/// with each failed start in a row up to 5 s; the slot is free again once a worker connects.
/// After 8 failed starts in a row the slot is out of service for good (see
/// [`ProcessVmBuilder::max_failed_starts`]).
///
/// A worker process is watched, not only its socket: its end loses its task at once, with its
/// exit status, even while a process it forked keeps the socket open; and a worker that stops
/// sending heartbeats, or leaves a frame unfinished, is lost as [`LostCause::Silent`] and
/// replaced (see [`ProcessVmBuilder::heartbeat`]).
///
/// The program must call [`crate::start`] (or create this machine only after it) first thing
/// in `main`: that call is what makes a started copy of the program a worker.
///
/// ```no_run
/// static DOUBLE: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("double", |x| 2 * x);
///
/// fn main() -> Result<(), cos::Error> {
///     let registry = cos::Registry::new().with(&DOUBLE);
///     cos::start(registry.clone())?; // a worker process never returns from here
///     cos::set_vm(cos::ProcessVm::builder(registry).slots_per_host(2).build()?)?;
///     let r = cos::dispatch((0..10).map(|i| cos::job(&DOUBLE, i)))?;
///     assert_eq!(r[9], Ok(18));
///     cos::finalize();
///     Ok(())
/// }
/// ```
pub struct ProcessVm {
    /// The machine's index and its tasks' environment, sent to every worker after its hello.
    setup: WorkerSetup,
    slots: Slots,
    launcher: Launcher,
    dir: PathBuf,
    connect_timeout: Duration,
    /// How long a worker may stay silent or take to send a frame.
    bounds: Bounds,
    /// How a worker that fails to start is started again.
    restarts: Restarts,
    acceptor: Option<Acceptor>,
    workers: Vec<SlotWorker>,
    /// The accepting thread's connections.
    inbound: Receiver<Inbound>,
    /// Readable when the accepting thread passed a connection on (non-blocking).
    wake: UnixStream,
    /// The slot whose link is looked at first for the next frame, so that every worker's
    /// frames are taken in turn.
    next_slot: usize,
    /// Whether the next wait spins (not while answers have stopped coming within the spin).
    spin: AdaptiveSpin,
    /// Events made while doing something else (a worker that died before it connected).
    events: VecDeque<Event>,
    /// When the starting processes were last looked at.
    checked: Instant,
    /// Runs the workers' calls of [`crate::spawner_call`], and holds what their tasks report
    /// after an asynchronous one until it is answered.
    spawner_calls: SpawnerCalls<Inbound>,
    finalized: bool,
}

/// A slot's worker process.
struct SlotWorker {
    state: State,
    /// Counts the slot's processes; frames of an earlier one are stale.
    generation: u64,
    /// How many starts failed in a row (the worker ended or gave up before its hello); reset
    /// when a worker of the slot finishes a job. While it is not 0 the slot is down: not free
    /// until a worker connects.
    failures: u32,
}

enum State {
    /// Started, not connected yet; a job sent to it meanwhile waits here.
    Starting { child: Child, since: Instant, job: Option<Vec<u8>> },
    /// Connected.
    Ready(Proc),
    /// Its last start failed: it is started again at `until` (the slot is down meanwhile).
    Waiting { until: Instant },
    /// No process: the machine is being built or finalized, or the slot's worker failed to
    /// start too many times in a row and the slot is out of service for good.
    Down,
}

struct Proc {
    child: Child,
    /// Its connection, read by the machine's own thread.
    link: Link,
}

impl Proc {
    /// Hangs up, kills the process when asked and reaps it.
    fn stop(mut self, kill: bool) -> Option<ExitStatus> {
        let _ = self.link.stream().shutdown(Shutdown::Both);
        if kill {
            let _ = self.child.kill();
        }
        self.child.wait().ok()
    }
}

/// Configures a [`ProcessVm`].
///
/// ```no_run
/// let vm = cos::ProcessVm::builder(cos::Registry::new()).hosts(2).slots_per_host(2).build();
/// ```
#[derive(Debug)]
pub struct ProcessVmBuilder {
    registry: Registry,
    hosts: usize,
    per_host: usize,
    connect_timeout: Duration,
    bounds: Bounds,
    restarts: Restarts,
    environment: EnvironmentSpec,
}

impl ProcessVmBuilder {
    /// The number of simulated hosts (default 1).
    ///
    /// ```
    /// let b = cos::ProcessVm::builder(cos::Registry::new()).hosts(2);
    /// ```
    pub fn hosts(mut self, n: usize) -> Self {
        self.hosts = n.max(1);
        self
    }

    /// Worker processes per host (default: the available cores).
    ///
    /// ```
    /// let b = cos::ProcessVm::builder(cos::Registry::new()).slots_per_host(3);
    /// ```
    pub fn slots_per_host(mut self, n: usize) -> Self {
        self.per_host = n.max(1);
        self
    }

    /// How long a started worker may take to connect (default 60 s).
    ///
    /// ```
    /// let b = cos::ProcessVm::builder(cos::Registry::new())
    ///     .connect_timeout(std::time::Duration::from_secs(5));
    /// ```
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How a worker that stopped, hangs outside its job or is cut off is told from a slow job
    /// (defaults: every 1 s, 10 missed). Every worker process sends a heartbeat frame every
    /// `interval`, from a thread of its own, whatever its job does; when nothing comes from a
    /// worker for `interval * missed`, its task ends with [`Event::Lost`] (the joiner gets
    /// [`Error::WorkerLost`] with [`LostCause::Silent`]), the process is killed and a new one
    /// takes its slot. A slow job whose worker keeps sending heartbeats is never stopped:
    /// bound it with [`crate::Spawn::time_limit`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = cos::ProcessVm::builder(cos::Registry::new()).heartbeat(Duration::from_millis(200), 5);
    /// ```
    pub fn heartbeat(mut self, interval: Duration, missed: u32) -> Self {
        self.bounds.heartbeat = interval.max(Duration::from_millis(1));
        self.bounds.missed = missed.max(1);
        self
    }

    /// How long a frame from a worker may take from its first byte to its last (default 30 s):
    /// a worker that sent part of a frame and stopped is lost as [`LostCause::Silent`] then,
    /// even while its heartbeats would still be due. It bounds the spawner's writes as well:
    /// a worker that takes nothing of a frame (a job, a message, a spawner call's answer) for
    /// this long is lost the same way and killed, so that a worker that stopped reading does
    /// not block the spawner (a worker reads a message only when its job receives it).
    ///
    /// ```
    /// let b = cos::ProcessVm::builder(cos::Registry::new())
    ///     .frame_timeout(std::time::Duration::from_secs(10));
    /// ```
    pub fn frame_timeout(mut self, d: Duration) -> Self {
        self.bounds.frame = d;
        self
    }

    /// How a slot's worker that ends before it connects (or does not connect within the
    /// [`connect_timeout`](Self::connect_timeout)) is started again (defaults: 10 ms, 5 s):
    /// after `first` following its first failed start in a row, the wait doubling with each
    /// further one up to `cap`. The slot is down (not free) meanwhile; the count starts over
    /// once a worker of the slot has finished a job. `first` is at least 1 ms and `cap` at
    /// least `first`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = cos::ProcessVm::builder(cos::Registry::new())
    ///     .start_back_off(Duration::from_millis(50), Duration::from_secs(1));
    /// ```
    pub fn start_back_off(mut self, first: Duration, cap: Duration) -> Self {
        self.restarts.first = first.max(Duration::from_millis(1));
        self.restarts.cap = cap.max(self.restarts.first);
        self
    }

    /// How many starts of a slot's worker may fail in a row (default 8, at least 1): past
    /// that the slot is out of service for good, with a warning that names the slot and the
    /// last failure. The job that waited for the failed worker ends with
    /// [`Error::WorkerLost`] of cause [`LostCause::Start`]; once every slot is out of
    /// service, a blocking remote spawn ends with [`Error::Deadlock`] and a non-blocking one
    /// with [`Error::NoFreeSlot`] (a remote spawn never runs in the spawner).
    ///
    /// ```
    /// let b = cos::ProcessVm::builder(cos::Registry::new()).max_failed_starts(3);
    /// ```
    pub fn max_failed_starts(mut self, n: u32) -> Self {
        self.restarts.max_failures = n.max(1);
        self
    }

    /// The environment of every remote task (PyOPUS's `startupDir`, `mirrorMap` and
    /// `persistentStorage`), sent to each worker process when it connects: each task gets a
    /// storage directory of its own on its worker's host, prepared before its function runs
    /// and removed after it (see [`crate::prepare`]). Default: none.
    ///
    /// # Errors
    /// [`Error::Storage`] when `spec` does not validate.
    ///
    /// ```
    /// let spec = cos::EnvironmentSpec::new().persistent(true);
    /// let b = cos::ProcessVm::builder(cos::Registry::new()).environment(spec).unwrap();
    /// ```
    pub fn environment(mut self, spec: EnvironmentSpec) -> Result<Self, Error> {
        self.environment = validated(spec)?;
        Ok(self)
    }

    /// Creates the socket, starts the worker processes and waits until each has connected.
    ///
    /// # Errors
    /// [`Error::Vm`] when this process is itself a worker ([`MachineErrorKind::Refused`]),
    /// when the executable or the socket cannot be had ([`MachineErrorKind::Io`], with the
    /// `io::Error` as its source), or when a worker does not start and connect
    /// ([`MachineErrorKind::Protocol`]; for example because the program does not call
    /// [`crate::start`] first).
    ///
    /// ```no_run
    /// let vm = cos::ProcessVm::builder(cos::Registry::new()).build().unwrap();
    /// ```
    pub fn build(self) -> Result<ProcessVm, Error> {
        if is_worker_process() {
            return Err(machine(
                MachineErrorKind::Refused,
                "a worker process cannot start workers (call cos::start first thing in main)",
            ));
        }
        let program = std::env::current_exe().map_err(|e| io_error("cannot find this program", e))?;
        let (dir, socket, listener) = listen()?;
        let secret = auth::Secret::new().map_err(|e| io_error("cannot make the run's secret", e))?;
        let (inbound_tx, inbound) = unbounded();
        let (wake_tx, wake) = UnixStream::pair().map_err(|e| io_error("cannot make a wake-up socket", e))?;
        wake.set_nonblocking(true).map_err(|e| io_error("cannot make a wake-up socket", e))?;
        let call_wake = wake_tx.try_clone().map_err(|e| io_error("cannot make a wake-up socket", e))?;
        call_wake.set_nonblocking(true).map_err(|e| io_error("cannot make a wake-up socket", e))?;
        let acceptor = Acceptor::start(listener, inbound_tx, wake_tx, secret)?;
        let slots = Slots::grid(self.hosts, self.per_host);
        let n = slots.len();
        let mut spawner_calls = SpawnerCalls::new(&self.registry);
        // A byte that cannot be written finds one there already: the wait wakes either way.
        spawner_calls.set_wake(std::sync::Arc::new(move || drop((&call_wake).write(&[1]))));
        let mut vm = ProcessVm {
            spawner_calls,
            slots,
            launcher: Launcher::start(
                program,
                std::env::args_os().skip(1).collect(),
                socket,
                &secret,
                self.bounds.heartbeat,
            )?,
            setup: WorkerSetup::new(self.environment),
            dir,
            connect_timeout: self.connect_timeout,
            bounds: self.bounds,
            restarts: self.restarts,
            acceptor: Some(acceptor),
            workers: (0..n).map(|_| SlotWorker { state: State::Down, generation: 0, failures: 0 }).collect(),
            inbound,
            wake,
            next_slot: 0,
            spin: AdaptiveSpin::default(),
            events: VecDeque::new(),
            checked: Instant::now(),
            finalized: false,
        };
        for slot in 0..n {
            let child = vm.launcher.launch(slot)?;
            vm.workers[slot].state = State::Starting { child, since: Instant::now(), job: None };
        }
        // Wait until every worker has connected or failed to.
        while vm.workers.iter().any(|w| matches!(w.state, State::Starting { .. })) {
            match vm.inbound.recv_timeout(START_CHECK) {
                Ok(inbound) => {
                    let _ = vm.on_inbound(inbound);
                }
                Err(_) => vm.check_starting(),
            }
        }
        if let Some(slot) = vm.workers.iter().position(|w| !matches!(w.state, State::Ready(_))) {
            return Err(machine(
                MachineErrorKind::Protocol,
                format!("worker process {} did not start and connect", slot + 1),
            ));
        }
        log::debug!(target: "cos", "{n} worker processes connected on {}", vm.launcher.socket.display());
        Ok(vm)
    }
}

impl ProcessVm {
    /// One host with one worker process per available core.
    ///
    /// # Errors
    /// As [`ProcessVmBuilder::build`].
    ///
    /// ```no_run
    /// use cos::VirtualMachine;
    /// let vm = cos::ProcessVm::new(cos::Registry::new()).unwrap();
    /// assert!(vm.slots() >= 2);
    /// ```
    pub fn new(registry: Registry) -> Result<Self, Error> {
        Self::builder(registry).build()
    }

    /// A builder with the defaults of [`ProcessVm::new`].
    ///
    /// ```
    /// let b = cos::ProcessVm::builder(cos::Registry::new());
    /// ```
    pub fn builder(registry: Registry) -> ProcessVmBuilder {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        ProcessVmBuilder {
            registry,
            hosts: 1,
            per_host: cores,
            connect_timeout: Duration::from_secs(60),
            bounds: Bounds::default(),
            restarts: Restarts { first: BACK_OFF, cap: BACK_OFF_CAP, max_failures: MAX_FAILED_STARTS },
            environment: EnvironmentSpec::new(),
        }
    }

    /// Puts a connected process in its slot, its connection read by the machine, and sends it
    /// the job that waited for it.
    fn on_connected(&mut self, hello: Hello, stream: UnixStream) {
        let slot = (hello.slot as usize).wrapping_sub(1);
        let expected = match self.workers.get(slot).map(|w| &w.state) {
            Some(State::Starting { child, .. }) => child.id() == hello.pid,
            _ => false,
        };
        if !expected {
            log::warn!(target: "cos", "unexpected worker connection from process {}", hello.pid);
            return;
        }
        let State::Starting { child, job, .. } =
            std::mem::replace(&mut self.workers[slot].state, State::Down)
        else {
            unreachable!("checked above")
        };
        let mut link = Link::new(stream, watch::pidfd(child.id()));
        // The spawner's writes to the worker are bounded as its frames are (see `deliver`).
        let setup = encode(&Down::Setup(self.setup.clone())).and_then(|f| {
            link.write(&f, self.bounds.frame).map_err(|e| match e {
                WriteFailure::Failed(e) => e,
                WriteFailure::Stalled(bound) => {
                    machine(MachineErrorKind::Io, format!("it took nothing of its setup for {bound:?}"))
                }
            })
        });
        let proc = Proc { child, link };
        if let Err(e) = setup {
            proc.stop(true);
            let cause = LostCause::Connection(format!("cannot set up worker process {}: {e}", slot + 1));
            if let Some(ev) = self.lose(slot, Some(cause)) {
                self.events.push_back(ev);
            }
            return;
        }
        self.workers[slot].state = State::Ready(proc);
        log::debug!(target: "cos", "worker process {} connected", slot + 1);
        if self.workers[slot].failures > 0 {
            log::info!(target: "cos", "worker process {} is back after {} failed starts", slot + 1, self.workers[slot].failures);
            self.slots.set_in_service(slot, true);
        }
        if let Some(job) = job {
            self.send(slot, job);
        }
    }

    /// Looks at the processes that have not connected: one that ended, or took longer than
    /// the connect timeout, is killed, its job is lost and its slot is down until it is
    /// started again after its back-off (see [`ProcessVm::fail_start`]).
    fn check_starting(&mut self) {
        self.checked = Instant::now();
        for slot in 0..self.workers.len() {
            let State::Starting { child, since, .. } = &mut self.workers[slot].state else { continue };
            let why = match child.try_wait() {
                Ok(Some(status)) => format!("worker process {} ended before connecting ({status})", slot + 1),
                Ok(None) if since.elapsed() >= self.connect_timeout => {
                    format!("worker process {} did not connect in time", slot + 1)
                }
                Ok(None) => continue,
                Err(e) => format!("worker process {}: {e}", slot + 1),
            };
            self.stop(slot);
            if let Some(task) = self.slots.task(slot) {
                self.slots.end(task);
                self.events.push_back(Event::Lost { task, cause: LostCause::Start(why.clone()) });
            }
            self.fail_start(slot, &why);
        }
    }

    /// A start of the slot's worker failed: the slot is down (not free) and its worker is
    /// started again after a back-off that doubles with each failure in a row, so that a
    /// program that cannot start costs a start every few seconds, not a busy loop; past the
    /// limit of failed starts in a row the slot is out of service for good.
    fn fail_start(&mut self, slot: usize, why: &str) {
        let restarts = self.restarts;
        let w = &mut self.workers[slot];
        let wait = restarts.back_off(w.failures);
        w.failures = w.failures.saturating_add(1);
        self.slots.set_in_service(slot, false);
        if w.failures >= restarts.max_failures {
            w.state = State::Down;
            log::warn!(
                target: "cos",
                "slot {} out of service for good: its worker failed to start {} times in a row, last: {why}",
                slot + 1,
                w.failures
            );
            return;
        }
        w.state = State::Waiting { until: Instant::now() + wait };
        log::error!(target: "cos", "{why}; slot {} down, started again in {wait:?}", slot + 1);
    }

    /// Starts the workers whose back-off has passed.
    fn restart_due(&mut self) {
        let now = Instant::now();
        for slot in 0..self.workers.len() {
            if matches!(self.workers[slot].state, State::Waiting { until } if until <= now) {
                self.restart(slot);
            }
        }
    }

    /// When the next start of a down slot's worker is due.
    fn next_restart(&self) -> Option<Instant> {
        self.workers
            .iter()
            .filter_map(|w| match w.state {
                State::Waiting { until } => Some(until),
                _ => None,
            })
            .min()
    }

    /// Starts a new process in `slot` without waiting for it to connect; on failure the slot
    /// is down and tried again later.
    fn restart(&mut self, slot: usize) {
        match self.launcher.launch(slot) {
            Ok(child) => {
                self.workers[slot].state = State::Starting { child, since: Instant::now(), job: None };
                log::debug!(target: "cos", "worker process {} restarting", slot + 1);
            }
            Err(e) => self.fail_start(slot, &format!("cannot start worker process {}: {e}", slot + 1)),
        }
    }

    /// Kills and reaps the slot's process; what is left of it is stale from now on.
    fn stop(&mut self, slot: usize) -> (Option<u32>, Option<ExitStatus>) {
        let w = &mut self.workers[slot];
        w.generation += 1;
        match std::mem::replace(&mut w.state, State::Down) {
            State::Ready(p) => (Some(p.child.id()), p.stop(true)),
            State::Starting { mut child, .. } => {
                let _ = child.kill();
                (Some(child.id()), child.wait().ok())
            }
            State::Waiting { .. } | State::Down => (None, None),
        }
    }

    /// The slot's process is gone or broken: reap it, start a new one, and end its task.
    /// `cause` `None`: the process's exit status says why.
    fn lose(&mut self, slot: usize, cause: Option<LostCause>) -> Option<Event> {
        let (pid, status) = self.stop(slot);
        let task = self.slots.task(slot);
        let cause = cause.unwrap_or_else(|| match status {
            Some(s) => match (s.signal(), s.code()) {
                (Some(signal), _) => LostCause::Signal(signal),
                (None, Some(code)) => LostCause::Exit(code),
                (None, None) => LostCause::Other(s.to_string()),
            },
            None => LostCause::Other("the process could not be reaped".into()),
        });
        let pid = pid.map_or_else(String::new, |p| format!(" (process {p})"));
        match task {
            Some(t) => log::warn!(target: "cos", "task {t} lost: worker process {}{pid}: {cause}", slot + 1),
            None => log::warn!(target: "cos", "idle worker process {}{pid} lost: {cause}", slot + 1),
        }
        if !self.finalized {
            self.restart(slot);
        }
        let task = task?;
        self.slots.end(task);
        self.spawner_calls.forget(task);
        Some(Event::Lost { task, cause })
    }

    /// The slot's worker took nothing of a frame for `bound`: it stopped reading (a process it
    /// forked may keep the socket open), so it is lost as [`LostCause::Silent`] and killed; its
    /// task's loss goes to `events`.
    fn stalled(&mut self, slot: usize, bound: Duration) {
        log::warn!(target: "cos", "worker process {} took nothing of a frame for {bound:?}", slot + 1);
        if let Some(ev) = self.lose(slot, Some(LostCause::Silent(bound))) {
            self.events.push_back(ev);
        }
    }

    /// Writes a frame to the slot's connected worker. A worker that takes nothing of it for
    /// the frame timeout is lost (see [`ProcessVm::stalled`]).
    fn deliver(&mut self, slot: usize, frame: &[u8]) -> Result<(), Error> {
        let State::Ready(p) = &mut self.workers[slot].state else {
            return Err(machine(MachineErrorKind::Protocol, "the worker is not connected"));
        };
        match p.link.write(frame, self.bounds.frame) {
            Ok(()) => Ok(()),
            Err(WriteFailure::Failed(e)) => Err(e),
            Err(WriteFailure::Stalled(bound)) => {
                self.stalled(slot, bound);
                Err(machine(
                    MachineErrorKind::Io,
                    format!("worker process {} took nothing of a frame for {bound:?}", slot + 1),
                ))
            }
        }
    }

    /// Sends a job frame to the slot's process, or keeps it for a process that is starting. A
    /// process that cannot be written to is replaced and the job waits for the new one; one
    /// that takes nothing of it for the frame timeout is lost with the job.
    fn send(&mut self, slot: usize, job: Vec<u8>) {
        let failed = match &mut self.workers[slot].state {
            State::Ready(p) => match p.link.write(&job, self.bounds.frame) {
                Ok(()) => None,
                Err(WriteFailure::Failed(e)) => Some(e),
                Err(WriteFailure::Stalled(bound)) => {
                    self.stalled(slot, bound);
                    return;
                }
            },
            State::Starting { job: waiting, .. } => {
                *waiting = Some(job);
                return;
            }
            State::Waiting { .. } | State::Down => {
                log::error!(target: "cos", "job for worker process {}, which is out of service", slot + 1);
                return;
            }
        };
        if let Some(e) = failed {
            log::debug!(target: "cos", "worker process {} cannot take its job ({e}); replacing it", slot + 1);
            self.stop(slot);
            self.restart(slot);
            if let State::Starting { job: waiting, .. } = &mut self.workers[slot].state {
                *waiting = Some(job);
            } else if let Some(task) = self.slots.task(slot) {
                self.slots.end(task);
                let cause = LostCause::Start(format!("worker process {}: {e}", slot + 1));
                self.events.push_back(Event::Lost { task, cause });
            }
        }
    }

    /// Takes the spawner calls' answers: writes each caller that waits its reply, and handles
    /// what their tasks reported meanwhile (the events go to `events`).
    fn take_spawner_answers(&mut self) {
        while let Some(Answer { caller: Caller { slot, task }, reply, result }) = self.spawner_calls.answer()
        {
            if reply && self.slots.task(slot) == Some(task) {
                let sent = encode(&Down::SpawnerReply(result)).and_then(|f| self.deliver(slot, &f));
                if let Err(e) = sent {
                    // The link reports the loss of the process, if that is what happened.
                    log::error!(target: "cos", "cannot answer the spawner call of task {task}: {e}");
                }
            }
            for inbound in self.spawner_calls.release(task) {
                if let Some(e) = self.on_inbound(inbound) {
                    self.events.push_back(e);
                }
            }
        }
    }

    /// The next frame (or end) read from a worker's socket, the workers taken in turn.
    fn take_read(&mut self) -> Option<Inbound> {
        let n = self.workers.len();
        for k in 0..n {
            let slot = (self.next_slot + k) % n;
            let w = &mut self.workers[slot];
            let State::Ready(p) = &mut w.state else { continue };
            let Some(taken) = p.link.take() else { continue };
            self.next_slot = (slot + 1) % n;
            let generation = w.generation;
            return Some(match taken {
                Taken::Frame(up) => Inbound::Frame { slot, generation, up },
                Taken::Closed(cause) => Inbound::Closed { slot, generation, cause },
            });
        }
        None
    }

    /// Waits until a worker's socket or its process, or the accepting thread, has something,
    /// or `until` passes (`None`: without end), spinning first when `spin` and the recent
    /// answers came within the spin; reads what came and judges the workers' silence (see
    /// [`wait_ready`]).
    fn wait_io(&mut self, until: Option<Instant>, spin: bool) {
        let spin_for = if spin { self.spin.spin(SOCKET_SPIN) } else { Duration::ZERO };
        let mut links: Vec<&mut Link> = self
            .workers
            .iter_mut()
            .filter_map(|w| match &mut w.state {
                State::Ready(p) => Some(&mut p.link),
                _ => None,
            })
            .collect();
        let woke = wait_ready(&mut links, &[self.wake.as_raw_fd()], until, spin_for, &self.bounds);
        if spin {
            self.spin.record(!woke.blocked);
        }
        if woke.wake {
            // The connections themselves come on the channel.
            let mut drain = [0u8; 64];
            while matches!((&self.wake).read(&mut drain), Ok(n) if n > 0) {}
        }
    }

    /// Handles one message from the accepting thread or a worker's link; the event for the
    /// scheduler, if any.
    fn on_inbound(&mut self, inbound: Inbound) -> Option<Event> {
        match inbound {
            Inbound::Connected { hello, stream } => {
                self.on_connected(hello, stream);
                self.events.pop_front()
            }
            Inbound::Frame { slot, generation, up } => {
                if generation != self.workers[slot].generation {
                    return None;
                }
                // What a task reports after an asynchronous spawner call waits for its answer.
                let (task, call) = match &up {
                    Up::SpawnerCall { task, .. } => (*task, true),
                    Up::Message { task, .. } | Up::Finished { task, .. } | Up::Lost { task, .. } => {
                        (*task, false)
                    }
                    // The link takes heartbeats; none is passed on.
                    Up::Heartbeat => return None,
                };
                let Inbound::Frame { up, .. } =
                    self.spawner_calls.hold(task, Inbound::Frame { slot, generation, up }, call)?
                else {
                    return None;
                };
                match up {
                    Up::SpawnerCall { task, call, reply } => {
                        if self.slots.task(slot) == Some(task) {
                            self.spawner_calls.submit(Caller { slot, task }, call, reply);
                        } else {
                            log::debug!(target: "cos", "spawner call of task {task}, which does not run, dropped");
                        }
                        None
                    }
                    Up::Message { task, bytes } => {
                        (self.slots.task(slot) == Some(task)).then_some(Event::Message { from: task, bytes })
                    }
                    Up::Finished { task, result, retire } => {
                        if self.slots.task(slot) != Some(task) {
                            log::warn!(target: "cos", "result for task {task}, which does not run, dropped");
                            return None;
                        }
                        self.slots.end(task);
                        self.workers[slot].failures = 0;
                        if retire {
                            // The process exits: what the job's abandoned frames held goes with it.
                            log::debug!(target: "cos", "worker process {} retires after task {task}", slot + 1);
                            self.stop(slot);
                            self.restart(slot);
                        }
                        Some(Event::Finished { task, result })
                    }
                    Up::Lost { why, .. } => self.lose(slot, Some(LostCause::Panicked(why))),
                    // The link takes heartbeats; none is passed on.
                    Up::Heartbeat => None,
                }
            }
            Inbound::Closed { slot, generation, cause } => {
                if generation != self.workers[slot].generation {
                    return None;
                }
                if let Some(task) = self.slots.task(slot) {
                    let held =
                        self.spawner_calls.hold(task, Inbound::Closed { slot, generation, cause }, false)?;
                    let Inbound::Closed { cause, .. } = held else { return None };
                    log::debug!(target: "cos", "worker process {} ended ({cause:?})", slot + 1);
                    return self.lose(slot, cause);
                }
                log::debug!(target: "cos", "worker process {} ended ({cause:?})", slot + 1);
                self.lose(slot, cause)
            }
        }
    }
}

impl fmt::Debug for ProcessVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessVm")
            .field("slots", &self.slots)
            .field("down", &self.slots.down())
            .field("socket", &self.launcher.socket)
            .finish()
    }
}

impl VirtualMachine for ProcessVm {
    // The queries every machine answers from its slot core.
    crate::machines::slots::slot_queries!();

    /// The next start of a down slot's worker, or the next look at one that is starting after
    /// a failed start.
    fn slot_return(&self) -> Option<Instant> {
        let starting =
            self.workers.iter().any(|w| w.failures > 0 && matches!(w.state, State::Starting { .. }));
        let look = starting.then(|| self.checked + START_CHECK);
        self.next_restart().into_iter().chain(look).min()
    }

    fn spawn_function(&mut self, call: &RemoteCall, targets: Option<&[HostId]>) -> Result<TaskId, Error> {
        let (slot, task) = self.slots.pick(targets)?;
        let job = Job::new(task, self.slots.host_of_slot(slot).clone(), call.clone());
        let job = encode(&Down::Run(job))?;
        if job.len() > MAX_FRAME {
            // Refused before any worker sees it: no healthy worker is replaced for it.
            let host = self.slots.host_of_slot(slot).clone();
            return Err(Error::Remote(too_large("the job", job.len()).at(None, Some(host))));
        }
        self.slots.start(slot, task);
        self.send(slot, job);
        Ok(task)
    }

    fn send_message(&mut self, to: TaskId, bytes: Vec<u8>) -> Result<(), Error> {
        let no_such_task = || machine(MachineErrorKind::NoSuchTask, format!("task {to} does not run here"));
        let slot = self.slots.running(to).ok_or_else(no_such_task)?;
        let frame = encode(&Down::Message { to, bytes })?;
        if frame.len() > MAX_FRAME {
            return Err(Error::Remote(too_large("a message", frame.len()).at(Some(to), None)));
        }
        if !matches!(self.workers[slot].state, State::Ready(_)) {
            return Err(no_such_task());
        }
        // A write that fails: the link reports the loss of the process; one that stalls: the
        // worker is lost here.
        self.deliver(slot, &frame)
    }

    fn receive(&mut self, wait: Wait) -> Result<Option<Event>, Error> {
        let closed = || machine(MachineErrorKind::Protocol, "the event channel closed");
        // Whether the sockets were looked at in this call.
        let mut looked = false;
        loop {
            self.take_spawner_answers();
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            self.restart_due();
            let inbound = match self.inbound.try_recv() {
                Ok(i) => Some(i),
                Err(TryRecvError::Empty) => self.take_read(),
                Err(TryRecvError::Disconnected) => return Err(closed()),
            };
            if let Some(i) = inbound {
                if let Some(e) = self.on_inbound(i) {
                    return Ok(Some(e));
                }
                continue;
            }
            // Processes that are starting are looked at now and then, never waited for.
            let starting = self.workers.iter().any(|w| matches!(w.state, State::Starting { .. }));
            let check = starting.then(|| self.checked + START_CHECK);
            let now = Instant::now();
            if check.is_some_and(|c| now >= c) {
                self.check_starting();
                continue;
            }
            let until = match wait {
                Wait::Poll if looked => return Ok(None),
                Wait::Until(at) if looked && now >= at => return Ok(None),
                Wait::Poll => Some(now),
                Wait::Until(at) => Some(at),
                Wait::Forever => None,
            };
            let silent = self.workers.iter().filter_map(|w| match &w.state {
                State::Ready(p) => p.link.deadline(&self.bounds),
                _ => None,
            });
            // A running spawner call's runner wakes the wait when it answers; CALL_LOOK bounds it.
            let call = self.spawner_calls.waiting().map(|_| now + CALL_LOOK);
            let until =
                until.into_iter().chain(check).chain(self.next_restart()).chain(silent).chain(call).min();
            self.wait_io(until, wait != Wait::Poll);
            looked = true;
        }
    }

    /// Kills the task's worker process and starts a new one in its slot.
    fn cancel(&mut self, task: TaskId) -> Result<(), Error> {
        let slot = self
            .slots
            .running(task)
            .ok_or_else(|| machine(MachineErrorKind::NoSuchTask, format!("no running task {task}")))?;
        self.slots.end(task);
        // A spawner call it waits for, hung or not, does not hold the calls behind it.
        self.spawner_calls.forget(task);
        let (pid, _) = self.stop(slot);
        log::debug!(target: "cos", "worker process {pid:?} killed to cancel task {task}");
        if !self.finalized {
            self.restart(slot);
        }
        Ok(())
    }

    fn finalize(&mut self) {
        if self.finalized {
            return;
        }
        self.finalized = true;
        // Hang up on every worker first, so that they quit together; busy ones are killed.
        for (slot, w) in self.workers.iter_mut().enumerate() {
            match &mut w.state {
                State::Ready(p) => {
                    let _ = p.link.stream().shutdown(Shutdown::Both);
                    if self.slots.task(slot).is_some() {
                        let _ = p.child.kill();
                    }
                }
                State::Starting { child, .. } => {
                    let _ = child.kill();
                }
                State::Waiting { .. } | State::Down => {}
            }
        }
        for w in &mut self.workers {
            w.generation += 1;
            match std::mem::replace(&mut w.state, State::Down) {
                State::Ready(p) => {
                    p.stop(false);
                }
                State::Starting { mut child, .. } => {
                    let _ = child.wait();
                }
                State::Waiting { .. } | State::Down => {}
            }
        }
        self.slots.end_all();
        if let Some(a) = self.acceptor.take() {
            a.stop(&self.launcher.socket);
        }
        let _ = std::fs::remove_file(&self.launcher.socket);
        let _ = std::fs::remove_dir(&self.dir);
        self.spawner_calls.stop();
        self.events.clear();
    }
}

impl Drop for ProcessVm {
    fn drop(&mut self) {
        self.finalize();
    }
}
