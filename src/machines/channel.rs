//! Worker threads of this process and the channels they talk over, for the thread and the
//! simulated machines (and for the spawner's runner of [`crate::spawner_call`]s,
//! [`crate::machines::spawner_calls`]).
//!
//! A job's arguments and its value cross as postcard bytes, exactly as they would between
//! processes. The envelopes around them (the [`Job`] and the [`Up`] reports) cross as values
//! where the machine reads them as such ([`UpFrame`]): within one process, encoding them would
//! only copy the bytes inside twice and allocate per job. The message kinds of this transport
//! ([`Up`]) are private to it.

use std::cell::RefCell;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::environment::{this_thread_groups, ThreadGroups};
use crate::error::Error;
use crate::machines::setup::WorkerSetup;
use crate::machines::wait::recv_spinning;
use crate::machines::worker::{serve, End, Report, WorkerLink};
use crate::spawner_call::{self, SpawnerLink};
use crate::vm::message::{encode, Job};
use crate::vm::{io_error, machine, HostId, MachineErrorKind, Registry, RemoteCall, RemoteFailure, TaskId};

/// A spawner call's answer.
pub(crate) type Reply = Result<Vec<u8>, RemoteFailure>;

/// From a worker thread to its machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Up {
    /// A job finished (see [`Report::Finished`]).
    Finished { task: TaskId, result: Reply, retire: bool },
    /// The worker broke while it ran the job, and ends.
    Lost { task: TaskId, why: String },
    /// Run `call` in the spawner; `reply` asks for the answer on the worker's reply channel.
    SpawnerCall { task: TaskId, call: RemoteCall, reply: bool },
    /// A user message from the running task to the spawner.
    Message { task: TaskId, bytes: Vec<u8> },
}

impl Up {
    /// The task it comes from.
    pub(crate) fn task(&self) -> TaskId {
        match self {
            Up::Finished { task, .. }
            | Up::Lost { task, .. }
            | Up::SpawnerCall { task, .. }
            | Up::Message { task, .. } => *task,
        }
    }
}

/// A user message from the spawner to the task `to` of a worker thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Down {
    pub(crate) to: TaskId,
    pub(crate) bytes: Vec<u8>,
}

/// What a worker thread's reports cross its report channel as: postcard bytes (`Vec<u8>`, for
/// a machine that decodes them as it would a process's frames) or the [`Up`] values themselves.
pub(crate) trait UpFrame: Send + 'static {
    /// The frame of one report.
    ///
    /// # Errors
    /// [`Error::Decode`] when it cannot be encoded.
    fn frame(up: Up) -> Result<Self, Error>
    where
        Self: Sized;
}

impl UpFrame for Vec<u8> {
    fn frame(up: Up) -> Result<Self, Error> {
        encode(&up)
    }
}

impl UpFrame for Up {
    fn frame(up: Up) -> Result<Self, Error> {
        Ok(up)
    }
}

/// A job as it crosses a worker thread's job channel. Its host comes only when it is not the
/// last job's: a thread serves one slot, whose host does not change, so a stream of jobs
/// carries no string to allocate on one side and free on the other.
struct JobFrame {
    task: TaskId,
    host: Option<HostId>,
    parent: TaskId,
    call: RemoteCall,
}

/// A worker thread's job channel and report channel.
struct ChannelLink<F> {
    jobs: Receiver<JobFrame>,
    /// The host of the last job.
    host: HostId,
    up: Sender<F>,
    /// Called after each report, for a spawner that waits on something else than `up`.
    wake: Option<Wake>,
}

/// A hook a worker thread calls after it reports, so that a spawner that waits on file
/// descriptors (the process machine's `poll`) rather than on the report channel wakes for it.
pub(crate) type Wake = Arc<dyn Fn() + Send + Sync>;

impl<F: UpFrame> WorkerLink for ChannelLink<F> {
    fn next_job(&mut self) -> Result<Option<Job>, Error> {
        // The next job of a stream of short ones comes within microseconds of the last report.
        let Ok(JobFrame { task, host, parent, call }) = recv_spinning(&self.jobs) else { return Ok(None) };
        if let Some(host) = host {
            self.host = host;
        }
        Ok(Some(Job { task, host: self.host.clone(), parent, call }))
    }

    fn report(&mut self, report: Report) -> Result<(), Error> {
        let up = match report {
            Report::Finished { task, result, retire } => Up::Finished { task, result, retire },
            Report::Lost { task, why } => Up::Lost { task, why },
        };
        let gone = || machine(MachineErrorKind::Finalized, "the spawner is gone");
        self.up.send(F::frame(up)?).map_err(|_| gone())?;
        if let Some(wake) = &self.wake {
            wake();
        }
        Ok(())
    }
}

/// A worker thread's link to the spawner for its spawner calls: calls go with its reports,
/// replies come on their own channel.
struct ChannelSpawnerLink<F> {
    up: Sender<F>,
    replies: Receiver<Reply>,
    /// User messages from the spawner; `None` where the machine sends none (SimVm).
    messages: Option<Receiver<Down>>,
}

impl<F: UpFrame> SpawnerLink for ChannelSpawnerLink<F> {
    fn call(&mut self, task: TaskId, call: RemoteCall, wait: bool) -> Result<Option<Reply>, Error> {
        let gone = || machine(MachineErrorKind::Finalized, "the spawner is gone");
        self.up.send(F::frame(Up::SpawnerCall { task, call, reply: wait })?).map_err(|_| gone())?;
        if wait {
            self.replies.recv().map(Some).map_err(|_| gone())
        } else {
            Ok(None)
        }
    }

    fn send_message(&mut self, task: TaskId, bytes: Vec<u8>) -> Result<(), Error> {
        let gone = || machine(MachineErrorKind::Finalized, "the spawner is gone");
        self.up.send(F::frame(Up::Message { task, bytes })?).map_err(|_| gone())
    }

    fn receive_message(
        &mut self,
        task: TaskId,
        deadline: std::time::Instant,
    ) -> Result<Option<Vec<u8>>, Error> {
        let Some(messages) = &self.messages else {
            return Err(machine(
                MachineErrorKind::Unsupported,
                "this machine sends no messages to its tasks",
            ));
        };
        loop {
            match messages.recv_deadline(deadline) {
                Ok(Down { to, bytes }) if to == task => return Ok(Some(bytes)),
                Ok(Down { to, .. }) => log::debug!(target: "cos", "a message for ended task {to} dropped"),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => return Ok(None),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(machine(MachineErrorKind::Finalized, "the spawner is gone"))
                }
            }
        }
    }
}

/// One worker thread: it serves the jobs sent to it with [`serve`] and reports on `up`.
pub(crate) struct ThreadWorker {
    jobs: Option<Sender<JobFrame>>,
    /// The host of the last job sent (the thread knows it).
    host: RefCell<Option<HostId>>,
    /// Answers to its spawner calls.
    replies: Option<Sender<Reply>>,
    /// User messages to its tasks.
    messages: Option<Sender<Down>>,
    handle: Option<thread::JoinHandle<()>>,
    /// The process groups its jobs started.
    groups: ThreadGroups,
}

impl ThreadWorker {
    /// Starts a worker thread named `name` whose jobs run in the environment of `setup`. With
    /// `spawner_calls`, its jobs' spawner calls and user messages come to the machine on `up`;
    /// without, the calls run in the worker thread. With `messages`, its tasks can receive user
    /// messages ([`ThreadWorker::message`]).
    ///
    /// # Errors
    /// [`Error::Vm`] when the thread cannot be started.
    pub(crate) fn start<F: UpFrame>(
        name: String,
        registry: &Registry,
        setup: &WorkerSetup,
        up: &Sender<F>,
        spawner_calls: bool,
        messages: bool,
        wake: Option<Wake>,
    ) -> Result<Self, Error> {
        let (jobs_tx, jobs) = unbounded::<JobFrame>();
        let (replies_tx, replies) = unbounded::<Reply>();
        let (messages_tx, messages_rx) = unbounded::<Down>();
        let messages_rx = messages.then_some(messages_rx);
        let (registry, setup, up) = (registry.clone(), setup.clone(), up.clone());
        let (groups_tx, groups_rx) = crossbeam_channel::bounded(1);
        let handle = thread::Builder::new()
            .name(name)
            .spawn(move || {
                let _ = groups_tx.send(this_thread_groups());
                let _link = spawner_calls.then(|| {
                    let link = ChannelSpawnerLink { up: up.clone(), replies, messages: messages_rx };
                    spawner_call::install(Box::new(link))
                });
                match serve(&registry, setup, ChannelLink { jobs, host: HostId::new(""), up, wake }) {
                    End::HungUp | End::Retired => {}
                    End::Broken(why) => log::error!(target: "cos", "worker thread ends: {why}"),
                }
            })
            .map_err(|e| io_error("cannot start a worker thread", e))?;
        let groups =
            groups_rx.recv().map_err(|_| machine(MachineErrorKind::Io, "the worker thread ended at once"))?;
        Ok(ThreadWorker {
            jobs: Some(jobs_tx),
            host: RefCell::new(None),
            replies: Some(replies_tx),
            messages: Some(messages_tx),
            handle: Some(handle),
            groups,
        })
    }

    /// Sends a job.
    ///
    /// # Errors
    /// [`Error::Vm`] when the thread is gone.
    pub(crate) fn send(&self, job: &Job) -> Result<(), Error> {
        match self.give(job.task, &job.host, job.parent, job.call.clone()) {
            None => Ok(()),
            Some(_) => Err(machine(MachineErrorKind::Protocol, "the worker thread is gone")),
        }
    }

    /// Sends the job of `call` as `task` on `host`, spawned by `parent`, with `call` moved;
    /// `Some`: the call back, the thread is gone.
    #[must_use]
    pub(crate) fn give(
        &self,
        task: TaskId,
        host: &HostId,
        parent: TaskId,
        call: RemoteCall,
    ) -> Option<RemoteCall> {
        let Some(tx) = &self.jobs else { return Some(call) };
        let mut last = self.host.borrow_mut();
        let host = (last.as_ref() != Some(host)).then(|| host.clone());
        match tx.send(JobFrame { task, host: host.clone(), parent, call }) {
            Ok(()) => {
                if host.is_some() {
                    *last = host;
                }
                None
            }
            Err(e) => Some(e.into_inner().call),
        }
    }

    /// Answers a spawner call; `false` when the thread is gone.
    pub(crate) fn reply(&self, reply: Reply) -> bool {
        self.replies.as_ref().is_some_and(|tx| tx.send(reply).is_ok())
    }

    /// Sends a user message to the thread's task `to`; `false` when the thread is gone.
    pub(crate) fn message(&self, to: TaskId, bytes: Vec<u8>) -> bool {
        self.messages.as_ref().is_some_and(|tx| tx.send(Down { to, bytes }).is_ok())
    }

    /// Hangs up: the thread ends after its job, if any.
    pub(crate) fn hang_up(&mut self) {
        self.jobs = None;
        self.replies = None;
        self.messages = None;
    }

    /// Ends the process groups the thread's job started, and lets it start no more (the
    /// machine is finalized while the job runs).
    pub(crate) fn end_programs(&self) -> usize {
        self.groups.close()
    }

    /// Hangs up and waits for the thread to end.
    pub(crate) fn join(mut self) {
        self.hang_up();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }

    /// Hangs up and waits for the thread to end until `by`; a thread still busy then is
    /// detached (it finishes its job on its own; its reports go nowhere) and the process groups
    /// its job started are ended. `true` when it ended.
    pub(crate) fn join_by(mut self, by: Instant) -> bool {
        self.hang_up();
        let Some(h) = self.handle.take() else { return true };
        // A thread has no timed join: look at it now and then until the grace is over.
        while !h.is_finished() && Instant::now() < by {
            thread::sleep(Duration::from_millis(1));
        }
        if h.is_finished() {
            let _ = h.join();
            true
        } else {
            self.groups.close();
            false
        }
    }

    /// Hangs up and lets the thread finish its job on its own (its reports are stale); the
    /// process groups the job started are ended now (SIGTERM, then SIGKILL after
    /// [`crate::KILL_GRACE`], and reaped), and the thread may start no more.
    pub(crate) fn detach(mut self) {
        self.hang_up();
        let killed = self.groups.close();
        if killed > 0 {
            log::debug!(target: "cos", "{killed} process groups of a retired worker thread ended");
        }
        self.handle = None;
    }
}
