//! A stack overflow in a task on a thread that Rust did not create (`pthread_create`, with no
//! alternate signal stack) ends that task with `Error::StackOverflow`, as on any other thread.

use std::hint::black_box;

fn recurse(n: u64) -> u64 {
    let pad = black_box([n; 64]);
    if n == u64::MAX {
        return 0;
    }
    black_box(recurse(n + 1)) + pad[3]
}

extern "C" fn thread_main(out: *mut libc::c_void) -> *mut libc::c_void {
    let t = cos::spawn(|| recurse(0)).unwrap();
    let ok = cos::join(t) == Err(cos::Error::StackOverflow(t.tid()));
    let after = cos::join(cos::spawn(|| 2 + 2).unwrap()) == Ok(4);
    // SAFETY: `out` points to the `[bool; 2]` of the spawning test, which waits in
    // pthread_join until this thread ends.
    unsafe { *out.cast::<[bool; 2]>() = [ok, after] };
    std::ptr::null_mut()
}

#[test]
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn an_overflow_on_a_pthread_create_thread_is_caught() {
    let mut out = [false; 2];
    let mut thread: libc::pthread_t = 0;
    // SAFETY: plain pthread_create/pthread_join with a valid start routine and argument; the
    // argument outlives the thread, which is joined before `out` is read.
    unsafe {
        let arg = (&mut out as *mut [bool; 2]).cast::<libc::c_void>();
        assert_eq!(libc::pthread_create(&mut thread, std::ptr::null(), thread_main, arg), 0);
        assert_eq!(libc::pthread_join(thread, std::ptr::null_mut()), 0);
    }
    assert_eq!(out, [true, true]);
}
