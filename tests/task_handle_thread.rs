//! A `Task` handle names a task of its own thread's OS, so it cannot be sent to another thread
//! (where it would name an unrelated task with the same tid).

use std::marker::PhantomData;

/// `Probe::<T>.is_send()` is true when `T: Send` (the inherent method wins), false otherwise
/// (only the trait's method applies).
struct Probe<T>(PhantomData<T>);

trait NotSend {
    fn is_send(&self) -> bool {
        false
    }
}
impl<T> NotSend for Probe<T> {}

impl<T: Send> Probe<T> {
    fn is_send(&self) -> bool {
        true
    }
}

trait NotSync {
    fn is_sync(&self) -> bool {
        false
    }
}
impl<T> NotSync for Probe<T> {}

impl<T: Sync> Probe<T> {
    fn is_sync(&self) -> bool {
        true
    }
}

#[test]
fn task_handles_stay_on_their_thread() {
    assert!(Probe::<u8>(PhantomData).is_send(), "the probe sees Send");
    assert!(Probe::<u8>(PhantomData).is_sync(), "the probe sees Sync");
    assert!(!Probe::<cos::Task<u8>>(PhantomData).is_send());
    assert!(!Probe::<cos::Task<u8>>(PhantomData).is_sync());
    assert!(!Probe::<cos::Spawned<u8>>(PhantomData).is_send());
    // A tid is a plain number, and may go anywhere.
    assert!(Probe::<cos::Tid>(PhantomData).is_send());
}
