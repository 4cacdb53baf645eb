//! `ThreadVm`: the embedded default machine, worker threads in this process.

use std::collections::VecDeque;
use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};

use crate::environment::EnvironmentSpec;
use crate::error::Error;
use crate::machines::channel::{ThreadWorker, Up};
use crate::machines::setup::{validated, WorkerSetup};
use crate::machines::slots::Slots;
use crate::machines::spawner_calls::{Answer, Caller, SpawnerCalls};
use crate::machines::wait::{recv_either, Got};
use crate::vm::{
    machine, Event, HostId, LostCause, MachineErrorKind, Registry, RemoteCall, TaskId, VirtualMachine, Wait,
};

/// Worker threads in this process, each with its own cooperative OS, grouped into simulated
/// hosts so that host targeting works as on a cluster. Every job's arguments and every result
/// cross as postcard bytes, exactly as they would between processes.
///
/// ```
/// static DOUBLE: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("double", |x| 2 * x);
/// cos::set_vm(cos::ThreadVm::new(cos::Registry::new().with(&DOUBLE))).unwrap();
/// let r = cos::dispatch((0..10).map(|i| cos::job(&DOUBLE, i))).unwrap();
/// assert_eq!(r[9], Ok(18));
/// cos::finalize();
/// ```
pub struct ThreadVm {
    registry: Registry,
    /// The machine's index and its tasks' environment.
    setup: WorkerSetup,
    slots: Slots,
    /// One worker thread per slot (`None`: it could not be started; the next spawn there tries
    /// again).
    workers: Vec<Option<ThreadWorker>>,
    up_tx: Sender<Up>,
    up_rx: Receiver<Up>,
    /// Runs the workers' calls of [`crate::spawner_call`], and holds what their tasks report
    /// after an asynchronous one until it is answered.
    spawner_calls: SpawnerCalls<Up>,
    /// Events made while answering a spawner call (the reports it held).
    events: VecDeque<Event>,
    /// How long `finalize` waits for busy worker threads before it detaches them.
    finalize_grace: Duration,
}

/// Configures a [`ThreadVm`].
///
/// ```
/// use cos::VirtualMachine;
/// let vm = cos::ThreadVm::builder(cos::Registry::new()).hosts(2).slots_per_host(3).build();
/// assert_eq!(vm.slots(), 7);
/// assert_eq!(vm.hosts().len(), 2);
/// ```
#[derive(Debug)]
pub struct ThreadVmBuilder {
    registry: Registry,
    hosts: usize,
    per_host: usize,
    environment: EnvironmentSpec,
    finalize_grace: Duration,
}

impl ThreadVmBuilder {
    /// The number of simulated hosts (default 1).
    ///
    /// ```
    /// let vm = cos::ThreadVm::builder(cos::Registry::new()).hosts(3).build();
    /// ```
    pub fn hosts(mut self, n: usize) -> Self {
        self.hosts = n.max(1);
        self
    }

    /// Worker threads per host (default: the available cores).
    ///
    /// ```
    /// let vm = cos::ThreadVm::builder(cos::Registry::new()).slots_per_host(1).build();
    /// ```
    pub fn slots_per_host(mut self, n: usize) -> Self {
        self.per_host = n.max(1);
        self
    }

    /// The environment of every remote task (PyOPUS's `startupDir`, `mirrorMap` and
    /// `persistentStorage`): each task gets a storage directory of its own, private even among
    /// the worker threads of this process, prepared before its function runs and removed
    /// after it (see [`crate::prepare`]). Default: none.
    ///
    /// # Errors
    /// [`Error::Storage`] when `spec` does not validate (a destination or startup directory
    /// leaving the task's storage, a source outside the mirrored storage).
    ///
    /// ```
    /// let spec = cos::EnvironmentSpec::new().local_storage(true);
    /// let vm = cos::ThreadVm::builder(cos::Registry::new()).environment(spec).unwrap().build();
    /// ```
    pub fn environment(mut self, spec: EnvironmentSpec) -> Result<Self, Error> {
        self.environment = validated(spec)?;
        Ok(self)
    }

    /// How long [`finalize`](crate::VirtualMachine::finalize) waits for worker threads still
    /// running a job (default 1 s). A thread cannot be stopped from outside: one still busy
    /// after the grace is detached, so that `finalize` (and the end of the spawner's thread or
    /// of `main`, which finalize the machine) never waits for a job that hangs. A detached job
    /// runs on until it returns or the process exits; its result is dropped. Its task has
    /// already ended with [`MachineErrorKind::Finalized`](crate::MachineErrorKind::Finalized).
    ///
    /// ```
    /// let vm = cos::ThreadVm::builder(cos::Registry::new())
    ///     .finalize_grace(std::time::Duration::from_millis(100))
    ///     .build();
    /// ```
    pub fn finalize_grace(mut self, grace: Duration) -> Self {
        self.finalize_grace = grace;
        self
    }

    /// Starts the worker threads.
    ///
    /// ```
    /// let vm = cos::ThreadVm::builder(cos::Registry::new()).build();
    /// ```
    pub fn build(self) -> ThreadVm {
        let (up_tx, up_rx) = unbounded();
        let mut vm = ThreadVm {
            setup: WorkerSetup::new(self.environment),
            spawner_calls: SpawnerCalls::new(&self.registry),
            registry: self.registry,
            slots: Slots::grid(self.hosts, self.per_host),
            workers: Vec::new(),
            up_tx,
            up_rx,
            events: VecDeque::new(),
            finalize_grace: self.finalize_grace,
        };
        vm.workers = (0..vm.slots.len()).map(|slot| vm.start_worker(slot)).collect();
        vm
    }
}

impl ThreadVm {
    /// One host with one worker thread per available core.
    ///
    /// ```
    /// use cos::VirtualMachine;
    /// let vm = cos::ThreadVm::new(cos::Registry::new());
    /// assert!(vm.slots() >= 2);
    /// ```
    pub fn new(registry: Registry) -> Self {
        Self::builder(registry).build()
    }

    /// A builder with the defaults of [`ThreadVm::new`].
    ///
    /// ```
    /// let vm = cos::ThreadVm::builder(cos::Registry::new()).build();
    /// ```
    pub fn builder(registry: Registry) -> ThreadVmBuilder {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        ThreadVmBuilder {
            registry,
            hosts: 1,
            per_host: cores,
            environment: EnvironmentSpec::new(),
            finalize_grace: Duration::from_secs(1),
        }
    }

    fn start_worker(&self, slot: usize) -> Option<ThreadWorker> {
        ThreadWorker::start(
            format!("cos-worker-{}", slot + 1),
            &self.registry,
            &self.setup,
            &self.up_tx,
            true,
            true,
            None,
        )
        .map_err(|e| log::error!(target: "cos", "worker thread {}: {e}", slot + 1))
        .ok()
    }

    /// Replaces the slot's thread with a new one; the old one ends on its own (`join`: wait
    /// for it, it is ending).
    fn replace_worker(&mut self, slot: usize, join: bool) {
        let fresh = self.start_worker(slot);
        if let Some(old) = std::mem::replace(&mut self.workers[slot], fresh) {
            if join {
                old.join();
            } else {
                old.detach();
            }
        }
    }

    /// Handles one report of a worker thread (held while its task waits for a spawner call).
    fn on_up(&mut self, up: Up) -> Option<Event> {
        let task = up.task();
        // A cancelled task's thread runs on detached; what it reports is dropped.
        self.slots.running(task)?;
        let call = matches!(up, Up::SpawnerCall { .. });
        let up = self.spawner_calls.hold(task, up, call)?;
        match up {
            Up::SpawnerCall { task, call, reply } => {
                let slot = self.slots.running(task)?;
                self.spawner_calls.submit(Caller { slot, task }, call, reply);
                None
            }
            Up::Message { task, bytes } => Some(Event::Message { from: task, bytes }),
            Up::Finished { task, result, retire } => {
                let slot = self.slots.end(task)?;
                if retire {
                    // The thread ends after this report: whatever its job's abandoned frames
                    // held stays with it.
                    self.replace_worker(slot, true);
                }
                Some(Event::Finished { task, result })
            }
            Up::Lost { task, why } => {
                let slot = self.slots.end(task)?;
                self.replace_worker(slot, true);
                Some(Event::Lost { task, cause: LostCause::Panicked(why) })
            }
        }
    }

    /// Takes the spawner calls' answers: replies to the callers that wait, and handles what
    /// their tasks reported meanwhile; the next event, if any.
    fn next_event(&mut self) -> Option<Event> {
        while let Some(Answer { caller, reply, result }) = self.spawner_calls.answer() {
            let running = self.slots.running(caller.task) == Some(caller.slot);
            if reply && running && !self.workers[caller.slot].as_ref().is_some_and(|w| w.reply(result)) {
                log::error!(target: "cos", "cannot answer the spawner call of task {}", caller.task);
            }
            for up in self.spawner_calls.release(caller.task) {
                if let Some(e) = self.on_up(up) {
                    self.events.push_back(e);
                }
            }
        }
        self.events.pop_front()
    }
}

impl fmt::Debug for ThreadVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadVm").field("slots", &self.slots).finish()
    }
}

impl VirtualMachine for ThreadVm {
    // The queries every machine answers from its slot core.
    crate::machines::slots::slot_queries!();

    fn spawn_function(&mut self, call: &RemoteCall, targets: Option<&[HostId]>) -> Result<TaskId, Error> {
        let (slot, task) = self.slots.pick(targets)?;
        let host = self.slots.host_of_slot(slot);
        let unsent = match self.workers[slot].as_ref() {
            Some(w) => w.give(task, host, TaskId::SPAWNER, call.clone()),
            None => Some(call.clone()),
        };
        if let Some(call) = unsent {
            // The slot's thread is gone: start a new one and send it there.
            self.replace_worker(slot, false);
            let w = self.workers[slot]
                .as_ref()
                .ok_or_else(|| machine(MachineErrorKind::Io, "cannot start a worker thread"))?;
            if w.give(task, self.slots.host_of_slot(slot), TaskId::SPAWNER, call).is_some() {
                return Err(machine(MachineErrorKind::Protocol, "the worker thread is gone"));
            }
        }
        self.slots.start(slot, task);
        Ok(task)
    }

    fn send_message(&mut self, to: TaskId, bytes: Vec<u8>) -> Result<(), Error> {
        let slot = self.slots.running(to).ok_or_else(|| no_such_task(to))?;
        match self.workers[slot].as_ref() {
            Some(w) if w.message(to, bytes) => Ok(()),
            _ => Err(no_such_task(to)),
        }
    }

    fn receive(&mut self, wait: Wait) -> Result<Option<Event>, Error> {
        let closed = || machine(MachineErrorKind::Protocol, "the result channel closed");
        loop {
            if let Some(e) = self.next_event() {
                return Ok(Some(e));
            }
            let deadline = match wait {
                Wait::Poll => match self.up_rx.try_recv() {
                    Ok(f) => {
                        if let Some(event) = self.on_up(f) {
                            return Ok(Some(event));
                        }
                        continue;
                    }
                    Err(TryRecvError::Empty) => return Ok(None),
                    Err(TryRecvError::Disconnected) => return Err(closed()),
                },
                Wait::Forever => None,
                Wait::Until(deadline) => Some(deadline),
            };
            // A running spawner call's answer wakes the wait too.
            let frame = match recv_either(&self.up_rx, self.spawner_calls.waiting(), deadline) {
                Got::Message(f) => f,
                Got::Other => continue,
                Got::Timeout => return Ok(None),
                Got::Closed => return Err(closed()),
            };
            if let Some(event) = self.on_up(frame) {
                return Ok(Some(event));
            }
        }
    }

    fn finalize(&mut self) {
        for (slot, w) in self.workers.iter_mut().enumerate() {
            if let Some(w) = w {
                w.hang_up();
                // A busy job's programs end now, so that its function returns and its thread
                // can be joined.
                if self.slots.task(slot).is_some() {
                    w.end_programs();
                }
            }
        }
        // Idle threads end at once; busy ones get the grace, then are detached.
        let by = Instant::now() + self.finalize_grace;
        for (slot, w) in self.workers.iter_mut().enumerate() {
            if let Some(w) = w.take() {
                if !w.join_by(by) {
                    log::warn!(target: "cos", "worker thread {} still runs a job after the grace; detached", slot + 1);
                }
            }
        }
        self.slots.end_all();
        self.spawner_calls.stop();
        self.events.clear();
    }

    /// A thread cannot be stopped from outside: the slot gets a new thread at once and the old
    /// one is left to finish its call, whose result is dropped.
    fn cancel(&mut self, task: TaskId) -> Result<(), Error> {
        let slot = self
            .slots
            .end(task)
            .ok_or_else(|| machine(MachineErrorKind::NoSuchTask, format!("no running task {task}")))?;
        self.replace_worker(slot, false);
        // A spawner call it waits for, hung or not, does not hold the calls behind it.
        self.spawner_calls.forget(task);
        Ok(())
    }
}

impl Drop for ThreadVm {
    fn drop(&mut self) {
        self.finalize();
    }
}

/// The error of a message to a task that does not run here.
fn no_such_task(to: TaskId) -> Error {
    machine(MachineErrorKind::NoSuchTask, format!("task {to} does not run on this machine"))
}
