//! The spawner's side of [`crate::spawner_call`]: the machines hand each worker's call here and
//! go on; a runner thread runs the calls one at a time, guarded, and the machines collect the
//! answers while they receive.
//!
//! - **Guarded**: the runner is a [`ThreadWorker`] of the spawner's process, so each call runs
//!   as a job of the serving loop ([`crate::machines::worker`]): in a local task of the runner's own
//!   OS on an 8 MiB stack, a panic caught by the registry ([`RemoteErrorKind::Panicked`]), an
//!   overflow caught in the task's guard page ([`RemoteErrorKind::StackOverflow`]; the runner
//!   then retires, since the overflowed frames were abandoned with what they held, and the next
//!   call gets a new runner).
//! - **Never waited for**: [`SpawnerCalls::submit`] only queues the call and starts it when the
//!   runner is idle; the machine picks the answer up with [`SpawnerCalls::answer`] and, while
//!   it waits for events, also wakes for the runner ([`SpawnerCalls::waiting`]). So a call
//!   that takes long, or never returns, does not stop the spawner's scheduler: its other tasks
//!   run, its deadlines fire.
//! - **In order**: the calls run one at a time, in the order they came, as PyOPUS runs them in
//!   the spawner's loop. What a task reports after one of its calls (its end, a message, a
//!   further call: possible after an asynchronous call) is held
//!   ([`SpawnerCalls::hold`]) until its calls are answered, so an asynchronous call still
//!   runs before its task's result reaches the spawner.
//! - **A hung call is abandoned with its task**: when the task that made the running call ends
//!   without waiting for it (its time limit, a cancel, a lost worker:
//!   [`SpawnerCalls::forget`]), the runner is detached (the call runs on, its answer goes
//!   nowhere; the process groups it started are ended) and the next call starts on a new one.
//!   A hung call whose task has no time limit holds the calls behind it, as a hung remote task
//!   holds its slot.

use std::collections::VecDeque;

use crossbeam_channel::{unbounded, Receiver, Select, TryRecvError};

use crate::error::Error;
use crate::machines::channel::{Reply, ThreadWorker, Up, Wake};
use crate::machines::setup::WorkerSetup;
use crate::vm::message::{decode, Job};
use crate::vm::{
    machine, HostId, MachineErrorKind, Registry, RemoteCall, RemoteErrorKind, RemoteFailure, TaskId,
};

/// Who made a spawner call: the worker slot and the task it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caller {
    pub(crate) slot: usize,
    pub(crate) task: TaskId,
}

/// A call's answer, for its caller.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) caller: Caller,
    /// Whether the caller waits for it (a synchronous call).
    pub(crate) reply: bool,
    pub(crate) result: Reply,
}

/// A call waiting to run, or running.
struct Pending {
    caller: Caller,
    call: RemoteCall,
    reply: bool,
}

/// The thread that runs the calls, and the channel of its reports.
struct Runner {
    worker: ThreadWorker,
    reports: Receiver<Vec<u8>>,
}

/// The workers' spawner calls of one machine; `H` is what the machine holds for a task that
/// waits for its calls (its reports as they came).
pub(crate) struct SpawnerCalls<H> {
    registry: Registry,
    runner: Option<Runner>,
    running: Option<Pending>,
    queue: VecDeque<Pending>,
    /// Answers made without the runner (it could not be started or be reached).
    answers: VecDeque<Answer>,
    /// Reports of tasks that wait for their calls, in the order they came.
    held: VecDeque<(TaskId, H)>,
    /// What the runner calls after each answer (see [`SpawnerCalls::set_wake`]).
    wake: Option<Wake>,
}

impl<H> SpawnerCalls<H> {
    /// Runs calls of the functions of `registry` (the spawner's); the runner starts on first
    /// use.
    pub(crate) fn new(registry: &Registry) -> Self {
        SpawnerCalls {
            registry: registry.clone(),
            runner: None,
            running: None,
            queue: VecDeque::new(),
            answers: VecDeque::new(),
            held: VecDeque::new(),
            wake: None,
        }
    }

    /// Has the runner call `wake` after each answer it sends, for a machine that waits on
    /// something else than [`SpawnerCalls::waiting`]'s channel (runners started from now on).
    pub(crate) fn set_wake(&mut self, wake: Wake) {
        self.wake = Some(wake);
    }

    /// Queues `caller`'s `call` (`reply`: the caller waits for the answer) and starts it if
    /// the runner is idle.
    pub(crate) fn submit(&mut self, caller: Caller, call: RemoteCall, reply: bool) {
        log::debug!(target: "cos", "spawner call of {} from task {}", call.function, caller.task);
        self.queue.push_back(Pending { caller, call, reply });
        self.start_next();
    }

    /// The next answer, if one is there (never waits). The next queued call starts.
    pub(crate) fn answer(&mut self) -> Option<Answer> {
        if let Some(a) = self.answers.pop_front() {
            return Some(a);
        }
        self.running.as_ref()?;
        let report = match self.runner.as_ref()?.reports.try_recv() {
            Ok(frame) => decode::<Up>(&frame),
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => {
                Err(machine(MachineErrorKind::Protocol, "the spawner-call runner is gone"))
            }
        };
        let pending = self.running.take().expect("a call runs");
        let lost = |why: String| Err(RemoteFailure::new(RemoteErrorKind::Panicked, why));
        let result = match report {
            Ok(Up::Finished { result, retire, .. }) => {
                if retire {
                    // It ends after this report: what the call's abandoned frames held goes
                    // with it.
                    self.end_runner(true);
                }
                result
            }
            Ok(Up::Lost { why, .. }) => {
                self.end_runner(true);
                lost(why)
            }
            Ok(Up::SpawnerCall { .. } | Up::Message { .. }) => {
                // The runner has no link to a spawner: this cannot come from it.
                self.end_runner(false);
                lost("a spawner call made a spawner call or sent a message".into())
            }
            Err(e) => {
                self.end_runner(false);
                lost(e.to_string())
            }
        };
        self.start_next();
        Some(Answer { caller: pending.caller, reply: pending.reply, result })
    }

    /// The runner's report channel while a call runs: a machine that waits for events also
    /// wakes when it becomes ready, and then looks at [`SpawnerCalls::answer`].
    pub(crate) fn waiting(&self) -> Option<&Receiver<Vec<u8>>> {
        self.running.as_ref()?;
        self.runner.as_ref().map(|r| &r.reports)
    }

    /// Whether a call of `task` is queued or running.
    fn calls_of(&self, task: TaskId) -> bool {
        self.running.iter().chain(&self.queue).any(|p| p.caller.task == task)
    }

    /// Whether reports of `task` are held.
    fn holds(&self, task: TaskId) -> bool {
        self.held.iter().any(|(t, _)| *t == task)
    }

    /// Holds `item`, a report of `task`, while `task` waits for its calls or has reports held
    /// before it (`call`: the item is a further spawner call, which needs to wait only behind
    /// held reports, since the calls queue in order); gives it back when it can be handled now.
    pub(crate) fn hold(&mut self, task: TaskId, item: H, call: bool) -> Option<H> {
        if self.holds(task) || (!call && self.calls_of(task)) {
            self.held.push_back((task, item));
            None
        } else {
            Some(item)
        }
    }

    /// The reports held for `task`, in order, once it waits for no call (after its answer);
    /// the machine handles them as if they came now (a further call among them holds the rest
    /// again).
    pub(crate) fn release(&mut self, task: TaskId) -> Vec<H> {
        if self.calls_of(task) || !self.holds(task) {
            return Vec::new();
        }
        let (mine, others) = std::mem::take(&mut self.held).into_iter().partition(|(t, _)| *t == task);
        self.held = others;
        mine.into_iter().map(|(_, h)| h).collect::<Vec<_>>()
    }

    /// `task` has ended without its calls (cancelled, timed out, lost): its queued calls and
    /// held reports are dropped; when its call runs, the runner is abandoned on its thread and
    /// the next call starts on a new one.
    pub(crate) fn forget(&mut self, task: TaskId) {
        self.queue.retain(|p| p.caller.task != task);
        self.answers.retain(|a| a.caller.task != task);
        self.held.retain(|(t, _)| *t != task);
        if self.running.as_ref().is_some_and(|p| p.caller.task == task) {
            log::debug!(target: "cos", "the spawner call of ended task {task} is abandoned");
            self.running = None;
            self.end_runner(false);
            self.start_next();
        }
    }

    /// Runs `call` and waits for its answer (the simulated machine, which runs its jobs to
    /// their end inside `spawn`).
    pub(crate) fn run_now(&mut self, call: &RemoteCall) -> Reply {
        let caller = Caller { slot: usize::MAX, task: TaskId::SPAWNER };
        self.submit(caller, call.clone(), true);
        loop {
            if let Some(a) = self.answer() {
                return a.result;
            }
            match self.waiting() {
                Some(reports) => {
                    let mut select = Select::new();
                    select.recv(reports);
                    select.ready();
                }
                None => {
                    return Err(RemoteFailure::new(RemoteErrorKind::Panicked, "the spawner call was lost"))
                }
            }
        }
    }

    /// Drops every call and held report; an idle runner ends, a busy one is abandoned.
    pub(crate) fn stop(&mut self) {
        self.queue.clear();
        self.answers.clear();
        self.held.clear();
        let busy = self.running.take().is_some();
        self.end_runner(!busy);
    }

    /// Starts the next queued call when none runs (and a runner when there is none).
    fn start_next(&mut self) {
        while self.running.is_none() {
            let Some(next) = self.queue.pop_front() else { return };
            match self.send(&next.call) {
                Ok(()) => self.running = Some(next),
                Err(e) => {
                    self.end_runner(false);
                    let result = Err(RemoteFailure::new(RemoteErrorKind::Panicked, e.to_string()));
                    self.answers.push_back(Answer { caller: next.caller, reply: next.reply, result });
                }
            }
        }
    }

    /// Sends `call` to the runner, starting one if needed.
    fn send(&mut self, call: &RemoteCall) -> Result<(), Error> {
        if self.runner.is_none() {
            let (up, reports) = unbounded();
            let setup = WorkerSetup::default();
            let worker = ThreadWorker::start(
                "cos-spawner-call".into(),
                &self.registry,
                &setup,
                &up,
                false,
                false,
                self.wake.clone(),
            )?;
            self.runner = Some(Runner { worker, reports });
        }
        let job = Job::new(TaskId::SPAWNER, HostId::new("spawner"), call.clone());
        self.runner.as_ref().expect("started").worker.send(&job)
    }

    /// Ends the runner: waits for it (`join`: it is idle or ending) or detaches it.
    fn end_runner(&mut self, join: bool) {
        if let Some(r) = self.runner.take() {
            if join {
                r.worker.join();
            } else {
                r.worker.detach();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::RemoteFn;

    static DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x| 2 * x);

    fn caller(n: u64) -> Caller {
        Caller { slot: 0, task: TaskId { worker: 1, number: n } }
    }

    fn wait_answer(calls: &mut SpawnerCalls<u8>) -> Answer {
        loop {
            if let Some(a) = calls.answer() {
                return a;
            }
            let mut select = Select::new();
            select.recv(calls.waiting().expect("a call runs"));
            select.ready();
        }
    }

    #[test]
    fn reports_after_a_call_are_held_until_its_answer() {
        let mut calls = SpawnerCalls::<u8>::new(&Registry::new().with(&DOUBLE));
        let (one, two) = (caller(1), caller(2));
        calls.submit(one, RemoteCall::of(&DOUBLE, &4).unwrap(), false);
        assert_eq!(calls.hold(one.task, 1, false), None, "task 1 waits for its call");
        assert_eq!(calls.hold(one.task, 2, true), None, "a call behind a held report waits too");
        assert_eq!(calls.hold(two.task, 9, false), Some(9), "task 2 waits for nothing");
        let a = wait_answer(&mut calls);
        assert_eq!((a.caller, a.reply), (one, false));
        assert_eq!(a.result, crate::vm::message::encode(&8u64).map_err(|_| unreachable!()));
        assert_eq!(calls.release(one.task), vec![1, 2]);
        assert_eq!(calls.release(one.task), Vec::<u8>::new());
        calls.stop();
    }

    #[test]
    fn the_runner_wakes_the_machine_after_each_answer() {
        let mut calls = SpawnerCalls::<u8>::new(&Registry::new().with(&DOUBLE));
        let (tx, woken) = unbounded::<()>();
        calls.set_wake(std::sync::Arc::new(move || {
            let _ = tx.send(());
        }));
        for n in 1..=3u64 {
            calls.submit(caller(n), RemoteCall::of(&DOUBLE, &n).unwrap(), true);
            // The wake comes with (after) the answer: waiting on it alone is enough.
            woken.recv_timeout(std::time::Duration::from_secs(30)).expect("the runner wakes the machine");
            let a = calls.answer().expect("the answer is there once the wake came");
            assert_eq!(a.result, crate::vm::message::encode(&(2 * n)).map_err(|_| unreachable!()));
        }
        assert!(woken.try_recv().is_err(), "one wake per answer");
        calls.stop();
    }

    #[test]
    fn a_forgotten_task_leaves_nothing_behind() {
        let mut calls = SpawnerCalls::<u8>::new(&Registry::new().with(&DOUBLE));
        let (one, two) = (caller(1), caller(2));
        calls.submit(one, RemoteCall::of(&DOUBLE, &1).unwrap(), true);
        calls.submit(two, RemoteCall::of(&DOUBLE, &2).unwrap(), true);
        assert_eq!(calls.hold(one.task, 1, false), None);
        calls.forget(one.task);
        assert_eq!(calls.release(one.task), Vec::<u8>::new());
        let a = wait_answer(&mut calls);
        assert_eq!(a.caller, two, "the call behind the forgotten one runs");
        assert!(calls.answer().is_none());
        calls.stop();
    }
}
