//! The Spawn system call: local tasks, remote tasks, and spawns waiting for a free slot.

use crate::error::Error;
use crate::scheduler::Scheduler;
use crate::syscall::{RemoteSpawn, SpawnCall, SpawnInfo, SysReturn};
use crate::task::table::{Body, Remote, State, Wait};
use crate::task::{LocalTask, Tid};
use crate::vm::{HostId, TaskId};

/// A spawn waiting for a free slot.
pub(crate) struct Queued {
    seq: u64,
    spawner: Tid,
    spawn: Box<RemoteSpawn>,
}

impl Scheduler {
    pub(crate) fn handle_spawn(&mut self, spawner: Tid, call: SpawnCall) {
        match call {
            SpawnCall::Local(task) => {
                let tid = self.add_local(spawner, task);
                self.reply(spawner, SysReturn::Spawned(Ok(SpawnInfo { tid, task_id: None, host: None })));
            }
            SpawnCall::Remote(spawn) => self.spawn_remote(spawner, spawn),
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

    /// PyOPUS's remote spawn: remote when asked, a machine is set and it has (or will have) a
    /// slot; otherwise a local task, silently.
    fn spawn_remote(&mut self, spawner: Tid, spawn: Box<RemoteSpawn>) {
        let possible =
            spawn.remote && self.vm.as_ref().is_some_and(|vm| vm.free_slots() + self.remote.len() > 0);
        if !possible {
            return self.spawn_fallback(spawner, *spawn);
        }
        let started = self.start_remote(&spawn);
        match started {
            Ok((task_id, host)) => {
                let tid = spawn.reserved.unwrap_or_else(|| self.new_tid());
                let remote = Remote { decode: spawn.decode, result: None };
                if self.tasks.contains_key(&tid) {
                    self.tasks.set_body(tid, Body::Remote(remote));
                } else {
                    self.tasks.insert_child(spawner, tid, Body::Remote(remote));
                }
                self.remote.insert(task_id, tid);
                if let Some(limit) = spawn.limit {
                    self.set_deadline(tid, std::time::Instant::now() + limit);
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
            let remote = Remote { decode: spawn.decode, result: None };
            self.tasks.insert_child(spawner, tid, Body::Remote(remote));
            spawn.reserved = Some(tid);
            self.reply(spawner, SysReturn::Spawned(Ok(SpawnInfo { tid, task_id: None, host: host.clone() })));
        }
        log::debug!(target: "cos", "task {spawner} waits for a free slot on {host:?}");
        self.queue_seq += 1;
        let q = Queued { seq: self.queue_seq, spawner, spawn };
        match host {
            Some(h) => self.queue_host.entry(h).or_default().push_back(q),
            None => self.queue_any.push_back(q),
        }
    }

    /// A slot freed: serve the waiting spawns in turn until one takes it (a spawn that fails to
    /// start takes none, and must not leave the others waiting beside a free slot).
    ///
    /// A non-blocking spawn whose spawner has finished still starts: like a local orphan, its
    /// task runs on and its value is dropped.
    pub(crate) fn serve_queued(&mut self) {
        let waiting = self.queue_any.len() + self.queue_host.values().map(|q| q.len()).sum::<usize>();
        for _ in 0..waiting {
            let free = self.vm.as_ref().map_or(0, |vm| vm.free_slots());
            if free == 0 {
                return;
            }
            let Some(Queued { spawner, spawn, .. }) = self.pop_queued() else { return };
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

    /// The next spawn to serve: one waiting for a host that now has a free slot first (the oldest
    /// such), else the oldest one waiting for any host.
    fn pop_queued(&mut self) -> Option<Queued> {
        let mut pick: Option<HostId> = None;
        if !self.queue_host.is_empty() {
            if let Some(vm) = self.vm.as_ref() {
                let mut best = u64::MAX;
                for h in vm.hosts_with_free_slots() {
                    if let Some(q) = self.queue_host.get(&h).and_then(|q| q.front()) {
                        if q.seq < best {
                            best = q.seq;
                            pick = Some(h);
                        }
                    }
                }
            }
        }
        match pick {
            Some(h) => {
                let q = self.queue_host.get_mut(&h).expect("queue present");
                let item = q.pop_front();
                if q.is_empty() {
                    self.queue_host.remove(&h);
                }
                item
            }
            None => self.queue_any.pop_front(),
        }
    }

    /// Takes a blocked spawner out of the wait queues.
    pub(crate) fn unqueue_spawner(&mut self, spawner: Tid) {
        let blocked = |q: &Queued| q.spawner == spawner && q.spawn.reserved.is_none();
        self.queue_any.retain(|q| !blocked(q));
        for q in self.queue_host.values_mut() {
            q.retain(|q| !blocked(q));
        }
        self.queue_host.retain(|_, q| !q.is_empty());
    }

    /// The machine is gone: every spawn still waiting for a slot fails with `error` (a blocked
    /// spawner gets it as its answer; a reserved task ends with it).
    pub(crate) fn fail_queued(&mut self, error: &Error) {
        let mut queued: Vec<Queued> = self.queue_any.drain(..).collect();
        for (_, q) in std::mem::take(&mut self.queue_host) {
            queued.extend(q);
        }
        queued.sort_by_key(|q| q.seq);
        for q in queued {
            match q.spawn.reserved {
                Some(tid) => self.finish(tid, Err(error.clone())),
                None => self.reply(q.spawner, SysReturn::Spawned(Err(error.clone()))),
            }
        }
    }

    /// Takes a non-blocking spawn's reserved task out of the wait queues.
    pub(crate) fn unqueue_reserved(&mut self, tid: Tid) {
        let reserved = |q: &Queued| q.spawn.reserved == Some(tid);
        self.queue_any.retain(|q| !reserved(q));
        for q in self.queue_host.values_mut() {
            q.retain(|q| !reserved(q));
        }
        self.queue_host.retain(|_, q| !q.is_empty());
    }
}
