//! `SimVm`: a deterministic machine for tests, with virtual time.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};

use crate::environment::EnvironmentSpec;
use crate::error::Error;
use crate::machines::channel::{ThreadWorker, Up};
use crate::machines::setup::{validated, WorkerSetup};
use crate::machines::slots::Slots;
use crate::machines::spawner_calls::SpawnerCalls;
use crate::vm::message::{decode, Job};
use crate::vm::{
    machine, Event, HostId, LostCause, MachineErrorKind, Registry, RemoteCall, TaskId, VirtualMachine, Wait,
};

/// One event of a [`SimVm`] run, in virtual time (microseconds).
///
/// ```
/// static ONE: cos::RemoteFn<(), u8> = cos::RemoteFn::new("one", |()| 1);
/// let vm = cos::SimVm::new(cos::Registry::new().with(&ONE), 1, 1);
/// let trace = vm.trace();
/// cos::set_vm(vm).unwrap();
/// cos::dispatch_single(cos::job(&ONE, ())).unwrap();
/// assert!(matches!(trace.events()[0], cos::SimEvent::Spawn { at: 0, .. }));
/// assert!(matches!(trace.events()[1], cos::SimEvent::Done { .. }));
/// cos::finalize();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEvent {
    /// A task started on a host.
    Spawn {
        /// Virtual time.
        at: u64,
        /// The task.
        task: TaskId,
        /// Its host.
        host: HostId,
        /// The function called.
        function: String,
    },
    /// A task's end was delivered (or it was cancelled).
    Done {
        /// Virtual time.
        at: u64,
        /// The task.
        task: TaskId,
    },
}

/// The events of a [`SimVm`] run, readable while the machine belongs to the scheduler.
///
/// ```
/// let vm = cos::SimVm::new(cos::Registry::new(), 1, 1);
/// let trace: cos::SimTrace = vm.trace();
/// assert!(trace.events().is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct SimTrace(Arc<Mutex<Vec<SimEvent>>>);

impl SimTrace {
    /// The events so far.
    ///
    /// ```
    /// let vm = cos::SimVm::new(cos::Registry::new(), 1, 1);
    /// assert!(vm.trace().events().is_empty());
    /// ```
    pub fn events(&self) -> Vec<SimEvent> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn push(&self, e: SimEvent) {
        if let Ok(mut v) = self.0.lock() {
            v.push(e);
        }
    }
}

type Latency = Box<dyn FnMut(&RemoteCall, u64) -> u64 + Send>;

/// A deterministic machine: remote tasks run to completion when spawned (on a helper thread,
/// one at a time, served by the same worker loop as every machine's workers), and their ends
/// come back in the order of a virtual clock. Each task takes a virtual latency drawn from a
/// seeded generator (or given by a script), so the same seed gives the same order of
/// completions, the same trace and the same program run: asynchronous algorithms can be
/// unit-tested reproducibly.
///
/// The virtual clock is the machine's [`VirtualMachine::now`]: the scheduler's deadlines
/// ([`crate::join_timeout`], [`crate::Spawn::time_limit`]) follow it, so they are deterministic
/// too. It advances only when the scheduler waits for the machine (to the next task's end, or
/// to the deadline it waits until), never by itself.
///
/// ```
/// static SQ: cos::RemoteFn<u32, u32> = cos::RemoteFn::new("sq", |x| x * x);
/// let vm = cos::SimVm::new(cos::Registry::new().with(&SQ), 2, 1).seed(7);
/// let trace = vm.trace();
/// cos::set_vm(vm).unwrap();
/// let r = cos::dispatch((0..4).map(|i| cos::job(&SQ, i))).unwrap();
/// assert_eq!(r, vec![Ok(0), Ok(1), Ok(4), Ok(9)]);
/// assert_eq!(trace.events().len(), 8);
/// cos::finalize();
/// ```
pub struct SimVm {
    registry: Registry,
    /// The machine's index and its tasks' environment.
    setup: WorkerSetup,
    /// The helper thread that runs the calls, and its report channel.
    worker: Option<(ThreadWorker, Receiver<Vec<u8>>)>,
    /// Runs the calls' spawner calls, each to its end before the call goes on (nothing is held:
    /// a job runs to its end inside `spawn`).
    spawner_calls: SpawnerCalls<()>,
    slots: Slots,
    /// The real instant of virtual time 0.
    epoch: Instant,
    /// Virtual time, in microseconds.
    now: u64,
    rng: u64,
    latency: Option<Latency>,
    /// Ends of running tasks by (virtual time, task number).
    pending: BTreeMap<(u64, u64), Event>,
    /// User messages the tasks sent while they ran (at their spawn), delivered first.
    messages: std::collections::VecDeque<Event>,
    trace: SimTrace,
}

impl SimVm {
    /// A machine with `hosts` hosts of `slots_per_host` worker slots each, running the
    /// functions of `registry`; seed 0.
    ///
    /// ```
    /// use cos::VirtualMachine;
    /// let vm = cos::SimVm::new(cos::Registry::new(), 2, 3);
    /// assert_eq!(vm.slots(), 7);
    /// ```
    pub fn new(registry: Registry, hosts: usize, slots_per_host: usize) -> Self {
        SimVm {
            spawner_calls: SpawnerCalls::new(&registry),
            registry,
            setup: WorkerSetup::new(EnvironmentSpec::new()),
            worker: None,
            slots: Slots::grid(hosts, slots_per_host),
            epoch: Instant::now(),
            now: 0,
            rng: 0x853c_49e6_748f_ea9b,
            latency: None,
            pending: BTreeMap::new(),
            messages: std::collections::VecDeque::new(),
            trace: SimTrace::default(),
        }
    }

    /// Seeds the latency generator (latencies are uniform in 1..=1000 virtual microseconds).
    ///
    /// ```
    /// let vm = cos::SimVm::new(cos::Registry::new(), 1, 1).seed(42);
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = seed ^ 0x853c_49e6_748f_ea9b;
        self
    }

    /// Scripts the latencies: `f(call, task number)` gives each task's virtual duration in
    /// microseconds.
    ///
    /// ```
    /// // Later tasks finish first.
    /// let vm = cos::SimVm::new(cos::Registry::new(), 2, 1).latency(|_, n| 100 - n);
    /// ```
    pub fn latency(mut self, f: impl FnMut(&RemoteCall, u64) -> u64 + Send + 'static) -> Self {
        self.latency = Some(Box::new(f));
        self
    }

    /// The environment of every remote task (see
    /// [`ThreadVmBuilder::environment`](crate::ThreadVmBuilder::environment)): the tasks run on
    /// a helper thread of this process, each in a storage directory of its own.
    ///
    /// # Errors
    /// [`Error::Storage`] when `spec` does not validate.
    ///
    /// ```
    /// let spec = cos::EnvironmentSpec::new().local_storage(true);
    /// let vm = cos::SimVm::new(cos::Registry::new(), 1, 2).environment(spec).unwrap();
    /// ```
    pub fn environment(mut self, spec: EnvironmentSpec) -> Result<Self, Error> {
        self.stop_worker();
        self.setup.environment = validated(spec)?;
        Ok(self)
    }

    /// A handle on the machine's event trace.
    ///
    /// ```
    /// let vm = cos::SimVm::new(cos::Registry::new(), 1, 1);
    /// let t = vm.trace();
    /// assert!(t.events().is_empty());
    /// ```
    pub fn trace(&self) -> SimTrace {
        self.trace.clone()
    }

    /// Virtual time, in microseconds since the machine was made.
    ///
    /// ```
    /// let vm = cos::SimVm::new(cos::Registry::new(), 1, 1);
    /// assert_eq!(vm.virtual_micros(), 0);
    /// ```
    pub fn virtual_micros(&self) -> u64 {
        self.now
    }

    fn next_latency(&mut self, call: &RemoteCall, n: u64) -> u64 {
        if let Some(f) = self.latency.as_mut() {
            return f(call, n).max(1);
        }
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        1 + (z ^ (z >> 31)) % 1000
    }

    /// The virtual time of a real instant, rounded up (so the clock reaches the instant).
    fn micros_at(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos.div_ceil(1000)).unwrap_or(u64::MAX)
    }

    /// Runs `call` as `task` on the helper thread, answering its spawner calls, and returns how
    /// it ended.
    fn run(&mut self, task: TaskId, host: HostId, call: &RemoteCall) -> Result<Event, Error> {
        if self.worker.is_none() {
            let (up, rx) = unbounded();
            let w = ThreadWorker::start(
                "cos-sim-worker".into(),
                &self.registry,
                &self.setup,
                &up,
                true,
                false,
                None,
            )?;
            self.worker = Some((w, rx));
        }
        self.worker.as_ref().expect("started").0.send(&Job::new(task, host, call.clone()))?;
        loop {
            let frame = self.worker.as_ref().expect("started").1.recv();
            let frame =
                frame.map_err(|_| machine(MachineErrorKind::Protocol, "the simulation thread is gone"));
            match frame.and_then(|f| decode::<Up>(&f)) {
                Ok(Up::SpawnerCall { call, reply, .. }) => {
                    let result = self.spawner_calls.run_now(&call);
                    if reply {
                        self.worker.as_ref().expect("started").0.reply(result);
                    }
                }
                Ok(Up::Message { bytes, .. }) => {
                    self.messages.push_back(Event::Message { from: task, bytes })
                }
                Ok(Up::Finished { result, retire, .. }) => {
                    if retire {
                        // The thread ends: what the job's abandoned frames held stays with it.
                        self.stop_worker();
                    }
                    return Ok(Event::Finished { task, result });
                }
                Ok(Up::Lost { why, .. }) => {
                    self.stop_worker();
                    return Ok(Event::Lost { task, cause: LostCause::Panicked(why) });
                }
                Err(e) => {
                    self.stop_worker();
                    return Ok(Event::Lost { task, cause: LostCause::Connection(e.to_string()) });
                }
            }
        }
    }

    fn stop_worker(&mut self) {
        if let Some((w, _)) = self.worker.take() {
            w.join();
        }
    }

    /// Delivers the earliest end due by virtual time `limit`, advancing the clock to it.
    fn deliver_until(&mut self, limit: u64) -> Option<Event> {
        let (&(at, n), _) = self.pending.iter().next()?;
        if at > limit {
            return None;
        }
        let event = self.pending.remove(&(at, n)).expect("pending event");
        self.now = self.now.max(at);
        self.slots.end(event.task());
        self.trace.push(SimEvent::Done { at, task: event.task() });
        Some(event)
    }
}

impl fmt::Debug for SimVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimVm").field("hosts", &self.slots.hosts()).field("now", &self.now).finish()
    }
}

impl VirtualMachine for SimVm {
    // The queries every machine answers from its slot core.
    crate::machines::slots::slot_queries!();

    fn spawn_function(&mut self, call: &RemoteCall, targets: Option<&[HostId]>) -> Result<TaskId, Error> {
        let (slot, task) = self.slots.pick(targets)?;
        let latency = self.next_latency(call, task.number);
        self.trace.push(SimEvent::Spawn {
            at: self.now,
            task,
            host: self.slots.host_of_slot(slot).clone(),
            function: call.function.to_string(),
        });
        let end = self.run(task, self.slots.host_of_slot(slot).clone(), call)?;
        self.slots.start(slot, task);
        self.pending.insert((self.now.saturating_add(latency), task.number), end);
        Ok(task)
    }

    fn receive(&mut self, wait: Wait) -> Result<Option<Event>, Error> {
        let limit = match wait {
            Wait::Poll => self.now,
            Wait::Until(at) => self.micros_at(at),
            Wait::Forever => u64::MAX,
        };
        if let Some(message) = self.messages.pop_front() {
            return Ok(Some(message));
        }
        let event = self.deliver_until(limit);
        if event.is_none() && limit != u64::MAX {
            self.now = self.now.max(limit);
        }
        Ok(event)
    }

    fn finalize(&mut self) {
        self.pending.clear();
        self.messages.clear();
        self.slots.end_all();
        self.stop_worker();
        self.spawner_calls.stop();
    }

    fn cancel(&mut self, task: TaskId) -> Result<(), Error> {
        let key = self.pending.iter().find(|(_, e)| e.task() == task).map(|(k, _)| *k);
        let key = key.ok_or_else(|| {
            machine(MachineErrorKind::NoSuchTask, format!("SimVm has no running task {task}"))
        })?;
        self.pending.remove(&key);
        self.messages.retain(|m| m.task() != task);
        self.slots.end(task);
        self.trace.push(SimEvent::Done { at: self.now, task });
        Ok(())
    }

    fn now(&self) -> Instant {
        self.epoch + Duration::from_micros(self.now)
    }
}

impl Drop for SimVm {
    fn drop(&mut self) {
        self.stop_worker();
        self.spawner_calls.stop();
    }
}
