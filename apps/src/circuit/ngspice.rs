//! Running the simulator: `ngspice -b NETLIST` in a given directory, its output in files there,
//! under a time limit, as a [`cos::ProcessGroup`]: a time limit, a cancel of its task or the
//! loss of its worker ends the simulator together with every process it started.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cos::{ProcessError, ProcessErrorKind, ProcessGroup};

/// The file (in the run's directory) that receives the simulator's standard output.
pub const STDOUT_FILE: &str = "ngspice.out";
/// The file (in the run's directory) that receives the simulator's standard error.
pub const STDERR_FILE: &str = "ngspice.err";

/// Why the simulator did not run to its end.
#[derive(Debug)]
pub enum RunError {
    /// The program is not there (not on this host's `PATH`).
    NotFound {
        /// The program.
        program: PathBuf,
    },
    /// Starting it failed for another reason (permissions, resources).
    Start {
        /// The program.
        program: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// It ran past the time limit and was killed with its process group.
    TimedOut {
        /// The limit.
        limit: Duration,
    },
    /// Its process group was ended before it finished: the task was cancelled, timed out on
    /// the machine, or its worker is going away.
    Killed,
    /// A signal ended it (a crash).
    Signal {
        /// The signal's number.
        signal: i32,
    },
    /// Its output files could not be created or read.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::NotFound { program } => write!(f, "{} not found on this host", program.display()),
            RunError::Start { program, source } => write!(f, "cannot start {}: {source}", program.display()),
            RunError::TimedOut { limit } => write!(f, "simulator killed after the time limit of {limit:?}"),
            RunError::Killed => f.write_str("simulator killed with its task"),
            RunError::Signal { signal } => write!(f, "simulator ended by signal {signal}"),
            RunError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Start { source, .. } | RunError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What a finished run printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Standard output (invalid UTF-8 replaced).
    pub stdout: String,
    /// Standard error (invalid UTF-8 replaced).
    pub stderr: String,
    /// How it exited (ngspice exits with 0 even when an analysis failed: the output tells).
    pub status: ExitStatus,
    /// How long it ran.
    pub elapsed: Duration,
}

/// A simulator command: the program and the time limit of one run.
///
/// ```no_run
/// use std::time::Duration;
/// use cos_apps::circuit::Simulator;
/// let sim = Simulator::ngspice().time_limit(Duration::from_secs(5));
/// let out = sim.run(std::path::Path::new("/tmp/run1"), "opamp.cir").unwrap();
/// println!("{}", out.stdout);
/// ```
#[derive(Debug, Clone)]
pub struct Simulator {
    program: PathBuf,
    args: Vec<String>,
    limit: Duration,
}

impl Simulator {
    /// `ngspice -b`, found on `PATH`, with a time limit of 10 s.
    ///
    /// ```
    /// let sim = cos_apps::circuit::Simulator::ngspice();
    /// assert_eq!(sim.program(), std::path::Path::new("ngspice"));
    /// ```
    pub fn ngspice() -> Simulator {
        Simulator { program: "ngspice".into(), args: vec!["-b".into()], limit: Duration::from_secs(10) }
    }

    /// Another program (a path or a name looked up on `PATH`) taking the netlist as its last
    /// argument after `args`: a wrapper script, a simulator installed elsewhere.
    ///
    /// ```
    /// let sim = cos_apps::circuit::Simulator::command("/opt/ngspice/bin/ngspice", ["-b"]);
    /// assert_eq!(sim.program(), std::path::Path::new("/opt/ngspice/bin/ngspice"));
    /// ```
    pub fn command<S: Into<String>>(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = S>,
    ) -> Simulator {
        Simulator {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            limit: Duration::from_secs(10),
        }
    }

    /// The same simulator with the time limit `limit` for each run.
    ///
    /// ```
    /// use std::time::Duration;
    /// let sim = cos_apps::circuit::Simulator::ngspice().time_limit(Duration::from_millis(500));
    /// assert_eq!(sim.limit(), Duration::from_millis(500));
    /// ```
    pub fn time_limit(mut self, limit: Duration) -> Simulator {
        self.limit = limit;
        self
    }

    /// The program.
    ///
    /// ```
    /// assert_eq!(cos_apps::circuit::Simulator::ngspice().program().to_str(), Some("ngspice"));
    /// ```
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The time limit of a run.
    ///
    /// ```
    /// let limit = cos_apps::circuit::Simulator::ngspice().limit();
    /// assert_eq!(limit, std::time::Duration::from_secs(10));
    /// ```
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Runs the simulator on `netlist` (a file in `dir`) with `dir` as its working directory,
    /// its output going to [`STDOUT_FILE`] and [`STDERR_FILE`] there. It runs in a new process
    /// group ([`cos::ProcessGroup`]); when it ends, at the time limit, or when its task is
    /// cancelled, the whole group is killed, so nothing it started outlives the run. The last
    /// 8 KiB of its standard error are kept.
    ///
    /// # Errors
    /// [`RunError`]: the program is missing or cannot start, the time limit passed, a signal
    /// ended it, or its output files failed.
    ///
    /// ```no_run
    /// let out = cos_apps::circuit::Simulator::ngspice().run(std::path::Path::new("."), "x.cir");
    /// ```
    pub fn run(&self, dir: &Path, netlist: &str) -> Result<Output, RunError> {
        let out_path = dir.join(STDOUT_FILE);
        let err_path = dir.join(STDERR_FILE);
        let stdout =
            File::create(&out_path).map_err(|source| RunError::Io { path: out_path.clone(), source })?;
        let start = Instant::now();
        let mut command = Command::new(&self.program);
        command.args(&self.args).arg(netlist).current_dir(dir).stdin(Stdio::null()).stdout(stdout);
        let mut group = ProcessGroup::start(&mut command).map_err(|e| self.start_error(e))?;
        let waited = group.wait(Some(start + self.limit));
        let elapsed = start.elapsed();
        let status = match waited {
            Ok(()) => ExitStatus::from_raw(0),
            Err(e) => match e.kind {
                ProcessErrorKind::Timeout => return Err(RunError::TimedOut { limit: self.limit }),
                ProcessErrorKind::Killed => return Err(RunError::Killed),
                ProcessErrorKind::Failed => match e.status {
                    Some(status) if status.signal().is_some() => {
                        return Err(RunError::Signal { signal: status.signal().unwrap_or(0) })
                    }
                    Some(status) => status,
                    None => return Err(RunError::Killed),
                },
                _ => return Err(self.start_error(e)),
            },
        };
        let stderr = group.stderr_tail();
        // The captured end of standard error is also kept next to the output, for a look later.
        std::fs::write(&err_path, &stderr)
            .map_err(|source| RunError::Io { path: err_path.clone(), source })?;
        let stdout = std::fs::read(&out_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|source| RunError::Io { path: out_path.clone(), source })?;
        Ok(Output { stdout, stderr, status, elapsed })
    }

    fn start_error(&self, e: ProcessError) -> RunError {
        match e.kind {
            ProcessErrorKind::NotFound => RunError::NotFound { program: self.program.clone() },
            ProcessErrorKind::Killed => RunError::Killed,
            _ => RunError::Start {
                program: self.program.clone(),
                source: match e.source {
                    Some(s) => io::Error::new(s.kind(), s.to_string()),
                    None => io::Error::other(e.to_string()),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cos-circuit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn alive(pid: u32) -> bool {
        // A zombie still has a /proc entry; its state field is Z.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    #[test]
    fn a_missing_program_is_not_found() {
        let dir = scratch("missing");
        let r = Simulator::command("/no/such/ngspice", ["-b"]).run(&dir, "x.cir");
        assert!(matches!(r, Err(RunError::NotFound { .. })), "{r:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_hung_simulator_and_its_child_are_killed_at_the_time_limit() {
        let dir = scratch("hang");
        let wrapper = concat!(env!("CARGO_MANIFEST_DIR"), "/circuits/hang-sim.sh");
        let limit = Duration::from_secs(1);
        let r = Simulator::command(wrapper, Vec::<String>::new()).time_limit(limit).run(&dir, "x.cir");
        assert!(matches!(r, Err(RunError::TimedOut { .. })), "{r:?}");
        // The wrapper wrote its own pid and its child's before hanging.
        let pids = std::fs::read_to_string(dir.join("hang-sim.pids")).unwrap();
        let pids: Vec<u32> = pids.split_whitespace().map(|p| p.parse().unwrap()).collect();
        assert_eq!(pids.len(), 2, "{pids:?}");
        // The wrapper is reaped by the run; its child, killed with the group, ends (and is reaped
        // by init) a moment later.
        for pid in pids {
            let end = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < end {
                thread::sleep(Duration::from_millis(10));
            }
            assert!(!alive(pid), "process {pid} outlived the time limit");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn output_goes_to_files_in_the_directory() {
        let dir = scratch("echo");
        let out = Simulator::command("sh", ["-c", "echo out; echo err >&2; exit 3", "sh"])
            .run(&dir, "x.cir")
            .unwrap();
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str(), out.status.code()),
            ("out\n", "err\n", Some(3))
        );
        assert_eq!(std::fs::read_to_string(dir.join(STDOUT_FILE)).unwrap(), "out\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_crash_is_a_signal() {
        let dir = scratch("crash");
        let r = Simulator::command("sh", ["-c", "kill -SEGV $$", "sh"]).run(&dir, "x.cir");
        assert!(matches!(r, Err(RunError::Signal { signal: 11 })), "{r:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
