//! What a machine's builder is told about the environment of its remote tasks (PyOPUS's
//! `startupDir`, `mirrorMap` and `persistentStorage`), and who a worker is.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::environment::{StorageError, StorageErrorKind};
use crate::storage::{mirrored_storage, relative_inside, to_abstract_path_in, AbstractPath};

/// One entry of PyOPUS's `mirrorMap`: what to copy from the mirrored share and where to, inside
/// the task's storage.
///
/// ```
/// let e = cos::MirrorEntry::new_in("/mnt/share/proj/*.inc", "lib", &["/mnt/share"]).unwrap();
/// assert_eq!(e.source.path, std::path::Path::new("proj/*.inc"));
/// assert_eq!(e.destination, std::path::Path::new("lib"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MirrorEntry {
    /// The source on the share: an abstract path whose last components may hold the wildcards
    /// `*`, `?` and `[...]` (each matching within one component).
    pub source: AbstractPath,
    /// The directory, relative to the task's storage, that receives every matching file and
    /// directory under its own name (never renamed; `""` is the storage itself).
    pub destination: PathBuf,
}

impl MirrorEntry {
    /// An entry copying `source` (a path of the spawner inside [`mirrored_storage`], wildcards
    /// allowed) into `destination` (relative to the task's storage).
    ///
    /// # Errors
    /// As [`MirrorEntry::new_in`].
    ///
    /// ```
    /// let home = cos::mirrored_storage().remove(0);
    /// if std::env::var_os("PARALLEL_MIRRORED_STORAGE").is_none() {
    ///     assert!(cos::MirrorEntry::new(home.join("models/*.lib"), "models").is_ok());
    /// }
    /// ```
    pub fn new(source: impl AsRef<Path>, destination: impl AsRef<Path>) -> Result<Self, StorageError> {
        Self::new_in(source, destination, &mirrored_storage())
    }

    /// An entry copying `source` (a path inside one of `mirrored`) into `destination`.
    ///
    /// # Errors
    /// [`StorageErrorKind::OutsideMirroredStorage`] when no entry of `mirrored` holds `source`
    /// (no node could read it); [`StorageErrorKind::Escapes`] when `destination` is absolute or
    /// has a `..` component.
    ///
    /// ```
    /// let err = cos::MirrorEntry::new_in("/mnt/share/a", "../out", &["/mnt/share"]).unwrap_err();
    /// assert_eq!(err.kind, cos::StorageErrorKind::Escapes);
    /// ```
    pub fn new_in<P: AsRef<Path>>(
        source: impl AsRef<Path>,
        destination: impl AsRef<Path>,
        mirrored: &[P],
    ) -> Result<Self, StorageError> {
        let source = to_abstract_path_in(source, mirrored)?;
        let destination = relative_inside(destination.as_ref())?;
        Ok(MirrorEntry { source, destination })
    }
}

/// Where a remote task starts (PyOPUS's `startupDir`). A task is told it as a path
/// ([`TaskEnvironment::working_dir`](crate::TaskEnvironment::working_dir)); the worker's
/// working directory, shared by its threads, is never changed.
///
/// ```
/// let s = cos::StartupDir::in_storage("sim").unwrap();
/// assert_eq!(s, cos::StartupDir::Storage("sim".into()));
/// assert!(cos::StartupDir::in_storage("/etc").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StartupDir {
    /// A directory relative to the task's storage (names only), for example one the mirror
    /// map fills.
    Storage(PathBuf),
    /// A directory on the mirrored share, the same on every host.
    Shared(AbstractPath),
}

impl StartupDir {
    /// A startup directory relative to the task's storage.
    ///
    /// # Errors
    /// [`StorageErrorKind::Escapes`] when `path` is absolute or has a `..` component.
    ///
    /// ```
    /// assert!(cos::StartupDir::in_storage("a/../../b").is_err());
    /// ```
    pub fn in_storage(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        Ok(StartupDir::Storage(relative_inside(path.as_ref())?))
    }

    /// A startup directory on the mirrored share: `path` of this host, translated with
    /// `mirrored` (pass [`mirrored_storage()`] for the environment's list).
    ///
    /// # Errors
    /// As [`to_abstract_path_in`].
    ///
    /// ```
    /// let s = cos::StartupDir::shared_in("/mnt/share/run", &["/mnt/share"]).unwrap();
    /// assert!(matches!(s, cos::StartupDir::Shared(_)));
    /// ```
    pub fn shared_in<P: AsRef<Path>>(path: impl AsRef<Path>, mirrored: &[P]) -> Result<Self, StorageError> {
        Ok(StartupDir::Shared(to_abstract_path_in(path, mirrored)?))
    }
}

/// The environment of every remote task of a machine: PyOPUS's `startupDir`, `mirrorMap` and
/// `persistentStorage` constructor options. It is `Serialize`, so the spawner sends it to its
/// workers, which build each task's [`TaskEnvironment`](crate::TaskEnvironment) from it with
/// [`prepare`](crate::prepare).
///
/// The default asks for nothing: no storage directory, no copies (free for tasks that write
/// no files).
///
/// ```
/// let spec = cos::EnvironmentSpec::new()
///     .mirror(cos::MirrorEntry::new_in("/mnt/share/proj/amp", "", &["/mnt/share"]).unwrap())
///     .startup_dir(cos::StartupDir::in_storage("amp").unwrap())
///     .persistent(true);
/// assert!(spec.needs_storage());
/// assert!(!cos::EnvironmentSpec::new().needs_storage());
/// let bytes = postcard::to_stdvec(&spec).unwrap();
/// assert_eq!(postcard::from_bytes::<cos::EnvironmentSpec>(&bytes).unwrap(), spec);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EnvironmentSpec {
    /// Where the task starts; `None`: its storage, when it has one.
    pub startup_dir: Option<StartupDir>,
    /// What is copied into the task's storage before the function runs (PyOPUS's `mirrorMap`).
    pub mirror: Vec<MirrorEntry>,
    /// Keep the storage between the tasks of one worker of one machine, copying only for the
    /// first (PyOPUS's `persistentStorage`).
    pub persistent: bool,
    /// Give every task a storage directory even without a mirror map.
    pub local_storage: bool,
}

impl EnvironmentSpec {
    /// An environment asking for nothing.
    ///
    /// ```
    /// assert_eq!(cos::EnvironmentSpec::new(), cos::EnvironmentSpec::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a mirror map entry.
    ///
    /// ```
    /// let e = cos::MirrorEntry::new_in("/mnt/share/a.cir", "", &["/mnt/share"]).unwrap();
    /// assert_eq!(cos::EnvironmentSpec::new().mirror(e).mirror.len(), 1);
    /// ```
    pub fn mirror(mut self, entry: MirrorEntry) -> Self {
        self.mirror.push(entry);
        self
    }

    /// Sets the startup directory.
    ///
    /// ```
    /// let s = cos::EnvironmentSpec::new().startup_dir(cos::StartupDir::in_storage("x").unwrap());
    /// assert!(s.needs_storage());
    /// ```
    pub fn startup_dir(mut self, dir: StartupDir) -> Self {
        self.startup_dir = Some(dir);
        self
    }

    /// Sets whether the storage persists between the tasks of a worker.
    ///
    /// ```
    /// assert!(cos::EnvironmentSpec::new().persistent(true).persistent);
    /// ```
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// Sets whether every task gets a storage directory even without a mirror map.
    ///
    /// ```
    /// assert!(cos::EnvironmentSpec::new().local_storage(true).needs_storage());
    /// ```
    pub fn local_storage(mut self, on: bool) -> Self {
        self.local_storage = on;
        self
    }

    /// Whether a task of this environment gets a storage directory: asked for, persistent, a
    /// mirror map, or a startup directory inside the storage.
    ///
    /// ```
    /// assert!(cos::EnvironmentSpec::new().persistent(true).needs_storage());
    /// ```
    pub fn needs_storage(&self) -> bool {
        self.local_storage
            || self.persistent
            || !self.mirror.is_empty()
            || matches!(self.startup_dir, Some(StartupDir::Storage(_)))
    }

    /// Checks what a worker receives from elsewhere: every destination and a startup directory
    /// inside the storage have names only.
    ///
    /// # Errors
    /// [`StorageErrorKind::Escapes`] for the first path that would leave the task's storage.
    ///
    /// ```
    /// let mut spec = cos::EnvironmentSpec::new();
    /// spec.startup_dir = Some(cos::StartupDir::Storage("../../etc".into()));
    /// assert_eq!(spec.validate().unwrap_err().kind, cos::StorageErrorKind::Escapes);
    /// ```
    pub fn validate(&self) -> Result<(), StorageError> {
        for e in &self.mirror {
            relative_inside(&e.destination)?;
            if e.source.index.is_some() {
                relative_inside(&e.source.path)?;
            } else {
                return Err(StorageError::new(StorageErrorKind::OutsideMirroredStorage, &e.source.path));
            }
        }
        match &self.startup_dir {
            Some(StartupDir::Storage(p)) => relative_inside(p).map(drop),
            Some(StartupDir::Shared(a)) if a.index.is_some() => relative_inside(&a.path).map(drop),
            _ => Ok(()),
        }
    }
}

/// Who runs a task, as far as its storage is concerned: the machine (an index unique within
/// the spawner's process, PyOPUS's VM index) and the worker slot. With the process id it names
/// the storage directory, so a persistent one belongs to one worker of one machine.
///
/// ```
/// let w = cos::WorkerIdentity { machine: 0, slot: 3 };
/// assert_eq!(w.slot, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkerIdentity {
    /// The machine's index.
    pub machine: u64,
    /// The worker's slot in the machine.
    pub slot: usize,
}
