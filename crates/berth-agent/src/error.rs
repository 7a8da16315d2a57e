//! The runner's errors.

use std::path::PathBuf;

/// A failure of the runner itself (not of a task: a task's failures are
/// reported in its `TaskStateReport`s).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The task spec cannot be run at all.
    #[error("task {task_id}: invalid task spec: {reason}")]
    InvalidSpec {
        /// The task.
        task_id: String,
        /// What is wrong.
        reason: String,
    },
    /// `run_task` was called twice for the same task on one runner.
    #[error("task {0}: already supervised by this runner")]
    AlreadySupervised(String),
    /// A prerequisite of the host is missing.
    #[error("host prerequisite missing: {0}")]
    Prerequisite(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A command (ip, runc, the shim) failed.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr, or why it could not run.
        message: String,
    },
    /// A container's bundle cannot be made.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A state file could not be parsed.
    #[error("{path}: invalid state file: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl RunnerError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Why a container's OCI bundle cannot be made; reported as the
/// container's `CannotStartContainerError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Neither the definition nor the image says what to run.
    #[error("container {0}: no command: neither the container definition nor the image sets an entrypoint or a command")]
    NoCommand(String),
    /// A user name that the image's /etc/passwd does not list.
    #[error(
        "container {container}: unable to find user {user}: no matching entries in passwd file"
    )]
    UnknownUser {
        /// The container.
        container: String,
        /// The name.
        user: String,
    },
    /// A group name that the image's /etc/group does not list.
    #[error(
        "container {container}: unable to find group {group}: no matching entries in group file"
    )]
    UnknownGroup {
        /// The container.
        container: String,
        /// The name.
        group: String,
    },
    /// An unknown ulimit name.
    #[error("container {container}: unknown ulimit {name}")]
    UnknownUlimit {
        /// The container.
        container: String,
        /// The name.
        name: String,
    },
    /// An unknown capability.
    #[error("container {container}: unknown capability {name}")]
    UnknownCapability {
        /// The container.
        container: String,
        /// The name.
        name: String,
    },
    /// A layer path overlayfs cannot take.
    #[error("container {container}: {reason}")]
    Rootfs {
        /// The container.
        container: String,
        /// What is wrong.
        reason: String,
    },
}
