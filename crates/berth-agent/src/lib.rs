//! The host side of Berth's data plane: the agent daemon, and the runner
//! that runs tasks in sandboxes with runc.
//!
//! * [`daemon`]: registers the host with the control plane, long-polls its
//!   assignments over the agent protocol (`berth_core::agent`), pulls
//!   images through the layer cache, drives the runner through the
//!   [`daemon::TaskExecutor`] seam ([`executor`] is the runc-backed one),
//!   and reports every state change. Start there to follow a task from
//!   RunTask to a process.
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
pub mod daemon;
pub mod error;
pub mod executor;
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
