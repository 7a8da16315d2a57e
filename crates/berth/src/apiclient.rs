//! A small SigV4-signing client of Berth's own APIs, for the human commands
//! (`berth run`, `ps`, `stop`, `logs`). It speaks exactly what the AWS CLI
//! speaks, with the admin key from the data directory.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use http::{HeaderMap, HeaderValue};
use serde_json::Value;

use crate::datadir::DataDir;
use crate::Common;

/// A signed client of one Berth.
pub struct ApiClient {
    endpoint: String,
    host: String,
    key: String,
    secret: String,
    region: String,
    http: reqwest::Client,
}

/// An XML element as JSON, the way Query protocol answers are shaped: an
/// element whose children are all `<member>` is an array, an element with
/// children an object, any other element its text.
pub fn xml_to_json(node: roxmltree::Node<'_, '_>) -> Value {
    let children: Vec<roxmltree::Node<'_, '_>> = node
        .children()
        .filter(roxmltree::Node::is_element)
        .collect();
    if children.is_empty() {
        // An empty list and an empty string look alike; callers treat
        // both as "nothing".
        return Value::String(node.text().unwrap_or("").to_string());
    }
    if children.iter().all(|c| c.tag_name().name() == "member") {
        return Value::Array(children.into_iter().map(xml_to_json).collect());
    }
    let mut map = serde_json::Map::new();
    for c in children {
        map.insert(c.tag_name().name().to_string(), xml_to_json(c));
    }
    Value::Object(map)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl ApiClient {
    /// A client for the Berth whose data dir is given in `c`.
    pub fn from_common(c: &Common) -> anyhow::Result<Self> {
        let dd = DataDir::open_existing(&c.data_dir)?;
        let endpoint = match c.listen {
            Some(a) => format!("http://{a}"),
            None => dd.endpoint(),
        };
        let key = dd.admin_key()?;
        let host = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            endpoint,
            host,
            key: key.access_key_id,
            secret: key.secret_access_key,
            region: dd.config.region.clone(),
            http: reqwest::Client::new(),
        })
    }

    fn signed(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: &[u8],
        service: &str,
        target: Option<&str>,
    ) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&self.host) {
            h.insert(http::header::HOST, v);
        }
        if service == "elasticloadbalancing" {
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
            );
        }
        if let Some(t) = target {
            if let Ok(v) = HeaderValue::from_str(t) {
                h.insert("x-amz-target", v);
            }
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.1"),
            );
        }
        berth_sigv4::sign(
            method,
            path,
            query,
            &mut h,
            body,
            &self.key,
            &self.secret,
            &self.region,
            service,
            now_secs(),
        );
        h.remove(http::header::HOST);
        h
    }

    /// A signed `POST /` (the AWS protocols' one path).
    async fn post_root(
        &self,
        body: Vec<u8>,
        service: &str,
        target: Option<&str>,
    ) -> anyhow::Result<reqwest::Response> {
        let headers = self.signed("POST", "/", None, &body, service, target);
        self.http
            .post(format!("{}/", self.endpoint))
            .headers(headers)
            .body(body)
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach Berth at {} (is `berth up` running?)",
                    self.endpoint
                )
            })
    }

    /// Calls an ECS operation; `Err` carries the AWS error type and message.
    pub async fn ecs(&self, operation: &str, body: Value) -> anyhow::Result<Value> {
        let bytes = serde_json::to_vec(&body)?;
        let target = format!("AmazonEC2ContainerServiceV20141113.{operation}");
        let resp = self.post_root(bytes, "ecs", Some(&target)).await?;
        let status = resp.status();
        let v: Value =
            serde_json::from_slice(&resp.bytes().await.unwrap_or_default()).unwrap_or_default();
        if !status.is_success() {
            bail!(
                "{operation} failed: {}: {}",
                v["__type"].as_str().unwrap_or("error"),
                v["message"].as_str().unwrap_or("")
            );
        }
        Ok(v)
    }

    /// Calls an ELBv2 operation (AWS Query protocol); the `{Action}Result`
    /// element comes back as JSON ([`xml_to_json`]). `Err` carries the
    /// error code and message.
    pub async fn elbv2(&self, action: &str, params: &[(&str, String)]) -> anyhow::Result<Value> {
        let mut form = format!(
            "Action={}&Version=2015-12-01",
            berth_sigv4::percent_encode(action)
        );
        for (k, v) in params {
            form.push('&');
            form.push_str(&berth_sigv4::percent_encode(k));
            form.push('=');
            form.push_str(&berth_sigv4::percent_encode(v));
        }
        let body = form.into_bytes();
        let resp = self.post_root(body, "elasticloadbalancing", None).await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let doc = roxmltree::Document::parse(&text)
            .with_context(|| format!("{action}: the answer is not XML ({status}): {text}"))?;
        let root = xml_to_json(doc.root_element());
        if !status.is_success() {
            let e = &root["Error"];
            bail!(
                "{action} failed: {}: {}",
                e["Code"].as_str().unwrap_or("error"),
                e["Message"].as_str().unwrap_or("")
            );
        }
        Ok(root[format!("{action}Result").as_str()].clone())
    }

    /// Opens the log stream of a task (`GET /berth/v1/tasks/{id}/logs`).
    pub async fn logs(
        &self,
        task_id: &str,
        container: Option<&str>,
        follow: bool,
    ) -> anyhow::Result<reqwest::Response> {
        let path = format!("/berth/v1/tasks/{task_id}/logs");
        let mut q = vec![format!("follow={follow}")];
        if let Some(c) = container {
            q.push(format!("container={c}"));
        }
        q.sort();
        let query = q.join("&");
        let headers = self.signed("GET", &path, Some(&query), b"", "ecs", None);
        let resp = self
            .http
            .get(format!("{}{path}?{query}", self.endpoint))
            .headers(headers)
            .send()
            .await
            .with_context(|| format!("cannot reach Berth at {}", self.endpoint))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            bail!("reading logs of task {task_id} failed: {status}: {text}");
        }
        Ok(resp)
    }
}
