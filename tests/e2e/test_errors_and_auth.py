"""Authentication and protocol errors, with raw HTTP, the AWS CLI and boto3.

None of these may ever be a 5xx."""

from __future__ import annotations

import datetime as dt
import hashlib
import urllib.parse

import botocore.auth
import botocore.credentials
import botocore.awsrequest
import pytest
from botocore.exceptions import ClientError

from conftest import _send, error_of, manual_sigv4_headers, unique


def amz(delta: dt.timedelta) -> str:
    return (dt.datetime.now(dt.timezone.utc) + delta).strftime("%Y%m%dT%H%M%SZ")


def test_botocore_signed_request_is_accepted(raw, berth):
    r = raw.send("ListClusters")
    assert r.status == 200, r
    assert berth.cluster_arn("default") in r.json["clusterArns"]
    assert r.headers.get("content-type", "").startswith("application/x-amz-json-1.1")


def test_independent_signer_is_accepted(raw, berth):
    """A signature computed without botocore (hmac/hashlib only) verifies."""
    r = raw.send("ListClusters", sign="manual")
    assert r.status == 200, r
    assert berth.cluster_arn("default") in r.json["clusterArns"]

    name = unique("manual")
    r = raw.send("CreateCluster", {"clusterName": name}, sign="manual")
    assert r.status == 200, r
    assert r.json["cluster"]["clusterArn"] == berth.cluster_arn(name)


def test_independent_signer_agrees_with_botocore(raw, berth):
    """Cross-check: the independent signer and botocore's SigV4Auth produce the
    same Authorization for the same request and time."""
    body = b'{"maxResults": 3}'
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    headers = raw.headers_for("ListClusters")
    req = botocore.awsrequest.AWSRequest(method="POST", url=f"{raw.endpoint}/", data=body, headers=dict(headers))
    signer = botocore.auth.SigV4Auth(berth.credentials, "ecs", berth.region)
    req.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
    req.headers["X-Amz-Date"] = req.context["timestamp"]
    canonical = signer.canonical_request(req)
    sts = signer.string_to_sign(req, canonical)
    bot_sig = signer.signature(sts, req)

    ours = manual_sigv4_headers(
        method="POST",
        host=urllib.parse.urlsplit(raw.endpoint).netloc,
        path="/",
        query="",
        headers=dict(headers),
        body=body,
        access_key=berth.env["AWS_ACCESS_KEY_ID"],
        secret_key=berth.env["AWS_SECRET_ACCESS_KEY"],
        region=berth.region,
        amz_date=when.strftime("%Y%m%dT%H%M%SZ"),
    )
    assert ours["Authorization"].endswith(f"Signature={bot_sig}"), (ours, bot_sig)


def test_missing_authentication(raw):
    status, body = raw.send("ListClusters", sign=None)
    assert status == 403, body
    assert body["__type"] == "MissingAuthenticationTokenException", body


def test_missing_authentication_is_checked_before_the_operation(raw):
    r = raw.send("NoSuchOperation", sign=None)
    assert (r.status, r.type) == (403, "MissingAuthenticationTokenException"), r


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256 garbage",
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240101/us-east-1/ecs/aws4_request",
        "AWS4-HMAC-SHA256 Credential=only-a-key, SignedHeaders=host, Signature=00",
    ],
    ids=["garbage", "bare", "credential-only", "short-credential"],
)
def test_malformed_authorization(raw, authorization):
    r = raw.send("ListClusters", sign=None, headers={"Authorization": authorization, "X-Amz-Date": amz(dt.timedelta())})
    assert r.status == 400, r
    assert r.type == "IncompleteSignatureException", r


def test_unknown_authorization_scheme(raw):
    r = raw.send("ListClusters", sign=None, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert 400 <= r.status < 500, r
    assert r.type in ("IncompleteSignatureException", "MissingAuthenticationTokenException",
                      "InvalidSignatureException"), r


def test_unknown_access_key(raw):
    r = raw.send("ListClusters", access_key="AKIAUNKNOWNUNKNOWN00")
    assert (r.status, r.type) == (403, "UnrecognizedClientException"), r


def test_wrong_secret(raw):
    r = raw.send("ListClusters", secret_key="not-the-secret-" + "x" * 25)
    assert (r.status, r.type) == (403, "InvalidSignatureException"), r


def test_tampered_body_fails_signature(raw, berth):
    """Signing one body and sending another is refused."""
    hdrs = raw.headers_for("CreateCluster")
    req = botocore.awsrequest.AWSRequest(method="POST", url=f"{raw.endpoint}/", data=b'{"clusterName": "a"}', headers=hdrs)
    botocore.auth.SigV4Auth(berth.credentials, "ecs", berth.region).add_auth(req)
    r = _send(raw.endpoint, "POST", "/", dict(req.headers.items()), b'{"clusterName": "b"}')
    assert (r.status, r.type) == (403, "InvalidSignatureException"), r


def test_tampered_target_fails_signature(raw, berth):
    hdrs = raw.headers_for("ListClusters")
    req = botocore.awsrequest.AWSRequest(method="POST", url=f"{raw.endpoint}/", data=b"{}", headers=hdrs)
    botocore.auth.SigV4Auth(berth.credentials, "ecs", berth.region).add_auth(req)
    sent = dict(req.headers.items())
    sent["X-Amz-Target"] = "AmazonEC2ContainerServiceV20141113.DeleteCluster"
    r = _send(raw.endpoint, "POST", "/", sent, b"{}")
    assert (r.status, r.type) == (403, "InvalidSignatureException"), r


@pytest.mark.parametrize("minutes", [-16, -60 * 24], ids=["16-min-old", "a-day-old"])
def test_stale_date(raw, minutes):
    r = raw.send("ListClusters", sign="manual", amz_date=amz(dt.timedelta(minutes=minutes)))
    assert (r.status, r.type) == (403, "InvalidSignatureException"), r
    assert "Signature expired" in r.message, r


@pytest.mark.parametrize("minutes", [16, 60 * 24], ids=["16-min-ahead", "a-day-ahead"])
def test_future_date(raw, minutes):
    # AWS words a date too far ahead differently from a stale one:
    # "Signature not yet current: <date> is still later than <now + 15 min>".
    r = raw.send("ListClusters", sign="manual", amz_date=amz(dt.timedelta(minutes=minutes)))
    assert (r.status, r.type) == (403, "InvalidSignatureException"), r
    assert "Signature not yet current" in r.message or "Signature expired" in r.message, r


@pytest.mark.parametrize("minutes", [-14, 14])
def test_date_within_15_minutes_is_accepted(raw, minutes):
    r = raw.send("ListClusters", sign="manual", amz_date=amz(dt.timedelta(minutes=minutes)))
    assert r.status == 200, r


def test_wrong_region_in_scope(raw):
    r = raw.send("ListClusters", region="eu-west-1")
    assert (r.status, r.type) == (403, "InvalidSignatureException"), r


def test_wrong_service_in_scope(raw):
    r = raw.send("ListClusters", service="s3")
    assert (r.status, r.type) == (403, "InvalidSignatureException"), r


def test_presigned_query_auth_is_accepted(raw, berth):
    """Plain botocore.auth.SigV4QueryAuth: the operation in X-Amz-Target, an
    empty body, the signature in the query string."""
    hdrs = raw.headers_for("ListClusters")
    req = botocore.awsrequest.AWSRequest(method="POST", url=f"{raw.endpoint}/", headers=hdrs)
    botocore.auth.SigV4QueryAuth(berth.credentials, "ecs", berth.region, expires=300).add_auth(req)
    url = urllib.parse.urlsplit(req.url)
    assert "X-Amz-Signature=" in url.query and "Authorization" not in req.headers
    r = _send(raw.endpoint, "POST", f"{url.path}?{url.query}", dict(req.headers.items()), b"")
    assert r.status == 200, r
    assert berth.cluster_arn("default") in r.json["clusterArns"]


def test_presigned_query_auth_with_content_sha256_is_accepted(raw, berth):
    """SigV4QueryAuth with a JSON body whose digest travels in X-Amz-Content-SHA256."""
    body = b'{"maxResults": 100}'
    hdrs = raw.headers_for("ListClusters", {"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()})
    req = botocore.awsrequest.AWSRequest(method="POST", url=f"{raw.endpoint}/", headers=hdrs)
    botocore.auth.SigV4QueryAuth(berth.credentials, "ecs", berth.region, expires=300).add_auth(req)
    url = urllib.parse.urlsplit(req.url)
    r = _send(raw.endpoint, "POST", f"{url.path}?{url.query}", dict(req.headers.items()), body)
    assert r.status == 200, r
    assert berth.cluster_arn("default") in r.json["clusterArns"]


def test_presigned_query_with_wrong_secret_is_refused(raw, berth):
    hdrs = raw.headers_for("ListClusters")
    req = botocore.awsrequest.AWSRequest(method="POST", url=f"{raw.endpoint}/", headers=hdrs)
    creds = botocore.credentials.Credentials(berth.env["AWS_ACCESS_KEY_ID"], "wrong" * 8)
    botocore.auth.SigV4QueryAuth(creds, "ecs", berth.region, expires=300).add_auth(req)
    url = urllib.parse.urlsplit(req.url)
    r = _send(raw.endpoint, "POST", f"{url.path}?{url.query}", dict(req.headers.items()), b"")
    assert (r.status, r.type) == (403, "InvalidSignatureException"), r


def test_unknown_operation(raw):
    r = raw.send("FrobnicateClusters")
    assert (r.status, r.type) == (400, "UnknownOperationException"), r


def test_missing_target(raw):
    r = raw.send(None)
    assert (r.status, r.type) == (400, "UnknownOperationException"), r


def test_wrong_target_prefix(raw):
    r = raw.send(None, headers={"X-Amz-Target": "DynamoDB_20120810.ListTables"})
    assert (r.status, r.type) == (400, "UnknownOperationException"), r


@pytest.mark.parametrize("body", [b"this is not json", b"{", b"\xff\xfe"], ids=["text", "truncated", "binary"])
def test_non_json_body(raw, body):
    r = raw.send("ListClusters", body)
    assert (r.status, r.type) == (400, "SerializationException"), r


def test_wrong_type_in_body(raw):
    r = raw.send("ListClusters", {"maxResults": "ten"})
    assert (r.status, r.type) == (400, "SerializationException"), r


def test_oversized_body_is_413(raw):
    r = raw.send("ListClusters", b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert (r.status, r.type) == (413, "RequestEntityTooLargeException"), r


def test_oversized_body_unsigned_is_still_4xx(raw):
    r = raw.send("ListClusters", b"x" * (2 * 1024 * 1024), sign=None)
    assert 400 <= r.status < 500, r


def test_errors_are_json_with_type_and_message(raw):
    r = raw.send("DeleteCluster", {"cluster": unique("ghost")})
    assert r.status == 400, r
    assert r.type == "ClusterNotFoundException", r
    assert isinstance(r.json, dict) and r.json.get("message"), r
    assert r.headers.get("content-type", "").startswith("application/x-amz-json-1.1"), r.headers


def test_wrong_secret_via_cli(aws):
    r = aws("ecs", "list-clusters", env={"AWS_SECRET_ACCESS_KEY": "definitely-not-the-secret-key-000000000"})
    assert r.returncode != 0, str(r)
    assert "InvalidSignatureException" in r.stderr, str(r)


def test_unknown_key_via_cli(aws):
    r = aws("ecs", "list-clusters", env={"AWS_ACCESS_KEY_ID": "AKIAUNKNOWNUNKNOWN00"})
    assert r.returncode != 0, str(r)
    assert "UnrecognizedClientException" in r.stderr, str(r)


def test_wrong_region_via_cli(aws):
    r = aws("ecs", "list-clusters", env={"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1"})
    assert r.returncode != 0, str(r)
    assert "InvalidSignatureException" in r.stderr, str(r)


def test_unknown_key_via_boto3(berth):
    client = berth.boto3_client(aws_access_key_id="AKIAUNKNOWNUNKNOWN00")
    with pytest.raises(ClientError) as e:
        client.list_clusters()
    assert error_of(e)[:2] == ("UnrecognizedClientException", 403)


def test_wrong_secret_via_boto3(berth):
    client = berth.boto3_client(aws_secret_access_key="wrong" * 8)
    with pytest.raises(ClientError) as e:
        client.describe_clusters()
    assert error_of(e)[:2] == ("InvalidSignatureException", 403)


def test_get_request_is_not_a_server_error(raw):
    r = raw.send("ListClusters", method="GET")
    assert 400 <= r.status < 500, r


def test_other_path_is_not_a_server_error(raw):
    r = raw.send("ListClusters", path="/some/other/path")
    assert 400 <= r.status < 500, r
