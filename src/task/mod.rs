//! Tasks: ids and handles, the task table, and local coroutines.

pub(crate) mod coroutine;
mod id;
mod overflow;
pub(crate) mod table;

pub(crate) use coroutine::{LocalTask, StackPool, Step};
pub use id::{Joined, Outcome, Task, Tid, Value};
