//! What the runner is told: its own configuration ([`RunnerConfig`]) and
//! one task to run ([`TaskSpec`], [`ContainerSpec`]).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use berth_core::agent::ContainerOverride;
use berth_core::taskdef::{ContainerDefinition, KeyValuePair};
use berth_oci::manifest::RunConfig;
use serde::{Deserialize, Serialize};

use crate::error::RunnerError;

/// How the runner is set up on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerConfig {
    /// The runner's directory, e.g. `DATA_DIR/agent`: task sandboxes live in
    /// `tasks/<id>`, runc's state in `runc`, finished tasks' logs in
    /// `finished/<id>`.
    pub state_dir: PathBuf,
    /// The OCI runtime binary.
    pub runc: PathBuf,
    /// The host bridge the tasks' veths attach to (`berth0`).
    pub bridge: String,
    /// The bridge's address, the tasks' gateway (`10.213.1.1/24`).
    pub gateway_cidr: String,
    /// The cgroup (in every controller) under which tasks' cgroups live.
    pub cgroup_parent: String,
    /// The binary run as the shim: `SHIM_EXE shim start <container dir>`.
    pub shim_exe: PathBuf,
}

impl RunnerConfig {
    /// A configuration with the defaults: runc at `/usr/sbin/runc`, bridge
    /// `berth0` at `10.213.1.1/24`, cgroup parent `berth`.
    pub fn new(state_dir: impl Into<PathBuf>, shim_exe: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            runc: PathBuf::from("/usr/sbin/runc"),
            bridge: "berth0".into(),
            gateway_cidr: "10.213.1.1/24".into(),
            cgroup_parent: "berth".into(),
            shim_exe: shim_exe.into(),
        }
    }
}

/// One task to run on this host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The task id; names the sandbox (netns `berth-<id>`, cgroups,
    /// directories). Letters, digits, `-` and `_`, at most 64.
    pub task_id: String,
    /// Task CPU units (1024 per core).
    pub cpu: u32,
    /// Task memory, MiB (the task cgroup's hard limit).
    pub memory: u32,
    /// The task's address.
    pub ip: Ipv4Addr,
    /// The prefix length of the host's task subnet.
    pub prefix_len: u8,
    /// The default gateway (the bridge's address).
    pub gateway: Ipv4Addr,
    /// The containers' hostname.
    pub hostname: String,
    /// The containers, in definition order.
    pub containers: Vec<ContainerSpec>,
}

/// One container of a task, with its image already on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The container's name (unique in the task).
    pub name: String,
    /// The image reference, as given.
    pub image: String,
    /// The manifest digest pulled.
    pub image_digest: Option<String>,
    /// Unpacked layer directories, base first (overlayfs lower dirs; they
    /// hold overlay-format whiteouts).
    pub layers: Vec<PathBuf>,
    /// The image's run configuration (Entrypoint, Cmd, Env, WorkingDir, User).
    pub image_config: RunConfig,
    /// The container definition, after RunTask overrides.
    pub definition: ContainerDefinition,
}

impl ContainerSpec {
    /// Whether the task stops when this container stops (default true).
    pub fn essential(&self) -> bool {
        self.definition.essential.unwrap_or(true)
    }
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl TaskSpec {
    /// Checks what the sandbox code relies on: safe ids and names, unique
    /// container names, sane sizes.
    pub fn validate(&self) -> Result<(), RunnerError> {
        let bad = |reason: String| RunnerError::InvalidSpec {
            task_id: self.task_id.clone(),
            reason,
        };
        if !valid_name(&self.task_id, 64) {
            return Err(bad(
                "the task id must be 1-64 letters, digits, '-' or '_'".into()
            ));
        }
        if self.containers.is_empty() {
            return Err(bad("the task has no containers".into()));
        }
        if self.memory < 6 {
            return Err(bad(format!("memory {} MiB is below 6 MiB", self.memory)));
        }
        if self.prefix_len == 0 || self.prefix_len > 30 {
            return Err(bad(format!(
                "prefix length {} is not in 1-30",
                self.prefix_len
            )));
        }
        if self.hostname.is_empty()
            || self.hostname.len() > 63
            || !self
                .hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(bad(format!("hostname {:?} is not valid", self.hostname)));
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.containers {
            if !valid_name(&c.name, 255) {
                return Err(bad(format!(
                    "container name {:?} must be 1-255 letters, digits, '-' or '_'",
                    c.name
                )));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(bad(format!("container name {} is used twice", c.name)));
            }
            for l in &c.layers {
                if !l.is_absolute() {
                    return Err(bad(format!(
                        "container {}: layer {} is not an absolute path",
                        c.name,
                        l.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A container definition with RunTask's override applied: `command`
/// replaces, `environment` adds or replaces by name, `cpu`, `memory` and
/// `memoryReservation` replace.
pub fn apply_override(
    def: &ContainerDefinition,
    ov: Option<&ContainerOverride>,
) -> ContainerDefinition {
    let mut out = def.clone();
    let Some(ov) = ov else {
        return out;
    };
    if let Some(cmd) = &ov.command {
        out.command = Some(cmd.clone());
    }
    for kv in &ov.environment {
        let Some(name) = kv.name.as_deref() else {
            continue;
        };
        match out
            .environment
            .iter_mut()
            .find(|e| e.name.as_deref() == Some(name))
        {
            Some(e) => e.value = kv.value.clone(),
            None => out.environment.push(KeyValuePair {
                name: Some(name.to_string()),
                value: kv.value.clone(),
            }),
        }
    }
    if let Some(cpu) = ov.cpu {
        out.cpu = cpu;
    }
    if ov.memory.is_some() {
        out.memory = ov.memory;
    }
    if ov.memory_reservation.is_some() {
        out.memory_reservation = ov.memory_reservation;
    }
    out
}

/// The hostname a task gets from its address, as on EC2: `ip-10-213-1-5`.
pub fn default_hostname(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("ip-{}-{}-{}-{}", o[0], o[1], o[2], o[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(n: &str, v: &str) -> KeyValuePair {
        KeyValuePair {
            name: Some(n.into()),
            value: Some(v.into()),
        }
    }

    #[test]
    fn overrides_replace_and_merge() {
        let def = ContainerDefinition {
            command: Some(vec!["a".into()]),
            environment: vec![kv("A", "1"), kv("B", "2")],
            cpu: 128,
            memory: Some(256),
            ..Default::default()
        };
        assert_eq!(apply_override(&def, None), def);
        let ov = ContainerOverride {
            name: "c".into(),
            command: Some(vec!["b".into(), "c".into()]),
            environment: vec![kv("B", "two"), kv("C", "3")],
            cpu: Some(512),
            memory: None,
            memory_reservation: Some(64),
        };
        let out = apply_override(&def, Some(&ov));
        assert_eq!(out.command, Some(vec!["b".into(), "c".into()]));
        assert_eq!(
            out.environment,
            vec![kv("A", "1"), kv("B", "two"), kv("C", "3")]
        );
        assert_eq!(
            (out.cpu, out.memory, out.memory_reservation),
            (512, Some(256), Some(64))
        );
    }

    #[test]
    fn hostnames_and_validation() {
        let ip = Ipv4Addr::new(10, 213, 1, 5);
        assert_eq!(default_hostname(ip), "ip-10-213-1-5");
        let mut spec = TaskSpec {
            task_id: "abc".into(),
            cpu: 256,
            memory: 512,
            ip,
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 213, 1, 1),
            hostname: default_hostname(ip),
            containers: vec![ContainerSpec {
                name: "web".into(),
                image: "i".into(),
                image_digest: None,
                layers: vec![PathBuf::from("/l")],
                image_config: Default::default(),
                definition: Default::default(),
            }],
        };
        spec.validate().unwrap();
        spec.task_id = "../etc".into();
        assert!(spec.validate().unwrap_err().to_string().contains("task id"));
        spec.task_id = "abc".into();
        spec.containers.push(spec.containers[0].clone());
        assert!(spec
            .validate()
            .unwrap_err()
            .to_string()
            .contains("used twice"));
        spec.containers.pop();
        spec.containers[0].layers = vec![PathBuf::from("relative")];
        assert!(spec.validate().is_err());
    }
}
