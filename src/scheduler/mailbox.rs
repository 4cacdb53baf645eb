//! The Receive system call: user messages from remote tasks to the spawner, queued until a
//! task receives them, and the tasks waiting for one.

use std::collections::VecDeque;
use std::time::Instant;

use crate::scheduler::table::{State, Wait};
use crate::scheduler::Scheduler;
use crate::syscall::SysReturn;
use crate::task::Tid;
use crate::vm::TaskId;

/// How many messages from remote tasks the spawner keeps before a task receives them with
/// [`crate::receive_message`]; a message beyond it is dropped (and logged as an error).
///
/// ```
/// assert_eq!(cos::SPAWNER_MAILBOX_LIMIT, 4096);
/// ```
pub const SPAWNER_MAILBOX_LIMIT: usize = 4096;

/// Messages not yet received, oldest first, and the receivers waiting, first come first.
#[derive(Default)]
pub(crate) struct Mailbox {
    messages: VecDeque<(TaskId, Vec<u8>)>,
    waiting: VecDeque<Tid>,
}

impl Scheduler {
    /// A receive: the oldest message at once; with none, waits until one comes or the deadline
    /// passes, and answers `None` at once when no remote task runs that could send one.
    pub(crate) fn handle_receive(&mut self, tid: Tid, deadline: Option<Instant>) {
        if let Some(m) = self.mailbox.messages.pop_front() {
            return self.reply(tid, SysReturn::Received(Ok(Some(m))));
        }
        let due = deadline.is_some_and(|at| at <= self.now());
        if due || self.remote.is_empty() {
            return self.reply(tid, SysReturn::Received(Ok(None)));
        }
        log::debug!(target: "cos", "task {tid} waits for a message");
        if let Some(e) = self.tasks.get_mut(&tid) {
            e.state = State::Waiting(Wait::Message);
            e.deadline = deadline;
        }
        if let Some(at) = deadline {
            self.timers.insert(at, tid);
        }
        self.mailbox.waiting.push_back(tid);
    }

    /// A message came from remote task `from`: to the first task still waiting, else queued.
    pub(crate) fn on_message(&mut self, from: TaskId, bytes: Vec<u8>) {
        while let Some(tid) = self.mailbox.waiting.pop_front() {
            if self.waits_for_message(tid) {
                return self.reply(tid, SysReturn::Received(Ok(Some((from, bytes)))));
            }
        }
        if self.mailbox.messages.len() >= SPAWNER_MAILBOX_LIMIT {
            log::error!(
                target: "cos",
                "message from task {from} dropped: {SPAWNER_MAILBOX_LIMIT} messages wait to be received"
            );
            return;
        }
        self.mailbox.messages.push_back((from, bytes));
    }

    /// No remote task runs any more: no message can come, so every waiting receive gets `None`.
    pub(crate) fn no_sender_left(&mut self) {
        while let Some(tid) = self.mailbox.waiting.pop_front() {
            if self.waits_for_message(tid) {
                self.reply(tid, SysReturn::Received(Ok(None)));
            }
        }
    }

    /// Whether `tid` still waits in a receive (it may have timed out or been cancelled since).
    fn waits_for_message(&self, tid: Tid) -> bool {
        self.tasks.get(&tid).is_some_and(|e| matches!(e.state, State::Waiting(Wait::Message)))
    }
}
