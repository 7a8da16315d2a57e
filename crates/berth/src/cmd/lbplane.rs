//! The load balancer data path inside `berth server` / `berth up`: feeds
//! `berth-lb` the ELBv2 records from the store and writes the health
//! transitions it finds back.
//!
//! - **Config**: read every `/elb/` record at a revision, build the
//!   [`DataPlaneConfig`], apply it; then watch `/elb/` from that revision
//!   and rebuild after each burst of changes (debounced). Health records
//!   are the data path's own output, so their changes alone trigger no
//!   rebuild. A watch that falls behind (compacted) starts over with a
//!   full read.
//! - **Health**: a transition is written to `/elb/health/{tg}/{ip}:{port}`
//!   only while the target is still registered (guarded on its key), so a
//!   late check never resurrects a removed target.
//!
//! The data path reads the store directly because it runs in the server
//! process; a data path on another machine would be fed the same
//! [`DataPlaneConfig`] over the network.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_control::ecs::lb::target_group_name;
use berth_control::{keys, Elb};
use berth_core::elb::dataplane::DataPlaneConfig;
use berth_core::elb::TargetHealthRecord;
use berth_lb::{DataPlane, HealthSink};
use berth_store::{Compare, Op, Store, StoreError, Txn};

/// How long a burst of changes may last before the config is rebuilt.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Writes the data path's health transitions to the store.
pub struct StoreHealthSink {
    store: Arc<dyn Store>,
}

impl StoreHealthSink {
    /// A sink writing into `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl HealthSink for StoreHealthSink {
    async fn record(
        &self,
        target_group_arn: &str,
        ip: &str,
        port: u16,
        health: TargetHealthRecord,
    ) {
        let Some(tg) = target_group_name(target_group_arn) else {
            return;
        };
        let value = serde_json::to_vec(&health).unwrap_or_default();
        let txn = Txn::new()
            .when(Compare::Exists(keys::elb_target(tg, ip, port)))
            .then(Op::Put(keys::elb_health(tg, ip, port), value));
        // A transition is written once: retry a failing store for a while
        // rather than leave the control plane with a stale health.
        for attempt in 0u32..10 {
            match self.store.txn(txn.clone()).await {
                // The data path logs the transition itself.
                Ok(r) if r.succeeded => return,
                Ok(_) => {
                    tracing::debug!(
                        target_group = tg,
                        target = %format!("{ip}:{port}"),
                        "health of a target no longer registered not recorded"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "recording a target's health failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
                }
            }
        }
    }
}

/// Runs the data path until `shutdown` resolves, then lets in-flight
/// requests finish.
pub async fn run(elb: Elb, plane: DataPlane, shutdown: impl std::future::Future<Output = ()>) {
    let feed = {
        let plane = plane.clone();
        tokio::spawn(async move { feed(elb, plane).await })
    };
    shutdown.await;
    feed.abort();
    plane.shutdown().await;
}

async fn feed(elb: Elb, plane: DataPlane) {
    let mut reported: Vec<String> = Vec::new();
    loop {
        let rev = match elb.records().await {
            Ok((records, rev)) => {
                plane.apply(DataPlaneConfig::build(&records)).await;
                report_status(&plane, &mut reported);
                rev
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the load balancer configuration failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut watch = match elb.store().watch(keys::ELB, rev + 1).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "watching the load balancer configuration failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Wait for a change that is not only a health record, then for the
        // burst to settle. A listener that could not start is retried
        // every few seconds.
        let retry = if reported.is_empty() {
            Duration::from_secs(3600)
        } else {
            Duration::from_secs(5)
        };
        loop {
            let Ok(next) = tokio::time::timeout(retry, watch.next()).await else {
                break;
            };
            match next {
                Some(Ok(ev)) if ev.key.starts_with(keys::ELB_HEALTH) => continue,
                Some(Ok(_)) => {
                    tokio::time::sleep(DEBOUNCE).await;
                    break;
                }
                Some(Err(StoreError::Compacted { .. })) => break,
                None => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the load balancer watch failed; reading again");
                    break;
                }
            }
        }
    }
}

/// Logs each listener problem once (a port another program holds, an
/// unusable certificate); the data path retries on the next change.
fn report_status(plane: &DataPlane, reported: &mut Vec<String>) {
    let now: Vec<String> = plane
        .status()
        .into_iter()
        .filter_map(|s| {
            s.error
                .map(|e| format!("listener {} ({}): {e}", s.port, s.protocol))
        })
        .collect();
    for e in &now {
        if !reported.contains(e) {
            tracing::warn!("{e}");
        }
    }
    *reported = now;
}
