//! The capacity manager's decision: which host runs a task, and which
//! address the task gets there.
//!
//! Everything here is pure: it reads an immutable view of the fleet
//! ([`HostView`]) and proposes a placement; the caller (RunTask) applies it
//! with one store transaction. Given the same view, the same decision comes
//! out, so placement is unit-tested without a store.
//!
//! * **Free capacity** of a host is its offered cpu/memory minus the cpu/memory
//!   of every task placed on it that has not been reported STOPPED (a task
//!   that is stopping still holds its resources).
//! * **Liveness**: a host whose last heartbeat is older than three heartbeat
//!   intervals ([`is_live`]) gets no new tasks (its tasks are not moved).
//! * **Strategy**: bin-pack. Among the live hosts where the task fits, the one
//!   left with the least free memory wins, then the least free cpu, then the
//!   smallest host id, so the decision is deterministic.
//! * **Failures** use ECS's reasons ([`PlacementFailure::reason`]): `AGENT`
//!   when no live host is connected at all, `RESOURCE:CPU` when no live host
//!   has the cpu free, `RESOURCE:MEMORY` when some have the cpu but none the
//!   memory too, `RESOURCE:ENI` when the task fits but the hosts' subnets
//!   have no free address.
//! * **Addresses**: each host owns a /24; a task gets the lowest address from
//!   `.2` to `.254` that no unstopped task on the host uses (`.1` is the
//!   host's gateway).

use std::collections::BTreeSet;
use std::fmt;

use berth_core::Timestamp;

/// The first host octet a task may get (`.1` is the gateway).
pub const FIRST_TASK_OCTET: u8 = 2;

/// The last host octet a task may get (`.255` is the broadcast address).
pub const LAST_TASK_OCTET: u8 = 254;

/// A host as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    /// The host's id.
    pub host_id: String,
    /// CPU units offered to tasks.
    pub cpu: u32,
    /// Memory offered to tasks, MiB.
    pub memory: u32,
    /// CPU units held by its unstopped tasks.
    pub used_cpu: u32,
    /// Memory held by its unstopped tasks, MiB.
    pub used_memory: u32,
    /// Last octets of the addresses its unstopped tasks hold.
    pub used_octets: BTreeSet<u8>,
    /// Whether it heartbeated recently enough to get new tasks.
    pub live: bool,
}

impl HostView {
    /// Free CPU units.
    pub fn free_cpu(&self) -> u32 {
        self.cpu.saturating_sub(self.used_cpu)
    }

    /// Free memory, MiB.
    pub fn free_memory(&self) -> u32 {
        self.memory.saturating_sub(self.used_memory)
    }

    /// Records a task placed here (so the next decision of the same request
    /// sees it).
    pub fn commit(&mut self, demand: Demand, octet: u8) {
        self.used_cpu = self.used_cpu.saturating_add(demand.cpu);
        self.used_memory = self.used_memory.saturating_add(demand.memory);
        self.used_octets.insert(octet);
    }
}

/// What one task needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// CPU units.
    pub cpu: u32,
    /// Memory, MiB.
    pub memory: u32,
}

/// Where a task goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Index of the chosen host in the slice given to [`place`].
    pub index: usize,
    /// The chosen host's id.
    pub host_id: String,
    /// The last octet of the task's address in the host's /24.
    pub octet: u8,
}

/// Why a task could not be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementFailure {
    /// No live host is connected.
    NoLiveHost {
        /// How many hosts are registered but silent.
        stale: usize,
    },
    /// No live host has the cpu free.
    Cpu {
        /// The cpu asked for.
        wanted: u32,
        /// The most free cpu on any live host.
        most_free: u32,
    },
    /// Some live hosts have the cpu, none has the memory too.
    Memory {
        /// The memory asked for, MiB.
        wanted: u32,
        /// The most free memory on a live host with the cpu free, MiB.
        most_free: u32,
    },
    /// The task fits, but no such host has a free address.
    Addresses,
}

impl PlacementFailure {
    /// The ECS failure reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoLiveHost { .. } => "AGENT",
            Self::Cpu { .. } => "RESOURCE:CPU",
            Self::Memory { .. } => "RESOURCE:MEMORY",
            Self::Addresses => "RESOURCE:ENI",
        }
    }
}

impl fmt::Display for PlacementFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoLiveHost { stale: 0 } => write!(
                f,
                "no host is registered; start `berth agent` on a machine to add capacity"
            ),
            Self::NoLiveHost { stale } => write!(
                f,
                "no host is connected ({stale} registered host(s) stopped heartbeating); check their `berth agent`"
            ),
            Self::Cpu { wanted, most_free } => write!(
                f,
                "no connected host has {wanted} cpu units free (most free: {most_free}); stop tasks or add hosts"
            ),
            Self::Memory { wanted, most_free } => write!(
                f,
                "no connected host has {wanted} MiB of memory free (most free: {most_free} MiB); stop tasks or add hosts"
            ),
            Self::Addresses => write!(
                f,
                "every connected host with room has used all {} task addresses of its subnet; stop tasks or add hosts",
                LAST_TASK_OCTET - FIRST_TASK_OCTET + 1
            ),
        }
    }
}

/// Whether a host that last heartbeated at `last` may get tasks at `now`:
/// its heartbeat is at most three intervals old.
pub fn is_live(last: Timestamp, now: Timestamp, heartbeat_seconds: u64) -> bool {
    let window_ms = i64::try_from(heartbeat_seconds.saturating_mul(3_000)).unwrap_or(i64::MAX);
    now.0.saturating_sub(last.0) <= window_ms
}

/// The lowest last octet from `.2` to `.254` not in `used`.
pub fn lowest_free_octet(used: &BTreeSet<u8>) -> Option<u8> {
    (FIRST_TASK_OCTET..=LAST_TASK_OCTET).find(|o| !used.contains(o))
}

/// Chooses a host for one task (bin-pack; see the module docs).
pub fn place(hosts: &[HostView], demand: Demand) -> Result<Placement, PlacementFailure> {
    let live: Vec<(usize, &HostView)> = hosts.iter().enumerate().filter(|(_, h)| h.live).collect();
    if live.is_empty() {
        return Err(PlacementFailure::NoLiveHost { stale: hosts.len() });
    }
    let with_cpu: Vec<&(usize, &HostView)> = live
        .iter()
        .filter(|(_, h)| h.free_cpu() >= demand.cpu)
        .collect();
    if with_cpu.is_empty() {
        return Err(PlacementFailure::Cpu {
            wanted: demand.cpu,
            most_free: live.iter().map(|(_, h)| h.free_cpu()).max().unwrap_or(0),
        });
    }
    let fitting: Vec<&&(usize, &HostView)> = with_cpu
        .iter()
        .filter(|(_, h)| h.free_memory() >= demand.memory)
        .collect();
    if fitting.is_empty() {
        return Err(PlacementFailure::Memory {
            wanted: demand.memory,
            most_free: with_cpu
                .iter()
                .map(|(_, h)| h.free_memory())
                .max()
                .unwrap_or(0),
        });
    }
    fitting
        .iter()
        .filter_map(|(i, h)| lowest_free_octet(&h.used_octets).map(|o| (*i, *h, o)))
        .min_by(|a, b| {
            let key = |h: &HostView| {
                (
                    h.free_memory() - demand.memory,
                    h.free_cpu() - demand.cpu,
                    h.host_id.clone(),
                )
            };
            key(a.1).cmp(&key(b.1))
        })
        .map(|(index, h, octet)| Placement {
            index,
            host_id: h.host_id.clone(),
            octet,
        })
        .ok_or(PlacementFailure::Addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, cpu: u32, memory: u32) -> HostView {
        HostView {
            host_id: id.into(),
            cpu,
            memory,
            used_cpu: 0,
            used_memory: 0,
            used_octets: BTreeSet::new(),
            live: true,
        }
    }

    const SMALL: Demand = Demand {
        cpu: 256,
        memory: 512,
    };

    #[test]
    fn no_hosts_is_an_agent_failure() {
        let e = place(&[], SMALL).unwrap_err();
        assert_eq!(e.reason(), "AGENT");
        assert!(e.to_string().contains("no host is registered"), "{e}");
        let mut h = host("a", 4096, 8192);
        h.live = false;
        let e = place(&[h], SMALL).unwrap_err();
        assert_eq!(e, PlacementFailure::NoLiveHost { stale: 1 });
        assert!(e.to_string().contains("stopped heartbeating"), "{e}");
    }

    #[test]
    fn stale_hosts_get_nothing() {
        let mut stale = host("a", 4096, 8192);
        stale.live = false;
        let fresh = host("b", 1024, 1024);
        let p = place(&[stale, fresh], SMALL).unwrap();
        assert_eq!((p.index, p.host_id.as_str()), (1, "b"));
    }

    #[test]
    fn liveness_window_is_three_intervals() {
        let last = Timestamp::from_secs(100);
        assert!(is_live(last, Timestamp::from_secs(130), 10));
        assert!(!is_live(last, Timestamp(130_001), 10));
        assert!(
            is_live(last, Timestamp::from_secs(90), 10),
            "clock skew is not staleness"
        );
    }

    #[test]
    fn bin_packs_onto_the_fullest_host_that_fits() {
        let mut big = host("big", 8192, 16384);
        let mut busy = host("busy", 4096, 8192);
        busy.used_memory = 7000;
        busy.used_cpu = 1024;
        let p = place(&[big.clone(), busy.clone()], SMALL).unwrap();
        assert_eq!(p.host_id, "busy");
        // The busy host cannot take a 2 GiB task; the big one can.
        let p = place(
            &[big.clone(), busy.clone()],
            Demand {
                cpu: 512,
                memory: 2048,
            },
        )
        .unwrap();
        assert_eq!(p.host_id, "big");
        // Ties are broken by id.
        big.host_id = "z".into();
        busy = host("a", 8192, 16384);
        assert_eq!(place(&[big, busy], SMALL).unwrap().host_id, "a");
    }

    #[test]
    fn cpu_shortage_is_reported_first() {
        let mut h = host("a", 512, 512);
        h.used_cpu = 512;
        let e = place(&[h], SMALL).unwrap_err();
        assert_eq!(e.reason(), "RESOURCE:CPU");
        assert_eq!(
            e,
            PlacementFailure::Cpu {
                wanted: 256,
                most_free: 0
            }
        );
    }

    #[test]
    fn memory_shortage_when_cpu_is_there() {
        let mut a = host("a", 4096, 1024);
        a.used_memory = 1024;
        let mut b = host("b", 256, 4096);
        b.used_cpu = 256;
        let e = place(&[a, b], SMALL).unwrap_err();
        assert_eq!(e.reason(), "RESOURCE:MEMORY");
        assert_eq!(
            e,
            PlacementFailure::Memory {
                wanted: 512,
                most_free: 0
            }
        );
    }

    #[test]
    fn a_request_fills_a_host_then_fails() {
        let mut hosts = vec![host("a", 4096, 1024)];
        let mut octets = Vec::new();
        let mut reasons = Vec::new();
        for _ in 0..3 {
            match place(&hosts, SMALL) {
                Ok(p) => {
                    hosts[p.index].commit(SMALL, p.octet);
                    octets.push(p.octet);
                }
                Err(e) => reasons.push(e.reason()),
            }
        }
        assert_eq!(octets, vec![2, 3]);
        assert_eq!(reasons, vec!["RESOURCE:MEMORY"]);
    }

    #[test]
    fn addresses_are_the_lowest_free_from_two() {
        let mut used = BTreeSet::new();
        assert_eq!(lowest_free_octet(&used), Some(2));
        used.extend([2, 3, 5]);
        assert_eq!(lowest_free_octet(&used), Some(4));
        used.extend(2..=254);
        assert_eq!(lowest_free_octet(&used), None);
        // A freed address is reused, lowest first.
        used.remove(&17);
        used.remove(&9);
        assert_eq!(lowest_free_octet(&used), Some(9));
    }

    #[test]
    fn full_subnets_are_an_eni_failure() {
        let mut h = host("a", 1_000_000, 1_000_000);
        h.used_octets.extend(2..=254);
        let e = place(&[h.clone()], SMALL).unwrap_err();
        assert_eq!(e.reason(), "RESOURCE:ENI");
        // Another host with room still takes it.
        let other = host("b", 1024, 1024);
        assert_eq!(place(&[h, other], SMALL).unwrap().host_id, "b");
    }
}
