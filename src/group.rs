//! [`TaskGroup`]: children joined as one set, at a cost that does not grow with the set.

use std::marker::PhantomData;

use crate::coroutine::SysCall;
use crate::error::Error;
use crate::os;
use crate::syscall::{SysReturn, Tids};
use crate::task::{Joined, Task, Tid};

/// A set of the calling task's children joined together, like tokio's `JoinSet`: the lowest
/// finished member first, as a join on a list of their tids would give, but without the list.
/// A join over the group costs O(log k) in its finished, unjoined members and nothing in its
/// size, where a join on a list copies and checks every tid on each call.
///
/// The group belongs to the task that made it: only that task adds to it and joins it
/// ([`Error::NotGroupOwner`] otherwise), and the group ends with that task. A member joined
/// some other way (by tid, or as any child) leaves the group. Dropping the group leaves its
/// members running, joinable by tid. Like [`Task`], a group stays on its thread.
///
/// ```
/// let mut group = cos::TaskGroup::new();
/// for i in 0..3u32 {
///     group.add(cos::spawn(move || { cos::yield_now(); i * 10 }).unwrap()).unwrap();
/// }
/// assert_eq!(group.len(), 3);
/// let mut values = vec![];
/// while let Some(j) = group.join_next().unwrap() {
///     values.push(j.value::<u32>().unwrap());
/// }
/// assert_eq!(values, vec![0, 10, 20]);
/// assert!(group.is_empty());
/// ```
pub struct TaskGroup {
    /// `None` when the group was made where no task runs; every use then fails.
    id: Option<u64>,
    thread: PhantomData<*const ()>,
}

impl Default for TaskGroup {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskGroup {
    /// An empty group owned by the calling task.
    ///
    /// ```
    /// let group = cos::TaskGroup::new();
    /// assert!(group.is_empty());
    /// ```
    pub fn new() -> Self {
        let id = os::task_context().ok().and_then(|ctx| os::with(|s| s.groups.create(ctx.tid())).ok());
        TaskGroup { id, thread: PhantomData }
    }

    fn id(&self) -> Result<u64, Error> {
        let ctx = os::task_context()?;
        self.id.ok_or(Error::WrongContext(ctx))
    }

    /// Adds the caller's child `task` (running, or finished and not joined yet).
    ///
    /// # Errors
    /// [`Error::NotAChild`], [`Error::UnknownTask`] or [`Error::JoinScheduler`] as for a join
    /// on its tid; [`Error::NotGroupOwner`] when another task made the group;
    /// [`Error::UnknownGroup`] when its owner has finished; [`Error::WrongContext`] where no
    /// task runs.
    ///
    /// ```
    /// let mut group = cos::TaskGroup::new();
    /// group.add(cos::spawn(|| 1u8).unwrap()).unwrap();
    /// assert_eq!(group.len(), 1);
    /// # group.join_next().unwrap();
    /// ```
    pub fn add<T>(&mut self, task: Task<T>) -> Result<(), Error> {
        self.add_tid(task.tid())
    }

    /// Adds the caller's child `tid`, as [`add`](Self::add).
    ///
    /// # Errors
    /// As [`add`](Self::add).
    ///
    /// ```
    /// let mut group = cos::TaskGroup::new();
    /// let t = cos::spawn(|| ()).unwrap();
    /// group.add_tid(t.tid()).unwrap();
    /// assert_eq!(group.join_next().unwrap().unwrap().tid, t.tid());
    /// ```
    pub fn add_tid(&mut self, tid: Tid) -> Result<(), Error> {
        let id = self.id()?;
        let caller = os::task_context()?.tid();
        os::with(|s| s.add_to_group(caller, id, tid)).map_err(Error::WrongContext)?
    }

    /// Members not joined yet, running or finished.
    ///
    /// ```
    /// assert_eq!(cos::TaskGroup::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.id.and_then(|id| os::with(|s| s.groups.len(id)).ok()).unwrap_or(0)
    }

    /// Whether every member has been joined.
    ///
    /// ```
    /// assert!(cos::TaskGroup::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for a member to finish and joins it (the lowest finished tid first); `Ok(None)`
    /// when no member is left.
    ///
    /// # Errors
    /// [`Error::Deadlock`] when no member can ever finish; the errors of [`add`](Self::add)
    /// about the group and the context.
    ///
    /// ```
    /// let mut group = cos::TaskGroup::new();
    /// group.add(cos::spawn(|| "done").unwrap()).unwrap();
    /// assert_eq!(group.join_next().unwrap().unwrap().value::<&str>().unwrap(), "done");
    /// assert!(group.join_next().unwrap().is_none());
    /// ```
    pub fn join_next(&mut self) -> Result<Option<Joined>, Error> {
        self.join(true)
    }

    /// Joins a member that has already finished, if any, without waiting.
    ///
    /// # Errors
    /// As [`join_next`](Self::join_next).
    ///
    /// ```
    /// let mut group = cos::TaskGroup::new();
    /// group.add(cos::spawn(|| { cos::yield_now(); 5 }).unwrap()).unwrap();
    /// assert!(group.try_join_next().unwrap().is_none());
    /// cos::yield_now();
    /// assert_eq!(group.try_join_next().unwrap().unwrap().value::<i32>().unwrap(), 5);
    /// ```
    pub fn try_join_next(&mut self) -> Result<Option<Joined>, Error> {
        self.join(false)
    }

    fn join(&mut self, block: bool) -> Result<Option<Joined>, Error> {
        let id = self.id()?;
        match os::syscall(SysCall::Join { tids: Tids::Group(id), block, deadline: None })? {
            SysReturn::Joined(r) => r,
            _ => unreachable!("join answered with another call's answer"),
        }
    }
}

impl Drop for TaskGroup {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let _ = os::with(|s| s.groups.remove(id));
        }
    }
}
