//! The spawner's side of one worker's connection, read by the spawner's own thread: the bytes
//! that came are kept per worker until they make whole frames, so that a worker that sent part
//! of a frame and stalled never blocks the spawner; the worker is watched as well as its
//! connection.
//!
//! - [`Link`] keeps a worker's socket, its pidfd and the bytes read of its next frame; it is
//!   read without blocking when [`wait_ready`] finds it readable (or while a write to the
//!   worker waits for room, see [`Link::write`]).
//! - The worker process is watched through a pidfd: its end is the worker's end as soon as
//!   every byte it wrote before is read, even when a process it forked still holds the socket
//!   open.
//! - A worker sends a heartbeat frame every [`Bounds::heartbeat`]; when nothing comes for
//!   `heartbeat * missed`, the worker is taken as silent (stopped, stuck, or cut off), as is a
//!   frame begun and not completed within [`Bounds::frame`]. A silent worker is killed at
//!   once. Silence is judged only right after a look at the socket, so that a spawner that
//!   did not look for a while (its own tasks ran) first reads what came meanwhile.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::machines::process::frame::{Up, MAX_FRAME};
use crate::machines::process::outbound::{write_watching, WriteFailure};
use crate::machines::process::spin::pause;
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

/// The most bytes one look at a readable socket takes, so that a worker that writes without
/// end does not keep the spawner from its other workers.
const READ_BUDGET: usize = 1 << 20;
/// The room one read has at least.
const CHUNK: usize = 16 << 10;

/// What came from a worker and is not taken yet, and how its connection ended.
#[derive(Debug)]
struct Incoming {
    /// The bytes read that are not whole frames yet (from the first byte of the next frame).
    buf: Vec<u8>,
    /// When the first byte of the frame in `buf` came.
    started: Option<Instant>,
    /// When the last byte came (or the link was made).
    last: Instant,
    /// The connection ended: why (`None`: the process's exit status tells). Reported once
    /// the frames before it are taken.
    end: Option<Option<LostCause>>,
    /// The end is the stream's (a frame cut short by it is garbage, judged once the whole
    /// frames before it are taken).
    eof: bool,
    /// The end was reported.
    reported: bool,
}

impl Incoming {
    /// Reads what the socket has, without blocking, up to [`READ_BUDGET`]; whether it was all
    /// read (the socket would block, or the connection ended).
    fn fill(&mut self, stream: &UnixStream) -> bool {
        if self.end.is_some() {
            return true;
        }
        let mut taken = 0;
        while taken < READ_BUDGET {
            self.buf.reserve(CHUNK);
            let spare = self.buf.spare_capacity_mut();
            // SAFETY: recv(2) writes at most `len` (here `spare.len()`) bytes at `buf` (here the
            // vector's spare capacity, which lives across the call) and reads no other memory
            // of ours; MSG_DONTWAIT makes this one call non-blocking.
            let n = unsafe {
                libc::recv(stream.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), libc::MSG_DONTWAIT)
            };
            let room = spare.len();
            match usize::try_from(n) {
                Ok(0) => {
                    self.end = Some(None);
                    self.eof = true;
                    return true;
                }
                Ok(n) => {
                    let now = Instant::now();
                    if self.buf.is_empty() {
                        self.started = Some(now);
                    }
                    self.last = now;
                    // SAFETY: `set_len` needs the new length within the capacity and the
                    // elements up to it initialized: recv wrote `n` bytes (at most `room`, the
                    // spare capacity) right after the vector's `len()` bytes.
                    unsafe { self.buf.set_len(self.buf.len() + n) };
                    taken += n;
                    // A read shorter than the room took all the socket had.
                    if n < room {
                        return true;
                    }
                }
                Err(_) => {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::Interrupted => {}
                        io::ErrorKind::WouldBlock => return true,
                        // A read error is the process's end.
                        _ => {
                            self.end = Some(None);
                            return true;
                        }
                    }
                }
            }
        }
        false
    }

    /// How a connection that ended with `buf` as it is ends: a frame cut short is garbage.
    fn cut_short(&self) -> Option<LostCause> {
        match self.buf.len() {
            0 => None,
            n @ 1..=3 => {
                Some(LostCause::Connection(format!("stream ended inside a frame length ({n} bytes)")))
            }
            n => {
                let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                Some(LostCause::Connection(format!("stream ended after {} of {len} frame bytes", n - 4)))
            }
        }
    }

    /// The next whole frame that is not a heartbeat; a frame that is too long or does not
    /// decode ends the connection (what follows it is not read).
    fn frame(&mut self) -> Option<Up> {
        loop {
            if self.buf.len() < 4 {
                return None;
            }
            let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            if len > MAX_FRAME {
                self.garbage(format!("frame length {len} exceeds the limit of {MAX_FRAME}"));
                return None;
            }
            if self.buf.len() < 4 + len {
                return None;
            }
            let up = decode::<Up>(&self.buf[4..4 + len]);
            self.buf.drain(..4 + len);
            // What is left began to come with the last bytes read, at the latest.
            self.started = (!self.buf.is_empty()).then_some(self.last);
            match up {
                Ok(Up::Heartbeat) => {}
                Ok(up) => return Some(up),
                Err(e) => {
                    self.garbage(format!("malformed frame: {e}"));
                    return None;
                }
            }
        }
    }

    /// The worker sent what is not a frame: its connection ends here.
    fn garbage(&mut self, why: String) {
        self.buf = Vec::new();
        self.started = None;
        // Garbage is the worker's fault, whatever ended its stream after it.
        self.end = Some(Some(LostCause::Connection(why)));
        self.eof = false;
    }

    /// When the worker is silent if nothing comes.
    fn deadline(&self, bounds: &Bounds) -> Instant {
        let quiet = self.last + bounds.silence();
        self.started.map_or(quiet, |s| quiet.min(s + bounds.frame))
    }
}

/// What a worker's link has for the machine.
#[derive(Debug, PartialEq)]
pub(crate) enum Taken {
    /// A frame (never a heartbeat: those are only signs of life).
    Frame(Up),
    /// The connection ended (after every frame before it): why, `None` when the process's
    /// exit status tells.
    Closed(Option<LostCause>),
}

/// The spawner's side of one connected worker: its socket, its process's pidfd and what came
/// from it that is not taken yet. Read by [`wait_ready`], never blocking.
#[derive(Debug)]
pub(crate) struct Link {
    stream: UnixStream,
    pidfd: Option<OwnedFd>,
    incoming: Incoming,
}

impl Link {
    /// A link on `stream` to the process of `pidfd`.
    pub(crate) fn new(stream: UnixStream, pidfd: Option<OwnedFd>) -> Self {
        let incoming = Incoming {
            buf: Vec::new(),
            started: None,
            last: Instant::now(),
            end: None,
            eof: false,
            reported: false,
        };
        Link { stream, pidfd, incoming }
    }

    /// The socket (for a hang-up).
    pub(crate) fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Whether the connection is still read (it has not ended).
    fn live(&self) -> bool {
        self.incoming.end.is_none()
    }

    /// The next frame or the end, if one is there (never waits).
    pub(crate) fn take(&mut self) -> Option<Taken> {
        if let Some(up) = self.incoming.frame() {
            return Some(Taken::Frame(up));
        }
        match &self.incoming.end {
            Some(cause) if !self.incoming.reported => {
                self.incoming.reported = true;
                let cut = if self.incoming.eof { self.incoming.cut_short() } else { None };
                Some(Taken::Closed(cut.or_else(|| cause.clone())))
            }
            _ => None,
        }
    }

    /// When the worker is silent if nothing comes; `None` once the connection ended.
    pub(crate) fn deadline(&self, bounds: &Bounds) -> Option<Instant> {
        self.live().then(|| self.incoming.deadline(bounds))
    }

    /// After a look at the socket at `now`: a worker past its deadline is silent, and killed at
    /// once.
    fn judge(&mut self, bounds: &Bounds, now: Instant) {
        if self.live() && now >= self.incoming.deadline(bounds) {
            let since = self.incoming.started.unwrap_or(self.incoming.last);
            self.incoming.end = Some(Some(LostCause::Silent(now - since)));
            if let Some(fd) = &self.pidfd {
                kill(fd);
            }
        }
    }

    /// Writes one frame to the worker without blocking on it for more than `bound` without
    /// progress, reading what the worker sends meanwhile (so that a worker that writes while
    /// the spawner does is not deadlocked with it).
    ///
    /// # Errors
    /// As [`write_watching`].
    pub(crate) fn write(&mut self, bytes: &[u8], bound: Duration) -> Result<(), WriteFailure> {
        let Link { stream, incoming, .. } = self;
        write_watching(stream, bytes, bound, || {
            incoming.fill(stream);
            incoming.end.is_none()
        })
    }
}

/// How a [`wait_ready`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Woke {
    /// One of the wake descriptors is readable.
    pub(crate) wake: bool,
    /// Nothing came within the spin: the thread blocked (or the wait ended without anything).
    pub(crate) blocked: bool,
}

/// Waits until one of `links` has something (bytes, its end, its process's end) or one of
/// `wake` is readable, or `until` passes (`None`: without end; now: only a look), spinning
/// for `spin` first, as an answer to a job just sent often comes within microseconds and a
/// blocked wait that the kernel must wake costs tens of them. Then reads what came, and judges
/// every link's silence.
pub(crate) fn wait_ready(
    links: &mut [&mut Link],
    wake: &[RawFd],
    until: Option<Instant>,
    spin: Duration,
    bounds: &Bounds,
) -> Woke {
    let mut fds = Vec::with_capacity(2 * links.len() + wake.len());
    fds.extend(wake.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }));
    for link in links.iter() {
        let live = link.live();
        let socket = if live { link.stream.as_raw_fd() } else { -1 };
        let process = if live { link.pidfd.as_ref().map_or(-1, AsRawFd::as_raw_fd) } else { -1 };
        fds.push(libc::pollfd { fd: socket, events: libc::POLLIN, revents: 0 });
        fds.push(libc::pollfd { fd: process, events: libc::POLLIN, revents: 0 });
    }
    let started = Instant::now();
    let spin_until = until.map_or(started + spin, |u| u.min(started + spin));
    let mut blocked = false;
    loop {
        let now = Instant::now();
        let blocking = now >= spin_until;
        let ms = match until {
            _ if !blocking => 0,
            None => -1,
            Some(u) => {
                i32::try_from(u.saturating_duration_since(now).as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
        };
        // SAFETY: poll(2) reads and writes `nfds` (here `fds.len()`) `struct pollfd`s at `fds`,
        // a vector of that many that lives across the call; a negative `fd` is ignored.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        blocked |= ms != 0;
        if ready > 0 || (blocking && ready == 0) {
            break;
        }
        if ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            log::error!(target: "cos", "cannot wait for the workers: {}", io::Error::last_os_error());
            std::thread::sleep(Duration::from_millis(1));
            break;
        }
        if ready == 0 {
            pause(now - started);
        }
    }
    let woken = fds[..wake.len()].iter().any(|f| f.revents != 0);
    for (link, f) in links.iter_mut().zip(fds[wake.len()..].chunks(2)) {
        if f[0].revents != 0 || f[1].revents != 0 {
            let all = link.incoming.fill(&link.stream);
            // The process ended: its end is the worker's once every byte it wrote is read.
            if f[1].revents != 0 && all && link.live() {
                link.incoming.end = Some(None);
            }
        }
    }
    let now = Instant::now();
    for link in links.iter_mut() {
        link.judge(bounds, now);
    }
    Woke { wake: woken, blocked }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machines::process::frame::write_frame;
    use crate::vm::message::encode;
    use crate::vm::TaskId;
    use std::io::Write;

    fn quick() -> Bounds {
        Bounds { heartbeat: Duration::from_millis(20), missed: 3, frame: Duration::from_millis(100) }
    }

    /// Waits on one link until it has something, as the machine does; what it has.
    fn next(link: &mut Link, bounds: &Bounds) -> Taken {
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(t) = link.take() {
                return t;
            }
            assert!(Instant::now() < give_up, "nothing came");
            let until = link.deadline(bounds).map(|d| d.min(give_up));
            wait_ready(&mut [&mut *link], &[], until, Duration::from_micros(60), bounds);
        }
    }

    #[test]
    fn garbage_is_a_closed_connection() {
        let (mut a, b) = UnixStream::pair().unwrap();
        write_frame(&mut a, &[0xff; 9]).unwrap();
        let mut link = Link::new(b, None);
        let cause = next(&mut link, &Bounds::default());
        assert!(matches!(cause, Taken::Closed(Some(LostCause::Connection(_)))), "{cause:?}");
        assert_eq!(link.take(), None, "the end is reported once");
    }

    #[test]
    fn an_oversized_length_is_a_closed_connection_at_once() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&u32::MAX.to_le_bytes()).unwrap();
        let mut link = Link::new(b, None);
        assert!(matches!(next(&mut link, &Bounds::default()), Taken::Closed(Some(LostCause::Connection(_)))));
    }

    #[test]
    fn frames_then_the_end() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let task = TaskId { worker: 1, number: 4 };
        let up = Up::Finished { task, result: Ok(vec![1]), retire: false };
        write_frame(&mut a, &encode(&Up::Heartbeat).unwrap()).unwrap();
        write_frame(&mut a, &encode(&up).unwrap()).unwrap();
        drop(a);
        let mut link = Link::new(b, None);
        assert_eq!(next(&mut link, &Bounds::default()), Taken::Frame(up));
        assert_eq!(next(&mut link, &Bounds::default()), Taken::Closed(None));
    }

    #[test]
    fn a_frame_that_comes_in_pieces_is_taken_whole() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let up = Up::Message { task: TaskId { worker: 1, number: 2 }, bytes: vec![5; 100] };
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &encode(&up).unwrap()).unwrap();
        let mut link = Link::new(b, None);
        for piece in bytes.chunks(7) {
            assert_eq!(link.take(), None);
            a.write_all(piece).unwrap();
            wait_ready(&mut [&mut link], &[], Some(Instant::now()), Duration::ZERO, &Bounds::default());
        }
        assert_eq!(link.take(), Some(Taken::Frame(up)));
    }

    #[test]
    fn garbage_before_the_stream_ends_is_garbage() {
        let (mut a, b) = UnixStream::pair().unwrap();
        write_frame(&mut a, &[0xff; 9]).unwrap();
        drop(a);
        let mut link = Link::new(b, None);
        assert!(matches!(next(&mut link, &Bounds::default()), Taken::Closed(Some(LostCause::Connection(_)))));
    }

    #[test]
    fn a_stream_cut_inside_a_frame_is_garbage() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[100, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(a);
        let mut link = Link::new(b, None);
        assert!(matches!(next(&mut link, &Bounds::default()), Taken::Closed(Some(LostCause::Connection(_)))));
    }

    #[test]
    fn a_frame_left_unfinished_is_a_silent_worker() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[100, 0, 0, 0, 1, 2, 3]).unwrap();
        let mut link = Link::new(b, None);
        // The writer stays open: only the bound ends the wait.
        let bounds = Bounds { missed: 1000, ..quick() };
        assert!(matches!(next(&mut link, &bounds), Taken::Closed(Some(LostCause::Silent(_)))));
        drop(a);
    }

    #[test]
    fn a_worker_without_heartbeats_is_silent() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut link = Link::new(b, None);
        assert!(matches!(next(&mut link, &quick()), Taken::Closed(Some(LostCause::Silent(_)))));
        drop(a);
    }

    #[test]
    fn bytes_that_came_while_nobody_looked_are_read_before_silence_is_judged() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut link = Link::new(b, None);
        std::thread::sleep(quick().silence() * 2);
        write_frame(&mut a, &encode(&Up::Heartbeat).unwrap()).unwrap();
        wait_ready(&mut [&mut link], &[], Some(Instant::now()), Duration::ZERO, &quick());
        assert_eq!(link.take(), None, "a heartbeat came: the worker lives");
        assert!(link.live());
    }

    #[test]
    fn a_wake_descriptor_ends_the_wait() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (_w, r) = UnixStream::pair().unwrap();
        let mut link = Link::new(r, None);
        a.write_all(&[1]).unwrap();
        let woke = wait_ready(&mut [&mut link], &[b.as_raw_fd()], None, Duration::ZERO, &Bounds::default());
        assert!(woke.wake);
        let woke =
            wait_ready(&mut [&mut link], &[b.as_raw_fd()], None, Duration::from_secs(5), &Bounds::default());
        assert!(woke.wake && !woke.blocked, "what is there is seen within the spin");
    }
}
