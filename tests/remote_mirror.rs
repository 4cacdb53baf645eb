//! The mirror map reaches every machine's workers: before the function runs, a mirrored file
//! and a mirrored directory holding a symbolic link are in the task's storage (the link as a
//! link), and the task starts in the startup directory inside it. The same body runs on every
//! machine; a process machine's workers are this program started again (`harness = false`).

mod common;

use std::path::{Path, PathBuf};

use common::On;
use cos::{EnvironmentSpec, MirrorEntry, Registry, RemoteFn, StartupDir};
use serde::{Deserialize, Serialize};

/// What a task found in its storage when its function started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Found {
    top: Option<String>,
    netlist: Option<String>,
    link: Option<PathBuf>,
    link_is_symlink: bool,
    working_dir_is_amp: bool,
}

static LOOK: RemoteFn<(), Found> = RemoteFn::new("look", |()| {
    let dir = cos::task_storage().expect("the task has storage");
    let amp = dir.join("lib/amp");
    let link = amp.join("models.lib");
    Found {
        top: std::fs::read_to_string(dir.join("top.cir")).ok(),
        netlist: std::fs::read_to_string(amp.join("amp.cir")).ok(),
        link: std::fs::read_link(&link).ok(),
        link_is_symlink: std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()),
        working_dir_is_amp: cos::task_working_dir().as_deref() == Some(amp.as_path()),
    }
});

fn registry() -> Registry {
    Registry::new().with(&LOOK)
}

/// The share's contents: `top.cir`, and `amp/` with `amp.cir` and a link `models.lib`.
fn fill_share(share: &Path) {
    std::fs::create_dir_all(share.join("amp")).unwrap();
    std::fs::write(share.join("top.cir"), "* top\n").unwrap();
    std::fs::write(share.join("amp/amp.cir"), "* amp\n").unwrap();
    std::fs::write(share.join("amp/level1.lib"), "* models\n").unwrap();
    let _ = std::fs::remove_file(share.join("amp/models.lib"));
    std::os::unix::fs::symlink("level1.lib", share.join("amp/models.lib")).unwrap();
}

fn mirrored_before_the_function(on: On) {
    let (_, share) = common::private_storage("remote-mirror");
    fill_share(&share);
    let spec = EnvironmentSpec::new()
        .mirror(MirrorEntry::new(share.join("*.cir"), "").unwrap())
        .mirror(MirrorEntry::new(share.join("amp"), "lib").unwrap())
        .startup_dir(StartupDir::in_storage("lib/amp").unwrap());
    on.set_with(registry(), 1, 2, spec);
    let found = cos::dispatch((0..3).map(|_| cos::job(&LOOK, ()))).unwrap();
    for f in found {
        assert_eq!(
            f.unwrap(),
            Found {
                top: Some("* top\n".into()),
                netlist: Some("* amp\n".into()),
                link: Some("level1.lib".into()),
                link_is_symlink: true,
                working_dir_is_amp: true,
            }
        );
    }
    cos::finalize();
}

fn main() {
    let (local, share) = common::private_storage("remote-mirror");
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[
        ("sim", || mirrored_before_the_function(On::Sim)),
        ("thread", || mirrored_before_the_function(On::Thread)),
        ("process", || mirrored_before_the_function(On::Process)),
    ];
    common::run_checks(checks);
    let _ = std::fs::remove_dir_all(local.parent().unwrap_or(&local));
    let _ = share;
}
