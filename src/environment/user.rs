//! This process's user: its name (for `cos-<user>`) and home directories (for `~`).

use std::ffi::{CStr, CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// A password database entry's name and home directory.
struct PasswdEntry {
    name: OsString,
    home: PathBuf,
}

/// Looks up the entry of the user `uid` (`Ok`) or of the name `name` (`Err`).
fn lookup(who: Result<libc::uid_t, &CStr>) -> Option<PasswdEntry> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `passwd` is a plain C struct for which all-zero bytes are a valid value; it is
        // only read after getpwuid_r/getpwnam_r filled it.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwuid_r(3)/getpwnam_r(3): "the retrieved passwd structure is stored in the
        // space pointed to by pwd. The string fields pointed to by the members of the passwd
        // structure are stored in the buffer buf of size buflen. A pointer to the result ... is
        // returned in *result". All four pointers are valid for the call and `buf.len()` is the
        // buffer's size; `name` is a NUL-terminated string.
        let rc = unsafe {
            match who {
                Ok(uid) => libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result),
                Err(name) => {
                    libc::getpwnam_r(name.as_ptr(), &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result)
                }
            }
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() || pwd.pw_dir.is_null() {
            return None;
        }
        // SAFETY: on success pw_name and pw_dir point to NUL-terminated strings inside `buf`,
        // which is alive here; they are copied before `buf` is dropped.
        let (name, home) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
        return Some(PasswdEntry {
            name: OsStr::from_bytes(name.to_bytes()).to_os_string(),
            home: PathBuf::from(OsStr::from_bytes(home.to_bytes())),
        });
    }
}

fn uid() -> libc::uid_t {
    // SAFETY: getuid(2): "These functions are always successful"; it takes no arguments.
    unsafe { libc::getuid() }
}

/// The name of this process's (real) user, as PyOPUS (the password database); `uid<n>` when the
/// database has no entry for it.
pub(crate) fn user_name() -> OsString {
    match lookup(Ok(uid())) {
        Some(e) if !e.name.is_empty() => e.name,
        _ => OsString::from(format!("uid{}", uid())),
    }
}

/// This user's home directory: `HOME`, else the password database's entry.
pub(crate) fn home_dir() -> Option<PathBuf> {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Some(PathBuf::from(h)),
        _ => lookup(Ok(uid())).map(|e| e.home),
    }
}

/// Python's `os.path.expanduser`: a leading `~` becomes this user's home directory and `~name`
/// that user's; anything else (or an unknown user) is kept as it is.
pub(crate) fn expand_home(path: &Path) -> PathBuf {
    let bytes = path.as_os_str().as_bytes();
    if bytes.first() != Some(&b'~') {
        return path.to_path_buf();
    }
    let end = bytes.iter().position(|&b| b == b'/').unwrap_or(bytes.len());
    let user = &bytes[1..end];
    let home = if user.is_empty() {
        home_dir()
    } else {
        CString::new(user).ok().and_then(|c| lookup(Err(&c))).map(|e| e.home)
    };
    match home {
        Some(home) => {
            let rest = bytes[end..].strip_prefix(b"/").unwrap_or(&bytes[end..]);
            if rest.is_empty() {
                home
            } else {
                home.join(OsString::from_vec(rest.to_vec()))
            }
        }
        None => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_has_a_name() {
        assert!(!user_name().is_empty());
    }

    #[test]
    fn tilde_is_the_home_directory() {
        let home = home_dir().expect("a home directory");
        assert_eq!(expand_home(Path::new("~")), home);
        assert_eq!(expand_home(Path::new("~/a/b")), home.join("a/b"));
        assert_eq!(expand_home(Path::new("/x/~")), Path::new("/x/~"));
        assert_eq!(expand_home(Path::new("a~")), Path::new("a~"));
    }

    #[test]
    fn tilde_user_is_that_users_home() {
        // root is in every password database.
        let root = lookup(Ok(0)).expect("root's entry");
        assert_eq!(expand_home(Path::new("~root/x")), root.home.join("x"));
        let unknown = Path::new("~no-such-user-cos-test/x");
        assert_eq!(expand_home(unknown), unknown);
    }
}
