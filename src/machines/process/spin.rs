//! A short spin on a socket before a blocking wait: a worker that has just answered a job often
//! gets the next one within microseconds, and so does the spawner waiting on a worker that has
//! just been sent one; a blocked read that the kernel must wake costs tens of microseconds.
//! The spawner spins only while answers come within the spin ([`AdaptiveSpin`]): with jobs that
//! are not short, a spawner that spins after every job only takes a core from the workers.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// How long a socket is polled without blocking before the thread blocks on it. Long enough to
/// cover a trivial job's round trip (a few to a few tens of microseconds), short enough that a
/// wait without end costs nothing that shows: one such spin per frame.
pub(crate) const SOCKET_SPIN: Duration = Duration::from_micros(60);

/// Polls `socket` without blocking until it is readable (or at its end, or broken) or `spin`
/// has passed; whether it is. Between polls it [`pause`]s: a busy wait at first, then a yield
/// of the core, since on a machine with few cores the thread that is to write may be waiting
/// for one.
pub(crate) fn readable_within(socket: &impl AsRawFd, spin: Duration) -> bool {
    let started = Instant::now();
    let until = started + spin;
    loop {
        let mut fd = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll(2) reads and writes `nfds` (here 1) `struct pollfd`s at `fds`; `fd` is one
        // such struct that lives across the call, and with a timeout of 0 the call does not
        // block.
        let ready = unsafe { libc::poll(&mut fd, 1, 0) };
        if ready > 0 {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        pause(now - started);
    }
}

/// How long a spin polls without giving up its core (of [`SOCKET_SPIN`]): an answer that comes
/// within it (a trivial job's, while the peer has a core of its own) is seen without a trip
/// through the kernel's scheduler. Yielding from the first poll put the spawner and its worker
/// on one core now and then, taking turns, and doubled the round trip (measured: 1.58x against
/// 2.6x the socket floor, medians of 6 alternated runs on 2 cores; 15 µs gave 2.1x).
pub(crate) const EAGER_SPIN: Duration = Duration::from_micros(40);

/// Between two polls of a spin that has run for `spun`: a busy wait at first
/// ([`EAGER_SPIN`]), then a yield of the core, since on a machine with fewer cores than busy
/// processes the one that is to write may be waiting for it.
pub(crate) fn pause(spun: Duration) {
    if spun < EAGER_SPIN {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// After this many waits in a row in which nothing came within the spin, the spawner waits
/// without spinning (but for one wait in [`SPIN_PROBE`]).
const SPIN_MISSES: u32 = 4;
/// One wait in this many spins even after [`SPIN_MISSES`], to see whether answers come fast
/// again.
const SPIN_PROBE: u32 = 16;

/// The spawner's record of its recent waits, which says whether the next one spins.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AdaptiveSpin {
    /// The waits in a row in which nothing came within the spin.
    misses: u32,
}

impl AdaptiveSpin {
    /// How long the next wait spins: `full` while recent answers came within the spin (and in
    /// one wait in [`SPIN_PROBE`] after they stopped), else nothing.
    pub(crate) fn spin(&self, full: Duration) -> Duration {
        let probe = self.misses % SPIN_PROBE == SPIN_MISSES;
        if self.misses < SPIN_MISSES || probe {
            full
        } else {
            Duration::ZERO
        }
    }

    /// Notes how a wait went: whether what it waited for came within its spin.
    pub(crate) fn record(&mut self, within_spin: bool) {
        self.misses = if within_spin { 0 } else { self.misses.saturating_add(1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    const FULL: Duration = Duration::from_micros(200);

    fn spins(s: &AdaptiveSpin) -> bool {
        s.spin(FULL) == FULL
    }

    #[test]
    fn stops_spinning_after_misses_probes_now_and_then_and_starts_again_on_a_hit() {
        let mut s = AdaptiveSpin::default();
        for _ in 0..SPIN_MISSES {
            assert!(spins(&s), "spins while fewer than {SPIN_MISSES} waits in a row missed");
            s.record(false);
        }
        let mut spun = 0;
        for _ in 0..(4 * SPIN_PROBE) {
            spun += u32::from(spins(&s));
            s.record(false);
        }
        assert_eq!(spun, 4, "one wait in {SPIN_PROBE} probes");
        s.record(true);
        assert!(spins(&s), "a hit turns the spin back on");
        assert_eq!(s.spin(Duration::ZERO), Duration::ZERO);
    }

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
