//! `ProcessVm`: worker processes, each the program itself started again in worker mode.
//!
//! The spawner listens on a Unix socket in a private temporary directory and starts every
//! worker as `current_exe()` with the same arguments and two environment variables naming the
//! socket and the worker's slot. [`crate::start`], the first call of `main`, sees them and turns
//! the process into a worker: it connects, says hello, and runs calls until the spawner hangs
//! up. Frames are a `u32` little-endian length and that many postcard bytes; the workers' own
//! stdout and stderr stay the user's.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender, TryRecvError};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::spawner_call::{self, SpawnerLink};
use crate::vm::layout::HostLayout;
use crate::vm::message::{decode, encode};
use crate::vm::worker::{run_guarded, InlineWorker};
use crate::vm::{HostId, Message, Registry, RemoteCall, RemoteFailure, TaskId, VirtualMachine};

/// Names the spawner's socket; its presence makes a process a worker.
pub(crate) const SOCKET_ENV: &str = "COS_WORKER_SOCKET";
/// The worker's slot number (1-based, as in [`TaskId::worker`]).
pub(crate) const SLOT_ENV: &str = "COS_WORKER_SLOT";
/// The longest frame either side accepts.
pub(crate) const MAX_FRAME: usize = 256 << 20;

/// How long the spawner waits between looks at workers that have not connected yet.
const START_CHECK: Duration = Duration::from_millis(50);
/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Set once this process has become a worker: a worker starts no workers of its own.
static IS_WORKER: AtomicBool = AtomicBool::new(false);

/// Writes one frame: the length, then the bytes.
///
/// # Errors
/// [`Error::Decode`] for a frame longer than [`MAX_FRAME`]; [`Error::Vm`] when writing fails.
pub(crate) fn write_frame(w: &mut impl Write, bytes: &[u8]) -> Result<(), Error> {
    if bytes.len() > MAX_FRAME {
        return Err(Error::Decode(format!(
            "frame of {} bytes exceeds the limit of {MAX_FRAME}",
            bytes.len()
        )));
    }
    let mut buf = Vec::with_capacity(4 + bytes.len());
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
    w.write_all(&buf).and_then(|()| w.flush()).map_err(|e| Error::Vm(format!("cannot send a frame: {e}")))
}

/// Reads one frame; `Ok(None)` when the stream ends cleanly between frames.
///
/// # Errors
/// [`Error::Decode`] for a length beyond [`MAX_FRAME`] or a stream that ends inside a frame;
/// [`Error::Vm`] when reading fails.
pub(crate) fn read_frame(r: &mut impl Read) -> Result<Option<Vec<u8>>, Error> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(Error::Decode("stream ended inside a frame length".into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Vm(format!("cannot read a frame: {e}"))),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(Error::Decode(format!("frame length {len} exceeds the limit of {MAX_FRAME}")));
    }
    // Grows with the bytes that really come, so a lying length costs no memory.
    let mut body = Vec::new();
    r.take(len as u64).read_to_end(&mut body).map_err(|e| Error::Vm(format!("cannot read a frame: {e}")))?;
    if body.len() < len {
        return Err(Error::Decode(format!("stream ended after {} of {len} frame bytes", body.len())));
    }
    Ok(Some(body))
}

/// A new worker's first frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Hello {
    slot: u32,
    pid: u32,
}

/// A frame from the spawner to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Down {
    /// Run a call as this task.
    Run(TaskId, RemoteCall),
    /// A message for a task (the reply to a spawner call).
    Message(TaskId, Message),
}

/// What the per-worker reader threads and the spawner's machine say to each other.
enum Event {
    /// A frame from a worker, as `(task, message)`.
    Frame { slot: usize, generation: u64, task: TaskId, message: Message },
    /// A worker's connection ended (the process died, exited or sent garbage).
    Closed { slot: usize, generation: u64, why: String },
}

/// Worker processes that run registered functions: the same executable started again, one
/// process per slot, grouped into simulated hosts as in [`crate::ThreadVm`]. Every job, result
/// and message crosses a Unix socket as postcard bytes; the workers print to the user's stdout
/// and stderr.
///
/// A worker that dies (a panic that escapes the registry, an abort, an exit, a signal) ends its
/// running task with [`Message::WorkerLost`] (so the joiner gets [`Error::WorkerLost`]); its
/// slot gets a new process and every other task runs on.
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
    registry: Registry,
    layout: HostLayout,
    program: PathBuf,
    args: Vec<OsString>,
    dir: PathBuf,
    socket: PathBuf,
    connect_timeout: Duration,
    acceptor: Option<Acceptor>,
    conns: Receiver<(Hello, UnixStream)>,
    slots: Vec<Slot>,
    events_tx: Sender<Event>,
    events_rx: Receiver<Event>,
    /// The exit message that follows the result just delivered.
    exit_next: Option<TaskId>,
    /// Runs the workers' calls of [`crate::spawner_call`], started on first use.
    inline: Option<InlineWorker>,
    finalized: bool,
}

struct Slot {
    proc: Option<Proc>,
    /// Counts the slot's processes; events of an earlier one are stale.
    generation: u64,
    task: Option<TaskId>,
}

struct Proc {
    child: Child,
    stream: UnixStream,
    reader: Option<thread::JoinHandle<()>>,
}

impl Proc {
    /// Hangs up, kills the process when asked, reaps it and its reader thread.
    fn stop(mut self, kill: bool) -> Option<ExitStatus> {
        let _ = self.stream.shutdown(Shutdown::Both);
        if kill {
            let _ = self.child.kill();
        }
        let status = self.child.wait().ok();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status
    }
}

struct Acceptor {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
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

    /// Creates the socket, starts the worker processes and waits until each has connected.
    ///
    /// # Errors
    /// [`Error::Vm`] when this process is itself a worker, when the executable or the socket
    /// cannot be had, or when a worker does not start and connect (for example because the
    /// program does not call [`crate::start`] first).
    ///
    /// ```no_run
    /// let vm = cos::ProcessVm::builder(cos::Registry::new()).build().unwrap();
    /// ```
    pub fn build(self) -> Result<ProcessVm, Error> {
        if IS_WORKER.load(Ordering::SeqCst) || std::env::var_os(SOCKET_ENV).is_some() {
            return Err(Error::Vm(
                "a worker process cannot start workers (call cos::start first thing in main)".into(),
            ));
        }
        let program =
            std::env::current_exe().map_err(|e| Error::Vm(format!("cannot find this program: {e}")))?;
        let (dir, socket, listener) = listen()?;
        let (conns_tx, conns) = unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let handle = thread::Builder::new()
            .name("cos-process-accept".into())
            .spawn(move || accept_loop(&listener, &stop2, &conns_tx))
            .map_err(|e| Error::Vm(format!("cannot start a thread: {e}")))?;
        let (events_tx, events_rx) = unbounded();
        let layout = HostLayout::new(self.hosts, self.per_host);
        let n = layout.slots();
        let mut vm = ProcessVm {
            registry: self.registry,
            layout,
            program,
            args: std::env::args_os().skip(1).collect(),
            dir,
            socket,
            connect_timeout: self.connect_timeout,
            acceptor: Some(Acceptor { stop, handle: Some(handle) }),
            conns,
            slots: (0..n).map(|_| Slot { proc: None, generation: 0, task: None }).collect(),
            events_tx,
            events_rx,
            exit_next: None,
            inline: None,
            finalized: false,
        };
        let mut pending = Vec::new();
        for slot in 0..n {
            match vm.launch(slot) {
                Ok(child) => pending.push((slot, child)),
                Err(e) => {
                    for (_, mut c) in pending {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    return Err(e);
                }
            }
        }
        let mut failure = None;
        for (slot, started) in vm.connect(pending) {
            match started {
                Ok((child, stream)) => vm.attach(slot, child, stream)?,
                Err(why) => failure = Some(Error::Vm(format!("worker process {}: {why}", slot + 1))),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => {
                log::debug!(target: "cos", "{n} worker processes connected on {}", vm.socket.display());
                Ok(vm)
            }
        }
    }
}

/// Creates a private directory in the temporary directory and listens on a socket in it.
fn listen() -> Result<(PathBuf, PathBuf, UnixListener), Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mut last = None;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cos-{}-{nanos:x}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                let socket = dir.join("socket");
                return match UnixListener::bind(&socket) {
                    Ok(l) => Ok((dir, socket, l)),
                    Err(e) => {
                        let _ = std::fs::remove_dir(&dir);
                        Err(Error::Vm(format!("cannot listen on {}: {e}", socket.display())))
                    }
                };
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(Error::Vm(format!("cannot create {}: {e}", dir.display()))),
        }
    }
    Err(Error::Vm(format!(
        "cannot create a socket directory: {}",
        last.map_or_else(String::new, |e| e.to_string())
    )))
}

/// Accepts worker connections and passes each on with its hello, until told to stop.
fn accept_loop(listener: &UnixListener, stop: &AtomicBool, conns: &Sender<(Hello, UnixStream)>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted) => {
                continue
            }
            Err(e) => {
                log::error!(target: "cos", "cannot accept worker connections: {e}");
                return;
            }
        };
        let hello = stream
            .set_read_timeout(Some(HELLO_TIMEOUT))
            .map_err(|e| Error::Vm(e.to_string()))
            .and_then(|()| read_frame(&mut stream))
            .and_then(|f| f.ok_or_else(|| Error::Decode("no hello".into())))
            .and_then(|f| decode::<Hello>(&f))
            .and_then(|h| stream.set_read_timeout(None).map(|()| h).map_err(|e| Error::Vm(e.to_string())));
        match hello {
            Ok(h) => {
                if conns.send((h, stream)).is_err() {
                    return;
                }
            }
            Err(e) => log::warn!(target: "cos", "connection without a valid hello dropped: {e}"),
        }
    }
}

/// Forwards a worker's frames to the machine until its connection ends.
fn reader_loop(slot: usize, generation: u64, mut stream: UnixStream, events: &Sender<Event>) {
    let why = loop {
        match read_frame(&mut stream) {
            Ok(Some(frame)) => match decode::<(TaskId, Message)>(&frame) {
                Ok((task, message)) => {
                    if events.send(Event::Frame { slot, generation, task, message }).is_err() {
                        return;
                    }
                }
                Err(e) => break format!("malformed frame: {e}"),
            },
            Ok(None) => break "connection closed".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    let _ = events.send(Event::Closed { slot, generation, why });
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
        ProcessVmBuilder { registry, hosts: 1, per_host: cores, connect_timeout: Duration::from_secs(60) }
    }

    fn free(&self, slot: usize) -> bool {
        self.slots[slot].proc.is_some() && self.slots[slot].task.is_none()
    }

    /// Starts the process for `slot`.
    fn launch(&self, slot: usize) -> Result<Child, Error> {
        Command::new(&self.program)
            .args(&self.args)
            .env(SOCKET_ENV, &self.socket)
            .env(SLOT_ENV, (slot + 1).to_string())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| Error::Vm(format!("cannot start {}: {e}", self.program.display())))
    }

    /// Waits until each started process has connected, or has failed to.
    #[allow(clippy::type_complexity)]
    fn connect(
        &mut self,
        mut waiting: Vec<(usize, Child)>,
    ) -> Vec<(usize, Result<(Child, UnixStream), String>)> {
        let deadline = Instant::now() + self.connect_timeout;
        let mut done = Vec::new();
        while !waiting.is_empty() {
            match self.conns.recv_timeout(START_CHECK) {
                Ok((hello, stream)) => {
                    match waiting
                        .iter()
                        .position(|(s, c)| *s + 1 == hello.slot as usize && c.id() == hello.pid)
                    {
                        Some(i) => {
                            let (slot, child) = waiting.swap_remove(i);
                            done.push((slot, Ok((child, stream))));
                        }
                        None => {
                            log::warn!(target: "cos", "unexpected worker connection from process {}", hello.pid)
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let late = Instant::now() >= deadline;
                    let mut i = 0;
                    while i < waiting.len() {
                        let why = match waiting[i].1.try_wait() {
                            Ok(Some(status)) => Some(format!("ended before connecting ({status})")),
                            Ok(None) if late => Some("did not connect in time".to_string()),
                            Ok(None) => None,
                            Err(e) => Some(e.to_string()),
                        };
                        match why {
                            Some(why) => {
                                let (slot, mut child) = waiting.swap_remove(i);
                                let _ = child.kill();
                                let _ = child.wait();
                                done.push((slot, Err(why)));
                            }
                            None => i += 1,
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    for (slot, mut child) in waiting.drain(..) {
                        let _ = child.kill();
                        let _ = child.wait();
                        done.push((slot, Err("the socket no longer accepts connections".to_string())));
                    }
                }
            }
        }
        done
    }

    /// Puts a connected process in its slot, with a thread reading its frames.
    fn attach(&mut self, slot: usize, child: Child, stream: UnixStream) -> Result<(), Error> {
        let generation = self.slots[slot].generation;
        let events = self.events_tx.clone();
        let reader = stream
            .try_clone()
            .and_then(|r| {
                thread::Builder::new()
                    .name(format!("cos-process-reader-{}", slot + 1))
                    .spawn(move || reader_loop(slot, generation, r, &events))
            })
            .map_err(|e| Error::Vm(format!("cannot read from worker process {}: {e}", slot + 1)));
        let proc = Proc { child, stream, reader: None };
        match reader {
            Ok(handle) => {
                self.slots[slot].proc = Some(Proc { reader: Some(handle), ..proc });
                Ok(())
            }
            Err(e) => {
                proc.stop(true);
                Err(e)
            }
        }
    }

    /// Starts a new process in `slot`; on failure the slot stays empty.
    fn restart(&mut self, slot: usize) {
        let started = self.launch(slot).map_err(|e| e.to_string()).and_then(|child| {
            self.connect(vec![(slot, child)]).pop().map_or_else(|| Err("not started".to_string()), |(_, r)| r)
        });
        let attached =
            started.and_then(|(child, stream)| self.attach(slot, child, stream).map_err(|e| e.to_string()));
        match attached {
            Ok(()) => log::debug!(target: "cos", "worker process {} restarted", slot + 1),
            Err(why) => log::error!(target: "cos", "cannot restart worker process {}: {why}", slot + 1),
        }
    }

    /// Kills and reaps the slot's process; what is left of it is stale from now on.
    fn stop(&mut self, slot: usize) -> (Option<u32>, Option<ExitStatus>) {
        let pid = self.slots[slot].proc.as_ref().map(|p| p.child.id());
        let status = self.slots[slot].proc.take().and_then(|p| p.stop(true));
        self.slots[slot].generation += 1;
        (pid, status)
    }

    /// The slot's process is gone or broken: reap it, start a new one, and end its task.
    fn lose(&mut self, slot: usize, why: Option<String>) -> Option<(TaskId, Message)> {
        let (pid, status) = self.stop(slot);
        let task = self.slots[slot].task.take();
        let why = why.unwrap_or_else(|| {
            let pid = pid.map_or_else(String::new, |p| format!(" (process {p})"));
            let status = status.map_or_else(|| "ended".to_string(), |s| format!("ended: {s}"));
            format!("worker process {}{pid} {status}", slot + 1)
        });
        match task {
            Some(t) => log::warn!(target: "cos", "task {t} lost: {why}"),
            None => log::warn!(target: "cos", "idle worker lost: {why}"),
        }
        if !self.finalized {
            self.restart(slot);
        }
        task.map(|t| (t, Message::WorkerLost(why)))
    }

    /// Sends a frame to the slot's process.
    fn send(&mut self, slot: usize, frame: &[u8]) -> Result<(), Error> {
        match self.slots[slot].proc.as_mut() {
            Some(p) => write_frame(&mut p.stream, frame),
            None => Err(Error::Vm(format!("worker process {} is not running", slot + 1))),
        }
    }

    /// Runs a worker's spawner call here and answers it when asked to.
    fn spawner_call(&mut self, slot: usize, task: TaskId, call: RemoteCall, reply: bool) {
        let registry = &self.registry;
        let inline = self.inline.get_or_insert_with(|| InlineWorker::new(registry.clone()));
        let result = inline.run(call).unwrap_or_else(|e| {
            self.inline = None;
            Err(RemoteFailure::Panicked(e.to_string()))
        });
        if !reply {
            return;
        }
        let sent =
            encode(&Down::Message(task, Message::SpawnerReply(result))).and_then(|f| self.send(slot, &f));
        if let Err(e) = sent {
            // The reader thread reports the loss of the process, if that is what happened.
            log::error!(target: "cos", "cannot answer the spawner call of task {task}: {e}");
        }
    }

    /// Handles one event; a message for the scheduler when there is one.
    fn on_event(&mut self, event: Event) -> Option<(TaskId, Message)> {
        match event {
            Event::Frame { slot, generation, task, message } => {
                if generation != self.slots[slot].generation {
                    return None;
                }
                match message {
                    Message::SpawnerCall { call, reply } => {
                        self.spawner_call(slot, task, call, reply);
                        None
                    }
                    Message::TaskResult(r) => {
                        if self.slots[slot].task != Some(task) {
                            log::warn!(target: "cos", "result for task {task}, which does not run, dropped");
                            return None;
                        }
                        self.slots[slot].task = None;
                        self.exit_next = Some(task);
                        Some((task, Message::TaskResult(r)))
                    }
                    Message::WorkerLost(why) => self.lose(slot, Some(why)),
                    Message::TaskExit => None,
                    other => Some((task, other)),
                }
            }
            Event::Closed { slot, generation, why } => {
                if generation != self.slots[slot].generation {
                    return None;
                }
                log::debug!(target: "cos", "connection of worker process {} ended: {why}", slot + 1);
                self.lose(slot, None)
            }
        }
    }
}

impl fmt::Debug for ProcessVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessVm").field("layout", &self.layout).field("socket", &self.socket).finish()
    }
}

impl VirtualMachine for ProcessVm {
    fn slots(&self) -> usize {
        self.slots.len() + 1
    }

    fn free_slots(&self) -> usize {
        (0..self.slots.len()).filter(|&s| self.free(s)).count()
    }

    fn hosts(&self) -> Vec<HostId> {
        self.layout.hosts().to_vec()
    }

    fn hosts_with_free_slots(&self) -> Vec<HostId> {
        self.layout.hosts_with_free_slots(|s| self.free(s))
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
        let slots = &self.slots;
        let (slot, task) =
            self.layout.pick(targets, |s| slots[s].proc.is_some() && slots[s].task.is_none())?;
        let frame = encode(&Down::Run(task, call.clone()))?;
        if self.send(slot, &frame).is_err() {
            // The idle process is gone: replace it and try once more.
            let _ = self.lose(slot, None);
            self.send(slot, &frame)?;
        }
        self.slots[slot].task = Some(task);
        Ok(task)
    }

    fn receive_message(&mut self, timeout: Option<Duration>) -> Result<Option<(TaskId, Message)>, Error> {
        if let Some(task) = self.exit_next.take() {
            return Ok(Some((task, Message::TaskExit)));
        }
        let deadline = timeout.filter(|d| !d.is_zero()).and_then(|d| Instant::now().checked_add(d));
        let closed = || Error::Vm("event channel closed".into());
        loop {
            let event = match (timeout, deadline) {
                (Some(d), _) if d.is_zero() => match self.events_rx.try_recv() {
                    Ok(e) => e,
                    Err(TryRecvError::Empty) => return Ok(None),
                    Err(TryRecvError::Disconnected) => return Err(closed()),
                },
                (Some(_), Some(deadline)) => match self.events_rx.recv_deadline(deadline) {
                    Ok(e) => e,
                    Err(RecvTimeoutError::Timeout) => return Ok(None),
                    Err(RecvTimeoutError::Disconnected) => return Err(closed()),
                },
                _ => self.events_rx.recv().map_err(|_| closed())?,
            };
            if let Some(m) = self.on_event(event) {
                return Ok(Some(m));
            }
        }
    }

    fn send_message(&mut self, dest: TaskId, _message: Message) -> Result<(), Error> {
        Err(Error::Vm(format!("ProcessVm workers take no messages (to {dest})")))
    }

    /// Kills the task's worker process and starts a new one in its slot.
    fn cancel(&mut self, task: TaskId) -> Result<(), Error> {
        if self.exit_next == Some(task) {
            // Its result is out already; only the exit was still to come.
            self.exit_next = None;
            return Ok(());
        }
        let slot = (0..self.slots.len())
            .find(|&s| self.slots[s].task == Some(task))
            .ok_or_else(|| Error::Vm(format!("no running task {task}")))?;
        self.slots[slot].task = None;
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
        for slot in &mut self.slots {
            if let Some(p) = slot.proc.as_mut() {
                let _ = p.stream.shutdown(Shutdown::Both);
                if slot.task.is_some() {
                    let _ = p.child.kill();
                }
            }
        }
        for slot in &mut self.slots {
            if let Some(p) = slot.proc.take() {
                p.stop(false);
            }
            slot.task = None;
        }
        if let Some(mut a) = self.acceptor.take() {
            a.stop.store(true, Ordering::SeqCst);
            // Wakes the accepting thread, which then sees the flag.
            if UnixStream::connect(&self.socket).is_ok() {
                if let Some(h) = a.handle.take() {
                    let _ = h.join();
                }
            }
        }
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_dir(&self.dir);
        self.inline = None;
        self.exit_next = None;
    }
}

impl Drop for ProcessVm {
    fn drop(&mut self) {
        self.finalize();
    }
}

/// Whether this process was started as a worker of a [`ProcessVm`].
pub(crate) fn is_worker_process() -> bool {
    std::env::var_os(SOCKET_ENV).is_some()
}

/// The worker process: connects to the spawner, runs its calls until it hangs up, and ends the
/// process.
pub(crate) fn worker_main(registry: &Registry) -> ! {
    IS_WORKER.store(true, Ordering::SeqCst);
    let code = match serve(registry) {
        Ok(()) => 0,
        // The panic hook has told the user already.
        Err(Error::WorkerLost(_)) => 101,
        Err(e) => {
            eprintln!("cos worker process {}: {e}", std::process::id());
            1
        }
    };
    let _ = io::stdout().flush();
    std::process::exit(code)
}

/// A worker process's link to the spawner: its own socket, read only while the task waits.
struct ProcessLink {
    stream: UnixStream,
}

impl SpawnerLink for ProcessLink {
    fn call(
        &mut self,
        task: TaskId,
        call: RemoteCall,
        wait: bool,
    ) -> Result<Option<Result<Vec<u8>, RemoteFailure>>, Error> {
        write_frame(&mut self.stream, &encode(&(task, Message::SpawnerCall { call, reply: wait }))?)?;
        if !wait {
            return Ok(None);
        }
        loop {
            let frame =
                read_frame(&mut self.stream)?.ok_or_else(|| Error::Vm("the spawner is gone".into()))?;
            match decode::<Down>(&frame)? {
                Down::Message(_, Message::SpawnerReply(r)) => return Ok(Some(r)),
                Down::Message(to, m) => log::debug!(target: "cos", "message for task {to} dropped: {m:?}"),
                Down::Run(t, _) => {
                    return Err(Error::Vm(format!("the spawner sent task {t} to a busy worker")));
                }
            }
        }
    }
}

fn serve(registry: &Registry) -> Result<(), Error> {
    let socket = std::env::var_os(SOCKET_ENV).ok_or_else(|| Error::Vm(format!("{SOCKET_ENV} is not set")))?;
    let slot: u32 = std::env::var(SLOT_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Vm(format!("{SLOT_ENV} is not a slot number")))?;
    // Programs this worker starts are not workers.
    std::env::remove_var(SOCKET_ENV);
    std::env::remove_var(SLOT_ENV);
    let mut stream = UnixStream::connect(&socket)
        .map_err(|e| Error::Vm(format!("cannot connect to {}: {e}", PathBuf::from(&socket).display())))?;
    write_frame(&mut stream, &encode(&Hello { slot, pid: std::process::id() })?)?;
    let link = stream.try_clone().map_err(|e| Error::Vm(e.to_string()))?;
    let _link = spawner_call::install(Box::new(ProcessLink { stream: link }));
    let registry = Rc::new(registry.clone());
    while let Some(frame) = read_frame(&mut stream)? {
        let (task, call) = match decode::<Down>(&frame)? {
            Down::Run(task, call) => (task, call),
            Down::Message(to, m) => {
                log::debug!(target: "cos", "message for task {to} dropped: {m:?}");
                continue;
            }
        };
        let running = spawner_call::running(task);
        // As a local task: a stack overflow in the call ends only the call.
        let result = run_guarded(&registry, call);
        drop(running);
        let reply = match result {
            Ok(r) => Message::TaskResult(r),
            Err(e) => {
                // A panic that escaped the registry: this process may be broken, so it reports
                // the task lost and ends; the spawner starts a new one.
                let text = match e {
                    Error::Panicked { message, .. } => message,
                    other => other.to_string(),
                };
                let why = format!("worker process {} panicked: {text}", std::process::id());
                let _ = write_frame(&mut stream, &encode(&(task, Message::WorkerLost(why.clone())))?);
                return Err(Error::WorkerLost(why));
            }
        };
        write_frame(&mut stream, &encode(&(task, reply))?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        write_frame(&mut a, b"hello").unwrap();
        write_frame(&mut a, b"").unwrap();
        drop(a);
        assert_eq!(read_frame(&mut b).unwrap(), Some(b"hello".to_vec()));
        assert_eq!(read_frame(&mut b).unwrap(), Some(Vec::new()));
        assert_eq!(read_frame(&mut b).unwrap(), None);
    }

    #[test]
    fn an_oversized_length_is_an_error() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&u32::MAX.to_le_bytes()).unwrap();
        a.write_all(b"garbage").unwrap();
        assert!(matches!(read_frame(&mut b), Err(Error::Decode(_))));
    }

    #[test]
    fn a_stream_ending_inside_a_frame_is_an_error() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&100u32.to_le_bytes()).unwrap();
        a.write_all(b"only a few bytes").unwrap();
        drop(a);
        assert!(matches!(read_frame(&mut b), Err(Error::Decode(_))));

        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&[7, 0]).unwrap();
        drop(a);
        assert!(matches!(read_frame(&mut b), Err(Error::Decode(_))));
    }

    #[test]
    fn garbage_bytes_do_not_decode_as_a_message() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        write_frame(&mut a, &[0xff; 9]).unwrap();
        let frame = read_frame(&mut b).unwrap().unwrap();
        assert!(matches!(decode::<(TaskId, Message)>(&frame), Err(Error::Decode(_))));
        assert!(matches!(decode::<Down>(&frame), Err(Error::Decode(_))));
    }

    #[test]
    fn a_reader_reports_garbage_as_a_closed_connection() {
        let (mut a, b) = UnixStream::pair().unwrap();
        write_frame(&mut a, &[0xff; 9]).unwrap();
        let (tx, rx) = unbounded();
        reader_loop(3, 7, b, &tx);
        match rx.recv().unwrap() {
            Event::Closed { slot, generation, why } => {
                assert_eq!((slot, generation), (3, 7));
                assert!(why.starts_with("malformed frame"), "{why}");
            }
            Event::Frame { .. } => panic!("garbage decoded as a frame"),
        }
    }

    #[test]
    fn an_oversized_frame_is_not_sent() {
        let (mut a, _b) = UnixStream::pair().unwrap();
        let big = vec![0u8; MAX_FRAME + 1];
        assert!(matches!(write_frame(&mut a, &big), Err(Error::Decode(_))));
    }
}
