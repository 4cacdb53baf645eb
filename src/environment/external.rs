//! External programs (the simulator) started by a task, each in a process group of its own,
//! so that the whole group (the program and every child it forks) can be ended at once.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};

use crate::environment::prepare::task_working_dir;
use crate::environment::watchdog;
use crate::environment::{ProcessError, ProcessErrorKind};

/// How long a group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_millis(500);
/// How much of a program's standard error is kept.
const TAIL_BYTES: usize = 8 * 1024;
/// How long the end of standard error is waited for once the program has ended (a child that
/// left the group may hold the pipe open).
const TAIL_WAIT: Duration = Duration::from_millis(500);

/// The shared state of a running group: the leader and how it ended.
#[derive(Debug)]
struct Inner {
    child: Child,
    /// A pidfd of the leader, readable once it has ended (Linux 5.3 and later).
    pidfd: Option<OwnedFd>,
    /// The group's watchdog process (see `watchdog`), reaped with the leader.
    watchdog: Option<libc::pid_t>,
    status: Option<ExitStatus>,
    killed: bool,
}

impl Inner {
    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Ends the group: SIGTERM, at most [`KILL_GRACE`] for the leader to end, SIGKILL to the
    /// whole group, then reaps the leader. Nothing is signalled once the leader is reaped, so
    /// a reused process id is never hit.
    fn terminate(&mut self) {
        if self.status.is_some() {
            return;
        }
        signal_group(self.pid(), libc::SIGTERM);
        wait_exit(self.pidfd.as_ref().map(AsRawFd::as_raw_fd), self.pid(), Some(KILL_GRACE));
        self.killed = true;
        self.reap();
    }

    /// After the leader ended (or to end it): SIGKILL to what is left of the group, then reaps
    /// the leader.
    fn reap(&mut self) {
        signal_group(self.pid(), libc::SIGKILL);
        if let Some(w) = self.watchdog.take() {
            watchdog::reap(w);
        }
        // The leader has ended or got SIGKILL, so this returns.
        match self.child.wait() {
            Ok(s) => self.status = Some(s),
            Err(e) => {
                log::warn!(target: "cos", "cannot reap process {}: {e}", self.pid());
                // Counted as ended with a failure: nothing to wait for any more.
                self.status = Some(std::os::unix::process::ExitStatusExt::from_raw(libc::SIGKILL));
            }
        }
    }
}

fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill(2) takes plain integers; a negative pid names the process group `pgid`. The
    // group's leader is our child and not yet reaped, so the group id is not reused.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Whether the process `pid` (our child) has ended, without reaping it.
fn exited_nowait(pid: libc::pid_t) -> bool {
    // SAFETY: `siginfo_t` is a plain C struct for which zero bytes are valid; waitid(2) fills
    // it. With WNOWAIT the child stays waitable; with WNOHANG and no change si_pid stays 0.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        rc == 0 && info.si_pid() != 0
    }
}

/// Waits until the child `pid` has ended (true) or `timeout` passed (false), without reaping.
fn wait_exit(pidfd: Option<RawFd>, pid: libc::pid_t, timeout: Option<Duration>) -> bool {
    let deadline = timeout.map(|t| Instant::now() + t);
    if let Some(fd) = pidfd {
        loop {
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    // Round up, so that a deadline is not missed by a fraction of a millisecond.
                    left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int
                }
            };
            let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: poll(2) reads and writes `nfds` (1) pollfd structures at `fds`; `p` is one,
            // alive for the call.
            let rc = unsafe { libc::poll(&mut p, 1, ms) };
            if rc > 0 {
                return true;
            }
            if rc == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                return exited_nowait(pid);
            }
            if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break; // poll cannot wait on it: fall back to polling waitid
            }
        }
    }
    let mut step = Duration::from_millis(1);
    loop {
        if exited_nowait(pid) {
            return true;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return false;
        }
        let nap = deadline.map_or(step, |d| step.min(d - now));
        thread::sleep(nap);
        step = (step * 2).min(Duration::from_millis(50));
    }
}

/// The longest a task waiting for a program blocks its thread at a time when no other local
/// task could run meanwhile.
const ALONE_SLICE: Duration = Duration::from_millis(50);
/// How long a task waiting for a program blocks its thread at a time while other local tasks
/// exist.
const SHARED_SLICE: Duration = Duration::from_millis(1);

/// [`wait_exit`] from a local task, cooperatively: between short looks at the program the
/// task yields, so the other tasks of its thread (a local task the remote function spawned,
/// the serving loop's own) run on while it waits. When only this task and the program that
/// waits for it are left, nothing else could run, and it blocks on the program a slice at a
/// time (a cancel from another thread ends the group, which wakes it at once).
fn wait_in_task(pidfd: Option<RawFd>, pid: libc::pid_t, deadline: Option<Instant>) -> bool {
    loop {
        if wait_exit(pidfd, pid, Some(Duration::ZERO)) {
            return true;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return false;
        }
        crate::os::yield_now();
        let slice = if crate::os::local_task_count() <= 2 { ALONE_SLICE } else { SHARED_SLICE };
        let slice = deadline.map_or(slice, |d| slice.min(d.saturating_duration_since(Instant::now())));
        if wait_exit(pidfd, pid, Some(slice)) {
            return true;
        }
    }
}

fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new file descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a file descriptor just returned to us and owned by nothing else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The groups started on one thread that may still run, shared so that a machine can end
/// them from another thread (a [`crate::ThreadVm`] whose cancelled job's thread runs on).
#[derive(Debug, Clone, Default)]
pub(crate) struct ThreadGroups(Arc<Mutex<Groups>>);

#[derive(Debug, Default)]
struct Groups {
    live: Vec<Weak<Mutex<Inner>>>,
    /// Set by [`ThreadGroups::close`]: the thread may start no more groups.
    closed: bool,
}

impl ThreadGroups {
    fn lock(&self) -> std::sync::MutexGuard<'_, Groups> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends every group that still runs (see [`kill_all`]) and returns how many there were.
    pub(crate) fn kill_all(&self) -> usize {
        let groups = std::mem::take(&mut self.lock().live);
        let mut killed = 0;
        for g in groups.iter().filter_map(Weak::upgrade) {
            let mut inner = lock(&g);
            if inner.status.is_none() {
                inner.terminate();
                killed += 1;
            }
        }
        killed
    }

    /// Ends every group that still runs, and refuses the groups the thread starts from now on
    /// ([`ProcessErrorKind::Killed`]): its job was cancelled or timed out and the thread only
    /// runs on until the function returns.
    pub(crate) fn close(&self) -> usize {
        self.lock().closed = true;
        self.kill_all()
    }
}

thread_local! {
    /// The groups started on this thread that may still run.
    static REGISTRY: ThreadGroups = ThreadGroups::default();
}

/// The groups of the calling thread, for ending them from another thread.
pub(crate) fn this_thread_groups() -> ThreadGroups {
    REGISTRY.with(ThreadGroups::clone)
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// Ends every process group started on this thread that still runs (SIGTERM, then SIGKILL after
/// [`KILL_GRACE`], and reaps it), and returns how many there were. A worker calls it when its
/// task ends, is cancelled or times out, and before it exits; the task's [`ProcessGroup`]s then
/// report [`ProcessErrorKind::Killed`].
///
/// ```
/// use std::process::Command;
/// let mut g = cos::ProcessGroup::start(Command::new("sleep").arg("100")).unwrap();
/// assert_eq!(cos::kill_all(), 1);
/// assert_eq!(g.wait(None).unwrap_err().kind, cos::ProcessErrorKind::Killed);
/// ```
pub fn kill_all() -> usize {
    REGISTRY.try_with(ThreadGroups::clone).map_or(0, |g| g.kill_all())
}

/// The end of a program's standard error, filled by a reader thread.
type Tail = Arc<Mutex<VecDeque<u8>>>;

/// An external program running in a process group of its own, started by
/// [`ProcessGroup::start`]. Dropping it ends the group (it is the task's guard); [`kill_all`]
/// ends every group of the thread.
///
/// ```
/// use std::process::Command;
/// let mut sim = cos::ProcessGroup::start(Command::new("sh").args(["-c", "echo ok"])).unwrap();
/// sim.wait(Some(std::time::Instant::now() + std::time::Duration::from_secs(60))).unwrap();
/// ```
#[derive(Debug)]
pub struct ProcessGroup {
    inner: Arc<Mutex<Inner>>,
    program: String,
    tail: Tail,
    tail_done: Receiver<()>,
}

impl ProcessGroup {
    /// Starts `command` as the leader of a new process group, registered on this thread (see
    /// [`kill_all`]).
    ///
    /// Its working directory is, unless `command` sets one, the current task's
    /// ([`task_working_dir`]), so nothing depends on the worker's own working directory,
    /// which its threads share. Its standard error is captured: the last 8 KiB come with a
    /// failure. When the thread that started it ends without ending the group (the worker
    /// crashed or was killed), the whole group is ended all the same: the leader gets SIGKILL
    /// (`PR_SET_PDEATHSIG`, Linux), and a small watchdog process that joined the group ends
    /// the rest (SIGTERM, SIGKILL after [`KILL_GRACE`]).
    ///
    /// # Errors
    /// [`ProcessErrorKind::NotFound`] naming the program when it does not exist on this host,
    /// [`ProcessErrorKind::CannotStart`] when it cannot be started (or its working directory
    /// is missing).
    ///
    /// ```
    /// let err = cos::ProcessGroup::start(&mut std::process::Command::new("ngspice-not-installed")).unwrap_err();
    /// assert_eq!(err.kind, cos::ProcessErrorKind::NotFound);
    /// assert_eq!(err.program, "ngspice-not-installed");
    /// ```
    pub fn start(command: &mut Command) -> Result<ProcessGroup, ProcessError> {
        let program = command.get_program().to_string_lossy().into_owned();
        let groups = REGISTRY.try_with(ThreadGroups::clone).ok();
        if groups.as_ref().is_some_and(|g| g.lock().closed) {
            // The thread's job was cancelled or timed out: it starts nothing more.
            return Err(ProcessError::new(ProcessErrorKind::Killed, &program));
        }
        if command.get_current_dir().is_none() {
            if let Some(dir) = task_working_dir() {
                command.current_dir(dir);
            }
        }
        if let Some(dir) = command.get_current_dir() {
            if !dir.is_dir() {
                let e = io::Error::new(io::ErrorKind::NotFound, format!("no directory {}", dir.display()));
                return Err(ProcessError::io(ProcessErrorKind::CannotStart, &program, e));
            }
        }
        command.process_group(0).stderr(Stdio::piped());
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed (fork(2), signal-safety(7)); it makes one
        // prctl(2) system call, which allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| {
            let kind = if e.kind() == io::ErrorKind::NotFound {
                ProcessErrorKind::NotFound
            } else {
                ProcessErrorKind::CannotStart
            };
            ProcessError::io(kind, &program, e)
        })?;
        let tail: Tail = Arc::default();
        let (done_tx, tail_done) = bounded::<()>(1);
        if let Some(mut stderr) = child.stderr.take() {
            let tail = Arc::clone(&tail);
            let reader = thread::Builder::new().name("cos-stderr".into()).spawn(move || {
                let _done = done_tx;
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stderr.read(&mut buf) {
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    t.extend(&buf[..n]);
                    let excess = t.len().saturating_sub(TAIL_BYTES);
                    t.drain(..excess);
                }
            });
            if let Err(e) = reader {
                log::warn!(target: "cos", "standard error of {program} not captured: {e}");
            }
        }
        let pid = child.id() as libc::pid_t;
        let pidfd = pidfd_open(pid);
        let watchdog = watchdog::start(pid, KILL_GRACE);
        if watchdog.is_none() {
            log::warn!(target: "cos", "no watchdog for the process group of {program}: {}", io::Error::last_os_error());
        }
        let inner = Arc::new(Mutex::new(Inner { child, pidfd, watchdog, status: None, killed: false }));
        if let Some(g) = groups {
            let mut g = g.lock();
            if g.closed {
                // Closed while it started: end it at once.
                drop(g);
                lock(&inner).terminate();
                return Err(ProcessError::new(ProcessErrorKind::Killed, &program));
            }
            g.live.retain(|w| w.strong_count() > 0);
            g.live.push(Arc::downgrade(&inner));
        }
        Ok(ProcessGroup { inner, program, tail, tail_done })
    }

    /// The leader's process id, which is also the group's id.
    ///
    /// ```
    /// let g = cos::ProcessGroup::start(&mut std::process::Command::new("true")).unwrap();
    /// assert!(g.id() > 0);
    /// ```
    pub fn id(&self) -> u32 {
        lock(&self.inner).child.id()
    }

    /// The program's standard output, when `command` made it a pipe
    /// (`Stdio::piped()`); it is handed out once.
    ///
    /// ```
    /// use std::io::Read;
    /// use std::process::{Command, Stdio};
    /// let mut g = cos::ProcessGroup::start(Command::new("echo").arg("hi").stdout(Stdio::piped())).unwrap();
    /// let mut out = String::new();
    /// g.stdout().unwrap().read_to_string(&mut out).unwrap();
    /// g.wait(None).unwrap();
    /// assert_eq!(out, "hi\n");
    /// ```
    pub fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        lock(&self.inner).child.stdout.take()
    }

    /// Whether the program has ended (without waiting, and without reaping it), for a task that
    /// waits cooperatively: `while !g.has_exited() { cos::yield_now() }`.
    ///
    /// ```
    /// let mut g = cos::ProcessGroup::start(std::process::Command::new("sleep").arg("100")).unwrap();
    /// assert!(!g.has_exited());
    /// g.kill();
    /// assert!(g.has_exited());
    /// ```
    pub fn has_exited(&self) -> bool {
        let inner = lock(&self.inner);
        inner.status.is_some() || exited_nowait(inner.pid())
    }

    /// Waits for the program to end, at most until `deadline`; then kills whatever is left of its
    /// group (a background child it left behind) and reaps it. At the deadline the whole group
    /// is ended (SIGTERM, SIGKILL after [`KILL_GRACE`]).
    ///
    /// Called from a local task (a remote function runs in one), the wait is cooperative: the
    /// task yields between short looks at the program, so the other tasks of its thread run on
    /// meanwhile, and a time limit or a cancel of the remote task (which ends the group) reaches
    /// it. From the main program it blocks the thread.
    ///
    /// # Errors
    /// [`ProcessErrorKind::Timeout`] at the deadline; [`ProcessErrorKind::Failed`] with the exit
    /// status and the end of standard error when it ended with a failure;
    /// [`ProcessErrorKind::Killed`] when its group was ended by [`ProcessGroup::kill`] or
    /// [`kill_all`] first.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let mut g = cos::ProcessGroup::start(std::process::Command::new("sleep").arg("100")).unwrap();
    /// let err = g.wait(Some(Instant::now() + Duration::from_millis(50))).unwrap_err();
    /// assert_eq!(err.kind, cos::ProcessErrorKind::Timeout);
    /// ```
    pub fn wait(&mut self, deadline: Option<Instant>) -> Result<(), ProcessError> {
        let (pidfd, pid, ended) = {
            let inner = lock(&self.inner);
            (inner.pidfd.as_ref().map(AsRawFd::as_raw_fd), inner.pid(), inner.status.is_some())
        };
        let mut timed_out = false;
        if !ended {
            let exited = if matches!(crate::context::context(), crate::context::Context::Task(_)) {
                wait_in_task(pidfd, pid, deadline)
            } else {
                wait_exit(pidfd, pid, deadline.map(|d| d.saturating_duration_since(Instant::now())))
            };
            let mut inner = lock(&self.inner);
            if inner.status.is_none() {
                if exited {
                    inner.reap();
                } else {
                    inner.terminate();
                    timed_out = true;
                }
            }
        }
        let (status, killed) = {
            let inner = lock(&self.inner);
            (inner.status, inner.killed)
        };
        let kind = if timed_out {
            ProcessErrorKind::Timeout
        } else if killed {
            ProcessErrorKind::Killed
        } else if status.is_some_and(|s| s.success()) {
            return Ok(());
        } else {
            ProcessErrorKind::Failed
        };
        Err(ProcessError {
            status,
            stderr_tail: self.stderr_tail(),
            ..ProcessError::new(kind, &self.program)
        })
    }

    /// Ends the group now (SIGTERM, SIGKILL after [`KILL_GRACE`]) and reaps the program; nothing
    /// happens when it has already been reaped.
    ///
    /// ```
    /// let mut g = cos::ProcessGroup::start(std::process::Command::new("sleep").arg("100")).unwrap();
    /// g.kill();
    /// assert_eq!(g.wait(None).unwrap_err().kind, cos::ProcessErrorKind::Killed);
    /// ```
    pub fn kill(&mut self) {
        lock(&self.inner).terminate();
    }

    /// The end (at most 8 KiB) of what the program wrote to its standard error, once it has
    /// ended (while it runs: what has been read so far).
    ///
    /// ```
    /// let mut g = cos::ProcessGroup::start(std::process::Command::new("sh").args(["-c", "echo hi >&2"])).unwrap();
    /// g.wait(None).unwrap();
    /// assert_eq!(g.stderr_tail(), "hi\n");
    /// ```
    pub fn stderr_tail(&self) -> String {
        if lock(&self.inner).status.is_some() {
            // The reader ends at the pipe's end; a child outside the group may hold it open.
            let _ = self.tail_done.recv_timeout(TAIL_WAIT);
        }
        let t = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = t.as_slices();
        String::from_utf8_lossy(&[a, b].concat()).into_owned()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        lock(&self.inner).terminate();
    }
}

/// Makes the calling process receive SIGKILL when the thread that started it ends
/// (`PR_SET_PDEATHSIG`, Linux), for a worker process to die with its spawner. Linux ties it to
/// the parent *thread*: the spawner must start its workers from a thread that lives as long as
/// they should. `expected_parent` is the spawner's process id, to catch a spawner that died
/// before the call.
///
/// # Errors
/// The system's error when `prctl` fails.
///
/// Returns `Ok(false)` when the parent is no longer `expected_parent` (it is gone already:
/// the caller should exit).
///
/// ```no_run
/// // First thing in a worker process, with the spawner's pid handed down by it:
/// let spawner: u32 = std::env::var("SPAWNER_PID").unwrap().parse().unwrap();
/// if !cos::die_with_parent(spawner).unwrap() {
///     std::process::exit(1);
/// }
/// ```
pub fn die_with_parent(expected_parent: u32) -> io::Result<bool> {
    // SAFETY: prctl(2) with PR_SET_PDEATHSIG takes the signal number as its second argument;
    // the others are unused.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::os::unix::process::parent_id() == expected_parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_a_thread_s_groups_from_another_thread_ends_them_and_refuses_new_ones() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let worker = thread::spawn(move || {
            let mut g = ProcessGroup::start(Command::new("sleep").arg("100")).unwrap();
            tx.send(this_thread_groups()).unwrap();
            // Ended from the other thread while this one waits.
            let waited = g.wait(None).unwrap_err().kind;
            go_rx.recv().unwrap();
            let again = ProcessGroup::start(&mut Command::new("true")).unwrap_err().kind;
            (waited, again)
        });
        let groups = rx.recv().unwrap();
        assert_eq!(groups.close(), 1);
        go_tx.send(()).unwrap();
        assert_eq!(worker.join().unwrap(), (ProcessErrorKind::Killed, ProcessErrorKind::Killed));
    }
}
