//! Who may speak as a worker: the checks on a new connection to the spawner's socket.
//!
//! A connection becomes a worker only when all of these hold (see docs/reliability.md, "The
//! worker transport"):
//! - the peer's credentials, taken by the kernel at `connect` (`SO_PEERCRED`), name this
//!   process's user;
//! - the hello names the peer's own pid (a hello cannot speak for another process), and that
//!   pid is the process the spawner started for the slot (checked by the machine);
//! - the hello carries the run's secret, which the spawner hands only to the processes it
//!   starts (in their environment, which the worker clears at once).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

/// Holds the run's secret in a worker's environment.
pub(crate) const SECRET_ENV: &str = "COS_WORKER_SECRET";

/// The bytes of a secret.
pub(crate) const SECRET_LEN: usize = 32;

/// The run's secret: random bytes from the kernel.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) [u8; SECRET_LEN]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A new secret.
    ///
    /// # Errors
    /// When `/dev/urandom` cannot be read.
    pub(crate) fn new() -> io::Result<Self> {
        let mut bytes = [0u8; SECRET_LEN];
        File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Secret(bytes))
    }

    /// The secret as the worker's environment carries it (hexadecimal).
    pub(crate) fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The secret from its hexadecimal form.
    pub(crate) fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 2 * SECRET_LEN || !s.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; SECRET_LEN];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Secret(bytes))
    }

    /// Compares in time independent of where the bytes differ.
    pub(crate) fn matches(&self, other: &[u8; SECRET_LEN]) -> bool {
        self.0.iter().zip(other).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// The process and user at the other end of `stream`, as the kernel saw them at `connect`.
///
/// # Errors
/// When the kernel does not give them.
pub(crate) fn peer(stream: &UnixStream) -> io::Result<(u32, u32)> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes to the buffer `&mut cred` points to and
    // stores the length written in `len`; the buffer is a live `ucred` of exactly `len` bytes,
    // and the descriptor is the stream's open socket for the whole call.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((u32::try_from(cred.pid).unwrap_or(0), cred.uid))
}

/// This process's effective user.
pub(crate) fn my_uid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments and always succeeds.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_compare() {
        let s = Secret::new().unwrap();
        assert_eq!(Secret::from_hex(&s.to_hex()), Some(s));
        assert!(s.matches(&s.0));
        let mut other = s.0;
        other[SECRET_LEN - 1] ^= 1;
        assert!(!s.matches(&other));
        assert_eq!(Secret::from_hex("00"), None);
        assert_eq!(Secret::from_hex(&"zz".repeat(SECRET_LEN)), None);
    }

    #[test]
    fn the_peer_of_a_socket_pair_is_this_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(peer(&a).unwrap(), (std::process::id(), my_uid()));
    }
}
