//! A task's environment on its worker: made before the function runs (PyOPUS's
//! `prepareEnvironment`), told to the task, removed afterwards (`cleanupEnvironment`).

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};

use crate::environment::local::{
    local_storage_root_in, make_task_storage, mark_persistent_ready, remove_entry,
};
use crate::environment::mirror::mirror_into;
use crate::environment::spec::{EnvironmentSpec, StartupDir, WorkerIdentity};
use crate::environment::{StorageError, StorageErrorKind};
use crate::storage::{local_storage, mirrored_storage, to_actual_path_in};

/// The environment of one running task: its storage directory (when its [`EnvironmentSpec`]
/// asks for one) and its working directory. Dropping it removes non-persistent storage, so a
/// task that panics leaves nothing behind; [`cleanup`] does the same and reports failures.
///
/// ```
/// use cos::{EnvironmentSpec, WorkerIdentity};
/// let base = std::env::temp_dir().join(format!("cos-doc-env-{}", std::process::id()));
/// let spec = EnvironmentSpec::new().local_storage(true);
/// let env = cos::prepare_in(&spec, WorkerIdentity { machine: 0, slot: 1 }, &base, &[] as &[&str]).unwrap();
/// let dir = env.storage().unwrap().to_path_buf();
/// std::fs::write(dir.join("netlist.cir"), "* amp").unwrap();
/// assert_eq!(env.working_dir(), Some(dir.as_path()));
/// cos::cleanup(env).unwrap();
/// assert!(!dir.exists());
/// # std::fs::remove_dir_all(&base).unwrap();
/// ```
#[derive(Debug)]
pub struct TaskEnvironment {
    storage: Option<PathBuf>,
    working_dir: Option<PathBuf>,
    persistent: bool,
}

impl TaskEnvironment {
    /// An environment without storage or working directory (what a machine without an
    /// environment gives its tasks).
    ///
    /// ```
    /// let env = cos::TaskEnvironment::none();
    /// assert!(env.storage().is_none() && env.working_dir().is_none());
    /// ```
    pub fn none() -> Self {
        TaskEnvironment { storage: None, working_dir: None, persistent: false }
    }

    /// The task's private storage directory (PyOPUS's `localStoragePath`), if it has one.
    ///
    /// ```
    /// assert!(cos::TaskEnvironment::none().storage().is_none());
    /// ```
    pub fn storage(&self) -> Option<&Path> {
        self.storage.as_deref()
    }

    /// The directory the task works in: its startup directory, else its storage; `None`: the
    /// process's own working directory. Programs started with
    /// [`ProcessGroup::start`](crate::ProcessGroup::start) run there by default.
    ///
    /// ```
    /// assert!(cos::TaskEnvironment::none().working_dir().is_none());
    /// ```
    pub fn working_dir(&self) -> Option<&Path> {
        self.working_dir.as_deref()
    }

    /// Whether the storage is kept after the task.
    ///
    /// ```
    /// assert!(!cos::TaskEnvironment::none().is_persistent());
    /// ```
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Makes this the current environment of the calling thread until the guard is dropped, so
    /// that [`task_storage`], [`task_working_dir`] and programs started from the task (and
    /// from every local task it spawns on this thread) see it. Guards nest.
    ///
    /// ```
    /// let env = cos::TaskEnvironment::none();
    /// let _in = env.enter();
    /// assert_eq!(cos::task_storage(), None);
    /// ```
    pub fn enter(&self) -> EnteredEnvironment {
        CURRENT.with(|c| {
            c.borrow_mut()
                .push(Current { storage: self.storage.clone(), working_dir: self.working_dir.clone() })
        });
        EnteredEnvironment { _not_send: std::marker::PhantomData }
    }

    /// Removes the storage (unless persistent) and reports what failed.
    fn remove(&mut self) -> Result<(), StorageError> {
        match self.storage.take() {
            Some(dir) if !self.persistent => remove_entry(&dir),
            _ => Ok(()),
        }
    }
}

impl Drop for TaskEnvironment {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            log::warn!(target: "cos", "task storage left behind: {e}");
        }
    }
}

/// What [`TaskEnvironment::enter`] makes current on a thread.
struct Current {
    storage: Option<PathBuf>,
    working_dir: Option<PathBuf>,
}

thread_local! {
    static CURRENT: RefCell<Vec<Current>> = const { RefCell::new(Vec::new()) };
}

/// The guard of [`TaskEnvironment::enter`]; dropping it restores the thread's previous
/// environment.
///
/// ```
/// let env = cos::TaskEnvironment::none();
/// drop(env.enter());
/// ```
#[derive(Debug)]
#[must_use = "the environment is current only while the guard lives"]
pub struct EnteredEnvironment {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for EnteredEnvironment {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.borrow_mut().pop());
    }
}

/// The storage directory of the task running on this thread (see [`TaskEnvironment::enter`]).
///
/// ```
/// assert_eq!(cos::task_storage(), None); // no task environment in a doc test
/// ```
pub fn task_storage() -> Option<PathBuf> {
    CURRENT.try_with(|c| c.borrow().last().and_then(|e| e.storage.clone())).ok().flatten()
}

/// The working directory of the task running on this thread (see
/// [`TaskEnvironment::working_dir`]).
///
/// ```
/// assert_eq!(cos::task_working_dir(), None);
/// ```
pub fn task_working_dir() -> Option<PathBuf> {
    CURRENT.try_with(|c| c.borrow().last().and_then(|e| e.working_dir.clone())).ok().flatten()
}

/// PyOPUS's `prepareEnvironment`, on the worker before the function runs: the environment of
/// a task of `worker` as `spec` asks, with this host's [`local_storage`] and
/// [`mirrored_storage`]. See [`prepare_in`].
///
/// # Errors
/// As [`prepare_in`].
///
/// ```
/// let env = cos::prepare(&cos::EnvironmentSpec::new(), cos::WorkerIdentity { machine: 0, slot: 0 }).unwrap();
/// assert!(env.storage().is_none());
/// ```
pub fn prepare(spec: &EnvironmentSpec, worker: WorkerIdentity) -> Result<TaskEnvironment, StorageError> {
    if !spec.needs_storage() && spec.startup_dir.is_none() {
        // Neither the storage nor the shares are used: a job without an environment (most
        // jobs) reads no environment variable.
        return prepare_in(spec, worker, Path::new(""), &[] as &[PathBuf]);
    }
    prepare_in(spec, worker, &local_storage(), &mirrored_storage())
}

/// The environment of a task of `worker` as `spec` asks, with `base` for
/// `PARALLEL_LOCAL_STORAGE` and `mirrored` for this host's mirrored directories.
///
/// When `spec` needs storage, a private directory is made under `base/cos-<user>/`, named
/// after the process id, the machine, the slot and a counter of this process (unique even when
/// many worker threads make theirs at once), and the mirror map is copied into it. Persistent
/// storage is one directory per process, machine and slot: made and filled by the first task
/// (a stale one from an earlier process with the same pid removed first), reused as it is by
/// the next. The working directory is the startup directory when given (inside the storage, or
/// on the share), else the storage.
///
/// # Errors
/// A [`StorageError`]: [`StorageErrorKind::Escapes`] for a destination or startup directory
/// leaving the storage or a source leaving its share, [`StorageErrorKind::UnsafeRoot`],
/// [`StorageErrorKind::Create`], [`StorageErrorKind::SourceMissing`] and the copy errors of the
/// mirror map, [`StorageErrorKind::StartupDirMissing`]. Whatever was made is removed again.
///
/// ```
/// use cos::{EnvironmentSpec, MirrorEntry, StartupDir, WorkerIdentity};
/// let tmp = std::env::temp_dir().join(format!("cos-doc-prepare-{}", std::process::id()));
/// let share = tmp.join("share");
/// std::fs::create_dir_all(share.join("amp")).unwrap();
/// std::fs::write(share.join("amp/amp.cir"), "* amp").unwrap();
/// let spec = EnvironmentSpec::new()
///     .mirror(MirrorEntry::new_in(share.join("amp"), "", &[&share]).unwrap())
///     .startup_dir(StartupDir::in_storage("amp").unwrap());
/// let env = cos::prepare_in(&spec, WorkerIdentity { machine: 0, slot: 0 }, &tmp, &[&share]).unwrap();
/// assert!(env.working_dir().unwrap().join("amp.cir").is_file());
/// drop(env);
/// # std::fs::remove_dir_all(&tmp).unwrap();
/// ```
pub fn prepare_in<P: AsRef<Path>>(
    spec: &EnvironmentSpec,
    worker: WorkerIdentity,
    base: &Path,
    mirrored: &[P],
) -> Result<TaskEnvironment, StorageError> {
    spec.validate()?;
    let mut env = TaskEnvironment::none();
    if spec.needs_storage() {
        let made = make_task_storage(&local_storage_root_in(base), worker, spec.persistent)?;
        // From here on, dropping `env` removes a fresh directory again, persistent or not.
        env.storage = Some(made.path.clone());
        env.persistent = spec.persistent && !made.fresh;
        if made.fresh {
            mirror_into(&spec.mirror, &made.path, mirrored)?;
            if spec.persistent {
                mark_persistent_ready(&made.path);
            }
        }
        env.persistent = spec.persistent;
    }
    env.working_dir = match (&spec.startup_dir, &env.storage) {
        (Some(StartupDir::Storage(rel)), Some(storage)) => Some(existing_dir_inside(storage, rel)?),
        (Some(StartupDir::Storage(rel)), None) => {
            return Err(StorageError::new(StorageErrorKind::StartupDirMissing, rel))
        }
        (Some(StartupDir::Shared(a)), _) => {
            let dir = to_actual_path_in(a, mirrored)?;
            if !dir.is_dir() {
                return Err(StorageError::new(StorageErrorKind::StartupDirMissing, dir));
            }
            Some(dir)
        }
        (None, storage) => storage.clone(),
    };
    Ok(env)
}

/// `storage/rel`, which must be a directory that stays inside `storage` once symbolic links
/// are resolved.
fn existing_dir_inside(storage: &Path, rel: &Path) -> Result<PathBuf, StorageError> {
    let dir = storage.join(rel);
    let missing = |e| StorageError::io(StorageErrorKind::StartupDirMissing, &dir, e);
    let real = dir.canonicalize().map_err(missing)?;
    let root = storage.canonicalize().map_err(|e| StorageError::io(StorageErrorKind::Io, storage, e))?;
    if !real.starts_with(&root) {
        return Err(StorageError::new(StorageErrorKind::Escapes, &dir));
    }
    if !fs::metadata(&real).is_ok_and(|m| m.is_dir()) {
        return Err(StorageError::new(StorageErrorKind::StartupDirMissing, &dir));
    }
    Ok(dir)
}

/// PyOPUS's `cleanupEnvironment`: after the task, removes its storage unless it is persistent.
/// (Dropping the environment does the same, without the report.)
///
/// # Errors
/// [`StorageErrorKind::Remove`] when the directory could not be removed entirely.
///
/// ```
/// cos::cleanup(cos::TaskEnvironment::none()).unwrap();
/// ```
pub fn cleanup(mut env: TaskEnvironment) -> Result<(), StorageError> {
    env.remove()
}
