//! The runc-backed [`TaskExecutor`]: the daemon's view of the [`Runner`].

use std::path::PathBuf;

use async_trait::async_trait;
use berth_core::agent::TaskStateReport;
use berth_core::task::StopCode;
use tokio::sync::mpsc;

use crate::daemon::{TaskExecutor, TaskLaunch};
use crate::{ContainerSpec, Runner, TaskSpec};

/// Runs tasks with [`Runner`].
pub struct RunnerExecutor {
    runner: Runner,
}

impl RunnerExecutor {
    /// Wraps a runner.
    pub fn new(runner: Runner) -> Self {
        Self { runner }
    }
}

fn spec(l: TaskLaunch) -> TaskSpec {
    TaskSpec {
        task_id: l.task_id,
        cpu: l.cpu,
        memory: l.memory,
        ip: l.ip,
        prefix_len: l.prefix_len,
        gateway: l.gateway,
        hostname: l.hostname,
        containers: l
            .containers
            .into_iter()
            .map(|c| ContainerSpec {
                name: c.name,
                image: c.image,
                image_digest: c.image_digest,
                layers: c.layers,
                image_config: c.image_config,
                definition: c.definition,
            })
            .collect(),
    }
}

#[async_trait]
impl TaskExecutor for RunnerExecutor {
    async fn run_task(
        &self,
        launch: TaskLaunch,
        events: mpsc::Sender<TaskStateReport>,
    ) -> Result<(), String> {
        self.runner
            .run_task(spec(launch), events)
            .await
            .map_err(|e| e.to_string())
    }

    fn stop_task(&self, task_id: &str, code: StopCode, reason: &str) {
        self.runner.stop_task(task_id, code, reason);
    }

    fn existing_tasks(&self) -> Vec<String> {
        match self.runner.existing_tasks() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "listing existing task sandboxes failed");
                Vec::new()
            }
        }
    }

    fn cleanup_except(&self, keep: &[String]) {
        match self.runner.cleanup_except(keep) {
            Ok(r) if r.is_empty() => {}
            Ok(r) => tracing::info!(report = ?r, "removed what earlier runs left behind"),
            Err(e) => tracing::warn!(error = %e, "cleaning up leftovers failed"),
        }
    }

    fn log_files(&self, task_id: &str) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        for base in [
            self.runner.task_dir(task_id).join("containers"),
            self.runner.finished_dir(task_id),
        ] {
            let Ok(rd) = std::fs::read_dir(&base) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().is_dir() {
                    out.push((name.clone(), self.runner.container_log(task_id, &name)));
                } else if let Some(c) = name.strip_suffix(".log.jsonl") {
                    out.push((c.to_string(), e.path()));
                }
            }
        }
        out
    }

    fn finished_report(&self, task_id: &str) -> Option<TaskStateReport> {
        let data = std::fs::read(self.runner.finished_dir(task_id).join("report.json")).ok()?;
        serde_json::from_slice(&data).ok()
    }

    fn forget_logs(&self, task_id: &str) {
        if let Err(e) = self.runner.forget_task(task_id) {
            tracing::warn!(task = task_id, error = %e, "forgetting a finished task failed");
        }
    }
}
