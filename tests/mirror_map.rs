//! PyOPUS's mirror map: files and directories matching a source on the share (wildcards
//! allowed) are copied into the task's storage before the function runs, directories
//! recursively with symbolic links kept as links; the destination is always a directory; the
//! startup directory. Hostile inputs (a destination leaving the storage, a link pointing out of
//! the share, a path through a link out of the share) never reach outside.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use cos::{EnvironmentSpec, MirrorEntry, StartupDir, StorageErrorKind, TaskEnvironment, WorkerIdentity};

struct Setup {
    tmp: PathBuf,
    share: PathBuf,
}

impl Setup {
    fn new(name: &str) -> Self {
        let tmp = std::env::temp_dir().join(format!("cos-mirror-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let share = tmp.join("share");
        fs::create_dir_all(share.join("proj/amp/models")).unwrap();
        fs::write(share.join("proj/amp/amp.cir"), "* amplifier").unwrap();
        fs::write(share.join("proj/amp/models/nmos.lib"), "nmos").unwrap();
        fs::write(share.join("proj/amp/.hidden"), "h").unwrap();
        fs::write(share.join("proj/a.inc"), "a").unwrap();
        fs::write(share.join("proj/b.inc"), "b").unwrap();
        fs::write(share.join("proj/c.txt"), "c").unwrap();
        let run = share.join("proj/run.sh");
        fs::write(&run, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).unwrap();
        Setup { tmp, share }
    }

    fn entry(&self, source: &str, dest: &str) -> MirrorEntry {
        MirrorEntry::new_in(self.share.join(source), dest, &[&self.share]).unwrap()
    }

    /// Prepares on a "node" that mounts the share elsewhere (a symlink to it), as a cluster does.
    fn prepare(&self, spec: &EnvironmentSpec) -> Result<TaskEnvironment, cos::StorageError> {
        let node_mount = self.tmp.join("node-mount");
        if fs::symlink_metadata(&node_mount).is_err() {
            symlink(&self.share, &node_mount).unwrap();
        }
        cos::prepare_in(spec, WorkerIdentity { machine: 0, slot: 0 }, &self.tmp.join("local"), &[&node_mount])
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

#[test]
fn a_file_goes_into_its_destination_directory() {
    let s = Setup::new("file");
    let spec = EnvironmentSpec::new().mirror(s.entry("proj/run.sh", "bin/tools"));
    let env = s.prepare(&spec).unwrap();
    let copy = env.storage().unwrap().join("bin/tools/run.sh");
    assert_eq!(fs::read_to_string(&copy).unwrap(), "#!/bin/sh\n");
    assert_eq!(fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o755);
}

#[test]
fn wildcards_match_within_one_component() {
    let s = Setup::new("glob");
    let spec =
        EnvironmentSpec::new().mirror(s.entry("proj/*.inc", "inc")).mirror(s.entry("pro?/[!x]*.txt", ""));
    let env = s.prepare(&spec).unwrap();
    let st = env.storage().unwrap();
    assert_eq!(names(&st.join("inc")), ["a.inc", "b.inc"]);
    assert_eq!(names(st), ["c.txt", "inc"]);
}

#[test]
fn a_directory_is_copied_recursively_under_its_own_name() {
    let s = Setup::new("dir");
    let env = s.prepare(&EnvironmentSpec::new().mirror(s.entry("proj/amp", ""))).unwrap();
    let amp = env.storage().unwrap().join("amp");
    assert_eq!(names(&amp), [".hidden", "amp.cir", "models"]);
    assert_eq!(fs::read_to_string(amp.join("models/nmos.lib")).unwrap(), "nmos");
}

#[test]
fn a_mirrored_directory_with_a_symlink_arrives_as_a_symlink() {
    let s = Setup::new("symlink");
    symlink("models/nmos.lib", s.share.join("proj/amp/nmos-link")).unwrap();
    symlink("../../proj", s.share.join("proj/amp/up")).unwrap();
    let env = s.prepare(&EnvironmentSpec::new().mirror(s.entry("proj/amp", ""))).unwrap();
    let amp = env.storage().unwrap().join("amp");
    let link = amp.join("nmos-link");
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("models/nmos.lib"));
    // A relative link to a mirrored file still works after the copy.
    assert_eq!(fs::read_to_string(&link).unwrap(), "nmos");
    // A link to a directory is not descended into either.
    assert!(fs::symlink_metadata(amp.join("up")).unwrap().file_type().is_symlink());
}

#[test]
fn a_link_pointing_out_of_the_share_is_copied_as_a_link_not_followed() {
    let s = Setup::new("outlink");
    let secret = s.tmp.join("secret");
    fs::create_dir_all(&secret).unwrap();
    fs::write(secret.join("key"), "private").unwrap();
    symlink(&secret, s.share.join("proj/amp/escape")).unwrap();
    symlink(secret.join("key"), s.share.join("proj/key-link")).unwrap();
    // Named directly, the spawner resolves the link and finds it outside the share.
    let err = MirrorEntry::new_in(s.share.join("proj/key-link"), "", &[&s.share]).unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::OutsideMirroredStorage);
    // Matched by a wildcard on the node, it is copied as the link it is.
    let spec = EnvironmentSpec::new().mirror(s.entry("proj/amp", "")).mirror(s.entry("proj/key-*", ""));
    let env = s.prepare(&spec).unwrap();
    let st = env.storage().unwrap();
    for link in [st.join("amp/escape"), st.join("key-link")] {
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "{link:?}");
    }
    // Nothing of the secret was copied, and removing the storage leaves it alone.
    drop(env);
    assert_eq!(fs::read_to_string(secret.join("key")).unwrap(), "private");
}

#[test]
fn a_source_path_through_a_link_out_of_the_share_is_refused() {
    let s = Setup::new("through");
    let outside = s.tmp.join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("passwd"), "root").unwrap();
    // Made on the spawner as a plain path, then the share changes under it on the node.
    let spec = EnvironmentSpec::new().mirror(s.entry("proj/etc/passwd", ""));
    symlink(&outside, s.share.join("proj/etc")).unwrap();
    let err = s.prepare(&spec).unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Escapes);
    // Also with a wildcard.
    let spec = EnvironmentSpec::new().mirror(s.entry("proj/*/passwd", ""));
    assert_eq!(s.prepare(&spec).unwrap_err().kind, StorageErrorKind::Escapes);
}

#[test]
fn a_destination_leaving_the_storage_is_refused() {
    let s = Setup::new("dest");
    for bad in ["../escape", "/tmp/escape", "a/../../escape"] {
        let err = MirrorEntry::new_in(s.share.join("proj/a.inc"), bad, &[&s.share]).unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Escapes, "{bad}");
        // A spec forged on the way to the worker is checked there too.
        let mut entry = s.entry("proj/a.inc", "");
        entry.destination = bad.into();
        let err = s.prepare(&EnvironmentSpec::new().mirror(entry)).unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Escapes, "{bad}");
    }
    assert!(!s.tmp.join("escape").exists() && !Path::new("/tmp/escape").exists());
    // A source pattern leaving the share, forged the same way.
    let mut entry = s.entry("proj/a.inc", "");
    entry.source.path = "../../../etc/passwd".into();
    assert_eq!(s.prepare(&EnvironmentSpec::new().mirror(entry)).unwrap_err().kind, StorageErrorKind::Escapes);
}

#[test]
fn the_destination_is_always_a_directory() {
    let s = Setup::new("notdir");
    // The first entry puts a file named `x`; the second wants `x` as its directory.
    fs::write(s.share.join("proj/x"), "file").unwrap();
    let spec = EnvironmentSpec::new().mirror(s.entry("proj/x", "")).mirror(s.entry("proj/a.inc", "x"));
    assert_eq!(s.prepare(&spec).unwrap_err().kind, StorageErrorKind::NotADirectory);
}

#[test]
fn a_source_matching_nothing_is_an_error() {
    let s = Setup::new("missing");
    for source in ["proj/nothing.cir", "proj/*.none"] {
        let spec = EnvironmentSpec::new().mirror(s.entry(source, ""));
        assert_eq!(s.prepare(&spec).unwrap_err().kind, StorageErrorKind::SourceMissing, "{source}");
    }
    // Mirror list of another length on this node.
    let mut entry = s.entry("proj/a.inc", "");
    entry.source.index = Some(4);
    let err = s.prepare(&EnvironmentSpec::new().mirror(entry)).unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::NoMirroredEntry { index: 4 });
}

#[test]
fn a_source_outside_the_share_is_refused_on_the_spawner() {
    let s = Setup::new("outside");
    let err = MirrorEntry::new_in(s.tmp.join("elsewhere.cir"), "", &[&s.share]).unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::OutsideMirroredStorage);
}

#[test]
fn the_startup_directory_is_inside_the_storage_or_on_the_share() {
    let s = Setup::new("startup");
    let spec = EnvironmentSpec::new()
        .mirror(s.entry("proj/amp", ""))
        .startup_dir(StartupDir::in_storage("amp/models").unwrap());
    let env = s.prepare(&spec).unwrap();
    assert_eq!(env.working_dir().unwrap(), env.storage().unwrap().join("amp/models"));
    drop(env);
    // On the share: translated for the node.
    let spec = EnvironmentSpec::new()
        .startup_dir(StartupDir::shared_in(s.share.join("proj/amp"), &[&s.share]).unwrap());
    let env = s.prepare(&spec).unwrap();
    assert_eq!(env.storage(), None);
    assert_eq!(env.working_dir().unwrap(), s.tmp.join("node-mount/proj/amp"));
    // Missing, or leaving the storage through a link: errors.
    let spec =
        EnvironmentSpec::new().local_storage(true).startup_dir(StartupDir::in_storage("nope").unwrap());
    assert_eq!(s.prepare(&spec).unwrap_err().kind, StorageErrorKind::StartupDirMissing);
    symlink(&s.tmp, s.share.join("proj/amp/out")).unwrap();
    let spec = EnvironmentSpec::new()
        .mirror(s.entry("proj/amp", ""))
        .startup_dir(StartupDir::in_storage("amp/out").unwrap());
    assert_eq!(s.prepare(&spec).unwrap_err().kind, StorageErrorKind::Escapes);
}

#[test]
fn a_spec_crosses_to_the_worker_as_bytes() {
    let s = Setup::new("serde");
    let spec = EnvironmentSpec::new().mirror(s.entry("proj/*.inc", "inc")).persistent(true);
    let bytes = postcard::to_stdvec(&spec).unwrap();
    let back: EnvironmentSpec = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, spec);
}
