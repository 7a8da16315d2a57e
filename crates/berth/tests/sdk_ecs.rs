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
