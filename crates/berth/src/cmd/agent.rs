//! `berth agent`: the host agent. It registers this machine with a control
//! plane over the agent protocol and runs the tasks placed on it. `berth up`
//! runs the same agent beside the server, talking to it over HTTP exactly
//! as an agent on another machine would.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use berth_agent::daemon::{self, AgentConfig, ControlConfig, TaskExecutor};
use berth_agent::executor::RunnerExecutor;
use berth_agent::{Runner, RunnerConfig};
use clap::Args;

use crate::datadir::DataDir;
use crate::Common;

/// Flags of the agent (also accepted by `berth up`).
#[derive(Args, Clone, Debug)]
pub struct AgentOpts {
    /// The host bridge the tasks' veths attach to.
    #[arg(long, env = "BERTH_BRIDGE", default_value = "berth0")]
    pub bridge: String,
    /// The cgroup (in every v1 controller) under which task cgroups live.
    #[arg(long, env = "BERTH_CGROUP_PARENT", default_value = "berth")]
    pub cgroup_parent: String,
    /// The OCI runtime.
    #[arg(long, env = "BERTH_RUNC", default_value = "/usr/sbin/runc")]
    pub runc: PathBuf,
    /// CPU units offered to tasks (default: 1024 per core).
    #[arg(long, env = "BERTH_AGENT_CPU")]
    pub agent_cpu: Option<u32>,
    /// Memory offered to tasks, MiB (default: 90% of the machine's).
    #[arg(long, env = "BERTH_AGENT_MEMORY")]
    pub agent_memory: Option<u32>,
    /// Layer cache size limit, MiB.
    #[arg(long, env = "BERTH_LAYER_CACHE_MB", default_value = "10240")]
    pub layer_cache_mb: u64,
}

/// `berth agent` only: where the control plane is.
#[derive(Args, Clone, Debug)]
pub struct AgentArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
    /// Agent flags.
    #[command(flatten)]
    pub opts: AgentOpts,
    /// The control plane's URL (default: the data dir's endpoint).
    #[arg(long, env = "BERTH_SERVER")]
    pub server: Option<String>,
}

/// Checks what running tasks needs, with the fix for each gap.
pub fn check_prerequisites(o: &AgentOpts) -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("the agent needs root to create network namespaces, cgroups and mounts; run it as root (or `berth up --no-agent` for the API alone)");
    }
    if !o.runc.is_file() {
        bail!(
            "the OCI runtime {} is missing; install it (apt-get install runc) or pass --runc PATH",
            o.runc.display()
        );
    }
    if !Path::new("/sys/fs/cgroup/memory").is_dir() {
        bail!("cgroup v1 memory controller not found at /sys/fs/cgroup/memory; this agent needs cgroup v1");
    }
    if std::process::Command::new("ip").arg("-V").output().is_err() {
        bail!("`ip` (iproute2) is missing; install it (apt-get install iproute2)");
    }
    Ok(())
}

fn machine_memory_mib() -> u32 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024 * 1024);
    u32::try_from(kib / 1024 * 9 / 10).unwrap_or(u32::MAX)
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Runs the agent until `shutdown` resolves.
pub async fn serve(
    dd: &DataDir,
    endpoint: String,
    o: &AgentOpts,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    check_prerequisites(o)?;
    let key = dd.admin_key()?;
    let state_dir = dd.agent_dir();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cfg = AgentConfig {
        control: ControlConfig {
            endpoint,
            access_key_id: key.access_key_id,
            secret_access_key: key.secret_access_key,
            region: dd.config.region.clone(),
        },
        state_dir: state_dir.clone(),
        hostname: hostname(),
        cpu: o
            .agent_cpu
            .unwrap_or(u32::try_from(cores * 1024).unwrap_or(u32::MAX)),
        memory: o.agent_memory.unwrap_or_else(machine_memory_mib),
        cache_limit_bytes: o.layer_cache_mb * 1024 * 1024,
        insecure_registries: Vec::new(),
    };
    let shim = std::env::current_exe().context("finding the berth binary (for the shim)")?;
    let (runc, bridge, cgroup_parent) = (o.runc.clone(), o.bridge.clone(), o.cgroup_parent.clone());
    let factory: daemon::ExecutorFactory = Box::new(move |reg| {
        let prefix = reg.subnet.rsplit('/').next().unwrap_or("24");
        let runner = Runner::new(RunnerConfig {
            state_dir: state_dir.join("runner"),
            runc,
            bridge,
            gateway_cidr: format!("{}/{prefix}", reg.gateway),
            cgroup_parent,
            shim_exe: shim,
        })
        .map_err(|e| format!("preparing the host for tasks: {e}"))?;
        Ok(Arc::new(RunnerExecutor::new(runner)) as Arc<dyn TaskExecutor>)
    });
    daemon::run(cfg, factory, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!(e))
}

/// `berth agent`.
pub fn run(a: &AgentArgs) -> anyhow::Result<()> {
    crate::cmd::server::init_logging();
    let dd = DataDir::open_existing(&a.common.data_dir)?;
    let endpoint = a.server.clone().unwrap_or_else(|| dd.endpoint());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(
        &dd,
        endpoint,
        &a.opts,
        crate::cmd::server::shutdown_signal(),
    ))
}
