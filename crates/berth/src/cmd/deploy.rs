//! `berth deploy NAME --image IMAGE`: runs IMAGE as the service NAME and
//! follows the rollout, on top of the same ECS API the AWS CLI uses.
//!
//! It registers a task definition revision for the image (family NAME, one
//! container NAME; the latest revision is reused when it is the same, with a
//! forced new deployment), creates the service (circuit breaker with
//! rollback on) or updates it to the revision, then prints the deployments
//! and the service's new events until the deployment is COMPLETED (exit 0)
//! or FAILED (exit 1, with the reason).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::apiclient::ApiClient;
use crate::Common;

/// What `berth deploy` was asked.
#[derive(Debug, Clone)]
pub struct DeployOpts {
    /// Service, family and container name.
    pub name: String,
    /// The image.
    pub image: String,
    /// Task cpu.
    pub cpu: String,
    /// Task memory.
    pub memory: String,
    /// Desired count (default: 1 for a new service, unchanged otherwise).
    pub count: Option<i64>,
    /// A container port to map.
    pub port: Option<u16>,
    /// The cluster.
    pub cluster: String,
    /// Give up after this long.
    pub timeout: Duration,
    /// The load balancer to put in front (with `--port`, unless `--no-lb`).
    pub front: Option<super::lb::Front>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The revision to deploy, and whether it was reused unchanged.
async fn task_definition(api: &ApiClient, o: &DeployOpts) -> anyhow::Result<(String, bool)> {
    let mut container = json!({"name": o.name, "image": o.image, "essential": true});
    if let Some(p) = o.port {
        container["portMappings"] = json!([{"containerPort": p, "protocol": "tcp"}]);
    }
    if let Ok(v) = api
        .ecs("DescribeTaskDefinition", json!({"taskDefinition": o.name}))
        .await
    {
        let td = &v["taskDefinition"];
        let c = &td["containerDefinitions"][0];
        let ports: Vec<Value> = c["portMappings"]
            .as_array()
            .map(|a| a.iter().map(|p| p["containerPort"].clone()).collect())
            .unwrap_or_default();
        let same = td["cpu"] == json!(o.cpu)
            && td["memory"] == json!(o.memory)
            && td["containerDefinitions"].as_array().map(Vec::len) == Some(1)
            && c["name"] == json!(o.name)
            && c["image"] == json!(o.image)
            && c.get("command").is_none()
            && ports == o.port.map(|p| vec![json!(p)]).unwrap_or_default();
        if same {
            let arn = td["taskDefinitionArn"].as_str().unwrap_or_default();
            return Ok((arn.to_string(), true));
        }
    }
    let v = api
        .ecs(
            "RegisterTaskDefinition",
            json!({
                "family": o.name,
                "requiresCompatibilities": ["FARGATE"],
                "networkMode": "awsvpc",
                "cpu": o.cpu,
                "memory": o.memory,
                "containerDefinitions": [container],
            }),
        )
        .await?;
    let arn = v["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap_or_default();
    Ok((arn.to_string(), false))
}

fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// One line per deployment: what changed since the last poll is printed.
fn deployment_lines(service: &Value) -> Vec<String> {
    service["deployments"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    format!(
                        "  {} {:<7} {:<11} {:<10} running {}/{} pending {}{}",
                        d["id"].as_str().unwrap_or(""),
                        d["status"].as_str().unwrap_or(""),
                        d["rolloutState"].as_str().unwrap_or(""),
                        short(d["taskDefinition"].as_str().unwrap_or("")),
                        d["runningCount"],
                        d["desiredCount"],
                        d["pendingCount"],
                        match d["failedTasks"].as_i64() {
                            Some(n) if n > 0 => format!(" failed {n}"),
                            _ => String::new(),
                        }
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn print_url(url: Option<&str>, front: Option<&super::lb::FrontEnd>) {
    if let (Some(url), Some(fe)) = (url, front) {
        println!("url: {url}");
        println!(
            "load balancer: {} (also http://{}:{}/ from this machine's browsers and curl)",
            fe.dns_name, fe.dns_name, fe.port
        );
    }
}

async fn describe(api: &ApiClient, cluster: &str, name: &str) -> anyhow::Result<Option<Value>> {
    let v = api
        .ecs(
            "DescribeServices",
            json!({"cluster": cluster, "services": [name]}),
        )
        .await?;
    Ok(v["services"].get(0).cloned())
}

/// `berth deploy`.
pub fn run(c: &Common, o: &DeployOpts) -> anyhow::Result<()> {
    if !valid_name(&o.name) {
        bail!(
            "{:?} cannot name a service: use 1 to 255 letters, digits, hyphens and underscores",
            o.name
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(deploy(c, o))
}

async fn deploy(c: &Common, o: &DeployOpts) -> anyhow::Result<()> {
    let api = ApiClient::from_common(c)?;
    let lb_host = crate::datadir::DataDir::open_existing(&c.data_dir)?.lb_host();
    let front = match &o.front {
        Some(f) => Some(super::lb::ensure(&api, f, &lb_host).await?),
        None => None,
    };
    let load_balancers = front.as_ref().map(|fe| {
        json!([{
            "targetGroupArn": fe.target_group_arn,
            "containerName": o.name,
            "containerPort": o.port,
        }])
    });
    let url = front
        .as_ref()
        .map(|fe| super::lb::listener_url(&lb_host, &fe.protocol, &fe.port));
    let (td, reused) = task_definition(&api, o).await?;
    println!(
        "task definition {}{}",
        short(&td),
        if reused { " (unchanged)" } else { "" }
    );
    let existing = describe(&api, &o.cluster, &o.name).await?;
    let status = existing
        .as_ref()
        .and_then(|s| s["status"].as_str())
        .unwrap_or("INACTIVE")
        .to_string();
    let service = match status.as_str() {
        "ACTIVE" => {
            let mut req = json!({
                "cluster": o.cluster,
                "service": o.name,
                "taskDefinition": td,
                "forceNewDeployment": reused,
            });
            if let Some(n) = o.count {
                req["desiredCount"] = json!(n);
            }
            if let Some(lbs) = &load_balancers {
                let current = existing.as_ref().map(|s| &s["loadBalancers"]);
                if current != Some(lbs) {
                    req["loadBalancers"] = lbs.clone();
                }
            }
            let v = api.ecs("UpdateService", req).await?;
            println!("service {} updated", o.name);
            v["service"].clone()
        }
        "DRAINING" => bail!(
            "service {} is being deleted (DRAINING); wait until it is INACTIVE and deploy again",
            o.name
        ),
        _ => {
            let mut req = json!({
                "cluster": o.cluster,
                "serviceName": o.name,
                "taskDefinition": td,
                "desiredCount": o.count.unwrap_or(1),
                "launchType": "FARGATE",
                "deploymentConfiguration": {
                    "deploymentCircuitBreaker": {"enable": true, "rollback": true},
                    "maximumPercent": 200,
                    "minimumHealthyPercent": 100,
                },
            });
            if let Some(lbs) = &load_balancers {
                req["loadBalancers"] = lbs.clone();
            }
            let v = api.ecs("CreateService", req).await?;
            println!("service {} created", o.name);
            v["service"].clone()
        }
    };
    let ours = service["deployments"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["status"] == "PRIMARY"))
        .and_then(|d| d["id"].as_str())
        .context("the service has no PRIMARY deployment")?
        .to_string();
    println!("deployment {ours}");
    let mut seen: HashSet<String> = service["events"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter_map(|e| e["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut last_lines = Vec::new();
    let deadline = Instant::now() + o.timeout;
    loop {
        let Some(s) = describe(&api, &o.cluster, &o.name).await? else {
            bail!("service {} disappeared while deploying", o.name);
        };
        let mut new_events: Vec<&Value> = s["events"]
            .as_array()
            .map(|es| {
                es.iter()
                    .filter(|e| !seen.contains(e["id"].as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        new_events.reverse();
        for e in new_events {
            seen.insert(e["id"].as_str().unwrap_or("").to_string());
            println!("  event: {}", e["message"].as_str().unwrap_or(""));
        }
        let lines = deployment_lines(&s);
        if lines != last_lines {
            for l in &lines {
                println!("{l}");
            }
            last_lines = lines;
        }
        let mine = s["deployments"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["id"] == json!(ours)));
        match mine.map(|d| (d["rolloutState"].as_str().unwrap_or(""), d)) {
            Some(("COMPLETED", _)) => {
                println!(
                    "deployment {ours} completed: service {} runs {} ({} task(s))",
                    o.name, o.image, s["desiredCount"]
                );
                print_url(url.as_deref(), front.as_ref());
                return Ok(());
            }
            Some(("FAILED", d)) => {
                let rollback = s["deployments"]
                    .as_array()
                    .and_then(|ds| ds.iter().find(|d| d["status"] == "PRIMARY"))
                    .filter(|p| p["id"] != json!(ours))
                    .map(|p| {
                        format!(
                            "; rolling back to {} ({})",
                            short(p["taskDefinition"].as_str().unwrap_or("")),
                            p["id"].as_str().unwrap_or("")
                        )
                    })
                    .unwrap_or_default();
                bail!(
                    "deployment {ours} failed: {}{rollback}",
                    d["rolloutStateReason"]
                        .as_str()
                        .unwrap_or("no reason given")
                );
            }
            Some(_) => {}
            None => {
                // A deployment leaves the list once it has no task left; its
                // fate is in the events.
                let said = |what: &str| {
                    s["events"].as_array().is_some_and(|es| {
                        es.iter().any(|e| {
                            e["message"]
                                .as_str()
                                .is_some_and(|m| m.contains(&format!("(deployment {ours}) {what}")))
                        })
                    })
                };
                if said("deployment completed.") {
                    println!("deployment {ours} completed");
                    print_url(url.as_deref(), front.as_ref());
                    return Ok(());
                }
                if said("deployment failed") {
                    let primary = s["deployments"]
                        .as_array()
                        .and_then(|ds| ds.iter().find(|d| d["status"] == "PRIMARY"));
                    bail!(
                        "deployment {ours} failed: ECS deployment circuit breaker: tasks failed to start.{}",
                        primary
                            .map(|p| format!(
                                "; rolling back to {} ({})",
                                short(p["taskDefinition"].as_str().unwrap_or("")),
                                p["id"].as_str().unwrap_or("")
                            ))
                            .unwrap_or_default()
                    );
                }
                bail!("deployment {ours} was replaced by another deployment before it completed");
            }
        }
        if s["status"] != "ACTIVE" {
            bail!(
                "service {} is {} (deleted while deploying)",
                o.name,
                s["status"].as_str().unwrap_or("")
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "deployment {ours} did not complete within {} s; follow it with `aws ecs describe-services --services {}`",
                o.timeout.as_secs(),
                o.name
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lines() {
        assert!(valid_name("web_1"));
        assert!(!valid_name("web:1"));
        let s = json!({"deployments": [{
            "id": "ecs-svc/1", "status": "PRIMARY", "rolloutState": "IN_PROGRESS",
            "taskDefinition": "arn:aws:ecs:r:1:task-definition/web:2",
            "runningCount": 1, "desiredCount": 3, "pendingCount": 2, "failedTasks": 1
        }]});
        assert_eq!(
            deployment_lines(&s),
            ["  ecs-svc/1 PRIMARY IN_PROGRESS web:2      running 1/3 pending 2 failed 1"]
        );
    }
}
