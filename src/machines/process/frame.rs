//! The process machine's frames: the codec (a `u32` little-endian length, then that many
//! postcard bytes) and the message kinds that cross the socket, which only this machine speaks.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::machines::setup::WorkerSetup;
use crate::vm::message::Job;
use crate::vm::{io_error, RemoteCall, RemoteFailure, TaskId};

/// The longest frame either side accepts.
pub(crate) const MAX_FRAME: usize = 256 << 20;

/// A new worker's first frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// Its slot number (1-based, as in [`TaskId::worker`]).
    pub(crate) slot: u32,
    pub(crate) pid: u32,
    /// The run's secret, as the spawner gave it to the process it started.
    pub(crate) secret: [u8; crate::machines::process::auth::SECRET_LEN],
}

/// A frame from the spawner to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Down {
    /// The first frame after the worker's hello: the machine's index and its tasks'
    /// environment.
    Setup(WorkerSetup),
    /// Run a call as this task.
    Run(Job),
    /// The answer to the running task's spawner call.
    SpawnerReply(Result<Vec<u8>, RemoteFailure>),
    /// A user message to the worker's task `to` (dropped there when `to` no longer runs).
    Message { to: TaskId, bytes: Vec<u8> },
}

/// A frame from a worker to the spawner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Up {
    /// A job finished; with `retire`, the worker exits after this frame.
    Finished { task: TaskId, result: Result<Vec<u8>, RemoteFailure>, retire: bool },
    /// The worker broke while it ran the job, and exits.
    Lost { task: TaskId, why: String },
    /// Run `call` in the spawner; `reply` asks for a [`Down::SpawnerReply`].
    SpawnerCall { task: TaskId, call: RemoteCall, reply: bool },
    /// A user message from the running task to the spawner.
    Message { task: TaskId, bytes: Vec<u8> },
    /// The worker lives (sent every heartbeat interval by a thread of its own).
    Heartbeat,
}

/// Writes one frame: the length, then the bytes.
///
/// # Errors
/// [`Error::Decode`] for a frame longer than [`MAX_FRAME`] (nothing is written);
/// [`Error::Vm`] when writing fails.
pub(crate) fn write_frame(w: &mut impl Write, bytes: &[u8]) -> Result<(), Error> {
    if bytes.len() > MAX_FRAME {
        return Err(Error::Decode(format!(
            "frame of {} bytes exceeds the limit of {MAX_FRAME}",
            bytes.len()
        )));
    }
    let mut buf = Vec::with_capacity(4 + bytes.len());
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
    w.write_all(&buf).and_then(|()| w.flush()).map_err(|e| io_error("cannot send a frame", e))
}

/// Reads one frame; `Ok(None)` when the stream ends cleanly between frames.
///
/// # Errors
/// [`Error::Decode`] for a length beyond [`MAX_FRAME`] or a stream that ends inside a frame;
/// [`Error::Vm`] when reading fails.
pub(crate) fn read_frame(r: &mut impl Read) -> Result<Option<Vec<u8>>, Error> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(Error::Decode("stream ended inside a frame length".into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("cannot read a frame", e)),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(Error::Decode(format!("frame length {len} exceeds the limit of {MAX_FRAME}")));
    }
    // Grows with the bytes that really come, so a lying length costs no memory.
    let mut body = Vec::new();
    r.take(len as u64).read_to_end(&mut body).map_err(|e| io_error("cannot read a frame", e))?;
    if body.len() < len {
        return Err(Error::Decode(format!("stream ended after {} of {len} frame bytes", body.len())));
    }
    Ok(Some(body))
}

/// Feeds `data` to the spawner's side of the codec as a stream from a worker: frames are cut
/// and decoded as [`Up`] until the stream ends or breaks; each decoded frame must encode back
/// to the same bytes' meaning. For the fuzz target `fuzz/fuzz_targets/frame.rs`.
///
/// # Panics
/// When the codec breaks its contract (a decoded frame does not round-trip).
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_spawner_stream(data: &[u8]) {
    use crate::vm::message::{decode, encode};
    let mut stream = data;
    while let Ok(Some(frame)) = read_frame(&mut stream) {
        assert!(frame.len() <= MAX_FRAME);
        if let Ok(up) = decode::<Up>(&frame) {
            let again = encode(&up).expect("a decoded frame encodes");
            assert_eq!(decode::<Up>(&again).expect("an encoded frame decodes"), up);
            let mut out = Vec::new();
            write_frame(&mut out, &again).expect("a frame within the limit is written");
            assert_eq!(read_frame(&mut out.as_slice()).expect("read back"), Some(again));
        }
        if let Ok(down) = decode::<Down>(&frame) {
            assert_eq!(decode::<Down>(&encode(&down).expect("encodes")).expect("decodes"), down);
        }
        if let Ok(hello) = decode::<Hello>(&frame) {
            assert_eq!(decode::<Hello>(&encode(&hello).expect("encodes")).expect("decodes"), hello);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::message::{decode, encode};
    use crate::vm::RemoteErrorKind;

    fn framed(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, bytes).unwrap();
        out
    }

    #[test]
    fn frames_round_trip() {
        let mut stream = [framed(b"hello"), framed(b"")].concat();
        assert_eq!(&stream[..4], &5u32.to_le_bytes());
        let mut r = stream.as_slice();
        assert_eq!(read_frame(&mut r).unwrap(), Some(b"hello".to_vec()));
        assert_eq!(read_frame(&mut r).unwrap(), Some(Vec::new()));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        stream.clear();
        assert_eq!(read_frame(&mut stream.as_slice()).unwrap(), None);
    }

    #[test]
    fn an_oversized_length_is_an_error() {
        let stream = [&u32::MAX.to_le_bytes()[..], b"garbage"].concat();
        assert!(matches!(read_frame(&mut stream.as_slice()), Err(Error::Decode(_))));
        let stream = ((MAX_FRAME + 1) as u32).to_le_bytes();
        assert!(matches!(read_frame(&mut stream.as_slice()), Err(Error::Decode(_))));
    }

    #[test]
    fn a_stream_ending_inside_a_frame_is_an_error() {
        let stream = [&100u32.to_le_bytes()[..], b"only a few bytes"].concat();
        assert!(matches!(read_frame(&mut stream.as_slice()), Err(Error::Decode(_))));
        assert!(matches!(read_frame(&mut [7u8, 0].as_slice()), Err(Error::Decode(_))));
    }

    #[test]
    fn an_oversized_frame_is_not_sent() {
        let mut out = Vec::new();
        assert!(matches!(write_frame(&mut out, &vec![0u8; MAX_FRAME + 1]), Err(Error::Decode(_))));
        assert!(out.is_empty(), "nothing of it is written");
    }

    #[test]
    fn a_read_error_keeps_its_cause() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::ConnectionReset))
            }
        }
        match read_frame(&mut Broken) {
            Err(Error::Vm(e)) => {
                assert_eq!(e.io_error().map(io::Error::kind), Some(io::ErrorKind::ConnectionReset))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_round_trip_and_garbage_does_not_decode() {
        let task = TaskId { worker: 2, number: 9 };
        let up = Up::Finished {
            task,
            result: Err(RemoteFailure::new(RemoteErrorKind::Panicked, "boom")),
            retire: false,
        };
        let frame = read_frame(&mut framed(&encode(&up).unwrap()).as_slice()).unwrap().unwrap();
        assert_eq!(decode::<Up>(&frame).unwrap(), up);
        let garbage = [0xffu8; 9];
        assert!(matches!(decode::<Up>(&garbage), Err(Error::Decode(_))));
        assert!(matches!(decode::<Down>(&garbage), Err(Error::Decode(_))));
        // A valid frame with a byte too many is not accepted either.
        let mut long = encode(&up).unwrap();
        long.push(0);
        assert!(matches!(decode::<Up>(&long), Err(Error::Decode(_))));
    }

    #[test]
    fn the_fuzz_entry_accepts_streams_of_every_shape() {
        let task = TaskId { worker: 1, number: 1 };
        let up = encode(&Up::Lost { task, why: "x".into() }).unwrap();
        let call = RemoteCall::new("f", &1u8).unwrap();
        let spawner = encode(&Up::SpawnerCall { task, call, reply: true }).unwrap();
        fuzz_spawner_stream(&[framed(&up), framed(&spawner), framed(&[0xff; 3]), vec![1, 2]].concat());
        fuzz_spawner_stream(&[]);
        fuzz_spawner_stream(&u32::MAX.to_le_bytes());
    }
}
