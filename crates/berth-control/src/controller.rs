//! The cluster manager's loop: keeps every service's desired state true.
//!
//! [`ServiceController::run`] watches the store (`/ecs/tasks/` and
//! `/ecs/services/`): each change marks the service it concerns dirty (a
//! task by its group `service:NAME`), and after a short debounce every dirty
//! service is reconciled once (`Ecs::reconcile_service`). A load balancer
//! health transition (`/elb/health/`) marks every service dirty. A periodic
//! resync reconciles every ACTIVE or DRAINING service anyway, which covers
//! what no event announces (a health check grace period running out, a
//! target's drain ending, a host coming back) and a watch that fell behind.
//!
//! The loop keeps no state of its own: everything it decides from is in
//! the store, and every write is guarded, so it is safe to kill at any
//! moment and to start again (it begins with a full resync).
//!
//! One loop runs per server process. With several control-plane replicas
//! (the etcd backend, to come) only the elected leader must run it; the
//! guarded writes already keep two loops from starting the same task twice,
//! but they would fight over every decision.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_core::Timestamp;
use berth_store::{EventKind, StoreError};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::ecs::Ecs;
use crate::ids::IdSource;
use crate::keys;

/// How often every service is reconciled even without an event.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(3);

/// How long events are gathered before the services they concern are
/// reconciled.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

/// The time source of the loop (the reconciler itself never reads a clock).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// A (cluster, service name) pair.
type ServiceKey = (String, String);

/// Reconciles services on store changes and periodically.
pub struct ServiceController {
    ecs: Ecs,
    ids: Arc<dyn IdSource>,
    clock: Clock,
    resync: Duration,
    debounce: Duration,
}

/// Just the group of a task record.
#[derive(Deserialize)]
struct GroupOnly {
    task: GroupTask,
}

#[derive(Deserialize)]
struct GroupTask {
    #[serde(default)]
    group: Option<String>,
}

/// The service a changed key concerns.
fn service_of(key: &str, value: Option<&[u8]>) -> Option<ServiceKey> {
    if let Some(rest) = key.strip_prefix(keys::SERVICES) {
        let (cluster, name) = rest.split_once('/')?;
        return Some((cluster.to_string(), name.to_string()));
    }
    let rest = key.strip_prefix(keys::TASKS)?;
    let (cluster, _) = rest.split_once('/')?;
    let rec: GroupOnly = serde_json::from_slice(value?).ok()?;
    let name = rec.task.group?.strip_prefix("service:")?.to_string();
    Some((cluster.to_string(), name))
}

impl ServiceController {
    /// A controller of `ecs`'s services, making ids with `ids` and reading
    /// the time from `clock`.
    pub fn new(ecs: Ecs, ids: Arc<dyn IdSource>, clock: Clock) -> Self {
        Self {
            ecs,
            ids,
            clock,
            resync: DEFAULT_RESYNC,
            debounce: DEFAULT_DEBOUNCE,
        }
    }

    /// Sets the resync period (at least 100 ms).
    #[must_use]
    pub fn with_resync(mut self, every: Duration) -> Self {
        self.resync = every.max(Duration::from_millis(100));
        self
    }

    /// Follows one prefix forever, sending the services its changes concern;
    /// `None` asks for a full resync (the watch restarted).
    async fn follow(ecs: Ecs, prefix: &'static str, tx: mpsc::UnboundedSender<Option<ServiceKey>>) {
        loop {
            let store = ecs.store().clone();
            let started = async {
                let rev = store.revision().await?;
                store.watch(prefix, rev + 1).await
            }
            .await;
            let mut watch = match started {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(prefix, error = %e, "watching for the service reconciler failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if tx.send(None).is_err() {
                return;
            }
            loop {
                match watch.next().await {
                    Some(Ok(ev)) => {
                        if ev.kind == EventKind::Delete {
                            continue;
                        }
                        // A load balancer health transition may decide a
                        // service's deployment: look at every service.
                        let msg = if prefix == keys::ELB_HEALTH {
                            Some(None)
                        } else {
                            service_of(&ev.key, ev.value.as_deref()).map(Some)
                        };
                        if let Some(m) = msg {
                            if tx.send(m).is_err() {
                                return;
                            }
                        }
                    }
                    Some(Err(StoreError::Compacted { .. })) => break,
                    Some(Err(e)) => {
                        tracing::warn!(prefix, error = %e, "the service reconciler's watch failed; restarting it");
                        break;
                    }
                    None => return,
                }
            }
        }
    }

    async fn reconcile(&self, dirty: &mut BTreeSet<ServiceKey>) {
        for (cluster, name) in std::mem::take(dirty) {
            let now = (self.clock)();
            match self
                .ecs
                .reconcile_service(&cluster, &name, &*self.ids, now)
                .await
            {
                Ok(o) if o.started > 0 || o.stopped > 0 => tracing::info!(
                    cluster = %cluster,
                    service = %name,
                    started = o.started,
                    stopped = o.stopped,
                    "service reconciled"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    cluster = %cluster,
                    service = %name,
                    error = %e,
                    "reconciling the service failed; it is retried on the next change or resync"
                ),
            }
        }
    }

    async fn resync_all(&self, dirty: &mut BTreeSet<ServiceKey>) {
        match self.ecs.services_to_reconcile().await {
            Ok(all) => dirty.extend(all),
            Err(e) => tracing::warn!(error = %e, "listing services to reconcile failed"),
        }
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let watchers = [keys::TASKS, keys::SERVICES, keys::ELB_HEALTH]
            .map(|prefix| tokio::spawn(Self::follow(self.ecs.clone(), prefix, tx.clone())));
        drop(tx);
        let mut tick = tokio::time::interval(self.resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = BTreeSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => self.resync_all(&mut dirty).await,
                msg = rx.recv() => {
                    let Some(first) = msg else { break };
                    let mut resync = first.is_none();
                    dirty.extend(first);
                    tokio::time::sleep(self.debounce).await;
                    while let Ok(m) = rx.try_recv() {
                        resync |= m.is_none();
                        dirty.extend(m);
                    }
                    if resync {
                        self.resync_all(&mut dirty).await;
                    }
                }
            }
            self.reconcile(&mut dirty).await;
        }
        for w in watchers {
            w.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_services() {
        assert_eq!(
            service_of("/ecs/services/default/web", Some(b"{}")),
            Some(("default".into(), "web".into()))
        );
        let task = br#"{"task": {"group": "service:web", "other": 1}, "hostId": "h"}"#;
        assert_eq!(
            service_of("/ecs/tasks/prod/abc", Some(task)),
            Some(("prod".into(), "web".into()))
        );
        let family = br#"{"task": {"group": "family:web"}}"#;
        assert_eq!(service_of("/ecs/tasks/prod/abc", Some(family)), None);
        assert_eq!(service_of("/ecs/tasks/prod/abc", None), None);
        assert_eq!(service_of("/hosts/h", Some(b"{}")), None);
    }
}
