//! The spawner's writes to a worker, bounded: a worker that takes nothing of a frame for the
//! frame timeout (it stopped reading, while a process it forked may keep the socket open) does
//! not block the spawner; it is reported as silent, to be lost and killed. While a write waits
//! for room, what the worker sends is read, so that a worker whose job writes to the spawner
//! while the spawner writes to it is not deadlocked with it.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::machines::process::frame::MAX_FRAME;
use crate::vm::io_error;

/// Why a frame could not be written to a worker.
#[derive(Debug)]
pub(crate) enum WriteFailure {
    /// The worker took nothing of it for this long.
    Stalled(Duration),
    /// The write failed (the connection is gone, or the frame is not valid).
    Failed(Error),
}

/// Writes one frame (its `u32` little-endian length, then `bytes`) to `stream`, giving up once
/// the worker has taken nothing of it for `bound` (at least 1 ms). While the socket has no
/// room, `read` is called whenever it is readable; it reads what came and says whether to go
/// on watching for it (not once the connection's end is read).
///
/// # Errors
/// [`WriteFailure::Stalled`] when the bound passed with nothing taken; [`WriteFailure::Failed`]
/// for a frame longer than [`MAX_FRAME`] (nothing is written) or a failed write.
pub(crate) fn write_watching(
    stream: &UnixStream,
    bytes: &[u8],
    bound: Duration,
    mut read: impl FnMut() -> bool,
) -> Result<(), WriteFailure> {
    if bytes.len() > MAX_FRAME {
        return Err(WriteFailure::Failed(Error::Decode(format!(
            "frame of {} bytes exceeds the limit of {MAX_FRAME}",
            bytes.len()
        ))));
    }
    let bound = bound.max(Duration::from_millis(1));
    let mut buf = Vec::with_capacity(4 + bytes.len());
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
    let (mut done, mut progress, mut watch_input) = (0, Instant::now(), true);
    while done < buf.len() {
        let rest = &buf[done..];
        // SAFETY: send(2) reads at most `len` (here `rest.len()`) bytes at `buf` (here `rest`,
        // which lives across the call) and writes no memory of ours; MSG_DONTWAIT makes this
        // one call non-blocking, MSG_NOSIGNAL makes a closed peer an EPIPE error, not a signal.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if let Ok(n) = usize::try_from(n) {
            done += n;
            progress = Instant::now();
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {}
            _ => return Err(WriteFailure::Failed(io_error("cannot send a frame", e))),
        }
        let left = bound.saturating_sub(progress.elapsed());
        if left.is_zero() {
            return Err(WriteFailure::Stalled(bound));
        }
        let events = libc::POLLOUT | if watch_input { libc::POLLIN } else { 0 };
        let mut fd = libc::pollfd { fd: stream.as_raw_fd(), events, revents: 0 };
        let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        // SAFETY: poll(2) reads and writes `nfds` (here 1) `struct pollfd`s at `fds`; `fd` is
        // one such struct that lives across the call.
        let ready = unsafe { libc::poll(&mut fd, 1, ms) };
        if ready > 0 && watch_input && fd.revents & libc::POLLIN != 0 {
            watch_input = read();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machines::process::frame::{read_frame, write_frame};
    use std::io::Read;

    #[test]
    fn a_peer_that_stops_reading_stalls_a_large_write_within_its_bound() {
        let (a, _b) = UnixStream::pair().unwrap();
        // Far more than a socket's buffer; `_b` is open and never read.
        let frame = vec![7u8; 8 << 20];
        let started = Instant::now();
        match write_watching(&a, &frame, Duration::from_millis(50), || true) {
            Err(WriteFailure::Stalled(d)) => assert_eq!(d, Duration::from_millis(50)),
            other => panic!("{other:?} after {:?}", started.elapsed()),
        }
    }

    #[test]
    fn a_closed_peer_is_a_failure_not_a_stall() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        assert!(matches!(
            write_watching(&a, &[1, 2, 3], Duration::from_millis(50), || true),
            Err(WriteFailure::Failed(_))
        ));
    }

    #[test]
    fn a_small_frame_to_a_reading_peer_is_written() {
        let (a, mut b) = UnixStream::pair().unwrap();
        write_watching(&a, &[1, 2, 3], Duration::from_millis(50), || true).unwrap();
        let got = read_frame(&mut b).unwrap();
        assert_eq!(got.as_deref(), Some(&[1u8, 2, 3][..]));
    }

    #[test]
    fn what_the_peer_sends_meanwhile_is_read() {
        let (a, b) = UnixStream::pair().unwrap();
        // The peer writes a large frame before it reads one: both sides write at once.
        let peer = std::thread::spawn(move || {
            let mut b = b;
            write_frame(&mut b, &vec![2u8; 4 << 20]).unwrap();
            read_frame(&mut b).unwrap().map(|f| f.len())
        });
        let mut got = Vec::new();
        let reader = a.try_clone().unwrap();
        write_watching(&a, &vec![1u8; 4 << 20], Duration::from_secs(20), || {
            let mut chunk = [0u8; 1 << 16];
            let n = (&reader).read(&mut chunk).unwrap();
            got.extend_from_slice(&chunk[..n]);
            n > 0
        })
        .unwrap();
        assert_eq!(peer.join().unwrap(), Some(4 << 20));
        assert!(!got.is_empty(), "the peer's frame was read while the write waited");
    }

    #[test]
    fn an_oversized_frame_is_not_sent() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let big = vec![0u8; MAX_FRAME + 1];
        assert!(matches!(
            write_watching(&a, &big, Duration::from_millis(50), || true),
            Err(WriteFailure::Failed(_))
        ));
        drop(a);
        assert_eq!(read_frame(&mut b).unwrap(), None, "nothing of it is written");
    }
}
