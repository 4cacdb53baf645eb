//! The storage variables and their defaults, as PyOPUS: `PARALLEL_LOCAL_STORAGE` unset is the
//! system's temporary directory, `PARALLEL_MIRRORED_STORAGE` unset is the user's home; both
//! expand `~`; `prepare`, `to_abstract_path` and `clear_local_storage` use them. (One test: it
//! changes the process's environment.)

use std::path::{Path, PathBuf};

use cos::{EnvironmentSpec, StorageErrorKind, WorkerIdentity};

#[test]
fn defaults_and_tilde_expansion() {
    let tmp = std::env::temp_dir().join(format!("cos-storage-defaults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let home = tmp.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::env::set_var("HOME", &home);

    std::env::remove_var("PARALLEL_LOCAL_STORAGE");
    std::env::remove_var("PARALLEL_MIRRORED_STORAGE");
    assert_eq!(cos::local_storage(), std::env::temp_dir());
    assert_eq!(cos::mirrored_storage(), std::slice::from_ref(&home));
    let a = cos::to_abstract_path(home.join("proj/amp.cir")).unwrap();
    assert_eq!((a.index, a.path.as_path()), (Some(0), Path::new("proj/amp.cir")));
    let err = cos::to_abstract_path(tmp.join("elsewhere")).unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::OutsideMirroredStorage);

    std::env::set_var("PARALLEL_LOCAL_STORAGE", "~/scratch");
    std::env::set_var("PARALLEL_MIRRORED_STORAGE", "~/share::/data");
    assert_eq!(cos::local_storage(), home.join("scratch"));
    assert_eq!(cos::mirrored_storage(), [home.join("share"), PathBuf::new(), PathBuf::from("/data")]);
    assert_eq!(cos::local_storage_root().parent().unwrap(), home.join("scratch"));

    // prepare and clear_local_storage work there.
    let env =
        cos::prepare(&EnvironmentSpec::new().local_storage(true), WorkerIdentity { machine: 0, slot: 0 })
            .unwrap();
    assert!(env.storage().unwrap().starts_with(home.join("scratch")));
    let dir = env.storage().unwrap().to_path_buf();
    std::mem::forget(env);
    cos::clear_local_storage().unwrap();
    assert!(!dir.exists());
    assert!(cos::local_storage_root().is_dir());

    std::env::remove_var("PARALLEL_LOCAL_STORAGE");
    std::env::remove_var("PARALLEL_MIRRORED_STORAGE");
    std::fs::remove_dir_all(&tmp).unwrap();
}
