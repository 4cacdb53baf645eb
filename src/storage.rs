//! Mirrored storage: paths that name the same file on every host (PyOPUS's `toAbstractPath`,
//! `toActualPath`, `PARALLEL_MIRRORED_STORAGE` and `PARALLEL_LOCAL_STORAGE`).
//!
//! A cluster often mounts one network share at a different place on each host. The environment
//! variable `PARALLEL_MIRRORED_STORAGE` lists, separated by `:`, the directories that are the
//! same share on every host, in the same order everywhere. A path under one of them crosses to a
//! worker as an [`AbstractPath`] (the entry's index and the path relative to it), and the worker
//! turns it back into a path of its own host with [`to_actual_path`].
//!
//! Unlike PyOPUS, an entry contains a path only when it is a prefix by whole components:
//! `/home2/x` is not under `/home`.

use std::env;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The environment variable listing the mirrored directories.
const MIRRORED_VAR: &str = "PARALLEL_MIRRORED_STORAGE";
/// The environment variable naming this host's scratch directory.
const LOCAL_VAR: &str = "PARALLEL_LOCAL_STORAGE";

/// A path that means the same file on every host: an entry of the mirrored storage list and the
/// path relative to it, or (`index` `None`) a path that needs no translation.
///
/// It is `Serialize` / `Deserialize`, so it can be an argument or a result of a remote function.
///
/// ```
/// let dirs = ["/mnt/share"];
/// let a = cos::to_abstract_path_in("/mnt/share/run1/out.txt", &dirs);
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

/// The mirrored storage entries of this host, from `PARALLEL_MIRRORED_STORAGE` (empty when it is
/// not set). Empty entries are kept, so that the indices of the others stay those of the list,
/// but they contain no path.
///
/// ```
/// // Without the variable there are no entries.
/// if std::env::var_os("PARALLEL_MIRRORED_STORAGE").is_none() {
///     assert!(cos::mirrored_storage().is_empty());
/// }
/// ```
pub fn mirrored_storage() -> Vec<PathBuf> {
    match env::var_os(MIRRORED_VAR) {
        Some(v) if !v.is_empty() => env::split_paths(&v).collect(),
        _ => Vec::new(),
    }
}

/// This host's scratch directory, from `PARALLEL_LOCAL_STORAGE`; `None` when it is not set or
/// empty.
///
/// ```
/// let scratch = cos::local_storage().unwrap_or_else(std::env::temp_dir);
/// assert!(!scratch.as_os_str().is_empty());
/// ```
pub fn local_storage() -> Option<PathBuf> {
    env::var_os(LOCAL_VAR).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// PyOPUS's `toAbstractPath`: `path` in terms of `PARALLEL_MIRRORED_STORAGE`. See
/// [`to_abstract_path_in`].
///
/// ```
/// let a = cos::to_abstract_path("/no/such/share/file");
/// // Unless the variable lists a directory containing it, the path is kept as it is.
/// if std::env::var_os("PARALLEL_MIRRORED_STORAGE").is_none() {
///     assert_eq!(a.index, None);
///     assert_eq!(a.path, std::path::Path::new("/no/such/share/file"));
/// }
/// ```
pub fn to_abstract_path(path: impl AsRef<Path>) -> AbstractPath {
    to_abstract_path_in(path, &mirrored_storage())
}

/// `path` in terms of the mirrored storage entries `mirrored`: the index of the first entry that
/// contains it (by whole path components) and the path relative to that entry.
///
/// Both the path and the entries are resolved first like Python's `os.path.realpath`: made
/// absolute against the current directory, with symbolic links of their existing part resolved
/// and `.` and `..` removed. When no entry contains the path, the result has index `None` and
/// the path as given.
///
/// ```
/// let dirs = ["/home", "/data"];
/// assert_eq!(cos::to_abstract_path_in("/data/a/b", &dirs).index, Some(1));
/// // /home2 is not under /home.
/// assert_eq!(cos::to_abstract_path_in("/home2/x", &dirs).index, None);
/// ```
pub fn to_abstract_path_in<P: AsRef<Path>>(path: impl AsRef<Path>, mirrored: &[P]) -> AbstractPath {
    let given = path.as_ref();
    let Ok(real) = real_path(given) else {
        return AbstractPath { index: None, path: given.to_path_buf() };
    };
    for (index, entry) in mirrored.iter().enumerate() {
        let entry = entry.as_ref();
        if entry.as_os_str().is_empty() {
            continue;
        }
        let Ok(root) = real_path(entry) else { continue };
        // `strip_prefix` compares whole components.
        if let Ok(rel) = real.strip_prefix(&root) {
            return AbstractPath { index: Some(index), path: rel.to_path_buf() };
        }
    }
    AbstractPath { index: None, path: given.to_path_buf() }
}

/// PyOPUS's `toActualPath`: the path on this host for `path`, with the entries of
/// `PARALLEL_MIRRORED_STORAGE`. See [`to_actual_path_in`].
///
/// # Errors
/// As [`to_actual_path_in`].
///
/// ```
/// let a = cos::AbstractPath { index: None, path: "/tmp/x".into() };
/// assert_eq!(cos::to_actual_path(&a).unwrap(), std::path::Path::new("/tmp/x"));
/// ```
pub fn to_actual_path(path: &AbstractPath) -> Result<PathBuf, Error> {
    to_actual_path_in(path, &mirrored_storage())
}

/// The path on this host for `path`, with the mirrored storage entries `mirrored`: the entry's
/// directory joined with the relative path, or the path itself when its index is `None`.
///
/// # Errors
/// [`Error::Vm`] when `mirrored` has no (non-empty) entry at the path's index: the lists of the
/// two hosts do not match.
///
/// ```
/// let a = cos::AbstractPath { index: Some(1), path: "x/y".into() };
/// let p = cos::to_actual_path_in(&a, &["/a", "/b"]).unwrap();
/// assert_eq!(p, std::path::Path::new("/b/x/y"));
/// assert!(cos::to_actual_path_in(&a, &["/a"]).is_err());
/// ```
pub fn to_actual_path_in<P: AsRef<Path>>(path: &AbstractPath, mirrored: &[P]) -> Result<PathBuf, Error> {
    let Some(index) = path.index else {
        return Ok(path.path.clone());
    };
    match mirrored.get(index).map(AsRef::as_ref) {
        Some(entry) if !entry.as_os_str().is_empty() => Ok(entry.join(&path.path)),
        _ => Err(crate::vm::machine(
            crate::vm::MachineErrorKind::Config,
            format!(
                "mirrored storage has no entry {index} on this host ({} entries in {MIRRORED_VAR})",
                mirrored.len()
            ),
        )),
    }
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
