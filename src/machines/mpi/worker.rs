//! A worker rank: its serving loop on the main thread, and its control thread.
//!
//! The main thread serves jobs with the serving loop every machine's workers use. While a job
//! runs, the rank's control thread (MPI is initialized with `MPI_THREAD_MULTIPLE`) watches
//! the spawner for the job's cancel and for the machine's finalize, and sends a heartbeat
//! every interval:
//!
//! - a cancel ends every process group the job started (and every one it starts until it
//!   returns), so that a job waiting on its simulator returns soon; the job's late report goes
//!   to the spawner, which drops it and only then gives the rank a new job;
//! - a finalize ends the job's groups and gives the job the spawner's grace; a job still
//!   running after it (a Rust loop that never returns) does not keep the MPI job alive: the
//!   control thread finalizes MPI and exits the process with status 0;
//! - between jobs the control thread makes no MPI call: it looks at the running job every
//!   [`CONTROL_IDLE_POLL`] and sleeps on a condition variable.
//!
//! A job's start and end do not wake the control thread (a wake costs both sides a context
//! switch, which was most of a short job's round trip): it finds a new job at its next look,
//! within [`CONTROL_IDLE_POLL`], so a cancel or a heartbeat is at most that much late. Only
//! the machine's end and a job's end after a finalize wake it.
//!
//! Without `MPI_THREAD_MULTIPLE` there is no control thread: a cancelled job runs until it
//! returns, a hung one keeps `mpirun` waiting, and no heartbeat is sent.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use ::mpi::environment::Universe;
use ::mpi::topology::{Communicator, SimpleCommunicator};
use ::mpi::Rank;

use super::wire::{
    receive, send, try_receive, try_receive_tag, Backoff, Up, TAG_CANCEL, TAG_HEARTBEAT, TAG_HELLO, TAG_JOB,
    TAG_MESSAGE_DOWN, TAG_MESSAGE_UP, TAG_QUIT, TAG_RESULT, TAG_SETUP,
};
use super::Tuning;
use crate::environment::{this_thread_groups, ThreadGroups};
use crate::error::Error;
use crate::machines::setup::WorkerSetup;
use crate::machines::worker::{serve, End, Report, WorkerLink};
use crate::spawner_call::{self, SpawnerLink};
use crate::vm::message::{decode, encode, Job};
use crate::vm::{machine, MachineErrorKind, Registry, RemoteCall, RemoteErrorKind, RemoteFailure, TaskId};

/// What the main thread and the control thread of a worker rank share.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// The job the main thread runs.
    running: Option<TaskId>,
    /// The spawner said quit (the control thread may have taken the message).
    quit: bool,
    /// The main thread is leaving: the control thread ends.
    ended: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    /// Notes the job the main thread runs (or `None`) without waking the control thread,
    /// unless a finalize waits for the job's end.
    fn set_running(&self, running: Option<TaskId>) {
        let mut s = self.lock();
        s.running = running;
        if s.quit {
            drop(s);
            self.changed.notify_all();
        }
    }
}

/// A worker rank's side: jobs from rank 0, answers to it.
struct MpiLink {
    world: SimpleCommunicator,
    rank: Rank,
    shared: Arc<Shared>,
    tuning: Tuning,
}

impl WorkerLink for MpiLink {
    fn next_job(&mut self) -> Result<Option<Job>, Error> {
        let world = SimpleCommunicator::world();
        let spawner = world.process_at_rank(0);
        let mut backoff = Backoff::new(self.tuning.spin);
        loop {
            if self.shared.lock().quit {
                return Ok(None);
            }
            let Some((bytes, _, tag)) = try_receive(&spawner) else {
                backoff.wait(None);
                continue;
            };
            backoff = Backoff::new(self.tuning.spin);
            match tag {
                TAG_QUIT => return Ok(None),
                TAG_JOB => match decode::<Job>(&bytes) {
                    Ok(job) => {
                        log::debug!(target: "cos", "rank {}: task {} runs {}", self.rank, job.task, job.call.function);
                        self.shared.set_running(Some(job.task));
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
                TAG_MESSAGE_DOWN | TAG_CANCEL => {
                    log::debug!(target: "cos", "rank {}: a message or cancel for an ended task dropped", self.rank)
                }
                other => {
                    log::warn!(target: "cos", "rank {}: unexpected message (tag {other}) ignored", self.rank)
                }
            }
        }
    }

    fn report(&mut self, report: Report) -> Result<(), Error> {
        self.shared.set_running(None);
        let up = match report {
            Report::Finished { task, result, retire } => Up::Finished { task, result, retire },
            Report::Lost { task, why } => Up::Lost { task, why },
        };
        let frame = encode(&up).or_else(|e| {
            let failure = RemoteFailure::new(RemoteErrorKind::BadResult, format!("cannot encode: {e}"));
            encode(&Up::Finished { task: up.task(), result: Err(failure), retire: false })
        })?;
        send(&self.world, 0, &frame, TAG_RESULT, self.tuning.spin);
        Ok(())
    }
}

/// A worker rank's link for its tasks' user messages. Spawner calls are not carried over MPI:
/// they fail with [`MachineErrorKind::Unsupported`].
struct MpiSpawnerLink {
    world: SimpleCommunicator,
    tuning: Tuning,
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
        send(&self.world, 0, &encode(&(task, bytes))?, TAG_MESSAGE_UP, self.tuning.spin);
        Ok(())
    }

    fn receive_message(&mut self, task: TaskId, deadline: Instant) -> Result<Option<Vec<u8>>, Error> {
        let spawner = self.world.process_at_rank(0);
        let mut backoff = Backoff::new(self.tuning.spin);
        loop {
            if let Some(bytes) = try_receive_tag(&spawner, TAG_MESSAGE_DOWN) {
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

/// How often the control thread looks at the spawner's messages while a job runs.
const CONTROL_POLL: Duration = Duration::from_millis(5);
/// How often the control thread looks for a new job between jobs (no MPI call then).
const CONTROL_IDLE_POLL: Duration = Duration::from_millis(20);

/// The job the control thread watches.
struct Watched {
    task: TaskId,
    cancelled: bool,
    /// The last heartbeat (or the job's discovery).
    beat: Instant,
}

/// The control thread: while a job runs, takes its cancel and the machine's finalize, and
/// sends heartbeats (see the module's documentation).
fn control(shared: &Shared, groups: &ThreadGroups, tuning: Tuning) {
    let world = SimpleCommunicator::world();
    let spawner = world.process_at_rank(0);
    let mut watched: Option<Watched> = None;
    loop {
        let running = {
            let s = shared.lock();
            if s.ended {
                return;
            }
            s.running
        };
        watched = running.map(|task| match watched.take() {
            Some(w) if w.task == task => w,
            _ => Watched { task, cancelled: false, beat: Instant::now() },
        });
        if let Some(w) = watched.as_mut() {
            if let Some(bytes) = try_receive_tag(&spawner, TAG_CANCEL) {
                if decode::<TaskId>(&bytes).ok() == Some(w.task) {
                    log::debug!(target: "cos", "rank {}: task {} cancelled", world.rank(), w.task);
                    w.cancelled = true;
                }
            }
            if let Some(bytes) = try_receive_tag(&spawner, TAG_QUIT) {
                let grace = decode::<u64>(&bytes).map_or(Duration::ZERO, Duration::from_millis);
                quit_while_busy(shared, groups, w.task, grace);
                return;
            }
            if w.cancelled {
                // Also the groups the job started since the cancel.
                groups.kill_all();
            }
            if w.beat.elapsed() >= tuning.heartbeat {
                if let Ok(frame) = encode(&w.task) {
                    send(&world, 0, &frame, TAG_HEARTBEAT, tuning.spin);
                }
                w.beat = Instant::now();
            }
        }
        let period = if watched.is_some() { CONTROL_POLL } else { CONTROL_IDLE_POLL };
        let s = shared.lock();
        let _ = shared.changed.wait_timeout_while(s, period, |s| !s.ended).unwrap_or_else(|p| p.into_inner());
    }
}

/// The spawner finalizes while `task` runs: its groups end (and no new ones start), and the
/// main thread is told to quit after it; a job still running after `grace` is left behind:
/// MPI is finalized here and the process exits with status 0.
fn quit_while_busy(shared: &Shared, groups: &ThreadGroups, task: TaskId, grace: Duration) {
    groups.close();
    shared.update(|s| s.quit = true);
    let s = shared.lock();
    let (s, timeout) = shared
        .changed
        .wait_timeout_while(s, grace, |s| s.running == Some(task))
        .unwrap_or_else(|p| p.into_inner());
    if !timeout.timed_out() || s.running != Some(task) {
        return;
    }
    log::warn!(target: "cos", "task {task} still runs after the finalize grace; the rank exits without it");
    // SAFETY: MPI_Finalize may be called once, after MPI_Init, by a process whose every other
    // MPI call has completed; the main thread is inside the job (its MPI calls, if any, are
    // the job's messages, blocked by no one), and the process exits right after, so no MPI
    // call follows.
    unsafe {
        ::mpi::ffi::MPI_Finalize();
    }
    // SAFETY: _exit(2) ends the process at once; nothing of the abandoned job runs again.
    unsafe { libc::_exit(0) }
}

/// Greets the spawner, then serves jobs until it says quit; finalizes MPI and exits. A rank
/// that must retire (see the machine's documentation) waits for the quit message without
/// serving.
pub(super) fn worker_loop(
    universe: Universe,
    registry: &Registry,
    name: &str,
    tuning: Tuning,
    control_thread: bool,
) -> ! {
    let world = universe.world();
    let rank = world.rank();
    log::debug!(target: "cos", "rank {rank} on {name}: worker started");
    send(&world, 0, name.as_bytes(), TAG_HELLO, tuning.spin);
    let spawner = world.process_at_rank(0);
    let setup = loop {
        match receive(&spawner, None, tuning.spin) {
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
    let shared = Arc::new(Shared::default());
    let control = control_thread.then(|| {
        let (shared, groups) = (Arc::clone(&shared), this_thread_groups());
        thread::Builder::new()
            .name("cos-mpi-control".into())
            .spawn(move || control(&shared, &groups, tuning))
            .map_err(|e| log::error!(target: "cos", "rank {rank}: no control thread: {e}"))
            .ok()
    });
    let _link = spawner_call::install(Box::new(MpiSpawnerLink { world: universe.world(), tuning }));
    let served = match setup {
        Ok(setup) => serve(
            registry,
            setup,
            MpiLink { world: universe.world(), rank, shared: Arc::clone(&shared), tuning },
        ),
        Err(end) => end,
    };
    match served {
        End::HungUp => {}
        end => {
            log::warn!(target: "cos", "rank {rank}: out of service ({end:?}); waiting for the end of the run");
            let mut backoff = Backoff::new(tuning.spin);
            while !shared.lock().quit {
                match try_receive(&spawner) {
                    Some((_, _, TAG_QUIT)) => break,
                    Some(_) => {}
                    None => backoff.wait(None),
                }
            }
        }
    }
    shared.update(|s| s.ended = true);
    if let Some(Some(handle)) = control {
        let _ = handle.join();
    }
    log::debug!(target: "cos", "rank {rank}: worker quits");
    drop(world);
    drop(universe);
    std::process::exit(0)
}

/// The grace a quit message carries.
pub(super) fn quit_frame(grace: Duration) -> Vec<u8> {
    encode(&(grace.as_millis().min(u64::MAX as u128) as u64)).unwrap_or_default()
}
