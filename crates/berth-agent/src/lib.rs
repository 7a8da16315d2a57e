//! The host side of Berth's data plane: runs tasks in sandboxes with runc.
//!
//! Start reading at [`Runner`] ([`runner`]): `Runner::new` prepares the
//! host (the bridge), [`Runner::run_task`] creates a task's sandbox,
//! starts its containers through their shims and supervises them until
//! the task stops; [`Runner::stop_task`] asks it to stop;
//! [`Runner::existing_tasks`] and [`Runner::cleanup_except`] are what a
//! restarted agent calls first.
//!
//! * [`spec`]: what the runner is told (the [`TaskSpec`]).
//! * [`machine`]: the task state machine, pure: dependsOn, essential,
//!   stop order and timeouts, the reports.
//! * [`health`]: health-check counting, pure.
//! * [`oci`]: the OCI `config.json` of a container (args/env/cwd merge,
//!   capabilities, seccomp, rlimits); [`user`] resolves user names.
//! * [`net`], [`cgroup`], [`rootfs`]: the sandbox (network namespace and
//!   veth, cgroup v1 limits, overlayfs and /etc files), through the
//!   [`sys::Sys`] seam so they are unit-tested without root.
//! * [`shim`]: the per-container process that runs `runc run`, keeps
//!   the container's output ([`logs`]) and records its exit; the `berth`
//!   binary exposes it as `berth shim ...` ([`shim::shim_main`]).

pub mod cgroup;
pub mod error;
pub mod health;
pub mod logs;
pub mod machine;
pub mod net;
pub mod oci;
pub mod rootfs;
pub mod runner;
pub mod shim;
pub mod spec;
pub mod sys;
pub mod user;

pub use berth_core::task::StopCode;
pub use error::{RunnerError, SpecError};
pub use runner::{CleanupReport, Runner};
pub use shim::shim_main;
pub use spec::{apply_override, default_hostname, ContainerSpec, RunnerConfig, TaskSpec};
