//! The spawner's writes to a worker, bounded: a worker that takes nothing of a frame for the
//! frame timeout (it stopped reading, while a process it forked may keep the socket open) does
//! not block the spawner; it is reported as silent, to be lost and killed.

use std::io;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::error::Error;
use crate::machines::process::frame::write_frame;

/// Why a frame could not be written to a worker.
#[derive(Debug)]
pub(crate) enum WriteFailure {
    /// The worker took nothing of it for this long.
    Stalled(Duration),
    /// The write failed (the connection is gone, or the frame is not valid).
    Failed(Error),
}

/// Makes every write to `stream` give up once it has made no progress for `bound` (at least
/// 1 ms).
///
/// # Errors
/// The `io::Error` of `setsockopt`.
pub(crate) fn bound_writes(stream: &UnixStream, bound: Duration) -> io::Result<()> {
    stream.set_write_timeout(Some(bound.max(Duration::from_millis(1))))
}

/// Writes one frame to a stream whose writes are bounded by [`bound_writes`] with `bound`
/// (the socket keeps the bound rounded to the kernel's clock; this is the one reported).
///
/// # Errors
/// [`WriteFailure::Stalled`] when the bound passed with nothing taken; [`WriteFailure::Failed`]
/// for any other failure.
pub(crate) fn write_bounded(
    stream: &mut UnixStream,
    bytes: &[u8],
    bound: Duration,
) -> Result<(), WriteFailure> {
    write_frame(stream, bytes).map_err(|e| {
        let stalled = match &e {
            Error::Vm(m) => std::error::Error::source(m)
                .and_then(|s| s.downcast_ref::<io::Error>())
                .is_some_and(|io| matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)),
            _ => false,
        };
        if stalled {
            WriteFailure::Stalled(bound)
        } else {
            WriteFailure::Failed(e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_peer_that_stops_reading_stalls_a_large_write_within_its_bound() {
        let (mut a, _b) = UnixStream::pair().unwrap();
        bound_writes(&a, Duration::from_millis(50)).unwrap();
        // Far more than a socket's buffer; `_b` is open and never read.
        let frame = vec![7u8; 8 << 20];
        let started = Instant::now();
        match write_bounded(&mut a, &frame, Duration::from_millis(50)) {
            Err(WriteFailure::Stalled(d)) => assert_eq!(d, Duration::from_millis(50)),
            other => panic!("{other:?} after {:?}", started.elapsed()),
        }
    }

    #[test]
    fn a_closed_peer_is_a_failure_not_a_stall() {
        let (mut a, b) = UnixStream::pair().unwrap();
        bound_writes(&a, Duration::from_millis(50)).unwrap();
        drop(b);
        assert!(matches!(
            write_bounded(&mut a, &[1, 2, 3], Duration::from_millis(50)),
            Err(WriteFailure::Failed(_))
        ));
    }

    #[test]
    fn a_small_frame_to_a_reading_peer_is_written() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        bound_writes(&a, Duration::from_millis(50)).unwrap();
        write_bounded(&mut a, &[1, 2, 3], Duration::from_millis(50)).unwrap();
        let got = crate::machines::process::frame::read_frame(&mut b).unwrap();
        assert_eq!(got.as_deref(), Some(&[1u8, 2, 3][..]));
    }
}
