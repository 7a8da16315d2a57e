//! RegisterTaskDefinition's checks, as ECS and Fargate make them.
//!
//! Every failure names the task definition, the container where there is one,
//! the field, and what to do instead.

use std::collections::{HashMap, HashSet};

use super::{ContainerDefinition, TaskDefinitionInput};
use crate::resources::{check_fargate_size, parse_cpu, parse_memory};
use crate::ValidationError;

/// A task definition may have at most this many containers.
pub const MAX_CONTAINERS: usize = 10;

/// The largest task definition ECS accepts, in bytes of JSON.
pub const MAX_TASK_DEFINITION_BYTES: usize = 64 * 1024;

const NETWORK_MODES: &[&str] = &["awsvpc", "bridge", "host", "none"];
const COMPATIBILITIES: &[&str] = &["EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES"];
const CONDITIONS: &[&str] = &["START", "COMPLETE", "SUCCESS", "HEALTHY"];
const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

struct Ctx<'a> {
    family: &'a str,
}

impl Ctx<'_> {
    fn task(&self, msg: impl std::fmt::Display) -> ValidationError {
        ValidationError::client(format!("task definition {}: {msg}", self.family))
    }
    fn task_param(&self, msg: impl std::fmt::Display) -> ValidationError {
        ValidationError::invalid(format!("task definition {}: {msg}", self.family))
    }
    fn container(&self, name: &str, msg: impl std::fmt::Display) -> ValidationError {
        ValidationError::client(format!(
            "task definition {}: container {name}: {msg}",
            self.family
        ))
    }
}

/// Validates and normalises a task definition for registration.
///
/// On success the input is normalised (cpu in units, memory in MiB, defaults
/// filled as ECS returns them) and the launch types it is compatible with are
/// returned (the `compatibilities` member).
pub fn validate(td: &mut TaskDefinitionInput) -> Result<Vec<String>, ValidationError> {
    if !is_name(&td.family) {
        return Err(ValidationError::client(format!(
            "family {:?} is not valid: use 1 to 255 letters, digits, hyphens and underscores",
            td.family
        )));
    }
    let family = td.family.clone();
    let cx = Ctx { family: &family };

    let size = serde_json::to_vec(&*td).map(|v| v.len()).unwrap_or(0);
    if size > MAX_TASK_DEFINITION_BYTES {
        return Err(cx.task(format!(
            "the definition is {size} bytes of JSON, over the {MAX_TASK_DEFINITION_BYTES}-byte limit; move large values (environment, commands) into the image or files"
        )));
    }

    if td.container_definitions.is_empty() {
        return Err(cx.task("containerDefinitions is empty; define at least one container"));
    }
    if td.container_definitions.len() > MAX_CONTAINERS {
        return Err(cx.task(format!(
            "containerDefinitions has {} containers; a task may have at most {MAX_CONTAINERS}",
            td.container_definitions.len()
        )));
    }

    let requires: Vec<String> = td.requires_compatibilities.clone().unwrap_or_default();
    for c in &requires {
        if !COMPATIBILITIES.contains(&c.as_str()) {
            return Err(cx.task_param(format!(
                "requiresCompatibilities value {c:?} is not valid (use EC2, FARGATE, EXTERNAL or MANAGED_INSTANCES)"
            )));
        }
    }
    let fargate = requires.iter().any(|c| c == "FARGATE");

    if let Some(mode) = td.network_mode.as_deref() {
        if !NETWORK_MODES.contains(&mode) {
            return Err(cx.task_param(format!(
                "networkMode {mode:?} is not valid (use awsvpc, bridge, host or none)"
            )));
        }
    }
    if fargate {
        match td.network_mode.as_deref() {
            Some("awsvpc") => {}
            None => {
                return Err(cx.task(
                    "Fargate requires networkMode \"awsvpc\"; add \"networkMode\": \"awsvpc\"",
                ))
            }
            Some(other) => {
                return Err(cx.task(format!(
                    "networkMode {other:?} is not supported on Fargate; use \"awsvpc\""
                )))
            }
        }
    }
    let awsvpc = td.network_mode.as_deref() == Some("awsvpc");

    // Task size.
    let task_cpu = match td.cpu.as_deref() {
        Some(s) => Some(parse_cpu(s).map_err(|e| cx.task(e))?),
        None => None,
    };
    let task_memory = match td.memory.as_deref() {
        Some(s) => Some(parse_memory(s).map_err(|e| cx.task(e))?),
        None => None,
    };
    if fargate {
        let (Some(cpu), Some(memory)) = (task_cpu, task_memory) else {
            return Err(cx.task(
                "Fargate requires task-level cpu and memory; set for example \"cpu\": \"256\" and \"memory\": \"512\"",
            ));
        };
        check_fargate_size(cpu, memory).map_err(|e| cx.task(e))?;
    } else {
        if let Some(cpu) = task_cpu {
            if !(128..=196_608).contains(&cpu) {
                return Err(cx.task(format!(
                    "cpu {cpu} is out of range (use 128 to 196608 units)"
                )));
            }
        }
        if let Some(mem) = task_memory {
            if mem < 6 {
                return Err(cx.task(format!("memory {mem} MiB is below the 6 MiB minimum")));
            }
        }
    }
    td.cpu = task_cpu.map(|c| c.to_string());
    td.memory = task_memory.map(|m| m.to_string());

    // Task-level Fargate incompatibilities.
    if fargate {
        if td.pid_mode.as_deref() == Some("host") {
            return Err(
                cx.task("pidMode \"host\" is not supported on Fargate; use \"task\" or omit it")
            );
        }
        if td.ipc_mode.is_some() {
            return Err(cx.task("ipcMode is not supported on Fargate; remove it"));
        }
        if !td.placement_constraints.is_empty() {
            return Err(cx.task("placementConstraints are not supported on Fargate; remove them"));
        }
        if let Some(es) = &td.ephemeral_storage {
            let gib = es
                .get("sizeInGiB")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0);
            if !(21..=200).contains(&gib) {
                return Err(cx.task(format!(
                    "ephemeralStorage.sizeInGiB {gib} is out of range (use 21 to 200)"
                )));
            }
        }
    }
    for mode in [("pidMode", &td.pid_mode), ("ipcMode", &td.ipc_mode)] {
        if let Some(v) = mode.1.as_deref() {
            let ok: &[&str] = if mode.0 == "pidMode" {
                &["host", "task"]
            } else {
                &["host", "task", "none"]
            };
            if !ok.contains(&v) {
                return Err(cx.task_param(format!(
                    "{} {v:?} is not valid (use {})",
                    mode.0,
                    ok.join(" or ")
                )));
            }
        }
    }

    // Volumes.
    let mut volume_names = HashSet::new();
    for v in &td.volumes {
        let name = v.name.as_deref().unwrap_or("");
        if !is_name(name) {
            return Err(cx.task(format!(
                "volume name {name:?} is not valid: use 1 to 255 letters, digits, hyphens and underscores"
            )));
        }
        if !volume_names.insert(name.to_string()) {
            return Err(cx.task(format!(
                "volume name {name:?} is used twice; volume names must be unique"
            )));
        }
        if fargate {
            if v.docker_volume_configuration.is_some() {
                return Err(cx.task(format!(
                    "volume {name}: dockerVolumeConfiguration is not supported on Fargate; use an ephemeral volume (omit host) or EFS"
                )));
            }
            if v.host.as_ref().and_then(|h| h.get("sourcePath")).is_some() {
                return Err(cx.task(format!(
                    "volume {name}: host.sourcePath is not supported on Fargate; omit host for a task-scoped volume"
                )));
            }
        }
    }

    // Containers.
    let names: Vec<String> = td
        .container_definitions
        .iter()
        .map(|c| c.name.clone().unwrap_or_default())
        .collect();
    let mut seen = HashSet::new();
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(cx.task(format!(
                "containerDefinitions[{i}].name is missing; give every container a name"
            )));
        }
        if !is_name(name) {
            return Err(cx.task(format!(
                "container name {name:?} is not valid: use 1 to 255 letters, digits, hyphens and underscores"
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(cx.task(format!(
                "container name {name:?} is used twice; container names must be unique"
            )));
        }
    }

    let mut cpu_sum: i64 = 0;
    let mut reserved_sum: i64 = 0;
    let mut ports: HashMap<(i64, String), String> = HashMap::new();
    for c in &mut td.container_definitions {
        let name = c.name.clone().unwrap_or_default();
        validate_container(
            &cx,
            c,
            &name,
            fargate,
            awsvpc,
            task_memory,
            &volume_names,
            &names,
        )?;
        cpu_sum += c.cpu;
        reserved_sum += c.memory_reservation.or(c.memory).unwrap_or(0);
        if awsvpc {
            for p in &c.port_mappings {
                let key = (
                    p.container_port.unwrap_or(0),
                    p.protocol.clone().unwrap_or_default(),
                );
                if let Some(other) = ports.insert(key.clone(), name.clone()) {
                    return Err(cx.container(&name, format!(
                        "port {}/{} is also mapped by container {other}; in awsvpc mode the containers of a task share one network, so each port can be mapped once",
                        key.0, key.1
                    )));
                }
            }
        }
    }
    if let Some(tc) = task_cpu {
        if cpu_sum > i64::from(tc) {
            return Err(cx.task(format!(
                "the containers reserve {cpu_sum} cpu units in total, more than the task's {tc}; lower the containers' cpu or raise the task's"
            )));
        }
    }
    if let Some(tm) = task_memory {
        if reserved_sum > i64::from(tm) {
            return Err(cx.task(format!(
                "the containers reserve {reserved_sum} MiB of memory in total, more than the task's {tm}; lower the containers' memoryReservation/memory or raise the task's memory"
            )));
        }
    }

    if !td
        .container_definitions
        .iter()
        .any(|c| c.essential == Some(true))
    {
        return Err(
            cx.task("no container is essential; mark at least one container \"essential\": true")
        );
    }

    check_dependencies(&cx, &td.container_definitions)?;

    let mut compat = vec!["EC2".to_string()];
    if fargate || fargate_compatible(td) {
        compat.push("FARGATE".to_string());
    }
    Ok(compat)
}

fn fargate_compatible(td: &TaskDefinitionInput) -> bool {
    td.network_mode.as_deref() == Some("awsvpc") && td.cpu.is_some() && td.memory.is_some()
}

#[allow(clippy::too_many_arguments)]
fn validate_container(
    cx: &Ctx<'_>,
    c: &mut ContainerDefinition,
    name: &str,
    fargate: bool,
    awsvpc: bool,
    task_memory: Option<u32>,
    volumes: &HashSet<String>,
    containers: &[String],
) -> Result<(), ValidationError> {
    let image = c.image.as_deref().unwrap_or("").trim();
    if image.is_empty() {
        return Err(cx.container(
            name,
            "image is missing; set \"image\" to an image reference such as \"registry/app:1.0\"",
        ));
    }
    if image.len() > 255 || image.chars().any(char::is_whitespace) {
        return Err(cx.container(
            name,
            format!("image {image:?} is not a valid reference (at most 255 characters, no spaces)"),
        ));
    }
    if c.essential.is_none() {
        c.essential = Some(true);
    }

    // Memory and cpu.
    if c.cpu < 0 {
        return Err(cx.container(
            name,
            format!("cpu {} is negative; use 0 or more cpu units", c.cpu),
        ));
    }
    if let Some(m) = c.memory {
        if m < 6 {
            return Err(cx.container(name, format!("memory {m} MiB is below the 6 MiB minimum")));
        }
        if let Some(tm) = task_memory {
            if m > i64::from(tm) {
                return Err(cx.container(name, format!(
                    "memory {m} MiB exceeds the task's memory {tm}; lower the container's memory or raise the task's"
                )));
            }
        }
    }
    if let Some(r) = c.memory_reservation {
        if r < 4 {
            return Err(cx.container(
                name,
                format!("memoryReservation {r} MiB is below the 4 MiB minimum"),
            ));
        }
        if let Some(m) = c.memory {
            if r > m {
                return Err(cx.container(name, format!(
                    "memoryReservation {r} is greater than memory {m}; the soft limit must not exceed the hard limit"
                )));
            }
        }
        if let Some(tm) = task_memory {
            if r > i64::from(tm) {
                return Err(cx.container(
                    name,
                    format!("memoryReservation {r} MiB exceeds the task's memory {tm}"),
                ));
            }
        }
    }
    if task_memory.is_none() && c.memory.is_none() && c.memory_reservation.is_none() {
        return Err(cx.container(name, "no memory is set: set \"memory\" or \"memoryReservation\" on the container, or \"memory\" on the task"));
    }

    // Ports.
    for p in &mut c.port_mappings {
        let Some(cp) = p.container_port else {
            return Err(cx.container(name, "a portMappings entry has no containerPort; set it to the port the container listens on (1-65535)"));
        };
        if !(1..=65535).contains(&cp) {
            return Err(cx.container(
                name,
                format!("containerPort {cp} is out of range (use 1 to 65535)"),
            ));
        }
        if let Some(hp) = p.host_port {
            if !(0..=65535).contains(&hp) {
                return Err(cx.container(
                    name,
                    format!("hostPort {hp} is out of range (use 0 to 65535)"),
                ));
            }
            if awsvpc && hp != cp {
                return Err(cx.container(name, format!(
                    "hostPort {hp} differs from containerPort {cp}; in awsvpc network mode the host port must equal the container port (or be omitted)"
                )));
            }
        }
        if awsvpc {
            p.host_port = Some(cp);
        }
        match p.protocol.as_deref() {
            None => p.protocol = Some("tcp".into()),
            Some("tcp" | "udp") => {}
            Some(other) => {
                return Err(cx.container(
                    name,
                    format!("port {cp}: protocol {other:?} is not valid (use tcp or udp)"),
                ));
            }
        }
    }

    // Health check.
    if let Some(hc) = &mut c.health_check {
        match hc.command.first().map(String::as_str) {
            Some("CMD" | "CMD-SHELL") if hc.command.len() >= 2 => {}
            Some("NONE") => {}
            _ => {
                return Err(cx.container(name, "healthCheck.command must start with \"CMD\" or \"CMD-SHELL\" followed by the command, e.g. [\"CMD-SHELL\", \"curl -f http://localhost/ || exit 1\"]"));
            }
        }
        let bounds: [(&str, &mut Option<i64>, i64, i64, i64); 4] = [
            ("interval", &mut hc.interval, 5, 300, 30),
            ("timeout", &mut hc.timeout, 2, 120, 5),
            ("retries", &mut hc.retries, 1, 10, 3),
            ("startPeriod", &mut hc.start_period, 0, 300, 0),
        ];
        for (field, value, lo, hi, default) in bounds {
            match *value {
                Some(v) if !(lo..=hi).contains(&v) => {
                    return Err(cx.container(
                        name,
                        format!("healthCheck.{field} {v} is out of range (use {lo} to {hi})"),
                    ));
                }
                Some(_) => {}
                None => *value = Some(default),
            }
        }
        if let (Some(t), Some(i)) = (hc.timeout, hc.interval) {
            if t > i {
                return Err(cx.container(name, format!(
                    "healthCheck.timeout {t} is longer than healthCheck.interval {i}; make the timeout shorter than the interval"
                )));
            }
        }
    }

    // Timeouts.
    if let Some(t) = c.stop_timeout {
        let max = if fargate { 120 } else { i64::from(i32::MAX) };
        if !(0..=max).contains(&t) {
            return Err(cx.container(
                name,
                format!("stopTimeout {t} is out of range (use 0 to {max} seconds)"),
            ));
        }
    }
    if let Some(t) = c.start_timeout {
        if !(0..=i64::from(i32::MAX)).contains(&t) || (fargate && t > 120) {
            return Err(cx.container(
                name,
                format!("startTimeout {t} is out of range (use 0 to 120 seconds on Fargate)"),
            ));
        }
    }

    // Environment.
    for e in &c.environment {
        if e.name.as_deref().unwrap_or("").is_empty() {
            return Err(cx.container(
                name,
                "an environment entry has no name; give every variable a name",
            ));
        }
    }

    // Volumes.
    for m in &c.mount_points {
        let src = m.source_volume.as_deref().unwrap_or("");
        if !volumes.contains(src) {
            return Err(cx.container(name, format!(
                "mountPoints refers to volume {src:?}, which the task does not define; add it to \"volumes\""
            )));
        }
        if !m.container_path.as_deref().unwrap_or("").starts_with('/') {
            return Err(cx.container(
                name,
                format!("mount of volume {src}: containerPath must be an absolute path"),
            ));
        }
    }
    for v in &c.volumes_from {
        let src = v.source_container.as_deref().unwrap_or("");
        if src == name || !containers.iter().any(|n| n == src) {
            return Err(cx.container(name, format!(
                "volumesFrom refers to container {src:?}, which is not another container of this task"
            )));
        }
    }

    // Ulimits.
    for u in c.ulimits.iter().flatten() {
        let n = u.name.as_deref().unwrap_or("");
        if !ULIMITS.contains(&n) {
            return Err(cx.container(
                name,
                format!(
                    "ulimit {n:?} is not a known limit (use one of {})",
                    ULIMITS.join(", ")
                ),
            ));
        }
        if let (Some(s), Some(h)) = (u.soft_limit, u.hard_limit) {
            if s > h {
                return Err(cx.container(
                    name,
                    format!("ulimit {n}: softLimit {s} exceeds hardLimit {h}"),
                ));
            }
        }
    }

    // Network-mode incompatibilities.
    if awsvpc {
        for (field, set) in [
            ("hostname", c.hostname.is_some()),
            ("links", c.links.is_some()),
            ("dnsServers", c.dns_servers.is_some()),
            ("dnsSearchDomains", c.dns_search_domains.is_some()),
            ("extraHosts", c.extra_hosts.is_some()),
        ] {
            if set {
                return Err(cx.container(
                    name,
                    format!("{field} is not supported in awsvpc network mode; remove it"),
                ));
            }
        }
    }

    // Fargate incompatibilities.
    if fargate {
        if c.privileged == Some(true) {
            return Err(cx.container(name, "privileged containers are not supported on Fargate; remove \"privileged\" or set it to false"));
        }
        if c.docker_security_options
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        {
            return Err(cx.container(
                name,
                "dockerSecurityOptions are not supported on Fargate; remove them",
            ));
        }
        if let Some(lp) = &c.linux_parameters {
            for (field, set) in [
                ("devices", lp.devices.is_some()),
                ("sharedMemorySize", lp.shared_memory_size.is_some()),
                ("tmpfs", lp.tmpfs.is_some()),
                ("maxSwap", lp.max_swap.is_some()),
                ("swappiness", lp.swappiness.is_some()),
            ] {
                if set {
                    return Err(cx.container(
                        name,
                        format!("linuxParameters.{field} is not supported on Fargate; remove it"),
                    ));
                }
            }
            if let Some(add) = lp.capabilities.as_ref().and_then(|c| c.add.as_ref()) {
                if let Some(cap) = add.iter().find(|c| c.as_str() != "SYS_PTRACE") {
                    return Err(cx.container(name, format!(
                        "linuxParameters.capabilities.add {cap:?} is not supported on Fargate (only SYS_PTRACE may be added)"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn check_dependencies(
    cx: &Ctx<'_>,
    containers: &[ContainerDefinition],
) -> Result<(), ValidationError> {
    let by_name: HashMap<&str, &ContainerDefinition> = containers
        .iter()
        .map(|c| (c.name.as_deref().unwrap_or(""), c))
        .collect();
    for c in containers {
        let name = c.name.as_deref().unwrap_or("");
        for d in c.depends_on.iter().flatten() {
            let target = d.container_name.as_deref().unwrap_or("");
            let cond = d.condition.as_deref().unwrap_or("");
            if !CONDITIONS.contains(&cond) {
                return Err(cx.container(name, format!(
                    "dependsOn {target}: condition {cond:?} is not valid (use START, COMPLETE, SUCCESS or HEALTHY)"
                )));
            }
            if target == name {
                return Err(cx.container(
                    name,
                    "dependsOn names the container itself; a container cannot depend on itself",
                ));
            }
            let Some(t) = by_name.get(target) else {
                return Err(cx.container(
                    name,
                    format!(
                    "dependsOn names container {target:?}, which is not in this task definition"
                ),
                ));
            };
            if cond == "HEALTHY" && t.health_check.is_none() {
                return Err(cx.container(name, format!(
                    "dependsOn {target} with condition HEALTHY, but {target} has no healthCheck; add one or use START"
                )));
            }
            if matches!(cond, "COMPLETE" | "SUCCESS") && t.essential == Some(true) {
                return Err(cx.container(name, format!(
                    "dependsOn {target} with condition {cond}, but {target} is essential and its exit would stop the task; mark it \"essential\": false"
                )));
            }
        }
    }
    // Cycle detection: depth-first search with colours.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit<'a>(
        n: &'a str,
        by_name: &HashMap<&'a str, &'a ContainerDefinition>,
        marks: &mut HashMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        match marks.get(n).copied().unwrap_or(Mark::New) {
            Mark::Done => return None,
            Mark::Active => {
                let start = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(n);
                return Some(cycle);
            }
            Mark::New => {}
        }
        marks.insert(n, Mark::Active);
        path.push(n);
        if let Some(c) = by_name.get(n) {
            for d in c.depends_on.iter().flatten() {
                if let Some(t) = d.container_name.as_deref() {
                    if let Some(cycle) = visit(t, by_name, marks, path) {
                        return Some(cycle);
                    }
                }
            }
        }
        path.pop();
        marks.insert(n, Mark::Done);
        None
    }
    let mut marks = HashMap::new();
    for c in containers {
        let mut path = Vec::new();
        if let Some(cycle) = visit(
            c.name.as_deref().unwrap_or(""),
            &by_name,
            &mut marks,
            &mut path,
        ) {
            return Err(cx.task(format!(
                "dependsOn forms a cycle ({}); remove one of these dependencies",
                cycle.join(" -> ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
