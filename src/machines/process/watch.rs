//! The spawner's reader of one worker: forwards the worker's frames to the machine, and tells
//! how the worker ended, watching the process as well as its connection.
//!
//! - The worker process is watched through a pidfd: its end is the worker's end as soon as
//!   every byte it wrote before is read, even when a process it forked still holds the socket
//!   open.
//! - A worker sends a heartbeat frame every [`Bounds::heartbeat`]; when nothing comes for
//!   `heartbeat * missed`, the worker is taken as silent (stopped, stuck, or cut off), as is a
//!   frame begun and not completed within [`Bounds::frame`]. A silent worker is killed here at
//!   once, so that a spawner blocked writing to it is freed as well.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::error::Error;
use crate::machines::process::frame::{read_frame, Up};
use crate::machines::process::spin::{readable_within, SOCKET_SPIN};
use crate::machines::process::Inbound;
use crate::vm::message::decode;
use crate::vm::LostCause;

/// How long a worker may stay silent, and take to send a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// How often a worker sends a heartbeat.
    pub(crate) heartbeat: Duration,
    /// How many heartbeats in a row may be missed before the worker is silent.
    pub(crate) missed: u32,
    /// How long a frame may take from its first byte to its last.
    pub(crate) frame: Duration,
}

impl Bounds {
    /// How long nothing may come from a worker.
    pub(crate) fn silence(&self) -> Duration {
        self.heartbeat.saturating_mul(self.missed.max(1))
    }
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { heartbeat: Duration::from_secs(1), missed: 10, frame: Duration::from_secs(30) }
    }
}

/// A pidfd of process `pid` (which must be this process's unreaped child, so that the pid is
/// not reused); `None` where the kernel has none (before Linux 5.3).
pub(crate) fn pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open(2) takes a pid and flags (0) and returns a new file descriptor or -1;
    // it reads and writes no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: `fd` is a descriptor pidfd_open just opened for us; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends SIGKILL to the process of `pidfd`.
fn kill(pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal(2) takes a pidfd, a signal, a `siginfo_t` pointer that may be
    // null (as here) and flags (0); it reads no other memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        log::debug!(target: "cos", "cannot kill a silent worker: {}", io::Error::last_os_error());
    }
}

/// Reads from the worker's socket, each read bounded by the worker's silence or its frame's
/// deadline, and ended by the end of the worker's process.
struct Watched<'a> {
    stream: &'a UnixStream,
    pidfd: Option<&'a OwnedFd>,
    bounds: Bounds,
    /// When the frame being read began (its first byte).
    started: Option<Instant>,
    /// When the last byte came.
    last: Instant,
    /// Why a read failed, when it is the worker's fault.
    why: Option<Stop>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The process ended (its bytes before are all read).
    Exited,
    /// Nothing came for this long, or a frame took this long.
    Silent(Duration),
}

impl Watched<'_> {
    /// Reads from the socket, which is readable, at its end, or broken: the read says which.
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&mut &*self.stream).read(buf)?;
        let now = Instant::now();
        if n > 0 && self.started.is_none() {
            self.started = Some(now);
        }
        self.last = now;
        Ok(n)
    }
}

impl Read for Watched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let now = Instant::now();
            let deadline = match self.started {
                Some(s) => (s + self.bounds.frame).min(self.last + self.bounds.silence()),
                None => self.last + self.bounds.silence(),
            };
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                let since = self.started.unwrap_or(self.last);
                self.why = Some(Stop::Silent(now - since));
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the worker went silent"));
            }
            // The answer to a job just sent often comes within microseconds: look for it
            // without blocking first (the pidfd is looked at in the blocking poll below).
            if readable_within(self.stream, SOCKET_SPIN.min(left)) {
                return self.read_now(buf);
            }
            let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
            let mut fds = [
                libc::pollfd { fd: self.stream.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd {
                    fd: self.pidfd.map_or(-1, AsRawFd::as_raw_fd),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: poll(2) reads and writes `nfds` (here 2) `struct pollfd`s at `fds`, an
            // array of two that lives across the call; a negative `fd` is ignored by poll.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[0].revents != 0 {
                return self.read_now(buf);
            }
            if fds[1].revents != 0 {
                self.why = Some(Stop::Exited);
                return Err(io::Error::other("the worker process ended"));
            }
        }
    }
}

/// Forwards a worker's frames (heartbeats are only taken as a sign of life) until its
/// connection ends, it breaks, the process ends or it goes silent; then says why with
/// [`Inbound::Closed`]: `cause` `None` when the process's exit status tells.
pub(crate) fn reader_loop(
    slot: usize,
    generation: u64,
    stream: UnixStream,
    pidfd: Option<OwnedFd>,
    bounds: Bounds,
    inbound: &Sender<Inbound>,
) {
    let mut r = Watched {
        stream: &stream,
        pidfd: pidfd.as_ref(),
        bounds,
        started: None,
        last: Instant::now(),
        why: None,
    };
    let cause = loop {
        let frame = read_frame(&mut r);
        r.started = None;
        match frame {
            Ok(Some(frame)) => match decode::<Up>(&frame) {
                Ok(Up::Heartbeat) => {}
                Ok(up) => {
                    if inbound.send(Inbound::Frame { slot, generation, up }).is_err() {
                        return;
                    }
                }
                Err(e) => break Some(LostCause::Connection(format!("malformed frame: {e}"))),
            },
            Ok(None) => break None,
            Err(e) => match r.why {
                Some(Stop::Exited) => break None,
                Some(Stop::Silent(d)) => {
                    // Killed here, so that a spawner blocked writing to it is freed too.
                    if let Some(fd) = &pidfd {
                        kill(fd);
                    }
                    break Some(LostCause::Silent(d));
                }
                // A frame cut short or too long is garbage; a read error is the process's end.
                None => match e {
                    Error::Decode(e) => break Some(LostCause::Connection(e)),
                    _ => break None,
                },
            },
        }
    };
    let _ = inbound.send(Inbound::Closed { slot, generation, cause });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machines::process::frame::write_frame;
    use crate::vm::message::encode;
    use crate::vm::TaskId;
    use crossbeam_channel::unbounded;
    use std::io::Write;

    fn quick() -> Bounds {
        Bounds { heartbeat: Duration::from_millis(20), missed: 3, frame: Duration::from_millis(100) }
    }

    #[test]
    fn a_reader_reports_garbage_as_a_closed_connection() {
        let (mut a, b) = UnixStream::pair().unwrap();
        write_frame(&mut a, &[0xff; 9]).unwrap();
        let (tx, rx) = unbounded();
        reader_loop(3, 7, b, None, Bounds::default(), &tx);
        match rx.recv().unwrap() {
            Inbound::Closed { slot, generation, cause } => {
                assert_eq!((slot, generation), (3, 7));
                assert!(matches!(cause, Some(LostCause::Connection(_))), "garbage is not the process's end");
            }
            _ => panic!("garbage decoded as a frame"),
        }
    }

    #[test]
    fn a_reader_forwards_frames_then_the_end() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let task = TaskId { worker: 1, number: 4 };
        let up = Up::Finished { task, result: Ok(vec![1]), retire: false };
        write_frame(&mut a, &encode(&Up::Heartbeat).unwrap()).unwrap();
        write_frame(&mut a, &encode(&up).unwrap()).unwrap();
        drop(a);
        let (tx, rx) = unbounded();
        reader_loop(0, 1, b, None, Bounds::default(), &tx);
        assert!(matches!(rx.recv().unwrap(), Inbound::Frame { slot: 0, generation: 1, up: u } if u == up));
        assert!(matches!(rx.recv().unwrap(), Inbound::Closed { slot: 0, generation: 1, cause: None }));
    }

    #[test]
    fn a_frame_left_unfinished_is_a_silent_worker() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[100, 0, 0, 0, 1, 2, 3]).unwrap();
        let (tx, rx) = unbounded();
        // The writer stays open: only the bound ends the wait.
        reader_loop(0, 1, b, None, Bounds { missed: 1000, ..quick() }, &tx);
        assert!(matches!(rx.recv().unwrap(), Inbound::Closed { cause: Some(LostCause::Silent(_)), .. }));
        drop(a);
    }

    #[test]
    fn a_worker_without_heartbeats_is_silent() {
        let (a, b) = UnixStream::pair().unwrap();
        let (tx, rx) = unbounded();
        reader_loop(0, 1, b, None, quick(), &tx);
        assert!(matches!(rx.recv().unwrap(), Inbound::Closed { cause: Some(LostCause::Silent(_)), .. }));
        drop(a);
    }
}
