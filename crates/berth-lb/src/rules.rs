//! Listener rules, compiled once per [`crate::DataPlane::apply`]: conditions
//! are turned into byte patterns, header names, methods and CIDRs so that
//! matching a request allocates nothing (a percent-encoded query is the one
//! exception).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use berth_core::elb::{Action, ActionKind, Condition};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::glob;
use crate::snapshot::TgView;

/// What a rule condition sees of a request.
pub(crate) struct RequestView<'a> {
    /// The method.
    pub method: &'a Method,
    /// The path, without the query.
    pub path: &'a str,
    /// The query, without `?`.
    pub query: Option<&'a str>,
    /// The host, port stripped (empty when the request has none).
    pub host: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The client's address.
    pub client: IpAddr,
}

/// A compiled rule.
pub(crate) struct CompiledRule {
    conditions: Vec<Cond>,
    /// What a matching request gets.
    pub action: CompiledAction,
}

enum Cond {
    Path(Vec<Box<[u8]>>),
    Host(Vec<Box<[u8]>>),
    Header {
        name: Option<HeaderName>,
        values: Vec<Box<[u8]>>,
    },
    Method(Vec<Method>),
    Query(Vec<QueryPattern>),
    SourceIp(Vec<Cidr>),
}

/// A `query-string` pair: key pattern (any key when `None`), value pattern.
type QueryPattern = (Option<Box<[u8]>>, Box<[u8]>);

/// A compiled action.
pub(crate) enum CompiledAction {
    /// Forward over these target groups (weight > 0 only); `total` is the
    /// sum of the weights.
    Forward {
        /// Target groups and weights.
        groups: Vec<(Arc<TgView>, u32)>,
        /// The sum of the weights.
        total: u32,
    },
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer with a fixed response.
    Fixed {
        /// Status.
        status: StatusCode,
        /// Content type.
        content_type: HeaderValue,
        /// Body.
        body: Bytes,
    },
    /// Nothing to do (no action, or it forwards to nothing): 503.
    Unavailable,
}

/// A redirect's templates.
pub(crate) struct Redirect {
    protocol: String,
    port: String,
    host: String,
    path: String,
    query: String,
    /// 301 or 302.
    pub status: StatusCode,
}

/// What `#{...}` stands for in a redirect.
pub(crate) struct RedirectInput<'a> {
    /// `HTTP` or `HTTPS` (the listener's).
    pub protocol: &'a str,
    /// The listener's port.
    pub port: u16,
    /// The request's host, port stripped.
    pub host: &'a str,
    /// The request's path.
    pub path: &'a str,
    /// The request's query, without `?`.
    pub query: &'a str,
}

impl CompiledRule {
    /// Compiles a rule; `tg` resolves a target group ARN.
    pub fn compile(
        conditions: &[Condition],
        actions: &[Action],
        tg: &dyn Fn(&str) -> Option<Arc<TgView>>,
    ) -> Self {
        Self {
            conditions: conditions.iter().map(compile_condition).collect(),
            action: actions
                .first()
                .map(|a| compile_action(a, tg))
                .unwrap_or(CompiledAction::Unavailable),
        }
    }

    /// Whether every condition matches.
    pub fn matches(&self, r: &RequestView<'_>) -> bool {
        self.conditions.iter().all(|c| c.matches(r))
    }
}

fn patterns(values: &[String]) -> Vec<Box<[u8]>> {
    values.iter().map(|v| v.as_bytes().into()).collect()
}

fn compile_condition(c: &Condition) -> Cond {
    match c {
        Condition::PathPattern { values } => Cond::Path(patterns(values)),
        Condition::HostHeader { values } => Cond::Host(patterns(values)),
        Condition::HttpHeader { name, values } => Cond::Header {
            name: HeaderName::from_bytes(name.as_bytes()).ok(),
            values: patterns(values),
        },
        Condition::HttpRequestMethod { values } => Cond::Method(
            values
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
        ),
        Condition::QueryString { values } => Cond::Query(
            values
                .iter()
                .map(|p| {
                    (
                        p.key.as_ref().map(|k| k.as_bytes().into()),
                        p.value.as_bytes().into(),
                    )
                })
                .collect(),
        ),
        Condition::SourceIp { values } => Cond::SourceIp(
            values
                .iter()
                .filter_map(|v| {
                    let c = Cidr::parse(v);
                    if c.is_none() {
                        tracing::warn!(cidr = %v, "source-ip condition: not a CIDR block, never matches");
                    }
                    c
                })
                .collect(),
        ),
    }
}

impl Cond {
    fn matches(&self, r: &RequestView<'_>) -> bool {
        match self {
            Cond::Path(ps) => ps
                .iter()
                .any(|p| glob::matches(p, r.path.as_bytes(), false)),
            Cond::Host(ps) => ps.iter().any(|p| glob::matches(p, r.host.as_bytes(), true)),
            Cond::Header { name, values } => {
                let Some(name) = name else { return false };
                r.headers
                    .get_all(name)
                    .iter()
                    .any(|v| values.iter().any(|p| glob::matches(p, v.as_bytes(), true)))
            }
            Cond::Method(ms) => ms.iter().any(|m| m == r.method),
            Cond::Query(pairs) => {
                let Some(q) = r.query else { return false };
                query_pairs(q).any(|(k, v)| {
                    let (k, v) = (percent_decode(k), percent_decode(v));
                    pairs.iter().any(|(pk, pv)| {
                        pk.as_ref().is_none_or(|pk| glob::matches(pk, &k, true))
                            && glob::matches(pv, &v, true)
                    })
                })
            }
            Cond::SourceIp(cidrs) => cidrs.iter().any(|c| c.contains(r.client)),
        }
    }
}

fn compile_action(a: &Action, tg: &dyn Fn(&str) -> Option<Arc<TgView>>) -> CompiledAction {
    match &a.kind {
        ActionKind::Forward { target_groups, .. } => {
            let groups: Vec<(Arc<TgView>, u32)> = target_groups
                .iter()
                .filter(|g| g.weight > 0)
                .filter_map(|g| tg(&g.target_group_arn).map(|v| (v, g.weight)))
                .collect();
            let total = groups.iter().map(|(_, w)| *w).sum();
            if total == 0 {
                CompiledAction::Unavailable
            } else {
                CompiledAction::Forward { groups, total }
            }
        }
        ActionKind::Redirect {
            protocol,
            port,
            host,
            path,
            query,
            status_code,
        } => CompiledAction::Redirect(Redirect {
            protocol: protocol.clone(),
            port: port.clone(),
            host: host.clone(),
            path: path.clone(),
            query: query.clone(),
            status: if *status_code == 301 {
                StatusCode::MOVED_PERMANENTLY
            } else {
                StatusCode::FOUND
            },
        }),
        ActionKind::FixedResponse {
            status_code,
            content_type,
            message_body,
        } => CompiledAction::Fixed {
            status: StatusCode::from_u16(*status_code).unwrap_or(StatusCode::OK),
            content_type: content_type
                .as_deref()
                .and_then(|c| HeaderValue::from_str(c).ok())
                .unwrap_or(HeaderValue::from_static("text/plain; charset=utf-8")),
            body: Bytes::from(message_body.clone().unwrap_or_default()),
        },
    }
}

impl CompiledAction {
    /// Picks a target group of a forward by weight (weight-0 groups were
    /// left out when compiling).
    pub fn pick_group(groups: &[(Arc<TgView>, u32)], total: u32) -> Option<&Arc<TgView>> {
        if let [(g, _)] = groups {
            return Some(g);
        }
        let mut x = fastrand::u32(..total);
        for (g, w) in groups {
            if x < *w {
                return Some(g);
            }
            x -= w;
        }
        None
    }
}

impl Redirect {
    /// The `Location` of the redirect: every component with its `#{...}`
    /// keywords replaced; the query is left out when empty.
    pub fn location(&self, i: &RedirectInput<'_>) -> String {
        let sub = |t: &str| -> String {
            if !t.contains("#{") {
                return t.to_string();
            }
            let port = i.port.to_string();
            t.replace("#{protocol}", &i.protocol.to_ascii_lowercase())
                .replace("#{host}", i.host)
                .replace("#{port}", &port)
                .replace("#{path}", i.path.strip_prefix('/').unwrap_or(i.path))
                .replace("#{query}", i.query)
        };
        let protocol = sub(&self.protocol).to_ascii_lowercase();
        let host = sub(&self.host);
        let port = sub(&self.port);
        let mut path = sub(&self.path);
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let query = sub(&self.query);
        let mut loc = format!("{protocol}://{host}:{port}{path}");
        if !query.is_empty() {
            loc.push('?');
            loc.push_str(&query);
        }
        loc
    }
}

/// `key=value` pairs of a query (a pair without `=` has an empty value).
fn query_pairs(q: &str) -> impl Iterator<Item = (&[u8], &[u8])> {
    q.split('&').filter(|p| !p.is_empty()).map(|p| {
        let p = p.as_bytes();
        match p.iter().position(|&b| b == b'=') {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (p, &[][..]),
        }
    })
}

/// `%XX` decoded (a malformed escape is kept as it is).
pub(crate) fn percent_decode(s: &[u8]) -> Cow<'_, [u8]> {
    if !s.contains(&b'%') {
        return Cow::Borrowed(s);
    }
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                // h and l are below 16: the byte fits.
                #[allow(clippy::cast_possible_truncation)]
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// A CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::y/n` (a bare address is a /32 or /128).
    pub fn parse(s: &str) -> Option<Self> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (
                ip.trim().parse::<IpAddr>().ok()?,
                p.trim().parse::<u8>().ok()?,
            ),
            None => {
                let ip = s.trim().parse::<IpAddr>().ok()?;
                (ip, if ip.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { net: ip, prefix })
    }

    /// Whether `ip` is inside (an IPv4-mapped IPv6 client counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::elb::QueryPair;

    fn view<'a>(
        method: &'a Method,
        path: &'a str,
        query: Option<&'a str>,
        host: &'a str,
        headers: &'a HeaderMap,
        client: &str,
    ) -> RequestView<'a> {
        RequestView {
            method,
            path,
            query,
            host,
            headers,
            client: client.parse().unwrap(),
        }
    }

    fn cond(c: Condition) -> Cond {
        compile_condition(&c)
    }

    #[test]
    fn each_condition_kind() {
        let mut h = HeaderMap::new();
        h.append("x-env", HeaderValue::from_static("Beta"));
        h.append("x-env", HeaderValue::from_static("other"));
        let get = Method::GET;
        let r = view(
            &get,
            "/api/v1/users",
            Some("lang=en%20US&debug&x=1"),
            "www.Example.com",
            &h,
            "10.1.2.3",
        );
        assert!(cond(Condition::PathPattern {
            values: vec!["/nope".into(), "/api/*".into()]
        })
        .matches(&r));
        assert!(!cond(Condition::PathPattern {
            values: vec!["/API/*".into()]
        })
        .matches(&r));
        assert!(cond(Condition::HostHeader {
            values: vec!["*.example.COM".into()]
        })
        .matches(&r));
        assert!(cond(Condition::HttpHeader {
            name: "X-Env".into(),
            values: vec!["beta".into()]
        })
        .matches(&r));
        assert!(!cond(Condition::HttpHeader {
            name: "X-Other".into(),
            values: vec!["*".into()]
        })
        .matches(&r));
        assert!(cond(Condition::HttpRequestMethod {
            values: vec!["POST".into(), "GET".into()]
        })
        .matches(&r));
        assert!(!cond(Condition::HttpRequestMethod {
            values: vec!["get".into()]
        })
        .matches(&r));
        assert!(cond(Condition::QueryString {
            values: vec![QueryPair {
                key: Some("LANG".into()),
                value: "en us".into()
            }]
        })
        .matches(&r));
        assert!(cond(Condition::QueryString {
            values: vec![QueryPair {
                key: None,
                value: "1".into()
            }]
        })
        .matches(&r));
        assert!(cond(Condition::QueryString {
            values: vec![QueryPair {
                key: Some("debug".into()),
                value: "*".into()
            }]
        })
        .matches(&r));
        assert!(!cond(Condition::QueryString {
            values: vec![QueryPair {
                key: Some("lang".into()),
                value: "fr".into()
            }]
        })
        .matches(&r));
        assert!(cond(Condition::SourceIp {
            values: vec!["192.168.0.0/16".into(), "10.0.0.0/8".into()]
        })
        .matches(&r));
        assert!(!cond(Condition::SourceIp {
            values: vec!["10.1.2.4/32".into(), "bogus".into()]
        })
        .matches(&r));
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(c.contains("127.9.9.9".parse().unwrap()));
        assert!(c.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c.contains("128.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("10.0.0.1")
            .unwrap()
            .contains("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(&*percent_decode(b"a%20b"), b"a b");
        assert_eq!(&*percent_decode(b"100%"), b"100%");
        assert_eq!(&*percent_decode(b"%zz%41"), b"%zzA");
        assert_eq!(&*percent_decode(b"%4"), b"%4");
    }

    #[test]
    fn redirect_locations() {
        let r = Redirect {
            protocol: "HTTPS".into(),
            port: "443".into(),
            host: "#{host}".into(),
            path: "/#{path}".into(),
            query: "#{query}".into(),
            status: StatusCode::MOVED_PERMANENTLY,
        };
        let i = RedirectInput {
            protocol: "HTTP",
            port: 80,
            host: "example.com",
            path: "/a/b",
            query: "x=1",
        };
        assert_eq!(r.location(&i), "https://example.com:443/a/b?x=1");
        let r = Redirect {
            protocol: "#{protocol}".into(),
            port: "#{port}".into(),
            host: "new.example.com".into(),
            path: "/v2/#{path}".into(),
            query: "from=#{host}".into(),
            status: StatusCode::FOUND,
        };
        assert_eq!(
            r.location(&RedirectInput { query: "", ..i }),
            "http://new.example.com:80/v2/a/b?from=example.com"
        );
    }
}
