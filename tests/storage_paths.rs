//! Mirrored storage paths (PyOPUS's `toAbstractPath` / `toActualPath`): round trips between
//! hosts, whole-component matching, the first containing entry, paths outside every entry
//! (an error), relative paths, and abstract paths from another host that try to leave their
//! mirrored directory (an error).

use std::path::{Path, PathBuf};

use cos::{to_abstract_path_in, to_actual_path_in, AbstractPath, StorageErrorKind};

fn abs(index: Option<usize>, path: &str) -> AbstractPath {
    AbstractPath { index, path: PathBuf::from(path) }
}

fn to_abs<P: AsRef<Path>>(path: impl AsRef<Path>, dirs: &[P]) -> AbstractPath {
    to_abstract_path_in(path, dirs).unwrap()
}

fn outside<P: AsRef<Path>>(path: &str, dirs: &[P]) {
    let err = to_abstract_path_in(path, dirs).unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::OutsideMirroredStorage, "{err:?}");
    assert_eq!(err.path, Path::new(path));
}

#[test]
fn a_path_under_an_entry_crosses_to_another_host() {
    let here = ["/mnt/a", "/mnt/share"];
    let there = ["/net/a", "/cluster/share"];
    let a = to_abs("/mnt/share/run1/out.txt", &here);
    assert_eq!(a, abs(Some(1), "run1/out.txt"));
    assert_eq!(to_actual_path_in(&a, &there).unwrap(), Path::new("/cluster/share/run1/out.txt"));
    // And back on the first host.
    assert_eq!(to_actual_path_in(&a, &here).unwrap(), Path::new("/mnt/share/run1/out.txt"));
}

#[test]
fn the_entry_itself_is_its_empty_relative_path() {
    let a = to_abs("/mnt/share", &["/mnt/share"]);
    assert_eq!(a, abs(Some(0), ""));
    assert_eq!(to_actual_path_in(&a, &["/x/y"]).unwrap(), Path::new("/x/y"));
}

#[test]
fn entries_match_whole_components_only() {
    // PyOPUS compares string prefixes, so /home2/x would be under /home.
    let dirs = ["/home", "/home2"];
    assert_eq!(to_abs("/home2/x", &dirs), abs(Some(1), "x"));
    outside("/home2/x", &["/home"]);
    assert_eq!(to_abs("/home/x", &dirs), abs(Some(0), "x"));
}

#[test]
fn the_first_containing_entry_wins() {
    let dirs = ["/data/projects", "/data", "/data/projects/p1"];
    assert_eq!(to_abs("/data/projects/p1/f", &dirs), abs(Some(0), "p1/f"));
    assert_eq!(to_abs("/data/other/f", &dirs), abs(Some(1), "other/f"));
}

#[test]
fn a_path_outside_every_entry_is_an_error() {
    // On another host such a path would not exist (PyOPUS raises too).
    outside("/elsewhere/file", &["/mnt/share"]);
    let none: [&str; 0] = [];
    outside("/mnt/share/f", &none);
}

#[test]
fn a_path_of_this_host_is_taken_as_it_is() {
    let a = abs(None, "/elsewhere/file");
    assert_eq!(to_actual_path_in(&a, &["/other"]).unwrap(), Path::new("/elsewhere/file"));
}

#[test]
fn dot_and_dot_dot_are_resolved_before_matching() {
    let dirs = ["/mnt/share"];
    assert_eq!(to_abs("/mnt/share/./a/../b", &dirs), abs(Some(0), "b"));
    outside("/mnt/share/../other/b", &dirs);
}

#[test]
fn relative_paths_are_taken_from_the_current_directory() {
    let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
    let dirs = [cwd.clone()];
    // An existing file and one that does not exist (yet).
    assert_eq!(to_abs("tests/storage_paths.rs", &dirs), abs(Some(0), "tests/storage_paths.rs"));
    assert_eq!(to_abs("no/such/file", &dirs), abs(Some(0), "no/such/file"));
    assert_eq!(to_abs("./a/../b", &dirs), abs(Some(0), "b"));
    // An entry may be relative too.
    assert_eq!(to_abs(cwd.join("tests/x"), &["tests"]), abs(Some(0), "x"));
}

#[test]
fn symbolic_links_are_resolved_on_both_sides() {
    let root = std::env::temp_dir().join(format!("cos-storage-paths-{}", std::process::id()));
    let share = root.join("share");
    std::fs::create_dir_all(share.join("sub")).unwrap();
    let link = root.join("link");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&share, &link).unwrap();
    // A path through the link is under the entry named by its target, and the other way round.
    assert_eq!(to_abs(link.join("sub/f"), &[&share]), abs(Some(0), "sub/f"));
    assert_eq!(to_abs(share.join("sub"), &[&link]), abs(Some(0), "sub"));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn empty_entries_keep_the_indices_of_the_others() {
    let dirs = ["/a", "", "/b"];
    assert_eq!(to_abs("/b/f", &dirs), abs(Some(2), "f"));
    let err = to_actual_path_in(&abs(Some(1), "f"), &dirs).unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::NoMirroredEntry { index: 1 });
}

#[test]
fn an_index_beyond_this_hosts_list_is_an_error() {
    let err = to_actual_path_in(&abs(Some(3), "f"), &["/a"]).unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::NoMirroredEntry { index: 3 });
    assert_eq!(err.path, Path::new("f"));
}

#[test]
fn an_abstract_path_from_another_host_never_leaves_its_directory() {
    let share = ["/mnt/share"];
    for bad in ["../../etc/passwd", "a/../../x", "..", "/etc/passwd", "a//../b", "./../x"] {
        let err = to_actual_path_in(&abs(Some(0), bad), &share).unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Escapes, "{bad}");
        assert_eq!(err.path, Path::new(bad));
    }
    // `.` components are harmless and dropped.
    assert_eq!(to_actual_path_in(&abs(Some(0), "./a/./b"), &share).unwrap(), Path::new("/mnt/share/a/b"));
}

#[test]
fn errors_convert_to_the_crate_error() {
    let err: cos::Error = to_abstract_path_in("/x", &["/mnt/share"]).unwrap_err().into();
    assert!(
        matches!(err, cos::Error::Storage(ref e) if e.kind == StorageErrorKind::OutsideMirroredStorage),
        "{err:?}"
    );
}

#[test]
fn an_abstract_path_survives_encoding() {
    let a = abs(Some(2), "run/out.txt");
    let bytes = postcard::to_stdvec(&a).unwrap();
    assert_eq!(postcard::from_bytes::<AbstractPath>(&bytes).unwrap(), a);
}
