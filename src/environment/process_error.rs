//! The error of an external program started by a task.

use std::fmt;
use std::io;
use std::process::ExitStatus;
use std::sync::Arc;

/// What went wrong with an external program (the `kind` of a [`ProcessError`]).
///
/// ```
/// let err = cos::ProcessGroup::start(&mut std::process::Command::new("no-such-simulator-x")).unwrap_err();
/// assert_eq!(err.kind, cos::ProcessErrorKind::NotFound);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProcessErrorKind {
    /// The program does not exist on this host (or is not on its `PATH`).
    NotFound,
    /// The program exists but could not be started (permissions, a missing working directory,
    /// no processes left).
    CannotStart,
    /// The deadline passed; the program and its process group were killed.
    Timeout,
    /// The program ended with a failure status (a non-zero exit code or a signal).
    Failed,
    /// The program's group was killed before it ended (the task ended, was cancelled, or the
    /// worker is going away).
    Killed,
    /// Waiting for the program failed.
    Wait,
}

impl fmt::Display for ProcessErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFound => "not found",
            Self::CannotStart => "cannot be started",
            Self::Timeout => "ran past its deadline and was killed",
            Self::Failed => "failed",
            Self::Killed => "was killed",
            Self::Wait => "cannot be waited for",
        })
    }
}

/// An external program failed: what ([`ProcessErrorKind`]), which program, its exit status and
/// the end of its standard error when it ran, and the system's error when there was one.
///
/// ```
/// use std::process::Command;
/// let mut g = cos::ProcessGroup::start(Command::new("sh").args(["-c", "echo bad netlist >&2; exit 3"])).unwrap();
/// let err = g.wait(None).unwrap_err();
/// assert_eq!(err.kind, cos::ProcessErrorKind::Failed);
/// assert_eq!(err.status.and_then(|s| s.code()), Some(3));
/// assert_eq!(err.stderr_tail, "bad netlist\n");
/// ```
#[derive(Debug, Clone)]
pub struct ProcessError {
    /// What went wrong.
    pub kind: ProcessErrorKind,
    /// The program, as it was given to the command.
    pub program: String,
    /// Its exit status, when it ended.
    pub status: Option<ExitStatus>,
    /// The last bytes (at most 8 KiB) it wrote to its standard error, as text.
    pub stderr_tail: String,
    /// The system's error, when one caused it.
    pub source: Option<Arc<io::Error>>,
}

impl ProcessError {
    pub(crate) fn new(kind: ProcessErrorKind, program: &str) -> Self {
        ProcessError {
            kind,
            program: program.to_string(),
            status: None,
            stderr_tail: String::new(),
            source: None,
        }
    }

    pub(crate) fn io(kind: ProcessErrorKind, program: &str, e: io::Error) -> Self {
        ProcessError { source: Some(Arc::new(e)), ..Self::new(kind, program) }
    }

    /// The kind of the system error, when there is one.
    ///
    /// ```
    /// let err = cos::ProcessGroup::start(&mut std::process::Command::new("no-such-simulator-x")).unwrap_err();
    /// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
    /// ```
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        self.source.as_ref().map(|e| e.kind())
    }
}

/// Errors are equal when their kind, program, status, standard error and system error kind are.
impl PartialEq for ProcessError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.program == other.program
            && self.status == other.status
            && self.stderr_tail == other.stderr_tail
            && self.io_kind() == other.io_kind()
    }
}

impl Eq for ProcessError {}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "program {:?} {}", self.program, self.kind)?;
        if let Some(s) = self.status {
            write!(f, " ({s})")?;
        }
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        let tail = self.stderr_tail.trim_end();
        if !tail.is_empty() {
            let last: Vec<&str> = tail.lines().rev().take(3).collect();
            write!(f, "; stderr ends: {}", last.into_iter().rev().collect::<Vec<_>>().join(" | "))?;
        }
        Ok(())
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}
