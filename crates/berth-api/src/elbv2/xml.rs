//! The AWS Query protocol's response side: XML documents in the ELBv2
//! namespace, lists as `<member>` elements, every string escaped.
//!
//! Results are built as JSON values in the shape of the model's output
//! (member names as keys, lists as arrays, timestamps already formatted)
//! and written out here, so the per-operation code never writes XML.

use axum::body::Body;
use axum::response::Response;
use berth_core::elb::XML_NAMESPACE;
use berth_core::Timestamp;
use http::{HeaderValue, StatusCode};
use serde_json::Value;

/// The content type of responses.
pub const CONTENT_TYPE: &str = "text/xml";

/// Escapes text for element content and attribute values. Characters XML
/// 1.0 cannot carry (controls other than tab and newline) become U+FFFD;
/// a carriage return is kept as `&#13;` so parsers do not fold it.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// An instant as the Query protocol writes timestamps:
/// `2026-11-21T10:00:00.000Z` (UTC, milliseconds).
pub fn timestamp(t: Timestamp) -> String {
    // `amz_date` is `YYYYMMDDTHHMMSSZ`.
    let d = crate::sigv4::amz_date(t.secs());
    let ms = t.0.rem_euclid(1000);
    match (
        d.get(0..4),
        d.get(4..6),
        d.get(6..8),
        d.get(9..11),
        d.get(11..13),
        d.get(13..15),
    ) {
        (Some(y), Some(mo), Some(da), Some(h), Some(mi), Some(s)) => {
            format!("{y}-{mo}-{da}T{h}:{mi}:{s}.{ms:03}Z")
        }
        _ => d,
    }
}

/// Writes the members of a structure.
fn members(out: &mut String, obj: &serde_json::Map<String, Value>) {
    for (k, v) in obj {
        element(out, k, v);
    }
}

/// Writes one member: `<name>value</name>`; nulls are left out.
fn element(out: &mut String, name: &str, v: &Value) {
    match v {
        Value::Null => {}
        Value::Array(items) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            for item in items {
                element(out, "member", item);
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        other => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            value(out, other);
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
    }
}

fn value(out: &mut String, v: &Value) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&escape(s)),
        Value::Array(items) => {
            for item in items {
                element(out, "member", item);
            }
        }
        Value::Object(o) => members(out, o),
    }
}

/// The document of a successful `action`:
/// `<{action}Response xmlns=...><{action}Result>...</{action}Result><ResponseMetadata>...`.
pub fn document(action: &str, result: &Value, request_id: &str) -> String {
    let mut out = String::with_capacity(512);
    out.push_str(&format!(
        "<{action}Response xmlns=\"{XML_NAMESPACE}\"><{action}Result>"
    ));
    value(&mut out, result);
    out.push_str(&format!(
        "</{action}Result><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        escape(request_id)
    ));
    out
}

/// The document of a failure.
pub fn error_document(sender: bool, code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"{XML_NAMESPACE}\"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        if sender { "Sender" } else { "Receiver" },
        escape(code),
        escape(message),
        escape(request_id)
    )
}

fn response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-RequestId", v);
    }
    r
}

/// A successful reply.
pub fn ok(action: &str, result: &Value, request_id: &str) -> Response {
    response(
        StatusCode::OK,
        document(action, result, request_id),
        request_id,
    )
}

/// An error reply.
pub fn error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    response(
        status,
        error_document(!status.is_server_error(), code, message, request_id),
        request_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_everything() {
        assert_eq!(
            escape("a<b>&\"c\" 'd'\r\n\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&quot; &apos;d&apos;&#13;\n\u{fffd}"
        );
    }

    #[test]
    fn timestamps_are_iso8601_with_milliseconds() {
        assert_eq!(timestamp(Timestamp(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            timestamp(Timestamp(1_795_255_200_123)),
            "2026-11-21T10:00:00.123Z"
        );
    }

    #[test]
    fn documents() {
        let v = json!({
            "LoadBalancers": [{"LoadBalancerName": "a&b", "State": {"Code": "active"}, "Port": 80,
                               "IsDefault": true, "Missing": null, "Empty": []}],
            "NextMarker": null
        });
        let d = document("DescribeLoadBalancers", &v, "rid");
        assert_eq!(
            d,
            "<DescribeLoadBalancersResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">\
             <DescribeLoadBalancersResult><LoadBalancers><member><Empty></Empty><IsDefault>true</IsDefault>\
             <LoadBalancerName>a&amp;b</LoadBalancerName><Port>80</Port><State><Code>active</Code></State>\
             </member></LoadBalancers></DescribeLoadBalancersResult><ResponseMetadata><RequestId>rid</RequestId>\
             </ResponseMetadata></DescribeLoadBalancersResponse>"
        );
        let e = error_document(true, "TargetGroupNotFound", "tg <x> not found", "rid");
        assert!(e.contains("<Type>Sender</Type><Code>TargetGroupNotFound</Code><Message>tg &lt;x&gt; not found</Message>"));
        assert!(e.ends_with("<RequestId>rid</RequestId></ErrorResponse>"));
    }
}
