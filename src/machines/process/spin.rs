//! A short spin on a socket before a blocking wait: a worker that has just answered a job often
//! gets the next one within microseconds, and so does the spawner waiting on a worker that has
//! just been sent one; a blocked read that the kernel must wake costs tens of microseconds.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// How long a socket is polled without blocking before the thread blocks on it. Long enough to
/// cover a trivial job's round trip (a few to a few tens of microseconds), short enough that a
/// wait without end costs nothing that shows: one such spin per frame.
pub(crate) const SOCKET_SPIN: Duration = Duration::from_micros(60);

/// Polls `socket` without blocking until it is readable (or at its end, or broken) or `spin`
/// has passed; whether it is. Yields the core between polls, since on a machine with few cores
/// the thread that is to write may be waiting for one.
pub(crate) fn readable_within(socket: &impl AsRawFd, spin: Duration) -> bool {
    let until = Instant::now() + spin;
    loop {
        let mut fd = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll(2) reads and writes `nfds` (here 1) `struct pollfd`s at `fds`; `fd` is one
        // such struct that lives across the call, and with a timeout of 0 the call does not
        // block.
        let ready = unsafe { libc::poll(&mut fd, 1, 0) };
        if ready > 0 {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn sees_bytes_that_are_there_and_gives_up_when_none_come() {
        let (mut a, b) = UnixStream::pair().unwrap();
        assert!(!readable_within(&b, Duration::from_micros(10)));
        a.write_all(b"x").unwrap();
        assert!(readable_within(&b, Duration::ZERO));
        drop(a);
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert!(readable_within(&b, Duration::ZERO), "a closed socket is readable (at its end)");
    }
}
