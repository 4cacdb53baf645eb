//! The MPI machine's wire: message tags, the worker's answer frame, and polling MPI without
//! spinning for long (OpenMPI's blocking probes and receives spin at full CPU).
//!
//! A wait polls with a cheap non-blocking probe, spinning for a short time first (the spin,
//! 200 µs by default: a job's answer usually comes within it, so a short job's round trip is
//! not a sleep's), then sleeping between polls for 20 µs, a sixteenth longer each time, up to
//! 2 ms: a message that comes while the wait sleeps waits at most a sixteenth of the time
//! already waited (a 1 ms job's answer about 50 µs), and a wait of a second still wakes about
//! 560 times (a quarter: 520).

use std::thread;
use std::time::{Duration, Instant};

use ::mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use ::mpi::topology::{Communicator, SimpleCommunicator};
use ::mpi::{Rank, Tag};

use serde::{Deserialize, Serialize};

use crate::vm::{RemoteFailure, TaskId};

/// Worker to spawner: the worker's processor name (UTF-8).
pub(super) const TAG_HELLO: Tag = 11;
/// Spawner to worker: a job (task id, host, parent, call).
pub(super) const TAG_JOB: Tag = 12;
/// Spawner to worker: leave the loop, finalize MPI and exit; the payload is the grace in
/// milliseconds (a `u64`) a running job gets before the rank exits without it.
pub(super) const TAG_QUIT: Tag = 13;
/// Worker to spawner: the [`Up`] answering the worker's job.
pub(super) const TAG_RESULT: Tag = 14;
/// Spawner to worker, once after its hello: the machine's `WorkerSetup`.
pub(super) const TAG_SETUP: Tag = 15;
/// Worker to spawner: a user message from the running task, `(TaskId, bytes)`.
pub(super) const TAG_MESSAGE_UP: Tag = 16;
/// Spawner to worker: a user message to a task, `(TaskId, bytes)` (dropped by a rank whose
/// task is no longer that one).
pub(super) const TAG_MESSAGE_DOWN: Tag = 17;
/// Spawner to worker: cancel the task (a [`TaskId`]) if it still runs there.
pub(super) const TAG_CANCEL: Tag = 18;
/// Worker to spawner, every heartbeat interval while a job runs: the rank is alive (the
/// running task's [`TaskId`]).
pub(super) const TAG_HEARTBEAT: Tag = 19;

/// A worker rank's answer to its job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Up {
    /// The job finished; with `retire`, the rank takes no more jobs.
    Finished { task: TaskId, result: Result<Vec<u8>, RemoteFailure>, retire: bool },
    /// The rank's worker broke while it ran the job; it takes no more jobs.
    Lost { task: TaskId, why: String },
}

impl Up {
    pub(super) fn task(&self) -> TaskId {
        match self {
            Up::Finished { task, .. } | Up::Lost { task, .. } => *task,
        }
    }
}

/// The default spin before a wait starts sleeping.
pub(super) const DEFAULT_SPIN: Duration = Duration::from_micros(200);
/// The first sleep between two unsuccessful polls.
const FIRST_WAIT: Duration = Duration::from_micros(20);
/// The longest sleep between two unsuccessful polls.
const LONGEST_WAIT: Duration = Duration::from_millis(2);

/// Makes this thread's short sleeps last as long as asked: Linux lets a sleep overrun by the
/// thread's timer slack (50 µs by default), which would turn the first 20 µs poll interval into
/// about 90 µs on both sides of every job.
pub(super) fn precise_sleeps() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and changes only this thread's slack.
    let r = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong) };
    if r != 0 {
        log::debug!(target: "cos", "cannot lower the timer slack; polls may sleep longer");
    }
}

/// Between two unsuccessful polls: spins until `spin` has passed since the wait began, then
/// sleeps, longer each time up to [`LONGEST_WAIT`].
pub(super) struct Backoff {
    spin_until: Instant,
    delay: Duration,
}

impl Backoff {
    pub(super) fn new(spin: Duration) -> Self {
        Backoff { spin_until: Instant::now() + spin, delay: FIRST_WAIT }
    }

    /// Spins once (during the spin), or sleeps for the current delay, but not past
    /// `deadline`, and makes the delay a sixteenth longer (so a message waits at most a sixteenth
    /// of the time already waited, or 2 ms).
    pub(super) fn wait(&mut self, deadline: Option<Instant>) {
        let now = Instant::now();
        if now < self.spin_until {
            std::hint::spin_loop();
            return;
        }
        let mut d = self.delay;
        if let Some(end) = deadline {
            d = d.min(end.saturating_duration_since(now));
        }
        thread::sleep(d);
        self.delay = (self.delay + self.delay / 16).min(LONGEST_WAIT);
    }
}

/// Sends `bytes` to `rank` and waits for the send to complete without spinning for long (a
/// large message waits until the receiver takes it).
pub(super) fn send(world: &SimpleCommunicator, rank: Rank, bytes: &[u8], tag: Tag, spin: Duration) {
    ::mpi::request::scope(|scope| {
        let mut request = world.process_at_rank(rank).immediate_send_with_tag(scope, bytes, tag);
        let mut backoff = Backoff::new(spin);
        loop {
            match request.test() {
                Ok(_) => return,
                Err(r) => {
                    request = r;
                    backoff.wait(None);
                }
            }
        }
    });
}

/// Receives the next message from `source` (any tag), polling until `deadline` (`None`: no
/// limit). Returns the payload, the sender's rank and the tag.
pub(super) fn receive<S: Source>(
    source: &S,
    deadline: Option<Instant>,
    spin: Duration,
) -> Option<(Vec<u8>, Rank, Tag)> {
    let mut backoff = Backoff::new(spin);
    loop {
        if let Some(m) = try_receive(source) {
            return Some(m);
        }
        if deadline.is_some_and(|end| Instant::now() >= end) {
            return None;
        }
        backoff.wait(deadline);
    }
}

/// The machine's tags: every other tag on `MPI_COMM_WORLD` belongs to the program (a remote
/// function may talk MPI with rank 0 or with other ranks), and the machine never takes a
/// message with one.
pub(super) const OUR_TAGS: std::ops::RangeInclusive<Tag> = TAG_HELLO..=TAG_HEARTBEAT;

/// The next message of the machine's (a tag of [`OUR_TAGS`]) from `source`, if one has come.
///
/// The first message waiting is looked at without taking it; one of the program's is left
/// where it is (its receive is the program's), and the machine's messages are then looked
/// for by their tags.
pub(super) fn try_receive<S: Source>(source: &S) -> Option<(Vec<u8>, Rank, Tag)> {
    let first = source.immediate_probe()?;
    let tags = if OUR_TAGS.contains(&first.tag()) { first.tag()..=first.tag() } else { OUR_TAGS };
    tags.into_iter().find_map(|tag| {
        let probed = source.immediate_matched_probe_with_tag(tag)?;
        let (bytes, status) = probed.matched_receive_vec::<u8>();
        Some((bytes, status.source_rank(), status.tag()))
    })
}

/// The next message from `source` with `tag`, if one has come.
pub(super) fn try_receive_tag<S: Source>(source: &S, tag: Tag) -> Option<Vec<u8>> {
    let probed = source.immediate_matched_probe_with_tag(tag)?;
    Some(probed.matched_receive_vec::<u8>().0)
}
