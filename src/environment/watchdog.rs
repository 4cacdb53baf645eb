//! A watchdog process per external process group: it joins the group and, when the thread that
//! started the group dies (the worker crashed, was killed, or the thread ended without cleaning
//! up), ends the whole group. Without it only the group's leader would die with the worker
//! (`PR_SET_PDEATHSIG` reaches one process), and the simulator's own children would run on.

use std::io;
use std::time::Duration;

/// Forks the watchdog of the process group `pgid` (whose leader is our unreaped child); its pid,
/// or `None` when it could not be made (the group then has no watchdog).
pub(crate) fn start(pgid: libc::pid_t, grace: Duration) -> Option<libc::pid_t> {
    // Everything the child needs is prepared here: after fork it may only make
    // async-signal-safe calls (no allocation, no locks).
    // SAFETY: getpid(2) and sysconf(3) take no pointers and always return.
    let (parent, max_fd) = unsafe { (libc::getpid(), libc::sysconf(libc::_SC_OPEN_MAX)) };
    let max_fd = if max_fd <= 0 { 1024 } else { max_fd.min(1 << 16) as libc::c_int };
    let pause = libc::timespec {
        tv_sec: grace.as_secs() as libc::time_t,
        tv_nsec: grace.subsec_nanos() as libc::c_long,
    };
    // SAFETY: sigset_t is plain data; sigfillset/sigemptyset/sigaddset initialise the sets
    // they are given, which live on this stack.
    let (all, wake) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut wake: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigemptyset(&mut wake);
        libc::sigaddset(&mut wake, libc::SIGUSR1);
        (all, wake)
    };
    // The child says on this pipe when it is armed, so that a thread ending right after the
    // start cannot slip in before the child's parent-death signal is set.
    let mut armed = [0 as libc::c_int; 2];
    // SAFETY: pipe2(2) writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(armed.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    let [armed_r, armed_w] = armed;
    // SAFETY: fork(2) in a multithreaded process: "the child process is created with a single
    // thread ... the child can safely execute only async-signal-safe operations until it calls
    // execve". The child below only makes system calls (sigprocmask, setpgid, prctl, write,
    // close_range or close, getppid, sigwaitinfo, kill, nanosleep, _exit) on data prepared
    // before the fork, and never returns into Rust code.
    let forked = unsafe { libc::fork() };
    if forked == 0 {
        // SAFETY: this is the freshly forked child; the references are to this stack frame.
        unsafe { watch(parent, pgid, max_fd, armed_w, &all, &wake, &pause) }
    }
    // SAFETY: close(2) of our own descriptors; read(2) of one byte into a live buffer. The read
    // ends with the child's byte, or at end of file when the child ended first.
    unsafe {
        libc::close(armed_w);
        if forked > 0 {
            let mut byte = 0u8;
            while libc::read(armed_r, (&mut byte as *mut u8).cast(), 1) < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
        libc::close(armed_r);
    }
    match forked {
        -1 => None,
        pid => Some(pid),
    }
}

/// The watchdog's body, in the forked child.
///
/// # Safety
/// Only to be called in a freshly forked child, with references to live data.
unsafe fn watch(
    parent: libc::pid_t,
    pgid: libc::pid_t,
    max_fd: libc::c_int,
    armed: libc::c_int,
    all: &libc::sigset_t,
    wake: &libc::sigset_t,
    pause: &libc::timespec,
) -> ! {
    // Nothing but SIGKILL ends it early: not the group's SIGTERM, not the worker's signals.
    libc::sigprocmask(libc::SIG_SETMASK, all, std::ptr::null_mut());
    if libc::setpgid(0, pgid) != 0 {
        // The group is gone already (the parent sees end of file on the pipe).
        libc::_exit(0);
    }
    let watching = libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR1 as libc::c_ulong, 0, 0, 0) == 0;
    // In the group and armed: from now on the end of the starting thread wakes the watchdog.
    let byte = 1u8;
    libc::write(armed, (&byte as *const u8).cast(), 1);
    // Hold none of the worker's descriptors (its socket to the spawner above all), so that
    // the worker's end is seen at once.
    if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
        for fd in 0..max_fd {
            libc::close(fd);
        }
    }
    if watching && libc::getppid() == parent {
        while libc::sigwaitinfo(wake, std::ptr::null_mut()) != libc::SIGUSR1 {}
    }
    libc::kill(-pgid, libc::SIGTERM);
    libc::nanosleep(pause, std::ptr::null_mut());
    // This ends the watchdog too: it is in the group.
    libc::kill(-pgid, libc::SIGKILL);
    libc::_exit(0)
}

/// Ends and reaps the watchdog `pid` (once its group is dealt with).
pub(crate) fn reap(pid: libc::pid_t) {
    // SAFETY: kill(2) on our own unreaped child, so the pid is not reused.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let mut status = 0;
    loop {
        // SAFETY: waitpid(2) writes the status of our child `pid` into `status`.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}
