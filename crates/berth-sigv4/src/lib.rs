//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`): verification and signing.
//!
//! The API server calls [`verify`] on every request; Berth's own CLI calls
//! [`sign`] (or [`presign_query`]) to produce requests the server accepts.
//!
//! The canonical form follows the rules AWS uses for every service except S3,
//! so requests from botocore / the AWS CLI and the AWS SDK for Rust verify:
//!
//! * **Canonical URI**: the path as received (still percent-encoded) has its
//!   empty and `.` segments removed and `..` segments resolved, then every byte
//!   other than `A-Za-z0-9-_.~` and `/` is percent-encoded once more. A request
//!   path `/v2/a%20b` therefore canonicalises to `/v2/a%2520b` (the
//!   "double encoding" non-S3 services use). For clients that sign the path
//!   without normalising it, the un-normalised form is accepted too.
//! * **Canonical query**: each `&`-separated pair is percent-decoded (`+` is read
//!   as a space), re-encoded strictly, and the pairs are sorted by key, then
//!   value. A pair without `=` has an empty value. Presigned requests leave
//!   `X-Amz-Signature` out.
//! * **Canonical headers**: the signed headers, lower-cased and sorted, each
//!   value trimmed with runs of spaces and tabs collapsed to one space; repeated
//!   headers are joined with `,` in the order received.
//! * **Payload hash**: the `x-amz-content-sha256` header when present (a hex
//!   digest must match the body; `UNSIGNED-PAYLOAD` is accepted), otherwise
//!   the hex SHA-256 of the body, or `UNSIGNED-PAYLOAD` for presigned requests.
//!
//! Checks run in a fixed order, which decides the error a client sees:
//! missing credentials, malformed credentials (including the date), unknown
//! access key, credential scope, clock skew / expiry, and finally the
//! signature itself. Signatures are compared in constant time.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use hmac::{Hmac, Mac};
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::HeaderMap;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The only signing algorithm supported: `AWS4-HMAC-SHA256`.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The payload-hash placeholder for a body that is not covered by the signature.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// How far (in seconds, either direction) a request's `X-Amz-Date` may be from
/// the server's clock: 15 minutes.
pub const MAX_CLOCK_SKEW_SECS: i64 = 900;

/// The largest `X-Amz-Expires` a presigned request may carry: 7 days.
pub const MAX_PRESIGN_EXPIRES_SECS: i64 = 604_800;

/// The `x-amz-date` header name.
pub const X_AMZ_DATE: &str = "x-amz-date";

/// The `x-amz-content-sha256` header name.
pub const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";

const TERMINATOR: &str = "aws4_request";
const SECONDS_PER_DAY: i64 = 86_400;

/// What a request looks like to the verifier: everything SigV4 covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The HTTP method, e.g. `"POST"`.
    pub method: &'a str,
    /// The raw path as received, still percent-encoded, e.g. `"/"` or
    /// `"/v2/a%20b"`.
    pub path: &'a str,
    /// The raw query string without the leading `?`, percent-encoded as
    /// received; `None` when the request had no query.
    pub query: Option<&'a str>,
    /// The request headers. They must include `host`: over HTTP/2, where the
    /// authority travels in the `:authority` pseudo-header, the caller should
    /// insert a `host` header holding it before verifying.
    pub headers: &'a HeaderMap,
    /// The complete request body.
    pub body: &'a [u8],
}

/// Looks up the secret key for an access key id.
pub trait SecretLookup {
    /// The secret access key for `access_key_id`, or `None` if the key id is
    /// not known.
    fn secret_for(&self, access_key_id: &str) -> Option<String>;
}

impl<S: BuildHasher> SecretLookup for HashMap<String, String, S> {
    fn secret_for(&self, access_key_id: &str) -> Option<String> {
        self.get(access_key_id).cloned()
    }
}

impl SecretLookup for BTreeMap<String, String> {
    fn secret_for(&self, access_key_id: &str) -> Option<String> {
        self.get(access_key_id).cloned()
    }
}

/// A request that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id the request was signed with.
    pub access_key_id: String,
    /// The region named in the credential scope.
    pub region: String,
    /// The service named in the credential scope.
    pub service: String,
    /// The headers the signature covers, lowercase.
    pub signed_headers: Vec<String>,
}

/// Why authentication failed.
///
/// Each variant maps to an AWS error type ([`AuthError::aws_error_type`]) and
/// an HTTP status ([`AuthError::http_status`]); the `Display` text is the
/// message to return to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header and no `X-Amz-Algorithm` query parameter.
    #[error("Missing Authentication Token")]
    Missing,
    /// The `Authorization` header or presigned query is malformed or lacks a
    /// part, names another algorithm, has a malformed credential scope or
    /// date, or does not sign `host`.
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not known.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// The signature does not match (or the body does not match its declared
    /// `x-amz-content-sha256`).
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. \
         Consult the service documentation for details."
    )]
    BadSignature,
    /// The request time is more than 15 minutes from the server's clock, or a
    /// presigned request is past its `X-Amz-Expires`.
    #[error("{0}")]
    Expired(String),
    /// The credential scope names another date, region or service than it
    /// should.
    #[error("{0}")]
    WrongScope(String),
}

impl AuthError {
    /// The AWS error type to report, e.g. `"InvalidSignatureException"`.
    pub fn aws_error_type(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Incomplete(_) => "IncompleteSignatureException",
            AuthError::UnknownKey => "UnrecognizedClientException",
            AuthError::BadSignature | AuthError::Expired(_) | AuthError::WrongScope(_) => {
                "InvalidSignatureException"
            }
        }
    }

    /// The HTTP status code to answer with: 400 for
    /// [`AuthError::Incomplete`], 403 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::Incomplete(_) => 400,
            _ => 403,
        }
    }
}

/// Verifies a SigV4-signed request, authenticated either by an
/// `Authorization` header (with an `X-Amz-Date` header) or by a presigned
/// query (`X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
/// `X-Amz-SignedHeaders`, `X-Amz-Signature` and optionally `X-Amz-Expires`).
///
/// `now` is the server's time in seconds since the Unix epoch.
/// `expected_region` is the region the credential scope must name, and the
/// scope's service must be one of `expected_services` (e.g. `&["ecs"]`).
///
/// A header-authenticated request must be dated within 15 minutes of `now`
/// either way. A presigned request must not be dated more than 15 minutes in
/// the future and expires once `now` is past its date plus `X-Amz-Expires`
/// (1 to 604800 seconds); without `X-Amz-Expires` the 15-minute rule applies.
///
/// # Errors
///
/// The first failing check decides the error, in this order:
/// [`AuthError::Missing`] (no credentials at all), [`AuthError::Incomplete`]
/// (malformed credentials or date), [`AuthError::UnknownKey`],
/// [`AuthError::WrongScope`] (credential date, region, service),
/// [`AuthError::Expired`], and [`AuthError::BadSignature`].
pub fn verify(
    req: &RequestParts<'_>,
    secrets: &dyn SecretLookup,
    now: i64,
    expected_region: &str,
    expected_services: &[&str],
) -> Result<Verified, AuthError> {
    let params = parse_query(req.query);
    let presigned = params.iter().any(|(k, _)| k == b"X-Amz-Algorithm");
    let mut auth_headers = req.headers.get_all(AUTHORIZATION).iter();
    let auth = match (auth_headers.next(), presigned) {
        (None, false) => return Err(AuthError::Missing),
        (Some(_), true) => {
            return Err(AuthError::Incomplete(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter \
                 or the Authorization header should be specified."
                    .to_string(),
            ))
        }
        (Some(header), false) => {
            if auth_headers.next().is_some() {
                return Err(AuthError::Incomplete(
                    "Only one Authorization header may be sent.".to_string(),
                ));
            }
            parse_authorization_header(header, req.headers)?
        }
        (None, true) => parse_presigned_query(&params)?,
    };

    let secret = secrets
        .secret_for(&auth.access_key_id)
        .ok_or(AuthError::UnknownKey)?;

    check_scope(&auth, expected_region, expected_services)?;
    check_time(&auth, now)?;

    // Payload hash. A presigned request without the header may have been
    // signed over the body's hash (botocore's non-S3 query signer) or over
    // UNSIGNED-PAYLOAD (S3 style): both are tried.
    let mut payload_hashes: Vec<Cow<'_, str>> = Vec::with_capacity(2);
    let payload_hash: Cow<'_, str> = match req.headers.get(X_AMZ_CONTENT_SHA256) {
        Some(value) => {
            let value = value.to_str().map_err(|_| AuthError::BadSignature)?;
            if is_sha256_hex(value) {
                if !value.eq_ignore_ascii_case(&hex_sha256(req.body)) {
                    return Err(AuthError::BadSignature);
                }
            } else if value != UNSIGNED_PAYLOAD {
                // Chunk-signed (STREAMING-*) and other payload modes cannot be
                // verified here.
                return Err(AuthError::BadSignature);
            }
            Cow::Borrowed(value)
        }
        None if presigned => {
            payload_hashes.push(Cow::Borrowed(UNSIGNED_PAYLOAD));
            Cow::Owned(hex_sha256(req.body))
        }
        None => Cow::Owned(hex_sha256(req.body)),
    };
    payload_hashes.insert(0, payload_hash);

    let provided = hex::decode(&auth.signature).map_err(|_| AuthError::BadSignature)?;
    let scope = format!(
        "{}/{}/{}/{TERMINATOR}",
        auth.scope_date, auth.region, auth.service
    );
    let key = signing_key(&secret, &auth.scope_date, &auth.region, &auth.service);
    let query = canonical_query(&params, presigned);

    // The normalised path is what botocore and the AWS SDKs sign; a path with
    // empty or dot segments is also tried as-is for clients that don't
    // normalise.
    let normalized = normalize_path(req.path);
    let mut candidates = vec![canonical_uri_of_normalized(&normalized)];
    if !req.path.is_empty() && normalized != req.path {
        candidates.push(uri_encode(req.path.as_bytes(), true));
    }

    let mut matched = false;
    for uri in &candidates {
        for payload_hash in &payload_hashes {
            let creq = canonical_request(
                req.method,
                uri,
                &query,
                req.headers,
                &auth.signed_headers,
                payload_hash,
            );
            let sts = string_to_sign(&auth.amz_date, &scope, &creq);
            let mut mac = new_mac(&key);
            mac.update(sts.as_bytes());
            // `verify_slice` compares in constant time.
            if mac.verify_slice(&provided).is_ok() {
                matched = true;
            }
        }
    }
    if !matched {
        return Err(AuthError::BadSignature);
    }

    Ok(Verified {
        access_key_id: auth.access_key_id,
        region: auth.region,
        service: auth.service,
        signed_headers: auth.signed_headers.clone(),
    })
}

/// Signs a request in place, for [`verify`] (or AWS) to accept.
///
/// Sets `x-amz-date` (from `now`, seconds since the Unix epoch),
/// `x-amz-content-sha256` (hex SHA-256 of `body`) and `Authorization`,
/// replacing any earlier values, so a request may be signed again. Every
/// header present named `host`, `content-type` or `x-amz-*` is signed.
///
/// `path` and `query` are the raw, percent-encoded path and query string that
/// will be sent. The `host` header must already be in `headers`: without it
/// the request is signed without `host`, and [`verify`] rejects it. If the
/// access key id, region or service contain bytes not allowed in a header
/// value, no `Authorization` header is set.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &mut HeaderMap,
    body: &[u8],
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    now: i64,
) {
    sign_with_payload_hash(
        method,
        path,
        query,
        headers,
        &hex_sha256(body),
        access_key_id,
        secret,
        region,
        service,
        now,
    );
}

/// Builds a presigned query string for a request to `path`.
///
/// Returns the query to send (without `?`): the given `query` (if any)
/// followed by `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
/// `X-Amz-Expires`, `X-Amz-SignedHeaders` and `X-Amz-Signature`. Only the
/// `host` header is signed, taken from `headers` (it must be present and must
/// be the one sent); the payload is `UNSIGNED-PAYLOAD`. `expires_secs` is
/// clamped to 1..=604800.
#[allow(clippy::too_many_arguments)]
pub fn presign_query(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    now: i64,
    expires_secs: u32,
) -> String {
    let amz = amz_date(now);
    let date = amz.get(..8).unwrap_or_default();
    let scope = format!("{date}/{region}/{service}/{TERMINATOR}");
    let expires = i64::from(expires_secs).clamp(1, MAX_PRESIGN_EXPIRES_SECS);

    let mut out = String::new();
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        out.push_str(q);
        out.push('&');
    }
    out.push_str("X-Amz-Algorithm=");
    out.push_str(ALGORITHM);
    out.push_str("&X-Amz-Credential=");
    out.push_str(&uri_encode(
        format!("{access_key_id}/{scope}").as_bytes(),
        false,
    ));
    out.push_str("&X-Amz-Date=");
    out.push_str(&amz);
    out.push_str("&X-Amz-Expires=");
    out.push_str(&expires.to_string());
    out.push_str("&X-Amz-SignedHeaders=host");

    let signed = ["host".to_string()];
    let creq = canonical_request(
        method,
        &canonical_uri(path),
        &canonical_query(&parse_query(Some(&out)), false),
        headers,
        &signed,
        UNSIGNED_PAYLOAD,
    );
    let sts = string_to_sign(&amz, &scope, &creq);
    let key = signing_key(secret, date, region, service);
    out.push_str("&X-Amz-Signature=");
    out.push_str(&hex::encode(hmac_sha256(&key, sts.as_bytes())));
    out
}

/// Formats seconds since the Unix epoch as an AWS basic ISO 8601 timestamp,
/// e.g. `"20150830T123600Z"` (UTC). Years outside 0..=9999 do not fit the
/// format and come out longer.
pub fn amz_date(now: i64) -> String {
    let days = now.div_euclid(SECONDS_PER_DAY);
    let secs = now.rem_euclid(SECONDS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Parses an AWS basic ISO 8601 timestamp (`"YYYYMMDDTHHMMSSZ"`, UTC) into
/// seconds since the Unix epoch; `None` if it is malformed or not a real
/// date and time.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let year = num(0..4)?;
    let month = num(4..6)?;
    let day = num(6..8)?;
    let hour = num(9..11)?;
    let minute = num(11..13)?;
    let second = num(13..15)?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second)
}

/// The canonical URI of a raw (percent-encoded) request path, as non-S3
/// services compute it: dot and empty segments removed, then each byte other
/// than `A-Za-z0-9-_.~/` percent-encoded (so `%20` becomes `%2520`). An empty
/// path is `/`.
pub fn canonical_uri(path: &str) -> String {
    canonical_uri_of_normalized(&normalize_path(path))
}

// ---------------------------------------------------------------------------
// Signing internals.

#[allow(clippy::too_many_arguments)]
fn sign_with_payload_hash(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &mut HeaderMap,
    payload_hash: &str,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    now: i64,
) {
    let amz = amz_date(now);
    let date = amz.get(..8).unwrap_or_default();
    headers.remove(AUTHORIZATION);
    set_header(headers, HeaderName::from_static(X_AMZ_DATE), &amz);
    set_header(
        headers,
        HeaderName::from_static(X_AMZ_CONTENT_SHA256),
        payload_hash,
    );

    let mut signed: Vec<String> = headers
        .keys()
        .map(HeaderName::as_str)
        .filter(|n| *n == "host" || *n == "content-type" || n.starts_with("x-amz-"))
        .map(str::to_string)
        .collect();
    signed.sort();
    signed.dedup();

    let creq = canonical_request(
        method,
        &canonical_uri(path),
        &canonical_query(&parse_query(query), false),
        headers,
        &signed,
        payload_hash,
    );
    let scope = format!("{date}/{region}/{service}/{TERMINATOR}");
    let sts = string_to_sign(&amz, &scope, &creq);
    let key = signing_key(secret, date, region, service);
    let signature = hex::encode(hmac_sha256(&key, sts.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={}, Signature={signature}",
        signed.join(";")
    );
    set_header(headers, AUTHORIZATION, &authorization);
}

fn set_header(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    HmacSha256::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = new_mac(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, TERMINATOR.as_bytes())
}

fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex_sha256(canonical_request)
    )
}

/// The canonical request, as bytes (header values need not be UTF-8).
/// `signed_headers` must be lower-case, sorted and free of duplicates.
fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    headers: &HeaderMap,
    signed_headers: &[String],
    payload_hash: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query.as_bytes());
    out.push(b'\n');
    for name in signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        for (i, value) in headers.get_all(name.as_str()).iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_trimmed(&mut out, value.as_bytes());
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    out
}

/// Appends `value` trimmed, with each run of spaces and tabs made one space.
fn push_trimmed(out: &mut Vec<u8>, value: &[u8]) {
    let is_ws = |c: &u8| *c == b' ' || *c == b'\t';
    let mut pending_space = false;
    let mut started = false;
    for c in value {
        if is_ws(c) {
            pending_space = started;
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(*c);
            started = true;
        }
    }
}

/// Removes empty and `.` segments and resolves `..`, the way botocore and the
/// AWS SDKs do for non-S3 services. The result always starts with `/` and
/// keeps a trailing `/` (unless it ends in a dot segment).
fn normalize_path(path: &str) -> Cow<'_, str> {
    if path.is_empty() {
        return Cow::Borrowed("/");
    }
    let needs_work = !path.starts_with('/')
        || path.contains("//")
        || path.split('/').any(|s| s == "." || s == "..");
    if !needs_work {
        return Cow::Borrowed(path);
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    out.push_str(&segments.join("/"));
    if path.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    Cow::Owned(out)
}

fn canonical_uri_of_normalized(normalized: &str) -> String {
    uri_encode(normalized.as_bytes(), true)
}

/// Percent-encodes a query or form value as SigV4 canonicalises it: every
/// byte except `A-Za-z0-9-_.~`, with upper-case hex digits.
pub fn percent_encode(s: &str) -> String {
    uri_encode(s.as_bytes(), false)
}

/// Percent-encodes every byte except `A-Za-z0-9-_.~` (and `/` if
/// `keep_slash`), with upper-case hex digits.
fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &c in bytes {
        if c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && c == b'/')
        {
            out.push(char::from(c));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(c >> 4)]));
            out.push(char::from(HEX[usize::from(c & 0x0f)]));
        }
    }
    out
}

/// Decodes `%XX` escapes (a malformed escape is kept literally) and `+` as a
/// space.
fn percent_decode(input: &str) -> Vec<u8> {
    let b = input.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).and_then(|c| hex_value(*c));
                let lo = b.get(i + 2).and_then(|c| hex_value(*c));
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

type QueryParams = Vec<(Vec<u8>, Vec<u8>)>;

/// Splits a raw query into decoded `(key, value)` pairs; empty pieces (from
/// `&&` or a trailing `&`) are skipped.
fn parse_query(query: Option<&str>) -> QueryParams {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn canonical_query(params: &QueryParams, skip_signature: bool) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !(skip_signature && k == b"X-Amz-Signature"))
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

// ---------------------------------------------------------------------------
// Parsing the credentials.

/// The authentication parts of a request, parsed but not yet checked.
#[derive(Debug)]
struct AuthParts {
    access_key_id: String,
    scope_date: String,
    region: String,
    service: String,
    /// Lower-case, sorted, deduplicated.
    signed_headers: Vec<String>,
    signature: String,
    /// As sent, `YYYYMMDDTHHMMSSZ`.
    amz_date: String,
    /// `amz_date` in seconds since the epoch.
    request_time: i64,
    /// `X-Amz-Expires` of a presigned request.
    presign_expires: Option<i64>,
}

struct Credential {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
}

fn parse_authorization_header(
    header: &HeaderValue,
    headers: &HeaderMap,
) -> Result<AuthParts, AuthError> {
    let text = header.to_str().map_err(|_| {
        AuthError::Incomplete("Authorization header contains invalid characters.".to_string())
    })?;
    let text = text.trim();
    let (algorithm, rest) = text
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((text, ""));
    if algorithm != ALGORITHM {
        return Err(AuthError::Incomplete(format!(
            "Unsupported Authorization algorithm '{algorithm}'; only '{ALGORITHM}' is supported."
        )));
    }

    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|p| !p.is_empty())
    {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.is_some() {
            return Err(AuthError::Incomplete(format!(
                "Authorization header has more than one '{key}' parameter."
            )));
        }
        *slot = Some(value).filter(|v| !v.is_empty());
    }

    let date_header = headers.get(X_AMZ_DATE);
    let mut missing = Vec::new();
    for (name, value) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed_headers),
    ] {
        if value.is_none() {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    if date_header.is_none() {
        missing.push("Authorization header requires existence of a 'X-Amz-Date' header.".into());
    }
    let (Some(credential), Some(signed_headers), Some(signature), Some(date_header)) =
        (credential, signed_headers, signature, date_header)
    else {
        return Err(AuthError::Incomplete(missing.join(" ")));
    };

    let credential = parse_credential(credential)?;
    let signed_headers = parse_signed_headers(signed_headers)?;
    let amz_date = date_header.to_str().unwrap_or_default().to_string();
    let request_time = parse_request_date(&amz_date)?;

    Ok(AuthParts {
        access_key_id: credential.access_key_id,
        scope_date: credential.date,
        region: credential.region,
        service: credential.service,
        signed_headers,
        signature: signature.to_string(),
        amz_date,
        request_time,
        presign_expires: None,
    })
}

fn parse_presigned_query(params: &QueryParams) -> Result<AuthParts, AuthError> {
    let param = |name: &str| -> Result<Option<String>, AuthError> {
        let mut found = params.iter().filter(|(k, _)| k == name.as_bytes());
        let Some((_, value)) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() {
            return Err(AuthError::Incomplete(format!(
                "Query-string authentication allows only one '{name}' parameter."
            )));
        }
        let value = String::from_utf8(value.clone())
            .map_err(|_| AuthError::Incomplete(format!("'{name}' is not valid UTF-8.")))?;
        Ok(Some(value).filter(|v| !v.is_empty()))
    };

    let algorithm = param("X-Amz-Algorithm")?.unwrap_or_default();
    if algorithm != ALGORITHM {
        return Err(AuthError::Incomplete(format!(
            "Unsupported X-Amz-Algorithm '{algorithm}'; only '{ALGORITHM}' is supported."
        )));
    }
    let credential = param("X-Amz-Credential")?;
    let signature = param("X-Amz-Signature")?;
    let signed_headers = param("X-Amz-SignedHeaders")?;
    let date = param("X-Amz-Date")?;
    let expires = param("X-Amz-Expires")?;

    let mut missing = Vec::new();
    for (name, value) in [
        ("X-Amz-Credential", &credential),
        ("X-Amz-Signature", &signature),
        ("X-Amz-SignedHeaders", &signed_headers),
        ("X-Amz-Date", &date),
    ] {
        if value.is_none() {
            missing.push(format!(
                "Query-string authentication requires the '{name}' parameter."
            ));
        }
    }
    let (Some(credential), Some(signature), Some(signed_headers), Some(date)) =
        (credential, signature, signed_headers, date)
    else {
        return Err(AuthError::Incomplete(missing.join(" ")));
    };

    let presign_expires = match expires {
        None => None,
        Some(e) => {
            let secs = e
                .parse::<i64>()
                .ok()
                .filter(|s| (1..=MAX_PRESIGN_EXPIRES_SECS).contains(s))
                .ok_or_else(|| {
                    AuthError::Incomplete(format!(
                        "X-Amz-Expires must be a whole number of seconds from 1 to \
                         {MAX_PRESIGN_EXPIRES_SECS}, not '{e}'."
                    ))
                })?;
            Some(secs)
        }
    };

    let credential = parse_credential(&credential)?;
    let signed_headers = parse_signed_headers(&signed_headers)?;
    let request_time = parse_request_date(&date)?;

    Ok(AuthParts {
        access_key_id: credential.access_key_id,
        scope_date: credential.date,
        region: credential.region,
        service: credential.service,
        signed_headers,
        signature,
        amz_date: date,
        request_time,
        presign_expires,
    })
}

/// `keyid/yyyymmdd/region/service/aws4_request`.
fn parse_credential(credential: &str) -> Result<Credential, AuthError> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, terminator] = parts.as_slice() else {
        return Err(malformed_credential(credential));
    };
    if [key, date, region, service].iter().any(|p| p.is_empty()) {
        return Err(malformed_credential(credential));
    }
    if date.len() != 8 || !date.bytes().all(|c| c.is_ascii_digit()) {
        return Err(AuthError::Incomplete(format!(
            "Invalid credential date '{date}'. Date is not the required format: yyyyMMdd."
        )));
    }
    if *terminator != TERMINATOR {
        return Err(AuthError::Incomplete(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not \
             '{terminator}'."
        )));
    }
    Ok(Credential {
        access_key_id: (*key).to_string(),
        date: (*date).to_string(),
        region: (*region).to_string(),
        service: (*service).to_string(),
    })
}

fn malformed_credential(credential: &str) -> AuthError {
    AuthError::Incomplete(format!(
        "Credential must have exactly 5 slash-delimited elements, e.g. \
         keyid/date/region/service/term, got '{credential}'."
    ))
}

fn parse_signed_headers(list: &str) -> Result<Vec<String>, AuthError> {
    let mut names = Vec::new();
    for name in list.split(';') {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
        if !valid {
            return Err(AuthError::Incomplete(format!(
                "SignedHeaders contains an invalid header name: '{name}'."
            )));
        }
        names.push(name.to_ascii_lowercase());
    }
    names.sort();
    names.dedup();
    if !names.iter().any(|n| n == "host") {
        return Err(AuthError::Incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".to_string(),
        ));
    }
    Ok(names)
}

fn parse_request_date(value: &str) -> Result<i64, AuthError> {
    parse_amz_date(value).ok_or_else(|| {
        AuthError::Incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{value}'. \
             See http://en.wikipedia.org/wiki/ISO_8601"
        ))
    })
}

fn check_scope(
    auth: &AuthParts,
    expected_region: &str,
    expected_services: &[&str],
) -> Result<(), AuthError> {
    let request_day = auth.amz_date.get(..8).unwrap_or_default();
    if auth.scope_date != request_day {
        return Err(AuthError::WrongScope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{request_day}', from 'X-Amz-Date'.",
            auth.scope_date
        )));
    }
    if auth.region != expected_region {
        return Err(AuthError::WrongScope(format!(
            "Credential should be scoped to a valid region, not '{}'.",
            auth.region
        )));
    }
    if !expected_services.contains(&auth.service.as_str()) {
        return Err(AuthError::WrongScope(format!(
            "Credential should be scoped to correct service: '{}'.",
            expected_services.join("' or '")
        )));
    }
    Ok(())
}

fn check_time(auth: &AuthParts, now: i64) -> Result<(), AuthError> {
    let t = auth.request_time;
    let latest = now.saturating_add(MAX_CLOCK_SKEW_SECS);
    if t > latest {
        return Err(AuthError::Expired(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            auth.amz_date,
            amz_date(latest),
            amz_date(now)
        )));
    }
    match auth.presign_expires {
        Some(expires) => {
            if now > t.saturating_add(expires) {
                let earliest = now.saturating_sub(expires);
                return Err(AuthError::Expired(format!(
                    "Signature expired: {} is now earlier than {} ({} - {expires} sec.)",
                    auth.amz_date,
                    amz_date(earliest),
                    amz_date(now)
                )));
            }
        }
        None => {
            let earliest = now.saturating_sub(MAX_CLOCK_SKEW_SECS);
            if t < earliest {
                return Err(AuthError::Expired(format!(
                    "Signature expired: {} is now earlier than {} ({} - 15 min.)",
                    auth.amz_date,
                    amz_date(earliest),
                    amz_date(now)
                )));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Civil dates (proleptic Gregorian), after Howard Hinnant's algorithms.

fn is_leap_year(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of the date `y-m-d`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(y, m, d)` that is `z` days after 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    /// 2015-08-30T12:36:00Z, the AWS test suite's date.
    const T: i64 = 1_440_938_160;
    const REGION: &str = "us-east-1";
    const SERVICE: &str = "service";

    fn secrets() -> HashMap<String, String> {
        HashMap::from([
            (AKID.to_string(), SECRET.to_string()),
            ("AKIDOTHER".to_string(), "other-secret".to_string()),
        ])
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    /// A request to berth.local signed by `sign` with the test credentials.
    fn signed(method: &str, path: &str, query: Option<&str>, body: &[u8], now: i64) -> HeaderMap {
        signed_by(
            method,
            path,
            query,
            body,
            now,
            (AKID, SECRET, REGION, SERVICE),
        )
    }

    /// Like `signed`, with (access key, secret, region, service) given.
    fn signed_by(
        method: &str,
        path: &str,
        query: Option<&str>,
        body: &[u8],
        now: i64,
        (key, secret, region, service): (&str, &str, &str, &str),
    ) -> HeaderMap {
        let mut map = headers(&[("host", "berth.local")]);
        sign(
            method, path, query, &mut map, body, key, secret, region, service, now,
        );
        map
    }

    fn verify_at(
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, AuthError> {
        let req = RequestParts {
            method,
            path,
            query,
            headers,
            body,
        };
        verify(&req, &secrets(), now, REGION, &[SERVICE])
    }

    /// Runs one request from the AWS SigV4 test suite through `verify`.
    fn suite_vector(
        method: &str,
        path: &str,
        query: Option<&str>,
        extra: &[(&str, &str)],
        body: &[u8],
        signed_headers: &str,
        signature: &str,
    ) {
        let mut pairs = vec![
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ];
        pairs.extend_from_slice(extra);
        let mut map = headers(&pairs);
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders={signed_headers}, Signature={signature}"
        );
        map.insert(AUTHORIZATION, HeaderValue::from_str(&auth).unwrap());
        let verified = verify_at(method, path, query, &map, body, T);
        assert_eq!(
            verified,
            Ok(Verified {
                access_key_id: AKID.into(),
                region: REGION.into(),
                service: SERVICE.into(),
                signed_headers: signed_headers.split(';').map(str::to_string).collect(),
            }),
            "{method} {path} {query:?}"
        );
        // One flipped signature digit must fail.
        let mut bad = signature.to_string();
        let last = if bad.ends_with('0') { "1" } else { "0" };
        bad.replace_range(63.., last);
        let auth = auth.replace(signature, &bad);
        map.insert(AUTHORIZATION, HeaderValue::from_str(&auth).unwrap());
        assert_eq!(
            verify_at(method, path, query, &map, body, T),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn aws_suite_get_vanilla() {
        suite_vector(
            "GET",
            "/",
            None,
            &[],
            b"",
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
    }

    #[test]
    fn aws_suite_query_vectors() {
        let sig = "host;x-amz-date";
        // get-vanilla-query-order-key-case
        suite_vector(
            "GET",
            "/",
            Some("Param2=value2&Param1=value1"),
            &[],
            b"",
            sig,
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        );
        // get-vanilla-query-order-value
        suite_vector(
            "GET",
            "/",
            Some("Param1=value2&Param1=value1"),
            &[],
            b"",
            sig,
            "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
        );
        // get-vanilla-query-order-key
        suite_vector(
            "GET",
            "/",
            Some("Param1=value2&Param1=Value1"),
            &[],
            b"",
            sig,
            "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
        );
        // get-vanilla-query-unreserved
        let unreserved = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        suite_vector(
            "GET",
            "/",
            Some(&format!("{unreserved}={unreserved}")),
            &[],
            b"",
            sig,
            "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
        );
        // get-vanilla-utf8-query, as sent on the wire (percent-encoded).
        suite_vector(
            "GET",
            "/",
            Some("%E1%88%B4=bar"),
            &[],
            b"",
            sig,
            "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        );
        // post-vanilla-query
        suite_vector(
            "POST",
            "/",
            Some("Param1=value1"),
            &[],
            b"",
            sig,
            "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
        );
    }

    #[test]
    fn aws_suite_header_vectors() {
        // get-header-key-duplicate: repeated values joined with ',' in order.
        suite_vector(
            "GET",
            "/",
            None,
            &[
                ("my-header1", "value2"),
                ("my-header1", "value2"),
                ("my-header1", "value1"),
            ],
            b"",
            "host;my-header1;x-amz-date",
            "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        );
        // get-header-value-order
        suite_vector(
            "GET",
            "/",
            None,
            &[
                ("my-header1", "value4"),
                ("my-header1", "value1"),
                ("my-header1", "value3"),
                ("my-header1", "value2"),
            ],
            b"",
            "host;my-header1;x-amz-date",
            "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
        );
        // get-header-value-trim
        suite_vector(
            "GET",
            "/",
            None,
            &[("my-header1", " value1"), ("my-header2", " \"a   b   c\"")],
            b"",
            "host;my-header1;my-header2;x-amz-date",
            "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        );
        // post-header-value-case
        suite_vector(
            "POST",
            "/",
            None,
            &[("my-header1", "VALUE1")],
            b"",
            "host;my-header1;x-amz-date",
            "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
        );
        // post-vanilla
        suite_vector(
            "POST",
            "/",
            None,
            &[],
            b"",
            "host;x-amz-date",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        );
        // post-sts-header-before
        let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
        suite_vector(
            "POST",
            "/",
            None,
            &[("x-amz-security-token", token)],
            b"",
            "host;x-amz-date;x-amz-security-token",
            "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
        );
        // post-x-www-form-urlencoded: the body is hashed into the signature.
        suite_vector(
            "POST",
            "/",
            None,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("content-length", "13"),
            ],
            b"Param1=value1",
            "content-type;host;x-amz-date",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        );
    }

    #[test]
    fn aws_suite_path_vectors() {
        let sig = "host;x-amz-date";
        // get-unreserved
        suite_vector(
            "GET",
            "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            None,
            &[],
            b"",
            sig,
            "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        );
        // get-utf8: the suite's raw (unencoded) path is encoded exactly once.
        suite_vector(
            "GET",
            "/ሴ",
            None,
            &[],
            b"",
            sig,
            "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
        );
        // get-space (raw path with a literal space).
        suite_vector(
            "GET",
            "/example space/",
            None,
            &[],
            b"",
            sig,
            "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
        );
        // normalizePath group: get-relative, get-relative-relative, get-slash,
        // get-slash-dot-slash all canonicalise to "/".
        for path in ["/example/..", "/example1/example2/../..", "//", "/./"] {
            suite_vector(
                "GET",
                path,
                None,
                &[],
                b"",
                sig,
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            );
        }
        // get-slash-pointless-dot
        suite_vector(
            "GET",
            "/./example",
            None,
            &[],
            b"",
            sig,
            "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5",
        );
        // get-slashes
        suite_vector(
            "GET",
            "//example//",
            None,
            &[],
            b"",
            sig,
            "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
        );
    }

    /// A signed ECS-style JSON request: (headers, body).
    fn signed_json(now: i64, key: &str, secret: &str) -> (HeaderMap, Vec<u8>) {
        let body = br#"{"cluster":"default","taskDefinition":"web:1"}"#.to_vec();
        let mut map = headers(&[
            ("host", "berth.local:8443"),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "AmazonEC2ContainerServiceV20141113.RunTask"),
            ("user-agent", "berth-cli/0.1"),
        ]);
        sign(
            "POST", "/", None, &mut map, &body, key, secret, REGION, SERVICE, now,
        );
        (map, body)
    }

    #[test]
    fn sign_verify_round_trip() {
        let (map, body) = signed_json(T, AKID, SECRET);
        let auth = map.get(AUTHORIZATION).unwrap().to_str().unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-target, \
             Signature="
        ));
        assert_eq!(map.get(X_AMZ_DATE).unwrap(), "20150830T123600Z");
        assert_eq!(
            map.get(X_AMZ_CONTENT_SHA256).unwrap().to_str().unwrap(),
            hex_sha256(&body)
        );
        let verified = verify_at("POST", "/", None, &map, &body, T).unwrap();
        assert_eq!(verified.access_key_id, AKID);
        assert_eq!(verified.region, REGION);
        assert_eq!(verified.service, SERVICE);
        // The unsigned user-agent may change in transit.
        let mut changed = map.clone();
        changed.insert("user-agent", HeaderValue::from_static("proxy"));
        assert!(verify_at("POST", "/", None, &changed, &body, T).is_ok());
    }

    #[test]
    fn get_vanilla_round_trip_with_sign() {
        let mut map = headers(&[("host", "example.amazonaws.com")]);
        sign(
            "GET", "/", None, &mut map, b"", AKID, SECRET, REGION, SERVICE, T,
        );
        assert!(verify_at("GET", "/", None, &map, b"", T).is_ok());
    }

    #[test]
    fn signing_twice_replaces_the_old_signature() {
        let (mut map, body) = signed_json(T - 100, AKID, SECRET);
        sign(
            "POST", "/", None, &mut map, &body, AKID, SECRET, REGION, SERVICE, T,
        );
        assert_eq!(map.get_all(AUTHORIZATION).iter().count(), 1);
        assert_eq!(map.get_all(X_AMZ_DATE).iter().count(), 1);
        assert!(verify_at("POST", "/", None, &map, &body, T).is_ok());
    }

    #[test]
    fn tampering_is_detected() {
        let (map, body) = signed_json(T, AKID, SECRET);
        // Body changed; the x-amz-content-sha256 header no longer matches it.
        let tampered = br#"{"cluster":"prod","taskDefinition":"web:1"}"#;
        assert_eq!(
            verify_at("POST", "/", None, &map, tampered, T),
            Err(AuthError::BadSignature)
        );
        // Body and its hash header both changed.
        let mut rehashed = map.clone();
        rehashed.insert(
            X_AMZ_CONTENT_SHA256,
            HeaderValue::from_str(&hex_sha256(tampered)).unwrap(),
        );
        assert_eq!(
            verify_at("POST", "/", None, &rehashed, tampered, T),
            Err(AuthError::BadSignature)
        );
        // The hash header is itself signed: dropping it breaks the signature.
        let mut without = map.clone();
        without.remove(X_AMZ_CONTENT_SHA256);
        assert_eq!(
            verify_at("POST", "/", None, &without, &body, T),
            Err(AuthError::BadSignature)
        );
        // A signed header changed.
        let mut target = map.clone();
        target.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonEC2ContainerServiceV20141113.DeleteCluster"),
        );
        assert_eq!(
            verify_at("POST", "/", None, &target, &body, T),
            Err(AuthError::BadSignature)
        );
        // Method, path and query are covered too.
        assert_eq!(
            verify_at("PUT", "/", None, &map, &body, T),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_at("POST", "/x", None, &map, &body, T),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_at("POST", "/", Some("a=b"), &map, &body, T),
            Err(AuthError::BadSignature)
        );
        // A payload-hash mode that cannot be verified is refused.
        let mut streaming = map.clone();
        streaming.insert(
            X_AMZ_CONTENT_SHA256,
            HeaderValue::from_static("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        );
        assert_eq!(
            verify_at("POST", "/", None, &streaming, &body, T),
            Err(AuthError::BadSignature)
        );
        // A signature that isn't hex.
        let mut garbled = map.clone();
        let auth = map.get(AUTHORIZATION).unwrap().to_str().unwrap();
        let (head, _) = auth.split_once("Signature=").unwrap();
        garbled.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("{head}Signature=zz")).unwrap(),
        );
        assert_eq!(
            verify_at("POST", "/", None, &garbled, &body, T),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn unsigned_payload_header_is_accepted() {
        let mut map = headers(&[("host", "berth.local")]);
        sign_with_payload_hash(
            "POST",
            "/",
            None,
            &mut map,
            UNSIGNED_PAYLOAD,
            AKID,
            SECRET,
            REGION,
            SERVICE,
            T,
        );
        assert!(verify_at("POST", "/", None, &map, b"anything", T).is_ok());
    }

    #[test]
    fn wrong_secret_is_bad_signature() {
        let (map, body) = signed_json(T, AKID, "not-the-secret");
        assert_eq!(
            verify_at("POST", "/", None, &map, &body, T),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn unknown_key() {
        let (map, body) = signed_json(T, "AKIDNOBODY", SECRET);
        let err = verify_at("POST", "/", None, &map, &body, T).unwrap_err();
        assert_eq!(err, AuthError::UnknownKey);
        assert_eq!(err.aws_error_type(), "UnrecognizedClientException");
        assert_eq!(err.http_status(), 403);
        assert_eq!(
            err.to_string(),
            "The security token included in the request is invalid."
        );
    }

    #[test]
    fn missing_authentication() {
        let map = headers(&[("host", "berth.local"), ("x-amz-date", "20150830T123600Z")]);
        let err = verify_at("POST", "/", None, &map, b"{}", T).unwrap_err();
        assert_eq!(err, AuthError::Missing);
        assert_eq!(err.aws_error_type(), "MissingAuthenticationTokenException");
        assert_eq!(err.http_status(), 403);
        assert_eq!(err.to_string(), "Missing Authentication Token");
        // A query without X-Amz-Algorithm is not an authentication attempt.
        assert_eq!(
            verify_at("GET", "/", Some("X-Amz-Signature=00"), &map, b"", T),
            Err(AuthError::Missing)
        );
    }

    fn with_auth(value: &str) -> HeaderMap {
        let mut map = headers(&[("host", "berth.local"), ("x-amz-date", "20150830T123600Z")]);
        map.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        map
    }

    fn incomplete_message(map: &HeaderMap) -> String {
        match verify_at("POST", "/", None, map, b"", T) {
            Err(AuthError::Incomplete(message)) => message,
            other => panic!("expected Incomplete, got {other:?}"),
        }
    }

    #[test]
    fn malformed_authorization_is_incomplete() {
        let err = verify_at(
            "POST",
            "/",
            None,
            &with_auth("AWS4-HMAC-SHA256 foo"),
            b"",
            T,
        )
        .unwrap_err();
        assert_eq!(err.aws_error_type(), "IncompleteSignatureException");
        assert_eq!(err.http_status(), 400);
        assert_eq!(
            err.to_string(),
            "Authorization header requires 'Credential' parameter. \
             Authorization header requires 'Signature' parameter. \
             Authorization header requires 'SignedHeaders' parameter."
        );

        let cred = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
        let msg = incomplete_message(&with_auth(&format!(
            "AWS4-HMAC-SHA256 {cred}, SignedHeaders=host;x-amz-date"
        )));
        assert_eq!(msg, "Authorization header requires 'Signature' parameter.");

        let msg = incomplete_message(&with_auth(&format!(
            "AWS4-HMAC-SHA256 {cred}, SignedHeaders=host, Signature="
        )));
        assert_eq!(msg, "Authorization header requires 'Signature' parameter.");

        let msg = incomplete_message(&with_auth("AWS4-HMAC-SHA1 Credential=x"));
        assert!(msg.contains("Unsupported Authorization algorithm 'AWS4-HMAC-SHA1'"));
        let msg = incomplete_message(&with_auth("Bearer abc"));
        assert!(msg.contains("'Bearer'"));

        let msg = incomplete_message(&with_auth(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service, \
             SignedHeaders=host, Signature=00",
        ));
        assert!(msg.starts_with("Credential must have exactly 5 slash-delimited elements"));

        let msg = incomplete_message(&with_auth(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws5_request, \
             SignedHeaders=host, Signature=00",
        ));
        assert!(msg.contains("valid terminator"));

        let msg = incomplete_message(&with_auth(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2015-08-30/us-east-1/service/aws4_request, \
             SignedHeaders=host, Signature=00",
        ));
        assert!(msg.contains("Invalid credential date"));

        let msg = incomplete_message(&with_auth(&format!(
            "AWS4-HMAC-SHA256 {cred}, SignedHeaders=x-amz-date, Signature=00"
        )));
        assert_eq!(
            msg,
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        );

        let msg = incomplete_message(&with_auth(&format!(
            "AWS4-HMAC-SHA256 {cred}, {cred}, SignedHeaders=host, Signature=00"
        )));
        assert!(msg.contains("more than one 'Credential'"));

        // No X-Amz-Date header.
        let mut map = with_auth(&format!(
            "AWS4-HMAC-SHA256 {cred}, SignedHeaders=host, Signature=00"
        ));
        map.remove(X_AMZ_DATE);
        assert_eq!(
            incomplete_message(&map),
            "Authorization header requires existence of a 'X-Amz-Date' header."
        );
        // A malformed X-Amz-Date header.
        map.insert(X_AMZ_DATE, HeaderValue::from_static("2015-08-30T12:36:00Z"));
        assert!(incomplete_message(&map).starts_with("Date must be in ISO-8601 'basic format'"));
        map.insert(X_AMZ_DATE, HeaderValue::from_static("20150230T123600Z"));
        assert!(incomplete_message(&map).starts_with("Date must be in ISO-8601 'basic format'"));
    }

    #[test]
    fn authorization_without_spaces_after_commas_is_accepted() {
        let (map, body) = signed_json(T, AKID, SECRET);
        let auth = map.get(AUTHORIZATION).unwrap().to_str().unwrap();
        let mut compact = map.clone();
        compact.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&auth.replace(", ", ",")).unwrap(),
        );
        assert!(verify_at("POST", "/", None, &compact, &body, T).is_ok());
    }

    #[test]
    fn clock_skew() {
        let (map, body) = signed_json(T, AKID, SECRET);
        // 14 and exactly 15 minutes either way are fine.
        for offset in [-900, -840, 0, 840, 900] {
            assert!(
                verify_at("POST", "/", None, &map, &body, T + offset).is_ok(),
                "offset {offset}"
            );
        }
        // Signed 16 minutes ago.
        let err = verify_at("POST", "/", None, &map, &body, T + 960).unwrap_err();
        assert!(matches!(err, AuthError::Expired(_)));
        assert_eq!(err.aws_error_type(), "InvalidSignatureException");
        assert_eq!(err.http_status(), 403);
        // The message AWS gives, for a request 30 minutes old.
        let err = verify_at("POST", "/", None, &map, &body, T + 1800).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Signature expired: 20150830T123600Z is now earlier than 20150830T125100Z \
             (20150830T130600Z - 15 min.)"
        );
        // Signed 16 minutes in the future.
        let err = verify_at("POST", "/", None, &map, &body, T - 960).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Signature not yet current: 20150830T123600Z is still later than \
             20150830T123500Z (20150830T122000Z + 15 min.)"
        );
    }

    #[test]
    fn wrong_scope() {
        let body = b"{}";
        let map = signed_by(
            "POST",
            "/",
            None,
            body,
            T,
            (AKID, SECRET, "eu-west-9", SERVICE),
        );
        let err = verify_at("POST", "/", None, &map, body, T).unwrap_err();
        assert_eq!(
            err,
            AuthError::WrongScope(
                "Credential should be scoped to a valid region, not 'eu-west-9'.".into()
            )
        );
        assert_eq!(err.aws_error_type(), "InvalidSignatureException");
        assert_eq!(err.http_status(), 403);

        let map = signed_by("POST", "/", None, body, T, (AKID, SECRET, REGION, "ecr"));
        let req = RequestParts {
            method: "POST",
            path: "/",
            query: None,
            headers: &map,
            body,
        };
        assert_eq!(
            verify(&req, &secrets(), T, REGION, &["ecs"]),
            Err(AuthError::WrongScope(
                "Credential should be scoped to correct service: 'ecs'.".into()
            ))
        );
        assert!(verify(&req, &secrets(), T, REGION, &["ecs", "ecr"]).is_ok());

        // Credential date differs from X-Amz-Date.
        let auth = map.get(AUTHORIZATION).unwrap().to_str().unwrap();
        let mut shifted = map.clone();
        shifted.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&auth.replace("/20150830/", "/20150831/")).unwrap(),
        );
        let req = RequestParts {
            headers: &shifted,
            ..req
        };
        assert_eq!(
            verify(&req, &secrets(), T, REGION, &["ecr"]),
            Err(AuthError::WrongScope(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of \
                 date from HTTP: '20150831' != '20150830', from 'X-Amz-Date'."
                    .into()
            ))
        );
    }

    #[test]
    fn check_order() {
        // Unknown key wins over a wrong region and an old date.
        let map = signed_by(
            "POST",
            "/",
            None,
            b"",
            T,
            ("AKIDNOBODY", "x", "eu-west-9", SERVICE),
        );
        assert_eq!(
            verify_at("POST", "/", None, &map, b"", T + 5000),
            Err(AuthError::UnknownKey)
        );
        // Wrong scope wins over an old date.
        let map = signed_by(
            "POST",
            "/",
            None,
            b"",
            T,
            (AKID, SECRET, "eu-west-9", SERVICE),
        );
        assert!(matches!(
            verify_at("POST", "/", None, &map, b"", T + 5000),
            Err(AuthError::WrongScope(_))
        ));
        // Expiry wins over a bad signature.
        let (map, _) = signed_json(T, AKID, SECRET);
        assert!(matches!(
            verify_at("POST", "/", None, &map, b"tampered", T + 5000),
            Err(AuthError::Expired(_))
        ));
        // Malformed wins over unknown key.
        let map = with_auth(
            "AWS4-HMAC-SHA256 Credential=AKIDNOBODY/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=x-amz-date, Signature=00",
        );
        assert!(matches!(
            verify_at("POST", "/", None, &map, b"", T),
            Err(AuthError::Incomplete(_))
        ));
    }

    #[test]
    fn canonical_uri_double_encodes() {
        assert_eq!(canonical_uri("/v2/a%20b"), "/v2/a%2520b");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a b/ሴ"), "/a%20b/%E1%88%B4");
        assert_eq!(canonical_uri("/a/./b/../c//d/"), "/a/c/d/");
        assert_eq!(canonical_uri("/a/.."), "/");
        assert_eq!(canonical_uri("/.."), "/");
        assert_eq!(canonical_uri("/a/."), "/a");
        assert_eq!(canonical_uri("/%2F..%2F"), "/%252F..%252F");
        assert_eq!(canonical_uri("relative"), "/relative");

        // End to end: signed with the encoded path, verified as received.
        let path = "/v2/my%20repo/manifests/a%2Bb";
        let map = signed("GET", path, None, b"", T);
        assert!(verify_at("GET", path, None, &map, b"", T).is_ok());
        // The decoded form is a different canonical path.
        assert_eq!(
            verify_at("GET", "/v2/my repo/manifests/a+b", None, &map, b"", T),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn unnormalised_path_signers_are_accepted() {
        // A client that signs "/a//b" literally (no normalisation).
        let path = "/a//b";
        let mut map = headers(&[("host", "berth.local")]);
        let payload = hex_sha256(b"");
        map.insert(X_AMZ_DATE, HeaderValue::from_static("20150830T123600Z"));
        map.insert(
            X_AMZ_CONTENT_SHA256,
            HeaderValue::from_str(&payload).unwrap(),
        );
        let names = vec![
            "host".to_string(),
            "x-amz-content-sha256".to_string(),
            "x-amz-date".to_string(),
        ];
        let creq = canonical_request("GET", "/a//b", "", &map, &names, &payload);
        let scope = "20150830/us-east-1/service/aws4_request";
        let sts = string_to_sign("20150830T123600Z", scope, &creq);
        let key = signing_key(SECRET, "20150830", REGION, SERVICE);
        let sig = hex::encode(hmac_sha256(&key, sts.as_bytes()));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={AKID}/{scope}, SignedHeaders={}, Signature={sig}",
            names.join(";")
        );
        map.insert(AUTHORIZATION, HeaderValue::from_str(&auth).unwrap());
        assert!(verify_at("GET", path, None, &map, b"", T).is_ok());
        // And the normalising signer (sign()) for the same path works too.
        let map = signed("GET", path, None, b"", T);
        assert!(verify_at("GET", path, None, &map, b"", T).is_ok());
    }

    #[test]
    fn canonical_query_rules() {
        let cq = |q: &str| canonical_query(&parse_query(Some(q)), false);
        assert_eq!(cq(""), "");
        assert_eq!(cq("b=2&a=1&a=0&c"), "a=0&a=1&b=2&c=");
        assert_eq!(cq("%7e=%2f+x"), "~=%2F%20x");
        assert_eq!(cq("k=a%20b&&k2=%zz&"), "k=a%20b&k2=%25zz");
        assert_eq!(cq("Z=1&a=2&_=3"), "Z=1&_=3&a=2");
        assert_eq!(cq("x=%E1%88%B4"), "x=%E1%88%B4");
        assert_eq!(cq("x=a=b"), "x=a%3Db");
        assert_eq!(
            canonical_query(&parse_query(Some("X-Amz-Signature=ab&a=1")), true),
            "a=1"
        );

        // A query built by a client with %20 survives sign -> verify.
        let query = "filter=name%20eq%20web&maxResults=10";
        let map = signed("GET", "/", Some(query), b"", T);
        assert!(verify_at("GET", "/", Some(query), &map, b"", T).is_ok());
        // Reordering the query doesn't change the canonical form.
        let reordered = "maxResults=10&filter=name%20eq%20web";
        assert!(verify_at("GET", "/", Some(reordered), &map, b"", T).is_ok());
    }

    fn presign(now: i64, expires: u32) -> (HeaderMap, String) {
        let map = headers(&[("host", "berth.local")]);
        let query = presign_query(
            "GET",
            "/v2/token",
            Some("service=registry"),
            &map,
            AKID,
            SECRET,
            REGION,
            SERVICE,
            now,
            expires,
        );
        (map, query)
    }

    #[test]
    fn presigned_round_trip() {
        let (map, query) = presign(T, 300);
        assert!(query.starts_with(
            "service=registry&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F\
             20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&\
             X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature="
        ));
        let verified = verify_at("GET", "/v2/token", Some(&query), &map, b"", T + 10).unwrap();
        assert_eq!(verified.access_key_id, AKID);
        // Up to and including the expiry second.
        assert!(verify_at("GET", "/v2/token", Some(&query), &map, b"", T + 300).is_ok());
        // The body is not covered by a presigned request.
        assert!(verify_at("GET", "/v2/token", Some(&query), &map, b"body", T).is_ok());

        // Tampered query parameter.
        let tampered = query.replace("service=registry", "service=other");
        assert_eq!(
            verify_at("GET", "/v2/token", Some(&tampered), &map, b"", T),
            Err(AuthError::BadSignature)
        );
        // Extended expiry.
        let longer = query.replace("X-Amz-Expires=300", "X-Amz-Expires=3000");
        assert_eq!(
            verify_at("GET", "/v2/token", Some(&longer), &map, b"", T),
            Err(AuthError::BadSignature)
        );
        // Different host.
        let other = headers(&[("host", "evil.example")]);
        assert_eq!(
            verify_at("GET", "/v2/token", Some(&query), &other, b"", T),
            Err(AuthError::BadSignature)
        );
        // Both mechanisms at once.
        let mut both = map.clone();
        both.insert(
            AUTHORIZATION,
            HeaderValue::from_static("AWS4-HMAC-SHA256 x"),
        );
        assert!(matches!(
            verify_at("GET", "/v2/token", Some(&query), &both, b"", T),
            Err(AuthError::Incomplete(_))
        ));
    }

    #[test]
    fn presigned_expiry() {
        let (map, query) = presign(T, 300);
        let err = verify_at("GET", "/v2/token", Some(&query), &map, b"", T + 301).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z \
             (20150830T124101Z - 300 sec.)"
        );
        assert_eq!(err.aws_error_type(), "InvalidSignatureException");
        // A long-lived URL is fine long after the 15-minute skew window.
        let (map, query) = presign(T, 86_400);
        assert!(verify_at("GET", "/v2/token", Some(&query), &map, b"", T + 80_000).is_ok());
        // But not before its date (beyond the skew allowance).
        assert!(matches!(
            verify_at("GET", "/v2/token", Some(&query), &map, b"", T - 960),
            Err(AuthError::Expired(_))
        ));
        assert!(verify_at("GET", "/v2/token", Some(&query), &map, b"", T - 840).is_ok());
    }

    #[test]
    fn presigned_malformed() {
        let (map, query) = presign(T, 300);
        let check = |q: &str| match verify_at("GET", "/v2/token", Some(q), &map, b"", T) {
            Err(AuthError::Incomplete(message)) => message,
            other => panic!("expected Incomplete for {q}, got {other:?}"),
        };
        let msg = check(&query.replace("X-Amz-Expires=300", "X-Amz-Expires=604801"));
        assert!(msg.starts_with("X-Amz-Expires must be"));
        let msg = check(&query.replace("X-Amz-Expires=300", "X-Amz-Expires=0"));
        assert!(msg.starts_with("X-Amz-Expires must be"));
        let msg = check(&query.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"));
        assert!(msg.contains("Unsupported X-Amz-Algorithm"));
        let msg = check(&query.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=x-a"));
        assert!(msg.contains("'Host'"));
        let (head, _) = query.split_once("&X-Amz-Signature=").unwrap();
        let msg = check(head);
        assert_eq!(
            msg,
            "Query-string authentication requires the 'X-Amz-Signature' parameter."
        );
        let msg = check(&format!("{query}&X-Amz-Date=20150830T123600Z"));
        assert!(msg.contains("only one 'X-Amz-Date'"));
    }

    #[test]
    fn presigned_without_expires_uses_skew_window() {
        let (map, query) = presign(T, 300);
        // Re-sign without X-Amz-Expires by building the request by hand.
        let base: String = query
            .split('&')
            .filter(|p| !p.starts_with("X-Amz-Expires=") && !p.starts_with("X-Amz-Signature="))
            .collect::<Vec<_>>()
            .join("&");
        let creq = canonical_request(
            "GET",
            "/v2/token",
            &canonical_query(&parse_query(Some(&base)), false),
            &map,
            &["host".to_string()],
            UNSIGNED_PAYLOAD,
        );
        let sts = string_to_sign(
            "20150830T123600Z",
            "20150830/us-east-1/service/aws4_request",
            &creq,
        );
        let key = signing_key(SECRET, "20150830", REGION, SERVICE);
        let q = format!(
            "{base}&X-Amz-Signature={}",
            hex::encode(hmac_sha256(&key, sts.as_bytes()))
        );
        assert!(verify_at("GET", "/v2/token", Some(&q), &map, b"", T + 900).is_ok());
        assert!(matches!(
            verify_at("GET", "/v2/token", Some(&q), &map, b"", T + 901),
            Err(AuthError::Expired(_))
        ));
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(T), "20150830T123600Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(-1), "19691231T235959Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(253_402_300_799), "99991231T235959Z");
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(T));
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20000229T000000Z"), Some(951_782_400));
        assert_eq!(parse_amz_date("19000229T000000Z"), None);
        assert_eq!(parse_amz_date("20150230T000000Z"), None);
        assert_eq!(parse_amz_date("20151301T000000Z"), None);
        assert_eq!(parse_amz_date("20150830T243600Z"), None);
        assert_eq!(parse_amz_date("20150830T126000Z"), None);
        assert_eq!(parse_amz_date("20150830T123600"), None);
        assert_eq!(parse_amz_date("20150830 123600Z"), None);
        assert_eq!(parse_amz_date("2015083aT123600Z"), None);
        assert_eq!(parse_amz_date("+0150830T123600Z"), None);
        assert_eq!(parse_amz_date("２０1508T123600Z"), None);
        // Round trip over a spread of instants, including leap days.
        let mut t = -2_000_000_000_i64;
        while t < 4_000_000_000 {
            assert_eq!(parse_amz_date(&amz_date(t)), Some(t), "{t}");
            t += 7_777_777;
        }
        for y in [1600, 1900, 2000, 2024, 2100] {
            for m in 1..=12 {
                let d = days_in_month(y, m);
                let s = format!("{y:04}{m:02}{d:02}T235959Z");
                assert_eq!(amz_date(parse_amz_date(&s).unwrap()), s);
            }
        }
        // Extreme clocks don't overflow.
        let _ = amz_date(i64::MAX / 2);
        let _ = amz_date(i64::MIN / 2);
    }

    #[test]
    fn error_mapping() {
        let cases = [
            (
                AuthError::Missing,
                "MissingAuthenticationTokenException",
                403,
            ),
            (
                AuthError::Incomplete("x".into()),
                "IncompleteSignatureException",
                400,
            ),
            (AuthError::UnknownKey, "UnrecognizedClientException", 403),
            (AuthError::BadSignature, "InvalidSignatureException", 403),
            (
                AuthError::Expired("x".into()),
                "InvalidSignatureException",
                403,
            ),
            (
                AuthError::WrongScope("x".into()),
                "InvalidSignatureException",
                403,
            ),
        ];
        for (err, kind, status) in cases {
            assert_eq!(err.aws_error_type(), kind);
            assert_eq!(err.http_status(), status);
        }
        assert_eq!(
            AuthError::BadSignature.to_string(),
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. \
             Consult the service documentation for details."
        );
        assert_eq!(AuthError::Incomplete("why".into()).to_string(), "why");
    }

    #[test]
    fn header_value_trimming() {
        let mut out = Vec::new();
        push_trimmed(&mut out, b"  a   b \t c  ");
        assert_eq!(out, b"a b c");
        out.clear();
        push_trimmed(&mut out, b"   ");
        assert_eq!(out, b"");
    }
}
