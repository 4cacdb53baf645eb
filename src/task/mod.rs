//! Tasks: ids and handles, and local coroutines.

pub(crate) mod coroutine;
mod id;
mod overflow;

pub(crate) use coroutine::{LocalTask, StackPool, Step};
pub use id::{Joined, Outcome, Task, Tid, Value};
