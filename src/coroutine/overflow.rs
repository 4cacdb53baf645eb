//! Stack overflow in a local task: a SIGSEGV/SIGBUS handler (on the thread's alternate signal
//! stack) turns a fault in the running task's guard page into that task's end with
//! [`crate::Error::StackOverflow`]; every other fault goes to the handler that was there before
//! (Rust's own, which reports an overflow of a thread's main stack and aborts).
//!
//! Linux on x86-64 only; elsewhere an overflow aborts the process as before. The frames the
//! overflowing task had are abandoned, not unwound: their destructors never run, so what they
//! owned stays owned (heap memory is leaked, a `MutexGuard` leaves its mutex locked, a
//! `RefCell` borrow leaves its cell borrowed, a lock held inside the allocator stays held).

/// Whether a fault at `fault` lies in the guard page of a stack whose mapping starts at
/// `limit` (the guard page is the mapping's lowest page).
pub(crate) fn in_guard_page(fault: usize, limit: usize, page: usize) -> bool {
    fault >= limit && fault - limit < page
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod imp {
    use std::mem::MaybeUninit;
    use std::ptr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Once;

    static INSTALL: Once = Once::new();
    /// The actions of SIGSEGV and SIGBUS before ours: written once, inside `INSTALL`, before our
    /// handler is installed; only read afterwards.
    static mut PREVIOUS_SEGV: MaybeUninit<libc::sigaction> = MaybeUninit::zeroed();
    static mut PREVIOUS_BUS: MaybeUninit<libc::sigaction> = MaybeUninit::zeroed();
    /// The system's page size, read once before the handler is installed (`sysconf` is not
    /// async-signal-safe, so the handler reads this instead).
    static PAGE: AtomicUsize = AtomicUsize::new(4096);

    /// The page size, as the system gave it.
    pub(crate) fn page_size() -> usize {
        PAGE.load(Ordering::Relaxed)
    }

    /// Installs the handler (once per process) and makes sure this thread has an alternate
    /// signal stack for it to run on.
    pub(crate) fn install() {
        INSTALL.call_once(|| {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if let Ok(page) = usize::try_from(page) {
                if page.is_power_of_two() {
                    PAGE.store(page, Ordering::Relaxed);
                }
            }
            // Both previous actions are saved before either signal gets our handler, so a fault
            // on another thread that reaches the handler finds them in place.
            // SAFETY: `INSTALL` runs this once, and nothing reads the statics before the
            // handler is installed below; addr_of_mut! takes no reference to the static mut.
            unsafe {
                save_action(libc::SIGSEGV, ptr::addr_of_mut!(PREVIOUS_SEGV).cast());
                save_action(libc::SIGBUS, ptr::addr_of_mut!(PREVIOUS_BUS).cast());
            }
            set_handler(libc::SIGSEGV);
            set_handler(libc::SIGBUS);
        });
        alt_stack::ensure();
    }

    /// Writes the current action of `sig` to `out`.
    ///
    /// # Safety
    /// `out` must be valid for a write of a `sigaction`.
    unsafe fn save_action(sig: libc::c_int, out: *mut libc::sigaction) {
        // SAFETY: sigaction(2) with a null new action only reads the current one into `out`,
        // which the caller guarantees writable.
        let rc = unsafe { libc::sigaction(sig, ptr::null(), out) };
        debug_assert_eq!(rc, 0, "sigaction({sig}) failed");
    }

    /// Makes `handler` the action of `sig`, on the alternate signal stack.
    fn set_handler(sig: libc::c_int) {
        // SAFETY: an all-zero sigaction is a valid value (no handler, no flags, empty mask).
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: sigemptyset(3) writes the mask it is given, which is a valid field of `action`.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: sigaction(2) with a valid action and a null old action; `handler` has the
        // signature SA_SIGINFO asks for.
        let rc = unsafe { libc::sigaction(sig, &action, ptr::null_mut()) };
        debug_assert_eq!(rc, 0, "sigaction({sig}) failed");
    }

    /// The SIGSEGV/SIGBUS handler.
    ///
    /// # Safety
    /// Only as an SA_SIGINFO signal handler: `info` and `ctx` are the kernel's.
    unsafe extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
        let (code, fault) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
        if code <= 0 {
            // Sent by a process (kill, raise), not a fault: act as the default would.
            // SAFETY: we are the signal handler.
            unsafe { reset_and_raise(sig) };
            return;
        }
        // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler, and nothing
        // else refers to it while the handler runs.
        let gregs = unsafe { &mut (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
        let sp = gregs[libc::REG_RSP as usize] as usize;
        // SAFETY: we are a SIGSEGV/SIGBUS handler on the faulting thread, on its alternate
        // signal stack (SA_ONSTACK, and `install` gave every thread that runs tasks one), and
        // we set the returned registers in the interrupted context right below.
        if let Some(regs) = unsafe { crate::coroutine::trap_stack_overflow(sp, fault) } {
            gregs[libc::REG_RIP as usize] = regs.rip as i64;
            gregs[libc::REG_RSP as usize] = regs.rsp as i64;
            gregs[libc::REG_RBP as usize] = regs.rbp as i64;
            gregs[libc::REG_RDI as usize] = regs.rdi as i64;
            gregs[libc::REG_RSI as usize] = regs.rsi as i64;
            return;
        }
        // SAFETY: written once before the handler was installed, never written again.
        let previous = unsafe {
            if sig == libc::SIGBUS {
                (*ptr::addr_of!(PREVIOUS_BUS)).assume_init_ref()
            } else {
                (*ptr::addr_of!(PREVIOUS_SEGV)).assume_init_ref()
            }
        };
        let action = previous.sa_sigaction;
        if action == libc::SIG_DFL || action == libc::SIG_IGN {
            // Restore the default so the fault, re-executed on return, ends the process as it
            // would have without us (an ignored fault would be re-executed forever).
            // SAFETY: we are the signal handler.
            unsafe { reset_and_raise(sig) };
        } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
            // SAFETY: with SA_SIGINFO, `sa_sigaction` is a three-argument handler, which we call
            // as the kernel would, with the kernel's arguments.
            unsafe {
                let f: unsafe extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    std::mem::transmute(action);
                f(sig, info, ctx);
            }
        } else {
            // SAFETY: without SA_SIGINFO, `sa_sigaction` is a one-argument handler.
            unsafe {
                let f: unsafe extern "C" fn(libc::c_int) = std::mem::transmute(action);
                f(sig);
            }
        }
    }

    /// Restores the default action of `sig` and raises it again.
    ///
    /// # Safety
    /// Only from the signal handler.
    unsafe fn reset_and_raise(sig: libc::c_int) {
        // SAFETY: an all-zero sigaction is valid; setting SIG_DFL makes it the default action.
        let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
        dfl.sa_sigaction = libc::SIG_DFL;
        // SAFETY: sigaction(2) and raise(3) are async-signal-safe; the action is valid.
        unsafe {
            libc::sigaction(sig, &dfl, ptr::null_mut());
            libc::raise(sig);
        }
    }

    /// An alternate signal stack for threads that have none (a thread made by
    /// `pthread_create` outside Rust; Rust gives its own threads one), so that the handler can
    /// run when a task's stack is exhausted.
    mod alt_stack {
        use std::ptr;

        /// The stack mapping this thread installed, unmapped when the thread ends.
        struct AltStack {
            /// The mapping (a guard page, then the stack), or null when the thread had its own.
            map: *mut libc::c_void,
            len: usize,
        }

        thread_local! {
            static ALT_STACK: AltStack = AltStack::install();
        }

        /// Gives this thread an alternate signal stack unless it has one.
        pub(super) fn ensure() {
            let _ = ALT_STACK.try_with(|_| ());
        }

        /// Room for the handler: corosensei's trap setup and our checks need little.
        const SIZE: usize = 64 * 1024;

        impl AltStack {
            fn install() -> AltStack {
                let none = AltStack { map: ptr::null_mut(), len: 0 };
                // SAFETY: an all-zero stack_t is a valid value to be overwritten.
                let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
                // SAFETY: sigaltstack(2) with a null new stack only reads the current one.
                if unsafe { libc::sigaltstack(ptr::null(), &mut current) } != 0
                    || current.ss_flags & libc::SS_DISABLE == 0
                {
                    return none;
                }
                let page = super::page_size();
                let len = SIZE.max(libc::SIGSTKSZ) + page;
                // SAFETY: an anonymous private mapping at an address of the kernel's choice.
                let map = unsafe {
                    libc::mmap(
                        ptr::null_mut(),
                        len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                if map == libc::MAP_FAILED {
                    return none;
                }
                // SAFETY: the first page of the mapping just made becomes its guard page.
                unsafe { libc::mprotect(map, page, libc::PROT_NONE) };
                let stack = libc::stack_t {
                    // SAFETY: `page` < `len`, so the pointer stays inside the mapping.
                    ss_sp: unsafe { map.cast::<u8>().add(page).cast() },
                    ss_flags: 0,
                    ss_size: len - page,
                };
                // SAFETY: the stack lies in a live, writable mapping that lives until this
                // thread-local is dropped, which disables the stack first.
                if unsafe { libc::sigaltstack(&stack, ptr::null_mut()) } != 0 {
                    // SAFETY: the mapping was made above and is not in use.
                    unsafe { libc::munmap(map, len) };
                    return none;
                }
                AltStack { map, len }
            }
        }

        impl Drop for AltStack {
            fn drop(&mut self) {
                if self.map.is_null() {
                    return;
                }
                let disable =
                    libc::stack_t { ss_sp: ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
                // SAFETY: disabling the alternate stack, then unmapping it: no signal handler
                // can run on it once it is disabled (we are not on it: this is no handler).
                unsafe {
                    libc::sigaltstack(&disable, ptr::null_mut());
                    libc::munmap(self.map, self.len);
                }
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
mod imp {
    pub(crate) fn install() {}

    pub(crate) fn page_size() -> usize {
        4096
    }
}

pub(crate) use imp::{install, page_size};

#[cfg(test)]
mod tests {
    use super::in_guard_page;

    #[test]
    fn only_the_guard_page_counts() {
        let (limit, page) = (0x7000_0000usize, 4096);
        assert!(in_guard_page(limit, limit, page));
        assert!(in_guard_page(limit + page - 1, limit, page));
        // The first usable byte of the stack, and anything below the mapping, are not overflows.
        assert!(!in_guard_page(limit + page, limit, page));
        assert!(!in_guard_page(limit - 1, limit, page));
        assert!(!in_guard_page(limit - 8 * 1024, limit, page));
        assert!(!in_guard_page(0, limit, page));
    }
}
