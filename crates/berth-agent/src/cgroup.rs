//! A task's cgroups (v1): `/sys/fs/cgroup/<controller>/<parent>/<task>`
//! sized to the task (memory limit, CFS quota, pids limit); runc puts each
//! container in `<parent>/<task>/<container>` below it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::RunnerError;
use crate::sys::{Sig, Sys};

/// The CFS period.
pub const CFS_PERIOD_US: u64 = 100_000;
/// The task's pids limit.
pub const PIDS_MAX: u32 = 4096;

/// The cgroup v1 hierarchies under a root (`/sys/fs/cgroup`).
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
    parent: String,
}

/// The CFS quota of `cpu` units (1024 per core).
pub fn cfs_quota_us(cpu: u32) -> u64 {
    u64::from(cpu) * CFS_PERIOD_US / 1024
}

impl Cgroups {
    /// Tasks' cgroups under `root/<controller>/<parent>`.
    pub fn new(root: impl Into<PathBuf>, parent: &str) -> Self {
        Self {
            root: root.into(),
            parent: parent.trim_matches('/').to_string(),
        }
    }

    /// The cgroup v1 controllers mounted under the root (including
    /// named and unified hierarchies runc also populates).
    pub fn hierarchies(&self, sys: &dyn Sys) -> Result<Vec<PathBuf>, RunnerError> {
        Ok(sys
            .subdirs(&self.root)
            .map_err(|e| RunnerError::io(&self.root, e))?
            .into_iter()
            .map(|n| self.root.join(n))
            .collect())
    }

    /// The task's cgroup in one controller.
    pub fn task_dir(&self, controller: &str, task_id: &str) -> PathBuf {
        self.root.join(controller).join(&self.parent).join(task_id)
    }

    /// The cgroupsPath runc gets for a container.
    pub fn container_path(&self, task_id: &str, container: &str) -> String {
        format!("/{}/{}/{}", self.parent, task_id, container)
    }

    /// The container's memory cgroup directory (for OOM watching).
    pub fn container_memory_dir(&self, task_id: &str, container: &str) -> PathBuf {
        self.task_dir("memory", task_id).join(container)
    }

    /// Whether the host accounts swap (`memory.memsw.limit_in_bytes`).
    pub fn swap_accounting(&self, sys: &dyn Sys) -> bool {
        sys.exists(&self.root.join("memory").join("memory.memsw.limit_in_bytes"))
    }

    fn write(sys: &dyn Sys, path: &Path, value: &str) -> Result<(), RunnerError> {
        sys.write(path, value).map_err(|e| RunnerError::io(path, e))
    }

    /// Creates the task's memory, cpu and pids cgroups and sizes them.
    /// Idempotent.
    pub fn setup(
        &self,
        sys: &dyn Sys,
        task_id: &str,
        cpu: u32,
        memory_mib: u32,
    ) -> Result<(), RunnerError> {
        let mem = self.task_dir("memory", task_id);
        sys.create_dir_all(&mem)
            .map_err(|e| RunnerError::io(&mem, e))?;
        let bytes = (u64::from(memory_mib) * 1024 * 1024).to_string();
        Self::write(sys, &mem.join("memory.limit_in_bytes"), &bytes)?;
        let memsw = mem.join("memory.memsw.limit_in_bytes");
        if sys.exists(&memsw) || self.swap_accounting(sys) {
            Self::write(sys, &memsw, &bytes)?;
        }
        let cpu_dir = self.task_dir("cpu", task_id);
        sys.create_dir_all(&cpu_dir)
            .map_err(|e| RunnerError::io(&cpu_dir, e))?;
        Self::write(
            sys,
            &cpu_dir.join("cpu.cfs_period_us"),
            &CFS_PERIOD_US.to_string(),
        )?;
        if cpu > 0 {
            Self::write(
                sys,
                &cpu_dir.join("cpu.cfs_quota_us"),
                &cfs_quota_us(cpu).to_string(),
            )?;
            Self::write(sys, &cpu_dir.join("cpu.shares"), &cpu.max(2).to_string())?;
        }
        let pids = self.task_dir("pids", task_id);
        sys.create_dir_all(&pids)
            .map_err(|e| RunnerError::io(&pids, e))?;
        Self::write(sys, &pids.join("pids.max"), &PIDS_MAX.to_string())?;
        Ok(())
    }

    /// The task ids that have a cgroup in some controller.
    pub fn list_tasks(&self, sys: &dyn Sys) -> Result<Vec<String>, RunnerError> {
        let mut ids = Vec::new();
        for h in self.hierarchies(sys)? {
            let dir = h.join(&self.parent);
            for id in sys.subdirs(&dir).map_err(|e| RunnerError::io(&dir, e))? {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Kills what is left in the task's cgroups and removes them, bottom
    /// up, in every controller. Idempotent.
    pub fn teardown(&self, sys: &dyn Sys, task_id: &str) -> Result<(), RunnerError> {
        let dirs: Vec<PathBuf> = self
            .hierarchies(sys)?
            .into_iter()
            .map(|h| h.join(&self.parent).join(task_id))
            .filter(|d| sys.exists(d))
            .collect();
        if dirs.is_empty() {
            return Ok(());
        }
        let mut all = Vec::new();
        for d in &dirs {
            collect_tree(sys, d, &mut all);
        }
        // Deepest first.
        all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut left = Vec::new();
            for d in &all {
                if !sys.exists(d) {
                    continue;
                }
                if let Ok(procs) = sys.read(&d.join("cgroup.procs")) {
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        let _ = sys.kill(pid, Sig::Kill);
                    }
                }
                if let Err(e) = sys.remove_dir(d) {
                    left.push((d.clone(), e));
                }
            }
            match left.into_iter().next() {
                None => return Ok(()),
                Some((d, e)) if Instant::now() > deadline => return Err(RunnerError::io(d, e)),
                Some(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

fn collect_tree(sys: &dyn Sys, dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    for sub in sys.subdirs(dir).unwrap_or_default() {
        collect_tree(sys, &dir.join(sub), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    #[test]
    fn quota_from_cpu_units() {
        assert_eq!(cfs_quota_us(1024), 100_000);
        assert_eq!(cfs_quota_us(256), 25_000);
        assert_eq!(cfs_quota_us(4096), 400_000);
    }

    #[test]
    fn setup_sizes_the_task() {
        let sys = FakeSys::default();
        sys.files.lock().unwrap().insert(
            PathBuf::from("/cg/memory/memory.memsw.limit_in_bytes"),
            String::new(),
        );
        let cg = Cgroups::new("/cg", "berth");
        cg.setup(&sys, "t1", 512, 64).unwrap();
        let f = sys.files.lock().unwrap();
        let get = |p: &str| f.get(Path::new(p)).cloned().unwrap();
        assert_eq!(get("/cg/memory/berth/t1/memory.limit_in_bytes"), "67108864");
        assert_eq!(
            get("/cg/memory/berth/t1/memory.memsw.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(get("/cg/cpu/berth/t1/cpu.cfs_period_us"), "100000");
        assert_eq!(get("/cg/cpu/berth/t1/cpu.cfs_quota_us"), "50000");
        assert_eq!(get("/cg/pids/berth/t1/pids.max"), "4096");
        assert_eq!(cg.container_path("t1", "web"), "/berth/t1/web");
    }

    #[test]
    fn teardown_kills_then_removes_bottom_up() {
        let sys = FakeSys::default();
        for d in [
            "/cg/memory/berth/t1/web",
            "/cg/cpu/berth/t1",
            "/cg/pids/berth/t2",
        ] {
            sys.create_dir_all(Path::new(d)).unwrap();
        }
        sys.files.lock().unwrap().insert(
            PathBuf::from("/cg/memory/berth/t1/web/cgroup.procs"),
            "42\n43\n".into(),
        );
        let cg = Cgroups::new("/cg", "berth");
        assert_eq!(cg.list_tasks(&sys).unwrap(), vec!["t1", "t2"]);
        sys.calls.lock().unwrap().clear();
        cg.teardown(&sys, "t1").unwrap();
        let calls = sys.calls();
        let pos = |s: &str| calls.iter().position(|c| c == s).unwrap();
        assert!(pos("kill 42 KILL") < pos("rmdir /cg/memory/berth/t1/web"));
        assert!(pos("rmdir /cg/memory/berth/t1/web") < pos("rmdir /cg/memory/berth/t1"));
        assert!(calls.contains(&"rmdir /cg/cpu/berth/t1".to_string()));
        assert!(!calls.iter().any(|c| c.contains("t2")));
        assert_eq!(cg.list_tasks(&sys).unwrap(), vec!["t2"]);
    }
}
