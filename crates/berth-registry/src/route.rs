//! `/v2/...` paths as typed routes.

use berth_oci::Digest;

/// One endpoint of the distribution API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags(String),
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(String, String),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(String, String),
    /// `/v2/<name>/blobs/uploads/` (start an upload).
    UploadStart(String),
    /// `/v2/<name>/blobs/uploads/<id>`.
    Upload(String, String),
}

/// Parses a request path; `None` if it is not a distribution API path.
///
/// The endpoint is decided by the *tail* of the path (`manifests/REF`,
/// `blobs/DIGEST`, `blobs/uploads/[ID]`, `tags/list`): references, digests
/// and upload ids never contain `/`, so a repository may itself be named
/// `x/manifests/y` or `q/blobs/uploads` without confusing the router.
pub fn parse(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v2")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Some(Route::Base);
    }
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name = |k: usize| -> Option<String> { (n > k).then(|| segs[..n - k].join("/")) };
    // blobs/uploads/ (trailing slash) and blobs/uploads
    if n >= 3 && segs[n - 1].is_empty() && segs[n - 2] == "uploads" && segs[n - 3] == "blobs" {
        return name(3).map(Route::UploadStart);
    }
    if n >= 3 && segs[n - 2] == "uploads" && segs[n - 3] == "blobs" {
        return name(3).map(|nm| Route::Upload(nm, segs[n - 1].to_string()));
    }
    if n >= 2 && segs[n - 1] == "list" && segs[n - 2] == "tags" {
        return name(2).map(Route::Tags);
    }
    if n >= 2 && segs[n - 2] == "manifests" {
        return name(2).map(|nm| Route::Manifest(nm, segs[n - 1].to_string()));
    }
    if n >= 2 && segs[n - 1] == "uploads" && segs[n - 2] == "blobs" {
        return name(2).map(Route::UploadStart);
    }
    if n >= 2 && segs[n - 2] == "blobs" {
        return name(2).map(|nm| Route::Blob(nm, segs[n - 1].to_string()));
    }
    None
}

/// Whether a manifest reference is a digest (else it is a tag).
pub fn as_digest(reference: &str) -> Option<Digest> {
    reference.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        assert_eq!(parse("/v2/"), Some(Route::Base));
        assert_eq!(parse("/v2"), Some(Route::Base));
        assert_eq!(parse("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(parse("/v2/a/b/tags/list"), Some(Route::Tags("a/b".into())));
        assert_eq!(
            parse("/v2/a/b/manifests/v1"),
            Some(Route::Manifest("a/b".into(), "v1".into()))
        );
        assert_eq!(
            parse("/v2/a/blobs/sha256:x"),
            Some(Route::Blob("a".into(), "sha256:x".into()))
        );
        assert_eq!(
            parse("/v2/a/b/blobs/uploads/"),
            Some(Route::UploadStart("a/b".into()))
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads/abc"),
            Some(Route::Upload("a".into(), "abc".into()))
        );
        // A repository may itself be named like a route keyword.
        assert_eq!(
            parse("/v2/manifests/manifests/x"),
            Some(Route::Manifest("manifests".into(), "x".into()))
        );
        assert_eq!(
            parse("/v2/xx/manifests/yy/blobs/sha256:d"),
            Some(Route::Blob("xx/manifests/yy".into(), "sha256:d".into()))
        );
        assert_eq!(
            parse("/v2/q/blobs/uploads/manifests/v1"),
            Some(Route::Manifest("q/blobs/uploads".into(), "v1".into()))
        );
        assert_eq!(
            parse("/v2/q/blobs/uploads/blobs/uploads/"),
            Some(Route::UploadStart("q/blobs/uploads".into()))
        );
        assert_eq!(
            parse("/v2/a/b/blobs/uploads"),
            Some(Route::UploadStart("a/b".into()))
        );
        assert_eq!(parse("/v2/manifests/v1"), None);
        assert_eq!(parse("/other"), None);
        assert_eq!(parse("/v2x/a/manifests/v1"), None);
    }
}
