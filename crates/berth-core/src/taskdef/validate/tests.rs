use serde_json::json;

use super::*;
use crate::error::ValidationKind;
use crate::taskdef::TaskDefinitionInput;

fn td(v: serde_json::Value) -> TaskDefinitionInput {
    serde_json::from_value(v).expect("test input parses")
}

fn fargate(containers: serde_json::Value) -> TaskDefinitionInput {
    td(json!({
        "family": "web",
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": containers,
    }))
}

fn err(mut t: TaskDefinitionInput) -> String {
    validate(&mut t).expect_err("should be rejected").message
}

#[test]
fn accepts_a_minimal_fargate_definition_and_normalises_it() {
    let mut t = fargate(
        json!([{"name": "app", "image": "busybox", "portMappings": [{"containerPort": 80}]}]),
    );
    let compat = validate(&mut t).unwrap();
    assert_eq!(compat, vec!["EC2", "FARGATE"]);
    let c = &t.container_definitions[0];
    assert_eq!(c.essential, Some(true));
    assert_eq!(c.port_mappings[0].host_port, Some(80));
    assert_eq!(c.port_mappings[0].protocol.as_deref(), Some("tcp"));
}

#[test]
fn human_sizes_are_normalised() {
    let mut t = fargate(json!([{"name": "app", "image": "busybox"}]));
    t.cpu = Some("1 vCPU".into());
    t.memory = Some("2 GB".into());
    validate(&mut t).unwrap();
    assert_eq!(t.cpu.as_deref(), Some("1024"));
    assert_eq!(t.memory.as_deref(), Some("2048"));
}

#[test]
fn invalid_fargate_size_names_valid_values() {
    let mut t = fargate(json!([{"name": "app", "image": "busybox"}]));
    t.memory = Some("3000".into());
    let e = validate(&mut t).unwrap_err();
    assert_eq!(e.kind, ValidationKind::Client);
    assert_eq!(
        e.message,
        "task definition web: memory 3000 is not valid with cpu 256 (valid: 512, 1024, 2048)"
    );
}

#[test]
fn fargate_needs_awsvpc_and_size() {
    let mut t = fargate(json!([{"name": "app", "image": "busybox"}]));
    t.network_mode = Some("bridge".into());
    assert!(err(t.clone()).contains("networkMode \"bridge\" is not supported on Fargate"));
    t.network_mode = None;
    assert!(err(t.clone()).contains("awsvpc"));
    let mut t = fargate(json!([{"name": "app", "image": "busybox"}]));
    t.cpu = None;
    assert!(err(t).contains("task-level cpu and memory"));
}

#[test]
fn family_and_names() {
    let mut t = fargate(json!([{"name": "app", "image": "busybox"}]));
    t.family = "bad family!".into();
    assert!(err(t).contains("family \"bad family!\" is not valid"));
    let t = fargate(json!([{"image": "busybox"}]));
    assert!(err(t).contains("containerDefinitions[0].name is missing"));
    let t = fargate(json!([{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]));
    assert!(err(t).contains("used twice"));
    let t = fargate(json!([{"name": "a"}]));
    assert!(err(t).contains("container a: image is missing"));
    let t = fargate(json!([]));
    assert!(err(t).contains("at least one container"));
}

#[test]
fn needs_an_essential_container() {
    let t = fargate(json!([{"name": "a", "image": "x", "essential": false}]));
    assert!(err(t).contains("no container is essential"));
}

#[test]
fn container_resources_within_task() {
    let t = fargate(json!([{"name": "a", "image": "x", "memory": 600}]));
    assert!(err(t).contains("memory 600 MiB exceeds the task's memory 512"));
    let t = fargate(json!([{"name": "a", "image": "x", "cpu": 300}]));
    assert!(err(t).contains("300 cpu units in total, more than the task's 256"));
    let t = fargate(json!([{"name": "a", "image": "x", "memory": 100, "memoryReservation": 200}]));
    assert!(err(t).contains("memoryReservation 200 is greater than memory 100"));
    let t = fargate(json!([
        {"name": "a", "image": "x", "memoryReservation": 300},
        {"name": "b", "image": "x", "memoryReservation": 300}
    ]));
    assert!(err(t).contains("600 MiB of memory in total"));
}

#[test]
fn ec2_containers_need_memory_without_task_memory() {
    let t = td(json!({"family": "w", "containerDefinitions": [{"name": "a", "image": "x"}]}));
    assert!(err(t).contains("no memory is set"));
    let mut t = td(
        json!({"family": "w", "containerDefinitions": [{"name": "a", "image": "x", "memory": 64}]}),
    );
    assert_eq!(validate(&mut t).unwrap(), vec!["EC2"]);
}

#[test]
fn port_mappings() {
    let t =
        fargate(json!([{"name": "a", "image": "x", "portMappings": [{"containerPort": 70000}]}]));
    assert!(err(t).contains("containerPort 70000 is out of range"));
    let t = fargate(
        json!([{"name": "a", "image": "x", "portMappings": [{"containerPort": 80, "hostPort": 8080}]}]),
    );
    assert!(err(t).contains("host port must equal the container port"));
    let t = fargate(
        json!([{"name": "a", "image": "x", "portMappings": [{"containerPort": 80, "protocol": "sctp"}]}]),
    );
    assert!(err(t).contains("protocol \"sctp\" is not valid"));
    let t = fargate(json!([
        {"name": "a", "image": "x", "portMappings": [{"containerPort": 80}]},
        {"name": "b", "image": "x", "portMappings": [{"containerPort": 80}]}
    ]));
    assert!(err(t).contains("also mapped by container a"));
}

#[test]
fn depends_on() {
    let t = fargate(
        json!([{"name": "a", "image": "x", "dependsOn": [{"containerName": "zz", "condition": "START"}]}]),
    );
    assert!(err(t).contains("not in this task definition"));
    let t = fargate(json!([
        {"name": "a", "image": "x", "dependsOn": [{"containerName": "b", "condition": "START"}]},
        {"name": "b", "image": "x", "dependsOn": [{"containerName": "a", "condition": "START"}]}
    ]));
    let e = err(t);
    assert!(e.contains("cycle (a -> b -> a)"), "{e}");
    let t = fargate(json!([
        {"name": "a", "image": "x", "dependsOn": [{"containerName": "b", "condition": "HEALTHY"}]},
        {"name": "b", "image": "x"}
    ]));
    assert!(err(t).contains("has no healthCheck"));
    let t = fargate(json!([
        {"name": "a", "image": "x", "dependsOn": [{"containerName": "b", "condition": "SUCCESS"}]},
        {"name": "b", "image": "x"}
    ]));
    assert!(err(t).contains("is essential"));
    let t = fargate(json!([
        {"name": "a", "image": "x", "dependsOn": [{"containerName": "b", "condition": "LATER"}]},
        {"name": "b", "image": "x"}
    ]));
    assert!(err(t).contains("condition \"LATER\" is not valid"));
    let mut t = fargate(json!([
        {"name": "a", "image": "x", "dependsOn": [{"containerName": "b", "condition": "SUCCESS"}]},
        {"name": "b", "image": "x", "essential": false}
    ]));
    validate(&mut t).unwrap();
}

#[test]
fn health_check_bounds_and_defaults() {
    for (field, value, expect) in [
        (
            "interval",
            4,
            "healthCheck.interval 4 is out of range (use 5 to 300)",
        ),
        ("interval", 301, "healthCheck.interval 301"),
        (
            "timeout",
            1,
            "healthCheck.timeout 1 is out of range (use 2 to 120)",
        ),
        (
            "retries",
            11,
            "healthCheck.retries 11 is out of range (use 1 to 10)",
        ),
        (
            "startPeriod",
            301,
            "healthCheck.startPeriod 301 is out of range (use 0 to 300)",
        ),
    ] {
        let t = fargate(json!([{"name": "a", "image": "x",
            "healthCheck": {"command": ["CMD", "true"], field: value}}]));
        assert!(err(t).contains(expect), "{field}");
    }
    let t = fargate(json!([{"name": "a", "image": "x", "healthCheck": {"command": ["true"]}}]));
    assert!(err(t).contains("must start with \"CMD\""));
    let mut t = fargate(
        json!([{"name": "a", "image": "x", "healthCheck": {"command": ["CMD-SHELL", "true"]}}]),
    );
    validate(&mut t).unwrap();
    let hc = t.container_definitions[0].health_check.as_ref().unwrap();
    assert_eq!(
        (hc.interval, hc.timeout, hc.retries, hc.start_period),
        (Some(30), Some(5), Some(3), Some(0))
    );
}

#[test]
fn fargate_incompatibilities() {
    let t = fargate(json!([{"name": "a", "image": "x", "privileged": true}]));
    assert!(err(t).contains("privileged containers are not supported on Fargate"));
    let t = fargate(
        json!([{"name": "a", "image": "x", "linuxParameters": {"devices": [{"hostPath": "/dev/kvm"}]}}]),
    );
    assert!(err(t).contains("linuxParameters.devices is not supported on Fargate"));
    let t = fargate(
        json!([{"name": "a", "image": "x", "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"]}}}]),
    );
    assert!(err(t).contains("only SYS_PTRACE"));
    let t = fargate(json!([{"name": "a", "image": "x", "hostname": "h"}]));
    assert!(err(t).contains("hostname is not supported in awsvpc"));
    let mut t = fargate(json!([{"name": "a", "image": "x"}]));
    t.pid_mode = Some("host".into());
    assert!(err(t).contains("pidMode \"host\""));
    let mut t = fargate(
        json!([{"name": "a", "image": "x", "mountPoints": [{"sourceVolume": "v", "containerPath": "/d"}]}]),
    );
    t.volumes =
        serde_json::from_value(json!([{"name": "v", "host": {"sourcePath": "/etc"}}])).unwrap();
    assert!(err(t).contains("host.sourcePath is not supported on Fargate"));
    let t = fargate(json!([{"name": "a", "image": "x", "stopTimeout": 121}]));
    assert!(err(t).contains("stopTimeout 121"));
}

#[test]
fn mount_points_need_volumes() {
    let t = fargate(
        json!([{"name": "a", "image": "x", "mountPoints": [{"sourceVolume": "nope", "containerPath": "/d"}]}]),
    );
    assert!(err(t).contains("volume \"nope\", which the task does not define"));
}

#[test]
fn oversized_definitions_are_refused() {
    let big = "x".repeat(70_000);
    let t = fargate(
        json!([{"name": "a", "image": "x", "environment": [{"name": "BIG", "value": big}]}]),
    );
    assert!(err(t).contains("over the 65536-byte limit"));
}

#[test]
fn unknown_members_round_trip() {
    let mut t = fargate(
        json!([{"name": "a", "image": "x", "secrets": [{"name": "S", "valueFrom": "arn"}]}]),
    );
    validate(&mut t).unwrap();
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(v["containerDefinitions"][0]["secrets"][0]["name"], "S");
}
