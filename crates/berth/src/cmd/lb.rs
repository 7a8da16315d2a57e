//! `berth lb ls`, and the load balancer `berth deploy --port` sets up: both
//! on top of the ELBv2 API the AWS CLI uses.
//!
//! Every listener is reachable on this machine at `http(s)://HOST:PORT`,
//! where HOST is the address the server binds listeners to (`--lb-bind`,
//! recorded in the data dir; `127.0.0.1` by default).

use anyhow::{bail, Context};
use serde_json::Value;

use crate::apiclient::ApiClient;
use crate::datadir::DataDir;
use crate::Common;

/// The first port `berth deploy` tries for a new listener.
pub const FIRST_LISTENER_PORT: u16 = 8000;

/// A list answer as a vector (an empty list comes back as "").
pub fn members(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// A load balancer or target group name derived from a service name:
/// ELBv2 names are 1–32 letters, digits and hyphens.
pub fn lb_name(service: &str) -> String {
    let mut n: String = service
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(32)
        .collect();
    while n.ends_with('-') {
        n.pop();
    }
    while n.starts_with('-') {
        n.remove(0);
    }
    if n.is_empty() {
        n.push_str("berth");
    }
    n
}

/// The URL of a listener on this machine.
pub fn listener_url(host: &str, protocol: &str, port: &str) -> String {
    let scheme = if protocol.eq_ignore_ascii_case("HTTPS") {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}:{port}/")
}

/// What `berth deploy --port` wants in front of a service.
#[derive(Debug, Clone)]
pub struct Front {
    /// Load balancer and target group name.
    pub name: String,
    /// The container port the tasks serve.
    pub container_port: u16,
    /// The listener port (default: the first free one from 8000).
    pub listener_port: Option<u16>,
    /// The health check path.
    pub health_check_path: String,
    /// Seconds a deregistered task keeps serving its in-flight requests.
    pub deregistration_delay: u32,
}

/// What is in front of the service.
#[derive(Debug, Clone)]
pub struct FrontEnd {
    /// The target group the service registers in.
    pub target_group_arn: String,
    /// The load balancer's DNS name.
    pub dns_name: String,
    /// The listener's port.
    pub port: String,
    /// The listener's protocol.
    pub protocol: String,
}

fn code_is(e: &anyhow::Error, code: &str) -> bool {
    format!("{e:#}").contains(&format!(": {code}:"))
}

/// Creates the load balancer, target group and listener of `f` when
/// missing, and returns them.
pub async fn ensure(api: &ApiClient, f: &Front, lb_host: &str) -> anyhow::Result<FrontEnd> {
    let lb = match api
        .elbv2(
            "DescribeLoadBalancers",
            &[("Names.member.1", f.name.clone())],
        )
        .await
    {
        Ok(v) => members(&v["LoadBalancers"]).into_iter().next(),
        Err(e) if code_is(&e, "LoadBalancerNotFound") => None,
        Err(e) => return Err(e),
    };
    let lb = match lb {
        Some(lb) => lb,
        None => {
            let v = api
                .elbv2(
                    "CreateLoadBalancer",
                    &[
                        ("Name", f.name.clone()),
                        ("Type", "application".into()),
                        ("Tags.member.1.Key", "berth:service".into()),
                        ("Tags.member.1.Value", f.name.clone()),
                    ],
                )
                .await?;
            println!("load balancer {} created", f.name);
            members(&v["LoadBalancers"])
                .into_iter()
                .next()
                .context("CreateLoadBalancer returned no load balancer")?
        }
    };
    let lb_arn = lb["LoadBalancerArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let tg = match api
        .elbv2(
            "DescribeTargetGroups",
            &[("Names.member.1", f.name.clone())],
        )
        .await
    {
        Ok(v) => members(&v["TargetGroups"]).into_iter().next(),
        Err(e) if code_is(&e, "TargetGroupNotFound") => None,
        Err(e) => return Err(e),
    };
    let tg = match tg {
        Some(tg) => tg,
        None => {
            let v = api
                .elbv2(
                    "CreateTargetGroup",
                    &[
                        ("Name", f.name.clone()),
                        ("Protocol", "HTTP".into()),
                        ("Port", f.container_port.to_string()),
                        ("TargetType", "ip".into()),
                        ("HealthCheckPath", f.health_check_path.clone()),
                        ("HealthCheckIntervalSeconds", "5".into()),
                        ("HealthCheckTimeoutSeconds", "4".into()),
                        ("HealthyThresholdCount", "2".into()),
                        ("UnhealthyThresholdCount", "2".into()),
                        ("Matcher.HttpCode", "200-399".into()),
                    ],
                )
                .await?;
            let tg = members(&v["TargetGroups"])
                .into_iter()
                .next()
                .context("CreateTargetGroup returned no target group")?;
            api.elbv2(
                "ModifyTargetGroupAttributes",
                &[
                    (
                        "TargetGroupArn",
                        tg["TargetGroupArn"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ),
                    (
                        "Attributes.member.1.Key",
                        "deregistration_delay.timeout_seconds".into(),
                    ),
                    (
                        "Attributes.member.1.Value",
                        f.deregistration_delay.to_string(),
                    ),
                ],
            )
            .await?;
            println!("target group {} created", f.name);
            tg
        }
    };
    let tg_arn = tg["TargetGroupArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let listeners = api
        .elbv2("DescribeListeners", &[("LoadBalancerArn", lb_arn.clone())])
        .await?;
    let listener = match members(&listeners["Listeners"]).into_iter().next() {
        Some(l) => l,
        None => create_listener(api, f, &lb_arn, &tg_arn, lb_host).await?,
    };
    Ok(FrontEnd {
        target_group_arn: tg_arn,
        dns_name: lb["DNSName"].as_str().unwrap_or_default().to_string(),
        port: listener["Port"].as_str().unwrap_or_default().to_string(),
        protocol: listener["Protocol"].as_str().unwrap_or("HTTP").to_string(),
    })
}

async fn create_listener(
    api: &ApiClient,
    f: &Front,
    lb_arn: &str,
    tg_arn: &str,
    lb_host: &str,
) -> anyhow::Result<Value> {
    let candidates: Vec<u16> = match f.listener_port {
        Some(p) => vec![p],
        None => (FIRST_LISTENER_PORT..FIRST_LISTENER_PORT.saturating_add(200)).collect(),
    };
    let mut last = None;
    for port in candidates {
        // Skip ports another program on this machine already holds.
        if f.listener_port.is_none() && std::net::TcpListener::bind((lb_host, port)).is_err() {
            continue;
        }
        match api
            .elbv2(
                "CreateListener",
                &[
                    ("LoadBalancerArn", lb_arn.to_string()),
                    ("Protocol", "HTTP".into()),
                    ("Port", port.to_string()),
                    ("DefaultActions.member.1.Type", "forward".into()),
                    ("DefaultActions.member.1.TargetGroupArn", tg_arn.to_string()),
                ],
            )
            .await
        {
            Ok(v) => {
                println!("listener on port {port} created");
                return members(&v["Listeners"])
                    .into_iter()
                    .next()
                    .context("CreateListener returned no listener");
            }
            Err(e) if f.listener_port.is_none() && format!("{e:#}").contains("port") => {
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    match last {
        Some(e) => Err(e.context("no free listener port from 8000 to 8199; pass --lb-port")),
        None => bail!("no free listener port from 8000 to 8199; pass --lb-port"),
    }
}

/// `berth lb ls`: every load balancer, the URL of each listener on this
/// machine, and its targets' health.
pub fn ls(c: &Common) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let api = ApiClient::from_common(c)?;
        let host = DataDir::open_existing(&c.data_dir)?.lb_host();
        let lbs = api.elbv2("DescribeLoadBalancers", &[]).await?;
        let lbs = members(&lbs["LoadBalancers"]);
        if lbs.is_empty() {
            println!("no load balancers (create one with `berth deploy NAME --image IMAGE --port PORT` or `aws elbv2 create-load-balancer`)");
            return Ok(());
        }
        println!("{:<24} {:<28} {:<10} DNS NAME", "NAME", "URL", "TARGETS");
        for lb in lbs {
            let name = lb["LoadBalancerName"].as_str().unwrap_or_default();
            let arn = lb["LoadBalancerArn"].as_str().unwrap_or_default();
            let dns = lb["DNSName"].as_str().unwrap_or_default();
            let listeners = api
                .elbv2("DescribeListeners", &[("LoadBalancerArn", arn.to_string())])
                .await?;
            let listeners = members(&listeners["Listeners"]);
            let tgs = api
                .elbv2("DescribeTargetGroups", &[("LoadBalancerArn", arn.to_string())])
                .await?;
            let (mut healthy, mut total) = (0, 0);
            for tg in members(&tgs["TargetGroups"]) {
                let h = api
                    .elbv2(
                        "DescribeTargetHealth",
                        &[(
                            "TargetGroupArn",
                            tg["TargetGroupArn"].as_str().unwrap_or_default().to_string(),
                        )],
                    )
                    .await?;
                for d in members(&h["TargetHealthDescriptions"]) {
                    total += 1;
                    if d["TargetHealth"]["State"] == "healthy" {
                        healthy += 1;
                    }
                }
            }
            let targets = format!("{healthy}/{total}");
            if listeners.is_empty() {
                println!("{name:<24} {:<28} {targets:<10} {dns}", "(no listener)");
            }
            for l in listeners {
                let url = listener_url(
                    &host,
                    l["Protocol"].as_str().unwrap_or("HTTP"),
                    l["Port"].as_str().unwrap_or_default(),
                );
                println!("{name:<24} {url:<28} {targets:<10} {dns}");
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_elbv2() {
        assert_eq!(lb_name("web_app"), "web-app");
        assert_eq!(lb_name("_x_"), "x");
        assert_eq!(lb_name("___"), "berth");
        assert_eq!(lb_name(&"a".repeat(40)).len(), 32);
        assert_eq!(
            listener_url("127.0.0.1", "HTTP", "8000"),
            "http://127.0.0.1:8000/"
        );
        assert_eq!(
            listener_url("127.0.0.1", "HTTPS", "8443"),
            "https://127.0.0.1:8443/"
        );
    }

    #[test]
    fn query_answers_become_json() {
        let xml = r#"<DescribeListenersResponse xmlns="x"><DescribeListenersResult><Listeners><member><Port>80</Port><Protocol>HTTP</Protocol></member></Listeners><NextMarker/></DescribeListenersResult></DescribeListenersResponse>"#;
        let doc = roxmltree::Document::parse(xml).unwrap();
        let v = crate::apiclient::xml_to_json(doc.root_element());
        let r = &v["DescribeListenersResult"];
        assert_eq!(r["Listeners"][0]["Port"], "80");
        assert!(members(&r["NextMarker"]).is_empty());
    }
}
