//! The host agent.
//!
//! * [`daemon`]: the loop that registers the host with the control plane,
//!   long-polls its assignments over the agent protocol
//!   (`berth_core::agent`), pulls images through the layer cache, starts,
//!   adopts and stops tasks through a [`daemon::TaskExecutor`], and reports
//!   every state change. It is the same code whether the agent runs inside
//!   `berth up` or on another machine.
//!
//! Start with [`daemon::run`].

pub mod daemon;
