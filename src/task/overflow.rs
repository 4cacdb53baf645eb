//! Stack overflow in a local task: a SIGSEGV/SIGBUS handler (on the thread's alternate signal
//! stack) turns a fault in the running task's guard page into that task's end with
//! [`crate::Error::StackOverflow`]; every other fault goes to the handler that was there before
//! (Rust's own, which reports an overflow of a thread's main stack and aborts).
//!
//! Linux on x86-64 only; elsewhere an overflow aborts the process as before. The frames the
//! overflowing task had are abandoned, not unwound: what they owned on the heap is leaked.

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod imp {
    use std::mem::MaybeUninit;
    use std::ptr;
    use std::sync::Once;

    static INSTALL: Once = Once::new();
    static mut PREVIOUS_SEGV: MaybeUninit<libc::sigaction> = MaybeUninit::zeroed();
    static mut PREVIOUS_BUS: MaybeUninit<libc::sigaction> = MaybeUninit::zeroed();

    pub(crate) fn install() {
        INSTALL.call_once(|| {
            // SAFETY: plain sigaction calls with a zeroed, then filled, struct; the previous
            // actions are written once here, before our handler can run, and only read after.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handler as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(libc::SIGSEGV, &action, ptr::addr_of_mut!(PREVIOUS_SEGV).cast());
                libc::sigaction(libc::SIGBUS, &action, ptr::addr_of_mut!(PREVIOUS_BUS).cast());
            }
        });
    }

    unsafe extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo and ucontext to an SA_SIGINFO handler.
        unsafe {
            if (*info).si_code <= 0 {
                // Sent by a process (kill, raise), not a fault: act as the default would.
                reset_and_raise(sig);
                return;
            }
            let uc = ctx.cast::<libc::ucontext_t>();
            let gregs = &mut (*uc).uc_mcontext.gregs;
            let sp = gregs[libc::REG_RSP as usize] as usize;
            let fault = (*info).si_addr() as usize;
            if let Some(regs) = crate::task::coroutine::trap_stack_overflow(sp, fault) {
                gregs[libc::REG_RIP as usize] = regs.rip as i64;
                gregs[libc::REG_RSP as usize] = regs.rsp as i64;
                gregs[libc::REG_RBP as usize] = regs.rbp as i64;
                gregs[libc::REG_RDI as usize] = regs.rdi as i64;
                gregs[libc::REG_RSI as usize] = regs.rsi as i64;
                return;
            }
            let previous = if sig == libc::SIGBUS {
                (*ptr::addr_of!(PREVIOUS_BUS)).assume_init_ref()
            } else {
                (*ptr::addr_of!(PREVIOUS_SEGV)).assume_init_ref()
            };
            if previous.sa_flags & libc::SA_SIGINFO != 0 && previous.sa_sigaction > 1 {
                let f: unsafe extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    std::mem::transmute(previous.sa_sigaction);
                f(sig, info, ctx);
            } else if previous.sa_sigaction > 1 {
                let f: unsafe extern "C" fn(libc::c_int) = std::mem::transmute(previous.sa_sigaction);
                f(sig);
            } else {
                // Default (or ignored): restore the default so the fault, re-executed on
                // return, ends the process as it would have without us.
                reset_and_raise(sig);
            }
        }
    }

    /// Restores the default action of `sig` and raises it again.
    ///
    /// # Safety
    /// Only from the signal handler.
    unsafe fn reset_and_raise(sig: libc::c_int) {
        // SAFETY: sigaction with a zeroed struct naming SIG_DFL, then raise: both are
        // async-signal-safe.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, ptr::null_mut());
            libc::raise(sig);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
mod imp {
    pub(crate) fn install() {}
}

pub(crate) use imp::install;
