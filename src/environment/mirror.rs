//! Copying PyOPUS's mirror map into a task's storage: sources matched on the share, files,
//! directories (recursively) and symbolic links (as links, never followed).

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::environment::glob::{has_magic, matches};
use crate::environment::spec::MirrorEntry;
use crate::environment::{StorageError, StorageErrorKind};
use crate::storage::{relative_inside, to_actual_path_in};

/// Copies every entry of `entries` from the share (`mirrored`, this host's list) into
/// `storage`.
pub(crate) fn mirror_into<P: AsRef<Path>>(
    entries: &[MirrorEntry],
    storage: &Path,
    mirrored: &[P],
) -> Result<(), StorageError> {
    for entry in entries {
        let Some(index) = entry.source.index else {
            return Err(StorageError::new(StorageErrorKind::OutsideMirroredStorage, &entry.source.path));
        };
        // Checks the index and that the pattern has names only.
        to_actual_path_in(&entry.source, mirrored)?;
        let share = mirrored[index].as_ref();
        let destination = relative_inside(&entry.destination)?;
        let sources = expand(share, &relative_inside(&entry.source.path)?)?;
        if sources.is_empty() {
            return Err(StorageError::new(StorageErrorKind::SourceMissing, share.join(&entry.source.path)));
        }
        let target = make_dirs_inside(storage, &destination)?;
        for source in sources {
            // `expand` gives paths with a last component.
            let Some(name) = source.file_name() else { continue };
            copy_tree(&source, &target.join(name))?;
        }
    }
    Ok(())
}

/// The paths under `share` matching `pattern` (names with wildcards), sorted. Directories on
/// the way are followed only while they stay inside the share; the last component is not
/// followed (a matching symbolic link is copied as a link).
fn expand(share: &Path, pattern: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let root =
        share.canonicalize().map_err(|e| StorageError::io(StorageErrorKind::SourceMissing, share, e))?;
    let parts: Vec<_> = pattern.components().collect();
    if parts.is_empty() {
        // The share itself.
        return Ok(vec![root]);
    }
    let mut current = vec![root.clone()];
    for (i, part) in parts.iter().enumerate() {
        let Component::Normal(part) = part else { continue };
        let last = i + 1 == parts.len();
        let mut next = Vec::new();
        for dir in &current {
            if i > 0 {
                // A directory reached through a symbolic link must still be inside the share.
                match dir.canonicalize() {
                    Ok(real) if real.starts_with(&root) => {}
                    Ok(_) => return Err(StorageError::new(StorageErrorKind::Escapes, dir)),
                    Err(_) => continue,
                }
                if !dir.is_dir() {
                    continue;
                }
            }
            if has_magic(part.as_bytes()) {
                let read = fs::read_dir(dir).map_err(|e| StorageError::io(StorageErrorKind::Io, dir, e))?;
                let mut found = Vec::new();
                for entry in read {
                    let entry = entry.map_err(|e| StorageError::io(StorageErrorKind::Io, dir, e))?;
                    if matches(part.as_bytes(), entry.file_name().as_bytes()) {
                        found.push(entry.path());
                    }
                }
                found.sort();
                next.extend(found);
            } else {
                let p = dir.join(part);
                if fs::symlink_metadata(&p).is_ok() && (last || p.is_dir()) {
                    next.push(p);
                }
            }
        }
        current = next;
    }
    Ok(current)
}

/// Makes `storage/relative` (names only) one directory at a time, refusing anything on the
/// way that is not a real directory (a file, or a symbolic link that could lead out).
fn make_dirs_inside(storage: &Path, relative: &Path) -> Result<PathBuf, StorageError> {
    let mut at = storage.to_path_buf();
    for c in relative.components() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(StorageError::new(StorageErrorKind::NotADirectory, &at)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&at).map_err(|e| StorageError::io(StorageErrorKind::Create, &at, e))?;
            }
            Err(e) => return Err(StorageError::io(StorageErrorKind::Io, &at, e)),
        }
    }
    Ok(at)
}

/// Copies `source` to `target`: a file with its permissions, a symbolic link as a link to the
/// same target, a directory with everything in it (iteratively: a deep tree cannot overflow a
/// task's stack). An existing directory at `target` is merged into; an existing file or link
/// is replaced, never written through.
fn copy_tree(source: &Path, target: &Path) -> Result<(), StorageError> {
    let mut work = vec![(source.to_path_buf(), target.to_path_buf())];
    while let Some((from, to)) = work.pop() {
        let meta =
            fs::symlink_metadata(&from).map_err(|e| StorageError::io(StorageErrorKind::Copy, &from, e))?;
        let kind = meta.file_type();
        let existing = fs::symlink_metadata(&to).ok();
        if kind.is_dir() {
            match existing {
                Some(m) if m.is_dir() => {}
                Some(_) => return Err(StorageError::new(StorageErrorKind::NotADirectory, &to)),
                None => fs::create_dir(&to).map_err(|e| StorageError::io(StorageErrorKind::Copy, &to, e))?,
            }
            let read = fs::read_dir(&from).map_err(|e| StorageError::io(StorageErrorKind::Copy, &from, e))?;
            for entry in read {
                let entry = entry.map_err(|e| StorageError::io(StorageErrorKind::Copy, &from, e))?;
                work.push((entry.path(), to.join(entry.file_name())));
            }
            continue;
        }
        if !(kind.is_file() || kind.is_symlink()) {
            return Err(StorageError::new(StorageErrorKind::UnsupportedFileType, &from));
        }
        match existing {
            Some(m) if m.is_dir() => return Err(StorageError::new(StorageErrorKind::NotADirectory, &to)),
            Some(_) => fs::remove_file(&to).map_err(|e| StorageError::io(StorageErrorKind::Copy, &to, e))?,
            None => {}
        }
        if kind.is_symlink() {
            let link =
                fs::read_link(&from).map_err(|e| StorageError::io(StorageErrorKind::Copy, &from, e))?;
            std::os::unix::fs::symlink(&link, &to)
                .map_err(|e| StorageError::io(StorageErrorKind::Copy, &to, e))?;
        } else {
            copy_file(&from, &to)?;
        }
    }
    Ok(())
}

/// Copies a regular file to a new path, created exclusively and without following links.
fn copy_file(from: &Path, to: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |p: &Path| {
        let p = p.to_path_buf();
        move |e| StorageError::io(StorageErrorKind::Copy, p, e)
    };
    let mut src =
        fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(from).map_err(err(from))?;
    let mode = src.metadata().map_err(err(from))?.permissions();
    let mut dst = fs::OpenOptions::new().write(true).create_new(true).open(to).map_err(err(to))?;
    io::copy(&mut src, &mut dst).map_err(err(to))?;
    dst.set_permissions(mode).map_err(err(to))?;
    Ok(())
}
