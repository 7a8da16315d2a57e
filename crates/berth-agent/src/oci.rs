//! The OCI runtime spec (`config.json`) of a container: what `runc spec`
//! generates, hardened the way Docker and Fargate do, with the container
//! definition merged over the image's run configuration.
//!
//! Merge semantics (Docker's, which ECS inherits):
//! * a definition `entryPoint` replaces the image ENTRYPOINT *and* drops the
//!   image CMD; a definition `command` replaces the image CMD;
//! * `environment` overlays the image Env by name;
//! * `workingDirectory`, else the image WorkingDir, else `/`;
//! * `user`, else the image User, resolved to numeric ids ([`crate::user`]).

use std::path::Path;

use berth_core::taskdef::{ContainerDefinition, HealthCheck};
use berth_oci::manifest::RunConfig;
use serde_json::{json, Value};

use crate::error::SpecError;
use crate::spec::ContainerSpec;
use crate::user::ResolvedUser;

/// The PATH a container gets when its image sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability Linux knows (for `ALL`).
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Syscalls the default seccomp profile denies with EPERM.
pub const DENIED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// runc's default masked paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// runc's default read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Fargate's default open-files limit.
pub const DEFAULT_NOFILE: u64 = 65535;

/// The process arguments: the definition over the image (Docker's merge).
pub fn process_args(
    container: &str,
    def: &ContainerDefinition,
    image: &RunConfig,
) -> Result<Vec<String>, SpecError> {
    let (entrypoint, cmd) = match &def.entry_point {
        Some(ep) if !ep.is_empty() => (ep.clone(), def.command.clone().unwrap_or_default()),
        _ => (
            image.entrypoint.clone().unwrap_or_default(),
            match &def.command {
                Some(c) if !c.is_empty() => c.clone(),
                _ => image.cmd.clone().unwrap_or_default(),
            },
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(SpecError::NoCommand(container.into()));
    }
    Ok(args)
}

/// The environment: the image's, overlaid by the definition's by name,
/// with PATH and HOSTNAME set when absent.
pub fn process_env(def: &ContainerDefinition, image: &RunConfig, hostname: &str) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |name: &str, value: &str, env: &mut Vec<(String, String)>| {
        if let Some(e) = env.iter_mut().find(|(n, _)| n == name) {
            e.1 = value.to_string();
        } else {
            env.push((name.to_string(), value.to_string()));
        }
    };
    if !image.env.iter().flatten().any(|e| e.starts_with("PATH=")) {
        set("PATH", &DEFAULT_PATH[5..], &mut env);
    }
    set("HOSTNAME", hostname, &mut env);
    for e in image.env.iter().flatten() {
        let (n, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        if !n.is_empty() {
            set(n, v, &mut env);
        }
    }
    for kv in &def.environment {
        if let Some(n) = kv.name.as_deref().filter(|n| !n.is_empty()) {
            set(n, kv.value.as_deref().unwrap_or(""), &mut env);
        }
    }
    env.into_iter().map(|(n, v)| format!("{n}={v}")).collect()
}

/// The working directory.
pub fn process_cwd(def: &ContainerDefinition, image: &RunConfig) -> String {
    let cwd = def
        .working_directory
        .as_deref()
        .filter(|s| !s.is_empty())
        .or(image.working_dir.as_deref().filter(|s| !s.is_empty()))
        .unwrap_or("/");
    if cwd.starts_with('/') {
        cwd.to_string()
    } else {
        format!("/{cwd}")
    }
}

/// The user string to resolve: the definition's, else the image's.
pub fn user_string<'a>(def: &'a ContainerDefinition, image: &'a RunConfig) -> Option<&'a str> {
    def.user
        .as_deref()
        .filter(|s| !s.is_empty())
        .or(image.user.as_deref().filter(|s| !s.is_empty()))
}

fn cap_name(container: &str, name: &str) -> Result<String, SpecError> {
    let up = name.trim().to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(SpecError::UnknownCapability {
            container: container.into(),
            name: name.into(),
        })
    }
}

/// The capability set: Docker's default, `linuxParameters.capabilities`
/// drop (`ALL` empties it) then add (`ALL` fills it).
pub fn capabilities(container: &str, def: &ContainerDefinition) -> Result<Vec<String>, SpecError> {
    let mut caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    let kc = def
        .linux_parameters
        .as_ref()
        .and_then(|l| l.capabilities.as_ref());
    if let Some(kc) = kc {
        for d in kc.drop.iter().flatten() {
            if d.eq_ignore_ascii_case("ALL") {
                caps.clear();
            } else {
                let d = cap_name(container, d)?;
                caps.retain(|c| *c != d);
            }
        }
        for a in kc.add.iter().flatten() {
            if a.eq_ignore_ascii_case("ALL") {
                caps = ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect();
            } else {
                let a = cap_name(container, a)?;
                if !caps.contains(&a) {
                    caps.push(a);
                }
            }
        }
    }
    Ok(caps)
}

/// The rlimits: Fargate's nofile default (at most `host_nofile`, the
/// hard limit the runtime itself has: raising it needs CAP_SYS_RESOURCE),
/// overridden by `ulimits`.
pub fn rlimits(
    container: &str,
    def: &ContainerDefinition,
    host_nofile: u64,
) -> Result<Vec<Value>, SpecError> {
    let nofile = DEFAULT_NOFILE.min(host_nofile);
    let mut out: Vec<(String, u64, u64)> = vec![("RLIMIT_NOFILE".into(), nofile, nofile)];
    for u in def.ulimits.iter().flatten() {
        let name = u.name.as_deref().unwrap_or("");
        let ty = match name.to_ascii_lowercase().as_str() {
            "core" => "RLIMIT_CORE",
            "cpu" => "RLIMIT_CPU",
            "data" => "RLIMIT_DATA",
            "fsize" => "RLIMIT_FSIZE",
            "locks" => "RLIMIT_LOCKS",
            "memlock" => "RLIMIT_MEMLOCK",
            "msgqueue" => "RLIMIT_MSGQUEUE",
            "nice" => "RLIMIT_NICE",
            "nofile" => "RLIMIT_NOFILE",
            "nproc" => "RLIMIT_NPROC",
            "rss" => "RLIMIT_RSS",
            "rtprio" => "RLIMIT_RTPRIO",
            "rttime" => "RLIMIT_RTTIME",
            "sigpending" => "RLIMIT_SIGPENDING",
            "stack" => "RLIMIT_STACK",
            _ => {
                return Err(SpecError::UnknownUlimit {
                    container: container.into(),
                    name: name.into(),
                })
            }
        };
        // -1 means unlimited.
        let conv = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(u64::MAX));
        let hard = conv(u.hard_limit)
            .or(conv(u.soft_limit))
            .unwrap_or(u64::MAX);
        let soft = conv(u.soft_limit).unwrap_or(hard).min(hard);
        out.retain(|(t, _, _)| t != ty);
        out.push((ty.into(), soft, hard));
    }
    Ok(out
        .into_iter()
        .map(|(t, soft, hard)| json!({"type": t, "soft": soft, "hard": hard}))
        .collect())
}

/// Namespace flags a container may not pass to `clone` (it would get a new
/// user namespace with a full capability set in it, a common path to kernel
/// attack surface such as nf_tables).
const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

/// The default seccomp profile: allow, with [`DENIED_SYSCALLS`] failing
/// with EPERM, `clone` with any namespace flag failing with EPERM, and
/// `clone3` answering ENOSYS (its flags cannot be inspected, so libc falls
/// back to `clone`). `ptrace` is allowed only when the container adds
/// `SYS_PTRACE` (the one capability Fargate lets a task add).
pub fn seccomp_profile(allow_ptrace: bool) -> Value {
    let mut syscalls = vec![json!({
        "names": DENIED_SYSCALLS,
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": 1
    })];
    if !allow_ptrace {
        syscalls.push(json!({"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}));
    }
    for flag in CLONE_NAMESPACE_FLAGS {
        syscalls.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]
        }));
    }
    syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}));
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    })
}

/// The argv a health check runs (`None` for `NONE` or an empty check).
pub fn health_command(hc: &HealthCheck) -> Option<Vec<String>> {
    let (kind, rest) = hc.command.split_first()?;
    match kind.as_str() {
        "CMD" if !rest.is_empty() => Some(rest.to_vec()),
        "CMD-SHELL" if !rest.is_empty() => {
            Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
        }
        "NONE" => None,
        // Docker takes a bare command as CMD-SHELL.
        _ if !kind.starts_with("CMD") => {
            Some(vec!["/bin/sh".into(), "-c".into(), hc.command.join(" ")])
        }
        _ => None,
    }
}

/// Everything [`build_config`] needs besides the container spec.
#[derive(Debug, Clone)]
pub struct BundleParams<'a> {
    /// The task's hostname.
    pub hostname: &'a str,
    /// The merged root filesystem.
    pub rootfs: &'a Path,
    /// `/var/run/netns/berth-<id>`.
    pub netns_path: &'a Path,
    /// `/<parent>/<task>/<container>`.
    pub cgroups_path: &'a str,
    /// Generated `/etc/hosts`.
    pub etc_hosts: &'a Path,
    /// Generated `/etc/hostname`.
    pub etc_hostname: &'a Path,
    /// Generated `/etc/resolv.conf`.
    pub etc_resolv: &'a Path,
    /// The resolved user.
    pub user: &'a ResolvedUser,
    /// The host's hard open-files limit (caps the default nofile).
    pub host_nofile: u64,
    /// Whether the host accounts swap (`memory.memsw.*` exists): then a
    /// container's memory limit also caps its swap.
    pub swap_accounting: bool,
}

fn mib(v: i64) -> i64 {
    v.saturating_mul(1024 * 1024)
}

/// The container's `config.json`.
pub fn build_config(c: &ContainerSpec, p: &BundleParams<'_>) -> Result<Value, SpecError> {
    let def = &c.definition;
    let args = process_args(&c.name, def, &c.image_config)?;
    let env = process_env(def, &c.image_config, p.hostname);
    let cwd = process_cwd(def, &c.image_config);
    let caps = capabilities(&c.name, def)?;
    let rlimits = rlimits(&c.name, def, p.host_nofile)?;
    // Like Docker: a non-root user keeps the bounding set only.
    let (effective, permitted) = if p.user.uid == 0 {
        (caps.clone(), caps.clone())
    } else {
        (Vec::new(), Vec::new())
    };
    let mut user = json!({"uid": p.user.uid, "gid": p.user.gid});
    if !p.user.additional_gids.is_empty() {
        user["additionalGids"] = json!(p.user.additional_gids);
    }
    let bind = |dest: &str, src: &Path| {
        json!({
            "destination": dest,
            "type": "bind",
            "source": src,
            "options": ["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"]
        })
    };
    let mounts = json!([
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        bind("/etc/hosts", p.etc_hosts),
        bind("/etc/hostname", p.etc_hostname),
        bind("/etc/resolv.conf", p.etc_resolv),
    ]);
    let mut resources = json!({
        "devices": [{"allow": false, "access": "rwm"}]
    });
    let mut memory = serde_json::Map::new();
    if let Some(m) = def.memory.filter(|m| *m > 0) {
        memory.insert("limit".into(), json!(mib(m)));
        if p.swap_accounting {
            memory.insert("swap".into(), json!(mib(m)));
        }
    }
    if let Some(r) = def.memory_reservation.filter(|m| *m > 0) {
        memory.insert("reservation".into(), json!(mib(r)));
    }
    if !memory.is_empty() {
        resources["memory"] = Value::Object(memory);
    }
    if def.cpu > 0 {
        resources["cpu"] = json!({"shares": def.cpu.max(2)});
    }
    Ok(json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": user,
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps,
                "effective": effective,
                "permitted": permitted,
            },
            "rlimits": rlimits,
            "noNewPrivileges": true,
        },
        "root": {
            "path": p.rootfs,
            "readonly": def.readonly_root_filesystem.unwrap_or(false),
        },
        "hostname": p.hostname,
        "mounts": mounts,
        "annotations": {
            "berth.container-name": c.name,
        },
        "linux": {
            "cgroupsPath": p.cgroups_path,
            "resources": resources,
            "namespaces": [
                {"type": "pid"},
                {"type": "network", "path": p.netns_path},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
            ],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "seccomp": seccomp_profile(caps.iter().any(|c| c == "CAP_SYS_PTRACE")),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::taskdef::{KernelCapabilities, KeyValuePair, LinuxParameters, Ulimit};
    use std::path::PathBuf;

    fn image() -> RunConfig {
        RunConfig {
            user: None,
            exposed_ports: None,
            env: Some(vec![
                "PATH=/app/bin:/bin".into(),
                "A=image".into(),
                "B=image".into(),
            ]),
            entrypoint: Some(vec!["/entry".into(), "--flag".into()]),
            cmd: Some(vec!["serve".into()]),
            working_dir: Some("/app".into()),
            labels: None,
            stop_signal: None,
        }
    }

    fn spec(def: ContainerDefinition) -> ContainerSpec {
        ContainerSpec {
            name: "web".into(),
            image: "img".into(),
            image_digest: None,
            layers: vec![],
            image_config: image(),
            definition: def,
        }
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_follow_docker_merge() {
        let img = image();
        let d = ContainerDefinition::default();
        assert_eq!(
            process_args("c", &d, &img).unwrap(),
            strs(&["/entry", "--flag", "serve"])
        );
        let d = ContainerDefinition {
            command: Some(strs(&["run", "x"])),
            ..Default::default()
        };
        assert_eq!(
            process_args("c", &d, &img).unwrap(),
            strs(&["/entry", "--flag", "run", "x"])
        );
        // A definition entryPoint drops the image CMD.
        let d = ContainerDefinition {
            entry_point: Some(strs(&["/bin/sh", "-c"])),
            ..Default::default()
        };
        assert_eq!(
            process_args("c", &d, &img).unwrap(),
            strs(&["/bin/sh", "-c"])
        );
        let d = ContainerDefinition {
            entry_point: Some(strs(&["/bin/sh", "-c"])),
            command: Some(strs(&["echo hi"])),
            ..Default::default()
        };
        assert_eq!(
            process_args("c", &d, &img).unwrap(),
            strs(&["/bin/sh", "-c", "echo hi"])
        );
        let empty = RunConfig {
            entrypoint: None,
            cmd: None,
            ..image()
        };
        assert_eq!(
            process_args("c", &ContainerDefinition::default(), &empty),
            Err(SpecError::NoCommand("c".into()))
        );
    }

    #[test]
    fn env_overlays_by_name() {
        let d = ContainerDefinition {
            environment: vec![
                KeyValuePair {
                    name: Some("B".into()),
                    value: Some("def".into()),
                },
                KeyValuePair {
                    name: Some("C".into()),
                    value: None,
                },
            ],
            ..Default::default()
        };
        let env = process_env(&d, &image(), "h1");
        assert_eq!(
            env,
            strs(&[
                "HOSTNAME=h1",
                "PATH=/app/bin:/bin",
                "A=image",
                "B=def",
                "C="
            ])
        );
        let bare = RunConfig {
            env: None,
            ..image()
        };
        let env = process_env(&ContainerDefinition::default(), &bare, "h");
        assert_eq!(env[0], DEFAULT_PATH);
    }

    #[test]
    fn cwd_prefers_definition() {
        let d = ContainerDefinition {
            working_directory: Some("/srv".into()),
            ..Default::default()
        };
        assert_eq!(process_cwd(&d, &image()), "/srv");
        assert_eq!(
            process_cwd(&ContainerDefinition::default(), &image()),
            "/app"
        );
        let bare = RunConfig {
            working_dir: Some(String::new()),
            ..image()
        };
        assert_eq!(process_cwd(&ContainerDefinition::default(), &bare), "/");
    }

    #[test]
    fn capabilities_add_and_drop() {
        let d = ContainerDefinition::default();
        assert_eq!(capabilities("c", &d).unwrap().len(), 14);
        let with = |add: &[&str], drop: &[&str]| ContainerDefinition {
            linux_parameters: Some(LinuxParameters {
                capabilities: Some(KernelCapabilities {
                    add: Some(strs(add)),
                    drop: Some(strs(drop)),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let caps = capabilities("c", &with(&["NET_ADMIN"], &["NET_RAW", "cap_mknod"])).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
        assert!(!caps.contains(&"CAP_MKNOD".to_string()));
        assert_eq!(
            capabilities("c", &with(&["SYS_PTRACE"], &["ALL"])).unwrap(),
            strs(&["CAP_SYS_PTRACE"])
        );
        assert!(capabilities("c", &with(&["FLY"], &[])).is_err());
    }

    #[test]
    fn rlimits_from_ulimits() {
        let d = ContainerDefinition {
            ulimits: Some(vec![
                Ulimit {
                    name: Some("nofile".into()),
                    soft_limit: Some(1024),
                    hard_limit: Some(4096),
                },
                Ulimit {
                    name: Some("core".into()),
                    soft_limit: Some(0),
                    hard_limit: Some(0),
                },
            ]),
            ..Default::default()
        };
        let r = rlimits("c", &d, u64::MAX).unwrap();
        assert_eq!(
            r,
            vec![
                json!({"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}),
                json!({"type": "RLIMIT_CORE", "soft": 0, "hard": 0}),
            ]
        );
        assert_eq!(
            rlimits("c", &ContainerDefinition::default(), u64::MAX).unwrap(),
            vec![json!({"type": "RLIMIT_NOFILE", "soft": 65535, "hard": 65535})]
        );
        assert_eq!(
            rlimits("c", &ContainerDefinition::default(), 20000).unwrap(),
            vec![json!({"type": "RLIMIT_NOFILE", "soft": 20000, "hard": 20000})]
        );
        let bad = ContainerDefinition {
            ulimits: Some(vec![Ulimit {
                name: Some("bogus".into()),
                soft_limit: None,
                hard_limit: None,
            }]),
            ..Default::default()
        };
        assert!(rlimits("c", &bad, u64::MAX).is_err());
    }

    #[test]
    fn health_commands() {
        let hc = |c: &[&str]| HealthCheck {
            command: strs(c),
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
        };
        assert_eq!(
            health_command(&hc(&["CMD", "/bin/true", "x"])),
            Some(strs(&["/bin/true", "x"]))
        );
        assert_eq!(
            health_command(&hc(&["CMD-SHELL", "wget -q -O- http://127.0.0.1/"])),
            Some(strs(&["/bin/sh", "-c", "wget -q -O- http://127.0.0.1/"]))
        );
        assert_eq!(health_command(&hc(&["NONE"])), None);
        assert_eq!(health_command(&hc(&[])), None);
    }

    #[test]
    fn full_config_is_hardened() {
        let def = ContainerDefinition {
            readonly_root_filesystem: Some(true),
            memory: Some(128),
            memory_reservation: Some(64),
            cpu: 256,
            ..Default::default()
        };
        let c = spec(def);
        let user = ResolvedUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![5],
        };
        let rootfs = PathBuf::from("/b/rootfs");
        let p = BundleParams {
            hostname: "h",
            rootfs: &rootfs,
            netns_path: Path::new("/var/run/netns/berth-t1"),
            cgroups_path: "/berth/t1/web",
            etc_hosts: Path::new("/t/hosts"),
            etc_hostname: Path::new("/t/hostname"),
            etc_resolv: Path::new("/t/resolv.conf"),
            user: &user,
            host_nofile: u64::MAX,
            swap_accounting: true,
        };
        let cfg = build_config(&c, &p).unwrap();
        assert_eq!(cfg["process"]["terminal"], json!(false));
        assert_eq!(cfg["process"]["noNewPrivileges"], json!(true));
        assert_eq!(
            cfg["process"]["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [5]})
        );
        assert_eq!(
            cfg["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert_eq!(cfg["process"]["capabilities"]["effective"], json!([]));
        assert_eq!(cfg["root"], json!({"path": "/b/rootfs", "readonly": true}));
        assert_eq!(cfg["hostname"], json!("h"));
        assert_eq!(cfg["linux"]["cgroupsPath"], json!("/berth/t1/web"));
        assert_eq!(
            cfg["linux"]["resources"]["memory"],
            json!({"limit": 134217728, "swap": 134217728, "reservation": 67108864})
        );
        assert_eq!(cfg["linux"]["resources"]["cpu"], json!({"shares": 256}));
        let ns = cfg["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!({"type": "network", "path": "/var/run/netns/berth-t1"})));
        let seccomp = &cfg["linux"]["seccomp"];
        assert_eq!(seccomp["defaultAction"], json!("SCMP_ACT_ALLOW"));
        let denied = seccomp["syscalls"][0]["names"].as_array().unwrap();
        let rules = seccomp["syscalls"].as_array().unwrap();
        // ptrace is denied unless SYS_PTRACE is added; clone with namespace
        // flags is denied; clone3 answers ENOSYS.
        assert!(rules.iter().any(|r| r["names"] == json!(["ptrace"])));
        assert_eq!(
            rules
                .iter()
                .filter(|r| r["names"] == json!(["clone"]))
                .count(),
            7
        );
        assert!(rules
            .iter()
            .any(|r| r["names"] == json!(["clone3"]) && r["errnoRet"] == json!(38)));
        assert!(!seccomp_profile(true)["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["names"] == json!(["ptrace"])));
        for s in [
            "mount",
            "io_uring_setup",
            "unshare",
            "setns",
            "kexec_load",
            "bpf",
            "keyctl",
        ] {
            assert!(denied.contains(&json!(s)), "{s} is not denied");
        }
        assert_eq!(seccomp["syscalls"][0]["action"], json!("SCMP_ACT_ERRNO"));
        assert_eq!(cfg["linux"]["maskedPaths"].as_array().unwrap().len(), 10);
        assert_eq!(cfg["linux"]["readonlyPaths"].as_array().unwrap().len(), 5);
        let mounts = cfg["mounts"].as_array().unwrap();
        for d in [
            "/proc",
            "/dev",
            "/sys",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/etc/hostname",
        ] {
            assert!(
                mounts.iter().any(|m| m["destination"] == json!(d)),
                "{d} missing"
            );
        }
        // Root keeps its effective capabilities.
        let root = ResolvedUser::default();
        let cfg = build_config(
            &c,
            &BundleParams {
                user: &root,
                swap_accounting: false,
                ..p
            },
        )
        .unwrap();
        assert_eq!(
            cfg["process"]["capabilities"]["effective"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert_eq!(cfg["linux"]["resources"]["memory"]["swap"], Value::Null);
        assert_eq!(cfg["process"]["user"], json!({"uid": 0, "gid": 0}));
    }
}
