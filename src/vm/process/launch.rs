//! Starting worker processes and taking their connections: the private socket directory, the
//! accepting thread, the command line and environment of a worker.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;

use crate::error::Error;
use crate::vm::message::decode;
use crate::vm::process::frame::{read_frame, Hello};
use crate::vm::process::Inbound;
use crate::vm::{io_error, machine, MachineErrorKind};

/// Names the spawner's socket; its presence makes a process a worker.
pub(crate) const SOCKET_ENV: &str = "COS_WORKER_SOCKET";
/// The worker's slot number (1-based, as in [`crate::TaskId::worker`]).
pub(crate) const SLOT_ENV: &str = "COS_WORKER_SLOT";
/// The spawner's process id, for the worker to die with it.
pub(crate) const SPAWNER_ENV: &str = "COS_WORKER_SPAWNER";

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// [`Inbound::Connected`].
    pub(crate) fn start(listener: UnixListener, inbound: Sender<Inbound>) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let handle = thread::Builder::new()
            .name("cos-process-accept".into())
            .spawn(move || accept_loop(&listener, &stop2, &inbound))
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

fn accept_loop(listener: &UnixListener, stop: &AtomicBool, inbound: &Sender<Inbound>) {
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
            .map_err(|e| io_error("cannot set a timeout", e))
            .and_then(|()| read_frame(&mut stream))
            .and_then(|f| f.ok_or_else(|| machine(MachineErrorKind::Protocol, "no hello")))
            .and_then(|f| decode::<Hello>(&f))
            .and_then(|h| {
                stream.set_read_timeout(None).map(|()| h).map_err(|e| io_error("cannot clear a timeout", e))
            });
        match hello {
            Ok(hello) => {
                if inbound.send(Inbound::Connected { hello, stream }).is_err() {
                    return;
                }
            }
            Err(e) => log::warn!(target: "cos", "connection without a valid hello dropped: {e}"),
        }
    }
}

/// A request to the launching thread: the slot, and where to send the started process.
type Launch = (usize, Sender<io::Result<Child>>);

/// What a worker process is started as: this program, its arguments, and the socket; and the
/// thread that starts them.
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
    pub(crate) fn start(program: PathBuf, args: Vec<OsString>, socket: PathBuf) -> Result<Self, Error> {
        let (requests, rx) = crossbeam_channel::unbounded::<Launch>();
        let (p, s) = (program.clone(), socket.clone());
        let handle = thread::Builder::new()
            .name("cos-process-launch".into())
            .spawn(move || {
                let spawner = std::process::id().to_string();
                for (slot, reply) in rx {
                    let child = Command::new(&p)
                        .args(&args)
                        .env(SOCKET_ENV, &s)
                        .env(SLOT_ENV, (slot + 1).to_string())
                        .env(SPAWNER_ENV, &spawner)
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
