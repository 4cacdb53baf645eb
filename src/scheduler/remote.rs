//! The loop's polling point: messages from the virtual machine.

use std::time::Duration;

use crate::error::Error;
use crate::scheduler::table::Entry;
use crate::scheduler::Scheduler;
use crate::vm::{Message, TaskId};

impl Scheduler {
    /// Drains the machine's messages: without blocking while local tasks are ready, blocking in
    /// the machine while only remote work is outstanding.
    pub(crate) fn poll_vm(&mut self) {
        loop {
            let Some(vm) = self.vm.as_mut() else { return };
            // Messages come only from running remote tasks.
            if self.remote.is_empty() {
                return;
            }
            let block = self.ready.is_empty();
            // A blocking wait lasts at most until the earliest deadline.
            let timeout = match (block, self.timers.earliest()) {
                (false, _) => Some(Duration::ZERO),
                (true, None) => None,
                (true, Some(at)) => Some(at.saturating_duration_since(std::time::Instant::now())),
            };
            match vm.receive_message(timeout) {
                Ok(Some((from, msg))) => self.on_message(from, msg),
                Ok(None) => return,
                Err(e) => {
                    log::error!(target: "cos", "virtual machine failed: {e}; its tasks end");
                    let lost: Vec<TaskId> = self.remote.keys().copied().collect();
                    for id in lost {
                        self.remote_ended(id, Some(Err(e.clone())));
                    }
                    return;
                }
            }
        }
    }

    fn on_message(&mut self, from: TaskId, msg: Message) {
        match msg {
            Message::TaskResult(result) => {
                let Some(&tid) = self.remote.get(&from) else { return };
                if let Some(r) = self.tasks.get_mut(&tid).and_then(Entry::remote_mut) {
                    log::debug!(target: "cos", "result of remote task {tid} ({from}) received");
                    r.result = Some(match result {
                        Ok(bytes) => (r.decode)(&bytes),
                        Err(f) => Err(Error::from(f)),
                    });
                }
            }
            Message::TaskExit => self.remote_ended(from, None),
            Message::WorkerLost(why) => self.remote_ended(from, Some(Err(Error::WorkerLost(why)))),
            Message::HostAdd(h) => log::debug!(target: "cos", "hosts added: {h:?}"),
            Message::HostDelete(h) => log::debug!(target: "cos", "host deleted: {h}"),
            Message::User(b) => {
                log::debug!(target: "cos", "user message of {} bytes from {from} dropped", b.len())
            }
            Message::SpawnerCall { .. } | Message::SpawnerReply(_) => {
                log::debug!(target: "cos", "spawner-call message from {from} left unanswered by the machine")
            }
        }
    }

    /// The machine was finalized: its remote tasks and the spawns waiting for its slots can
    /// never end otherwise, so they end with an error now.
    pub(crate) fn machine_gone(&mut self) {
        let error = Error::Vm("the machine was finalized before the task ended".into());
        let mut lost: Vec<(TaskId, crate::task::Tid)> = self.remote.drain().collect();
        lost.sort_by_key(|(_, tid)| *tid);
        for (_, tid) in lost {
            self.finish(tid, Err(error.clone()));
        }
        self.fail_queued(&error);
    }

    /// A remote task ended: finish it like a local one, then serve one waiting spawn.
    fn remote_ended(&mut self, id: TaskId, forced: Option<crate::task::Outcome>) {
        let Some(tid) = self.remote.remove(&id) else { return };
        let stored = self.tasks.get_mut(&tid).and_then(Entry::remote_mut).and_then(|r| r.result.take());
        let outcome = match (forced, stored) {
            (Some(f), None) => f,
            (_, Some(s)) => s,
            (None, None) => Err(Error::WorkerLost(format!("task {id} exited without a result"))),
        };
        log::debug!(target: "cos", "remote task {tid} ({id}) finished");
        self.finish(tid, outcome);
        self.serve_queued();
    }
}
