//! `SimVm`: a deterministic machine for tests, with virtual time.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::Error;
use crate::vm::worker::InlineWorker;
use crate::vm::{HostId, Message, Registry, RemoteCall, TaskId, VirtualMachine};

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
    /// A task's result and exit were delivered.
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
/// one at a time), and their results come back in the order of a virtual clock. Each task takes
/// a virtual latency drawn from a seeded generator (or given by a script), so the same seed
/// gives the same order of completions, the same trace and the same program run: asynchronous
/// algorithms can be unit-tested reproducibly.
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
    worker: InlineWorker,
    hosts: Vec<HostId>,
    per_host: usize,
    /// Busy slots per host index.
    busy: Vec<usize>,
    /// Whether each slot (host-major, so slot `s` is worker `s + 1`) runs a task.
    slot_busy: Vec<bool>,
    now: u64,
    rng: u64,
    latency: Option<Latency>,
    next_number: u64,
    /// Completions by (time, task number): the message, the task, its host index.
    pending: BTreeMap<(u64, u64), (Message, TaskId, usize)>,
    /// Messages ready for delivery now.
    outbox: VecDeque<(TaskId, Message)>,
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
            worker: InlineWorker::new(registry),
            hosts: (0..hosts).map(|h| HostId::new(format!("host{h}"))).collect(),
            per_host: slots_per_host,
            busy: vec![0; hosts],
            slot_busy: vec![false; hosts * slots_per_host],
            now: 0,
            rng: 0x853c_49e6_748f_ea9b,
            latency: None,
            next_number: 0,
            pending: BTreeMap::new(),
            outbox: VecDeque::new(),
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

    /// Scripts the latencies: `f(call, task number)` gives each task's virtual duration.
    ///
    /// ```
    /// // Later tasks finish first.
    /// let vm = cos::SimVm::new(cos::Registry::new(), 2, 1).latency(|_, n| 100 - n);
    /// ```
    pub fn latency(mut self, f: impl FnMut(&RemoteCall, u64) -> u64 + Send + 'static) -> Self {
        self.latency = Some(Box::new(f));
        self
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

    fn deliver_until(&mut self, limit: u64) -> bool {
        let Some((&(at, n), _)) = self.pending.iter().next() else { return false };
        if at > limit {
            return false;
        }
        let (msg, task, host) = self.pending.remove(&(at, n)).expect("pending event");
        self.now = self.now.max(at);
        self.busy[host] -= 1;
        self.slot_busy[task.worker as usize - 1] = false;
        self.trace.push(SimEvent::Done { at, task });
        self.outbox.push_back((task, msg));
        self.outbox.push_back((task, Message::TaskExit));
        true
    }
}

impl fmt::Debug for SimVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimVm").field("hosts", &self.hosts).field("now", &self.now).finish()
    }
}

impl VirtualMachine for SimVm {
    fn slots(&self) -> usize {
        self.hosts.len() * self.per_host + 1
    }

    fn free_slots(&self) -> usize {
        self.busy.iter().map(|b| self.per_host - b).sum()
    }

    fn hosts(&self) -> Vec<HostId> {
        self.hosts.clone()
    }

    fn hosts_with_free_slots(&self) -> Vec<HostId> {
        self.hosts
            .iter()
            .zip(&self.busy)
            .filter(|(_, b)| **b < self.per_host)
            .map(|(h, _)| h.clone())
            .collect()
    }

    fn task_id(&self) -> TaskId {
        TaskId { worker: 0, number: 0 }
    }

    fn host_id(&self, task: Option<TaskId>) -> Option<HostId> {
        match task {
            None => Some(HostId::new("spawner")),
            Some(t) if t.worker == 0 => Some(HostId::new("spawner")),
            Some(t) => self.hosts.get((t.worker as usize - 1) / self.per_host.max(1)).cloned(),
        }
    }

    fn parent_task_id(&self) -> Option<TaskId> {
        None
    }

    fn spawn_function(&mut self, call: &RemoteCall, targets: Option<&[HostId]>) -> Result<TaskId, Error> {
        let host = (0..self.hosts.len())
            .find(|&h| self.busy[h] < self.per_host && targets.is_none_or(|t| t.contains(&self.hosts[h])))
            .ok_or(Error::NoFreeSlot)?;
        self.busy[host] += 1;
        self.next_number += 1;
        let n = self.next_number;
        // A free slot of that host: tasks running at once never share a worker id.
        let slot = (host * self.per_host..(host + 1) * self.per_host)
            .find(|&s| !self.slot_busy[s])
            .expect("a host with a free slot has a free slot");
        self.slot_busy[slot] = true;
        let task = TaskId { worker: slot as u32 + 1, number: n };
        let latency = self.next_latency(call, n);
        self.trace.push(SimEvent::Spawn {
            at: self.now,
            task,
            host: self.hosts[host].clone(),
            function: call.function.to_string(),
        });
        let result = self.worker.run(call.clone())?;
        self.pending.insert((self.now + latency, n), (Message::TaskResult(result), task, host));
        Ok(task)
    }

    fn receive_message(&mut self, timeout: Option<Duration>) -> Result<Option<(TaskId, Message)>, Error> {
        if self.outbox.is_empty() {
            let limit = timeout.map_or(u64::MAX, |d| self.now.saturating_add(d.as_micros() as u64));
            if !self.deliver_until(limit) && limit != u64::MAX {
                self.now = limit;
            }
        }
        Ok(self.outbox.pop_front())
    }

    fn send_message(&mut self, dest: TaskId, _message: Message) -> Result<(), Error> {
        Err(Error::Vm(format!("SimVm cannot send to task {dest}")))
    }

    fn finalize(&mut self) {
        self.pending.clear();
        self.outbox.clear();
    }

    fn cancel(&mut self, task: TaskId) -> Result<(), Error> {
        let key = self.pending.iter().find(|(_, (_, t, _))| *t == task).map(|(k, _)| *k);
        let key = key.ok_or_else(|| Error::Vm(format!("SimVm has no running task {task}")))?;
        let (_, _, host) = self.pending.remove(&key).expect("pending event");
        self.busy[host] -= 1;
        self.slot_busy[task.worker as usize - 1] = false;
        self.trace.push(SimEvent::Done { at: self.now, task });
        Ok(())
    }
}
