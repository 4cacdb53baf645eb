//! The worker process: connects to the spawner, serves its jobs with the shared serving loop,
//! and ends when the spawner hangs up (or when it must retire).

use std::collections::VecDeque;
use std::io::{self, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::machines::process::auth::{Secret, SECRET_ENV};
use crate::machines::process::frame::{read_frame, write_frame, Down, Hello, Up};
use crate::machines::process::launch::{HEARTBEAT_ENV, SLOT_ENV, SOCKET_ENV, SPAWNER_ENV};
use crate::machines::process::spin::{readable_within, SOCKET_SPIN};
use crate::machines::worker::{serve, End, Report, WorkerLink};
use crate::spawner_call::{self, SpawnerLink};
use crate::vm::message::{decode, encode, Job};
use crate::vm::{io_error, machine, MachineErrorKind, Registry, RemoteCall, RemoteFailure, TaskId};

/// Set once this process has become a worker: a worker starts no workers of its own.
static IS_WORKER: AtomicBool = AtomicBool::new(false);

/// Whether this process was started as a worker of a [`crate::ProcessVm`], or has become one.
pub(crate) fn is_worker_process() -> bool {
    IS_WORKER.load(Ordering::SeqCst) || std::env::var_os(SOCKET_ENV).is_some()
}

/// The worker process: connects to the spawner, runs its jobs until it hangs up, and ends the
/// process.
pub(crate) fn worker_main(registry: &Registry) -> ! {
    IS_WORKER.store(true, Ordering::SeqCst);
    let code = match run(registry) {
        Ok(End::HungUp) => 0,
        // The spawner knows from the last frame and starts another worker.
        Ok(End::Retired) => 0,
        Ok(End::Broken(why)) => {
            eprintln!("cos worker process {}: {why}", std::process::id());
            1
        }
        Err(e) => {
            eprintln!("cos worker process {}: {e}", std::process::id());
            1
        }
    };
    let _ = io::stdout().flush();
    std::process::exit(code)
}

fn run(registry: &Registry) -> Result<End, Error> {
    let socket = std::env::var_os(SOCKET_ENV)
        .ok_or_else(|| machine(MachineErrorKind::Config, format!("{SOCKET_ENV} is not set")))?;
    let slot: u32 = std::env::var(SLOT_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| machine(MachineErrorKind::Config, format!("{SLOT_ENV} is not a slot number")))?;
    let secret = std::env::var(SECRET_ENV).ok().as_deref().and_then(Secret::from_hex).ok_or_else(|| {
        machine(MachineErrorKind::Config, format!("{SECRET_ENV} does not hold the run's secret"))
    })?;
    // A busy worker must not outlive its spawner: die with it (with the spawner's launching
    // thread, which lives as long as the machine).
    if let Some(spawner) = std::env::var(SPAWNER_ENV).ok().and_then(|s| s.parse::<u32>().ok()) {
        match crate::environment::die_with_parent(spawner) {
            Ok(true) => {}
            Ok(false) => return Err(machine(MachineErrorKind::Finalized, "the spawner is gone")),
            Err(e) => return Err(io_error("cannot tie the worker to its spawner", e)),
        }
    }
    // Programs this worker starts are not workers, and do not learn the secret.
    std::env::remove_var(SOCKET_ENV);
    std::env::remove_var(SLOT_ENV);
    std::env::remove_var(SPAWNER_ENV);
    let heartbeat = std::env::var(HEARTBEAT_ENV).ok().and_then(|s| s.parse::<u64>().ok());
    std::env::remove_var(SECRET_ENV);
    std::env::remove_var(HEARTBEAT_ENV);
    let mut stream = UnixStream::connect(&socket)
        .map_err(|e| io_error(format!("cannot connect to {}", PathBuf::from(&socket).display()), e))?;
    write_frame(&mut stream, &encode(&Hello { slot, pid: std::process::id(), secret: secret.0 })?)?;
    let setup = match read_frame(&mut stream)? {
        Some(frame) => match decode::<Down>(&frame)? {
            Down::Setup(setup) => setup,
            _ => return Err(machine(MachineErrorKind::Protocol, "the spawner sent no setup")),
        },
        None => return Ok(End::HungUp),
    };
    let share = |s: &UnixStream| s.try_clone().map_err(|e| io_error("cannot share the socket", e));
    let writer = Arc::new(Mutex::new(share(&stream)?));
    if let Some(ms) = heartbeat {
        beat(Arc::clone(&writer), Duration::from_millis(ms.max(1)))?;
    }
    let inbound = Arc::new(Mutex::new(BufReader::with_capacity(INBOUND_BUFFER, stream)));
    let calls =
        ProcessLink { inbound: Arc::clone(&inbound), writer: Arc::clone(&writer), early: VecDeque::new() };
    let _link = spawner_call::install(Box::new(calls));
    Ok(serve(registry, setup, ProcessLink { inbound, writer, early: VecDeque::new() }))
}

/// Sends a heartbeat every `interval` from a thread of its own, for as long as the process
/// lives and the spawner reads, whatever the job does: the spawner tells a stopped or cut-off
/// worker from a slow job by them.
fn beat(writer: Arc<Mutex<UnixStream>>, interval: Duration) -> Result<(), Error> {
    let frame = encode(&Up::Heartbeat)?;
    std::thread::Builder::new()
        .name("cos-worker-heartbeat".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
            if write_frame(&mut *w, &frame).is_err() {
                return;
            }
        })
        .map(drop)
        .map_err(|e| io_error("cannot start the heartbeat thread", e))
}

/// The read side of a worker's socket, buffered so that one read takes a frame's length and
/// body (and what follows them) in one system call. Its job link and its spawner-call link
/// share it: a frame one of them read ahead waits here for the other, never in a buffer the
/// other does not look at.
type Inbound = Arc<Mutex<BufReader<UnixStream>>>;

/// How many bytes one read of [`Inbound`] takes at most.
const INBOUND_BUFFER: usize = 64 * 1024;

/// Locks the read side; a panic elsewhere while it was held leaves no half-read state that
/// matters (a frame is read whole or its error is reported), so a poisoned lock is taken.
fn lock(inbound: &Inbound) -> std::sync::MutexGuard<'_, BufReader<UnixStream>> {
    inbound.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A worker process's side of its socket, for its jobs and for its spawner calls (read only
/// while the calling task waits).
struct ProcessLink {
    /// Read only, shared by the job link and the spawner-call link.
    inbound: Inbound,
    /// Every frame to the spawner is written whole under this lock (the heartbeat thread
    /// writes too).
    writer: Arc<Mutex<UnixStream>>,
    /// User messages read while a spawner call waited for its reply, bounded by
    /// [`WORKER_MAILBOX_LIMIT`].
    early: VecDeque<(TaskId, Vec<u8>)>,
}

/// How many user messages a worker process keeps that came while its task waited for a
/// spawner call's reply; one beyond is dropped (and logged).
const WORKER_MAILBOX_LIMIT: usize = 4096;

impl ProcessLink {
    fn send(&mut self, up: &Up) -> Result<(), Error> {
        let frame = encode(up)?;
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        write_frame(&mut *w, &frame)
    }
}

impl WorkerLink for ProcessLink {
    fn next_job(&mut self) -> Result<Option<Job>, Error> {
        let mut inbound = lock(&self.inbound);
        // The next job of a stream of short ones comes within microseconds of the last report;
        // one that came with the last frame is already read.
        if inbound.buffer().is_empty() {
            readable_within(inbound.get_ref(), SOCKET_SPIN);
        }
        loop {
            let Some(frame) = read_frame(&mut *inbound)? else { return Ok(None) };
            match decode::<Down>(&frame)? {
                Down::Run(job) => return Ok(Some(job)),
                Down::SpawnerReply(_) => {
                    log::debug!(target: "cos", "a spawner reply with no call waiting dropped")
                }
                Down::Setup(_) => log::warn!(target: "cos", "a second setup frame ignored"),
                Down::Message { to, .. } => {
                    log::debug!(target: "cos", "a message for ended task {to} dropped")
                }
            }
        }
    }

    fn report(&mut self, report: Report) -> Result<(), Error> {
        self.send(&match report {
            Report::Finished { task, result, retire } => Up::Finished { task, result, retire },
            Report::Lost { task, why } => Up::Lost { task, why },
        })
    }
}

impl SpawnerLink for ProcessLink {
    fn call(
        &mut self,
        task: TaskId,
        call: RemoteCall,
        wait: bool,
    ) -> Result<Option<Result<Vec<u8>, RemoteFailure>>, Error> {
        self.send(&Up::SpawnerCall { task, call, reply: wait })?;
        if !wait {
            return Ok(None);
        }
        loop {
            let frame = read_frame(&mut *lock(&self.inbound))?
                .ok_or_else(|| machine(MachineErrorKind::Finalized, "the spawner is gone"))?;
            match decode::<Down>(&frame)? {
                Down::SpawnerReply(r) => return Ok(Some(r)),
                Down::Message { to, bytes } if to == task && self.early.len() < WORKER_MAILBOX_LIMIT => {
                    self.early.push_back((to, bytes))
                }
                Down::Message { to, .. } => log::error!(target: "cos", "a message for task {to} dropped"),
                Down::Run(job) => return Err(busy(job.task)),
                Down::Setup(_) => {
                    return Err(machine(MachineErrorKind::Protocol, "a setup frame during a spawner call"))
                }
            }
        }
    }

    fn send_message(&mut self, task: TaskId, bytes: Vec<u8>) -> Result<(), Error> {
        self.send(&Up::Message { task, bytes })
    }

    fn receive_message(&mut self, task: TaskId, deadline: Instant) -> Result<Option<Vec<u8>>, Error> {
        while let Some((to, bytes)) = self.early.pop_front() {
            if to == task {
                return Ok(Some(bytes));
            }
        }
        loop {
            let mut inbound = lock(&self.inbound);
            // Unless a frame is already read ahead, wait until one starts to arrive, then read it
            // whole (the spawner writes frames whole).
            if inbound.buffer().is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
                let mut fd =
                    libc::pollfd { fd: inbound.get_ref().as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: poll(2) reads and writes `nfds` (here 1) `struct pollfd`s at `fds`; `fd`
                // is one such struct that lives across the call, and its descriptor is the open
                // socket `inbound` owns, borrowed for the call.
                let ready = unsafe { libc::poll(&mut fd, 1, ms) };
                if ready == 0 {
                    return Ok(None);
                }
                if ready < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(io_error("cannot wait for a message", e));
                }
            }
            let frame = read_frame(&mut *inbound)?
                .ok_or_else(|| machine(MachineErrorKind::Finalized, "the spawner is gone"))?;
            match decode::<Down>(&frame)? {
                Down::Message { to, bytes } if to == task => return Ok(Some(bytes)),
                Down::Message { to, .. } => {
                    log::debug!(target: "cos", "a message for ended task {to} dropped")
                }
                Down::SpawnerReply(_) => {
                    log::debug!(target: "cos", "a spawner reply with no call waiting dropped")
                }
                Down::Run(job) => return Err(busy(job.task)),
                Down::Setup(_) => log::warn!(target: "cos", "a second setup frame ignored"),
            }
        }
    }
}

/// The error of a job sent to a worker whose task still runs.
fn busy(task: TaskId) -> Error {
    machine(MachineErrorKind::Protocol, format!("the spawner sent task {task} to a busy worker"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(down: &Down) -> Vec<u8> {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &encode(down).unwrap()).unwrap();
        bytes
    }

    fn message(to: TaskId, x: u8) -> Down {
        Down::Message { to, bytes: encode(&x).unwrap() }
    }

    /// A job, two messages to its task and a reply come in one write, so the job link's first
    /// read takes them all: the spawner-call link, which shares the read side, still gets each
    /// at once, and its wait does not block on a socket whose bytes are already read.
    #[test]
    fn frames_read_ahead_by_one_link_reach_the_other() {
        let (mut spawner, worker) = UnixStream::pair().unwrap();
        let task = TaskId { worker: 1, number: 7 };
        let job = Job::new(task, crate::vm::HostId::new("h"), RemoteCall::new("f", &()).unwrap());
        let mut bytes = frame(&Down::Run(job.clone()));
        bytes.extend(frame(&message(task, 1)));
        bytes.extend(frame(&message(task, 2)));
        bytes.extend(frame(&Down::SpawnerReply(Ok(vec![9]))));
        bytes.extend(frame(&message(task, 3)));
        spawner.write_all(&bytes).unwrap();
        let writer = Arc::new(Mutex::new(worker.try_clone().unwrap()));
        let inbound = Arc::new(Mutex::new(BufReader::with_capacity(INBOUND_BUFFER, worker)));
        let link = |inbound: &Inbound| ProcessLink {
            inbound: Arc::clone(inbound),
            writer: Arc::clone(&writer),
            early: VecDeque::new(),
        };
        let (mut jobs, mut calls) = (link(&inbound), link(&inbound));
        assert_eq!(jobs.next_job().unwrap(), Some(job));
        assert!(!lock(&inbound).buffer().is_empty(), "the first read took the frames behind the job");
        // A deadline in the past: only what was already read can be returned.
        let now = Instant::now();
        assert_eq!(calls.receive_message(task, now).unwrap(), Some(encode(&1u8).unwrap()));
        // The call's wait keeps the message that came before the reply for the next receive.
        assert_eq!(calls.call(task, RemoteCall::new("g", &()).unwrap(), true).unwrap(), Some(Ok(vec![9])));
        assert_eq!(calls.receive_message(task, now).unwrap(), Some(encode(&2u8).unwrap()));
        assert_eq!(calls.receive_message(task, now).unwrap(), Some(encode(&3u8).unwrap()));
        assert_eq!(calls.receive_message(task, now).unwrap(), None, "nothing more came");
        let up = read_frame(&mut spawner).unwrap().expect("the call's frame");
        assert!(matches!(decode::<Up>(&up).unwrap(), Up::SpawnerCall { reply: true, .. }));
    }
}
