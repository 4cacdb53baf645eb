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
//! with its processor name; the spawner sends a job `(TaskId, RemoteCall)` to an idle worker,
//! which answers with one [`Message::TaskResult`]; a quit message ends the worker.

use std::collections::BTreeSet;
use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use ::mpi::environment::Universe;
use ::mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use ::mpi::topology::{Communicator, SimpleCommunicator};
use ::mpi::{Rank, Tag, Threading};

use crate::error::Error;
use crate::vm::message::{decode, encode};
use crate::vm::worker::run_guarded;
use crate::vm::{HostId, Message, Registry, RemoteCall, RemoteFailure, TaskId, VirtualMachine};

/// Worker to spawner: the worker's processor name (UTF-8).
const TAG_HELLO: Tag = 11;
/// Spawner to worker: a job, `(TaskId, RemoteCall)`.
const TAG_JOB: Tag = 12;
/// Spawner to worker: leave the loop, finalize MPI and exit.
const TAG_QUIT: Tag = 13;
/// Worker to spawner: the [`Message`] answering the worker's job.
const TAG_RESULT: Tag = 14;

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
pub struct MpiVm {
    /// `None` once finalized.
    universe: Option<Universe>,
    /// Every rank's processor name, rank 0's included.
    names: Vec<HostId>,
    /// The task each worker rank runs, if any (index: rank; rank 0 stays `None`).
    running: Vec<Option<TaskId>>,
    next_number: u64,
    /// The exit message that follows the result just delivered.
    exit_next: Option<TaskId>,
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
        let (universe, _) = ::mpi::initialize_with_threading(Threading::Funneled)
            .ok_or_else(|| Error::Vm("MPI is initialized already".into()))?;
        let world = universe.world();
        precise_sleeps();
        let name = ::mpi::environment::processor_name()
            .map_err(|e| Error::Vm(format!("processor name is not UTF-8: {e}")))?;
        if world.rank() != 0 {
            worker_loop(universe, &registry, &name);
        }
        let size = world.size() as usize;
        let mut names: Vec<Option<HostId>> = vec![None; size];
        names[0] = Some(HostId::new(name));
        let mut missing = size - 1;
        while missing > 0 {
            let Some((bytes, rank, tag)) = receive(&world.any_process(), None) else { continue };
            match (tag, names.get_mut(rank as usize)) {
                (TAG_HELLO, Some(slot @ None)) => {
                    let name = String::from_utf8(bytes)
                        .map_err(|e| Error::Vm(format!("processor name of rank {rank} is not UTF-8: {e}")))?;
                    *slot = Some(HostId::new(name));
                    missing -= 1;
                }
                _ => log::warn!(target: "cos", "unexpected message (tag {tag}) from rank {rank} at start-up"),
            }
        }
        let names: Vec<HostId> = names.into_iter().flatten().collect();
        log::debug!(target: "cos", "MPI machine: {size} ranks on hosts {names:?}");
        Ok(MpiVm {
            universe: Some(universe),
            names,
            running: vec![None; size],
            next_number: 0,
            exit_next: None,
        })
    }

    fn world(&self) -> Result<SimpleCommunicator, Error> {
        self.universe.as_ref().map(Universe::world).ok_or_else(|| Error::Vm("MPI machine finalized".into()))
    }

    fn idle_ranks(&self) -> impl Iterator<Item = usize> + '_ {
        (1..self.running.len()).filter(|&r| self.running[r].is_none())
    }

    /// A result frame from `rank`: the message for the task that runs there.
    fn on_result(&mut self, rank: Rank, bytes: &[u8]) -> Option<(TaskId, Message)> {
        let Some(task) = self.running.get_mut(rank as usize).and_then(Option::take) else {
            log::warn!(target: "cos", "result from rank {rank}, which runs no task; dropped");
            return None;
        };
        let msg = decode::<Message>(bytes).unwrap_or_else(|e| {
            Message::TaskResult(Err(RemoteFailure::BadArguments(format!(
                "malformed result from rank {rank}: {e}"
            ))))
        });
        self.exit_next = Some(task);
        Some((task, msg))
    }
}

/// Greets the spawner, then runs jobs until it says quit; finalizes MPI and exits.
fn worker_loop(universe: Universe, registry: &Registry, name: &str) -> ! {
    let world = universe.world();
    let rank = world.rank();
    log::debug!(target: "cos", "rank {rank} on {name}: worker started");
    let registry = std::rc::Rc::new(registry.clone());
    send(&world, 0, name.as_bytes(), TAG_HELLO);
    let spawner = world.process_at_rank(0);
    loop {
        let Some((bytes, _, tag)) = receive(&spawner, None) else { continue };
        match tag {
            TAG_QUIT => break,
            TAG_JOB => {
                let reply = match decode::<(TaskId, RemoteCall)>(&bytes) {
                    Ok((task, call)) => {
                        log::debug!(target: "cos", "rank {rank}: task {task} runs {}", call.function);
                        // As a local task: a stack overflow in the call ends only the call, and
                        // a panic past the registry becomes this task's failure; the rank lives on.
                        let result = run_guarded(&registry, call).unwrap_or_else(|e| match e {
                            Error::Panicked { message, .. } => Err(RemoteFailure::Panicked(message)),
                            other => Err(RemoteFailure::Panicked(other.to_string())),
                        });
                        if let Err(f) = &result {
                            log::debug!(target: "cos", "rank {rank}: task {task} failed: {f:?}");
                        }
                        Message::TaskResult(result)
                    }
                    Err(e) => {
                        log::error!(target: "cos", "rank {rank}: malformed job: {e}");
                        Message::TaskResult(Err(RemoteFailure::BadArguments(format!("malformed job: {e}"))))
                    }
                };
                let frame = encode(&reply).unwrap_or_else(|e| {
                    let failed =
                        Message::TaskResult(Err(RemoteFailure::Panicked(format!("cannot encode: {e}"))));
                    encode(&failed).unwrap_or_default()
                });
                send(&world, 0, &frame, TAG_RESULT);
            }
            other => log::warn!(target: "cos", "rank {rank}: unexpected message (tag {other}) ignored"),
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
            .field("ranks", &self.names.len())
            .field("hosts", &self.names)
            .field("finalized", &self.universe.is_none())
            .finish()
    }
}

impl VirtualMachine for MpiVm {
    fn slots(&self) -> usize {
        self.names.len()
    }

    fn free_slots(&self) -> usize {
        if self.universe.is_none() {
            return 0;
        }
        self.idle_ranks().count()
    }

    fn hosts(&self) -> Vec<HostId> {
        self.names.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect()
    }

    fn hosts_with_free_slots(&self) -> Vec<HostId> {
        if self.universe.is_none() {
            return Vec::new();
        }
        self.idle_ranks().map(|r| self.names[r].clone()).collect::<BTreeSet<_>>().into_iter().collect()
    }

    fn task_id(&self) -> TaskId {
        TaskId { worker: 0, number: 0 }
    }

    fn host_id(&self, task: Option<TaskId>) -> Option<HostId> {
        let rank = task.map_or(0, |t| t.worker as usize);
        self.names.get(rank).cloned()
    }

    fn parent_task_id(&self) -> Option<TaskId> {
        None
    }

    fn spawn_function(&mut self, call: &RemoteCall, targets: Option<&[HostId]>) -> Result<TaskId, Error> {
        let world = self.world()?;
        let rank = self
            .idle_ranks()
            .find(|&r| targets.is_none_or(|t| t.contains(&self.names[r])))
            .ok_or(Error::NoFreeSlot)?;
        self.next_number += 1;
        let task = TaskId { worker: rank as u32, number: self.next_number };
        let frame = encode(&(task, call))?;
        send(&world, rank as Rank, &frame, TAG_JOB);
        self.running[rank] = Some(task);
        log::debug!(target: "cos", "task {task} sent to rank {rank} on {}", self.names[rank]);
        Ok(task)
    }

    fn receive_message(&mut self, timeout: Option<Duration>) -> Result<Option<(TaskId, Message)>, Error> {
        if let Some(task) = self.exit_next.take() {
            return Ok(Some((task, Message::TaskExit)));
        }
        let world = self.world()?;
        let deadline = timeout.map(|d| Instant::now() + d);
        loop {
            let Some((bytes, rank, tag)) = receive(&world.any_process(), deadline) else { return Ok(None) };
            if tag != TAG_RESULT {
                log::warn!(target: "cos", "unexpected message (tag {tag}) from rank {rank} ignored");
            } else if let Some(m) = self.on_result(rank, &bytes) {
                return Ok(Some(m));
            }
        }
    }

    fn send_message(&mut self, dest: TaskId, _message: Message) -> Result<(), Error> {
        Err(Error::Vm(format!("MPI workers take no messages (to {dest})")))
    }

    /// Waits for the tasks that still run (their results are dropped), tells every worker to
    /// quit and finalizes MPI. MPI cannot be initialized again in this process.
    fn finalize(&mut self) {
        let Ok(world) = self.world() else { return };
        let running = self.running.iter().flatten().count();
        if running > 0 {
            log::debug!(target: "cos", "finalize waits for {running} running tasks");
        }
        while self.running.iter().any(Option::is_some) {
            if let Some((bytes, rank, TAG_RESULT)) = receive(&world.any_process(), None) {
                let _ = self.on_result(rank, &bytes);
            }
        }
        self.exit_next = None;
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
