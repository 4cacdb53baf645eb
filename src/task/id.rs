//! Task ids, typed task handles and joined values.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;

use crate::error::Error;

/// A task id. tid 0 is the scheduler, tid 1 the main program; every new task, local or remote,
/// takes the next one, and tids are never reused.
///
/// ```
/// assert_eq!(cos::tid(), cos::Tid::MAIN);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tid(pub u64);

impl Tid {
    /// The scheduler's tid (0).
    ///
    /// ```
    /// assert_eq!(cos::Tid::SCHEDULER, cos::Tid(0));
    /// ```
    pub const SCHEDULER: Tid = Tid(0);
    /// The main program's tid (1).
    ///
    /// ```
    /// assert_eq!(cos::Tid::MAIN, cos::Tid(1));
    /// ```
    pub const MAIN: Tid = Tid(1);
}

impl fmt::Display for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A handle to a spawned task whose value has type `T`.
///
/// It is `Copy`: it only names the task. [`crate::join`] takes it and gives back a `T`.
///
/// A handle belongs to the thread whose OS runs its task: it is neither `Send` nor `Sync`, since
/// on another thread its tid would name an unrelated task of that thread's OS. (A bare
/// [`Tid`] is a plain number and goes anywhere.)
///
/// ```
/// let t: cos::Task<String> = cos::spawn(|| "hi".to_string()).unwrap();
/// assert_eq!(cos::join(t).unwrap(), "hi");
/// ```
pub struct Task<T> {
    tid: Tid,
    /// A handle owns no `T`.
    marker: PhantomData<fn() -> T>,
    /// A handle stays on its thread.
    thread: PhantomData<*const ()>,
}

impl<T> Task<T> {
    pub(crate) fn new(tid: Tid) -> Self {
        Task { tid, marker: PhantomData, thread: PhantomData }
    }

    /// The task's tid.
    ///
    /// ```
    /// let t = cos::spawn(|| ()).unwrap();
    /// assert!(t.tid() > cos::Tid::MAIN);
    /// # cos::join(t).unwrap();
    /// ```
    pub fn tid(&self) -> Tid {
        self.tid
    }
}

impl<T> Clone for Task<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Task<T> {}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Task({})", self.tid)
    }
}

impl<T> PartialEq for Task<T> {
    fn eq(&self, other: &Self) -> bool {
        self.tid == other.tid
    }
}
impl<T> Eq for Task<T> {}

/// The value a task returned, of a type known to whoever spawned it.
///
/// ```
/// let _ = cos::spawn(|| 7u8).unwrap();
/// let joined = cos::join_any().unwrap().unwrap();
/// assert_eq!(joined.value::<u8>().unwrap(), 7);
/// ```
pub struct Value(Box<dyn Any>);

impl Value {
    pub(crate) fn new<T: 'static>(v: T) -> Self {
        Value(Box::new(v))
    }

    /// The value as a `T`, or the value back when it is of another type.
    ///
    /// # Errors
    /// Gives `self` back unchanged when the value is not a `T`.
    ///
    /// ```
    /// let _ = cos::spawn(|| 1u32).unwrap();
    /// let v = cos::join_any().unwrap().unwrap().result.unwrap();
    /// let v = v.downcast::<i64>().unwrap_err();
    /// assert_eq!(v.downcast::<u32>().ok(), Some(1));
    /// ```
    pub fn downcast<T: 'static>(self) -> Result<T, Value> {
        self.0.downcast::<T>().map(|b| *b).map_err(Value)
    }

    /// A reference to the value as a `T`, if it is one.
    ///
    /// ```
    /// let _ = cos::spawn(|| 1u32).unwrap();
    /// let v = cos::join_any().unwrap().unwrap().result.unwrap();
    /// assert_eq!(v.downcast_ref::<u32>(), Some(&1));
    /// ```
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }

    /// Whether the value is a `T`.
    ///
    /// ```
    /// let _ = cos::spawn(|| 'x').unwrap();
    /// assert!(cos::join_any().unwrap().unwrap().result.unwrap().is::<char>());
    /// ```
    pub fn is<T: 'static>(&self) -> bool {
        self.0.is::<T>()
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Value(..)")
    }
}

/// How a task ended: its value, or the error that ended it.
///
/// ```
/// let _ = cos::spawn(|| 2u8).unwrap();
/// let outcome: cos::Outcome = cos::join_any().unwrap().unwrap().result;
/// assert_eq!(outcome.unwrap().downcast::<u8>().ok(), Some(2));
/// ```
pub type Outcome = Result<Value, Error>;

/// One joined child: its tid and how it ended (PyOPUS's `{tid: value}`).
///
/// ```
/// let a = cos::spawn(|| 1i32).unwrap();
/// let b = cos::spawn(|| "two").unwrap();
/// let first = cos::join_any().unwrap().unwrap();
/// assert_eq!(first.tid, a.tid());
/// assert_eq!(first.value::<i32>().unwrap(), 1);
/// assert_eq!(cos::join(b).unwrap(), "two");
/// ```
#[derive(Debug)]
pub struct Joined {
    /// The child's tid.
    pub tid: Tid,
    /// Its value, or the error that ended it.
    pub result: Outcome,
}

impl Joined {
    /// The child's value as a `T`.
    ///
    /// # Errors
    /// The error that ended the task, or [`Error::TypeMismatch`] when its value is not a `T`.
    ///
    /// ```
    /// let _ = cos::spawn(|| 3.5f64).unwrap();
    /// let j = cos::join_any().unwrap().unwrap();
    /// assert_eq!(j.value::<f64>().unwrap(), 3.5);
    /// ```
    pub fn value<T: 'static>(self) -> Result<T, Error> {
        let tid = self.tid;
        self.result?.downcast::<T>().map_err(|_| Error::TypeMismatch(tid))
    }
}
