//! End-to-end: the AWS SDK for Rust (aws-sdk-ecs) against a real `berth up`
//! process on loopback.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::PathBuf;

use common::Berth;

use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ecs::types::{
    Compatibility, ContainerCondition, ContainerDefinition, ContainerDependency, HealthCheck,
    NetworkMode, PortMapping, Tag, TaskDefinitionStatus,
};
use aws_sdk_ecs::Client;

trait SdkClient {
    fn client_with(&self, key: &str, secret: &str) -> Client;
    fn client(&self) -> Client;
}

impl SdkClient for Berth {
    fn client_with(&self, key: &str, secret: &str) -> Client {
        let http = aws_smithy_http_client::Builder::new().build_http();
        let conf = aws_sdk_ecs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.var("AWS_ENDPOINT_URL"))
            .region(Region::new(self.var("AWS_REGION")))
            .credentials_provider(Credentials::new(key, secret, None, None, "berth-test"))
            .http_client(http)
            .build();
        Client::from_conf(conf)
    }

    fn client(&self) -> Client {
        self.client_with(
            &self.var("AWS_ACCESS_KEY_ID"),
            &self.var("AWS_SECRET_ACCESS_KEY"),
        )
    }
}

fn container(name: &str) -> ContainerDefinition {
    ContainerDefinition::builder()
        .name(name)
        .image("busybox:latest")
        .build()
}

async fn register(
    c: &Client,
    family: &str,
    containers: Vec<ContainerDefinition>,
) -> aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionOutput {
    c.register_task_definition()
        .family(family)
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .set_container_definitions(Some(containers))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn clusters_through_the_rust_sdk() {
    let b = Berth::start();
    let c = b.client();

    let out = c
        .describe_clusters()
        .clusters("default")
        .clusters("ghost")
        .send()
        .await
        .unwrap();
    assert_eq!(out.clusters()[0].cluster_name(), Some("default"));
    assert_eq!(out.clusters()[0].status(), Some("ACTIVE"));
    assert_eq!(out.failures()[0].reason(), Some("MISSING"));
    assert!(out.failures()[0].arn().unwrap().ends_with(":cluster/ghost"));

    for i in 0..5 {
        let out = c
            .create_cluster()
            .cluster_name(format!("sdk-{i}"))
            .tags(Tag::builder().key("n").value(i.to_string()).build())
            .send()
            .await
            .unwrap();
        let arn = out.cluster().unwrap().cluster_arn().unwrap();
        assert!(
            arn.starts_with("arn:aws:ecs:us-east-1:")
                && arn.ends_with(&format!(":cluster/sdk-{i}")),
            "{arn}"
        );
    }

    // The SDK's paginator follows nextToken through every page.
    let mut pages = c.list_clusters().max_results(2).into_paginator().send();
    let mut arns = Vec::new();
    let mut page_count = 0;
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        assert!(page.cluster_arns().len() <= 2);
        arns.extend(page.cluster_arns().iter().cloned());
        page_count += 1;
    }
    assert_eq!(arns.len(), 6, "{arns:?}");
    assert_eq!(page_count, 3);

    let deleted = c.delete_cluster().cluster("sdk-0").send().await.unwrap();
    assert_eq!(deleted.cluster().unwrap().status(), Some("INACTIVE"));
    let err = c
        .delete_cluster()
        .cluster("sdk-0")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_cluster_not_found_exception());
}

#[tokio::test(flavor = "multi_thread")]
async fn task_definitions_through_the_rust_sdk() {
    let b = Berth::start();
    let c = b.client();

    let app = ContainerDefinition::builder()
        .name("app")
        .image("busybox:latest")
        .port_mappings(PortMapping::builder().container_port(8080).build())
        .depends_on(
            ContainerDependency::builder()
                .container_name("init")
                .condition(ContainerCondition::Success)
                .build()
                .unwrap(),
        )
        .health_check(
            HealthCheck::builder()
                .command("CMD-SHELL")
                .command("true")
                .build()
                .unwrap(),
        )
        .build();
    let init = ContainerDefinition::builder()
        .name("init")
        .image("busybox:latest")
        .essential(false)
        .build();
    let out = register(&c, "sdk-web", vec![app, init]).await;
    let td = out.task_definition().unwrap();
    assert_eq!(td.revision(), 1);
    assert_eq!(td.status(), Some(&TaskDefinitionStatus::Active));
    assert!(td.compatibilities().contains(&Compatibility::Fargate));
    let app = &td.container_definitions()[0];
    assert_eq!(app.port_mappings()[0].host_port(), Some(8080));
    assert_eq!(app.health_check().unwrap().interval(), Some(30));
    assert_eq!(app.essential(), Some(true));
    assert!(td.registered_at().is_some());

    let second = register(&c, "sdk-web", vec![container("app")]).await;
    assert_eq!(second.task_definition().unwrap().revision(), 2);

    let latest = c
        .describe_task_definition()
        .task_definition("sdk-web")
        .send()
        .await
        .unwrap();
    assert_eq!(latest.task_definition().unwrap().revision(), 2);
    let arn = latest
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_string();
    assert!(arn.ends_with(":task-definition/sdk-web:2"), "{arn}");

    c.deregister_task_definition()
        .task_definition("sdk-web:2")
        .send()
        .await
        .unwrap();
    let latest = c
        .describe_task_definition()
        .task_definition("sdk-web")
        .send()
        .await
        .unwrap();
    assert_eq!(latest.task_definition().unwrap().revision(), 1);
    let by_arn = c
        .describe_task_definition()
        .task_definition(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_arn.task_definition().unwrap().status(),
        Some(&TaskDefinitionStatus::Inactive)
    );

    let families = c
        .list_task_definition_families()
        .family_prefix("sdk-")
        .send()
        .await
        .unwrap();
    assert_eq!(families.families(), ["sdk-web"]);

    // An invalid size is a ClientException naming the valid values.
    let err = c
        .register_task_definition()
        .family("sdk-bad")
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu("256")
        .memory("3000")
        .container_definitions(container("app"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_client_exception(), "{err:?}");
    assert!(
        err.to_string()
            .contains("memory 3000 is not valid with cpu 256 (valid: 512, 1024, 2048)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_are_refused() {
    let b = Berth::start();
    let key = b.var("AWS_ACCESS_KEY_ID");

    let wrong_secret = b.client_with(&key, "not-the-secret-at-all-0000000000000000000");
    let err = wrong_secret.list_clusters().send().await.unwrap_err();
    let raw = err.raw_response().unwrap();
    assert_eq!(raw.status().as_u16(), 403);
    assert_eq!(
        aws_sdk_ecs::error::ProvideErrorMetadata::code(&err),
        Some("InvalidSignatureException")
    );

    let unknown = b.client_with("AKIAUNKNOWNUNKNOWN00", "whatever");
    let err = unknown.list_clusters().send().await.unwrap_err();
    assert_eq!(
        aws_sdk_ecs::error::ProvideErrorMetadata::code(&err),
        Some("UnrecognizedClientException")
    );
}

#[test]
fn credentials_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let b = Berth::start();
    let mode = std::fs::metadata(b.data_dir().join("credentials.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let _: PathBuf = b.data_dir().to_path_buf();
}

/// One request of the agent protocol, signed for `berth-agent`, over a bare
/// TCP connection: (status, body).
fn agent_call(b: &Berth, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let endpoint = b.var("AWS_ENDPOINT_URL");
    let host = endpoint.trim_start_matches("http://").to_string();
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("host", host.parse().unwrap());
    headers.insert("content-type", "application/json".parse().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    berth_api::sigv4::sign(
        method,
        path,
        None,
        &mut headers,
        body.as_bytes(),
        &b.var("AWS_ACCESS_KEY_ID"),
        &b.var("AWS_SECRET_ACCESS_KEY"),
        &b.var("AWS_REGION"),
        "berth-agent",
        i64::try_from(now).unwrap(),
    );
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in &headers {
        req.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    req.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status: u16 = resp[9..12].parse().unwrap();
    let (_, payload) = resp.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(payload).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_through_the_rust_sdk() {
    use aws_sdk_ecs::types::{DesiredStatus, LaunchType, TaskStopCode};

    let b = Berth::start();
    let c = b.client();
    register(&c, "sdk-tasks", vec![container("app")]).await;

    // No host yet: a failure, not an error.
    let out = c
        .run_task()
        .task_definition("sdk-tasks")
        .send()
        .await
        .unwrap();
    assert!(out.tasks().is_empty());
    assert_eq!(out.failures()[0].reason(), Some("AGENT"));

    let (status, host) = agent_call(
        &b,
        "POST",
        "/agent/v1/register",
        r#"{"hostname": "sdk", "cpu": 2048, "memory": 4096, "agentVersion": "test"}"#,
    );
    assert_eq!(status, 200, "{host}");
    let host_id = host["hostId"].as_str().unwrap().to_string();

    let out = c
        .run_task()
        .task_definition("sdk-tasks")
        .count(2)
        .launch_type(LaunchType::Fargate)
        .started_by("sdk")
        .send()
        .await
        .unwrap();
    assert!(out.failures().is_empty());
    let tasks = out.tasks();
    assert_eq!(tasks.len(), 2);
    let t = &tasks[0];
    assert_eq!(t.last_status(), Some("PROVISIONING"));
    assert_eq!(t.launch_type(), Some(&LaunchType::Fargate));
    assert_eq!(t.ephemeral_storage().unwrap().size_in_gib(), 20);
    assert!(t.created_at().is_some());
    let ip = t.attachments()[0]
        .details()
        .iter()
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value())
        .unwrap()
        .to_string();
    assert_eq!(ip, "10.213.1.2");
    assert_eq!(
        t.containers()[0].network_interfaces()[0].private_ipv4_address(),
        Some(ip.as_str())
    );
    let id = t
        .task_arn()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();

    let (status, _) = agent_call(
        &b,
        "POST",
        &format!("/agent/v1/tasks/{id}/state"),
        r#"{"lastStatus": "RUNNING", "containers": [{"name": "app", "lastStatus": "RUNNING"}]}"#,
    );
    assert_eq!(status, 200);
    let d = c.describe_tasks().tasks(&id).send().await.unwrap();
    let t = &d.tasks()[0];
    assert_eq!(t.last_status(), Some("RUNNING"));
    assert!(t.started_at().is_some());
    assert_eq!(t.containers()[0].last_status(), Some("RUNNING"));

    let stopped = c
        .stop_task()
        .task(t.task_arn().unwrap())
        .reason("sdk says stop")
        .send()
        .await
        .unwrap();
    let s = stopped.task().unwrap();
    assert_eq!(s.desired_status(), Some("STOPPED"));
    assert_eq!(s.stop_code(), Some(&TaskStopCode::UserInitiated));
    assert!(s.stopping_at().is_some());

    let (status, asg) = agent_call(
        &b,
        "GET",
        &format!("/agent/v1/hosts/{host_id}/assignments"),
        "",
    );
    assert_eq!(status, 200);
    let mine = asg["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["taskId"] == id.as_str())
        .unwrap();
    assert_eq!(mine["desiredStatus"], "STOPPED");

    let running = c.list_tasks().started_by("sdk").send().await.unwrap();
    assert_eq!(running.task_arns().len(), 1);
    let stopped = c
        .list_tasks()
        .desired_status(DesiredStatus::Stopped)
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.task_arns().len(), 1);
}
