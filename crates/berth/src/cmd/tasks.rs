//! `berth run`, `berth ps`, `berth stop`, `berth logs`: human commands on top
//! of the same ECS API the AWS CLI uses.

use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::apiclient::ApiClient;
use crate::Common;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A task definition family name derived from an image reference.
pub fn family_for(image: &str) -> String {
    let name = image.rsplit('/').next().unwrap_or(image);
    let name = name.split(['@', ':']).next().unwrap_or(name);
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("berth-run-{}", clean.trim_matches('-'))
}

/// Registers a task definition for `image`, or reuses the latest revision
/// of its family when it is the same.
async fn ensure_task_definition(
    api: &ApiClient,
    image: &str,
    cpu: &str,
    memory: &str,
    command: &[String],
) -> anyhow::Result<String> {
    let family = family_for(image);
    let mut container = json!({"name": "main", "image": image, "essential": true});
    if !command.is_empty() {
        container["command"] = json!(command);
    }
    if let Ok(v) = api
        .ecs("DescribeTaskDefinition", json!({"taskDefinition": family}))
        .await
    {
        let td = &v["taskDefinition"];
        let c = &td["containerDefinitions"][0];
        let same = td["cpu"] == json!(cpu)
            && td["memory"] == json!(memory)
            && c["image"] == json!(image)
            && c.get("command").cloned().unwrap_or(json!(null))
                == if command.is_empty() {
                    json!(null)
                } else {
                    json!(command)
                };
        if same {
            return Ok(td["taskDefinitionArn"]
                .as_str()
                .unwrap_or_default()
                .to_string());
        }
    }
    let v = api
        .ecs(
            "RegisterTaskDefinition",
            json!({
                "family": family,
                "requiresCompatibilities": ["FARGATE"],
                "networkMode": "awsvpc",
                "cpu": cpu,
                "memory": memory,
                "containerDefinitions": [container],
            }),
        )
        .await?;
    Ok(v["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

async fn describe(api: &ApiClient, cluster: &str, task: &str) -> anyhow::Result<Value> {
    let v = api
        .ecs(
            "DescribeTasks",
            json!({"cluster": cluster, "tasks": [task]}),
        )
        .await?;
    match v["tasks"].get(0) {
        Some(t) => Ok(t.clone()),
        None => bail!("task {task} not found in cluster {cluster}"),
    }
}

async fn print_logs(
    api: &ApiClient,
    task_id: &str,
    container: Option<&str>,
    follow: bool,
) -> anyhow::Result<()> {
    let resp = api.logs(task_id, container, follow).await?;
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("reading the log stream")?;
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                let msg = v["message"].as_str().unwrap_or("");
                if v["stream"] == "stderr" {
                    eprintln!("{msg}");
                } else {
                    println!("{msg}");
                }
            }
        }
    }
    Ok(())
}

/// `berth run`: runs IMAGE as a task, streams its output, and exits with
/// the container's exit code.
pub fn run(
    c: &Common,
    cpu: &str,
    memory: &str,
    cluster: &str,
    image: &str,
    command: &[String],
) -> anyhow::Result<i32> {
    runtime()?.block_on(async {
        let api = ApiClient::from_common(c)?;
        let td = ensure_task_definition(&api, image, cpu, memory, command).await?;
        let v = api
            .ecs("RunTask", json!({"cluster": cluster, "taskDefinition": td, "count": 1, "startedBy": "berth-run"}))
            .await?;
        let Some(task) = v["tasks"].get(0) else {
            let reason = v["failures"][0]["reason"].as_str().unwrap_or("unknown");
            bail!("the task could not be placed: {reason}");
        };
        let arn = task["taskArn"].as_str().unwrap_or_default().to_string();
        let id = arn.rsplit('/').next().unwrap_or_default().to_string();
        eprintln!("task {id} ({})", task["attachments"][0]["details"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["name"] == "privateIPv4Address"))
            .and_then(|x| x["value"].as_str())
            .unwrap_or("no ip"));
        let logs = print_logs(&api, &id, None, true);
        if let Err(e) = logs.await {
            eprintln!("berth: log stream ended: {e:#}");
        }
        // Wait for STOPPED and report the exit code.
        loop {
            let t = describe(&api, cluster, &arn).await?;
            if t["lastStatus"] == "STOPPED" {
                let code = t["containers"][0]["exitCode"].as_i64();
                if let Some(reason) = t["stoppedReason"].as_str() {
                    if t["stopCode"] == "TaskFailedToStart" {
                        eprintln!("berth: {reason}");
                        return Ok(125);
                    }
                }
                if let Some(r) = t["containers"][0]["reason"].as_str() {
                    eprintln!("berth: {r}");
                }
                return Ok(i32::try_from(code.unwrap_or(1)).unwrap_or(1));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// `berth ps`: the tasks of a cluster.
pub fn ps(c: &Common, cluster: &str, all: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let api = ApiClient::from_common(c)?;
        let mut arns: Vec<Value> = Vec::new();
        for status in if all {
            vec!["RUNNING", "STOPPED"]
        } else {
            vec!["RUNNING"]
        } {
            let mut token: Option<String> = None;
            loop {
                let mut req = json!({"cluster": cluster, "desiredStatus": status});
                if let Some(t) = &token {
                    req["nextToken"] = json!(t);
                }
                let v = api.ecs("ListTasks", req).await?;
                arns.extend(v["taskArns"].as_array().cloned().unwrap_or_default());
                match v["nextToken"].as_str() {
                    Some(t) => token = Some(t.to_string()),
                    None => break,
                }
            }
        }
        println!(
            "{:<34} {:<32} {:<15} {:<14} EXIT",
            "TASK", "DEFINITION", "STATUS", "IP"
        );
        for chunk in arns.chunks(100) {
            let v = api
                .ecs("DescribeTasks", json!({"cluster": cluster, "tasks": chunk}))
                .await?;
            for t in v["tasks"].as_array().cloned().unwrap_or_default() {
                let id = t["taskArn"]
                    .as_str()
                    .unwrap_or("")
                    .rsplit('/')
                    .next()
                    .unwrap_or("");
                let def = t["taskDefinitionArn"]
                    .as_str()
                    .unwrap_or("")
                    .rsplit('/')
                    .next()
                    .unwrap_or("");
                let ip = t["attachments"][0]["details"]
                    .as_array()
                    .and_then(|d| d.iter().find(|x| x["name"] == "privateIPv4Address"))
                    .and_then(|x| x["value"].as_str())
                    .unwrap_or("-");
                let exit = t["containers"][0]["exitCode"]
                    .as_i64()
                    .map_or("-".to_string(), |c| c.to_string());
                println!(
                    "{id:<34} {def:<32} {:<15} {ip:<14} {exit}",
                    t["lastStatus"].as_str().unwrap_or("")
                );
            }
        }
        Ok(())
    })
}

/// `berth stop`.
pub fn stop(c: &Common, cluster: &str, task: &str, reason: Option<&str>) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let api = ApiClient::from_common(c)?;
        let mut req = json!({"cluster": cluster, "task": task});
        if let Some(r) = reason {
            req["reason"] = json!(r);
        }
        let v = api.ecs("StopTask", req).await?;
        println!("{}", v["task"]["taskArn"].as_str().unwrap_or(task));
        Ok(())
    })
}

/// `berth logs`.
pub fn logs(c: &Common, task: &str, follow: bool, container: Option<&str>) -> anyhow::Result<()> {
    let id = task.rsplit('/').next().unwrap_or(task).to_string();
    runtime()?.block_on(async {
        let api = ApiClient::from_common(c)?;
        print_logs(&api, &id, container, follow).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_from_images() {
        assert_eq!(family_for("127.0.0.1:7480/team/web:v1"), "berth-run-web");
        assert_eq!(family_for("busybox"), "berth-run-busybox");
        assert_eq!(family_for("reg/a.b@sha256:abc"), "berth-run-a-b");
    }
}
