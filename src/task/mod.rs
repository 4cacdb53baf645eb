//! Tasks as users see them: ids, typed handles, values and outcomes.

mod id;

pub use id::{Joined, Outcome, Task, Tid, Value};
