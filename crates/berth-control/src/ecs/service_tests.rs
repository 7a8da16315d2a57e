//! Tests of the service operations and of applying reconciler plans,
//! against an in-memory store (several `Ecs` over one store stand for
//! several control-plane replicas).

use std::sync::Arc;

use berth_core::agent::{HostRegistration, TaskStateReport};
use berth_core::service::{DeploymentStatus, RolloutState, ServiceStatus};
use berth_core::tags::Tag;
use berth_core::task::{StopCode, TaskStatus};
use berth_core::taskdef::TaskDefinitionInput;
use berth_core::{Scope, Timestamp};
use berth_store::{EmbeddedStore, Store};
use serde_json::json;

use super::*;
use crate::ids::SequentialIds;
use crate::{keys, Caller, EcsError};

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn scope() -> Scope {
    Scope {
        region: "us-east-1".into(),
        account: "123456789012".into(),
    }
}

fn caller() -> Caller {
    Caller {
        arn: "arn:aws:iam::123456789012:root".into(),
    }
}

async fn setup(host: bool) -> (Ecs, Arc<dyn Store>, SequentialIds) {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
    let e = Ecs::new(store.clone(), scope());
    e.ensure_default_cluster().await.unwrap();
    for (family, image) in [("web", "web:1"), ("web", "web:2")] {
        let input: TaskDefinitionInput = serde_json::from_value(json!({
            "family": family,
            "requiresCompatibilities": ["FARGATE"],
            "networkMode": "awsvpc",
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": [{"name": "app", "image": image}],
        }))
        .unwrap();
        let tags = vec![Tag {
            key: Some("from".into()),
            value: Some("taskdef".into()),
        }];
        e.register_task_definition(input, tags, &caller(), T0)
            .await
            .unwrap();
    }
    let ids = SequentialIds::starting_at(1000);
    if host {
        e.register_host(
            HostRegistration {
                host_id: None,
                hostname: "box".into(),
                cpu: 16384,
                memory: 32768,
                agent_version: "test".into(),
            },
            &ids,
            T0,
        )
        .await
        .unwrap();
    }
    (e, store, ids)
}

fn create(name: &str, td: &str, desired: i64) -> CreateServiceSpec {
    serde_json::from_value(json!({
        "serviceName": name,
        "taskDefinition": td,
        "desiredCount": desired,
    }))
    .unwrap()
}

async fn report(e: &Ecs, id: &str, status: TaskStatus, now: Timestamp) {
    let r = TaskStateReport {
        last_status: status,
        containers: Vec::new(),
        pull_started_at: None,
        pull_stopped_at: None,
        started_at: None,
        execution_stopped_at: None,
        stop_code: None,
        stopped_reason: None,
        health_status: Default::default(),
    };
    e.report_state(None, id, &r, now).await.unwrap();
}

async fn task_ids(e: &Ecs, name: &str) -> Vec<String> {
    e.service_tasks("default", name)
        .await
        .unwrap()
        .into_iter()
        .map(|(t, _)| t.task.id().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reconciles_never_fill_a_gap_twice() {
    let (e, store, ids) = setup(true).await;
    e.create_service(create("web", "web:1", 5), &caller(), &ids, T0)
        .await
        .unwrap();
    // Four "replicas" over one store, each with its own locks, reconciling
    // the same state at once.
    let mut handles = Vec::new();
    for i in 0..8u64 {
        let replica = Ecs::new(store.clone(), scope());
        handles.push(tokio::spawn(async move {
            let ids = SequentialIds::starting_at(1_000_000 * (i + 1));
            replica
                .reconcile_service("default", "web", &ids, T0)
                .await
                .unwrap()
                .started
        }));
    }
    let mut started = 0;
    for h in handles {
        started += h.await.unwrap();
    }
    assert_eq!(started, 5);
    assert_eq!(task_ids(&e, "web").await.len(), 5);
    // And once more: nothing to do.
    let again = e
        .reconcile_service("default", "web", &ids, T0)
        .await
        .unwrap();
    assert_eq!(again, ReconcileOutcome::default());
}

#[tokio::test]
async fn service_tasks_carry_the_deployment_the_group_and_the_tags() {
    let (e, _, ids) = setup(true).await;
    let mut spec = create("web", "web:1", 2);
    spec.propagate_tags = Some("SERVICE".into());
    spec.enable_ecs_managed_tags = true;
    spec.tags = vec![Tag {
        key: Some("team".into()),
        value: Some("a".into()),
    }];
    let s = e.create_service(spec, &caller(), &ids, T0).await.unwrap();
    let dep = s.deployments[0].id.clone();
    let out = e
        .reconcile_service("default", "web", &ids, T0)
        .await
        .unwrap();
    assert_eq!((out.started, out.stopped), (2, 0));
    for (t, _) in e.service_tasks("default", "web").await.unwrap() {
        assert_eq!(t.task.started_by.as_deref(), Some(dep.as_str()));
        assert_eq!(t.task.group.as_deref(), Some("service:web"));
        let keys: Vec<&str> = t
            .task
            .tags
            .iter()
            .filter_map(|t| t.key.as_deref())
            .collect();
        assert_eq!(keys, ["team", "aws:ecs:serviceName", "aws:ecs:clusterName"]);
    }
    let (services, _) = e
        .describe_services(None, &["web".into()], false, T0)
        .await
        .unwrap();
    let ev = &services[0].events;
    assert_eq!(ev.len(), 1);
    assert!(ev[0]
        .message
        .starts_with("(service web) has started 2 tasks: (task "));
    assert_eq!(services[0].pending_count, 2);
    assert_eq!(services[0].deployments[0].pending_count, 2);
}

#[tokio::test]
async fn a_deployment_completes_as_its_tasks_run() {
    let (e, _, ids) = setup(true).await;
    e.create_service(create("web", "web:1", 2), &caller(), &ids, T0)
        .await
        .unwrap();
    e.reconcile_service("default", "web", &ids, T0)
        .await
        .unwrap();
    for id in task_ids(&e, "web").await {
        report(&e, &id, TaskStatus::Running, T0).await;
    }
    let out = e
        .reconcile_service("default", "web", &ids, T0)
        .await
        .unwrap();
    assert!(out.wrote);
    let (s, _) = e
        .describe_services(None, &["web".into()], false, T0)
        .await
        .unwrap();
    let s = &s[0];
    assert_eq!((s.running_count, s.pending_count), (2, 0));
    assert_eq!(s.deployments[0].rollout_state, RolloutState::Completed);
    assert_eq!(
        s.events[0].message,
        "(service web) has reached a steady state."
    );
    let (rec, rev) = e.service_record("default", "web").await.unwrap().unwrap();
    assert!(rec.steady);
    // Converged: reconciling again writes nothing.
    e.reconcile_service("default", "web", &ids, T0)
        .await
        .unwrap();
    assert_eq!(
        e.service_record("default", "web").await.unwrap().unwrap().1,
        rev
    );
}

#[tokio::test]
async fn placement_failures_become_events_once_a_minute() {
    let (e, _, ids) = setup(false).await;
    e.create_service(create("web", "web:1", 1), &caller(), &ids, T0)
        .await
        .unwrap();
    let out = e
        .reconcile_service("default", "web", &ids, T0)
        .await
        .unwrap();
    assert_eq!(out.started, 0);
    assert!(out.wrote);
    let (rec, rev) = e.service_record("default", "web").await.unwrap().unwrap();
    let msg = &rec.service.events[0].message;
    assert!(
        msg.starts_with("(service web) was unable to place a task because no container instance met all of its requirements. Reason: AGENT"),
        "{msg}"
    );
    let again = e
        .reconcile_service("default", "web", &ids, Timestamp(T0.0 + 5_000))
        .await
        .unwrap();
    assert!(!again.wrote);
    assert_eq!(
        e.service_record("default", "web").await.unwrap().unwrap().1,
        rev
    );
}

#[tokio::test]
async fn updates_make_deployments_only_when_needed() {
    let (e, _, ids) = setup(true).await;
    let s = e
        .create_service(create("web", "web:1", 1), &caller(), &ids, T0)
        .await
        .unwrap();
    let first = s.deployments[0].id.clone();
    let update = |v: serde_json::Value| -> UpdateServiceSpec { serde_json::from_value(v).unwrap() };
    let s = e
        .update_service(
            update(json!({"service": "web", "desiredCount": 3})),
            &ids,
            T0,
        )
        .await
        .unwrap();
    assert_eq!(s.deployments.len(), 1);
    assert_eq!((s.desired_count, s.deployments[0].desired_count), (3, 3));
    // The same revision again changes nothing.
    let s = e
        .update_service(
            update(json!({"service": "web", "taskDefinition": "web:1"})),
            &ids,
            T0,
        )
        .await
        .unwrap();
    assert_eq!(s.deployments.len(), 1);
    let s = e
        .update_service(
            update(json!({"service": "web", "taskDefinition": "web"})),
            &ids,
            T0,
        )
        .await
        .unwrap();
    assert_eq!(s.deployments.len(), 2);
    assert_eq!(s.deployments[0].status, DeploymentStatus::Primary);
    assert_eq!(s.deployments[1].id, first);
    assert_eq!(s.deployments[1].status, DeploymentStatus::Active);
    assert!(s.task_definition.ends_with("web:2"));
    let s = e
        .update_service(
            update(json!({"service": "web", "forceNewDeployment": true})),
            &ids,
            T0,
        )
        .await
        .unwrap();
    assert_eq!(s.deployments.len(), 3);
    assert!(s.deployments[0].task_definition.ends_with("web:2"));
    // A configuration a rolling update could not move in is refused.
    let err = e
        .update_service(
            update(json!({"service": "web", "desiredCount": 1,
                "deploymentConfiguration": {"maximumPercent": 100, "minimumHealthyPercent": 100}})),
            &ids,
            T0,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("could never replace a task"),
        "{err}"
    );
}

#[tokio::test]
async fn delete_drains_then_deactivates() {
    let (e, _, ids) = setup(true).await;
    e.create_service(create("web", "web:1", 2), &caller(), &ids, T0)
        .await
        .unwrap();
    e.reconcile_service("default", "web", &ids, T0)
        .await
        .unwrap();
    let err = e.delete_cluster("default").await.unwrap_err();
    assert!(matches!(err, EcsError::ClusterContainsServices(_)), "{err}");
    let err = e.delete_service(None, "web", false, T0).await.unwrap_err();
    assert!(err
        .to_string()
        .starts_with("The service cannot be stopped while it is scaled above 0."));
    let s = e.delete_service(None, "web", true, T0).await.unwrap();
    assert_eq!((s.status, s.desired_count), (ServiceStatus::Draining, 0));
    assert_eq!(
        e.list_services(&ServiceFilter::default())
            .await
            .unwrap()
            .0
            .len(),
        0
    );
    let out = e
        .reconcile_service("default", "web", &ids, T0)
        .await
        .unwrap();
    assert_eq!(out.stopped, 2);
    for (t, _) in e.service_tasks("default", "web").await.unwrap() {
        assert_eq!(t.task.desired_status, TaskStatus::Stopped);
        assert_eq!(t.task.stop_code, Some(StopCode::ServiceSchedulerInitiated));
        report(&e, t.task.id(), TaskStatus::Stopped, T0).await;
    }
    e.reconcile_service("default", "web", &ids, T0)
        .await
        .unwrap();
    let (rec, _) = e.service_record("default", "web").await.unwrap().unwrap();
    assert_eq!(rec.service.status, ServiceStatus::Inactive);
    assert!(matches!(
        e.delete_service(None, "web", true, T0).await.unwrap_err(),
        EcsError::ServiceNotFound(_)
    ));
    let update: UpdateServiceSpec =
        serde_json::from_value(json!({"service": "web", "desiredCount": 1})).unwrap();
    assert!(matches!(
        e.update_service(update, &ids, T0).await.unwrap_err(),
        EcsError::ServiceNotActive(_)
    ));
    assert_eq!(e.service_counts("default").await.unwrap(), (0, 0));
    e.delete_cluster("default").await.unwrap();
}

const TG_ARN: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/00000000000000aa";

/// A target group `web` (deregistration delay 10 s) that a listener forwards
/// to, written as the ELBv2 API writes them, and a task definition `api`
/// whose container `app` maps port 8080.
async fn load_balanced(e: &Ecs, store: &Arc<dyn Store>) {
    use berth_core::elb::{
        Action, ActionKind, ListenerRecord, TargetGroupRecord, WeightedTargetGroup,
    };
    let tg = TargetGroupRecord {
        arn: TG_ARN.into(),
        name: "web".into(),
        id: "00000000000000aa".into(),
        protocol: "HTTP".into(),
        protocol_version: "HTTP1".into(),
        port: 80,
        vpc_id: None,
        target_type: "ip".into(),
        health_check: Default::default(),
        attributes: [(
            berth_core::elb::ATTR_DEREGISTRATION_DELAY.to_string(),
            "10".to_string(),
        )]
        .into(),
        tags: Default::default(),
        created: T0,
    };
    let listener = ListenerRecord {
        arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/lb/00000000000000bb/00000000000000cc".into(),
        id: "00000000000000cc".into(),
        load_balancer_arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/lb/00000000000000bb".into(),
        lb_name: "lb".into(),
        port: 8000,
        protocol: "HTTP".into(),
        certificates: Vec::new(),
        ssl_policy: None,
        default_actions: vec![Action {
            order: None,
            kind: ActionKind::Forward {
                target_groups: vec![WeightedTargetGroup { target_group_arn: TG_ARN.into(), weight: 1 }],
                forward_config: false,
                stickiness_seconds: None,
            },
        }],
        tags: Default::default(),
    };
    store
        .txn(
            berth_store::Txn::new()
                .then(berth_store::Op::Put(keys::elb_tg("web"), encode(&tg)))
                .then(berth_store::Op::Put(
                    keys::elb_listener("lb", "00000000000000cc"),
                    encode(&listener),
                )),
        )
        .await
        .unwrap();
    let input: TaskDefinitionInput = serde_json::from_value(json!({
        "family": "api",
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{"name": "app", "image": "api:1", "portMappings": [{"containerPort": 8080}]}],
    }))
    .unwrap();
    e.register_task_definition(input, Vec::new(), &caller(), T0)
        .await
        .unwrap();
}

fn behind_lb(name: &str, desired: i64) -> CreateServiceSpec {
    serde_json::from_value(json!({
        "serviceName": name,
        "taskDefinition": "api",
        "desiredCount": desired,
        "loadBalancers": [{"targetGroupArn": TG_ARN, "containerName": "app", "containerPort": 8080}],
    }))
    .unwrap()
}

async fn target(store: &Arc<dyn Store>, ip: &str) -> Option<berth_core::elb::TargetRecord> {
    let kv = store
        .get(&keys::elb_target("web", ip, 8080))
        .await
        .unwrap()?;
    Some(serde_json::from_slice(&kv.value).unwrap())
}

async fn set_health(
    store: &Arc<dyn Store>,
    ip: &str,
    state: berth_core::elb::TargetHealthState,
    at: Timestamp,
) {
    let h = berth_core::elb::TargetHealthRecord {
        state,
        reason: None,
        description: None,
        since: at,
        registered: None,
    };
    store
        .txn(berth_store::Txn::new().then(berth_store::Op::Put(
            keys::elb_health("web", ip, 8080),
            encode(&h),
        )))
        .await
        .unwrap();
}

#[tokio::test]
async fn load_balancers_are_checked_when_a_service_is_created() {
    let (e, store, ids) = setup(true).await;
    // No target group yet.
    let err = e
        .create_service(behind_lb("api", 1), &caller(), &ids, T0)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
    load_balanced(&e, &store).await;
    // A container port the task definition does not map.
    let mut spec = behind_lb("api", 1);
    spec.load_balancers[0]["containerPort"] = json!(9090);
    let err = e
        .create_service(spec, &caller(), &ids, T0)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no container app with a portMapping for containerPort 9090"),
        "{err}"
    );
    let s = e
        .create_service(behind_lb("api", 1), &caller(), &ids, T0)
        .await
        .unwrap();
    assert_eq!(s.load_balancers[0]["targetGroupArn"], TG_ARN);
}

#[tokio::test]
async fn service_tasks_register_count_healthy_only_when_the_target_is_and_drain_before_stopping() {
    use berth_core::elb::TargetHealthState;
    let (e, store, ids) = setup(true).await;
    load_balanced(&e, &store).await;
    e.create_service(behind_lb("api", 1), &caller(), &ids, T0)
        .await
        .unwrap();
    e.reconcile_service("default", "api", &ids, T0)
        .await
        .unwrap();
    let id = task_ids(&e, "api").await.remove(0);
    let t1 = Timestamp(T0.0 + 1000);
    report(&e, &id, TaskStatus::Running, t1).await;
    e.reconcile_service("default", "api", &ids, t1)
        .await
        .unwrap();
    let (rec, _) = e.task_record("default", &id).await.unwrap().unwrap();
    let ip = rec.task.private_ip().unwrap().to_string();
    let t = target(&store, &ip).await.expect("registered once RUNNING");
    assert_eq!((t.port, t.drain_until), (8080, None));
    assert_eq!(rec.lb_targets.len(), 1);
    // RUNNING but not yet healthy in the target group: no steady state.
    let (svc, _) = e.service_record("default", "api").await.unwrap().unwrap();
    assert!(!svc.steady);
    assert!(svc
        .service
        .events
        .iter()
        .any(|ev| ev.message.contains("registered 1 targets in (target-group")));
    // Healthy: the deployment completes.
    let t2 = Timestamp(T0.0 + 2000);
    set_health(&store, &ip, TargetHealthState::Healthy, t2).await;
    e.reconcile_service("default", "api", &ids, t2)
        .await
        .unwrap();
    let (svc, _) = e.service_record("default", "api").await.unwrap().unwrap();
    assert!(svc.steady, "{:?}", svc.service.events);

    // Scale in: the task is deregistered and drains; its host keeps it
    // running until the deregistration delay (10 s) has passed.
    let mut upd: UpdateServiceSpec =
        serde_json::from_value(json!({"service": "api", "desiredCount": 0})).unwrap();
    upd.cluster = None;
    e.update_service(upd, &ids, t2).await.unwrap();
    e.reconcile_service("default", "api", &ids, t2)
        .await
        .unwrap();
    let (rec, _) = e.task_record("default", &id).await.unwrap().unwrap();
    assert_eq!(rec.task.desired_status, TaskStatus::Stopped);
    assert_eq!(rec.task.last_status, TaskStatus::Deactivating);
    assert_eq!(
        target(&store, &ip).await.unwrap().drain_until,
        Some(Timestamp(t2.0 + 10_000))
    );
    let placement = |store: Arc<dyn Store>, host: String, id: String| async move {
        let kv = store
            .get(&keys::placement(&host, &id))
            .await
            .unwrap()
            .unwrap();
        serde_json::from_slice::<PlacementRecord>(&kv.value)
            .unwrap()
            .desired_status
    };
    assert_eq!(
        placement(store.clone(), rec.host_id.clone(), id.clone()).await,
        TaskStatus::Running
    );
    // What the host is told: keep running, no stop reason, until the drain ends.
    let assigned = |e: Ecs, host: String, id: String| async move {
        let a = e.assignments(&host).await.unwrap();
        let t = a.tasks.into_iter().find(|t| t.task_id == id).unwrap();
        (t.desired_status, t.stop_reason)
    };
    assert_eq!(
        assigned(e.clone(), rec.host_id.clone(), id.clone()).await,
        (TaskStatus::Running, None)
    );
    e.reconcile_service("default", "api", &ids, Timestamp(t2.0 + 5_000))
        .await
        .unwrap();
    assert_eq!(
        placement(store.clone(), rec.host_id.clone(), id.clone()).await,
        TaskStatus::Running
    );
    // The drain is over: the target goes and the host is told to stop.
    e.reconcile_service("default", "api", &ids, Timestamp(t2.0 + 10_000))
        .await
        .unwrap();
    assert_eq!(
        placement(store.clone(), rec.host_id.clone(), id.clone()).await,
        TaskStatus::Stopped
    );
    let (desired, reason) = assigned(e.clone(), rec.host_id.clone(), id.clone()).await;
    assert_eq!(desired, TaskStatus::Stopped);
    assert!(reason.unwrap().starts_with("Scaling activity initiated by"));
    assert!(target(&store, &ip).await.is_none());
    assert!(store
        .get(&keys::elb_health("web", &ip, 8080))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn stop_task_drains_a_load_balanced_task_and_a_dead_task_leaves_its_target_groups() {
    let (e, store, ids) = setup(true).await;
    load_balanced(&e, &store).await;
    e.create_service(behind_lb("api", 2), &caller(), &ids, T0)
        .await
        .unwrap();
    e.reconcile_service("default", "api", &ids, T0)
        .await
        .unwrap();
    let ids_now = task_ids(&e, "api").await;
    let t1 = Timestamp(T0.0 + 1000);
    for id in &ids_now {
        report(&e, id, TaskStatus::Running, t1).await;
    }
    e.reconcile_service("default", "api", &ids, t1)
        .await
        .unwrap();
    let ip = |rec: &TaskRecord| rec.task.private_ip().unwrap().to_string();
    let (a, _) = e
        .task_record("default", &ids_now[0])
        .await
        .unwrap()
        .unwrap();
    let (b, _) = e
        .task_record("default", &ids_now[1])
        .await
        .unwrap()
        .unwrap();
    // StopTask: draining, the placement still RUNNING.
    let stopped = e
        .stop_task(None, a.task.id(), Some("bye"), t1)
        .await
        .unwrap();
    assert_eq!(stopped.last_status, TaskStatus::Deactivating);
    assert!(target(&store, &ip(&a)).await.unwrap().drain_until.is_some());
    let kv = store
        .get(&keys::placement(&a.host_id, a.task.id()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<PlacementRecord>(&kv.value)
            .unwrap()
            .desired_status,
        TaskStatus::Running
    );
    // The other task dies by itself: its target is removed at once.
    report(&e, b.task.id(), TaskStatus::Stopped, t1).await;
    e.reconcile_service("default", "api", &ids, t1)
        .await
        .unwrap();
    assert!(target(&store, &ip(&b)).await.is_none());
}

#[tokio::test]
async fn a_missing_target_group_is_an_event_once_a_minute() {
    let (e, store, ids) = setup(true).await;
    load_balanced(&e, &store).await;
    e.create_service(behind_lb("api", 1), &caller(), &ids, T0)
        .await
        .unwrap();
    e.reconcile_service("default", "api", &ids, T0)
        .await
        .unwrap();
    let id = task_ids(&e, "api").await.remove(0);
    // The target group goes away behind the service's back.
    store
        .txn(berth_store::Txn::new().then(berth_store::Op::Delete(keys::elb_tg("web"))))
        .await
        .unwrap();
    let t1 = Timestamp(T0.0 + 1000);
    report(&e, &id, TaskStatus::Running, t1).await;
    let complaints = |e: Ecs| async move {
        let (svc, _) = e.service_record("default", "api").await.unwrap().unwrap();
        svc.service
            .events
            .iter()
            .filter(|ev| ev.message.contains("was unable to register targets"))
            .count()
    };
    e.reconcile_service("default", "api", &ids, t1)
        .await
        .unwrap();
    assert_eq!(complaints(e.clone()).await, 1);
    let again = e
        .reconcile_service("default", "api", &ids, Timestamp(t1.0 + 3000))
        .await
        .unwrap();
    assert!(!again.wrote);
    assert_eq!(complaints(e.clone()).await, 1);
    assert!(target(&store, "10.213.1.2").await.is_none());
}
