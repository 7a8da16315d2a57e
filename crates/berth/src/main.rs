//! `berth`: the one binary. It only parses flags and wires the library
//! crates together; each subcommand lives in its own file under `cmd/`.

mod apiclient;
mod cmd;
mod datadir;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Berth: a self-hosted, serverless container platform with the ECS API.
#[derive(Parser)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Flags every subcommand that touches a data directory takes.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Where Berth keeps its state, keys and configuration.
    #[arg(
        long,
        env = "BERTH_DATA_DIR",
        default_value = "/var/lib/berth",
        global = true
    )]
    pub data_dir: PathBuf,
    /// The API's listen address (default 127.0.0.1:7480).
    #[arg(long, env = "BERTH_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// The region named in ARNs and credential scopes (set when the data
    /// directory is created).
    #[arg(long, env = "BERTH_REGION", global = true)]
    pub region: Option<String>,
    /// The /16 the server cuts each host's /24 task subnet from (server and up).
    #[arg(
        long,
        env = "BERTH_TASK_NETWORK",
        default_value = "10.213.0.0/16",
        global = true
    )]
    pub task_network: String,
    /// More IPv4 networks (CIDR blocks, comma-separated) whose addresses
    /// load balancer target groups accept as targets, besides the task
    /// network (server and up).
    #[arg(
        long,
        env = "BERTH_LB_TARGET_NETWORKS",
        value_delimiter = ',',
        global = true
    )]
    pub lb_target_networks: Vec<String>,
    /// The address load balancer listeners bind to (a listener on port P is
    /// at http://ADDRESS:P).
    #[arg(
        long,
        env = "BERTH_LB_BIND",
        default_value = "127.0.0.1",
        global = true
    )]
    pub lb_bind: std::net::IpAddr,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server and state store).
    Server(Common),
    /// Run everything on this machine in one process (server and agent).
    Up(UpArgs),
    /// Run the host agent: register this machine and run the tasks placed on it.
    Agent(cmd::agent::AgentArgs),
    /// Print `export` lines that point AWS clients at this Berth.
    Env(Common),
    /// Log container tools in to this Berth's registry.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Build and manage OCI images without Docker.
    Image(cmd::image::ImageArgs),
    /// Run IMAGE as a task, stream its output, exit with its exit code.
    Run(RunArgs),
    /// Deploy IMAGE as the service NAME and follow the rollout.
    Deploy(DeployArgs),
    /// Load balancers.
    #[command(subcommand)]
    Lb(LbCommand),
    /// List tasks.
    Ps(PsArgs),
    /// Stop a task.
    Stop(StopArgs),
    /// Show a task's output.
    Logs(LogsArgs),
    /// Print the version.
    Version,
}

/// `berth run`.
#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Task CPU units (or "0.25 vCPU").
    #[arg(long, default_value = "256")]
    cpu: String,
    /// Task memory MiB (or "0.5 GB").
    #[arg(long, default_value = "512")]
    memory: String,
    /// The cluster.
    #[arg(long, default_value = "default")]
    cluster: String,
    /// The image to run.
    image: String,
    /// The command (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
}

/// `berth deploy`.
#[derive(Args)]
struct DeployArgs {
    #[command(flatten)]
    common: Common,
    /// The service (also the task definition family and container name).
    name: String,
    /// The image to run.
    #[arg(long)]
    image: String,
    /// Task CPU units (or "0.25 vCPU").
    #[arg(long, default_value = "256")]
    cpu: String,
    /// Task memory MiB (or "0.5 GB").
    #[arg(long, default_value = "512")]
    memory: String,
    /// Tasks to run (default: 1 for a new service, unchanged otherwise).
    #[arg(long)]
    count: Option<i64>,
    /// A container port the image listens on; the service gets a load
    /// balancer (listener, target group) in front of it, unless --no-lb.
    #[arg(long)]
    port: Option<u16>,
    /// Do not put a load balancer in front of --port.
    #[arg(long)]
    no_lb: bool,
    /// The listener port (default: the first free one from 8000).
    #[arg(long)]
    lb_port: Option<u16>,
    /// The path the load balancer's health checks request.
    #[arg(long, default_value = "/")]
    health_check_path: String,
    /// Seconds a deregistered task keeps finishing in-flight requests.
    #[arg(long, default_value = "5")]
    deregistration_delay: u32,
    /// The cluster.
    #[arg(long, default_value = "default")]
    cluster: String,
    /// Seconds to wait for the rollout before giving up.
    #[arg(long, default_value = "600")]
    timeout: u64,
}

/// `berth lb ...`.
#[derive(Subcommand)]
enum LbCommand {
    /// List load balancers with the URL of each listener on this machine.
    Ls(Common),
}

/// `berth ps`.
#[derive(Args)]
struct PsArgs {
    #[command(flatten)]
    common: Common,
    /// The cluster.
    #[arg(long, default_value = "default")]
    cluster: String,
    /// Include stopped tasks.
    #[arg(long, short)]
    all: bool,
}

/// `berth stop`.
#[derive(Args)]
struct StopArgs {
    #[command(flatten)]
    common: Common,
    /// The cluster.
    #[arg(long, default_value = "default")]
    cluster: String,
    /// Why (shown as stoppedReason).
    #[arg(long)]
    reason: Option<String>,
    /// Task id or ARN.
    task: String,
}

/// `berth logs`.
#[derive(Args)]
struct LogsArgs {
    #[command(flatten)]
    common: Common,
    /// Keep streaming until the task stops.
    #[arg(long, short)]
    follow: bool,
    /// Only this container.
    #[arg(long)]
    container: Option<String>,
    /// Task id or ARN.
    task: String,
}

/// `berth up`.
#[derive(Args)]
struct UpArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    agent: cmd::agent::AgentOpts,
    /// Serve the API only; run no agent (no tasks will run).
    #[arg(long, env = "BERTH_NO_AGENT")]
    no_agent: bool,
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Write credentials for the registry into skopeo's, podman's and docker's auth files.
    Login(Common),
    /// Print a registry password (user `AWS`), like `aws ecr get-login-password`.
    Password(Common),
}

fn main() -> std::process::ExitCode {
    // The container shim re-executes this binary; it must not go through
    // flag parsing or start a runtime.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("shim") {
        berth_agent::shim_main(&args[2..]);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(c) => cmd::server::run(&c, cmd::server::Role::Server),
        Command::Up(a) => cmd::server::run_up(&a.common, (!a.no_agent).then_some(&a.agent)),
        Command::Agent(a) => cmd::agent::run(&a),
        Command::Env(c) => cmd::env::run(&c),
        Command::Registry(RegistryCommand::Login(c)) => cmd::registry::login(&c),
        Command::Registry(RegistryCommand::Password(c)) => cmd::registry::password(&c),
        Command::Image(a) => cmd::image::run(a),
        Command::Run(a) => match cmd::tasks::run(
            &a.common, &a.cpu, &a.memory, &a.cluster, &a.image, &a.command,
        ) {
            Ok(code) => std::process::exit(code),
            Err(e) => Err(e),
        },
        Command::Deploy(a) => {
            let front = a.port.filter(|_| !a.no_lb).map(|p| cmd::lb::Front {
                name: cmd::lb::lb_name(&a.name),
                container_port: p,
                listener_port: a.lb_port,
                health_check_path: a.health_check_path.clone(),
                deregistration_delay: a.deregistration_delay,
            });
            cmd::deploy::run(
                &a.common,
                &cmd::deploy::DeployOpts {
                    name: a.name,
                    image: a.image,
                    cpu: a.cpu,
                    memory: a.memory,
                    count: a.count,
                    port: a.port,
                    front,
                    cluster: a.cluster,
                    timeout: std::time::Duration::from_secs(a.timeout),
                },
            )
        }
        Command::Lb(LbCommand::Ls(c)) => cmd::lb::ls(&c),
        Command::Ps(a) => cmd::tasks::ps(&a.common, &a.cluster, a.all),
        Command::Stop(a) => cmd::tasks::stop(&a.common, &a.cluster, &a.task, a.reason.as_deref()),
        Command::Logs(a) => cmd::tasks::logs(&a.common, &a.task, a.follow, a.container.as_deref()),
        Command::Version => cmd::version::run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
