//! Tests of RunTask, StopTask, the agent-facing operations and the report
//! rules, against an in-memory store.

use std::sync::Arc;
use std::time::Duration;

use berth_core::agent::{ContainerStateReport, HostRegistration, TaskStateReport};
use berth_core::task::{HealthStatus, StopCode, Task, TaskStatus};
use berth_core::taskdef::TaskDefinitionInput;
use berth_core::{Scope, Timestamp};
use berth_store::{EmbeddedStore, Store};
use serde_json::{json, Value};

use super::*;
use crate::ids::SequentialIds;
use crate::{Caller, EcsError};

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn ecs() -> Ecs {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
    Ecs::new(
        store,
        Scope {
            region: "us-east-1".into(),
            account: "123456789012".into(),
        },
    )
}

fn caller() -> Caller {
    Caller {
        arn: "arn:aws:iam::123456789012:root".into(),
    }
}

async fn register_td(e: &Ecs, v: Value) {
    let input: TaskDefinitionInput = serde_json::from_value(v).unwrap();
    e.register_task_definition(input, vec![], &caller(), T0)
        .await
        .unwrap();
}

fn fargate(family: &str) -> Value {
    json!({
        "family": family,
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [
            {"name": "app", "image": "busybox", "essential": true},
            {"name": "side", "image": "busybox", "essential": false, "memoryReservation": 64},
        ],
    })
}

/// A control plane with the default cluster, family `web`, and one host.
async fn setup(host_cpu: u32, host_mem: u32) -> (Ecs, SequentialIds, String) {
    let e = ecs();
    e.ensure_default_cluster().await.unwrap();
    register_td(&e, fargate("web")).await;
    let ids = SequentialIds::starting_at(1000);
    let h = e
        .register_host(registration(host_cpu, host_mem), &ids, T0)
        .await
        .unwrap();
    (e, ids, h.host_id)
}

fn registration(cpu: u32, memory: u32) -> HostRegistration {
    HostRegistration {
        host_id: None,
        hostname: "box".into(),
        cpu,
        memory,
        agent_version: "test".into(),
    }
}

fn spec(v: Value) -> RunTaskSpec {
    serde_json::from_value(v).unwrap()
}

fn report(status: TaskStatus) -> TaskStateReport {
    TaskStateReport {
        last_status: status,
        containers: Vec::new(),
        pull_started_at: None,
        pull_stopped_at: None,
        started_at: None,
        execution_stopped_at: None,
        stop_code: None,
        stopped_reason: None,
        health_status: HealthStatus::Unknown,
    }
}

fn invalid(e: EcsError) -> String {
    match e {
        EcsError::Validation(v) => {
            assert_eq!(v.kind, berth_core::error::ValidationKind::InvalidParameter);
            v.message
        }
        other => panic!("expected InvalidParameterException, got {other:?}"),
    }
}

fn client(e: EcsError) -> String {
    match e {
        EcsError::Validation(v) => {
            assert_eq!(v.kind, berth_core::error::ValidationKind::Client);
            v.message
        }
        other => panic!("expected ClientException, got {other:?}"),
    }
}

#[tokio::test]
async fn hosts_get_their_own_subnet_once() {
    let e = ecs();
    let ids = SequentialIds::default();
    let a = e
        .register_host(registration(1024, 2048), &ids, T0)
        .await
        .unwrap();
    let b = e
        .register_host(registration(1024, 2048), &ids, T0)
        .await
        .unwrap();
    assert_eq!(a.subnet, "10.213.1.0/24");
    assert_eq!(a.gateway, "10.213.1.1");
    assert_eq!(b.subnet, "10.213.2.0/24");
    assert_eq!(a.heartbeat_seconds, DEFAULT_HEARTBEAT_SECONDS);
    // Re-registering keeps the id and the subnet and updates the capacity.
    let mut again = registration(4096, 8192);
    again.host_id = Some(a.host_id.clone());
    let a2 = e.register_host(again, &ids, T0).await.unwrap();
    assert_eq!(a2, a);
    assert_eq!(e.host(&a.host_id).await.unwrap().memory, 8192);
    // An unknown id gets a fresh one.
    let mut stranger = registration(1024, 2048);
    stranger.host_id = Some("host-unknown".into());
    let c = e.register_host(stranger, &ids, T0).await.unwrap();
    assert_ne!(c.host_id, "host-unknown");
    assert_eq!(c.subnet, "10.213.3.0/24");
    assert!(matches!(
        e.heartbeat("nope", Default::default(), T0).await,
        Err(EcsError::HostNotFound(_))
    ));
}

#[tokio::test]
async fn run_task_places_tasks_with_addresses() {
    let (e, ids, host) = setup(4096, 8192).await;
    let out = e
        .run_task(
            spec(json!({"taskDefinition": "web", "count": 2, "startedBy": "me"})),
            &ids,
            T0,
        )
        .await
        .unwrap();
    assert!(out.failures.is_empty());
    assert_eq!(out.tasks.len(), 2);
    let t = &out.tasks[0];
    assert_eq!(t.last_status, TaskStatus::Provisioning);
    assert_eq!(t.desired_status, TaskStatus::Running);
    assert_eq!(t.group.as_deref(), Some("family:web"));
    assert_eq!((t.cpu.as_str(), t.memory.as_str()), ("256", "512"));
    assert_eq!(t.id().len(), 32);
    assert!(t
        .task_arn
        .starts_with("arn:aws:ecs:us-east-1:123456789012:task/default/"));
    assert_eq!(t.private_ip(), Some("10.213.1.2"));
    assert_eq!(out.tasks[1].private_ip(), Some("10.213.1.3"));
    let a = &t.attachments[0];
    assert_eq!(a.kind, "ElasticNetworkInterface");
    assert_eq!(a.status, "PRECREATED");
    assert_eq!(a.detail("subnetId"), Some(tasks::DEFAULT_SUBNET));
    assert_eq!(
        a.detail("privateDnsName"),
        Some("ip-10-213-1-2.ec2.internal")
    );
    assert!(a.detail("networkInterfaceId").unwrap().starts_with("eni-"));
    assert_eq!(t.containers.len(), 2);
    assert_eq!(t.containers[1].memory_reservation.as_deref(), Some("64"));
    assert_eq!(
        t.containers[0].network_interfaces[0].private_ipv4_address,
        "10.213.1.2"
    );
    assert_eq!(t.availability_zone.as_deref(), Some("us-east-1a"));

    let asg = e.assignments(&host).await.unwrap();
    assert_eq!(asg.tasks.len(), 2);
    assert_eq!(asg.tasks[0].gateway, "10.213.1.1");
    assert_eq!(asg.tasks[0].prefix_len, 24);
    assert_eq!(asg.tasks[0].task_definition.input.family, "web");

    // Stopping one frees its address once the host reports STOPPED.
    let first = t.id().to_string();
    e.stop_task(None, &first, None, T0).await.unwrap();
    e.report_state(Some(&host), &first, &report(TaskStatus::Stopped), T0)
        .await
        .unwrap();
    let again = e
        .run_task(spec(json!({"taskDefinition": "web"})), &ids, T0)
        .await
        .unwrap();
    assert_eq!(again.tasks[0].private_ip(), Some("10.213.1.2"));
}

#[tokio::test]
async fn a_full_host_answers_resource_failures() {
    let (e, ids, _) = setup(4096, 1024).await;
    let out = e
        .run_task(spec(json!({"taskDefinition": "web", "count": 3})), &ids, T0)
        .await
        .unwrap();
    assert_eq!(out.tasks.len(), 2);
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].reason, "RESOURCE:MEMORY");
    assert_eq!(
        out.failures[0].arn.as_deref(),
        Some("arn:aws:ecs:us-east-1:123456789012:task-definition/web:1")
    );
}

#[tokio::test]
async fn no_host_or_a_silent_host_is_an_agent_failure() {
    let e = ecs();
    e.ensure_default_cluster().await.unwrap();
    register_td(&e, fargate("web")).await;
    let ids = SequentialIds::default();
    let out = e
        .run_task(spec(json!({"taskDefinition": "web"})), &ids, T0)
        .await
        .unwrap();
    assert!(out.tasks.is_empty());
    assert_eq!(out.failures[0].reason, "AGENT");
    e.register_host(registration(4096, 8192), &ids, T0)
        .await
        .unwrap();
    let later = Timestamp(T0.0 + 31_000);
    let out = e
        .run_task(spec(json!({"taskDefinition": "web"})), &ids, later)
        .await
        .unwrap();
    assert_eq!(out.failures[0].reason, "AGENT");
    assert!(out.failures[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("stopped heartbeating"));
}

#[tokio::test]
async fn run_task_validation() {
    let (e, ids, _) = setup(4096, 8192).await;
    let run = |v: Value| {
        let e = e.clone();
        let ids = &ids;
        async move { e.run_task(spec(v), ids, T0).await.unwrap_err() }
    };
    for count in [0, 11, -1] {
        let m = invalid(run(json!({"taskDefinition": "web", "count": count})).await);
        assert!(m.contains(&format!("count {count}")), "{m}");
    }
    let m = invalid(run(json!({"taskDefinition": "web", "launchType": "EC2"})).await);
    assert_eq!(m, "launch type EC2 is not supported; use FARGATE");
    let m = invalid(run(json!({"taskDefinition": "web", "launchType": "EXTERNAL"})).await);
    assert!(m.contains("EXTERNAL"), "{m}");
    invalid(
        run(json!({"taskDefinition": "web", "launchType": "FARGATE",
            "capacityProviderStrategy": [{"capacityProvider": "FARGATE"}]}))
        .await,
    );
    invalid(
        run(json!({"taskDefinition": "web",
            "capacityProviderStrategy": [{"capacityProvider": "MINE"}]}))
        .await,
    );
    invalid(run(json!({"taskDefinition": "web", "startedBy": "x".repeat(129)})).await);
    invalid(run(json!({"taskDefinition": "web", "clientToken": "x".repeat(65)})).await);
    invalid(run(json!({"taskDefinition": "web", "propagateTags": "SERVICE"})).await);
    invalid(run(json!({"taskDefinition": "web", "enableExecuteCommand": true})).await);
    let m = client(
        run(json!({"taskDefinition": "web", "overrides": {"cpu": "256", "memory": "3000"}})).await,
    );
    assert_eq!(
        m,
        "overrides: memory 3000 is not valid with cpu 256 (valid: 512, 1024, 2048)"
    );
    let m = client(run(json!({"taskDefinition": "web", "overrides": {"cpu": "300"}})).await);
    assert!(m.contains("cpu 300 is not a Fargate task size"), "{m}");
    let m = invalid(
        run(json!({"taskDefinition": "web",
            "overrides": {"containerOverrides": [{"name": "nope"}]}}))
        .await,
    );
    assert!(
        m.contains("\"nope\" is not in task definition web:1"),
        "{m}"
    );
    let m = client(
        run(json!({"taskDefinition": "web",
            "overrides": {"containerOverrides": [{"name": "app", "memory": 1024}]}}))
        .await,
    );
    assert!(m.contains("exceeds the task's memory 512"), "{m}");
    assert!(matches!(
        run(json!({"taskDefinition": "web", "cluster": "nope"})).await,
        EcsError::ClusterNotFound(_)
    ));

    // A valid size override is applied and echoed.
    let out = e
        .run_task(
            spec(json!({"taskDefinition": "web",
                "overrides": {"cpu": "512", "memory": "2 GB",
                    "containerOverrides": [{"name": "app", "command": ["echo", "hi"]}]}})),
            &ids,
            T0,
        )
        .await
        .unwrap();
    let t = &out.tasks[0];
    assert_eq!((t.cpu.as_str(), t.memory.as_str()), ("512", "2048"));
    assert_eq!(t.overrides["containerOverrides"][0]["command"][1], "hi");
    assert_eq!(
        t.overrides["containerOverrides"][1],
        json!({"name": "side"})
    );
}

#[tokio::test]
async fn inactive_and_non_fargate_definitions_are_refused() {
    let (e, ids, _) = setup(4096, 8192).await;
    register_td(
        &e,
        json!({"family": "ec2only", "networkMode": "bridge",
            "containerDefinitions": [{"name": "a", "image": "x", "memory": 128}]}),
    )
    .await;
    let m = client(
        e.run_task(spec(json!({"taskDefinition": "ec2only"})), &ids, T0)
            .await
            .unwrap_err(),
    );
    assert!(m.contains("not compatible with FARGATE"), "{m}");
    assert!(m.contains("requiresCompatibilities"), "{m}");
    e.deregister_task_definition("web:1", T0).await.unwrap();
    let m = client(
        e.run_task(spec(json!({"taskDefinition": "web:1"})), &ids, T0)
            .await
            .unwrap_err(),
    );
    assert!(m.contains("inactive"), "{m}");
    let m = client(
        e.run_task(spec(json!({"taskDefinition": "web"})), &ids, T0)
            .await
            .unwrap_err(),
    );
    assert!(m.contains("no ACTIVE revision"), "{m}");
}

#[tokio::test]
async fn client_tokens_make_run_task_idempotent() {
    let (e, ids, host) = setup(4096, 8192).await;
    let s = json!({"taskDefinition": "web", "count": 2, "clientToken": "tok/1"});
    let a = e.run_task(spec(s.clone()), &ids, T0).await.unwrap();
    let b = e.run_task(spec(s), &ids, T0).await.unwrap();
    assert_eq!(a.tasks.len(), 2);
    let arns = |o: &RunTaskOutput| {
        o.tasks
            .iter()
            .map(|t| t.task_arn.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(arns(&a), arns(&b));
    assert_eq!(e.assignments(&host).await.unwrap().tasks.len(), 2);
    // The same token with other parameters is a conflict naming the tasks.
    match e
        .run_task(
            spec(json!({"taskDefinition": "web", "count": 1, "clientToken": "tok/1"})),
            &ids,
            T0,
        )
        .await
    {
        Err(EcsError::Conflict { resource_ids, .. }) => assert_eq!(resource_ids, arns(&a)),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn stop_task_is_idempotent_and_reaches_the_host() {
    let (e, ids, host) = setup(4096, 8192).await;
    let out = e
        .run_task(spec(json!({"taskDefinition": "web"})), &ids, T0)
        .await
        .unwrap();
    let t = &out.tasks[0];
    let m = invalid(
        e.stop_task(None, "0123456789abcdef0123456789abcdef", None, T0)
            .await
            .unwrap_err(),
    );
    assert_eq!(m, "The referenced task was not found.");
    invalid(
        e.stop_task(None, t.id(), Some(&"r".repeat(256)), T0)
            .await
            .unwrap_err(),
    );
    let before = e.assignments(&host).await.unwrap();
    let stopped = e
        .stop_task(Some("default"), &t.task_arn, Some("done"), T0)
        .await
        .unwrap();
    assert_eq!(stopped.desired_status, TaskStatus::Stopped);
    assert_eq!(stopped.stop_code, Some(StopCode::UserInitiated));
    assert_eq!(stopped.stopped_reason.as_deref(), Some("done"));
    assert_eq!(stopped.version, 2);
    let again = e
        .stop_task(None, t.id(), Some("other"), Timestamp(T0.0 + 5))
        .await
        .unwrap();
    assert_eq!(again, stopped);

    // The long poll answers at once: the desired state changed.
    let asg = e
        .wait_assignments(&host, before.revision, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(asg.tasks[0].desired_status, TaskStatus::Stopped);
    assert_eq!(asg.tasks[0].stop_reason.as_deref(), Some("done"));

    // The agent's own stop code does not replace UserInitiated.
    let mut r = report(TaskStatus::Stopped);
    r.stop_code = Some(StopCode::EssentialContainerExited);
    r.stopped_reason = Some("Essential container in task exited".into());
    let done = e
        .report_state(Some(&host), t.id(), &r, Timestamp(T0.0 + 9))
        .await
        .unwrap();
    assert_eq!(done.last_status, TaskStatus::Stopped);
    assert_eq!(done.stop_code, Some(StopCode::UserInitiated));
    assert_eq!(done.stopped_reason.as_deref(), Some("done"));
    assert_eq!(done.stopped_at, Some(Timestamp(T0.0 + 9)));
    assert_eq!(done.attachments[0].status, "DELETED");
    assert!(e.assignments(&host).await.unwrap().tasks.is_empty());
}

#[tokio::test]
async fn a_scheduler_stop_keeps_its_code_and_reason() {
    let (e, ids, _) = setup(4096, 8192).await;
    let out = e
        .run_task(spec(json!({"taskDefinition": "web"})), &ids, T0)
        .await
        .unwrap();
    let mut t = out.tasks[0].clone();
    t.desired_status = TaskStatus::Stopped;
    t.stop_code = Some(StopCode::ServiceSchedulerInitiated);
    t.stopped_reason = Some("Scaling activity initiated by (deployment ecs-svc/1)".into());
    // The agent reports the stop it was asked for as UserInitiated.
    let mut r = report(TaskStatus::Stopped);
    r.stop_code = Some(StopCode::UserInitiated);
    r.stopped_reason = Some("Task stopped by user".into());
    let done = super::apply_report(&t, &r, T0).unwrap().unwrap();
    assert_eq!(done.stop_code, Some(StopCode::ServiceSchedulerInitiated));
    assert_eq!(
        done.stopped_reason.as_deref(),
        Some("Scaling activity initiated by (deployment ecs-svc/1)")
    );
}

#[tokio::test]
async fn long_poll_times_out_with_the_current_state() {
    let (e, _, host) = setup(4096, 8192).await;
    let first = e.assignments(&host).await.unwrap();
    let again = e
        .wait_assignments(&host, first.revision, Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(again.revision, first.revision);
    assert!(matches!(
        e.wait_assignments("host-nope", 0, Duration::ZERO).await,
        Err(EcsError::HostNotFound(_))
    ));
}

#[tokio::test]
async fn reports_are_checked_against_the_host() {
    let (e, ids, host) = setup(4096, 8192).await;
    let other = e
        .register_host(registration(4096, 8192), &ids, T0)
        .await
        .unwrap();
    let out = e
        .run_task(spec(json!({"taskDefinition": "web"})), &ids, T0)
        .await
        .unwrap();
    let id = out.tasks[0].id().to_string();
    // Bin-packing put it on the first host (tie broken by id).
    assert_eq!(e.assignments(&host).await.unwrap().tasks.len(), 1);
    assert!(matches!(
        e.report_state(Some(&other.host_id), &id, &report(TaskStatus::Pending), T0)
            .await,
        Err(EcsError::NotAssigned { .. })
    ));
    assert!(matches!(
        e.report_state(None, "ffff", &report(TaskStatus::Pending), T0)
            .await,
        Err(EcsError::TaskNotFound(_))
    ));
    let t = e
        .report_state(None, &id, &report(TaskStatus::Pending), T0)
        .await
        .unwrap();
    assert_eq!(t.last_status, TaskStatus::Pending);
}

fn task_with(status: TaskStatus) -> Task {
    let mut t: Task = serde_json::from_value(json!({
        "taskArn": "arn:aws:ecs:r:1:task/default/abc",
        "clusterArn": "arn:aws:ecs:r:1:cluster/default",
        "taskDefinitionArn": "arn:aws:ecs:r:1:task-definition/web:1",
        "lastStatus": "PROVISIONING",
        "desiredStatus": "RUNNING",
        "launchType": "FARGATE",
        "platformVersion": "1.4.0",
        "platformFamily": "Linux",
        "cpu": "256",
        "memory": "512",
        "containers": [{
            "containerArn": "c", "taskArn": "t", "name": "app", "image": "busybox",
            "lastStatus": "PENDING", "cpu": "0"
        }],
        "attachments": [{"id": "a", "type": "ElasticNetworkInterface", "status": "PRECREATED", "details": []}],
        "overrides": {},
        "createdAt": 1.0,
        "connectivity": "CONNECTED",
        "version": 1,
        "ephemeralStorage": {"sizeInGiB": 20},
        "enableExecuteCommand": false
    }))
    .unwrap();
    t.last_status = status;
    t
}

#[test]
fn reports_only_move_forward() {
    let t = task_with(TaskStatus::Running);
    assert_eq!(
        apply_report(&t, &report(TaskStatus::Pending), T0).unwrap(),
        None
    );
    let same = apply_report(&t, &report(TaskStatus::Running), T0).unwrap();
    let t2 = same.expect("RUNNING again sets startedAt and ATTACHED once");
    assert_eq!(t2.started_at, Some(T0));
    assert_eq!(t2.attachments[0].status, "ATTACHED");
    assert_eq!(t2.version, 2);
    // Repeating the same report changes nothing.
    assert_eq!(
        apply_report(&t2, &report(TaskStatus::Running), T0).unwrap(),
        None
    );
    // A STOPPED task stays as it is.
    let stopped = apply_report(&t2, &report(TaskStatus::Stopped), T0)
        .unwrap()
        .unwrap();
    assert_eq!(
        apply_report(&stopped, &report(TaskStatus::Running), T0).unwrap(),
        None
    );
    assert_eq!(
        apply_report(&stopped, &report(TaskStatus::Stopped), T0).unwrap(),
        None
    );
}

#[test]
fn reports_copy_container_state_and_stop_details() {
    let t = task_with(TaskStatus::Provisioning);
    let mut r = report(TaskStatus::Running);
    r.pull_started_at = Some(Timestamp(10));
    r.pull_stopped_at = Some(Timestamp(20));
    r.started_at = Some(Timestamp(30));
    r.health_status = HealthStatus::Healthy;
    r.containers.push(ContainerStateReport {
        name: "app".into(),
        last_status: "RUNNING".into(),
        exit_code: None,
        reason: None,
        image_digest: Some("sha256:abc".into()),
        runtime_id: Some("rt-1".into()),
        health_status: HealthStatus::Healthy,
    });
    let running = apply_report(&t, &r, T0).unwrap().unwrap();
    assert_eq!(running.started_at, Some(Timestamp(30)));
    assert_eq!(running.pull_started_at, Some(Timestamp(10)));
    assert_eq!(running.containers[0].last_status, "RUNNING");
    assert_eq!(
        running.containers[0].image_digest.as_deref(),
        Some("sha256:abc")
    );
    assert_eq!(running.health_status, HealthStatus::Healthy);

    // A container never goes back to PENDING.
    let mut back = report(TaskStatus::Running);
    back.containers.push(ContainerStateReport {
        name: "app".into(),
        last_status: "PENDING".into(),
        exit_code: None,
        reason: None,
        image_digest: None,
        runtime_id: None,
        health_status: HealthStatus::Healthy,
    });
    let still = apply_report(&running, &back, T0).unwrap();
    assert!(still.is_none_or(|t| t.containers[0].last_status == "RUNNING"));

    // An exit the agent decided: its code and reason are taken.
    let mut exit = report(TaskStatus::Deactivating);
    exit.stop_code = Some(StopCode::EssentialContainerExited);
    exit.stopped_reason = Some("Essential container in task exited".into());
    exit.containers.push(ContainerStateReport {
        name: "app".into(),
        last_status: "STOPPED".into(),
        exit_code: Some(3),
        reason: None,
        image_digest: None,
        runtime_id: None,
        health_status: HealthStatus::Unknown,
    });
    let stopping = apply_report(&running, &exit, Timestamp(99))
        .unwrap()
        .unwrap();
    assert_eq!(stopping.desired_status, TaskStatus::Stopped);
    assert_eq!(stopping.stopping_at, Some(Timestamp(99)));
    assert_eq!(stopping.containers[0].exit_code, Some(3));
    assert_eq!(stopping.stop_code, Some(StopCode::EssentialContainerExited));

    // Unknown containers and statuses are refused.
    let mut bad = report(TaskStatus::Running);
    bad.containers.push(ContainerStateReport {
        name: "ghost".into(),
        last_status: "RUNNING".into(),
        exit_code: None,
        reason: None,
        image_digest: None,
        runtime_id: None,
        health_status: HealthStatus::Unknown,
    });
    assert!(apply_report(&running, &bad, T0).is_err());
    bad.containers[0].name = "app".into();
    bad.containers[0].last_status = "DANCING".into();
    assert!(apply_report(&running, &bad, T0).is_err());
}

#[test]
fn a_stop_without_details_gets_a_code() {
    let t = task_with(TaskStatus::Pending);
    let s = apply_report(&t, &report(TaskStatus::Stopped), T0)
        .unwrap()
        .unwrap();
    assert_eq!(s.stop_code, Some(StopCode::TaskFailedToStart));
    assert_eq!(s.containers[0].last_status, "STOPPED");
    assert_eq!(s.desired_status, TaskStatus::Stopped);
    assert_eq!(s.stopped_at, Some(T0));
}

#[tokio::test]
async fn describe_and_list_tasks() {
    let (e, ids, host) = setup(8192, 16384).await;
    register_td(&e, fargate("api")).await;
    let web = e
        .run_task(
            spec(
                json!({"taskDefinition": "web", "count": 2, "startedBy": "ci",
                "tags": [{"key": "k", "value": "v"}]}),
            ),
            &ids,
            T0,
        )
        .await
        .unwrap();
    let api = e
        .run_task(
            spec(json!({"taskDefinition": "api", "group": "service:api"})),
            &ids,
            Timestamp(T0.0 + 1),
        )
        .await
        .unwrap();
    let (found, missing) = e
        .describe_tasks(
            None,
            &[
                web.tasks[0].task_arn.clone(),
                web.tasks[1].id().to_string(),
                "0123456789abcdef0123456789abcdef".into(),
                "not a task".into(),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    assert!(found[0].tags.is_empty());
    assert_eq!(missing.len(), 2);
    assert_eq!(missing[0].reason, "MISSING");
    assert!(missing[0]
        .arn
        .as_deref()
        .unwrap()
        .ends_with("task/default/0123456789abcdef0123456789abcdef"));
    let (with_tags, _) = e
        .describe_tasks(None, &[web.tasks[0].task_arn.clone()], true)
        .await
        .unwrap();
    assert_eq!(with_tags[0].tags.len(), 1);
    invalid(e.describe_tasks(None, &[], false).await.unwrap_err());

    let list = |f: TaskFilter| {
        let e = e.clone();
        async move { e.list_tasks(&f).await.unwrap().0 }
    };
    assert_eq!(list(TaskFilter::default()).await.len(), 3);
    let fam = list(TaskFilter {
        family: Some("api".into()),
        ..TaskFilter::default()
    })
    .await;
    assert_eq!(fam, vec![api.tasks[0].task_arn.clone()]);
    let svc = list(TaskFilter {
        service_name: Some("api".into()),
        ..TaskFilter::default()
    })
    .await;
    assert_eq!(svc, fam);
    assert_eq!(
        list(TaskFilter {
            started_by: Some("ci".into()),
            ..TaskFilter::default()
        })
        .await
        .len(),
        2
    );
    assert!(list(TaskFilter {
        desired_status: Some("STOPPED".into()),
        ..TaskFilter::default()
    })
    .await
    .is_empty());
    assert!(list(TaskFilter {
        launch_type: Some("EC2".into()),
        ..TaskFilter::default()
    })
    .await
    .is_empty());
    invalid(
        e.list_tasks(&TaskFilter {
            started_by: Some("ci".into()),
            family: Some("web".into()),
            ..TaskFilter::default()
        })
        .await
        .unwrap_err(),
    );
    // Pages never repeat or skip.
    let (p1, tok) = e
        .list_tasks(&TaskFilter {
            max_results: Some(2),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    let (p2, none) = e
        .list_tasks(&TaskFilter {
            max_results: Some(2),
            next_token: tok,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!((p1.len(), p2.len(), none), (2, 1, None));
    assert!(!p1.contains(&p2[0]));

    // Stopped tasks move to the STOPPED listing; counts follow the reports.
    let id = web.tasks[0].id().to_string();
    e.report_state(Some(&host), &id, &report(TaskStatus::Running), T0)
        .await
        .unwrap();
    assert_eq!(e.task_counts("default").await.unwrap(), (1, 2));
    e.stop_task(None, &id, None, T0).await.unwrap();
    let stopped = list(TaskFilter {
        desired_status: Some("STOPPED".into()),
        ..TaskFilter::default()
    })
    .await;
    assert_eq!(stopped, vec![web.tasks[0].task_arn.clone()]);
}

#[tokio::test]
async fn tasks_carry_tags_and_hold_their_cluster() {
    let (e, ids, host) = setup(4096, 8192).await;
    let out = e
        .run_task(spec(json!({"taskDefinition": "web"})), &ids, T0)
        .await
        .unwrap();
    let t = &out.tasks[0];
    e.tag_resource(
        &t.task_arn,
        &[berth_core::tags::Tag {
            key: Some("team".into()),
            value: Some("blue".into()),
        }],
    )
    .await
    .unwrap();
    assert_eq!(e.list_tags(&t.task_arn).await.unwrap().len(), 1);
    e.untag_resource(&t.task_arn, &["team".into()])
        .await
        .unwrap();
    assert!(e.list_tags(&t.task_arn).await.unwrap().is_empty());
    let ghost = t
        .task_arn
        .replace(t.id(), "ffffffffffffffffffffffffffffffff");
    assert!(matches!(
        e.list_tags(&ghost).await,
        Err(EcsError::ResourceNotFound(_))
    ));

    assert!(matches!(
        e.delete_cluster("default").await,
        Err(EcsError::ClusterContainsTasks(_))
    ));
    e.stop_task(None, t.id(), None, T0).await.unwrap();
    e.report_state(Some(&host), t.id(), &report(TaskStatus::Stopped), T0)
        .await
        .unwrap();
    e.delete_cluster("default").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_run_tasks_on_two_replicas_never_overcommit() {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
    let scope = Scope {
        region: "us-east-1".into(),
        account: "123456789012".into(),
    };
    // Two control planes on one store: separate in-process locks, so only
    // the store's compare-and-swap keeps them apart.
    let a = Ecs::new(store.clone(), scope.clone());
    let b = Ecs::new(store, scope);
    a.ensure_default_cluster().await.unwrap();
    register_td(&a, fargate("web")).await;
    let ids = Arc::new(SequentialIds::default());
    a.register_host(registration(4096, 2048), &*ids, T0)
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..8 {
        let e = if i % 2 == 0 { a.clone() } else { b.clone() };
        let ids = ids.clone();
        handles.push(tokio::spawn(async move {
            e.run_task(spec(json!({"taskDefinition": "web"})), &*ids, T0)
                .await
                .unwrap()
        }));
    }
    let mut ips = Vec::new();
    let mut failures = Vec::new();
    for h in handles {
        let out = h.await.unwrap();
        ips.extend(
            out.tasks
                .iter()
                .map(|t| t.private_ip().unwrap().to_string()),
        );
        failures.extend(out.failures.into_iter().map(|f| f.reason));
    }
    ips.sort();
    assert_eq!(
        ips,
        ["10.213.1.2", "10.213.1.3", "10.213.1.4", "10.213.1.5"],
        "exactly four 512 MiB tasks fit in 2048 MiB, each with its own address"
    );
    assert_eq!(failures, vec!["RESOURCE:MEMORY"; 4]);
}
