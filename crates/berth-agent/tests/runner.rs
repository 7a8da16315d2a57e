//! Conformance tests of the runner with the real runtime: runc, network
//! namespaces, cgroup v1, overlayfs. They need root, runc and a static
//! busybox, and FAIL (never skip) when one is missing.
//!
//! Each test makes its own bridge (`berthtest<N>`, 10.213.200.1/24), its
//! own cgroup parent and state directory, and removes them. The tests
//! share the subnet, so they run one at a time (a process-wide lock).

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_agent::logs::read_log;
use berth_agent::{ContainerSpec, Runner, RunnerConfig, StopCode, TaskSpec};
use berth_core::agent::TaskStateReport;
use berth_core::task::{HealthStatus, TaskStatus};
use berth_core::taskdef::{ContainerDefinition, ContainerDependency, HealthCheck};
use tokio::sync::mpsc;

static SERIAL: Mutex<()> = Mutex::new(());
const BUSYBOX: &str = "/bin/busybox";
const RUNC: &str = "/usr/sbin/runc";
const WAIT: Duration = Duration::from_secs(30);

fn sh(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

fn prerequisites() {
    assert!(
        rustix::process::geteuid().is_root(),
        "berth-agent's runner tests need root (run `cargo test -p berth-agent` as root)"
    );
    assert!(
        Path::new(RUNC).exists(),
        "runc is missing at {RUNC}: apt-get install -y runc"
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "a static busybox is missing at {BUSYBOX}: apt-get install -y busybox-static"
    );
    let out = sh("ip", &["netns", "list"]);
    assert!(
        out.status.success(),
        "`ip netns` does not work here: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists(),
        "the cgroup v1 memory controller is not mounted at /sys/fs/cgroup/memory"
    );
}

fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:016x}", h.finish())
}

/// A test's world: a bridge, a state dir, a busybox layer.
struct Env {
    _serial: MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    cfg: RunnerConfig,
    runner: Runner,
    layer: PathBuf,
    www: PathBuf,
}

fn delete_test_bridges() {
    let out = sh("ip", &["-o", "link", "show", "type", "bridge"]);
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(name) = l.split(':').nth(1).map(str::trim) {
            if name.starts_with("berthtest") {
                sh("ip", &["link", "del", "dev", name]);
            }
        }
    }
}

impl Env {
    fn new(n: u32) -> Env {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        prerequisites();
        delete_test_bridges();
        let dir = tempfile::Builder::new()
            .prefix("berth-agent-test")
            .tempdir_in("/var/tmp")
            .unwrap();
        // The image: busybox and its applets.
        let layer = dir.path().join("layers/busybox");
        std::fs::create_dir_all(layer.join("bin")).unwrap();
        std::fs::copy(BUSYBOX, layer.join("bin/busybox")).unwrap();
        let list = sh(BUSYBOX, &["--list"]);
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let _ = std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet));
        }
        std::fs::create_dir_all(layer.join("etc")).unwrap();
        std::fs::write(
            layer.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(layer.join("etc/group"), "root:x:0:\nwww:x:33:\n").unwrap();
        // A second layer with a web root.
        let www = dir.path().join("layers/www");
        std::fs::create_dir_all(www.join("www")).unwrap();
        std::fs::write(www.join("www/index.html"), "hello from berth\n").unwrap();
        let cfg = RunnerConfig {
            state_dir: dir.path().join("agent"),
            runc: PathBuf::from(RUNC),
            bridge: format!("berthtest{n}"),
            gateway_cidr: "10.213.200.1/24".into(),
            cgroup_parent: format!("berthtest{n}"),
            shim_exe: PathBuf::from(env!("CARGO_BIN_EXE_berth-shim")),
        };
        let runner = Runner::new(cfg.clone()).expect("runner");
        Env {
            _serial: serial,
            dir,
            cfg,
            runner,
            layer,
            www,
        }
    }

    fn container(&self, name: &str, script: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: "busybox:test".into(),
            image_digest: Some("sha256:0000".into()),
            layers: vec![self.layer.clone(), self.www.clone()],
            image_config: Default::default(),
            definition: ContainerDefinition {
                name: Some(name.into()),
                entry_point: Some(vec!["/bin/sh".into(), "-c".into()]),
                command: Some(vec![script.into()]),
                stop_timeout: Some(2),
                ..Default::default()
            },
        }
    }

    fn task(&self, octet: u8, containers: Vec<ContainerSpec>) -> TaskSpec {
        TaskSpec {
            task_id: random_hex(),
            cpu: 256,
            memory: 512,
            ip: Ipv4Addr::new(10, 213, 200, octet),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 213, 200, 1),
            hostname: "task".into(),
            containers,
        }
    }

    fn start(&self, spec: &TaskSpec) -> Running {
        let (tx, rx) = mpsc::channel(256);
        let r = self.runner.clone();
        let s = spec.clone();
        let handle = tokio::spawn(async move { r.run_task(s, tx).await });
        Running {
            rx,
            handle,
            seen: Vec::new(),
        }
    }

    fn runc_ids(&self) -> Vec<String> {
        let root = self.cfg.state_dir.join("runc");
        let out = sh(RUNC, &["--root", root.to_str().unwrap(), "list", "-q"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Err(e) = self.runner.cleanup_except(&[]) {
            eprintln!("cleanup after the test failed: {e}");
        }
        // Last resort, so the temporary directory can go.
        for m in berth_agent::rootfs::mounts_under(self.dir.path()) {
            sh("umount", &["-l", m.to_str().unwrap()]);
        }
        sh("ip", &["link", "del", "dev", &self.cfg.bridge]);
        for rule in berth_agent::net::host_guard_rules(&self.cfg.bridge) {
            let mut args = vec!["-D"];
            args.extend(rule.iter().map(String::as_str));
            sh("iptables", &args);
        }
        for c in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let _ = std::fs::remove_dir(c.path().join(&self.cfg.cgroup_parent));
        }
    }
}

/// A task being run, with the reports received so far.
struct Running {
    rx: mpsc::Receiver<TaskStateReport>,
    handle: tokio::task::JoinHandle<Result<(), berth_agent::RunnerError>>,
    seen: Vec<TaskStateReport>,
}

impl Running {
    /// Waits for a report matching `pred`.
    async fn until(
        &mut self,
        what: &str,
        pred: impl Fn(&TaskStateReport) -> bool,
    ) -> TaskStateReport {
        if let Some(r) = self.seen.iter().find(|r| pred(r)) {
            return r.clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => {
                    self.seen.push(r.clone());
                    if pred(&r) {
                        return r;
                    }
                }
                Ok(None) => {
                    let result = (&mut self.handle).await;
                    panic!(
                        "run_task ended before {what} with {result:?}; reports: {:#?}",
                        self.seen
                    )
                }
                Err(_) => panic!("timed out waiting for {what}; reports: {:#?}", self.seen),
            }
        }
    }

    async fn status(&mut self, s: TaskStatus) -> TaskStateReport {
        self.until(s.as_str(), |r| r.last_status == s).await
    }

    /// Waits for STOPPED and for run_task to return Ok.
    async fn stopped(mut self) -> (TaskStateReport, Vec<TaskStateReport>) {
        let r = self.status(TaskStatus::Stopped).await;
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("run_task returns after STOPPED")
            .unwrap()
            .expect("run_task succeeds");
        (r, self.seen)
    }

    fn statuses(&self) -> Vec<TaskStatus> {
        let mut v: Vec<TaskStatus> = self.seen.iter().map(|r| r.last_status).collect();
        v.dedup();
        v
    }
}

fn http_get(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: task\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn log_text(path: &Path) -> String {
    read_log(path)
        .unwrap()
        .into_iter()
        .map(|l| l.m)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_and_exit_code_then_essential_stop() {
    let env = Env::new(1);
    let spec = env.task(11, vec![env.container("app", "echo hi; exit 3")]);
    let mut run = env.start(&spec);
    run.status(TaskStatus::Running).await;
    let statuses_before = run.statuses();
    let (last, seen) = run.stopped().await;
    assert!(statuses_before.contains(&TaskStatus::Running));
    let order: Vec<TaskStatus> = {
        let mut v: Vec<TaskStatus> = seen.iter().map(|r| r.last_status).collect();
        v.dedup();
        v
    };
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "status went backwards: {order:?}"
    );
    assert_eq!(order.last(), Some(&TaskStatus::Stopped));
    assert_eq!(last.stop_code, Some(StopCode::EssentialContainerExited));
    assert_eq!(
        last.stopped_reason.as_deref(),
        Some("Essential container in task exited")
    );
    let c = &last.containers[0];
    assert_eq!(c.last_status, "STOPPED");
    assert_eq!(c.exit_code, Some(3));
    assert_eq!(c.reason, None);
    assert!(last.started_at.is_some() && last.execution_stopped_at.is_some());
    let log = log_text(&env.runner.finished_log(&spec.task_id, "app"));
    assert!(log.contains("hi"), "log: {log}");
    assert!(!env.runner.task_dir(&spec.task_id).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httpd_reachable_from_host_and_sibling() {
    let env = Env::new(2);
    let mut web = env.container("web", "exec httpd -f -p 8080 -h /www");
    web.definition.stop_timeout = Some(1);
    let client = env.container(
        "client",
        "for i in $(seq 1 100); do if wget -q -O- http://127.0.0.1:8080/; then echo fetched; break; fi; sleep 0.1; done; exec sleep 1000",
    );
    let mut spec = env.task(12, vec![web, client]);
    spec.containers[1].definition.essential = Some(false);
    spec.containers[1].definition.stop_timeout = Some(1);
    let mut run = env.start(&spec);
    run.status(TaskStatus::Running).await;
    let addr = SocketAddr::from((spec.ip, 8080));
    let deadline = Instant::now() + WAIT;
    let body = loop {
        if let Some(b) = http_get(addr).filter(|b| b.contains("hello from berth")) {
            break b;
        }
        assert!(Instant::now() < deadline, "no answer from {addr}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.starts_with("HTTP/1."), "{body}");
    let client_log = env.runner.container_log(&spec.task_id, "client");
    let deadline = Instant::now() + WAIT;
    while !log_text(&client_log).contains("fetched") {
        assert!(
            Instant::now() < deadline,
            "the sibling never reached 127.0.0.1:8080: {}",
            log_text(&client_log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(log_text(&client_log).contains("hello from berth"));
    // Both share one IP: the hostname resolves to it inside.
    env.runner
        .stop_task(&spec.task_id, StopCode::UserInitiated, "test done");
    env.runner.stop_task(
        &spec.task_id,
        StopCode::ServiceSchedulerInitiated,
        "ignored",
    );
    let (last, _) = run.stopped().await;
    assert_eq!(last.stop_code, Some(StopCode::UserInitiated));
    assert_eq!(last.stopped_reason.as_deref(), Some("test done"));
    assert!(last.containers.iter().all(|c| c.last_status == "STOPPED"));
    assert!(
        http_get(addr).is_none(),
        "the task still answers after it stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_is_reported() {
    let env = Env::new(3);
    let mut spec = env.task(
        13,
        vec![env.container("hog", "x=a; while true; do x=$x$x; done")],
    );
    spec.memory = 64;
    let run = env.start(&spec);
    let (last, _) = run.stopped().await;
    let c = &last.containers[0];
    assert_eq!(
        c.reason.as_deref(),
        Some("OutOfMemoryError: Container killed due to memory usage"),
        "{last:#?}"
    );
    assert_eq!(c.exit_code, Some(137));
    assert_eq!(last.stop_code, Some(StopCode::EssentialContainerExited));

    // A container's own hard limit, below the task's.
    let mut hog = env.container("hog", "x=a; while true; do x=$x$x; done");
    hog.definition.memory = Some(32);
    hog.definition.essential = Some(false);
    let mut spec = env.task(13, vec![hog, env.container("main", "sleep 2; exit 0")]);
    spec.memory = 512;
    let (last, _) = env.start(&spec).stopped().await;
    assert_eq!(
        last.containers[0].reason.as_deref(),
        Some("OutOfMemoryError: Container killed due to memory usage"),
        "{last:#?}"
    );
    assert_eq!(last.containers[1].exit_code, Some(0));
    assert_eq!(last.containers[1].reason, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depends_on_healthy_waits_for_the_health_check() {
    let env = Env::new(4);
    let mut web = env.container("web", "exec httpd -f -p 8080 -h /www");
    web.definition.stop_timeout = Some(1);
    web.definition.health_check = Some(HealthCheck {
        command: vec![
            "CMD-SHELL".into(),
            "wget -q -O- http://127.0.0.1:8080/".into(),
        ],
        interval: Some(1),
        timeout: Some(2),
        retries: Some(3),
        start_period: Some(0),
    });
    let mut client = env.container("client", "echo client-start; exec sleep 1000");
    client.definition.stop_timeout = Some(1);
    client.definition.depends_on = Some(vec![ContainerDependency {
        container_name: Some("web".into()),
        condition: Some("HEALTHY".into()),
    }]);
    let spec = env.task(14, vec![web, client]);
    let mut run = env.start(&spec);
    let waiting = run
        .until("web RUNNING while client waits", |r| {
            r.containers[0].last_status == "RUNNING" && r.containers[1].last_status == "PENDING"
        })
        .await;
    assert_eq!(waiting.containers[0].health_status, HealthStatus::Unknown);
    let running = run.status(TaskStatus::Running).await;
    assert_eq!(running.containers[1].last_status, "RUNNING");
    // Every report where the client is past PENDING shows web HEALTHY.
    for r in &run.seen {
        if r.containers[1].last_status != "PENDING" {
            assert_eq!(
                r.containers[0].health_status,
                HealthStatus::Healthy,
                "{r:#?}"
            );
        }
    }
    let healthy = run
        .until("task HEALTHY", |r| r.health_status == HealthStatus::Healthy)
        .await;
    assert_eq!(healthy.containers[0].health_status, HealthStatus::Healthy);
    let client_log = env.runner.container_log(&spec.task_id, "client");
    let deadline = Instant::now() + WAIT;
    while !log_text(&client_log).contains("client-start") {
        assert!(Instant::now() < deadline, "client never logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.runner
        .stop_task(&spec.task_id, StopCode::UserInitiated, "done");
    let (last, _) = run.stopped().await;
    assert_eq!(last.stop_code, Some(StopCode::UserInitiated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_timeout_escalates_to_sigkill() {
    let env = Env::new(5);
    let stubborn = env.container(
        "stubborn",
        "trap '' TERM; echo ready; while true; do sleep 1; done",
    );
    let spec = env.task(15, vec![stubborn]);
    let mut run = env.start(&spec);
    run.status(TaskStatus::Running).await;
    let log = env.runner.container_log(&spec.task_id, "stubborn");
    let deadline = Instant::now() + WAIT;
    while !log_text(&log).contains("ready") {
        assert!(Instant::now() < deadline, "the container never said ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.runner
        .stop_task(&spec.task_id, StopCode::UserInitiated, "stop it");
    let (last, seen) = run.stopped().await;
    assert_eq!(last.containers[0].exit_code, Some(137), "{last:#?}");
    assert_eq!(
        last.containers[0].reason, None,
        "a SIGKILL after stopTimeout is not an OOM"
    );
    let order: Vec<TaskStatus> = seen.iter().map(|r| r.last_status).collect();
    for s in [
        TaskStatus::Deactivating,
        TaskStatus::Stopping,
        TaskStatus::Deprovisioning,
    ] {
        assert!(order.contains(&s), "{s:?} missing from {order:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_entrypoint_fails_to_start() {
    let env = Env::new(6);
    let mut c = env.container("app", "unused");
    c.definition.entry_point = Some(vec!["/no/such/binary".into()]);
    c.definition.command = None;
    let spec = env.task(16, vec![c]);
    let run = env.start(&spec);
    let (last, seen) = run.stopped().await;
    let c = &last.containers[0];
    let reason = c.reason.as_deref().unwrap_or("");
    assert!(reason.starts_with("CannotStartContainerError:"), "{reason}");
    assert!(reason.contains("/no/such/binary"), "{reason}");
    assert_eq!(last.stop_code, Some(StopCode::TaskFailedToStart));
    assert!(last
        .stopped_reason
        .as_deref()
        .unwrap()
        .starts_with("CannotStartContainerError:"));
    assert!(!seen.iter().any(|r| r.last_status == TaskStatus::Running));
    assert!(last.started_at.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_fails_to_start() {
    let env = Env::new(7);
    let mut c = env.container("app", "id");
    c.definition.user = Some("nobody-here".into());
    let mut ok = env.container("named", "id -u; id -g");
    ok.definition.user = Some("www".into());
    ok.definition.essential = Some(false);
    let spec = env.task(17, vec![ok, c]);
    let run = env.start(&spec);
    let (last, _) = run.stopped().await;
    assert_eq!(last.stop_code, Some(StopCode::TaskFailedToStart));
    let reason = last.containers[1].reason.as_deref().unwrap();
    assert!(
        reason.starts_with("CannotStartContainerError:") && reason.contains("nobody-here"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_runner_restart() {
    let env = Env::new(8);
    let spec = env.task(
        18,
        vec![env.container("long", "trap 'exit 0' TERM; while true; do sleep 0.2; done")],
    );
    let mut run = env.start(&spec);
    run.status(TaskStatus::Running).await;
    let pid_file = env
        .runner
        .container_dir(&spec.task_id, "long")
        .join("container.pid");
    let pid_before = std::fs::read_to_string(&pid_file).unwrap();
    // The agent dies: its supervision is dropped, the shim keeps going.
    run.handle.abort();
    let _ = run.handle.await;
    let cfg = env.cfg.clone();
    drop(run.rx);
    let runner2 = Runner::new(cfg).unwrap();
    assert_eq!(
        runner2.existing_tasks().unwrap(),
        vec![spec.task_id.clone()]
    );
    assert_eq!(env.runc_ids(), vec![format!("{}-long", spec.task_id)]);
    let (tx, rx) = mpsc::channel(256);
    let r2 = runner2.clone();
    let s2 = spec.clone();
    let mut run2 = Running {
        rx,
        handle: tokio::spawn(async move { r2.run_task(s2, tx).await }),
        seen: Vec::new(),
    };
    let first = run2.status(TaskStatus::Running).await;
    assert_eq!(first.containers[0].last_status, "RUNNING");
    // Adopted, not restarted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.runc_ids(), vec![format!("{}-long", spec.task_id)]);
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid_before);
    // A second supervisor of the same task is refused.
    let (tx3, _rx3) = mpsc::channel(4);
    assert!(matches!(
        runner2.run_task(spec.clone(), tx3).await,
        Err(berth_agent::RunnerError::AlreadySupervised(_))
    ));
    runner2.stop_task(&spec.task_id, StopCode::UserInitiated, "after restart");
    let (last, _) = run2.stopped().await;
    assert_eq!(last.stop_code, Some(StopCode::UserInitiated));
    assert_eq!(last.containers[0].exit_code, Some(0), "{last:#?}");
    assert!(env.runc_ids().is_empty());
    assert!(runner2.existing_tasks().unwrap().is_empty());
    // Running it again only repeats the final report.
    let (tx4, mut rx4) = mpsc::channel(4);
    runner2.run_task(spec.clone(), tx4).await.unwrap();
    assert_eq!(rx4.recv().await.unwrap().last_status, TaskStatus::Stopped);
    runner2.forget_task(&spec.task_id).unwrap();
    assert!(!runner2.finished_dir(&spec.task_id).exists());
}

fn leftovers(env: &Env, ids: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let netns = String::from_utf8_lossy(&sh("ip", &["netns", "list"]).stdout).into_owned();
    let links = String::from_utf8_lossy(&sh("ip", &["-o", "link", "show"]).stdout).into_owned();
    for id in ids {
        if netns.contains(&format!("berth-{id}")) {
            found.push(format!("netns berth-{id}"));
        }
        let veth = format!("bv{}", &id[..10]);
        if links.contains(&format!(" {veth}@")) || links.contains(&format!(" {veth}:")) {
            found.push(format!("veth {veth}"));
        }
    }
    for c in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let parent = c.path().join(&env.cfg.cgroup_parent);
        if let Ok(rd) = std::fs::read_dir(&parent) {
            for e in rd.flatten() {
                if e.file_type().unwrap().is_dir() {
                    found.push(format!("cgroup {}", e.path().display()));
                }
            }
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in mountinfo.lines() {
        if l.contains(env.cfg.state_dir.to_str().unwrap()) {
            found.push(format!("mount {l}"));
        }
    }
    for id in env.runc_ids() {
        found.push(format!("runc container {id}"));
    }
    for e in std::fs::read_dir(env.cfg.state_dir.join("tasks"))
        .unwrap()
        .flatten()
    {
        found.push(format!("task dir {}", e.path().display()));
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leftovers_and_cleanup_of_half_created_sandboxes() {
    let env = Env::new(9);
    let mut specs = Vec::new();
    for i in 0..10u8 {
        let c = match i % 3 {
            0 => env.container("app", "echo ok"),
            1 => env.container("app", "exit 1"),
            _ => {
                let mut c = env.container("app", "");
                c.definition.entry_point = Some(vec!["/missing".into()]);
                c.definition.command = None;
                c
            }
        };
        specs.push(env.task(20 + i, vec![c]));
    }
    let runs: Vec<Running> = specs.iter().map(|s| env.start(s)).collect();
    for run in runs {
        let (last, _) = run.stopped().await;
        assert!(last.stop_code.is_some());
    }
    let ids: Vec<String> = specs.iter().map(|s| s.task_id.clone()).collect();
    let left = leftovers(&env, &ids);
    assert!(left.is_empty(), "leftovers after 10 tasks: {left:#?}");
    for id in &ids {
        env.runner.forget_task(id).unwrap();
    }

    // An orphan: a running task whose agent died.
    let orphan = env.task(40, vec![env.container("long", "exec sleep 1000")]);
    let mut run = env.start(&orphan);
    run.status(TaskStatus::Running).await;
    run.handle.abort();
    let _ = run.handle.await;
    // A half-created sandbox: netns, veth, a cgroup with a process, an
    // overlay mount and a directory, but no containers.
    let half = random_hex();
    let ns = format!("berth-{half}");
    let veth = format!("bv{}", &half[..10]);
    assert!(sh("ip", &["netns", "add", &ns]).status.success());
    assert!(sh(
        "ip",
        &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns]
    )
    .status
    .success());
    assert!(sh("ip", &["link", "set", &veth, "master", &env.cfg.bridge])
        .status
        .success());
    let cg = PathBuf::from("/sys/fs/cgroup/memory")
        .join(&env.cfg.cgroup_parent)
        .join(&half)
        .join("c");
    std::fs::create_dir_all(&cg).unwrap();
    let mut sleeper = Command::new("sleep").arg("1000").spawn().unwrap();
    std::fs::write(cg.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    let cdir = env
        .cfg
        .state_dir
        .join("tasks")
        .join(&half)
        .join("containers/c");
    for d in ["rootfs", "upper", "work"] {
        std::fs::create_dir_all(cdir.join(d)).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        env.layer.display(),
        cdir.join("upper").display(),
        cdir.join("work").display()
    );
    assert!(sh(
        "mount",
        &[
            "-t",
            "overlay",
            "overlay",
            "-o",
            &opts,
            cdir.join("rootfs").to_str().unwrap()
        ]
    )
    .status
    .success());
    // A kept task's directory stays.
    let kept = "keepme".to_string();
    std::fs::create_dir_all(env.cfg.state_dir.join("tasks").join(&kept)).unwrap();

    let all = vec![orphan.task_id.clone(), half.clone()];
    assert!(!leftovers(&env, &all).is_empty());
    let report = env
        .runner
        .cleanup_except(std::slice::from_ref(&kept))
        .unwrap();
    assert!(
        report
            .runc_containers
            .contains(&format!("{}-long", orphan.task_id)),
        "{report:#?}"
    );
    assert!(report.netns.contains(&ns), "{report:#?}");
    assert!(
        report.veths.contains(&veth) || !report.netns.is_empty(),
        "{report:#?}"
    );
    assert!(report.cgroups.contains(&half), "{report:#?}");
    assert!(!report.mounts.is_empty(), "{report:#?}");
    let _ = sleeper.wait();
    let mut left = leftovers(&env, &all);
    left.retain(|l| !l.ends_with("/keepme"));
    assert!(left.is_empty(), "leftovers after cleanup: {left:#?}");
    assert!(env.cfg.state_dir.join("tasks").join(&kept).exists());
    // Idempotent.
    let again = env
        .runner
        .cleanup_except(std::slice::from_ref(&kept))
        .unwrap();
    assert!(again.is_empty(), "{again:#?}");
}
