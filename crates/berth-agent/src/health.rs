//! Health-check counting (pure): when a check is due and what a result
//! does to a container's health status, with ECS's rules.
//!
//! * checks run every `interval` (default 30 s), the first one `interval`
//!   after the container started;
//! * any success makes the container HEALTHY and resets the failure count;
//! * failures during `startPeriod` do not count;
//! * `retries` (default 3) consecutive counted failures make it UNHEALTHY.

use berth_core::task::HealthStatus;
use berth_core::taskdef::HealthCheck;

/// Resolved health-check timings, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Between checks.
    pub interval_ms: i64,
    /// Before one check counts as failed.
    pub timeout_ms: i64,
    /// Consecutive failures before UNHEALTHY.
    pub retries: u32,
    /// Grace period after start.
    pub start_period_ms: i64,
}

impl HealthPolicy {
    /// The policy of a container definition's health check (ECS defaults
    /// for unset members).
    pub fn from_check(hc: &HealthCheck) -> Self {
        let secs = |v: Option<i64>, d: i64| v.filter(|v| *v > 0).unwrap_or(d) * 1000;
        Self {
            interval_ms: secs(hc.interval, 30),
            timeout_ms: secs(hc.timeout, 5),
            retries: hc
                .retries
                .filter(|r| *r > 0)
                .and_then(|r| u32::try_from(r).ok())
                .unwrap_or(3),
            start_period_ms: hc.start_period.filter(|v| *v >= 0).unwrap_or(0) * 1000,
        }
    }
}

/// One container's health state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTracker {
    policy: HealthPolicy,
    started_at: i64,
    next_due: i64,
    failures: u32,
    status: HealthStatus,
}

impl HealthTracker {
    /// A tracker for a container that started at `started_at` (ms).
    pub fn new(policy: HealthPolicy, started_at: i64, status: HealthStatus) -> Self {
        Self {
            policy,
            started_at,
            next_due: started_at + policy.interval_ms,
            failures: 0,
            status,
        }
    }

    /// The policy.
    pub fn policy(&self) -> HealthPolicy {
        self.policy
    }

    /// The current status.
    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Whether a check should start at `now`.
    pub fn due(&self, now: i64) -> bool {
        now >= self.next_due
    }

    /// Notes that a check started at `now`: the next one is due an
    /// interval later.
    pub fn check_started(&mut self, now: i64) {
        self.next_due = now + self.policy.interval_ms;
    }

    /// Records a check's result (finished at `now`); returns the new status.
    pub fn record(&mut self, now: i64, success: bool) -> HealthStatus {
        if success {
            self.failures = 0;
            self.status = HealthStatus::Healthy;
        } else if now >= self.started_at + self.policy.start_period_ms {
            self.failures += 1;
            if self.failures >= self.policy.retries {
                self.status = HealthStatus::Unhealthy;
            }
        }
        self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(retries: u32, start_period_ms: i64) -> HealthPolicy {
        HealthPolicy {
            interval_ms: 1000,
            timeout_ms: 500,
            retries,
            start_period_ms,
        }
    }

    #[test]
    fn defaults_follow_ecs() {
        let p = HealthPolicy::from_check(&HealthCheck {
            command: vec!["CMD".into(), "true".into()],
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
        });
        assert_eq!(
            p,
            HealthPolicy {
                interval_ms: 30_000,
                timeout_ms: 5_000,
                retries: 3,
                start_period_ms: 0
            }
        );
    }

    #[test]
    fn first_check_waits_an_interval() {
        let mut t = HealthTracker::new(policy(3, 0), 10_000, HealthStatus::Unknown);
        assert!(!t.due(10_500));
        assert!(t.due(11_000));
        t.check_started(11_000);
        assert!(!t.due(11_999));
        assert!(t.due(12_000));
    }

    #[test]
    fn retries_consecutive_failures_make_unhealthy() {
        let mut t = HealthTracker::new(policy(3, 0), 0, HealthStatus::Unknown);
        assert_eq!(t.record(1000, false), HealthStatus::Unknown);
        assert_eq!(t.record(2000, false), HealthStatus::Unknown);
        // A success resets the count.
        assert_eq!(t.record(3000, true), HealthStatus::Healthy);
        assert_eq!(t.record(4000, false), HealthStatus::Healthy);
        assert_eq!(t.record(5000, false), HealthStatus::Healthy);
        assert_eq!(t.record(6000, false), HealthStatus::Unhealthy);
        assert_eq!(t.record(7000, true), HealthStatus::Healthy);
    }

    #[test]
    fn start_period_failures_do_not_count() {
        let mut t = HealthTracker::new(policy(1, 5000), 0, HealthStatus::Unknown);
        assert_eq!(t.record(1000, false), HealthStatus::Unknown);
        assert_eq!(t.record(4999, false), HealthStatus::Unknown);
        assert_eq!(t.record(5000, false), HealthStatus::Unhealthy);
        // A success during the start period counts.
        let mut t = HealthTracker::new(policy(1, 5000), 0, HealthStatus::Unknown);
        assert_eq!(t.record(1000, true), HealthStatus::Healthy);
    }
}
