//! How a spawner-side machine waits on the channel its workers answer on.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvError, RecvTimeoutError, Select, TryRecvError};

/// How long a blocking receive polls the channel before it parks the thread. A worker answers a
/// trivial job, and a spawner sends the next one, within a few to a few tens of microseconds;
/// parking and waking a thread costs about as much again. One spin per message: a long wait
/// costs nothing that shows.
pub(crate) const RECEIVE_SPIN: Duration = Duration::from_micros(50);

/// How many polls between two looks at the clock (and a yield of the core, for the thread
/// that is to send, when the machine has fewer cores than busy threads).
const POLLS_PER_LOOK: u32 = 64;

/// Polls `rx` until a message comes, it closes, or `until` passes (`Err(None)`).
fn spin_until<T>(rx: &Receiver<T>, until: Instant) -> Result<T, Option<RecvError>> {
    loop {
        for _ in 0..POLLS_PER_LOOK {
            match rx.try_recv() {
                Ok(v) => return Ok(v),
                Err(TryRecvError::Empty) => std::hint::spin_loop(),
                Err(TryRecvError::Disconnected) => return Err(Some(RecvError)),
            }
        }
        if Instant::now() >= until {
            return Err(None);
        }
        std::thread::yield_now();
    }
}

/// Waits for a message: a short spin first ([`RECEIVE_SPIN`]), since a worker often answers a
/// short job within a few microseconds and parking and waking a thread costs more than that;
/// then a blocking receive (no CPU while the wait is long).
pub(crate) fn recv_spinning<T>(rx: &Receiver<T>) -> Result<T, RecvError> {
    match spin_until(rx, Instant::now() + RECEIVE_SPIN) {
        Ok(v) => Ok(v),
        Err(Some(e)) => Err(e),
        Err(None) => rx.recv(),
    }
}

/// What [`recv_either`] got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Got<T> {
    /// A message from the main channel.
    Message(T),
    /// The other channel is ready (it has a message or is closed): its owner looks at it.
    Other,
    /// The deadline passed.
    Timeout,
    /// The main channel is closed.
    Closed,
}

/// Waits until `deadline` (`None`: without end) for a message on `rx` or for `other` to become
/// ready (a spawner call's answer, [`crate::machines::spawner_calls`]). Without `other`, it
/// spins first as [`recv_spinning`] does (up to the deadline).
pub(crate) fn recv_either<T, U>(
    rx: &Receiver<T>,
    other: Option<&Receiver<U>>,
    deadline: Option<Instant>,
) -> Got<T> {
    let Some(other) = other else {
        return match deadline {
            None => recv_spinning(rx).map_or(Got::Closed, Got::Message),
            Some(at) => match spin_until(rx, at.min(Instant::now() + RECEIVE_SPIN)) {
                Ok(v) => Got::Message(v),
                Err(Some(RecvError)) => Got::Closed,
                Err(None) => match rx.recv_deadline(at) {
                    Ok(v) => Got::Message(v),
                    Err(RecvTimeoutError::Timeout) => Got::Timeout,
                    Err(RecvTimeoutError::Disconnected) => Got::Closed,
                },
            },
        };
    };
    let mut select = Select::new();
    let main = select.recv(rx);
    select.recv(other);
    let ready = match deadline {
        Some(at) => select.ready_deadline(at).map_err(drop),
        None => Ok(select.ready()),
    };
    match ready {
        Err(()) => Got::Timeout,
        Ok(i) if i == main => match rx.try_recv() {
            Ok(v) => Got::Message(v),
            // Taken meanwhile (not by this machine): look again.
            Err(TryRecvError::Empty) => Got::Other,
            Err(TryRecvError::Disconnected) => Got::Closed,
        },
        Ok(_) => Got::Other,
    }
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

    #[test]
    fn waits_for_either_channel() {
        let (tx, rx) = crossbeam_channel::unbounded::<u8>();
        let (other_tx, other) = crossbeam_channel::unbounded::<u8>();
        tx.send(1).unwrap();
        assert_eq!(recv_either(&rx, Some(&other), None), Got::Message(1));
        other_tx.send(2).unwrap();
        assert_eq!(recv_either(&rx, Some(&other), None), Got::Other);
        assert_eq!(other.try_recv(), Ok(2));
        let now = Some(Instant::now());
        assert_eq!(recv_either(&rx, Some(&other), now), Got::Timeout);
        assert_eq!(recv_either(&rx, None::<&Receiver<u8>>, now), Got::Timeout);
        drop(other_tx);
        assert_eq!(recv_either(&rx, Some(&other), None), Got::Other, "a closed channel is ready");
        drop(tx);
        assert_eq!(recv_either(&rx, None::<&Receiver<u8>>, None), Got::Closed);
    }
}
