//! The [`Runner`]: creates task sandboxes, starts containers through
//! their shims, supervises them with the [`TaskMachine`], and tears
//! everything down.
//!
//! On disk (`state_dir`):
//! ```text
//! runc/                          runc's --root (container states)
//! tasks/<id>/state.json          the TaskMachine, after every change
//! tasks/<id>/stop.json           a pending stop request
//! tasks/<id>/{hosts,hostname,resolv.conf}
//! tasks/<id>/containers/<name>/  bundle (config.json, rootfs/), upper/, work/,
//!                                shim.{json,lock,pid,log}, runc.log,
//!                                container.pid, log.jsonl[.1], exit
//! finished/<id>/report.json      the final STOPPED report
//! finished/<id>/<name>.log.jsonl[.1]  the logs of a stopped task
//! ```
//! A task's directory is its sandbox's record: a restarted agent finds
//! its tasks there ([`Runner::existing_tasks`]) and [`Runner::run_task`]
//! adopts them; the shims kept the containers running meanwhile.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::agent::TaskStateReport;
use berth_core::task::{StopCode, TaskStatus};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

use crate::cgroup::Cgroups;
use crate::error::RunnerError;
use crate::health::{HealthPolicy, HealthTracker};
use crate::logs::now_ms;
use crate::machine::{Action, ExitInfo, Phase, StopRequest, TaskMachine};
use crate::shim::{files, read_exit, shim_alive, write_atomic, ShimConfig};
use crate::spec::{ContainerSpec, RunnerConfig, TaskSpec};
use crate::sys::{RealSys, Sig, Sys};
use crate::{net, oci, rootfs, user};

/// How often the supervisor looks at its containers.
const POLL: Duration = Duration::from_millis(150);

/// What [`Runner::cleanup_except`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// runc containers killed and deleted.
    pub runc_containers: Vec<String>,
    /// Shims killed (container directories).
    pub shims: Vec<PathBuf>,
    /// Mount points unmounted.
    pub mounts: Vec<PathBuf>,
    /// Tasks whose cgroups were removed.
    pub cgroups: Vec<String>,
    /// Network namespaces deleted.
    pub netns: Vec<String>,
    /// Host veths deleted.
    pub veths: Vec<String>,
    /// Task directories removed (`tasks/<id>`, `finished/<id>`).
    pub task_dirs: Vec<PathBuf>,
}

impl CleanupReport {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug)]
struct Inner {
    cfg: RunnerConfig,
    sys: Arc<dyn Sys>,
    cgroups: Cgroups,
    host_resolv: String,
    stops: Mutex<HashMap<String, StopRequest>>,
    notifies: Mutex<HashMap<String, Arc<Notify>>>,
    active: Mutex<HashSet<String>>,
}

/// Runs tasks on this host. Cheap to clone; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

/// Removes a task from the supervised set when `run_task` ends or is
/// dropped.
struct ActiveGuard {
    inner: Arc<Inner>,
    task_id: String,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Ok(mut a) = self.inner.active.lock() {
            a.remove(&self.task_id);
        }
        if let Ok(mut n) = self.inner.notifies.lock() {
            n.remove(&self.task_id);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Runner {
    /// A runner on the real host: checks runc, creates the state
    /// directories and the bridge (with the gateway address, up).
    pub fn new(cfg: RunnerConfig) -> Result<Self, RunnerError> {
        Self::with_sys(cfg, Arc::new(RealSys))
    }

    /// A runner whose host operations go through `sys` (tests, or hosts
    /// with other tooling).
    pub fn with_sys(cfg: RunnerConfig, sys: Arc<dyn Sys>) -> Result<Self, RunnerError> {
        if !sys.exists(&cfg.runc) {
            return Err(RunnerError::Prerequisite(format!(
                "runc not found at {} (apt-get install -y runc)",
                cfg.runc.display()
            )));
        }
        if !sys.exists(&cfg.shim_exe) {
            return Err(RunnerError::Prerequisite(format!(
                "shim executable {} does not exist",
                cfg.shim_exe.display()
            )));
        }
        for d in ["tasks", "runc", "finished"] {
            let p = cfg.state_dir.join(d);
            std::fs::create_dir_all(&p).map_err(|e| RunnerError::io(&p, e))?;
        }
        net::ensure_bridge(sys.as_ref(), &cfg.bridge, &cfg.gateway_cidr)?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let cgroups = Cgroups::new("/sys/fs/cgroup", &cfg.cgroup_parent);
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                sys,
                cgroups,
                host_resolv,
                stops: Mutex::new(HashMap::new()),
                notifies: Mutex::new(HashMap::new()),
                active: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.inner.cfg
    }

    /// The directory of a task's sandbox.
    pub fn task_dir(&self, task_id: &str) -> PathBuf {
        self.inner.task_dir(task_id)
    }

    /// The directory of one container (its bundle, shim files and logs).
    pub fn container_dir(&self, task_id: &str, container: &str) -> PathBuf {
        self.inner.container_dir(task_id, container)
    }

    /// The live log of a container (`log.jsonl`, rotated to `.1`).
    pub fn container_log(&self, task_id: &str, container: &str) -> PathBuf {
        self.container_dir(task_id, container).join(files::LOG)
    }

    /// Where a stopped task's logs and final report are kept until
    /// [`Runner::forget_task`].
    pub fn finished_dir(&self, task_id: &str) -> PathBuf {
        self.inner.finished_dir(task_id)
    }

    /// The log of a container of a stopped task.
    pub fn finished_log(&self, task_id: &str, container: &str) -> PathBuf {
        self.finished_dir(task_id)
            .join(format!("{container}.log.jsonl"))
    }

    /// Drops what is kept of a stopped task (its final report and logs),
    /// once the control plane has it.
    pub fn forget_task(&self, task_id: &str) -> Result<(), RunnerError> {
        let d = self.finished_dir(task_id);
        match std::fs::remove_dir_all(&d) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RunnerError::io(d, e)),
        }
    }

    /// Tasks whose sandboxes exist on disk from before (an agent
    /// restart); their containers kept running, owned by their shims.
    pub fn existing_tasks(&self) -> Result<Vec<String>, RunnerError> {
        let dir = self.inner.cfg.state_dir.join("tasks");
        let mut out = Vec::new();
        let rd = std::fs::read_dir(&dir).map_err(|e| RunnerError::io(&dir, e))?;
        for e in rd {
            let e = e.map_err(|e| RunnerError::io(&dir, e))?;
            if e.path().join("state.json").exists() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Asks a task to stop: every container gets SIGTERM, then SIGKILL
    /// after its stopTimeout (default 30 s, at most 120 s), then the
    /// sandbox is torn down and `run_task` reports STOPPED with this code
    /// and reason. Idempotent: the first request's code and reason win.
    /// A stop for a task not (yet) running is kept for its `run_task`.
    pub fn stop_task(&self, task_id: &str, code: StopCode, reason: &str) {
        let req = StopRequest {
            code,
            reason: reason.to_string(),
        };
        let finished = self
            .inner
            .finished_dir(task_id)
            .join("report.json")
            .exists();
        if finished && !lock(&self.inner.active).contains(task_id) {
            // Already stopped; nothing to remember.
            return;
        }
        let first = {
            let mut stops = lock(&self.inner.stops);
            if stops.contains_key(task_id) {
                false
            } else {
                stops.insert(task_id.to_string(), req.clone());
                true
            }
        };
        if first {
            let dir = self.inner.task_dir(task_id);
            if dir.is_dir() && !dir.join("stop.json").exists() {
                if let Ok(data) = serde_json::to_vec(&req) {
                    let _ = write_atomic(&dir.join("stop.json"), &data);
                }
            }
        }
        if let Some(n) = lock(&self.inner.notifies).get(task_id) {
            n.notify_one();
        }
    }

    /// Starts (or, if its sandbox exists on disk, adopts) a task and
    /// supervises it until it stops, sending a fresh snapshot on `events`
    /// at every change (ACTIVATING, RUNNING, DEACTIVATING, STOPPING,
    /// DEPROVISIONING, STOPPED; container states, exit codes, reasons,
    /// health). Returns once the task is STOPPED and its sandbox is gone.
    ///
    /// Dropping the future abandons supervision without touching the
    /// containers: a later `run_task` with the same spec adopts them.
    pub async fn run_task(
        &self,
        spec: TaskSpec,
        events: mpsc::Sender<TaskStateReport>,
    ) -> Result<(), RunnerError> {
        spec.validate()?;
        let task_id = spec.task_id.clone();
        {
            let mut active = lock(&self.inner.active);
            if active.contains(&task_id) {
                return Err(RunnerError::AlreadySupervised(task_id));
            }
            let veth = net::veth_name(&task_id);
            if let Some(other) = active.iter().find(|o| net::veth_name(o) == veth) {
                return Err(RunnerError::InvalidSpec {
                    task_id: task_id.clone(),
                    reason: format!(
                        "its first 10 characters name the same veth ({veth}) as running task {other}"
                    ),
                });
            }
            active.insert(task_id.clone());
        }
        let notify = Arc::new(Notify::new());
        lock(&self.inner.notifies).insert(task_id.clone(), notify.clone());
        let _guard = ActiveGuard {
            inner: self.inner.clone(),
            task_id: task_id.clone(),
        };

        // Already finished (the agent died after teardown)?
        let finished = self.inner.finished_dir(&task_id).join("report.json");
        if let Ok(data) = std::fs::read(&finished) {
            if let Ok(report) = serde_json::from_slice::<TaskStateReport>(&data) {
                let inner = self.inner.clone();
                let id = task_id.clone();
                blocking(move || inner.teardown(&id)).await?;
                let _ = events.send(report).await;
                lock(&self.inner.stops).remove(&task_id);
                return Ok(());
            }
        }

        let task_dir = self.inner.task_dir(&task_id);
        let state_file = task_dir.join("state.json");
        let mut machine = match std::fs::read(&state_file) {
            Ok(data) => serde_json::from_slice::<TaskMachine>(&data).map_err(|source| {
                RunnerError::State {
                    path: state_file.clone(),
                    source,
                }
            })?,
            Err(_) => TaskMachine::new(&spec, now_ms()),
        };
        std::fs::create_dir_all(task_dir.join("containers"))
            .map_err(|e| RunnerError::io(&task_dir, e))?;
        if let Ok(data) = std::fs::read(task_dir.join("stop.json")) {
            if let Ok(req) = serde_json::from_slice::<StopRequest>(&data) {
                machine.request_stop(req.code, &req.reason);
            }
        }
        if let Some(req) = lock(&self.inner.stops).get(&task_id).cloned() {
            machine.request_stop(req.code, &req.reason);
            if !task_dir.join("stop.json").exists() {
                if let Ok(data) = serde_json::to_vec(&req) {
                    let _ = write_atomic(&task_dir.join("stop.json"), &data);
                }
            }
        }
        persist(&state_file, &machine)?;

        if machine.stop.is_none() && machine.status < TaskStatus::Deactivating {
            let inner = self.inner.clone();
            let s = spec.clone();
            if let Err(e) = blocking(move || inner.setup_sandbox(&s)).await {
                tracing::warn!(task = %task_id, "sandbox setup failed: {e}");
                machine.request_stop(
                    StopCode::TaskFailedToStart,
                    &format!("ResourceInitializationError: failed to create the task sandbox: {e}"),
                );
            }
        }

        let mut driver = Driver {
            inner: self.inner.clone(),
            spec,
            machine,
            state_file,
            events,
            last_sent: None,
            last_persisted: None,
            trackers: HashMap::new(),
            checks: JoinSet::new(),
            in_flight: HashSet::new(),
        };
        let result = driver.run(&notify).await;
        if result.is_ok() {
            lock(&self.inner.stops).remove(&task_id);
        }
        result
    }

    /// Removes every network namespace, veth, cgroup, mount, shim, runc
    /// container and directory of tasks not in `keep` (and not being
    /// supervised): the leftovers of crashes. Idempotent.
    pub fn cleanup_except(&self, keep: &[String]) -> Result<CleanupReport, RunnerError> {
        let mut keep: HashSet<String> = keep.iter().cloned().collect();
        keep.extend(lock(&self.inner.active).iter().cloned());
        self.inner.cleanup_except(&keep)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RunnerError> + Send + 'static,
) -> Result<T, RunnerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RunnerError::Command {
            command: "blocking task".into(),
            message: e.to_string(),
        })?
}

fn persist(path: &Path, machine: &TaskMachine) -> Result<(), RunnerError> {
    let data = serde_json::to_vec_pretty(machine).map_err(|source| RunnerError::State {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &data).map_err(|e| RunnerError::io(path, e))
}

fn remove_dir_all_if_exists(path: &Path) -> Result<bool, RunnerError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(RunnerError::io(path, e)),
    }
}

impl Inner {
    fn task_dir(&self, task_id: &str) -> PathBuf {
        self.cfg.state_dir.join("tasks").join(task_id)
    }

    fn container_dir(&self, task_id: &str, name: &str) -> PathBuf {
        self.task_dir(task_id).join("containers").join(name)
    }

    fn finished_dir(&self, task_id: &str) -> PathBuf {
        self.cfg.state_dir.join("finished").join(task_id)
    }

    fn runc_root(&self) -> PathBuf {
        self.cfg.state_dir.join("runc")
    }

    fn runc(&self, args: &[&str]) -> Result<String, RunnerError> {
        let mut full = vec![
            "--root".to_string(),
            self.runc_root().to_string_lossy().into_owned(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        let command = format!("{} {}", self.cfg.runc.display(), full.join(" "));
        let out = self
            .sys
            .run(&self.cfg.runc, &full)
            .map_err(|e| RunnerError::Command {
                command: command.clone(),
                message: e.to_string(),
            })?;
        if out.success {
            Ok(out.stdout)
        } else {
            Err(RunnerError::Command {
                command,
                message: out.stderr.trim().to_string(),
            })
        }
    }

    /// Network, cgroups and /etc files of a task. Idempotent.
    fn setup_sandbox(&self, spec: &TaskSpec) -> Result<(), RunnerError> {
        let sys = self.sys.as_ref();
        net::setup(
            sys,
            &self.cfg.bridge,
            &spec.task_id,
            spec.ip,
            spec.prefix_len,
            spec.gateway,
        )?;
        self.cgroups
            .setup(sys, &spec.task_id, spec.cpu, spec.memory)?;
        let dir = self.task_dir(&spec.task_id);
        for (name, content) in [
            ("hosts", rootfs::hosts_file(&spec.hostname, spec.ip)),
            ("hostname", format!("{}\n", spec.hostname)),
            ("resolv.conf", rootfs::resolv_conf(&self.host_resolv)),
        ] {
            let p = dir.join(name);
            write_atomic(&p, content.as_bytes()).map_err(|e| RunnerError::io(&p, e))?;
        }
        Ok(())
    }

    /// Prepares a container's root filesystem and bundle and launches its
    /// shim. An `Err` is the container's start failure.
    fn start_container(&self, spec: &TaskSpec, c: &ContainerSpec) -> Result<(), String> {
        let sys = self.sys.as_ref();
        let dir = self.container_dir(&spec.task_id, &c.name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let rootfs = rootfs::mount(sys, &c.name, &c.layers, &dir).map_err(|e| e.to_string())?;
        let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).ok();
        let group = std::fs::read_to_string(rootfs.join("etc/group")).ok();
        let user = user::resolve_user(
            &c.name,
            oci::user_string(&c.definition, &c.image_config),
            passwd.as_deref(),
            group.as_deref(),
        )
        .map_err(|e| e.to_string())?;
        let task_dir = self.task_dir(&spec.task_id);
        let netns = net::netns_path(&spec.task_id);
        let cgroups_path = self.cgroups.container_path(&spec.task_id, &c.name);
        let (hosts, hostname, resolv) = (
            task_dir.join("hosts"),
            task_dir.join("hostname"),
            task_dir.join("resolv.conf"),
        );
        let params = oci::BundleParams {
            hostname: &spec.hostname,
            rootfs: &rootfs,
            netns_path: &netns,
            cgroups_path: &cgroups_path,
            etc_hosts: &hosts,
            etc_hostname: &hostname,
            etc_resolv: &resolv,
            user: &user,
            host_nofile: rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .maximum
                .unwrap_or(u64::MAX),
            swap_accounting: self.cgroups.swap_accounting(sys),
        };
        let config = oci::build_config(c, &params).map_err(|e| e.to_string())?;
        let write = |name: &str, v: &serde_json::Value| -> Result<(), String> {
            let data = serde_json::to_vec_pretty(v).map_err(|e| e.to_string())?;
            write_atomic(&dir.join(name), &data).map_err(|e| format!("{name}: {e}"))
        };
        write("config.json", &config)?;
        let shim = ShimConfig {
            runc: self.cfg.runc.clone(),
            runc_root: self.runc_root(),
            id: format!("{}-{}", spec.task_id, c.name),
            bundle: dir.clone(),
            memory_cgroup: Some(self.cgroups.container_memory_dir(&spec.task_id, &c.name)),
            log_max_bytes: crate::logs::MAX_LOG_BYTES,
        };
        write(
            files::CONFIG,
            &serde_json::to_value(&shim).map_err(|e| e.to_string())?,
        )?;
        let out = std::process::Command::new(&self.cfg.shim_exe)
            .arg("shim")
            .arg("start")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run the shim {}: {e}", self.cfg.shim_exe.display()))?;
        if !out.status.success() {
            return Err(format!(
                "the shim failed to start: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    fn signal(&self, runtime_id: &str, dir: &Path, sig: Sig) {
        if let Err(e) = self.runc(&["kill", runtime_id, sig.name()]) {
            tracing::debug!("runc kill {runtime_id} {}: {e}", sig.name());
            if sig == Sig::Kill {
                if let Some(pid) = std::fs::read_to_string(dir.join(files::CONTAINER_PID))
                    .ok()
                    .and_then(|p| p.trim().parse::<i32>().ok())
                {
                    let _ = self.sys.kill(pid, Sig::Kill);
                }
            }
        }
    }

    fn kill_shim(&self, dir: &Path) -> bool {
        if !shim_alive(dir) {
            return false;
        }
        if let Some(pid) = std::fs::read_to_string(dir.join(files::PID))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = self.sys.kill(pid, Sig::Kill);
        }
        true
    }

    /// runc containers: (id, bundle).
    fn runc_list(&self) -> Vec<(String, PathBuf)> {
        let Ok(out) = self.runc(&["list", "--format", "json"]) else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some((
                    c["id"].as_str()?.to_string(),
                    PathBuf::from(c["bundle"].as_str().unwrap_or("")),
                ))
            })
            .collect()
    }

    fn container_dirs(&self, task_id: &str) -> Vec<PathBuf> {
        let d = self.task_dir(task_id).join("containers");
        std::fs::read_dir(&d)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Removes everything of one task but its `finished` record.
    /// Idempotent.
    fn teardown(&self, task_id: &str) -> Result<(), RunnerError> {
        let sys = self.sys.as_ref();
        let task_dir = self.task_dir(task_id);
        for (id, bundle) in self.runc_list() {
            if bundle.starts_with(&task_dir) {
                let _ = self.runc(&["kill", &id, "KILL"]);
                let _ = self.runc(&["delete", "--force", &id]);
            }
        }
        for dir in self.container_dirs(task_id) {
            self.kill_shim(&dir);
        }
        rootfs::unmount_under(sys, &task_dir)?;
        self.cgroups.teardown(sys, task_id)?;
        net::teardown(sys, task_id)?;
        // Keep the logs.
        let finished = self.finished_dir(task_id);
        for dir in self.container_dirs(task_id) {
            let Some(name) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            for (from, to) in [
                (files::LOG.to_string(), format!("{name}.log.jsonl")),
                (format!("{}.1", files::LOG), format!("{name}.log.jsonl.1")),
            ] {
                let from = dir.join(from);
                if from.exists() {
                    std::fs::create_dir_all(&finished)
                        .map_err(|e| RunnerError::io(&finished, e))?;
                    std::fs::rename(&from, finished.join(to))
                        .map_err(|e| RunnerError::io(&from, e))?;
                }
            }
        }
        if !rootfs::mounts_under(&task_dir).is_empty() {
            return Err(RunnerError::Prerequisite(format!(
                "{} still has mounts; not removing it",
                task_dir.display()
            )));
        }
        // A concurrent stop request may drop a file in while we remove the
        // directory (ENOTEMPTY): try again a few times.
        let mut attempt = 0;
        loop {
            match remove_dir_all_if_exists(&task_dir) {
                Ok(_) => return Ok(()),
                Err(_) if attempt < 5 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Best effort: every step runs even if an earlier one failed; the
    /// first failure is returned at the end.
    fn cleanup_except(&self, keep: &HashSet<String>) -> Result<CleanupReport, RunnerError> {
        let sys = self.sys.as_ref();
        let mut report = CleanupReport::default();
        let mut first_error: Option<RunnerError> = None;
        let mut note = |r: Result<(), RunnerError>| {
            if let Err(e) = r {
                tracing::warn!("cleanup: {e}");
                first_error.get_or_insert(e);
            }
        };
        let tasks_dir = self.cfg.state_dir.join("tasks");
        let kept = |id: &str| keep.contains(id);
        // runc containers whose bundles are not kept tasks'.
        for (id, bundle) in self.runc_list() {
            let owner = bundle
                .strip_prefix(&tasks_dir)
                .ok()
                .and_then(|p| p.components().next())
                .map(|c| c.as_os_str().to_string_lossy().into_owned());
            let keep_it = match owner {
                Some(o) => kept(&o),
                None => keep.iter().any(|k| id.starts_with(&format!("{k}-"))),
            };
            if !keep_it {
                let _ = self.runc(&["kill", &id, "KILL"]);
                note(self.runc(&["delete", "--force", &id]).map(|_| ()));
                report.runc_containers.push(id);
            }
        }
        // Task directories: shims, mounts.
        let mut dead_dirs = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&tasks_dir) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if kept(&id) {
                    continue;
                }
                for dir in self.container_dirs(&id) {
                    if self.kill_shim(&dir) {
                        report.shims.push(dir);
                    }
                }
                dead_dirs.push(e.path());
            }
        }
        for m in rootfs::mounts_under(&tasks_dir) {
            let owner = m
                .strip_prefix(&tasks_dir)
                .ok()
                .and_then(|p| p.components().next())
                .map(|c| c.as_os_str().to_string_lossy().into_owned());
            if owner.is_some_and(|o| !kept(&o)) {
                note(sys.unmount(&m).map_err(|e| RunnerError::io(&m, e)));
                report.mounts.push(m);
            }
        }
        // Only this runner's sandboxes are touched: other Berth agents may
        // share the machine (with their own bridge, cgroup parent and state
        // dir). A task is ours when its veth is on our bridge, its cgroup is
        // under our parent, or its directory is in our state dir.
        let our_cgroups = match self.cgroups.list_tasks(sys) {
            Ok(ids) => ids,
            Err(e) => {
                note(Err(e));
                Vec::new()
            }
        };
        let our_veths = match net::list_bridge_veths(sys, &self.cfg.bridge) {
            Ok(v) => v,
            Err(e) => {
                note(Err(e));
                Vec::new()
            }
        };
        for id in &our_cgroups {
            if !kept(id) {
                note(self.cgroups.teardown(sys, id));
                report.cgroups.push(id.clone());
            }
        }
        match net::list_netns(sys) {
            Ok(all) => {
                for ns in all {
                    if let Some(id) = ns.strip_prefix("berth-") {
                        let ours = our_veths.contains(&net::veth_name(id))
                            || our_cgroups.iter().any(|c| c == id)
                            || tasks_dir.join(id).exists();
                        if ours && !kept(id) {
                            note(net::delete_netns(sys, &ns));
                            report.netns.push(ns);
                        }
                    }
                }
            }
            Err(e) => note(Err(e)),
        }
        let kept_veths: HashSet<String> = keep.iter().map(|k| net::veth_name(k)).collect();
        for v in our_veths {
            if !kept_veths.contains(&v) {
                note(net::delete_link(sys, &v));
                report.veths.push(v);
            }
        }
        for d in dead_dirs {
            if !rootfs::mounts_under(&d).is_empty() {
                note(Err(RunnerError::Prerequisite(format!(
                    "{} still has mounts; not removing it",
                    d.display()
                ))));
                continue;
            }
            match remove_dir_all_if_exists(&d) {
                Ok(true) => report.task_dirs.push(d),
                Ok(false) => {}
                Err(e) => note(Err(e)),
            }
        }
        let finished = self.cfg.state_dir.join("finished");
        if let Ok(rd) = std::fs::read_dir(&finished) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if kept(&id) {
                    continue;
                }
                match remove_dir_all_if_exists(&e.path()) {
                    Ok(true) => report.task_dirs.push(e.path()),
                    Ok(false) => {}
                    Err(e) => note(Err(e)),
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// Supervises one task.
struct Driver {
    inner: Arc<Inner>,
    spec: TaskSpec,
    machine: TaskMachine,
    state_file: PathBuf,
    events: mpsc::Sender<TaskStateReport>,
    last_sent: Option<TaskStateReport>,
    last_persisted: Option<TaskMachine>,
    trackers: HashMap<String, HealthTracker>,
    checks: JoinSet<(String, bool)>,
    in_flight: HashSet<String>,
}

impl Driver {
    fn container_spec(&self, name: &str) -> Option<&ContainerSpec> {
        self.spec.containers.iter().find(|c| c.name == name)
    }

    /// Persists the machine if it changed and sends its report if that
    /// changed.
    async fn emit(&mut self) -> Result<(), RunnerError> {
        if self.machine.status != TaskStatus::Stopped
            && self.last_persisted.as_ref() != Some(&self.machine)
        {
            persist(&self.state_file, &self.machine)?;
            self.last_persisted = Some(self.machine.clone());
        }
        let report = self.machine.report();
        if self.last_sent.as_ref() == Some(&report) {
            return Ok(());
        }
        // A gone receiver does not stop the task.
        let _ = self.events.send(report.clone()).await;
        self.last_sent = Some(report);
        Ok(())
    }

    async fn run(&mut self, notify: &Notify) -> Result<(), RunnerError> {
        loop {
            let now = now_ms();
            if let Some(req) = lock(&self.inner.stops).get(&self.spec.task_id).cloned() {
                self.machine.request_stop(req.code, &req.reason);
            }
            self.observe(now).await;
            while let Some(res) = self.checks.try_join_next() {
                if let Ok((name, ok)) = res {
                    self.in_flight.remove(&name);
                    if let Some(t) = self.trackers.get_mut(&name) {
                        let status = t.record(now_ms(), ok);
                        self.machine.on_health(&name, status);
                    }
                }
            }
            loop {
                let before = self.machine.clone();
                let actions = self.machine.step(now_ms());
                let changed = before != self.machine;
                self.emit().await?;
                for a in &actions {
                    self.execute(a).await?;
                }
                self.emit().await?;
                if self.machine.status == TaskStatus::Stopped {
                    self.emit().await?;
                    return Ok(());
                }
                if actions.is_empty() && !changed {
                    break;
                }
            }
            self.schedule_health_checks();
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = notify.notified() => {}
            }
        }
    }

    /// Reads the containers' directories.
    async fn observe(&mut self, now: i64) {
        let task_id = self.spec.task_id.clone();
        let mut relaunch = Vec::new();
        for c in self.machine.containers.clone() {
            if !matches!(c.phase, Phase::Starting | Phase::Running) {
                continue;
            }
            let dir = self.inner.container_dir(&task_id, &c.name);
            if c.phase == Phase::Starting && dir.join(files::CONTAINER_PID).exists() {
                self.machine.on_started(&c.name, now);
            }
            if let Some(exit) = read_exit(&dir) {
                self.finish_container(&c.name, exit);
                continue;
            }
            if shim_alive(&dir) {
                continue;
            }
            if let Some(exit) = read_exit(&dir) {
                self.finish_container(&c.name, exit);
            } else if c.phase == Phase::Starting && !dir.join(files::PID).exists() {
                // Decided, but the agent died before launching the shim.
                relaunch.push(c.name.clone());
            } else {
                let inner = self.inner.clone();
                let id = c.runtime_id.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = inner.runc(&["delete", "--force", &id]);
                })
                .await;
                self.machine.on_exit(
                    &c.name,
                    ExitInfo {
                        reason: Some(
                            "ContainerRuntimeError: the container's shim exited without recording an exit status"
                                .into(),
                        ),
                        ..Default::default()
                    },
                    now,
                );
            }
        }
        for name in relaunch {
            self.launch(&name).await;
        }
        // Health trackers for running containers.
        for c in &self.machine.containers {
            if c.phase != Phase::Running
                || !c.has_health_check
                || self.trackers.contains_key(&c.name)
            {
                continue;
            }
            let Some(hc) = self
                .spec
                .containers
                .iter()
                .find(|s| s.name == c.name)
                .and_then(|s| s.definition.health_check.as_ref())
            else {
                continue;
            };
            self.trackers.insert(
                c.name.clone(),
                HealthTracker::new(
                    HealthPolicy::from_check(hc),
                    c.started_at.unwrap_or(now),
                    c.health,
                ),
            );
        }
    }

    fn finish_container(&mut self, name: &str, exit: crate::shim::ExitRecord) {
        let killed_by_us = self.machine.container(name).is_some_and(|c| c.kill_sent);
        self.machine.on_exit(
            name,
            ExitInfo {
                exit_code: exit.start_error.is_none().then_some(exit.exit_code),
                oom_killed: exit.oom_killed && !killed_by_us,
                start_error: exit.start_error,
                reason: None,
            },
            exit.finished_at,
        );
        self.trackers.remove(name);
    }

    async fn launch(&mut self, name: &str) {
        let Some(c) = self.container_spec(name).cloned() else {
            return;
        };
        let inner = self.inner.clone();
        let spec = self.spec.clone();
        let res = tokio::task::spawn_blocking(move || inner.start_container(&spec, &c))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(why) = res {
            tracing::warn!(task = %self.spec.task_id, container = name, "start failed: {why}");
            self.machine.on_exit(
                name,
                ExitInfo {
                    start_error: Some(why),
                    ..Default::default()
                },
                now_ms(),
            );
        }
    }

    async fn execute(&mut self, action: &Action) -> Result<(), RunnerError> {
        match action {
            Action::Start(name) => {
                // The decision is recorded before the shim exists.
                persist(&self.state_file, &self.machine)?;
                self.last_persisted = Some(self.machine.clone());
                self.launch(name).await;
            }
            Action::Signal { name, kill } => {
                let inner = self.inner.clone();
                let Some(c) = self.machine.container(name) else {
                    return Ok(());
                };
                let id = c.runtime_id.clone();
                let dir = self.inner.container_dir(&self.spec.task_id, name);
                let sig = if *kill { Sig::Kill } else { Sig::Term };
                let _ = tokio::task::spawn_blocking(move || inner.signal(&id, &dir, sig)).await;
            }
            Action::Teardown => {
                self.checks.abort_all();
                let inner = self.inner.clone();
                let id = self.spec.task_id.clone();
                // The final report is recorded before the sandbox goes, so a
                // restarted agent does not start the task again.
                let mut done = self.machine.clone();
                done.torn_down(now_ms());
                let finished = self.inner.finished_dir(&id);
                std::fs::create_dir_all(&finished).map_err(|e| RunnerError::io(&finished, e))?;
                let data = serde_json::to_vec_pretty(&done.report()).map_err(|source| {
                    RunnerError::State {
                        path: finished.join("report.json"),
                        source,
                    }
                })?;
                write_atomic(&finished.join("report.json"), &data)
                    .map_err(|e| RunnerError::io(finished.join("report.json"), e))?;
                // Retried: a kernel object can vanish or linger briefly.
                let mut attempt = 0;
                loop {
                    let (inner, id) = (inner.clone(), id.clone());
                    match blocking(move || inner.teardown(&id)).await {
                        Ok(()) => break,
                        Err(e) if attempt < 3 => {
                            tracing::warn!(task = %self.spec.task_id, "teardown failed, retrying: {e}");
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
                self.machine = done;
            }
        }
        Ok(())
    }

    fn schedule_health_checks(&mut self) {
        if self.machine.status >= TaskStatus::Deactivating {
            return;
        }
        let now = now_ms();
        let runc = self.inner.cfg.runc.clone();
        let root = self.inner.runc_root();
        for (name, t) in self.trackers.iter_mut() {
            if self.in_flight.contains(name) || !t.due(now) {
                continue;
            }
            let Some(c) = self.machine.container(name) else {
                continue;
            };
            if c.phase != Phase::Running {
                continue;
            }
            let Some(argv) = self
                .spec
                .containers
                .iter()
                .find(|s| s.name == *name)
                .and_then(|s| s.definition.health_check.as_ref())
                .and_then(oci::health_command)
            else {
                continue;
            };
            t.check_started(now);
            self.in_flight.insert(name.clone());
            let id = c.runtime_id.clone();
            let pid_file = self
                .inner
                .container_dir(&self.spec.task_id, name)
                .join("health.pid");
            let timeout =
                Duration::from_millis(u64::try_from(t.policy().timeout_ms).unwrap_or(5000));
            let (runc, root, name) = (runc.clone(), root.clone(), name.clone());
            self.checks.spawn(async move {
                let ok = health_check(&runc, &root, &id, &argv, &pid_file, timeout).await;
                (name, ok)
            });
        }
    }
}

/// Runs one health check with `runc exec`; true when it exits 0 in time.
async fn health_check(
    runc: &Path,
    root: &Path,
    id: &str,
    argv: &[String],
    pid_file: &Path,
    timeout: Duration,
) -> bool {
    let _ = std::fs::remove_file(pid_file);
    let child = tokio::process::Command::new(runc)
        .arg("--root")
        .arg(root)
        .arg("exec")
        .arg("--pid-file")
        .arg(pid_file)
        .arg(id)
        .args(argv)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => {
            // Kill the check inside the container, then runc exec.
            if let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill().await;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    #[test]
    fn cleanup_removes_only_what_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("agent");
        let sys = Arc::new(FakeSys::default());
        for d in [
            "/usr/sbin/runc",
            "/bin/shim",
            "/sys/fs/cgroup/memory/berth/gone/web",
            "/sys/fs/cgroup/memory/berth/kept/web",
            "/sys/fs/cgroup/cpu/berth/gone",
        ] {
            sys.create_dir_all(Path::new(d)).unwrap();
        }
        let tasks = state.join("tasks");
        let runc_list = serde_json::json!([
            {"id": "gone-web", "bundle": tasks.join("gone/containers/web")},
            {"id": "kept-web", "bundle": tasks.join("kept/containers/web")},
            {"id": "stray-x", "bundle": "/elsewhere"},
        ]);
        sys.script("/usr/sbin/runc --root", true, "");
        sys.outputs.lock().unwrap().insert(
            0,
            (
                format!(
                    "/usr/sbin/runc --root {} list",
                    state.join("runc").display()
                ),
                crate::sys::CmdOutput {
                    success: true,
                    stdout: runc_list.to_string(),
                    stderr: String::new(),
                },
            ),
        );
        sys.script(
            "ip netns list",
            true,
            "berth-gone\nberth-kept (id: 3)\nberth-foreign\nother\n",
        );
        // Only veths on this runner's bridge are its own; `bvother` belongs
        // to another agent on the same machine and must survive.
        sys.script(
            "ip -o link show master berth0 type veth",
            true,
            "5: bvgone@if2: <UP>\n6: bvkept@if3: <UP>\n",
        );
        sys.script(
            "ip -o link show type veth",
            true,
            "5: bvgone@if2: <UP>\n6: bvkept@if3: <UP>\n7: bvother@if9: <UP>\n",
        );
        let runner = Runner::with_sys(RunnerConfig::new(&state, "/bin/shim"), sys.clone()).unwrap();
        for t in ["gone", "kept"] {
            std::fs::create_dir_all(tasks.join(t).join("containers/web")).unwrap();
        }
        std::fs::create_dir_all(state.join("finished/old")).unwrap();
        let report = runner.cleanup_except(&["kept".to_string()]).unwrap();
        assert_eq!(report.runc_containers, vec!["gone-web", "stray-x"]);
        assert_eq!(report.cgroups, vec!["gone"]);
        assert_eq!(report.netns, vec!["berth-gone"]);
        assert_eq!(report.veths, vec!["bvgone"]);
        assert_eq!(
            report.task_dirs,
            vec![tasks.join("gone"), state.join("finished/old")]
        );
        assert!(tasks.join("kept").exists());
        let calls = sys.calls();
        let joined = calls.join("\n");
        assert!(joined.contains("delete --force gone-web"));
        assert!(!joined.contains("kept-web"), "{joined}");
        assert!(!joined.contains("berth-kept"), "{joined}");
        assert!(joined.contains("rmdir /sys/fs/cgroup/memory/berth/gone/web"));
        assert!(!joined.contains("rmdir /sys/fs/cgroup/memory/berth/kept"));
    }
}
