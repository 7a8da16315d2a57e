//! The agent daemon: register, long-poll assignments, pull, run, report.
//!
//! The loop is level-triggered: every answer to the assignments long poll is
//! the host's full desired state, and [`reconcile`] compares it with the
//! tasks this agent supervises. After a lost connection it polls again;
//! after its own restart it adopts the tasks whose sandboxes still exist
//! (their containers kept running under their shims) and removes whatever a
//! crash left behind that no assignment claims.

pub mod control;
pub mod logship;
pub mod pull;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_core::agent::{
    ContainerOverride, ContainerStateReport, Heartbeat, HostRegistered, HostRegistration,
    TaskAssignment, TaskStateReport,
};
use berth_core::task::{HealthStatus, StopCode, TaskStatus};
use berth_core::taskdef::ContainerDefinition;
use berth_core::Timestamp;
use berth_oci::cache::LayerCache;
use berth_oci::manifest::RunConfig;
use tokio::sync::mpsc;

pub use control::{ControlClient, ControlConfig, ControlError};

/// One container, ready for the executor.
#[derive(Debug, Clone)]
pub struct ContainerLaunch {
    /// Its name.
    pub name: String,
    /// The image reference.
    pub image: String,
    /// The manifest digest pulled.
    pub image_digest: Option<String>,
    /// Unpacked layer directories, base first.
    pub layers: Vec<PathBuf>,
    /// The image's ENTRYPOINT, CMD, ENV, ...
    pub image_config: RunConfig,
    /// The container definition after RunTask overrides.
    pub definition: ContainerDefinition,
}

/// One task, ready for the executor.
#[derive(Debug, Clone)]
pub struct TaskLaunch {
    /// The task id (names the sandbox).
    pub task_id: String,
    /// CPU units.
    pub cpu: u32,
    /// Memory MiB.
    pub memory: u32,
    /// The task's IP.
    pub ip: Ipv4Addr,
    /// Subnet prefix length.
    pub prefix_len: u8,
    /// Gateway (the host bridge).
    pub gateway: Ipv4Addr,
    /// Hostname inside the task.
    pub hostname: String,
    /// Containers.
    pub containers: Vec<ContainerLaunch>,
}

/// Runs tasks in sandboxes on this host (the runner, behind a seam so the
/// daemon does not depend on how sandboxes are made).
#[async_trait]
pub trait TaskExecutor: Send + Sync + 'static {
    /// Starts (or adopts) a task and supervises it until it is STOPPED and
    /// torn down, sending a state snapshot at every change.
    async fn run_task(
        &self,
        launch: TaskLaunch,
        events: mpsc::Sender<TaskStateReport>,
    ) -> Result<(), String>;
    /// Asks a task to stop (SIGTERM, stopTimeout, SIGKILL, teardown).
    fn stop_task(&self, task_id: &str, code: StopCode, reason: &str);
    /// Tasks whose sandboxes exist from before this process started.
    fn existing_tasks(&self) -> Vec<String>;
    /// Removes sandboxes of tasks not in `keep`.
    fn cleanup_except(&self, keep: &[String]);
    /// `(container, log file)` pairs of a task.
    fn log_files(&self, task_id: &str) -> Vec<(String, PathBuf)>;
    /// Deletes a task's log files once they were shipped.
    fn forget_logs(&self, task_id: &str);
    /// The final report of a task this host already tore down, if kept.
    fn finished_report(&self, task_id: &str) -> Option<TaskStateReport>;
}

/// Makes the executor once the control plane has assigned the host its
/// subnet and gateway.
pub type ExecutorFactory =
    Box<dyn FnOnce(&HostRegistered) -> Result<Arc<dyn TaskExecutor>, String> + Send>;

/// The daemon's configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The control plane and the key to sign with.
    pub control: ControlConfig,
    /// Where the agent keeps its host id, layer cache and task state.
    pub state_dir: PathBuf,
    /// This machine's name.
    pub hostname: String,
    /// CPU units offered.
    pub cpu: u32,
    /// Memory MiB offered.
    pub memory: u32,
    /// Layer cache size limit.
    pub cache_limit_bytes: u64,
    /// Registries reached over plain HTTP although not on loopback.
    pub insecure_registries: Vec<String>,
}

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp(ms)
}

struct Shared {
    control: ControlClient,
    /// This host's id; replaced when the agent registers again.
    host_id: std::sync::RwLock<String>,
    /// Tasks this agent saw to the end: never started again, whatever an
    /// out-of-date assignment says.
    done: Mutex<HashSet<String>>,
    executor: Arc<dyn TaskExecutor>,
    puller: pull::Puller,
    /// Tasks supervised by a worker, and whether a stop was sent.
    tracked: Mutex<HashMap<String, bool>>,
    /// Sandboxes found at start (adoptable); an id leaves once adopted.
    existing: Mutex<HashSet<String>>,
    /// Where log positions are kept across agent restarts.
    logship_dir: PathBuf,
}

impl Shared {
    fn host(&self) -> String {
        self.host_id.read().map(|h| h.clone()).unwrap_or_default()
    }

    fn is_existing(&self, id: &str) -> bool {
        self.existing.lock().is_ok_and(|e| e.contains(id))
    }

    fn is_done(&self, id: &str) -> bool {
        self.done.lock().is_ok_and(|d| d.contains(id))
    }
}

async fn register(control: &ControlClient, cfg: &AgentConfig) -> HostRegistered {
    let id_file = cfg.state_dir.join("host-id");
    let mut backoff = Duration::from_millis(250);
    loop {
        let host_id = std::fs::read_to_string(&id_file)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let reg = HostRegistration {
            host_id,
            hostname: cfg.hostname.clone(),
            cpu: cfg.cpu,
            memory: cfg.memory,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        match control.register(&reg).await {
            Ok(r) => {
                if let Err(e) = std::fs::write(&id_file, &r.host_id) {
                    tracing::warn!(error = %e, path = %id_file.display(), "cannot persist the host id");
                }
                tracing::info!(host = %r.host_id, subnet = %r.subnet, "registered with the control plane");
                return r;
            }
            Err(e) => {
                tracing::warn!(error = %e, "registering with the control plane failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    cfg: AgentConfig,
    factory: ExecutorFactory,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), String> {
    std::fs::create_dir_all(&cfg.state_dir)
        .map_err(|e| format!("creating {}: {e}", cfg.state_dir.display()))?;
    let control = ControlClient::new(cfg.control.clone()).map_err(|e| e.to_string())?;
    let mut registered = register(&control, &cfg).await;
    let executor = factory(&registered)?;
    let existing: HashSet<String> = executor.existing_tasks().into_iter().collect();
    if !existing.is_empty() {
        tracing::info!(
            tasks = existing.len(),
            "found sandboxes from before this agent started; adopting them"
        );
    }
    let cache = LayerCache::open(&cfg.state_dir.join("layers"), cfg.cache_limit_bytes)
        .map_err(|e| format!("opening the layer cache: {e}"))?;
    let puller = pull::Puller::new(
        cache,
        control.host(),
        &cfg.control.access_key_id,
        &cfg.control.secret_access_key,
        cfg.insecure_registries.clone(),
    )?;
    let shared = Arc::new(Shared {
        control: control.clone(),
        host_id: std::sync::RwLock::new(registered.host_id.clone()),
        done: Mutex::new(HashSet::new()),
        executor,
        puller,
        tracked: Mutex::new(HashMap::new()),
        existing: Mutex::new(existing),
        logship_dir: cfg.state_dir.join("logship"),
    });

    // Heartbeats.
    let hb_shared = shared.clone();
    let hb_every = Duration::from_secs(registered.heartbeat_seconds.max(1));
    let heartbeat = tokio::spawn(async move {
        let mut tick = tokio::time::interval(hb_every);
        loop {
            tick.tick().await;
            let running: Vec<String> = hb_shared
                .tracked
                .lock()
                .map(|t| t.keys().cloned().collect())
                .unwrap_or_default();
            if let Err(e) = hb_shared
                .control
                .heartbeat(
                    &hb_shared.host(),
                    &Heartbeat {
                        running_tasks: running,
                    },
                )
                .await
            {
                tracing::debug!(error = %e, "heartbeat failed");
            }
        }
    });

    let poll = async {
        let mut after = 0u64;
        let mut cleaned = false;
        let mut backoff = Duration::from_millis(250);
        loop {
            match shared
                .control
                .assignments(&registered.host_id, after, 25)
                .await
            {
                Ok(a) => {
                    backoff = Duration::from_millis(250);
                    after = a.revision;
                    reconcile(&shared, a.tasks.clone());
                    if !cleaned {
                        let mut keep: Vec<String> =
                            a.tasks.iter().map(|t| t.task_id.clone()).collect();
                        keep.extend(
                            shared
                                .tracked
                                .lock()
                                .map(|t| t.keys().cloned().collect::<Vec<_>>())
                                .unwrap_or_default(),
                        );
                        shared.executor.cleanup_except(&keep);
                        cleaned = true;
                    }
                }
                Err(e) if e.host_unknown() => {
                    tracing::warn!(
                        "the control plane does not know this host any more; registering again"
                    );
                    let _ = std::fs::remove_file(cfg.state_dir.join("host-id"));
                    registered = register(&shared.control, &cfg).await;
                    if let Ok(mut h) = shared.host_id.write() {
                        h.clone_from(&registered.host_id);
                    }
                    after = 0;
                    cleaned = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "polling assignments failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    };
    tokio::select! {
        () = poll => {}
        () = shutdown => tracing::info!("agent stopping; tasks keep running under their shims"),
    }
    heartbeat.abort();
    Ok(())
}

/// Compares the desired state with the supervised tasks and acts.
fn reconcile(shared: &Arc<Shared>, tasks: Vec<TaskAssignment>) {
    for t in tasks {
        if shared.is_done(&t.task_id) {
            continue;
        }
        let mut tracked = match shared.tracked.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        match (t.desired_status, tracked.get(&t.task_id).copied()) {
            (TaskStatus::Running, None) => {
                tracked.insert(t.task_id.clone(), false);
                drop(tracked);
                let adopt = shared.is_existing(&t.task_id);
                tokio::spawn(worker(shared.clone(), t, adopt));
            }
            // desired STOPPED without a stop reason mirrors a stop the task
            // made itself: its worker is already finishing it.
            (TaskStatus::Stopped, Some(false)) if t.stop_reason.is_some() => {
                tracked.insert(t.task_id.clone(), true);
                drop(tracked);
                let reason = t
                    .stop_reason
                    .clone()
                    .unwrap_or_else(|| "Task stopped by user".into());
                shared
                    .executor
                    .stop_task(&t.task_id, StopCode::UserInitiated, &reason);
            }
            (TaskStatus::Stopped, None) if shared.is_existing(&t.task_id) => {
                // A sandbox from before a restart that should stop: adopt it;
                // forward the stop only if the control plane asked for one
                // (otherwise the task is already stopping by itself).
                tracked.insert(t.task_id.clone(), t.stop_reason.is_some());
                drop(tracked);
                // The runner remembers a stop asked for before `run_task`
                // adopts the task, so the order needs no pause.
                if let Some(reason) = &t.stop_reason {
                    shared
                        .executor
                        .stop_task(&t.task_id, StopCode::UserInitiated, reason);
                }
                tokio::spawn(worker(shared.clone(), t, true));
            }
            (TaskStatus::Stopped, None)
                if shared.executor.finished_report(&t.task_id).is_some() =>
            {
                // Torn down before a crash, the final report not yet taken.
                drop(tracked);
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Some(r) = shared.executor.finished_report(&t.task_id) {
                        let mut ship = logship::LogShipper::load(&shared.logship_dir, &t.task_id);
                        ship.ship(
                            &shared.control,
                            &t.task_id,
                            &shared.executor.log_files(&t.task_id),
                        )
                        .await;
                        send_report(&shared.control, &shared.host(), &t.task_id, &r).await;
                        shared.executor.forget_logs(&t.task_id);
                        ship.forget();
                    }
                });
            }
            (TaskStatus::Stopped, None) => {
                // Never started here: report it stopped.
                drop(tracked);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let report = TaskStateReport {
                        last_status: TaskStatus::Stopped,
                        containers: t
                            .task_definition
                            .input
                            .container_definitions
                            .iter()
                            .map(|c| {
                                container_report(c.name.as_deref().unwrap_or(""), "STOPPED", None)
                            })
                            .collect(),
                        pull_started_at: None,
                        pull_stopped_at: None,
                        started_at: None,
                        execution_stopped_at: None,
                        stop_code: t.stop_reason.as_ref().map(|_| StopCode::UserInitiated),
                        stopped_reason: t.stop_reason.clone(),
                        health_status: HealthStatus::Unknown,
                    };
                    send_report(&shared.control, &shared.host(), &t.task_id, &report).await;
                });
            }
            _ => {}
        }
    }
}

fn container_report(name: &str, status: &str, reason: Option<String>) -> ContainerStateReport {
    ContainerStateReport {
        name: name.to_string(),
        last_status: status.to_string(),
        exit_code: None,
        reason,
        image_digest: None,
        runtime_id: None,
        health_status: HealthStatus::Unknown,
    }
}

/// The STOPPED report of a task that never got going.
fn failed_to_start(defs: &[ContainerDefinition], reason: String) -> TaskStateReport {
    TaskStateReport {
        last_status: TaskStatus::Stopped,
        containers: defs
            .iter()
            .map(|c| {
                container_report(
                    c.name.as_deref().unwrap_or(""),
                    "STOPPED",
                    Some(reason.clone()),
                )
            })
            .collect(),
        pull_started_at: None,
        pull_stopped_at: None,
        started_at: None,
        execution_stopped_at: None,
        stop_code: Some(StopCode::TaskFailedToStart),
        stopped_reason: Some(reason),
        health_status: HealthStatus::Unknown,
    }
}

/// Sends a report until the control plane takes it (or refuses it for good).
async fn send_report(
    control: &ControlClient,
    host_id: &str,
    task_id: &str,
    report: &TaskStateReport,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match control.report(host_id, task_id, report).await {
            Ok(()) => return,
            Err(e) if e.is_permanent() => {
                tracing::warn!(task = task_id, error = %e, "the control plane refused a state report");
                return;
            }
            Err(e) => {
                tracing::debug!(task = task_id, error = %e, "state report failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Applies RunTask's container overrides to the definitions.
pub fn apply_overrides(
    defs: &[ContainerDefinition],
    overrides: &[ContainerOverride],
) -> Vec<ContainerDefinition> {
    defs.iter()
        .map(|d| {
            let mut d = d.clone();
            if let Some(o) = overrides.iter().find(|o| Some(&o.name) == d.name.as_ref()) {
                if let Some(c) = &o.command {
                    d.command = Some(c.clone());
                }
                for e in &o.environment {
                    match d.environment.iter_mut().find(|x| x.name == e.name) {
                        Some(slot) => slot.value = e.value.clone(),
                        None => d.environment.push(e.clone()),
                    }
                }
                if let Some(c) = o.cpu {
                    d.cpu = c;
                }
                if o.memory.is_some() {
                    d.memory = o.memory;
                }
                if o.memory_reservation.is_some() {
                    d.memory_reservation = o.memory_reservation;
                }
            }
            d
        })
        .collect()
}

/// Supervises one task from pull to STOPPED.
async fn worker(shared: Arc<Shared>, t: TaskAssignment, adopt: bool) {
    let id = t.task_id.clone();
    if adopt {
        if let Ok(mut e) = shared.existing.lock() {
            e.remove(&id);
        }
    }
    let (tx, mut rx) = mpsc::channel::<TaskStateReport>(64);
    let defs = apply_overrides(
        &t.task_definition.input.container_definitions,
        &t.container_overrides,
    );

    // The reporter: forwards snapshots in order, filling in what only the
    // daemon knows (pull times) and first-seen times.
    let pull_times: Arc<Mutex<(Option<Timestamp>, Option<Timestamp>)>> = Arc::default();
    // Before the STOPPED report goes out, the task's last log lines are
    // shipped, so a reader following the logs sees them all.
    let (flush_tx, mut flush_rx) = mpsc::channel::<tokio::sync::oneshot::Sender<()>>(4);
    let reporter = {
        let control = shared.control.clone();
        let shared_r = shared.clone();
        let id = id.clone();
        let pull_times = pull_times.clone();
        let flush_tx = flush_tx.clone();
        tokio::spawn(async move {
            let mut started_at = None;
            let mut exec_stopped_at = None;
            while let Some(mut r) = rx.recv().await {
                let (ps, pe) = pull_times.lock().map(|p| *p).unwrap_or_default();
                r.pull_started_at = r.pull_started_at.or(ps);
                r.pull_stopped_at = r.pull_stopped_at.or(pe);
                if r.last_status >= TaskStatus::Running && r.last_status < TaskStatus::Stopped
                    || r.started_at.is_some()
                {
                    started_at = started_at.or(r.started_at).or(Some(now()));
                }
                if r.last_status >= TaskStatus::Running {
                    r.started_at = r.started_at.or(started_at);
                }
                if r.last_status >= TaskStatus::Deactivating {
                    exec_stopped_at = exec_stopped_at.or(r.execution_stopped_at).or(Some(now()));
                    r.execution_stopped_at = r.execution_stopped_at.or(exec_stopped_at);
                }
                if r.last_status == TaskStatus::Stopped {
                    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                    if flush_tx.send(done_tx).await.is_ok() {
                        let _ = tokio::time::timeout(Duration::from_secs(5), done_rx).await;
                    }
                }
                send_report(&control, &shared_r.host(), &id, &r).await;
            }
        })
    };

    let mut pulled = Vec::new();
    let mut failure: Option<String> = None;
    if let Ok(mut p) = pull_times.lock() {
        p.0 = Some(now());
    }
    if !adopt {
        let _ = tx
            .send(TaskStateReport {
                last_status: TaskStatus::Pending,
                containers: defs
                    .iter()
                    .map(|c| container_report(c.name.as_deref().unwrap_or(""), "PENDING", None))
                    .collect(),
                pull_started_at: None,
                pull_stopped_at: None,
                started_at: None,
                execution_stopped_at: None,
                stop_code: None,
                stopped_reason: None,
                health_status: HealthStatus::Unknown,
            })
            .await;
    }
    for d in &defs {
        let image = d.image.clone().unwrap_or_default();
        match shared.puller.pull(&image).await {
            Ok(p) => pulled.push(p),
            Err(e) if adopt => {
                // The sandbox exists and its containers run: adopt it with
                // what is known. Only containers not started yet need the
                // layers, and they fail to start with this reason.
                tracing::warn!(task = %id, error = %e, "pull failed while adopting a running task; adopting it anyway");
                pulled.push(pull::PulledImage {
                    digest: String::new(),
                    layers: Vec::new(),
                    config: RunConfig::default(),
                });
            }
            Err(e) => {
                failure = Some(format!("CannotPullContainerError: {e}"));
                break;
            }
        }
    }
    if let Ok(mut p) = pull_times.lock() {
        p.1 = Some(now());
    }

    if let Some(reason) = failure {
        // No logs to ship: the reporter must not wait for a flush.
        drop(flush_rx);
        tracing::warn!(task = %id, reason = %reason, "task failed to start");
        let _ = tx.send(failed_to_start(&defs, reason)).await;
    } else {
        let ip: Ipv4Addr = t.ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let gateway: Ipv4Addr = t.gateway.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let launch = TaskLaunch {
            task_id: id.clone(),
            cpu: t.cpu,
            memory: t.memory,
            ip,
            prefix_len: t.prefix_len,
            gateway,
            hostname: format!("ip-{}", t.ip.replace('.', "-")),
            containers: defs
                .iter()
                .zip(pulled.iter())
                .map(|(d, p)| ContainerLaunch {
                    name: d.name.clone().unwrap_or_default(),
                    image: d.image.clone().unwrap_or_default(),
                    image_digest: Some(p.digest.clone()),
                    layers: p.layers.iter().map(|l| l.dir.clone()).collect(),
                    image_config: p.config.clone(),
                    definition: d.clone(),
                })
                .collect(),
        };
        // Ship logs while the task runs.
        let done = Arc::new(tokio::sync::Notify::new());
        let shipper = {
            let shared = shared.clone();
            let id = id.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut ship = logship::LogShipper::load(&shared.logship_dir, &id);
                loop {
                    let files = shared.executor.log_files(&id);
                    ship.ship(&shared.control, &id, &files).await;
                    tokio::select! {
                        () = done.notified() => {
                            let files = shared.executor.log_files(&id);
                            ship.ship(&shared.control, &id, &files).await;
                            return;
                        }
                        Some(ack) = flush_rx.recv() => {
                            let files = shared.executor.log_files(&id);
                            ship.ship(&shared.control, &id, &files).await;
                            let _ = ack.send(());
                        }
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            })
        };
        // A runner failure after the sandbox exists (a teardown that keeps
        // failing, an I/O error) must not be reported as STOPPED while
        // something may still run and hold the task's address: run_task is
        // retried (it adopts what exists); only a spec the runner refuses
        // outright, or a failure that persists, ends in a STOPPED report.
        let mut result = Ok(());
        for attempt in 0..5u32 {
            result = shared.executor.run_task(launch.clone(), tx.clone()).await;
            match &result {
                Ok(()) => break,
                Err(e) if e.contains("already supervised") => break,
                Err(e) if e.contains("invalid task spec") => break,
                Err(e) => {
                    tracing::warn!(task = %id, attempt, error = %e, "the runner failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
            }
        }
        if let Err(e) = result.clone() {
            if e.contains("already supervised") {
                // Another worker owns it.
                done.notify_one();
                let _ = shipper.await;
                drop(tx);
                let _ = reporter.await;
                return;
            }
            tracing::error!(task = %id, error = %e, "the runner failed for good");
            let reason = if e.starts_with("Cannot") {
                e
            } else {
                format!("CannotStartContainerError: {e}")
            };
            let _ = tx.send(failed_to_start(&defs, reason)).await;
        }
        done.notify_one();
        let _ = shipper.await;
    }
    drop(pulled);
    drop(tx);
    let _ = reporter.await;
    // Remembered before anything is forgotten, so an out-of-date assignment
    // can never start the task again.
    if let Ok(mut d) = shared.done.lock() {
        d.insert(id.clone());
    }
    shared.executor.forget_logs(&id);
    logship::LogShipper::load(&shared.logship_dir, &id).forget();
    if let Ok(mut t) = shared.tracked.lock() {
        t.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::taskdef::KeyValuePair;

    #[test]
    fn overrides_replace_command_and_merge_environment() {
        let def: ContainerDefinition = serde_json::from_value(serde_json::json!({
            "name": "app", "image": "x", "command": ["a"],
            "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
        }))
        .unwrap();
        let other: ContainerDefinition =
            serde_json::from_value(serde_json::json!({"name": "side", "image": "y"})).unwrap();
        let o = ContainerOverride {
            name: "app".into(),
            command: Some(vec!["b".into(), "c".into()]),
            environment: vec![
                KeyValuePair {
                    name: Some("B".into()),
                    value: Some("20".into()),
                },
                KeyValuePair {
                    name: Some("C".into()),
                    value: Some("3".into()),
                },
            ],
            cpu: Some(128),
            memory: Some(64),
            memory_reservation: None,
        };
        let out = apply_overrides(&[def, other.clone()], &[o]);
        assert_eq!(
            out[0].command.as_deref(),
            Some(&["b".to_string(), "c".to_string()][..])
        );
        let env: Vec<(String, String)> = out[0]
            .environment
            .iter()
            .map(|e| (e.name.clone().unwrap(), e.value.clone().unwrap()))
            .collect();
        assert_eq!(
            env,
            [
                ("A".into(), "1".into()),
                ("B".into(), "20".into()),
                ("C".into(), "3".into())
            ]
        );
        assert_eq!((out[0].cpu, out[0].memory), (128, Some(64)));
        assert_eq!(out[1], other);
    }
}
