//! The loop's polling point: the machine's events, and its clock.

use std::time::Instant;

use crate::error::Error;
use crate::scheduler::table::Entry;
use crate::scheduler::Scheduler;
use crate::task::Tid;
use crate::vm::{machine, Event, LostWorker, MachineErrorKind, TaskId, Wait};

impl Scheduler {
    /// The clock the scheduler's deadlines follow: the machine's ([`crate::VirtualMachine::now`];
    /// virtual on a `SimVm`), the real one without a machine.
    pub(crate) fn now(&self) -> Instant {
        self.vm.as_ref().map_or_else(Instant::now, |vm| vm.now())
    }

    /// Takes the machine's events: polling while local tasks are ready, waiting in the machine
    /// while only remote work is outstanding (at most until the earliest deadline), and, with
    /// nothing outstanding but a deadline, letting the machine wait until it (its clock may be
    /// virtual).
    pub(crate) fn poll_vm(&mut self) {
        loop {
            let Some(vm) = self.vm.as_mut() else { return };
            // A spawn waiting for a slot waits for a down slot to come back, too.
            let back = if self.queues.len() > 0 { vm.slot_return() } else { None };
            let wait = match (self.ready.is_empty(), self.timers.earliest().into_iter().chain(back).min()) {
                (false, _) => Wait::Poll,
                (true, Some(at)) => Wait::Until(at),
                (true, None) => Wait::Forever,
            };
            // Events come only from running remote tasks; without any, only a deadline is
            // worth waiting for.
            // A machine that frees slots without events (cancelled tasks still ending) is asked
            // too, so that the spawns waiting for those slots are served.
            if self.remote.is_empty() && !matches!(wait, Wait::Until(_)) && !vm.settling() {
                return;
            }
            let free = vm.free_slots();
            match vm.receive(wait) {
                Ok(Some(event)) => self.on_event(event),
                Ok(None) => {
                    let freed = self.vm.as_ref().is_some_and(|vm| vm.free_slots() > free);
                    if freed || back.is_some() {
                        self.serve_queued();
                    }
                    if freed {
                        continue;
                    }
                    return;
                }
                Err(e) => {
                    log::error!(target: "cos", "virtual machine failed: {e}; its tasks end");
                    let lost: Vec<TaskId> = self.remote.keys().copied().collect();
                    for id in lost {
                        self.remote_ended(id, Err(e.clone()));
                    }
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        let task = event.task();
        let outcome = match event {
            Event::Finished { result: Ok(bytes), .. } => {
                let Some(&tid) = self.remote.get(&task) else { return };
                match self.tasks.get(&tid).and_then(Entry::remote) {
                    Some(r) => (r.decode)(&bytes),
                    None => return,
                }
            }
            Event::Finished { result: Err(failure), .. } => {
                let host = self.vm.as_ref().and_then(|vm| vm.host_id(Some(task)));
                Err(Error::Remote(failure.at(Some(task), host)))
            }
            Event::Lost { cause, .. } => {
                let host = self.vm.as_ref().and_then(|vm| vm.host_id(Some(task)));
                Err(Error::WorkerLost(LostWorker { task: Some(task), host, cause }))
            }
            Event::Message { from, bytes } => return self.on_message(from, bytes),
            #[allow(unreachable_patterns)]
            other => {
                log::debug!(target: "cos", "machine event {other:?} not handled");
                return;
            }
        };
        self.remote_ended(task, outcome);
    }

    /// The machine was finalized: its remote tasks and the spawns waiting for its slots can
    /// never end otherwise, so they end with an error now.
    pub(crate) fn machine_gone(&mut self) {
        let error = machine(MachineErrorKind::Finalized, "the machine was finalized before the task ended");
        let mut lost: Vec<(TaskId, Tid)> = self.remote.drain().collect();
        lost.sort_by_key(|(_, tid)| *tid);
        for (_, tid) in lost {
            self.finish(tid, Err(error.clone()));
        }
        self.fail_queued(&error);
        self.no_sender_left();
    }

    /// A remote task ended: finish it like a local one, then serve one waiting spawn.
    fn remote_ended(&mut self, id: TaskId, outcome: crate::task::Outcome) {
        let Some(tid) = self.remote.remove(&id) else { return };
        if let Some(at) = self.tasks.get_mut(&tid).and_then(|e| e.deadline.take()) {
            self.timers.remove(at, tid);
        }
        log::debug!(target: "cos", "remote task {tid} ({id}) finished");
        self.finish(tid, outcome);
        self.serve_queued();
        if self.remote.is_empty() {
            self.no_sender_left();
        }
    }
}
