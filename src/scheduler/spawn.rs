//! The Spawn system call: local tasks, remote tasks, and spawns waiting for a free slot.

use crate::coroutine::LocalTask;
use crate::coroutine::SpawnCall;
use crate::error::Error;
use crate::scheduler::queues::Queued;
use crate::scheduler::table::{Body, Key, Remote, State, Wait};
use crate::scheduler::Scheduler;
use crate::syscall::{RemoteSpawn, SpawnInfo, SysReturn};
use crate::task::Tid;
use crate::vm::{HostId, TaskId};

impl Scheduler {
    pub(crate) fn handle_spawn(&mut self, spawner: Key, call: SpawnCall) {
        match call {
            SpawnCall::Local(task) => {
                let tid = self.new_tid();
                let child = self.tasks.insert_child(spawner.tid, tid, Body::Local(Some(task)));
                log::debug!(target: "cos", "task {} spawned local task {tid}", spawner.tid);
                self.schedule_at(child);
                self.reply_at(spawner, SysReturn::Spawned(Ok(SpawnInfo { tid, task_id: None, host: None })));
            }
            SpawnCall::Remote(spawn) => self.spawn_remote(spawner.tid, spawn),
        }
    }

    /// Adds a local task (or turns the reserved entry `tid` into one) and schedules it.
    fn add_local_as(&mut self, parent: Tid, tid: Tid, task: LocalTask) {
        if self.tasks.contains_key(&tid) {
            self.tasks.set_body(tid, Body::Local(Some(task)));
        } else {
            self.tasks.insert_child(parent, tid, Body::Local(Some(task)));
        }
        log::debug!(target: "cos", "task {parent} spawned local task {tid}");
        self.schedule(tid);
    }

    fn add_local(&mut self, parent: Tid, task: LocalTask) -> Tid {
        let tid = self.new_tid();
        self.add_local_as(parent, tid, task);
        tid
    }

    /// PyOPUS's remote spawn: remote when asked and a machine with worker slots is set;
    /// otherwise a local task, silently. A machine whose slots are all busy or out of service
    /// (workers lost, a rank gone) is still a machine: the spawn waits for a slot like any other
    /// (a blocking spawn that nothing can ever serve ends with [`Error::Deadlock`]), so remote
    /// work never runs inside the spawner because workers were lost.
    fn spawn_remote(&mut self, spawner: Tid, spawn: Box<RemoteSpawn>) {
        let possible = spawn.remote && self.vm.as_ref().is_some_and(|vm| vm.slots() > 1);
        if !possible {
            return self.spawn_fallback(spawner, *spawn);
        }
        let started = self.start_remote(&spawn);
        match started {
            Ok((task_id, host)) => {
                let tid = spawn.reserved.unwrap_or_else(|| self.new_tid());
                let remote = Remote { decode: spawn.decode, id: Some(task_id) };
                if self.tasks.contains_key(&tid) {
                    self.tasks.set_body(tid, Body::Remote(remote));
                } else {
                    self.tasks.insert_child(spawner, tid, Body::Remote(remote));
                }
                self.remote.insert(task_id, tid);
                if let Some(limit) = spawn.limit {
                    self.set_deadline(tid, self.now() + limit);
                }
                log::debug!(target: "cos", "task {spawner} spawned remote task {tid} as {task_id} on {host:?}");
                if spawn.reserved.is_none() {
                    let info = SpawnInfo { tid, task_id: Some(task_id), host };
                    self.reply(spawner, SysReturn::Spawned(Ok(info)));
                }
            }
            Err(Error::NoFreeSlot) if spawn.enqueue || spawn.block => self.enqueue(spawner, spawn),
            Err(e) => match spawn.reserved {
                Some(tid) => self.fail(tid, e),
                None => self.reply(spawner, SysReturn::Spawned(Err(e))),
            },
        }
    }

    fn start_remote(&mut self, spawn: &RemoteSpawn) -> Result<(TaskId, Option<HostId>), Error> {
        let vm = self.vm.as_mut().expect("machine present");
        // Arguments no machine could carry are refused before a slot is taken.
        crate::vm::within_limit("the job's arguments", spawn.call.args.len())
            .map_err(|f| Error::Remote(f.at(None, None)))?;
        if vm.free_slots() == 0 {
            return Err(Error::NoFreeSlot);
        }
        let targets = spawn.target.as_ref().map(std::slice::from_ref);
        let task_id = vm.spawn_function(&spawn.call, targets)?;
        Ok((task_id, vm.host_id(Some(task_id))))
    }

    /// Runs a remote spawn as a local task.
    fn spawn_fallback(&mut self, spawner: Tid, spawn: RemoteSpawn) {
        let RemoteSpawn { call, local, reserved, .. } = spawn;
        let stack = match self.stacks.take() {
            Ok(s) => s,
            Err(e) => {
                return match reserved {
                    Some(tid) => self.fail(tid, e),
                    None => self.reply(spawner, SysReturn::Spawned(Err(e))),
                }
            }
        };
        let args = call.args;
        let task = LocalTask::new(stack, move || local(args));
        match reserved {
            Some(tid) => self.add_local_as(spawner, tid, task),
            None => {
                let tid = self.add_local(spawner, task);
                self.reply(spawner, SysReturn::Spawned(Ok(SpawnInfo { tid, task_id: None, host: None })));
            }
        }
    }

    /// Puts a spawn in its wait queue. A blocking spawner waits; a non-blocking one gets a tid
    /// now, reserved for the task that starts when a slot frees.
    fn enqueue(&mut self, spawner: Tid, mut spawn: Box<RemoteSpawn>) {
        let host = spawn.target.clone();
        if spawn.block {
            if let Some(e) = self.tasks.get_mut(&spawner) {
                e.state = State::Waiting(Wait::Slot(host.clone()));
            }
        } else if spawn.reserved.is_none() {
            let tid = self.new_tid();
            let remote = Remote { decode: spawn.decode, id: None };
            self.tasks.insert_child(spawner, tid, Body::Remote(remote));
            spawn.reserved = Some(tid);
            self.reply(spawner, SysReturn::Spawned(Ok(SpawnInfo { tid, task_id: None, host: host.clone() })));
        }
        log::debug!(target: "cos", "task {spawner} waits for a free slot on {host:?}");
        self.queues.push(spawner, spawn);
    }

    /// A slot freed: serve the waiting spawns in turn until one takes it (a spawn that fails to
    /// start takes none, and must not leave the others waiting beside a free slot).
    ///
    /// A non-blocking spawn whose spawner has finished still starts: like a local orphan, its
    /// task runs on and its value is dropped.
    pub(crate) fn serve_queued(&mut self) {
        let waiting = self.queues.len();
        for _ in 0..waiting {
            let free = self.vm.as_ref().map_or(0, |vm| vm.free_slots());
            if free == 0 {
                return;
            }
            let vm = &self.vm;
            let free_hosts = || vm.as_ref().map(|vm| vm.hosts_with_free_slots()).unwrap_or_default();
            let Some(Queued { spawner, spawn, .. }) = self.queues.pop(free_hosts) else { return };
            let alive = match spawn.reserved {
                Some(tid) => self.tasks.contains_key(&tid),
                None => self.tasks.contains_key(&spawner),
            };
            if alive {
                log::debug!(target: "cos", "task {spawner} waited for a free slot; spawning");
                self.spawn_remote(spawner, spawn);
            }
            if self.vm.as_ref().map_or(0, |vm| vm.free_slots()) < free {
                return;
            }
        }
    }

    /// The machine is gone: every spawn still waiting for a slot fails with `error` (a blocked
    /// spawner gets it as its answer; a reserved task ends with it).
    pub(crate) fn fail_queued(&mut self, error: &Error) {
        for q in self.queues.drain() {
            match q.spawn.reserved {
                Some(tid) => self.finish(tid, Err(error.clone())),
                None => self.reply(q.spawner, SysReturn::Spawned(Err(error.clone()))),
            }
        }
    }
}
