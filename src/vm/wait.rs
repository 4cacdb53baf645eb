//! How a spawner-side machine waits on the channel its workers answer on.

use crossbeam_channel::{Receiver, RecvError, TryRecvError};

/// How many times a blocking receive polls the channel before it parks the thread (a few
/// microseconds).
const RECEIVE_SPINS: u32 = 256;

/// Waits for a message: a short spin first, since a worker often answers a short job within a
/// few microseconds and parking and waking a thread costs more than that; then a blocking
/// receive (no CPU while the wait is long).
pub(crate) fn recv_spinning<T>(rx: &Receiver<T>) -> Result<T, RecvError> {
    for _ in 0..RECEIVE_SPINS {
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Empty) => std::hint::spin_loop(),
            Err(TryRecvError::Disconnected) => return Err(RecvError),
        }
    }
    rx.recv()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receives_what_is_there_and_reports_a_closed_channel() {
        let (tx, rx) = crossbeam_channel::unbounded();
        tx.send(7).unwrap();
        assert_eq!(recv_spinning(&rx), Ok(7));
        let waiter = std::thread::spawn(move || recv_spinning(&rx));
        tx.send(8).unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(8));
        let (tx, rx) = crossbeam_channel::unbounded::<u8>();
        drop(tx);
        assert_eq!(recv_spinning(&rx), Err(RecvError));
    }
}
