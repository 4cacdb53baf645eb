//! A task's private directory under `PARALLEL_LOCAL_STORAGE/cos-<user>/`, and clearing them all.

use std::collections::HashSet;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::environment::spec::WorkerIdentity;
use crate::environment::user::user_name;
use crate::environment::{StorageError, StorageErrorKind};
use crate::storage::local_storage;

/// How many suffixes are tried for a storage directory name before giving up.
const MAX_SUFFIX: u32 = 1 << 16;

/// The directory holding this user's task storage on this host:
/// [`local_storage()`]`/cos-<user>`.
///
/// ```
/// let root = cos::local_storage_root();
/// assert!(root.starts_with(cos::local_storage()));
/// ```
pub fn local_storage_root() -> PathBuf {
    local_storage_root_in(&local_storage())
}

/// `base/cos-<user>`.
pub(crate) fn local_storage_root_in(base: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from("cos-");
    name.push(user_name());
    base.join(name)
}

/// Makes `root` (and `base` above it) when missing, and checks that it is a real directory of
/// this user that nobody else can write: in a shared `/tmp` another user could have made it
/// first, or put a symbolic link there.
fn ensure_root(root: &Path) -> Result<(), StorageError> {
    if let Some(base) = root.parent() {
        fs::create_dir_all(base).map_err(|e| StorageError::io(StorageErrorKind::Create, base, e))?;
    }
    match DirBuilder::new().mode(0o700).create(root) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StorageError::io(StorageErrorKind::Create, root, e)),
    }
    let meta = fs::symlink_metadata(root).map_err(|e| StorageError::io(StorageErrorKind::Io, root, e))?;
    // SAFETY: getuid(2): "These functions are always successful"; it takes no arguments.
    let uid = unsafe { libc::getuid() };
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o022 != 0 {
        return Err(StorageError::new(StorageErrorKind::UnsafeRoot, root));
    }
    Ok(())
}

/// Numbers the storage directories of this process, so that tasks on many threads never
/// race for one name.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The persistent directories this process has made (and filled) so far.
fn persistent_made() -> &'static Mutex<HashSet<PathBuf>> {
    static MADE: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    MADE.get_or_init(Default::default)
}

fn lock_made() -> std::sync::MutexGuard<'static, HashSet<PathBuf>> {
    persistent_made().lock().unwrap_or_else(|p| p.into_inner())
}

/// A task's storage directory, made.
pub(crate) struct Made {
    pub(crate) path: PathBuf,
    /// Made now, so it must be filled (always true for non-persistent storage).
    pub(crate) fresh: bool,
}

/// Makes the storage directory of a task of `worker` under `root` (`…/cos-<user>`).
///
/// Non-persistent: `<pid>_vm<machine>_<slot>_<n>` (hexadecimal, `n` counting this process's
/// directories), created atomically; a name left by an earlier process with the same pid gets
/// a `_<k>` suffix. Persistent: `<pid>_vm<machine>_<slot>_p`, reused when this process made it
/// before, else (a stale one from an earlier run with the same pid) removed and made afresh.
pub(crate) fn make_task_storage(
    root: &Path,
    worker: WorkerIdentity,
    persistent: bool,
) -> Result<Made, StorageError> {
    ensure_root(root)?;
    let pid = std::process::id();
    let stem = format!("{pid:x}_vm{:x}_{:x}", worker.machine, worker.slot);
    if persistent {
        let path = root.join(format!("{stem}_p"));
        let known = lock_made().contains(&path);
        if known && fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            return Ok(Made { path, fresh: false });
        }
        if fs::symlink_metadata(&path).is_ok() {
            remove_entry(&path)?;
        }
        create_private(&path).map_err(|e| StorageError::io(StorageErrorKind::Create, &path, e))?;
        return Ok(Made { path, fresh: true });
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let base = root.join(format!("{stem}_{n:x}"));
    let mut path = base.clone();
    for k in 1..=MAX_SUFFIX {
        match create_private(&path) {
            Ok(()) => return Ok(Made { path, fresh: true }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let mut name = base.clone().into_os_string();
                name.push(format!("_{k:x}"));
                path = PathBuf::from(name);
            }
            Err(e) => return Err(StorageError::io(StorageErrorKind::Create, &path, e)),
        }
    }
    Err(StorageError::io(StorageErrorKind::Create, &base, io::ErrorKind::AlreadyExists.into()))
}

/// Records that the persistent directory `path` is made and filled, so later tasks reuse it.
pub(crate) fn mark_persistent_ready(path: &Path) {
    lock_made().insert(path.to_path_buf());
}

fn create_private(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(0o700).create(path)
}

/// Removes `path` (a directory with its contents, or anything else), never following a
/// symbolic link; a path that is already gone is not an error.
pub(crate) fn remove_entry(path: &Path) -> Result<(), StorageError> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(StorageErrorKind::Remove, path, e)),
    }
}

/// PyOPUS's `localStorageCleaner`: removes everything under [`local_storage_root`] on this
/// host (the storage of every task of this user, persistent or not, of every run). Call it
/// when no task of this user runs on the host. The spawner's `clearLocalStorage`, which runs
/// this on every host of its machine, is
/// [`clear_local_storage_everywhere`](crate::clear_local_storage_everywhere).
///
/// Every entry is tried; the first failure is returned after the rest were removed. A missing
/// root is not an error.
///
/// # Errors
/// [`StorageErrorKind::Remove`] for an entry that could not be removed, [`StorageErrorKind::Io`]
/// when the root cannot be read.
///
/// ```
/// cos::clear_local_storage().unwrap();
/// ```
pub fn clear_local_storage() -> Result<(), StorageError> {
    clear_local_storage_in(&local_storage())
}

/// [`clear_local_storage`] with `base` instead of [`local_storage()`]: removes everything
/// under `base/cos-<user>`.
///
/// # Errors
/// As [`clear_local_storage`].
///
/// ```
/// let base = std::env::temp_dir().join(format!("cos-doc-clear-{}", std::process::id()));
/// cos::clear_local_storage_in(&base).unwrap(); // nothing there yet
/// ```
pub fn clear_local_storage_in(base: &Path) -> Result<(), StorageError> {
    let root = local_storage_root_in(base);
    let entries = match fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io(StorageErrorKind::Io, &root, e)),
    };
    // Persistent directories are made afresh after this.
    lock_made().retain(|p| !p.starts_with(&root));
    let mut first = None;
    for entry in entries {
        let result = match entry {
            Ok(entry) => remove_entry(&entry.path()),
            Err(e) => Err(StorageError::io(StorageErrorKind::Io, &root, e)),
        };
        if let Err(e) = result {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("cos-local-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn a_name_taken_by_an_earlier_process_gets_a_suffix() {
        let base = scratch("suffix");
        let root = local_storage_root_in(&base);
        let w = WorkerIdentity { machine: 7, slot: 2 };
        // Predict the next name by taking one, then occupy the one after it.
        let first = make_task_storage(&root, w, false).unwrap().path;
        let name = first.file_name().unwrap().to_str().unwrap().to_string();
        let (stem, n) = name.rsplit_once('_').unwrap();
        let next = u64::from_str_radix(n, 16).unwrap() + 1;
        let squatted = root.join(format!("{stem}_{next:x}"));
        fs::create_dir(&squatted).unwrap();
        // Another thread may take `next` first; then ours is a later number, also fine.
        let made = make_task_storage(&root, w, false).unwrap().path;
        assert_ne!(made, squatted);
        assert!(made.is_dir());
        assert!(fs::read_dir(&squatted).unwrap().next().is_none());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_root_others_can_write_is_refused() {
        let base = scratch("unsafe");
        let root = local_storage_root_in(&base);
        fs::create_dir_all(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
        let err = make_task_storage(&root, WorkerIdentity { machine: 0, slot: 0 }, false).err().unwrap();
        assert_eq!(err.kind, StorageErrorKind::UnsafeRoot);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_root_that_is_a_symlink_is_refused() {
        let base = scratch("symlink");
        fs::create_dir_all(base.join("elsewhere")).unwrap();
        let root = local_storage_root_in(&base);
        std::os::unix::fs::symlink(base.join("elsewhere"), &root).unwrap();
        let err = make_task_storage(&root, WorkerIdentity { machine: 0, slot: 0 }, false).err().unwrap();
        assert_eq!(err.kind, StorageErrorKind::UnsafeRoot);
        fs::remove_dir_all(&base).unwrap();
    }
}
