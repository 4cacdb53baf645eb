//! The error of mirrored storage paths and of a task's local storage.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// What went wrong with a storage path or a task's local storage (the `kind` of a
/// [`StorageError`]).
///
/// ```
/// let err = cos::to_abstract_path_in("/elsewhere/f", &["/mnt/share"]).unwrap_err();
/// assert_eq!(err.kind, cos::StorageErrorKind::OutsideMirroredStorage);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// The path is inside none of the mirrored storage directories, so no other host can reach
    /// it.
    OutsideMirroredStorage,
    /// This host's `PARALLEL_MIRRORED_STORAGE` has no (non-empty) entry with this index: the
    /// lists of the two hosts do not match.
    NoMirroredEntry {
        /// The index the abstract path names.
        index: usize,
    },
    /// A path that must stay inside a directory (a mirrored directory, the task's storage)
    /// leaves it: an absolute part, a `..` component, or a symbolic link on the way out.
    Escapes,
    /// The local storage root (`PARALLEL_LOCAL_STORAGE/cos-<user>`) is not a directory of this
    /// user that only this user can write (for example another user made it first).
    UnsafeRoot,
    /// The task's storage directory could not be made.
    Create,
    /// A directory or file of local storage could not be removed.
    Remove,
    /// A mirror map source matches nothing on this host.
    SourceMissing,
    /// Copying a mirrored file, directory or symbolic link failed.
    Copy,
    /// A mirror destination, or a part of it, exists and is not a directory.
    NotADirectory,
    /// A mirrored directory holds something that is not a file, directory or symbolic link
    /// (a socket, a FIFO, a device).
    UnsupportedFileType,
    /// The startup directory does not exist (or is not a directory) on this host.
    StartupDirMissing,
    /// The directory could not be read or examined.
    Io,
}

impl fmt::Display for StorageErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutsideMirroredStorage => f.write_str("is not inside any mirrored storage directory"),
            Self::NoMirroredEntry { index } => {
                write!(f, "names mirrored storage entry {index}, which this host does not have")
            }
            Self::Escapes => f.write_str("leaves its directory"),
            Self::UnsafeRoot => f.write_str("is not a private directory of this user"),
            Self::Create => f.write_str("cannot be created"),
            Self::Remove => f.write_str("cannot be removed"),
            Self::SourceMissing => f.write_str("matches nothing to mirror"),
            Self::Copy => f.write_str("cannot be copied"),
            Self::NotADirectory => f.write_str("exists and is not a directory"),
            Self::UnsupportedFileType => f.write_str("is not a file, directory or symbolic link"),
            Self::StartupDirMissing => f.write_str("is not a directory (startup directory)"),
            Self::Io => f.write_str("cannot be read"),
        }
    }
}

/// A storage path or local storage operation failed: what ([`StorageErrorKind`]), on which
/// path, and the system's error when there was one.
///
/// ```
/// use cos::{AbstractPath, StorageErrorKind};
/// let a = AbstractPath { index: Some(0), path: "../../etc/passwd".into() };
/// let err = cos::to_actual_path_in(&a, &["/mnt/share"]).unwrap_err();
/// assert_eq!(err.kind, StorageErrorKind::Escapes);
/// assert_eq!(err.path, std::path::Path::new("../../etc/passwd"));
/// assert!(err.source.is_none());
/// ```
#[derive(Debug, Clone)]
pub struct StorageError {
    /// What went wrong.
    pub kind: StorageErrorKind,
    /// The path it went wrong on.
    pub path: PathBuf,
    /// The system's error, when one caused it.
    pub source: Option<Arc<io::Error>>,
}

impl StorageError {
    /// An error of `kind` on `path` without a system error.
    ///
    /// ```
    /// let e = cos::StorageError::new(cos::StorageErrorKind::Escapes, "../x");
    /// assert!(e.source.is_none());
    /// ```
    pub fn new(kind: StorageErrorKind, path: impl Into<PathBuf>) -> Self {
        StorageError { kind, path: path.into(), source: None }
    }

    /// An error of `kind` on `path` caused by the system error `source`.
    ///
    /// ```
    /// use std::io;
    /// let e = cos::StorageError::io(cos::StorageErrorKind::Create, "/x", io::ErrorKind::PermissionDenied.into());
    /// assert_eq!(e.io_kind(), Some(io::ErrorKind::PermissionDenied));
    /// ```
    pub fn io(kind: StorageErrorKind, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError { kind, path: path.into(), source: Some(Arc::new(source)) }
    }

    /// The kind of the system error, when there is one.
    ///
    /// ```
    /// let e = cos::StorageError::new(cos::StorageErrorKind::Escapes, "../x");
    /// assert_eq!(e.io_kind(), None);
    /// ```
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        self.source.as_ref().map(|e| e.kind())
    }
}

/// Errors are equal when their kind, path and system error kind are.
impl PartialEq for StorageError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.path == other.path && self.io_kind() == other.io_kind()
    }
}

impl Eq for StorageError {}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path.display(), self.kind)?;
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}
