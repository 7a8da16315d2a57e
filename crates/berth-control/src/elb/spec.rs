//! What requests give for actions, conditions, tags and certificates, and
//! the pure checks that turn them into the normalized records of
//! `berth_core::elb` (or say what is wrong, naming the field).
//!
//! The wire layer fills these from the Query protocol's members as they
//! came (integers as `i64`, so that out-of-range values are reported here
//! with ELBv2's limits).

use std::collections::BTreeMap;

use berth_core::elb::{Action, ActionKind, Condition, QueryPair, WeightedTargetGroup};

use super::net::Ipv4Cidr;
use super::ElbError;

/// A resource carries at most this many tags.
pub const MAX_TAGS: usize = 50;
/// A rule's conditions hold at most this many values in all.
pub const MAX_CONDITION_VALUES: usize = 5;
/// A rule's condition values hold at most this many `*`/`?` wildcards in all.
pub const MAX_WILDCARDS: usize = 5;
/// A forward action spreads over at most this many target groups.
pub const MAX_FORWARD_TARGET_GROUPS: usize = 5;

/// A tag as a request gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagSpec {
    /// 1–128 characters; not starting with `aws:`.
    pub key: String,
    /// 0–256 characters (absent is empty).
    pub value: Option<String>,
}

/// A certificate of an HTTPS listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateSpec {
    /// `arn:aws:acm:{region}:{account}:certificate/{name}`.
    pub certificate_arn: Option<String>,
    /// Accepted (the one certificate given is the default).
    pub is_default: Option<bool>,
}

/// `Values` and `RegexValues` of a host-header or path-pattern config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValuesSpec {
    /// Patterns.
    pub values: Vec<String>,
    /// Regular expressions (refused: Berth matches patterns only).
    pub regex_values: Vec<String>,
}

/// `HttpHeaderConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpHeaderSpec {
    /// The header name.
    pub name: Option<String>,
    /// Patterns.
    pub values: Vec<String>,
    /// Regular expressions (refused).
    pub regex_values: Vec<String>,
}

/// One `QueryStringConfig` pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryPairSpec {
    /// The key pattern, if any.
    pub key: Option<String>,
    /// The value pattern.
    pub value: Option<String>,
}

/// A rule condition as a request gives it: the legacy `Field` + `Values`,
/// or `Field` + the matching `*Config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConditionSpec {
    /// `path-pattern`, `host-header`, `http-header`, `http-request-method`,
    /// `query-string` or `source-ip`.
    pub field: Option<String>,
    /// Legacy values (path-pattern and host-header only).
    pub values: Option<Vec<String>>,
    /// `RegexValues` at the condition's top level (refused).
    pub regex_values: Vec<String>,
    /// `HostHeaderConfig`.
    pub host_header: Option<ValuesSpec>,
    /// `PathPatternConfig`.
    pub path_pattern: Option<ValuesSpec>,
    /// `HttpHeaderConfig`.
    pub http_header: Option<HttpHeaderSpec>,
    /// `QueryStringConfig.Values`.
    pub query_string: Option<Vec<QueryPairSpec>>,
    /// `HttpRequestMethodConfig.Values`.
    pub http_request_method: Option<Vec<String>>,
    /// `SourceIpConfig.Values`.
    pub source_ip: Option<Vec<String>>,
}

/// One target group of a `ForwardConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeightSpec {
    /// The target group's ARN.
    pub target_group_arn: Option<String>,
    /// 0–999 (default 1).
    pub weight: Option<i64>,
}

/// `ForwardConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardSpec {
    /// The target groups and weights.
    pub target_groups: Vec<WeightSpec>,
    /// `TargetGroupStickinessConfig.Enabled`.
    pub stickiness_enabled: Option<bool>,
    /// `TargetGroupStickinessConfig.DurationSeconds` (1–604800).
    pub stickiness_duration: Option<i64>,
}

/// `RedirectConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedirectSpec {
    /// `HTTP`, `HTTPS` or `#{protocol}`.
    pub protocol: Option<String>,
    /// 1–65535 or `#{port}`.
    pub port: Option<String>,
    /// 1–128 characters.
    pub host: Option<String>,
    /// 1–128 characters, starting with `/`.
    pub path: Option<String>,
    /// 0–128 characters, not starting with `?`.
    pub query: Option<String>,
    /// `HTTP_301` or `HTTP_302`.
    pub status_code: Option<String>,
}

/// `FixedResponseConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixedResponseSpec {
    /// `2XX`, `4XX` or `5XX`.
    pub status_code: Option<String>,
    /// One of [`CONTENT_TYPES`].
    pub content_type: Option<String>,
    /// Up to 1024 bytes.
    pub message_body: Option<String>,
}

/// The content types a fixed response may have.
pub const CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "text/css",
    "text/html",
    "application/javascript",
    "application/json",
];

/// An action as a request gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionSpec {
    /// `forward`, `redirect` or `fixed-response` (the `authenticate-*` and
    /// `jwt-validation` types are refused).
    pub action_type: Option<String>,
    /// 1–50000.
    pub order: Option<i64>,
    /// A forward action's single target group.
    pub target_group_arn: Option<String>,
    /// `ForwardConfig`.
    pub forward: Option<ForwardSpec>,
    /// `RedirectConfig`.
    pub redirect: Option<RedirectSpec>,
    /// `FixedResponseConfig`.
    pub fixed_response: Option<FixedResponseSpec>,
    /// Whether an `AuthenticateOidcConfig`, `AuthenticateCognitoConfig` or
    /// `JwtValidationConfig` was given.
    pub authenticate_config: bool,
}

fn invalid(msg: String) -> ElbError {
    ElbError::Validation(msg)
}

/// Checks tags and returns them as a map (DuplicateTagKeys for a key given
/// twice, TooManyTags past [`MAX_TAGS`]).
pub fn tags(field: &str, tags: &[TagSpec]) -> Result<BTreeMap<String, String>, ElbError> {
    let mut out = BTreeMap::new();
    for (i, t) in tags.iter().enumerate() {
        let n = i + 1;
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return Err(invalid(format!(
                "{field}[{n}].Key: a tag key is 1 to 128 characters"
            )));
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid(format!(
                "{field}[{n}].Key: '{}' starts with 'aws:', which is reserved for AWS; choose another key",
                t.key
            )));
        }
        let value = t.value.clone().unwrap_or_default();
        if value.chars().count() > 256 {
            return Err(invalid(format!(
                "{field}[{n}].Value: the value of tag '{}' is longer than 256 characters",
                t.key
            )));
        }
        for (what, s) in [("Key", &t.key), ("Value", &value)] {
            if let Some(c) = s.chars().find(|c| !tag_char(*c)) {
                return Err(invalid(format!(
                    "{field}[{n}].{what}: {c:?} is not allowed in tags (use letters, digits, spaces and _ . : / = + - @)"
                )));
            }
        }
        if out.insert(t.key.clone(), value).is_some() {
            return Err(ElbError::DuplicateTagKeys(format!(
                "tag key '{}' is given more than once; give each key once",
                t.key
            )));
        }
    }
    if out.len() > MAX_TAGS {
        return Err(ElbError::TooManyTags(format!(
            "{} tags were given; a resource carries at most {MAX_TAGS}",
            out.len()
        )));
    }
    Ok(out)
}

fn tag_char(c: char) -> bool {
    c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c)
}

fn check_patterns(
    at: &str,
    values: &[String],
    allowed: impl Fn(char) -> bool,
    allowed_text: &str,
) -> Result<(), ElbError> {
    if values.is_empty() {
        return Err(invalid(format!("{at}: give at least one value")));
    }
    for v in values {
        if v.is_empty() || v.chars().count() > 128 {
            return Err(invalid(format!(
                "{at}: value {v:?} must be 1 to 128 characters"
            )));
        }
        if let Some(c) = v.chars().find(|c| !allowed(*c)) {
            return Err(invalid(format!(
                "{at}: {c:?} in {v:?} is not allowed (use {allowed_text})"
            )));
        }
    }
    Ok(())
}

fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-.$/~\"'@:+&*?".contains(c)
}

fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.*?".contains(c)
}

fn header_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_".contains(c)
}

fn any_printable(c: char) -> bool {
    !c.is_control()
}

fn refuse_regex(at: &str, regex: &[String]) -> Result<(), ElbError> {
    if regex.is_empty() {
        Ok(())
    } else {
        Err(invalid(format!(
            "{at}.RegexValues: regular expressions are not supported by Berth; use Values with the * and ? wildcards"
        )))
    }
}

/// The ELBv2 field name of a condition.
pub fn condition_field(c: &Condition) -> &'static str {
    match c {
        Condition::PathPattern { .. } => "path-pattern",
        Condition::HostHeader { .. } => "host-header",
        Condition::HttpHeader { .. } => "http-header",
        Condition::HttpRequestMethod { .. } => "http-request-method",
        Condition::QueryString { .. } => "query-string",
        Condition::SourceIp { .. } => "source-ip",
    }
}

/// Normalizes a rule's conditions (from legacy `Field`/`Values` or the
/// `*Config` members) and checks ELBv2's limits: each of host-header,
/// path-pattern, http-request-method and source-ip at most once, at most
/// [`MAX_CONDITION_VALUES`] values and [`MAX_WILDCARDS`] wildcards in all.
pub fn conditions(specs: &[ConditionSpec]) -> Result<Vec<Condition>, ElbError> {
    let mut out: Vec<Condition> = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let at = format!("Conditions[{}]", i + 1);
        let c = condition(&at, s)?;
        let once = !matches!(
            c,
            Condition::HttpHeader { .. } | Condition::QueryString { .. }
        );
        if once
            && out
                .iter()
                .any(|o| condition_field(o) == condition_field(&c))
        {
            return Err(invalid(format!(
                "{at}: a rule takes at most one '{}' condition; put all its values in one condition",
                condition_field(&c)
            )));
        }
        out.push(c);
    }
    let (values, wildcards) = out.iter().fold((0usize, 0usize), |(n, w), c| {
        let vs = condition_values(c);
        let wc: usize = vs
            .iter()
            .map(|v| v.chars().filter(|c| *c == '*' || *c == '?').count())
            .sum();
        (n + vs.len(), w + wc)
    });
    if values > MAX_CONDITION_VALUES {
        return Err(invalid(format!(
            "the conditions hold {values} values; a rule can only have '{MAX_CONDITION_VALUES}' condition values (split it into several rules)"
        )));
    }
    if wildcards > MAX_WILDCARDS {
        return Err(invalid(format!(
            "the conditions hold {wildcards} wildcards; a rule can only have '{MAX_WILDCARDS}' wildcards"
        )));
    }
    Ok(out)
}

/// The values of a condition as ELBv2 counts them (a query-string pair is
/// one value).
fn condition_values(c: &Condition) -> Vec<String> {
    match c {
        Condition::PathPattern { values }
        | Condition::HostHeader { values }
        | Condition::HttpHeader { values, .. }
        | Condition::HttpRequestMethod { values }
        | Condition::SourceIp { values } => values.clone(),
        Condition::QueryString { values } => values
            .iter()
            .map(|p| format!("{}{}", p.key.as_deref().unwrap_or(""), p.value))
            .collect(),
    }
}

fn condition(at: &str, s: &ConditionSpec) -> Result<Condition, ElbError> {
    refuse_regex(at, &s.regex_values)?;
    let Some(field) = s.field.as_deref() else {
        return Err(invalid(format!(
            "{at}.Field: a condition needs a Field (path-pattern, host-header, http-header, http-request-method, query-string or source-ip)"
        )));
    };
    // Which *Config members were given, to refuse one that does not fit.
    let configs = [
        ("host-header", "HostHeaderConfig", s.host_header.is_some()),
        (
            "path-pattern",
            "PathPatternConfig",
            s.path_pattern.is_some(),
        ),
        ("http-header", "HttpHeaderConfig", s.http_header.is_some()),
        (
            "query-string",
            "QueryStringConfig",
            s.query_string.is_some(),
        ),
        (
            "http-request-method",
            "HttpRequestMethodConfig",
            s.http_request_method.is_some(),
        ),
        ("source-ip", "SourceIpConfig", s.source_ip.is_some()),
    ];
    if !configs.iter().any(|(f, _, _)| *f == field) {
        return Err(invalid(format!(
            "{at}.Field: '{field}' is not a condition field (use path-pattern, host-header, http-header, http-request-method, query-string or source-ip)"
        )));
    }
    if let Some((_, name, _)) = configs.iter().find(|(f, _, given)| *given && *f != field) {
        return Err(invalid(format!(
            "{at}: {name} does not go with Field '{field}'"
        )));
    }
    let legacy = s.values.as_ref();
    let legacy_or =
        |config: Option<&ValuesSpec>, cfg_name: &str| -> Result<Vec<String>, ElbError> {
            match (legacy, config) {
                (Some(_), Some(_)) => Err(invalid(format!(
                    "{at}: give Values or {cfg_name}, not both"
                ))),
                (Some(v), None) => Ok(v.clone()),
                (None, Some(c)) => {
                    refuse_regex(&format!("{at}.{cfg_name}"), &c.regex_values)?;
                    Ok(c.values.clone())
                }
                (None, None) => Err(invalid(format!(
                    "{at}: a '{field}' condition needs {cfg_name}.Values (or Values)"
                ))),
            }
        };
    let no_legacy = |cfg_name: &str| -> Result<(), ElbError> {
        if legacy.is_some_and(|v| !v.is_empty()) {
            Err(invalid(format!(
                "{at}.Values: Values only applies to path-pattern and host-header conditions; give {cfg_name}"
            )))
        } else {
            Ok(())
        }
    };
    let needs = |cfg_name: &str| invalid(format!("{at}: a '{field}' condition needs {cfg_name}"));
    Ok(match field {
        "path-pattern" => {
            let values = legacy_or(s.path_pattern.as_ref(), "PathPatternConfig")?;
            check_patterns(
                at,
                &values,
                path_char,
                "letters, digits and _ - . $ / ~ \" ' @ : + & * ?",
            )?;
            Condition::PathPattern { values }
        }
        "host-header" => {
            let values = legacy_or(s.host_header.as_ref(), "HostHeaderConfig")?;
            check_patterns(at, &values, host_char, "letters, digits and - . * ?")?;
            Condition::HostHeader { values }
        }
        "http-header" => {
            no_legacy("HttpHeaderConfig")?;
            let h = s
                .http_header
                .as_ref()
                .ok_or_else(|| needs("HttpHeaderConfig"))?;
            let at = format!("{at}.HttpHeaderConfig");
            refuse_regex(&at, &h.regex_values)?;
            let name = h.name.clone().unwrap_or_default();
            if name.is_empty() || name.len() > 40 || !name.chars().all(header_name_char) {
                return Err(invalid(format!(
                    "{at}.HttpHeaderName: {name:?} is not a header name (1 to 40 letters, digits, - and _)"
                )));
            }
            check_patterns(&at, &h.values, any_printable, "printable characters")?;
            Condition::HttpHeader {
                name,
                values: h.values.clone(),
            }
        }
        "http-request-method" => {
            no_legacy("HttpRequestMethodConfig")?;
            let values = s
                .http_request_method
                .clone()
                .ok_or_else(|| needs("HttpRequestMethodConfig"))?;
            let at = format!("{at}.HttpRequestMethodConfig");
            check_patterns(
                &at,
                &values,
                |c| c.is_ascii_uppercase() || c == '_' || c == '-',
                "uppercase letters, _ and -, e.g. GET",
            )?;
            if let Some(v) = values.iter().find(|v| v.len() > 40) {
                return Err(invalid(format!(
                    "{at}: method {v:?} is longer than 40 characters"
                )));
            }
            Condition::HttpRequestMethod { values }
        }
        "query-string" => {
            no_legacy("QueryStringConfig")?;
            let pairs = s
                .query_string
                .clone()
                .ok_or_else(|| needs("QueryStringConfig"))?;
            let at = format!("{at}.QueryStringConfig");
            if pairs.is_empty() {
                return Err(invalid(format!(
                    "{at}.Values: give at least one key/value pair"
                )));
            }
            let mut values = Vec::new();
            for p in pairs {
                let value = p.value.unwrap_or_default();
                if value.is_empty() || value.chars().count() > 128 {
                    return Err(invalid(format!(
                        "{at}.Values: each pair needs a Value of 1 to 128 characters"
                    )));
                }
                if let Some(k) = &p.key {
                    if k.is_empty() || k.chars().count() > 128 {
                        return Err(invalid(format!(
                            "{at}.Values: key {k:?} must be 1 to 128 characters (or left out)"
                        )));
                    }
                }
                values.push(QueryPair { key: p.key, value });
            }
            Condition::QueryString { values }
        }
        _ => {
            no_legacy("SourceIpConfig")?;
            let values = s.source_ip.clone().ok_or_else(|| needs("SourceIpConfig"))?;
            let at = format!("{at}.SourceIpConfig");
            if values.is_empty() {
                return Err(invalid(format!(
                    "{at}.Values: give at least one CIDR block"
                )));
            }
            for v in &values {
                v.parse::<Ipv4Cidr>().map_err(|e| {
                    invalid(format!("{at}.Values: {e} (Berth serves IPv4 clients only)"))
                })?;
            }
            Condition::SourceIp { values }
        }
    })
}

/// Normalizes actions (the target groups they forward to are checked by the
/// caller, which can read the store). `field` names them in messages
/// (`DefaultActions` or `Actions`).
pub fn actions(field: &str, specs: &[ActionSpec]) -> Result<Vec<Action>, ElbError> {
    if specs.is_empty() {
        return Err(invalid(format!(
            "{field}: give one action (forward, redirect or fixed-response)"
        )));
    }
    let mut out = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        out.push(action(&format!("{field}[{}]", i + 1), s)?);
    }
    if out.len() > 1 {
        return Err(ElbError::InvalidLoadBalancerAction(format!(
            "{field}: {} actions were given; a rule takes exactly one forward, redirect or fixed-response action (authentication actions are not supported by Berth)",
            out.len()
        )));
    }
    Ok(out)
}

fn action(at: &str, s: &ActionSpec) -> Result<Action, ElbError> {
    let Some(t) = s.action_type.as_deref() else {
        return Err(invalid(format!(
            "{at}.Type: an action needs a Type (forward, redirect or fixed-response)"
        )));
    };
    let order = match s.order {
        None => None,
        Some(o) => Some(
            u32::try_from(o)
                .ok()
                .filter(|o| (1..=50_000).contains(o))
                .ok_or_else(|| invalid(format!("{at}.Order: {o} is out of range (1 to 50000)")))?,
        ),
    };
    if s.authenticate_config
        || matches!(
            t,
            "authenticate-oidc" | "authenticate-cognito" | "jwt-validation"
        )
    {
        return Err(invalid(format!(
            "{at}: {t} actions are not supported by Berth (no OIDC, Cognito or JWT validation); authenticate in the application or put a proxy in front"
        )));
    }
    let stray = |name: &str, given: bool| -> Result<(), ElbError> {
        if given {
            Err(invalid(format!("{at}: {name} does not go with Type '{t}'")))
        } else {
            Ok(())
        }
    };
    let kind = match t {
        "forward" => {
            stray("RedirectConfig", s.redirect.is_some())?;
            stray("FixedResponseConfig", s.fixed_response.is_some())?;
            forward(at, s)?
        }
        "redirect" => {
            stray("TargetGroupArn", s.target_group_arn.is_some())?;
            stray("ForwardConfig", s.forward.is_some())?;
            stray("FixedResponseConfig", s.fixed_response.is_some())?;
            let r = s.redirect.as_ref().ok_or_else(|| {
                invalid(format!(
                    "{at}: a redirect action needs RedirectConfig (with StatusCode HTTP_301 or HTTP_302)"
                ))
            })?;
            redirect(&format!("{at}.RedirectConfig"), r)?
        }
        "fixed-response" => {
            stray("TargetGroupArn", s.target_group_arn.is_some())?;
            stray("ForwardConfig", s.forward.is_some())?;
            stray("RedirectConfig", s.redirect.is_some())?;
            let f = s.fixed_response.as_ref().ok_or_else(|| {
                invalid(format!(
                    "{at}: a fixed-response action needs FixedResponseConfig (with a StatusCode)"
                ))
            })?;
            fixed_response(&format!("{at}.FixedResponseConfig"), f)?
        }
        other => {
            return Err(invalid(format!(
            "{at}.Type: '{other}' is not an action type (use forward, redirect or fixed-response)"
        )))
        }
    };
    Ok(Action { order, kind })
}

fn forward(at: &str, s: &ActionSpec) -> Result<ActionKind, ElbError> {
    let mut groups: Vec<WeightedTargetGroup> = Vec::new();
    let mut stickiness_seconds = None;
    if let Some(f) = &s.forward {
        let at = format!("{at}.ForwardConfig");
        if f.target_groups.len() > MAX_FORWARD_TARGET_GROUPS {
            return Err(invalid(format!(
                "{at}.TargetGroups: {} target groups were given; a forward action takes at most {MAX_FORWARD_TARGET_GROUPS}",
                f.target_groups.len()
            )));
        }
        for (i, w) in f.target_groups.iter().enumerate() {
            let arn = w.target_group_arn.clone().ok_or_else(|| {
                invalid(format!(
                    "{at}.TargetGroups[{}].TargetGroupArn: give the target group's ARN",
                    i + 1
                ))
            })?;
            let weight = match w.weight {
                None => 1,
                Some(n) => u32::try_from(n).ok().filter(|n| *n <= 999).ok_or_else(|| {
                    invalid(format!(
                        "{at}.TargetGroups[{}].Weight: {n} is out of range (0 to 999)",
                        i + 1
                    ))
                })?,
            };
            if groups.iter().any(|g| g.target_group_arn == arn) {
                return Err(invalid(format!(
                    "{at}.TargetGroups: target group '{arn}' is given more than once"
                )));
            }
            groups.push(WeightedTargetGroup {
                target_group_arn: arn,
                weight,
            });
        }
        if f.stickiness_enabled == Some(true) {
            let d = f.stickiness_duration.ok_or_else(|| {
                invalid(format!(
                    "{at}.TargetGroupStickinessConfig.DurationSeconds: give a duration (1 to 604800) when stickiness is enabled"
                ))
            })?;
            stickiness_seconds = Some(
                u32::try_from(d)
                    .ok()
                    .filter(|d| (1..=604_800).contains(d))
                    .ok_or_else(|| {
                        invalid(format!(
                            "{at}.TargetGroupStickinessConfig.DurationSeconds: {d} is out of range (1 to 604800)"
                        ))
                    })?,
            );
        }
    }
    match (&s.target_group_arn, s.forward.is_some()) {
        (Some(arn), true) => {
            if groups.len() != 1 || groups[0].target_group_arn != *arn {
                return Err(invalid(format!(
                    "{at}: TargetGroupArn and ForwardConfig may be given together only when they name the same single target group"
                )));
            }
        }
        (Some(arn), false) => groups.push(WeightedTargetGroup {
            target_group_arn: arn.clone(),
            weight: 1,
        }),
        (None, _) => {}
    }
    if groups.is_empty() {
        return Err(invalid(format!(
            "{at}: a forward action needs TargetGroupArn or ForwardConfig.TargetGroups"
        )));
    }
    Ok(ActionKind::Forward {
        target_groups: groups,
        forward_config: s.forward.is_some(),
        stickiness_seconds,
    })
}

fn redirect(at: &str, r: &RedirectSpec) -> Result<ActionKind, ElbError> {
    let status_code = match r.status_code.as_deref() {
        Some("HTTP_301") => 301,
        Some("HTTP_302") => 302,
        Some(other) => {
            return Err(invalid(format!(
                "{at}.StatusCode: '{other}' is not valid (use HTTP_301 or HTTP_302)"
            )))
        }
        None => {
            return Err(invalid(format!(
                "{at}.StatusCode: give HTTP_301 or HTTP_302"
            )))
        }
    };
    let protocol = r.protocol.clone().unwrap_or_else(|| "#{protocol}".into());
    if !matches!(protocol.as_str(), "HTTP" | "HTTPS" | "#{protocol}") {
        return Err(invalid(format!(
            "{at}.Protocol: '{protocol}' is not valid (use HTTP, HTTPS or #{{protocol}})"
        )));
    }
    let port = r.port.clone().unwrap_or_else(|| "#{port}".into());
    if port != "#{port}" && !port.parse::<u16>().is_ok_and(|p| p >= 1) {
        return Err(invalid(format!(
            "{at}.Port: '{port}' is not valid (use 1 to 65535 or #{{port}})"
        )));
    }
    let host = r.host.clone().unwrap_or_else(|| "#{host}".into());
    if host.is_empty() || host.chars().count() > 128 {
        return Err(invalid(format!("{at}.Host: give 1 to 128 characters")));
    }
    let path = r.path.clone().unwrap_or_else(|| "/#{path}".into());
    if !path.starts_with('/') || path.chars().count() > 128 {
        return Err(invalid(format!(
            "{at}.Path: '{path}' must start with / and be at most 128 characters"
        )));
    }
    let query = r.query.clone().unwrap_or_else(|| "#{query}".into());
    if query.starts_with('?') || query.chars().count() > 128 {
        return Err(invalid(format!(
            "{at}.Query: '{query}' must not start with ? and be at most 128 characters"
        )));
    }
    if protocol == "#{protocol}"
        && port == "#{port}"
        && host == "#{host}"
        && path == "/#{path}"
        && query == "#{query}"
    {
        return Err(ElbError::InvalidLoadBalancerAction(format!(
            "{at}: the redirect would send clients back to the same URL (a loop); change at least one of Protocol, Port, Host, Path or Query"
        )));
    }
    Ok(ActionKind::Redirect {
        protocol,
        port,
        host,
        path,
        query,
        status_code,
    })
}

fn fixed_response(at: &str, f: &FixedResponseSpec) -> Result<ActionKind, ElbError> {
    let code = f.status_code.as_deref().ok_or_else(|| {
        invalid(format!(
            "{at}.StatusCode: give a status code (2XX, 4XX or 5XX)"
        ))
    })?;
    let status_code = code
        .parse::<u16>()
        .ok()
        .filter(|c| code.len() == 3 && matches!(c / 100, 2 | 4 | 5))
        .ok_or_else(|| {
            invalid(format!(
                "{at}.StatusCode: '{code}' is not valid (use a 2XX, 4XX or 5XX code)"
            ))
        })?;
    if let Some(ct) = &f.content_type {
        if !CONTENT_TYPES.contains(&ct.as_str()) {
            return Err(invalid(format!(
                "{at}.ContentType: '{ct}' is not valid (use {})",
                CONTENT_TYPES.join(", ")
            )));
        }
    }
    if let Some(b) = &f.message_body {
        if b.len() > 1024 {
            return Err(invalid(format!(
                "{at}.MessageBody: {} bytes is longer than the 1024-byte limit",
                b.len()
            )));
        }
    }
    Ok(ActionKind::FixedResponse {
        status_code,
        content_type: f.content_type.clone(),
        message_body: f.message_body.clone(),
    })
}

/// The target groups an action list forwards to, once each.
pub fn forwarded_groups(actions: &[Action]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in actions {
        if let ActionKind::Forward { target_groups, .. } = &a.kind {
            for t in target_groups {
                if !out.contains(&t.target_group_arn) {
                    out.push(t.target_group_arn.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(values: &[&str]) -> ConditionSpec {
        ConditionSpec {
            field: Some("path-pattern".into()),
            values: Some(values.iter().map(ToString::to_string).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn legacy_and_config_conditions_normalize_alike() {
        let legacy = path(&["/api/*"]);
        let config = ConditionSpec {
            field: Some("path-pattern".into()),
            path_pattern: Some(ValuesSpec {
                values: vec!["/api/*".into()],
                regex_values: vec![],
            }),
            ..Default::default()
        };
        let a = conditions(&[legacy]).unwrap();
        let b = conditions(&[config]).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a,
            vec![Condition::PathPattern {
                values: vec!["/api/*".into()]
            }]
        );
    }

    #[test]
    fn every_condition_kind() {
        let specs = vec![
            ConditionSpec {
                field: Some("host-header".into()),
                host_header: Some(ValuesSpec {
                    values: vec!["*.example.com".into()],
                    regex_values: vec![],
                }),
                ..Default::default()
            },
            ConditionSpec {
                field: Some("http-header".into()),
                http_header: Some(HttpHeaderSpec {
                    name: Some("X-Env".into()),
                    values: vec!["blue".into()],
                    regex_values: vec![],
                }),
                ..Default::default()
            },
            ConditionSpec {
                field: Some("http-request-method".into()),
                http_request_method: Some(vec!["GET".into()]),
                ..Default::default()
            },
            ConditionSpec {
                field: Some("query-string".into()),
                query_string: Some(vec![QueryPairSpec {
                    key: Some("v".into()),
                    value: Some("2".into()),
                }]),
                ..Default::default()
            },
            ConditionSpec {
                field: Some("source-ip".into()),
                source_ip: Some(vec!["192.168.0.0/16".into()]),
                ..Default::default()
            },
        ];
        let got = conditions(&specs).unwrap();
        assert_eq!(
            got.iter().map(condition_field).collect::<Vec<_>>(),
            vec![
                "host-header",
                "http-header",
                "http-request-method",
                "query-string",
                "source-ip"
            ]
        );
        assert_eq!(
            got[3],
            Condition::QueryString {
                values: vec![QueryPair {
                    key: Some("v".into()),
                    value: "2".into()
                }]
            }
        );
    }

    fn err_of(r: Result<Vec<Condition>, ElbError>) -> String {
        match r {
            Err(ElbError::Validation(m)) => m,
            other => panic!("expected a ValidationError, got {other:?}"),
        }
    }

    #[test]
    fn condition_mistakes_name_the_field() {
        assert!(err_of(conditions(&[ConditionSpec::default()])).contains("Conditions[1].Field"));
        let m = err_of(conditions(&[path(&["/a"]), path(&["/b"])]));
        assert!(m.contains("at most one 'path-pattern'"), "{m}");
        let m = err_of(conditions(&[path(&["/a", "/b", "/c", "/d", "/e", "/f"])]));
        assert!(m.contains("'5' condition values"), "{m}");
        let m = err_of(conditions(&[path(&["/a*b*c*d*e*f*"])]));
        assert!(m.contains("wildcards"), "{m}");
        let m = err_of(conditions(&[path(&["/a b"])]));
        assert!(m.contains("not allowed"), "{m}");
        let m = err_of(conditions(&[path(&[&format!("/{}", "a".repeat(128))])]));
        assert!(m.contains("1 to 128"), "{m}");
        let m = err_of(conditions(&[ConditionSpec {
            field: Some("path-pattern".into()),
            values: Some(vec!["/a".into()]),
            path_pattern: Some(ValuesSpec {
                values: vec!["/a".into()],
                regex_values: vec![],
            }),
            ..Default::default()
        }]));
        assert!(m.contains("not both"), "{m}");
        let m = err_of(conditions(&[ConditionSpec {
            field: Some("http-header".into()),
            values: Some(vec!["x".into()]),
            ..Default::default()
        }]));
        assert!(m.contains("HttpHeaderConfig"), "{m}");
        let m = err_of(conditions(&[ConditionSpec {
            field: Some("path-pattern".into()),
            host_header: Some(ValuesSpec::default()),
            ..Default::default()
        }]));
        assert!(m.contains("HostHeaderConfig does not go with"), "{m}");
        let m = err_of(conditions(&[ConditionSpec {
            field: Some("path-pattern".into()),
            path_pattern: Some(ValuesSpec {
                values: vec![],
                regex_values: vec!["^/a$".into()],
            }),
            ..Default::default()
        }]));
        assert!(m.contains("RegexValues"), "{m}");
        let m = err_of(conditions(&[ConditionSpec {
            field: Some("cookie".into()),
            ..Default::default()
        }]));
        assert!(m.contains("'cookie' is not a condition field"), "{m}");
        let m = err_of(conditions(&[ConditionSpec {
            field: Some("source-ip".into()),
            source_ip: Some(vec!["10.0.0.1".into()]),
            ..Default::default()
        }]));
        assert!(m.contains("SourceIpConfig"), "{m}");
        let m = err_of(conditions(&[ConditionSpec {
            field: Some("http-request-method".into()),
            http_request_method: Some(vec!["get".into()]),
            ..Default::default()
        }]));
        assert!(m.contains("uppercase"), "{m}");
        // Two http-header conditions are fine; counted values are summed.
        let h = |name: &str| ConditionSpec {
            field: Some("http-header".into()),
            http_header: Some(HttpHeaderSpec {
                name: Some(name.into()),
                values: vec!["1".into(), "2".into()],
                regex_values: vec![],
            }),
            ..Default::default()
        };
        assert_eq!(conditions(&[h("a"), h("b")]).unwrap().len(), 2);
        assert!(conditions(&[h("a"), h("b"), h("c")]).is_err());
    }

    fn fwd(arn: &str) -> ActionSpec {
        ActionSpec {
            action_type: Some("forward".into()),
            target_group_arn: Some(arn.into()),
            ..Default::default()
        }
    }

    #[test]
    fn forward_actions() {
        let a = actions("DefaultActions", &[fwd("tg1")]).unwrap();
        assert_eq!(
            a[0].kind,
            ActionKind::Forward {
                target_groups: vec![WeightedTargetGroup {
                    target_group_arn: "tg1".into(),
                    weight: 1
                }],
                forward_config: false,
                stickiness_seconds: None
            }
        );
        let weighted = ActionSpec {
            action_type: Some("forward".into()),
            forward: Some(ForwardSpec {
                target_groups: vec![
                    WeightSpec {
                        target_group_arn: Some("a".into()),
                        weight: Some(3),
                    },
                    WeightSpec {
                        target_group_arn: Some("b".into()),
                        weight: Some(0),
                    },
                ],
                stickiness_enabled: Some(true),
                stickiness_duration: Some(60),
            }),
            ..Default::default()
        };
        let a = actions("Actions", std::slice::from_ref(&weighted)).unwrap();
        assert_eq!(forwarded_groups(&a), vec!["a".to_string(), "b".to_string()]);
        let mut bad = weighted.clone();
        bad.forward.as_mut().unwrap().target_groups[0].weight = Some(1000);
        assert!(actions("Actions", &[bad]).is_err());
        let mut bad = weighted.clone();
        bad.target_group_arn = Some("a".into());
        assert!(actions("Actions", &[bad]).is_err());
        let mut six = weighted;
        six.forward.as_mut().unwrap().target_groups = (0..6)
            .map(|i| WeightSpec {
                target_group_arn: Some(format!("tg{i}")),
                weight: None,
            })
            .collect();
        assert!(actions("Actions", &[six]).is_err());
        assert!(matches!(
            actions("Actions", &[fwd("a"), fwd("b")]),
            Err(ElbError::InvalidLoadBalancerAction(_))
        ));
        assert!(actions("Actions", &[]).is_err());
        let oidc = ActionSpec {
            action_type: Some("authenticate-oidc".into()),
            authenticate_config: true,
            ..Default::default()
        };
        match actions("Actions", &[oidc]) {
            Err(ElbError::Validation(m)) => assert!(m.contains("not supported by Berth"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn redirect_and_fixed_response_actions() {
        let r = |spec: RedirectSpec| {
            actions(
                "Actions",
                &[ActionSpec {
                    action_type: Some("redirect".into()),
                    redirect: Some(spec),
                    ..Default::default()
                }],
            )
        };
        let ok = r(RedirectSpec {
            protocol: Some("HTTPS".into()),
            port: Some("443".into()),
            status_code: Some("HTTP_301".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            ok[0].kind,
            ActionKind::Redirect {
                protocol: "HTTPS".into(),
                port: "443".into(),
                host: "#{host}".into(),
                path: "/#{path}".into(),
                query: "#{query}".into(),
                status_code: 301
            }
        );
        assert!(matches!(
            r(RedirectSpec {
                status_code: Some("HTTP_302".into()),
                ..Default::default()
            }),
            Err(ElbError::InvalidLoadBalancerAction(_))
        ));
        assert!(r(RedirectSpec {
            status_code: Some("HTTP_307".into()),
            path: Some("/x".into()),
            ..Default::default()
        })
        .is_err());
        assert!(r(RedirectSpec {
            status_code: Some("HTTP_301".into()),
            path: Some("x".into()),
            ..Default::default()
        })
        .is_err());

        let f = |code: &str, ct: Option<&str>, body: Option<String>| {
            actions(
                "Actions",
                &[ActionSpec {
                    action_type: Some("fixed-response".into()),
                    fixed_response: Some(FixedResponseSpec {
                        status_code: Some(code.into()),
                        content_type: ct.map(Into::into),
                        message_body: body,
                    }),
                    ..Default::default()
                }],
            )
        };
        assert!(f("503", Some("text/plain"), Some("down".into())).is_ok());
        assert!(f("200", None, None).is_ok());
        assert!(f("302", None, None).is_err());
        assert!(f("2000", None, None).is_err());
        assert!(f("200", Some("text/xml"), None).is_err());
        assert!(f("200", None, Some("x".repeat(1025))).is_err());
        assert!(f("200", None, Some("x".repeat(1024))).is_ok());
    }

    #[test]
    fn tag_rules() {
        let t = |k: &str, v: &str| TagSpec {
            key: k.into(),
            value: Some(v.into()),
        };
        assert_eq!(tags("Tags", &[t("a", "1")]).unwrap().len(), 1);
        assert!(matches!(
            tags("Tags", &[t("a", "1"), t("a", "2")]),
            Err(ElbError::DuplicateTagKeys(_))
        ));
        assert!(tags("Tags", &[t("aws:x", "1")]).is_err());
        assert!(tags("Tags", &[t("", "1")]).is_err());
        assert!(tags("Tags", &[t("a", "<b>")]).is_err());
        let many: Vec<TagSpec> = (0..51).map(|i| t(&format!("k{i}"), "")).collect();
        assert!(matches!(tags("Tags", &many), Err(ElbError::TooManyTags(_))));
    }
}
