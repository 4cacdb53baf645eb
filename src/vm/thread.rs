//! `ThreadVm`: the embedded default machine, worker threads in this process.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender, TryRecvError};

use crate::error::Error;
use crate::spawner_call::{self, SpawnerLink};
use crate::vm::layout::HostLayout;
use crate::vm::message::{decode, encode};
use crate::vm::wait::recv_spinning;
use crate::vm::worker::InlineWorker;
use crate::vm::{HostId, Message, Registry, RemoteCall, RemoteFailure, TaskId, VirtualMachine};

type Reply = Result<Vec<u8>, RemoteFailure>;

/// Worker threads in this process, each with its own cooperative OS, grouped into simulated
/// hosts so that host targeting works as on a cluster. Every job and every result crosses as
/// postcard bytes, exactly as it would between processes.
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
    layout: HostLayout,
    workers: Vec<Worker>,
    results_tx: Sender<Vec<u8>>,
    results_rx: Receiver<Vec<u8>>,
    /// Running tasks and their slots.
    running: Vec<Option<TaskId>>,
    /// How many slots run a task.
    busy_count: usize,
    /// The exit message that follows the result just delivered.
    exit_next: Option<TaskId>,
    /// Runs the workers' calls of [`crate::spawner_call`], started on first use.
    inline: Option<InlineWorker>,
}

struct Worker {
    jobs: Option<Sender<Vec<u8>>>,
    /// Answers to the worker's spawner calls.
    replies: Option<Sender<Reply>>,
    handle: Option<thread::JoinHandle<()>>,
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

    /// Starts the worker threads.
    ///
    /// ```
    /// let vm = cos::ThreadVm::builder(cos::Registry::new()).build();
    /// ```
    pub fn build(self) -> ThreadVm {
        let (results_tx, results_rx) = unbounded();
        let mut vm = ThreadVm {
            registry: self.registry,
            layout: HostLayout::new(self.hosts, self.per_host),
            workers: Vec::new(),
            results_tx,
            results_rx,
            running: Vec::new(),
            busy_count: 0,
            exit_next: None,
            inline: None,
        };
        vm.workers = (0..vm.layout.slots()).map(|i| vm.start_worker(i)).collect();
        vm.running = vec![None; vm.workers.len()];
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
        ThreadVmBuilder { registry, hosts: 1, per_host: cores }
    }

    fn start_worker(&self, slot: usize) -> Worker {
        let (jobs_tx, jobs_rx) = unbounded::<Vec<u8>>();
        let (replies_tx, replies_rx) = unbounded::<Reply>();
        let registry = self.registry.clone();
        let results = self.results_tx.clone();
        let handle = thread::Builder::new()
            .name(format!("cos-worker-{}", slot + 1))
            .spawn(move || {
                let link = ThreadLink { results: results.clone(), replies: replies_rx };
                let _link = spawner_call::install(Box::new(link));
                serve(registry, jobs_rx, results)
            })
            .map_err(|e| log::error!(target: "cos", "cannot start worker thread: {e}"))
            .ok();
        Worker { jobs: handle.as_ref().map(|_| jobs_tx), replies: Some(replies_tx), handle }
    }

    fn busy(&self, slot: usize) -> bool {
        self.running[slot].is_some()
    }

    /// The slot running `task` (task ids name their slot: worker = slot + 1).
    fn slot_of(&self, task: TaskId) -> Option<usize> {
        let slot = HostLayout::slot_of(task)?;
        (self.running.get(slot) == Some(&Some(task))).then_some(slot)
    }

    /// Frees the slot running `task`.
    fn take_running(&mut self, task: TaskId) -> Option<usize> {
        let slot = self.slot_of(task)?;
        self.running[slot] = None;
        self.busy_count -= 1;
        Some(slot)
    }

    fn on_frame(&mut self, frame: &[u8]) -> Option<(TaskId, Message)> {
        match decode::<(TaskId, Message)>(frame) {
            Ok((task, Message::SpawnerCall { call, reply })) => {
                self.spawner_call(task, call, reply);
                None
            }
            Ok((task, msg)) => {
                if let Some(slot) = self.take_running(task) {
                    if matches!(msg, Message::WorkerLost(_)) {
                        // The thread is gone; start a new one in its slot.
                        if let Some(h) = self.workers[slot].handle.take() {
                            let _ = h.join();
                        }
                        self.workers[slot] = self.start_worker(slot);
                    } else {
                        self.exit_next = Some(task);
                    }
                }
                Some((task, msg))
            }
            Err(e) => {
                log::error!(target: "cos", "malformed frame from a worker thread: {e}");
                None
            }
        }
    }
}

impl ThreadVm {
    /// Runs a worker's spawner call here and answers it when asked to.
    fn spawner_call(&mut self, task: TaskId, call: RemoteCall, reply: bool) {
        let Some(slot) = self.slot_of(task) else {
            // A cancelled task's thread runs on detached; its calls are dropped.
            log::debug!(target: "cos", "spawner call of task {task}, which does not run, dropped");
            return;
        };
        let registry = &self.registry;
        let inline = self.inline.get_or_insert_with(|| InlineWorker::new(registry.clone()));
        let result = inline.run(call).unwrap_or_else(|e| {
            self.inline = None;
            Err(RemoteFailure::Panicked(e.to_string()))
        });
        if !reply {
            return;
        }
        if self.workers[slot].replies.as_ref().is_none_or(|tx| tx.send(result).is_err()) {
            log::error!(target: "cos", "cannot answer the spawner call of task {task}");
        }
    }
}

/// A worker thread's link to the spawner: calls go with its results, replies come on their own
/// channel.
struct ThreadLink {
    results: Sender<Vec<u8>>,
    replies: Receiver<Reply>,
}

impl SpawnerLink for ThreadLink {
    fn call(&mut self, task: TaskId, call: RemoteCall, wait: bool) -> Result<Option<Reply>, Error> {
        let gone = || Error::Vm("the spawner is gone".into());
        let frame = encode(&(task, Message::SpawnerCall { call, reply: wait }))?;
        self.results.send(frame).map_err(|_| gone())?;
        if wait {
            self.replies.recv().map(Some).map_err(|_| gone())
        } else {
            Ok(None)
        }
    }
}

/// A worker thread's life. It serves jobs from inside a local task of its own OS, on a large
/// stack, so that a runaway recursion in a call ends that call with
/// [`RemoteFailure::StackOverflow`] (and a new serving task takes over) instead of ending the
/// process. Serving from one long-lived task costs nothing per call.
fn serve(registry: Registry, jobs: Receiver<Vec<u8>>, results: Sender<Vec<u8>>) {
    crate::os::set_stack_size(WORKER_TASK_STACK);
    let registry = Rc::new(registry);
    let current: Rc<Cell<Option<TaskId>>> = Rc::default();
    loop {
        let (r, j, s, c) = (registry.clone(), jobs.clone(), results.clone(), current.clone());
        let failure = match crate::os::spawn(move || worker_loop(&r, &j, &s, &c)).and_then(crate::os::join) {
            // The spawner hung up.
            Ok(()) => return,
            Err(Error::StackOverflow(_)) => RemoteFailure::StackOverflow,
            Err(e) => {
                // A panic past the registry (already reported as a lost worker) or no stack:
                // this thread ends and the machine starts a new one in its slot.
                log::error!(target: "cos", "worker thread ends: {e}");
                return;
            }
        };
        let Some(task) = current.take() else { continue };
        log::debug!(target: "cos", "task {task} overflowed its stack on a worker thread");
        let sent = encode(&(task, Message::TaskResult(Err(failure)))).map(|f| results.send(f).is_ok());
        if sent != Ok(true) {
            return;
        }
    }
}

/// Runs jobs until the spawner hangs up, noting in `current` the task it runs. A panic that
/// escapes the registry's own catching reports the task as lost instead of leaving it
/// unanswered.
fn worker_loop(
    registry: &Registry,
    jobs: &Receiver<Vec<u8>>,
    results: &Sender<Vec<u8>>,
    current: &Cell<Option<TaskId>>,
) {
    struct LostGuard<'a> {
        task: Option<TaskId>,
        results: &'a Sender<Vec<u8>>,
    }
    impl Drop for LostGuard<'_> {
        fn drop(&mut self) {
            if let (Some(task), true) = (self.task, thread::panicking()) {
                if let Ok(f) = encode(&(task, Message::WorkerLost("worker thread panicked".into()))) {
                    let _ = self.results.send(f);
                }
            }
        }
    }
    for frame in jobs {
        let (task, call) = match decode::<(TaskId, RemoteCall)>(&frame) {
            Ok(v) => v,
            Err(e) => {
                log::error!(target: "cos", "worker thread got a malformed job: {e}");
                continue;
            }
        };
        let mut guard = LostGuard { task: Some(task), results };
        current.set(Some(task));
        let running = spawner_call::running(task);
        let reply = Message::TaskResult(registry.run(&call));
        drop(running);
        current.set(None);
        guard.task = None;
        match encode(&(task, reply)) {
            Ok(f) => {
                if results.send(f).is_err() {
                    return;
                }
            }
            Err(e) => log::error!(target: "cos", "cannot encode a result: {e}"),
        }
    }
}

/// The stack size of the local task a worker thread serves its calls in (only the pages a
/// call touches take memory).
const WORKER_TASK_STACK: usize = 8 * 1024 * 1024;

impl fmt::Debug for ThreadVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadVm").field("layout", &self.layout).finish()
    }
}

impl VirtualMachine for ThreadVm {
    fn slots(&self) -> usize {
        self.workers.len() + 1
    }

    fn free_slots(&self) -> usize {
        self.workers.len() - self.busy_count
    }

    fn hosts(&self) -> Vec<HostId> {
        self.layout.hosts().to_vec()
    }

    fn hosts_with_free_slots(&self) -> Vec<HostId> {
        self.layout.hosts_with_free_slots(|s| !self.busy(s))
    }

    fn task_id(&self) -> TaskId {
        TaskId { worker: 0, number: 0 }
    }

    fn host_id(&self, task: Option<TaskId>) -> Option<HostId> {
        self.layout.host_id(task)
    }

    fn parent_task_id(&self) -> Option<TaskId> {
        None
    }

    fn spawn_function(&mut self, call: &RemoteCall, targets: Option<&[HostId]>) -> Result<TaskId, Error> {
        let running = &self.running;
        let (slot, task) = self.layout.pick(targets, |s| running[s].is_none())?;
        let frame = encode(&(task, call))?;
        let unsent = match self.workers[slot].jobs.as_ref() {
            Some(tx) => tx.send(frame).err().map(|e| e.into_inner()),
            None => Some(frame),
        };
        if let Some(frame) = unsent {
            // The slot's thread is gone: start a new one and send it there.
            self.workers[slot] = self.start_worker(slot);
            let tx = self.workers[slot]
                .jobs
                .as_ref()
                .ok_or_else(|| Error::Vm("cannot start a worker thread".into()))?;
            tx.send(frame).map_err(|_| Error::Vm("worker thread is gone".into()))?;
        }
        self.running[slot] = Some(task);
        self.busy_count += 1;
        Ok(task)
    }

    fn receive_message(&mut self, timeout: Option<Duration>) -> Result<Option<(TaskId, Message)>, Error> {
        if let Some(task) = self.exit_next.take() {
            return Ok(Some((task, Message::TaskExit)));
        }
        let deadline = timeout.filter(|d| !d.is_zero()).and_then(|d| Instant::now().checked_add(d));
        loop {
            let frame = match (timeout, deadline) {
                (Some(d), _) if d.is_zero() => match self.results_rx.try_recv() {
                    Ok(f) => f,
                    Err(TryRecvError::Empty) => return Ok(None),
                    Err(TryRecvError::Disconnected) => return Err(Error::Vm("result channel closed".into())),
                },
                (None, _) | (Some(_), None) => {
                    recv_spinning(&self.results_rx).map_err(|_| Error::Vm("result channel closed".into()))?
                }
                (Some(_), Some(deadline)) => match self.results_rx.recv_deadline(deadline) {
                    Ok(f) => f,
                    Err(RecvTimeoutError::Timeout) => return Ok(None),
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(Error::Vm("result channel closed".into()))
                    }
                },
            };
            if let Some(m) = self.on_frame(&frame) {
                return Ok(Some(m));
            }
        }
    }

    fn send_message(&mut self, dest: TaskId, _message: Message) -> Result<(), Error> {
        Err(Error::Vm(format!("ThreadVm workers take no messages (to {dest})")))
    }

    fn finalize(&mut self) {
        for w in &mut self.workers {
            w.jobs = None;
            w.replies = None;
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
        self.running.iter_mut().for_each(|r| *r = None);
        self.busy_count = 0;
    }

    /// A thread cannot be stopped from outside: the slot gets a new thread at once and the old
    /// one is left to finish its call, whose result is dropped.
    fn cancel(&mut self, task: TaskId) -> Result<(), Error> {
        if self.exit_next == Some(task) {
            // Its result is out already; only the exit was still to come.
            self.exit_next = None;
            return Ok(());
        }
        let slot = self.take_running(task).ok_or_else(|| Error::Vm(format!("no running task {task}")))?;
        let fresh = self.start_worker(slot);
        // The old worker's handle is dropped: its thread is detached and ends after its call.
        drop(std::mem::replace(&mut self.workers[slot], fresh));
        Ok(())
    }
}

impl Drop for ThreadVm {
    fn drop(&mut self) {
        self.finalize();
    }
}
