//! Starting worker processes and taking their connections: the private socket directory, the
//! accepting thread, the command line and environment of a worker.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;

use crate::error::Error;
use crate::machines::process::auth::{self, Secret, SECRET_ENV};
use crate::machines::process::frame::Hello;
use crate::machines::process::Inbound;
use crate::vm::message::decode;
use crate::vm::{io_error, machine, MachineErrorKind};

/// Names the spawner's socket; its presence makes a process a worker.
pub(crate) const SOCKET_ENV: &str = "COS_WORKER_SOCKET";
/// The worker's slot number (1-based, as in [`crate::TaskId::worker`]).
pub(crate) const SLOT_ENV: &str = "COS_WORKER_SLOT";
/// How often the worker sends a heartbeat, in milliseconds.
pub(crate) const HEARTBEAT_ENV: &str = "COS_WORKER_HEARTBEAT_MS";
/// The spawner's process id, for the worker to die with it.
pub(crate) const SPAWNER_ENV: &str = "COS_WORKER_SPAWNER";

/// How long a new connection may take to say hello, in all.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The most connections that wait for their hello at once.
const MAX_PENDING: usize = 64;
/// The longest hello frame taken.
const MAX_HELLO: usize = 1024;
/// The pause after an accept error before accepting again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Creates a private directory in the temporary directory and listens on a socket in it.
pub(crate) fn listen() -> Result<(PathBuf, PathBuf, UnixListener), Error> {
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
                        Err(io_error(format!("cannot listen on {}", socket.display()), e))
                    }
                };
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(io_error(format!("cannot create {}", dir.display()), e)),
        }
    }
    Err(io_error(
        "cannot create a socket directory",
        last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)),
    ))
}

/// The thread that accepts worker connections.
pub(crate) struct Acceptor {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Acceptor {
    /// Accepts connections on `listener` and passes each on with its hello as
    /// [`Inbound::Connected`], then writes a byte to `wake` (non-blocking: a byte that is
    /// there already wakes the machine as well), whose other end the machine waits on.
    /// Only connections that pass [`check`] are passed on.
    pub(crate) fn start(
        listener: UnixListener,
        inbound: Sender<Inbound>,
        wake: UnixStream,
        secret: Secret,
    ) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        wake.set_nonblocking(true).map_err(|e| io_error("cannot set up the accepting thread", e))?;
        let wake = Arc::new(wake);
        let handle = thread::Builder::new()
            .name("cos-process-accept".into())
            .spawn(move || accept_loop(&listener, &stop2, &inbound, &wake, secret))
            .map_err(|e| io_error("cannot start the accepting thread", e))?;
        Ok(Acceptor { stop, handle: Some(handle) })
    }

    /// Stops the thread (it is woken by a connection to `socket`).
    pub(crate) fn stop(mut self, socket: &Path) {
        self.stop.store(true, Ordering::SeqCst);
        if UnixStream::connect(socket).is_ok() {
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }
}

/// Accepts connections and hands each to a thread of its own that waits for its hello, so that
/// no connection delays another; at most [`MAX_PENDING`] connections wait for their hello at
/// once (more are dropped at once). An accept error (too many open files, ...) is logged and
/// accepting goes on after a pause: the thread ends only when the machine stops it.
fn accept_loop(
    listener: &UnixListener,
    stop: &AtomicBool,
    inbound: &Sender<Inbound>,
    wake: &Arc<UnixStream>,
    secret: Secret,
) {
    let pending = Arc::new(AtomicUsize::new(0));
    let mut failing = false;
    loop {
        let conn = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match conn {
            Ok((s, _)) => {
                failing = false;
                s
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted) => {
                continue
            }
            Err(e) => {
                if !failing {
                    log::error!(target: "cos", "cannot accept worker connections: {e}; trying again");
                }
                failing = true;
                thread::sleep(ACCEPT_PAUSE);
                continue;
            }
        };
        if pending.load(Ordering::SeqCst) >= MAX_PENDING {
            log::warn!(target: "cos", "{MAX_PENDING} connections wait for their hello; a new one is dropped");
            continue;
        }
        pending.fetch_add(1, Ordering::SeqCst);
        let (pending2, inbound, secret) = (Arc::clone(&pending), inbound.clone(), secret);
        let wake = Arc::clone(wake);
        let started = thread::Builder::new().name("cos-process-hello".into()).spawn(move || {
            take_hello(stream, &inbound, &wake, &secret);
            pending2.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = started {
            pending.fetch_sub(1, Ordering::SeqCst);
            log::warn!(target: "cos", "cannot wait for a connection's hello: {e}; dropped");
        }
    }
}

/// Waits at most [`HELLO_TIMEOUT`] in all for the connection's hello, checks it and passes it
/// on as [`Inbound::Connected`], waking the machine through `wake`.
fn take_hello(mut stream: UnixStream, inbound: &Sender<Inbound>, wake: &UnixStream, secret: &Secret) {
    let hello = read_hello(&mut stream, Instant::now() + HELLO_TIMEOUT)
        .and_then(|f| decode::<Hello>(&f))
        .and_then(|h| {
            stream.set_read_timeout(None).map(|()| h).map_err(|e| io_error("cannot clear a timeout", e))
        })
        .and_then(|h| check(&stream, h, secret));
    match hello {
        Ok(hello) => {
            if inbound.send(Inbound::Connected { hello, stream }).is_ok() {
                // A full socket already holds a byte that wakes the machine.
                let _ = (&*wake).write(&[1]);
            }
        }
        Err(e) => log::warn!(target: "cos", "connection without a valid hello dropped: {e}"),
    }
}

/// Reads the hello frame by `by`, however slowly its bytes come; a hello is short.
fn read_hello(stream: &mut UnixStream, by: Instant) -> Result<Vec<u8>, Error> {
    let mut r = Until { stream, by };
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(|e| io_error("no hello", e))?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_HELLO {
        return Err(Error::Decode(format!("a hello of {len} bytes")));
    }
    let mut bytes = vec![0; len];
    r.read_exact(&mut bytes).map_err(|e| io_error("no hello", e))?;
    Ok(bytes)
}

/// A stream whose reads fail once `by` has passed.
struct Until<'a> {
    stream: &'a mut UnixStream,
    by: Instant,
}

impl Read for Until<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.by.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the hello took too long"));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// A hello is taken only from a process of this user, naming its own pid, with the run's
/// secret (see [`auth`]); the machine then checks that the pid is the slot's process.
fn check(stream: &UnixStream, hello: Hello, secret: &Secret) -> Result<Hello, Error> {
    let refused = |why: String| machine(MachineErrorKind::Refused, why);
    let (pid, uid) = auth::peer(stream).map_err(|e| io_error("cannot read the peer's credentials", e))?;
    if uid != auth::my_uid() {
        return Err(refused(format!("a connection from user {uid} (process {pid})")));
    }
    if hello.pid != pid {
        return Err(refused(format!("process {pid} said hello as process {}", hello.pid)));
    }
    if !secret.matches(&hello.secret) {
        return Err(refused(format!("process {pid} does not know the run's secret")));
    }
    Ok(hello)
}

/// A request to the launching thread: the slot, and where to send the started process.
type Launch = (usize, Sender<io::Result<Child>>);

/// What a worker process is started as: this program, its arguments, the socket and the run's
/// secret; and the thread that starts them.
///
/// Workers die with their spawner (`PR_SET_PDEATHSIG`), which Linux ties to the *thread* that
/// started them: so they are all started by one thread of the machine's own, which lives as
/// long as the machine, never by whichever thread happens to call into it.
#[derive(Debug)]
pub(crate) struct Launcher {
    pub(crate) program: PathBuf,
    pub(crate) socket: PathBuf,
    requests: Option<Sender<Launch>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Launcher {
    /// Starts the launching thread for `program` with `args`, its workers told `socket`.
    pub(crate) fn start(
        program: PathBuf,
        args: Vec<OsString>,
        socket: PathBuf,
        secret: &Secret,
        heartbeat: Duration,
    ) -> Result<Self, Error> {
        let heartbeat = heartbeat.as_millis().max(1).to_string();
        let (requests, rx) = crossbeam_channel::unbounded::<Launch>();
        let (p, s) = (program.clone(), socket.clone());
        let secret_hex = secret.to_hex();
        let handle = thread::Builder::new()
            .name("cos-process-launch".into())
            .spawn(move || {
                let spawner = std::process::id().to_string();
                let secret = secret_hex;
                for (slot, reply) in rx {
                    let child = Command::new(&p)
                        .args(&args)
                        .env(SOCKET_ENV, &s)
                        .env(SLOT_ENV, (slot + 1).to_string())
                        .env(SPAWNER_ENV, &spawner)
                        .env(SECRET_ENV, &secret)
                        .env(HEARTBEAT_ENV, &heartbeat)
                        .stdin(Stdio::null())
                        .spawn();
                    if let Err(Ok(mut c)) = reply.send(child).map_err(|e| e.into_inner()) {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                }
            })
            .map_err(|e| io_error("cannot start the launching thread", e))?;
        Ok(Launcher { program, socket, requests: Some(requests), handle: Some(handle) })
    }

    /// Starts the process for `slot` (0-based).
    pub(crate) fn launch(&self, slot: usize) -> Result<Child, Error> {
        let gone = || machine(MachineErrorKind::Io, "the launching thread is gone");
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.requests.as_ref().ok_or_else(gone)?.send((slot, tx)).map_err(|_| gone())?;
        rx.recv()
            .map_err(|_| gone())?
            .map_err(|e| io_error(format!("cannot start {}", self.program.display()), e))
    }
}

impl Drop for Launcher {
    /// Ends the launching thread; the machine has ended its workers before (a worker still
    /// running would get its parent-death signal now).
    fn drop(&mut self) {
        self.requests = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
