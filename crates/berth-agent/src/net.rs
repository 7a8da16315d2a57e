//! A task's network (the awsvpc model): its own network namespace
//! `berth-<id>` with `lo` and `eth0` (the peer of a veth `bv<id[..10]>`
//! attached to the host bridge), the task's address and a default route
//! via the bridge. Everything goes through `ip`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::error::RunnerError;
use crate::sys::Sys;

/// The `ip` binary (found through PATH).
const IP: &str = "ip";

/// The netns name of a task.
pub fn netns_name(task_id: &str) -> String {
    format!("berth-{task_id}")
}

/// The path containers join.
pub fn netns_path(task_id: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(netns_name(task_id))
}

/// The host side of the task's veth (at most 12 characters).
pub fn veth_name(task_id: &str) -> String {
    let short: String = task_id.chars().take(10).collect();
    format!("bv{short}")
}

fn ip(sys: &dyn Sys, args: &[&str]) -> Result<String, RunnerError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let command = format!("ip {}", args.join(" "));
    let out = sys
        .run(Path::new(IP), &args)
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

fn ip_ok(sys: &dyn Sys, args: &[&str]) -> bool {
    ip(sys, args).is_ok()
}

const IPTABLES: &str = "/usr/sbin/iptables";

fn iptables_ok(sys: &dyn Sys, args: &[&str]) -> bool {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    sys.run(Path::new(IPTABLES), &args).is_ok_and(|o| o.success)
}

/// The host's firewall rules for the bridge: a task may answer connections
/// the host opened (to reach a task at its IP), but may not open
/// connections to the host itself (its gateway address, or any other
/// address of the host): tasks never reach the host's services.
pub fn host_guard_rules(bridge: &str) -> [Vec<String>; 2] {
    let b = bridge.to_string();
    [
        [
            "INPUT",
            "-i",
            &b,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ["INPUT", "-i", &b, "-j", "DROP"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    ]
}

/// Installs [`host_guard_rules`] once (checked with `iptables -C`).
pub fn ensure_host_guard(sys: &dyn Sys, bridge: &str) -> Result<(), RunnerError> {
    for rule in host_guard_rules(bridge) {
        let check: Vec<&str> = std::iter::once("-C")
            .chain(rule.iter().map(String::as_str))
            .collect();
        if iptables_ok(sys, &check) {
            continue;
        }
        let add: Vec<&str> = std::iter::once("-A")
            .chain(rule.iter().map(String::as_str))
            .collect();
        if !iptables_ok(sys, &add) {
            return Err(RunnerError::Prerequisite(format!(
                "cannot install the firewall rule `iptables {}` that keeps tasks from reaching the host; is iptables (with conntrack) available?",
                add.join(" ")
            )));
        }
    }
    Ok(())
}

/// Creates the bridge if it is missing, gives it the gateway address and
/// brings it up, and keeps tasks from opening connections to the host.
/// Idempotent.
pub fn ensure_bridge(sys: &dyn Sys, bridge: &str, gateway_cidr: &str) -> Result<(), RunnerError> {
    if !ip_ok(sys, &["link", "show", "dev", bridge]) {
        ip(sys, &["link", "add", bridge, "type", "bridge"])?;
    }
    // No IPv6 on the bridge: the host must not be reachable from tasks
    // over a link-local address either (the firewall rules are IPv4).
    sysctl(sys, &format!("net.ipv6.conf.{bridge}.disable_ipv6=1"))?;
    ip(sys, &["addr", "replace", gateway_cidr, "dev", bridge])?;
    ip(sys, &["link", "set", bridge, "up"])?;
    ensure_host_guard(sys, bridge)?;
    Ok(())
}

fn sysctl(sys: &dyn Sys, setting: &str) -> Result<(), RunnerError> {
    let args = vec!["-q".to_string(), "-w".to_string(), setting.to_string()];
    match sys.run(Path::new(SYSCTL), &args) {
        Ok(o) if o.success => Ok(()),
        Ok(o) => Err(RunnerError::Command {
            command: format!("sysctl -w {setting}"),
            message: o.stderr.trim().to_string(),
        }),
        Err(e) => Err(RunnerError::Command {
            command: format!("sysctl -w {setting}"),
            message: e.to_string(),
        }),
    }
}

const SYSCTL: &str = "/usr/sbin/sysctl";

/// The MAC of the task interface with this address: `02:42` (locally
/// administered, unicast) and the address's four bytes, as Docker does.
pub fn mac_for(addr: Ipv4Addr) -> String {
    let [a, b, c, d] = addr.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Creates (or completes) the task's namespace and interfaces. Idempotent.
pub fn setup(
    sys: &dyn Sys,
    bridge: &str,
    task_id: &str,
    addr: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
) -> Result<(), RunnerError> {
    let ns = netns_name(task_id);
    let veth = veth_name(task_id);
    if !sys.exists(&netns_path(task_id)) {
        ip(sys, &["netns", "add", &ns])?;
    }
    // IPv4 only inside the task (no link-local IPv6 path to the host).
    ip(
        sys,
        &[
            "netns",
            "exec",
            &ns,
            SYSCTL,
            "-q",
            "-w",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ],
    )?;
    ip(sys, &["-n", &ns, "link", "set", "lo", "up"])?;
    if !ip_ok(sys, &["-n", &ns, "link", "show", "dev", "eth0"]) {
        // A host side without its peer is a leftover.
        delete_link(sys, &veth)?;
        ip(
            sys,
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
    }
    ip(sys, &["link", "set", "dev", &veth, "master", bridge])?;
    ip(sys, &["link", "set", "dev", &veth, "up"])?;
    let cidr = format!("{addr}/{prefix_len}");
    // The MAC follows from the address: a task that gets an address an
    // earlier task had also gets its MAC, so the host's ARP entry for the
    // address (still valid for up to a minute) keeps pointing at the
    // right interface. A random MAC would leave the host, and so health
    // checks and the load balancer, talking to the old task's MAC.
    let mac = mac_for(addr);
    if !ip_ok(
        sys,
        &["-n", &ns, "link", "set", "dev", "eth0", "address", &mac],
    ) {
        tracing::warn!(task = task_id, mac = %mac, "could not set the task interface's MAC; the host may reach a reused address late");
    }
    ip(sys, &["-n", &ns, "addr", "replace", &cidr, "dev", "eth0"])?;
    ip(sys, &["-n", &ns, "link", "set", "dev", "eth0", "up"])?;
    ip(
        sys,
        &[
            "-n",
            &ns,
            "route",
            "replace",
            "default",
            "via",
            &gateway.to_string(),
            "dev",
            "eth0",
        ],
    )?;
    Ok(())
}

/// Removes the task's namespace (its `eth0` and so the veth go with it)
/// and the host veth if it is still there. Idempotent.
pub fn teardown(sys: &dyn Sys, task_id: &str) -> Result<(), RunnerError> {
    if sys.exists(&netns_path(task_id)) || list_netns(sys)?.contains(&netns_name(task_id)) {
        delete_netns(sys, &netns_name(task_id))?;
    }
    delete_link(sys, &veth_name(task_id))
}

/// Every network namespace name (`ip netns list`).
pub fn list_netns(sys: &dyn Sys) -> Result<Vec<String>, RunnerError> {
    let out = ip(sys, &["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Every veth whose name starts with `bv`.
pub fn list_veths(sys: &dyn Sys) -> Result<Vec<String>, RunnerError> {
    let out = ip(sys, &["-o", "link", "show", "type", "veth"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| n.starts_with("bv"))
        .collect())
}

/// The veths attached to `bridge` (this runner's task interfaces).
pub fn list_bridge_veths(sys: &dyn Sys, bridge: &str) -> Result<Vec<String>, RunnerError> {
    if !ip_ok(sys, &["link", "show", "dev", bridge]) {
        return Ok(Vec::new());
    }
    let out = ip(
        sys,
        &["-o", "link", "show", "master", bridge, "type", "veth"],
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| n.starts_with("bv"))
        .collect())
}

/// Deletes a link. Missing is fine (a veth also vanishes, asynchronously,
/// with its peer's namespace).
pub fn delete_link(sys: &dyn Sys, name: &str) -> Result<(), RunnerError> {
    if !ip_ok(sys, &["link", "show", "dev", name]) {
        return Ok(());
    }
    match ip(sys, &["link", "del", "dev", name]) {
        Err(_) if !ip_ok(sys, &["link", "show", "dev", name]) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Deletes a network namespace by name. Missing is fine.
pub fn delete_netns(sys: &dyn Sys, name: &str) -> Result<(), RunnerError> {
    match ip(sys, &["netns", "delete", name]) {
        Err(_) if !list_netns(sys)?.iter().any(|n| n == name) => Ok(()),
        other => other.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    #[test]
    fn names() {
        assert_eq!(veth_name("0123456789abcdef"), "bv0123456789");
        assert!(veth_name("0123456789abcdef").len() <= 15);
        assert_eq!(veth_name("ab"), "bvab");
        assert_eq!(netns_path("x"), PathBuf::from("/var/run/netns/berth-x"));
    }

    #[test]
    fn setup_creates_namespace_veth_address_and_route() {
        let sys = FakeSys::default();
        sys.script("ip -n berth-t1 link show dev eth0", false, "");
        sys.script("ip link show dev bvt1", false, "");
        setup(
            &sys,
            "berth0",
            "t1",
            "10.213.1.5".parse().unwrap(),
            24,
            "10.213.1.1".parse().unwrap(),
        )
        .unwrap();
        let runs: Vec<String> = sys
            .calls()
            .into_iter()
            .filter(|c| !c.contains(" show "))
            .collect();
        assert_eq!(
            runs,
            vec![
                "run ip netns add berth-t1",
                "run ip netns exec berth-t1 /usr/sbin/sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
                "run ip -n berth-t1 link set lo up",
                "run ip link add bvt1 type veth peer name eth0 netns berth-t1",
                "run ip link set dev bvt1 master berth0",
                "run ip link set dev bvt1 up",
                "run ip -n berth-t1 link set dev eth0 address 02:42:0a:d5:01:05",
                "run ip -n berth-t1 addr replace 10.213.1.5/24 dev eth0",
                "run ip -n berth-t1 link set dev eth0 up",
                "run ip -n berth-t1 route replace default via 10.213.1.1 dev eth0",
            ]
        );
    }

    #[test]
    fn setup_is_idempotent_when_eth0_exists() {
        let sys = FakeSys::default();
        sys.dirs
            .lock()
            .unwrap()
            .insert(PathBuf::from("/var/run/netns/berth-t1"));
        setup(
            &sys,
            "berth0",
            "t1",
            "10.213.1.5".parse().unwrap(),
            24,
            "10.213.1.1".parse().unwrap(),
        )
        .unwrap();
        let calls = sys.calls();
        assert!(!calls.iter().any(|c| c.contains("netns add")));
        assert!(!calls.iter().any(|c| c.contains("type veth")));
    }

    #[test]
    fn bridge_is_created_only_when_missing() {
        let sys = FakeSys::default();
        sys.script("ip link show dev berth0", false, "");
        ensure_bridge(&sys, "berth0", "10.213.1.1/24").unwrap();
        assert!(sys
            .calls()
            .contains(&"run ip link add berth0 type bridge".to_string()));
        let sys = FakeSys::default();
        ensure_bridge(&sys, "berth0", "10.213.1.1/24").unwrap();
        assert!(!sys.calls().iter().any(|c| c.contains("type bridge")));
        assert!(sys
            .calls()
            .contains(&"run ip addr replace 10.213.1.1/24 dev berth0".to_string()));
    }

    #[test]
    fn parses_listings() {
        let sys = FakeSys::default();
        sys.script("ip netns list", true, "berth-a (id: 0)\nother\n");
        sys.script(
            "ip -o link show type veth",
            true,
            "12: bvabc@if2: <BROADCAST> mtu 1500\n13: veth1@if3: <BROADCAST>\n",
        );
        assert_eq!(list_netns(&sys).unwrap(), vec!["berth-a", "other"]);
        assert_eq!(list_veths(&sys).unwrap(), vec!["bvabc"]);
    }
}
