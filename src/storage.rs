//! Mirrored storage: paths that name the same file on every host (PyOPUS's `toAbstractPath`,
//! `toActualPath`, `PARALLEL_MIRRORED_STORAGE` and `PARALLEL_LOCAL_STORAGE`).
//!
//! A cluster often mounts one network share at a different place on each host. The environment
//! variable `PARALLEL_MIRRORED_STORAGE` lists, separated by `:`, the directories that are the
//! same share on every host, in the same order everywhere (the user's home directory when it is
//! not set, as PyOPUS). A path under one of them crosses to a worker as an [`AbstractPath`] (the
//! entry's index and the path relative to it), and the worker turns it back into a path of its
//! own host with [`to_actual_path`], which never leaves the entry's directory.
//!
//! Unlike PyOPUS, an entry contains a path only when it is a prefix by whole components:
//! `/home2/x` is not under `/home`.

use std::env;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::environment::user::{expand_home, home_dir};
use crate::environment::{StorageError, StorageErrorKind};

/// The environment variable listing the mirrored directories.
const MIRRORED_VAR: &str = "PARALLEL_MIRRORED_STORAGE";
/// The environment variable naming this host's scratch directory.
const LOCAL_VAR: &str = "PARALLEL_LOCAL_STORAGE";

/// A path that means the same file on every host: an entry of the mirrored storage list and the
/// path relative to it (a path of components only: no root, no `..`), or (`index` `None`) a
/// path of the host that reads it, taken as it is.
///
/// It is `Serialize` / `Deserialize`, so it can be an argument or a result of a remote function.
///
/// ```
/// let dirs = ["/mnt/share"];
/// let a = cos::to_abstract_path_in("/mnt/share/run1/out.txt", &dirs).unwrap();
/// assert_eq!(a, cos::AbstractPath { index: Some(0), path: "run1/out.txt".into() });
/// // On a host where the share is mounted elsewhere:
/// let here = cos::to_actual_path_in(&a, &["/net/share"]).unwrap();
/// assert_eq!(here, std::path::Path::new("/net/share/run1/out.txt"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AbstractPath {
    /// The index of the mirrored storage entry that contains the path; `None`: no translation.
    pub index: Option<usize>,
    /// The path relative to that entry, or the path itself when `index` is `None`.
    pub path: PathBuf,
}

/// The mirrored storage entries of this host, from `PARALLEL_MIRRORED_STORAGE`, each with `~`
/// expanded; when the variable is not set (or empty), the user's home directory alone, as
/// PyOPUS. Empty entries are kept, so that the indices of the others stay those of the list,
/// but they contain no path.
///
/// ```
/// // Without the variable the user's home is the one entry.
/// if std::env::var_os("PARALLEL_MIRRORED_STORAGE").is_none() {
///     assert_eq!(cos::mirrored_storage().len(), 1);
/// }
/// ```
pub fn mirrored_storage() -> Vec<PathBuf> {
    match env::var_os(MIRRORED_VAR) {
        Some(v) if !v.is_empty() => {
            env::split_paths(&v).map(|p| if p.as_os_str().is_empty() { p } else { expand_home(&p) }).collect()
        }
        _ => home_dir().into_iter().collect(),
    }
}

/// This host's scratch directory: `PARALLEL_LOCAL_STORAGE` with `~` expanded, or the system's
/// temporary directory when it is not set (or empty), as PyOPUS.
///
/// ```
/// let scratch = cos::local_storage();
/// if std::env::var_os("PARALLEL_LOCAL_STORAGE").is_none() {
///     assert_eq!(scratch, std::env::temp_dir());
/// }
/// ```
pub fn local_storage() -> PathBuf {
    match env::var_os(LOCAL_VAR) {
        Some(v) if !v.is_empty() => expand_home(Path::new(&v)),
        _ => env::temp_dir(),
    }
}

/// PyOPUS's `toAbstractPath`: `path` in terms of [`mirrored_storage`]. See
/// [`to_abstract_path_in`].
///
/// # Errors
/// As [`to_abstract_path_in`].
///
/// ```
/// let home = cos::mirrored_storage().remove(0);
/// if std::env::var_os("PARALLEL_MIRRORED_STORAGE").is_none() {
///     let a = cos::to_abstract_path(home.join("run/netlist.cir")).unwrap();
///     assert_eq!(a.index, Some(0));
/// }
/// ```
pub fn to_abstract_path(path: impl AsRef<Path>) -> Result<AbstractPath, StorageError> {
    to_abstract_path_in(path, &mirrored_storage())
}

/// `path` in terms of the mirrored storage entries `mirrored`: the index of the first entry that
/// contains it (by whole path components) and the path relative to that entry.
///
/// Both the path and the entries are resolved first like Python's `os.path.realpath`: made
/// absolute against the current directory, with symbolic links of their existing part resolved
/// and `.` and `..` removed.
///
/// # Errors
/// [`StorageErrorKind::OutsideMirroredStorage`] (with the path as given) when no entry contains
/// the path, as PyOPUS: on another host such a path would not exist;
/// [`StorageErrorKind::Io`] when the current directory cannot be read.
///
/// ```
/// let dirs = ["/home", "/data"];
/// assert_eq!(cos::to_abstract_path_in("/data/a/b", &dirs).unwrap().index, Some(1));
/// // /home2 is not under /home.
/// let err = cos::to_abstract_path_in("/home2/x", &dirs).unwrap_err();
/// assert_eq!(err.kind, cos::StorageErrorKind::OutsideMirroredStorage);
/// ```
pub fn to_abstract_path_in<P: AsRef<Path>>(
    path: impl AsRef<Path>,
    mirrored: &[P],
) -> Result<AbstractPath, StorageError> {
    let given = path.as_ref();
    let real = real_path(given).map_err(|e| StorageError::io(StorageErrorKind::Io, given, e))?;
    for (index, entry) in mirrored.iter().enumerate() {
        let entry = entry.as_ref();
        if entry.as_os_str().is_empty() {
            continue;
        }
        let Ok(root) = real_path(entry) else { continue };
        // `strip_prefix` compares whole components.
        if let Ok(rel) = real.strip_prefix(&root) {
            return Ok(AbstractPath { index: Some(index), path: rel.to_path_buf() });
        }
    }
    Err(StorageError::new(StorageErrorKind::OutsideMirroredStorage, given))
}

/// PyOPUS's `toActualPath`: the path on this host for `path`, with the entries of
/// [`mirrored_storage`]. See [`to_actual_path_in`].
///
/// # Errors
/// As [`to_actual_path_in`].
///
/// ```
/// let a = cos::AbstractPath { index: None, path: "/tmp/x".into() };
/// assert_eq!(cos::to_actual_path(&a).unwrap(), std::path::Path::new("/tmp/x"));
/// ```
pub fn to_actual_path(path: &AbstractPath) -> Result<PathBuf, StorageError> {
    to_actual_path_in(path, &mirrored_storage())
}

/// The path on this host for `path`, with the mirrored storage entries `mirrored`: the entry's
/// directory joined with the relative path, or the path itself when its index is `None`.
///
/// The relative path comes from another host, so it is checked: it may hold only names (and
/// `.`), so that the result never leaves the entry's directory by its components. (Symbolic
/// links inside the share are the share owner's; they are not resolved here.)
///
/// # Errors
/// [`StorageErrorKind::NoMirroredEntry`] when `mirrored` has no (non-empty) entry at the path's
/// index: the lists of the two hosts do not match; [`StorageErrorKind::Escapes`] when the
/// relative path has a root, a prefix or a `..` component.
///
/// ```
/// let a = cos::AbstractPath { index: Some(1), path: "x/y".into() };
/// let p = cos::to_actual_path_in(&a, &["/a", "/b"]).unwrap();
/// assert_eq!(p, std::path::Path::new("/b/x/y"));
/// assert!(cos::to_actual_path_in(&a, &["/a"]).is_err());
/// ```
pub fn to_actual_path_in<P: AsRef<Path>>(
    path: &AbstractPath,
    mirrored: &[P],
) -> Result<PathBuf, StorageError> {
    let Some(index) = path.index else {
        return Ok(path.path.clone());
    };
    let entry = match mirrored.get(index).map(AsRef::as_ref) {
        Some(entry) if !entry.as_os_str().is_empty() => entry,
        _ => return Err(StorageError::new(StorageErrorKind::NoMirroredEntry { index }, &path.path)),
    };
    Ok(entry.join(relative_inside(&path.path)?))
}

/// `path` with `.` components dropped, when it has only names otherwise; else
/// [`StorageErrorKind::Escapes`].
pub(crate) fn relative_inside(path: &Path) -> Result<PathBuf, StorageError> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(StorageError::new(StorageErrorKind::Escapes, path));
            }
        }
    }
    Ok(out)
}

/// Python's non-strict `os.path.realpath`: the longest existing ancestor canonicalized, the
/// rest appended with `.` dropped and `..` applied to what precedes it.
fn real_path(path: &Path) -> io::Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    // The longest existing ancestor (the root at worst), canonicalized.
    let mut base = abs.as_path();
    let mut rest = Vec::new();
    let mut out = loop {
        if let Ok(c) = base.canonicalize() {
            break c;
        }
        match (base.parent(), base.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last.as_os_str().to_os_string());
                base = parent;
            }
            _ => break base.to_path_buf(),
        }
    };
    for name in rest.iter().rev() {
        for c in Path::new(name).components() {
            push_component(&mut out, c);
        }
    }
    Ok(out)
}

fn push_component(out: &mut PathBuf, c: Component<'_>) {
    match c {
        Component::CurDir => {}
        Component::ParentDir => {
            out.pop();
        }
        other => out.push(other.as_os_str()),
    }
}
