"""The OCI registry (`/v2/...`) and the ECR API, end to end: skopeo pushes and
pulls images built in Python, the AWS CLI sees them, hand-built HTTP requests
exercise every endpoint and error code, and uploads survive kill -9."""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import http.client
import json
import os
import stat
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import AWS_CLI, _berth_bin, run_berth, unique
from oci_helpers import (
    API_VERSION,
    CHALLENGE,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Registry,
    Tools,
    assert_dist_error,
    basic,
    busybox_image,
    ecr_client,
    layout_blob,
    layout_manifest_descriptor,
    registry_token,
    sha256,
    skopeo_bin,
    small_image,
    with_query,
    write_oci_layout,
)

MiB = 1024 * 1024


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token(berth) -> str:
    return registry_token(berth)


@pytest.fixture(scope="module")
def reg(berth, token) -> Registry:
    return Registry(berth, basic("AWS", token))


@pytest.fixture(scope="module")
def ecr(berth):
    return ecr_client(berth)


@pytest.fixture(scope="module")
def image():
    return busybox_image()


@pytest.fixture(scope="module")
def layout(image, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("oci-layout") / "layout"
    write_oci_layout(root, image, "v1")
    return root


@pytest.fixture(scope="module")
def tools(berth, tmp_path_factory) -> Tools:
    """skopeo with a private HOME and auth file, logged in with
    `aws ecr get-login-password | skopeo login --password-stdin`."""
    skopeo_bin()  # fails (never skips) without skopeo
    t = Tools(berth, tmp_path_factory.mktemp("skopeo"))
    p = t.shell(
        f"'{AWS_CLI}' ecr get-login-password | '{skopeo_bin()}' login --authfile '{t.authfile}' "
        '--tls-verify=false --username AWS --password-stdin "$BERTH_REGISTRY"'
    )
    assert p.returncode == 0, f"skopeo login failed: {p.stdout}\n{p.stderr}"
    assert "Login Succeeded" in p.stdout, p.stdout
    auths = json.loads(t.authfile.read_text())["auths"]
    assert berth.env["BERTH_REGISTRY"] in auths, auths
    return t


@pytest.fixture(scope="module")
def pushed(berth, tools, layout, image):
    """The busybox image pushed by skopeo from the OCI layout to a
    repository that did not exist before."""
    repo = f"team/{unique('app')}"
    ref = f"docker://{berth.env['BERTH_REGISTRY']}/{repo}:v1"
    tools.skopeo_ok("copy", "--authfile", str(tools.authfile), "--dest-tls-verify=false", f"oci:{layout}:v1", ref)
    return {"repo": repo, "ref": ref, "pushed_at": time.time()}


# --------------------------------------------------------------------------
# 1. skopeo
# --------------------------------------------------------------------------


def test_skopeo_push_pull_round_trip_keeps_digests(berth, tools, pushed, layout, image, tmp_path):
    written = layout_manifest_descriptor(layout, "v1")
    assert written["digest"] == image.digest

    out = tmp_path / "out"
    tools.skopeo_ok(
        "copy", "--authfile", str(tools.authfile), "--src-tls-verify=false", pushed["ref"], f"oci:{out}:v1"
    )
    pulled = layout_manifest_descriptor(out, "v1")
    assert pulled["digest"] == written["digest"] == image.digest
    assert pulled["mediaType"] == OCI_MANIFEST
    assert layout_blob(out, image.digest) == image.manifest
    assert layout_blob(out, image.config.digest) == image.config.data
    for layer in image.layers:
        assert layout_blob(out, layer.digest) == layer.data, "layer bytes changed in the round trip"

    inspected = json.loads(
        tools.skopeo_ok("inspect", "--authfile", str(tools.authfile), "--tls-verify=false", pushed["ref"])
    )
    assert inspected["Digest"] == image.digest
    assert inspected["RepoTags"] == ["v1"]
    assert inspected["Layers"] == [l.digest for l in image.layers]

    raw = tools.skopeo_ok("inspect", "--raw", "--authfile", str(tools.authfile), "--tls-verify=false", pushed["ref"])
    assert raw.encode() == image.manifest
    config = json.loads(
        tools.skopeo_ok("inspect", "--config", "--authfile", str(tools.authfile), "--tls-verify=false", pushed["ref"])
    )
    assert config["config"]["Entrypoint"] == ["/bin/busybox", "cat", "/etc/hello.txt"]


def test_skopeo_with_berth_registry_login(berth, layout, image, tmp_path):
    tools = Tools(berth, tmp_path)
    host = berth.env["BERTH_REGISTRY"]
    # An existing entry for another registry must survive the login.
    tools.authfile.write_text(json.dumps({"auths": {"other.example:5000": {"auth": "b3RoZXI6c2VjcmV0"}}}))
    p = tools.run([_berth_bin(), "registry", "login", "--data-dir", str(berth.data_dir)])
    assert p.returncode == 0, p.stderr
    docker_config = tools.home / ".docker" / "config.json"
    for f in (tools.authfile, docker_config):
        assert f.is_file(), f"`berth registry login` did not write {f}: {p.stdout}"
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, (f, oct(f.stat().st_mode))
        auths = json.loads(f.read_text())["auths"]
        user, _, password = base64.b64decode(auths[host]["auth"]).decode().partition(":")
        assert user == "AWS" and password, auths
    assert json.loads(tools.authfile.read_text())["auths"]["other.example:5000"] == {"auth": "b3RoZXI6c2VjcmV0"}

    repo = f"login/{unique('app')}"
    ref = f"docker://{host}/{repo}:v1"
    tools.skopeo_ok("copy", "--authfile", str(tools.authfile), "--dest-tls-verify=false", f"oci:{layout}:v1", ref)
    out = tmp_path / "out"
    tools.skopeo_ok("copy", "--authfile", str(tools.authfile), "--src-tls-verify=false", ref, f"oci:{out}:v1")
    assert layout_manifest_descriptor(out, "v1")["digest"] == image.digest
    assert layout_blob(out, image.layers[0].digest) == image.layers[0].data
    # The docker config file works as an auth file too.
    inspected = json.loads(
        tools.skopeo_ok("inspect", "--authfile", str(docker_config), "--tls-verify=false", ref)
    )
    assert inspected["Digest"] == image.digest

    # Without REGISTRY_AUTH_FILE, the podman/skopeo file under XDG_RUNTIME_DIR.
    xdg = tmp_path / "xdg"
    env = tools.env()
    env.pop("REGISTRY_AUTH_FILE")
    env["XDG_RUNTIME_DIR"] = str(xdg)
    p = subprocess.run([_berth_bin(), "registry", "login", "--data-dir", str(berth.data_dir)],
                       capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 0, p.stderr
    xdg_auth = xdg / "containers" / "auth.json"
    assert host in json.loads(xdg_auth.read_text())["auths"], p.stdout
    inspected = json.loads(tools.skopeo_ok("inspect", "--authfile", str(xdg_auth), "--tls-verify=false", ref))
    assert inspected["Digest"] == image.digest

    # `berth registry password` prints a password for user AWS.
    p = run_berth("registry", "password", "--data-dir", str(berth.data_dir))
    assert p.returncode == 0, p.stderr
    r = Registry(berth, basic("AWS", p.stdout.strip())).req("GET", f"/v2/{repo}/tags/list")
    assert r.status == 200 and r.json == {"name": repo, "tags": ["v1"]}, r


def test_skopeo_push_docker_schema2(berth, tools, reg, layout, image, ecr, tmp_path):
    repo = f"team/{unique('v2s2')}"
    ref = f"docker://{berth.env['BERTH_REGISTRY']}/{repo}:v2s2"
    tools.skopeo_ok(
        "copy", "--format", "v2s2", "--authfile", str(tools.authfile), "--dest-tls-verify=false",
        f"oci:{layout}:v1", ref,
    )
    r = reg.get_manifest(repo, "v2s2")
    assert r.status == 200, r
    assert r.headers["content-type"] == DOCKER_MANIFEST
    m = json.loads(r.body)
    assert m["mediaType"] == DOCKER_MANIFEST
    assert r.headers["docker-content-digest"] == sha256(r.body)
    assert [l["digest"] for l in m["layers"]] == [l.digest for l in image.layers]
    assert m["config"]["digest"] == image.config.digest
    h = reg.get_manifest(repo, sha256(r.body), method="HEAD")
    assert h.status == 200 and h.headers["content-type"] == DOCKER_MANIFEST and h.body == b"", h

    [d] = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert d["imageManifestMediaType"] == DOCKER_MANIFEST
    assert d["imageDigest"] == sha256(r.body)

    raw = tools.skopeo_ok("inspect", "--raw", "--authfile", str(tools.authfile), "--tls-verify=false", ref)
    assert raw.encode() == r.body
    out = tmp_path / "dir-out"
    tools.skopeo_ok("copy", "--authfile", str(tools.authfile), "--src-tls-verify=false", ref, f"dir:{out}")
    assert (out / "manifest.json").read_bytes() == r.body
    assert (out / image.layers[0].digest.split(":")[1]).read_bytes() == image.layers[0].data


# --------------------------------------------------------------------------
# 2. The ECR API sees what was pushed
# --------------------------------------------------------------------------


def test_ecr_describe_repositories_shows_auto_created(berth, aws, pushed):
    repo = pushed["repo"]
    out = aws.ok("ecr", "describe-repositories", "--repository-names", repo)
    [r] = out["repositories"]
    assert r["repositoryName"] == repo
    assert r["repositoryUri"] == f"{berth.env['BERTH_REGISTRY']}/{repo}"
    assert r["repositoryArn"] == f"arn:aws:ecr:{berth.region}:{berth.account}:repository/{repo}"
    assert r["registryId"] == berth.account
    assert r["imageTagMutability"] == "MUTABLE"
    all_names = [x["repositoryName"] for x in aws.ok("ecr", "describe-repositories")["repositories"]]
    assert repo in all_names


def test_ecr_describe_and_list_images(aws, pushed, image):
    repo = pushed["repo"]
    [d] = aws.ok("ecr", "describe-images", "--repository-name", repo)["imageDetails"]
    assert d["imageDigest"] == image.digest
    assert d["imageTags"] == ["v1"]
    assert d["repositoryName"] == repo
    assert d["imageManifestMediaType"] == OCI_MANIFEST
    assert d.get("artifactMediaType") == OCI_CONFIG
    layers = sum(l.size for l in image.layers)
    assert layers <= d["imageSizeInBytes"] <= layers + image.config.size + len(image.manifest), d
    pushed_at = d["imagePushedAt"]
    if isinstance(pushed_at, str):
        pushed_at = _dt.datetime.fromisoformat(pushed_at).timestamp()
    assert abs(pushed_at - pushed["pushed_at"]) < 300, (d["imagePushedAt"], pushed["pushed_at"])

    tagged = aws.ok("ecr", "describe-images", "--repository-name", repo, "--filter", "tagStatus=TAGGED")
    assert [x["imageDigest"] for x in tagged["imageDetails"]] == [image.digest]
    untagged = aws.ok("ecr", "describe-images", "--repository-name", repo, "--filter", "tagStatus=UNTAGGED")
    assert untagged["imageDetails"] == []
    by_tag = aws.ok("ecr", "describe-images", "--repository-name", repo, "--image-ids", "imageTag=v1")
    assert [x["imageDigest"] for x in by_tag["imageDetails"]] == [image.digest]
    missing = aws("ecr", "describe-images", "--repository-name", repo, "--image-ids", "imageTag=nope")
    assert missing.returncode != 0 and "ImageNotFoundException" in missing.stderr, str(missing)

    ids = aws.ok("ecr", "list-images", "--repository-name", repo)["imageIds"]
    assert ids == [{"imageDigest": image.digest, "imageTag": "v1"}]


def test_ecr_batch_get_image(aws, pushed, image):
    repo = pushed["repo"]
    out = aws.ok(
        "ecr", "batch-get-image", "--repository-name", repo,
        "--image-ids", "imageTag=v1", "imageTag=nope", f"imageDigest={image.digest}",
    )
    got = {json.dumps(i["imageId"], sort_keys=True): i for i in out["images"]}
    assert len(out["images"]) == 2, out
    for i in out["images"]:
        assert i["imageManifest"].encode() == image.manifest
        assert i["imageManifestMediaType"] == OCI_MANIFEST
        assert i["imageId"]["imageDigest"] == image.digest
        assert i["repositoryName"] == repo
    assert any(i["imageId"].get("imageTag") == "v1" for i in got.values()), out
    assert [(f["imageId"], f["failureCode"]) for f in out["failures"]] == [({"imageTag": "nope"}, "ImageNotFound")]


def test_ecr_batch_delete_image(aws, reg):
    repo = f"del/{unique('app')}"
    a, b = small_image(unique("a")), small_image(unique("b"))
    for tag in ("t1", "t2"):
        assert reg.push_image(repo, a, tag).status == 201
    assert reg.push_image(repo, b, "b1").status == 201
    assert reg.put_manifest(repo, "b2", b.manifest).status == 201

    def details():
        return {
            d["imageDigest"]: sorted(d.get("imageTags", []))
            for d in aws.ok("ecr", "describe-images", "--repository-name", repo)["imageDetails"]
        }

    assert details() == {a.digest: ["t1", "t2"], b.digest: ["b1", "b2"]}

    # By tag: the tag goes, the image stays while it has another tag.
    out = aws.ok("ecr", "batch-delete-image", "--repository-name", repo, "--image-ids", "imageTag=t1")
    assert out["imageIds"] == [{"imageDigest": a.digest, "imageTag": "t1"}] and out["failures"] == [], out
    assert details() == {a.digest: ["t2"], b.digest: ["b1", "b2"]}
    assert reg.get_manifest(repo, a.digest).status == 200
    assert_dist_error(reg.get_manifest(repo, "t1"), 404, "MANIFEST_UNKNOWN", "GET deleted tag")

    # Its last tag: the image goes too.
    out = aws.ok("ecr", "batch-delete-image", "--repository-name", repo, "--image-ids", "imageTag=t2")
    assert out["imageIds"] == [{"imageDigest": a.digest, "imageTag": "t2"}], out
    assert details() == {b.digest: ["b1", "b2"]}
    assert_dist_error(reg.get_manifest(repo, a.digest), 404, "MANIFEST_UNKNOWN", "GET image whose last tag was deleted")

    # By digest: the image and all its tags.
    out = aws.ok(
        "ecr", "batch-delete-image", "--repository-name", repo,
        "--image-ids", f"imageDigest={b.digest}", "imageTag=never",
    )
    assert sorted(x["imageTag"] for x in out["imageIds"]) == ["b1", "b2"], out
    assert all(x["imageDigest"] == b.digest for x in out["imageIds"]), out
    assert [(f["imageId"], f["failureCode"]) for f in out["failures"]] == [({"imageTag": "never"}, "ImageNotFound")]
    assert details() == {}
    r = reg.req("GET", f"/v2/{repo}/tags/list")
    assert r.status == 200 and r.json["tags"] == [], r
    assert aws.ok("ecr", "list-images", "--repository-name", repo)["imageIds"] == []


def test_ecr_repository_lifecycle(berth, aws, reg):
    repo = f"life/{unique('app')}"
    created = aws.ok("ecr", "create-repository", "--repository-name", repo)["repository"]
    assert created["repositoryUri"] == f"{berth.env['BERTH_REGISTRY']}/{repo}"
    dup = aws("ecr", "create-repository", "--repository-name", repo)
    assert dup.returncode != 0 and "RepositoryAlreadyExistsException" in dup.stderr, str(dup)
    # An empty repository is listed with no tags.
    r = reg.req("GET", f"/v2/{repo}/tags/list")
    assert r.status == 200 and r.json == {"name": repo, "tags": []}, r

    assert reg.push_image(repo, small_image(unique("x")), "v1").status == 201
    busy = aws("ecr", "delete-repository", "--repository-name", repo)
    assert busy.returncode != 0 and "RepositoryNotEmptyException" in busy.stderr, str(busy)
    aws.ok("ecr", "delete-repository", "--repository-name", repo, "--force")
    gone = aws("ecr", "describe-repositories", "--repository-names", repo)
    assert gone.returncode != 0 and "RepositoryNotFoundException" in gone.stderr, str(gone)
    assert_dist_error(reg.req("GET", f"/v2/{repo}/tags/list"), 404, "NAME_UNKNOWN", "tags of a deleted repository")
    assert_dist_error(reg.get_manifest(repo, "v1"), 404, "NAME_UNKNOWN", "manifest of a deleted repository")
    assert repo not in reg.req("GET", "/v2/_catalog").json["repositories"]

    # A repository created again under the same name starts empty.
    x = small_image(unique("y"))
    assert reg.push_image(repo, x, "v1").status == 201
    aws.ok("ecr", "delete-repository", "--repository-name", repo, "--force")
    aws.ok("ecr", "create-repository", "--repository-name", repo)
    assert reg.req("GET", f"/v2/{repo}/tags/list").json == {"name": repo, "tags": []}
    assert_dist_error(reg.get_manifest(repo, x.digest), 404, "MANIFEST_UNKNOWN", "manifest of the old repository")
    assert_dist_error(reg.req("GET", f"/v2/{repo}/blobs/{x.layers[0].digest}"), 404, "BLOB_UNKNOWN",
                      "blob of the old repository")
    assert_dist_error(reg.put_manifest(repo, "v1", x.manifest), 400, "MANIFEST_BLOB_UNKNOWN",
                      "manifest naming blobs of the old repository")


def test_ecr_get_authorization_token(berth, aws, ecr):
    before = time.time()
    data = ecr.get_authorization_token()["authorizationData"]
    assert len(data) == 1
    d = data[0]
    assert d["proxyEndpoint"] == f"http://{berth.env['BERTH_REGISTRY']}"
    expires = d["expiresAt"].timestamp()
    assert abs(expires - (before + 12 * 3600)) < 300, d["expiresAt"]
    user, _, password = base64.b64decode(d["authorizationToken"]).decode().partition(":")
    assert user == "AWS" and password
    r = Registry(berth, basic(user, password)).req("GET", "/v2/")
    assert r.status == 200, r

    cli = aws("ecr", "get-login-password")
    assert cli.returncode == 0, str(cli)
    r = Registry(berth, basic("AWS", cli.stdout.strip())).req("GET", "/v2/")
    assert r.status == 200, r


# --------------------------------------------------------------------------
# 3. Raw HTTP: happy paths
# --------------------------------------------------------------------------


def test_base_endpoint(reg):
    r = reg.req("GET", "/v2/")
    assert r.status == 200, r
    assert r.headers.get("docker-distribution-api-version") == API_VERSION
    assert r.json == {}


def test_chunked_upload_three_patches(reg, aws):
    repo = f"raw/{unique('chunked')}"
    data = os.urandom(300_000)
    parts = [data[:100_000], data[100_000:250_000], data[250_000:]]

    r = reg.req("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202, r
    loc, uid = r.headers["location"], r.headers["docker-upload-uuid"]
    assert r.headers["range"] == "0-0"
    assert uid and loc.endswith(f"/v2/{repo}/blobs/uploads/{uid}"), r.headers
    assert r.headers["docker-distribution-api-version"] == API_VERSION

    offset = 0
    for i, part in enumerate(parts):
        headers = {"Content-Type": "application/octet-stream"}
        if i != 1:  # Content-Range is optional
            headers["Content-Range"] = f"{offset}-{offset + len(part) - 1}"
        r = reg.req("PATCH", loc, part, headers)
        offset += len(part)
        assert r.status == 202, (i, r)
        assert r.headers["range"] == f"0-{offset - 1}", (i, r.headers)
        assert r.headers["docker-upload-uuid"] == uid
        loc = r.headers["location"]

    st = reg.req("GET", loc)
    assert st.status == 204, st
    assert st.headers["range"] == f"0-{len(data) - 1}"
    assert st.headers["docker-upload-uuid"] == uid

    d = sha256(data)
    r = reg.req("PUT", with_query(loc, digest=d))
    assert r.status == 201, r
    assert r.headers["docker-content-digest"] == d
    assert r.headers["location"].endswith(f"/v2/{repo}/blobs/{d}"), r.headers
    assert_dist_error(reg.req("GET", loc), 404, "BLOB_UPLOAD_UNKNOWN", "GET a finished upload")

    g = reg.req("GET", f"/v2/{repo}/blobs/{d}")
    assert g.status == 200 and g.body == data, g.status
    assert g.headers["docker-content-digest"] == d
    h = reg.req("HEAD", f"/v2/{repo}/blobs/{d}")
    assert h.status == 200 and h.body == b"", h
    assert h.headers["content-length"] == str(len(data))
    assert h.headers["docker-content-digest"] == d

    # Pushing to a repository that did not exist created it.
    [repository] = aws.ok("ecr", "describe-repositories", "--repository-names", repo)["repositories"]
    assert repository["repositoryName"] == repo


def test_final_put_with_body_and_monolithic_post(reg):
    repo = f"raw/{unique('mono')}"
    data = os.urandom(50_000)
    loc = reg.start_upload(repo)
    r = reg.req("PATCH", loc, data[:20_000])
    assert r.status == 202 and r.headers["range"] == "0-19999", r
    r = reg.req("PUT", with_query(r.headers["location"], digest=sha256(data)), data[20_000:],
                {"Content-Type": "application/octet-stream"})
    assert r.status == 201, r
    assert reg.req("GET", f"/v2/{repo}/blobs/{sha256(data)}").body == data

    other = os.urandom(40_000)
    r = reg.req("POST", f"/v2/{repo}/blobs/uploads/?digest={sha256(other)}", other,
                {"Content-Type": "application/octet-stream"})
    assert r.status == 201, r
    assert r.headers["docker-content-digest"] == sha256(other)
    assert r.headers["location"].endswith(f"/v2/{repo}/blobs/{sha256(other)}")
    g = reg.req("GET", f"/v2/{repo}/blobs/{sha256(other)}")
    assert g.status == 200 and g.body == other

    # A monolithic POST whose bytes do not match: nothing is stored.
    wrong = sha256(b"not these bytes")
    third = os.urandom(1000)
    r = reg.req("POST", f"/v2/{repo}/blobs/uploads/?digest={wrong}", third)
    assert_dist_error(r, 400, "DIGEST_INVALID", "monolithic POST with a wrong digest")
    assert_dist_error(reg.req("GET", f"/v2/{repo}/blobs/{wrong}"), 404, "BLOB_UNKNOWN", "GET wrong digest")
    assert reg.req("HEAD", f"/v2/{repo}/blobs/{wrong}").status == 404
    assert reg.req("HEAD", f"/v2/{repo}/blobs/{sha256(third)}").status == 404


def test_range_get(reg):
    repo = f"raw/{unique('range')}"
    data = bytes(range(256)) * 40
    d = reg.push_blob(repo, data)
    r = reg.req("GET", f"/v2/{repo}/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status == 206, r
    assert r.body == data[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert r.headers["content-length"] == "10"
    r = reg.req("GET", f"/v2/{repo}/blobs/{d}", headers={"Range": f"bytes={len(data) - 5}-"})
    assert r.status == 206 and r.body == data[-5:], r
    assert r.headers["content-range"] == f"bytes {len(data) - 5}-{len(data) - 1}/{len(data)}"
    # RFC 7233: the end is clamped to the blob, and suffix ranges work.
    r = reg.req("GET", f"/v2/{repo}/blobs/{d}", headers={"Range": f"bytes={len(data) - 3}-{len(data) + 100}"})
    assert r.status == 206 and r.body == data[-3:], r
    r = reg.req("GET", f"/v2/{repo}/blobs/{d}", headers={"Range": "bytes=-7"})
    assert r.status == 206 and r.body == data[-7:], r
    assert r.headers["content-range"] == f"bytes {len(data) - 7}-{len(data) - 1}/{len(data)}"
    # A start past the end cannot be satisfied.
    for bad in (f"bytes={len(data)}-{len(data) + 10}", f"bytes={len(data)}-"):
        r = reg.req("GET", f"/v2/{repo}/blobs/{d}", headers={"Range": bad})
        assert r.status == 416, (bad, r)
        assert r.headers.get("content-range") == f"bytes */{len(data)}", (bad, r.headers)
    # Syntactically invalid or multiple ranges may be ignored (RFC 7233 3.1): the whole blob.
    for ignored in ("bytes=5-2", "bytes=0-1,4-5"):
        r = reg.req("GET", f"/v2/{repo}/blobs/{d}", headers={"Range": ignored})
        assert r.status == 200 and r.body == data, (ignored, r)
    r = reg.req("GET", f"/v2/{repo}/blobs/{d}")
    assert r.status == 200 and r.body == data and r.headers.get("accept-ranges") == "bytes", r.headers


def test_cross_repository_mount(reg):
    src, dst, empty = (f"mount/{unique(n)}" for n in ("src", "dst", "empty"))
    data = os.urandom(10_000)
    d = reg.push_blob(src, data)

    # The blob is not in dst until mounted, although the store holds it.
    assert_dist_error(reg.req("GET", f"/v2/{dst}/blobs/{d}"), 404, "BLOB_UNKNOWN", "blob of another repo")

    r = reg.req("POST", f"/v2/{dst}/blobs/uploads/?mount={d}&from={src}")
    assert r.status == 201, r
    assert r.headers["docker-content-digest"] == d
    assert r.headers["location"].endswith(f"/v2/{dst}/blobs/{d}")
    assert reg.req("GET", f"/v2/{dst}/blobs/{d}").body == data

    # A `from` that does not hold it (or does not exist): a new upload session.
    reg.push_blob(empty, b"something else")
    for frm in (empty, f"mount/{unique('nothing')}"):
        r = reg.req("POST", f"/v2/{dst}/blobs/uploads/?mount={sha256(b'never pushed')}&from={frm}")
        assert r.status == 202, (frm, r)
        assert r.headers["docker-upload-uuid"] and r.headers["range"] == "0-0"
        assert reg.req("GET", r.headers["location"]).status == 204
    # A blob that exists, asked from a repository that does not hold it.
    r = reg.req("POST", f"/v2/{empty}/blobs/uploads/?mount={d}&from=mount/{unique('nothing')}")
    assert r.status == 202, r
    assert_dist_error(reg.req("GET", f"/v2/{empty}/blobs/{d}"), 404, "BLOB_UNKNOWN", "GET unmounted blob")

    # Once deleted from `from`, it cannot be mounted from there any more.
    assert reg.req("DELETE", f"/v2/{src}/blobs/{d}").status == 202
    r = reg.req("POST", f"/v2/{empty}/blobs/uploads/?mount={d}&from={src}")
    assert r.status == 202, f"mount from a repository whose blob was deleted: {r}"
    assert_dist_error(reg.req("GET", f"/v2/{empty}/blobs/{d}"), 404, "BLOB_UNKNOWN", "GET blob after failed mount")
    assert reg.req("GET", f"/v2/{dst}/blobs/{d}").body == data


def test_catalog_pagination(reg):
    prefix = unique("cat")
    names = [f"{prefix}/r{i}" for i in range(5)]
    for n in names:
        reg.push_blob(n, n.encode())

    full = reg.req("GET", "/v2/_catalog")
    assert full.status == 200, full
    everything = full.json["repositories"]
    assert everything == sorted(everything)
    assert set(names) <= set(everything)
    assert "link" not in full.headers

    seen, url, pages = [], "/v2/_catalog?n=2", 0
    while url:
        r = reg.req("GET", url)
        assert r.status == 200, r
        page = r.json["repositories"]
        assert len(page) <= 2
        seen += page
        pages += 1
        link = r.headers.get("link")
        if link:
            assert link.startswith("<") and link.endswith('>; rel="next"'), link
            url = link[1 : link.index(">")]
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
            assert q["n"] == ["2"] and q["last"] == [page[-1]], link
            assert len(page) == 2
        else:
            url = None
        assert pages < 1000
    assert seen == everything

    r = reg.req("GET", f"/v2/_catalog?n=2&last={names[0]}")
    assert r.json["repositories"] == names[1:3], r
    assert f"last={names[2]}" in r.headers["link"]


def test_tags_list_pagination(reg):
    repo = f"tags/{unique('app')}"
    img = small_image(unique("tags"))
    reg.push_image(repo, img, "a")
    for t in ("e", "c", "b", "d"):
        assert reg.put_manifest(repo, t, img.manifest).status == 201

    r = reg.req("GET", f"/v2/{repo}/tags/list")
    assert r.status == 200 and r.json == {"name": repo, "tags": ["a", "b", "c", "d", "e"]}, r
    assert "link" not in r.headers

    pages, url = [], f"/v2/{repo}/tags/list?n=2"
    while url:
        r = reg.req("GET", url)
        assert r.status == 200, r
        assert r.json["name"] == repo
        pages.append(r.json["tags"])
        link = r.headers.get("link")
        url = link[1 : link.index(">")] if link else None
        if link:
            assert link.endswith('>; rel="next"') and url.startswith(f"/v2/{repo}/tags/list?"), link
    assert pages == [["a", "b"], ["c", "d"], ["e"]]

    r = reg.req("GET", f"/v2/{repo}/tags/list?n=2&last=c")
    assert r.json["tags"] == ["d", "e"] and "link" not in r.headers, r
    r = reg.req("GET", f"/v2/{repo}/tags/list?n=5")
    assert len(r.json["tags"]) == 5 and "link" not in r.headers, r

    assert_dist_error(
        reg.req("GET", f"/v2/tags/{unique('nope')}/tags/list"), 404, "NAME_UNKNOWN", "tags of an unknown repository"
    )


def test_manifest_put_get_head(reg, ecr):
    repo = f"man/{unique('app')}"
    img = small_image(unique("m"))
    r = reg.push_image(repo, img, "v1")
    assert r.status == 201, r
    assert r.headers["docker-content-digest"] == img.digest
    assert r.headers["location"].endswith(f"/v2/{repo}/manifests/{img.digest}"), r.headers

    for ref in ("v1", img.digest):
        g = reg.get_manifest(repo, ref)
        assert g.status == 200, g
        assert g.body == img.manifest
        assert g.headers["content-type"] == OCI_MANIFEST
        assert g.headers["docker-content-digest"] == img.digest
        h = reg.get_manifest(repo, ref, method="HEAD")
        assert h.status == 200 and h.body == b"", h
        assert h.headers["content-type"] == OCI_MANIFEST
        assert h.headers["docker-content-digest"] == img.digest
        assert h.headers["content-length"] == str(len(img.manifest))
        assert h.headers["docker-distribution-api-version"] == API_VERSION

    # PUT by digest: stored, untagged.
    other = small_image(unique("by-digest"))
    r = reg.push_image(repo, other, None)
    assert r.status == 201 and r.headers["docker-content-digest"] == other.digest, r
    assert reg.get_manifest(repo, other.digest).body == other.manifest
    assert reg.req("GET", f"/v2/{repo}/tags/list").json["tags"] == ["v1"]

    # Overwriting a tag in a MUTABLE repository moves it; the old image stays, untagged.
    assert reg.put_manifest(repo, "v1", other.manifest).status == 201
    assert reg.get_manifest(repo, "v1").headers["docker-content-digest"] == other.digest
    assert reg.get_manifest(repo, img.digest).status == 200
    untagged = ecr.describe_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})["imageDetails"]
    assert [d["imageDigest"] for d in untagged] == [img.digest] and "imageTags" not in untagged[0], untagged
    tagged = ecr.describe_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageDetails"]
    assert [(d["imageDigest"], d["imageTags"]) for d in tagged] == [(other.digest, ["v1"])], tagged

    # ECR paging over the two images.
    for op, key in ((ecr.describe_images, "imageDetails"), (ecr.list_images, "imageIds")):
        seen, kw = [], {}
        for _ in range(10):
            page = op(repositoryName=repo, maxResults=1, **kw)
            assert len(page[key]) <= 1, page
            seen += [x["imageDigest"] for x in page[key]]
            if "nextToken" not in page:
                break
            kw = {"nextToken": page["nextToken"]}
        assert sorted(seen) == sorted([img.digest, other.digest]), (op, seen)


def test_manifest_errors(reg):
    repo = f"man/{unique('err')}"
    img = small_image(unique("e"))
    # Only the config is pushed: the layer is unknown to the repository.
    reg.push_blob(repo, img.config.data)
    r = reg.put_manifest(repo, "v1", img.manifest)
    assert_dist_error(r, 400, "MANIFEST_BLOB_UNKNOWN", "manifest with a missing layer")

    # Blobs held by another repository do not count.
    other_repo = f"man/{unique('holder')}"
    for b in img.blobs:
        reg.push_blob(other_repo, b.data)
    assert_dist_error(reg.put_manifest(repo, "v1", img.manifest), 400, "MANIFEST_BLOB_UNKNOWN",
                      "manifest whose layer only another repository holds")

    assert_dist_error(reg.put_manifest(repo, "v1", b"{not json"), 400, "MANIFEST_INVALID", "invalid JSON")
    assert_dist_error(reg.put_manifest(repo, "v1", b'{"schemaVersion": 2}'), 400, "MANIFEST_INVALID",
                      "JSON that is no manifest")

    reg.push_blob(repo, img.layers[0].data)
    wrong = sha256(b"other bytes")
    assert_dist_error(reg.put_manifest(repo, wrong, img.manifest), 400, "DIGEST_INVALID", "PUT by a wrong digest")
    assert_dist_error(reg.get_manifest(repo, wrong), 404, "MANIFEST_UNKNOWN", "GET after a rejected PUT by digest")
    assert reg.put_manifest(repo, "v1", img.manifest).status == 201

    assert_dist_error(reg.get_manifest(repo, "nope"), 404, "MANIFEST_UNKNOWN", "GET unknown tag")
    assert_dist_error(reg.get_manifest(repo, sha256(b"x")), 404, "MANIFEST_UNKNOWN", "GET unknown digest")
    h = reg.get_manifest(repo, "nope", method="HEAD")
    assert h.status == 404, h

    r = reg.req("DELETE", f"/v2/{repo}/manifests/v1")
    assert_dist_error(r, 405, "UNSUPPORTED", "DELETE manifest by tag")
    assert reg.get_manifest(repo, "v1").status == 200

    r = reg.req("DELETE", f"/v2/{repo}/manifests/{img.digest}")
    assert r.status == 202, r
    assert_dist_error(reg.get_manifest(repo, img.digest), 404, "MANIFEST_UNKNOWN", "GET deleted manifest")
    assert_dist_error(reg.get_manifest(repo, "v1"), 404, "MANIFEST_UNKNOWN", "GET tag of a deleted manifest")
    assert reg.req("GET", f"/v2/{repo}/tags/list").json["tags"] == []
    assert_dist_error(reg.req("DELETE", f"/v2/{repo}/manifests/{img.digest}"), 404, "MANIFEST_UNKNOWN",
                      "DELETE an already deleted manifest")


def test_manifest_references(reg):
    repo = f"man/{unique('refs')}"
    img = small_image(unique("r"))
    for b in img.blobs:
        reg.push_blob(repo, b.data)
    # A Content-Type that contradicts the document's mediaType.
    assert_dist_error(reg.put_manifest(repo, "v1", img.manifest, DOCKER_MANIFEST), 400, "MANIFEST_INVALID",
                      "Content-Type differs from mediaType")
    # A layer deleted from the repository is no longer there to reference.
    assert reg.req("DELETE", f"/v2/{repo}/blobs/{img.layers[0].digest}").status == 202
    assert_dist_error(reg.put_manifest(repo, "v1", img.manifest), 400, "MANIFEST_BLOB_UNKNOWN",
                      "manifest naming a deleted blob")
    reg.push_blob(repo, img.layers[0].data)
    assert reg.put_manifest(repo, "v1", img.manifest).status == 201

    # An index: its children must be manifests of the repository.
    child = {"mediaType": OCI_MANIFEST, "digest": img.digest, "size": len(img.manifest),
             "platform": {"architecture": "amd64", "os": "linux"}}
    missing = dict(child, digest=sha256(b"no such manifest"))
    bad_index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child, missing]}).encode()
    assert_dist_error(reg.put_manifest(repo, "multi", bad_index, OCI_INDEX), 400, "MANIFEST_BLOB_UNKNOWN",
                      "index naming an unknown manifest")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child]}).encode()
    r = reg.put_manifest(repo, "multi", index, OCI_INDEX)
    assert r.status == 201 and r.headers["docker-content-digest"] == sha256(index), r
    g = reg.get_manifest(repo, "multi")
    assert g.status == 200 and g.body == index and g.headers["content-type"] == OCI_INDEX, g


def test_empty_blob(reg):
    repo = f"blob/{unique('empty')}"
    empty = sha256(b"")
    loc = reg.start_upload(repo)
    r = reg.req("PUT", with_query(loc, digest=empty))
    assert r.status == 201 and r.headers["docker-content-digest"] == empty, r
    g = reg.req("GET", f"/v2/{repo}/blobs/{empty}")
    assert g.status == 200 and g.body == b"" and g.headers["content-length"] == "0", g
    h = reg.req("HEAD", f"/v2/{repo}/blobs/{empty}")
    assert h.status == 200 and h.headers["content-length"] == "0", h


def test_immutable_repository_rejects_tag_overwrite(aws, reg):
    repo = f"immutable/{unique('app')}"
    out = aws.ok("ecr", "create-repository", "--repository-name", repo, "--image-tag-mutability", "IMMUTABLE")
    assert out["repository"]["imageTagMutability"] == "IMMUTABLE"
    a, b = small_image(unique("a")), small_image(unique("b"))
    assert reg.push_image(repo, a, "v1").status == 201
    # The same manifest again is fine.
    assert reg.put_manifest(repo, "v1", a.manifest).status == 201
    for blob in b.blobs:
        reg.push_blob(repo, blob.data)
    assert_dist_error(reg.put_manifest(repo, "v1", b.manifest), 400, "TAG_INVALID", "overwrite an immutable tag")
    assert reg.get_manifest(repo, "v1").headers["docker-content-digest"] == a.digest
    assert reg.put_manifest(repo, "v2", b.manifest).status == 201

    # Once the tag is deleted, the name is free again.
    out = aws.ok("ecr", "batch-delete-image", "--repository-name", repo, "--image-ids", "imageTag=v1")
    assert out["failures"] == [], out
    assert reg.put_manifest(repo, "v1", b.manifest).status == 201
    assert reg.get_manifest(repo, "v1").headers["docker-content-digest"] == b.digest


def test_blob_errors_and_delete(reg):
    repo = f"blob/{unique('app')}"
    data = os.urandom(2000)
    d = reg.push_blob(repo, data)
    assert_dist_error(reg.req("GET", f"/v2/{repo}/blobs/{sha256(b'nope')}"), 404, "BLOB_UNKNOWN", "GET unknown blob")
    assert reg.req("HEAD", f"/v2/{repo}/blobs/{sha256(b'nope')}").status == 404
    for bad in ("sha256:xyz", "sha256:" + "0" * 63, "md5:d41d8cd98f00b204e9800998ecf8427e", "notadigest"):
        assert_dist_error(reg.req("GET", f"/v2/{repo}/blobs/{bad}"), 400, "DIGEST_INVALID", f"GET blob {bad}")

    r = reg.req("DELETE", f"/v2/{repo}/blobs/{d}")
    assert r.status == 202, r
    assert_dist_error(reg.req("GET", f"/v2/{repo}/blobs/{d}"), 404, "BLOB_UNKNOWN", "GET deleted blob")


def test_upload_errors(reg):
    repo = f"upload/{unique('app')}"
    other = f"upload/{unique('other')}"
    data = os.urandom(5000)

    # A Content-Range that does not start at the current size.
    loc = reg.start_upload(repo)
    assert reg.req("PATCH", loc, data[:1000], {"Content-Range": "0-999"}).status == 202
    r = reg.req("PATCH", loc, data[1000:2000], {"Content-Range": "500-1499"})
    assert r.status == 416 and r.json["errors"][0]["code"] == "BLOB_UPLOAD_INVALID", r
    assert r.headers["docker-distribution-api-version"] == API_VERSION
    st = reg.req("GET", loc)
    assert st.status == 204 and st.headers["range"] == "0-999", st

    # The id under another repository name.
    assert_dist_error(reg.req("PATCH", loc.replace(repo, other), data[1000:2000]), 403, "DENIED", "PATCH via other repo")
    assert_dist_error(reg.req("GET", loc.replace(repo, other)), 403, "DENIED", "GET via other repo")
    assert_dist_error(reg.req("PUT", with_query(loc.replace(repo, other), digest=sha256(data[:1000]))), 403,
                      "DENIED", "PUT via other repo")
    assert reg.req("GET", loc).headers["range"] == "0-999"

    # Unknown upload ids.
    for uid in ("0" * 32, "not-an-id"):
        u = f"/v2/{repo}/blobs/uploads/{uid}"
        assert_dist_error(reg.req("GET", u), 404, "BLOB_UPLOAD_UNKNOWN", f"GET {u}")
        assert_dist_error(reg.req("PATCH", u, b"x"), 404, "BLOB_UPLOAD_UNKNOWN", f"PATCH {u}")
        assert_dist_error(reg.req("PUT", with_query(u, digest=sha256(b"x")), b"x"), 404, "BLOB_UPLOAD_UNKNOWN",
                          f"PUT {u}")
        assert_dist_error(reg.req("DELETE", u), 404, "BLOB_UPLOAD_UNKNOWN", f"DELETE {u}")

    # PUT without or with a malformed digest.
    assert_dist_error(reg.req("PUT", loc), 400, "DIGEST_INVALID", "PUT upload without ?digest=")
    assert_dist_error(reg.req("PUT", with_query(loc, digest="sha256:zz")), 400, "DIGEST_INVALID", "PUT bad digest")

    # PUT with the wrong digest: DIGEST_INVALID, and no blob under either digest.
    wrong = sha256(b"wrong")
    assert_dist_error(reg.req("PUT", with_query(loc, digest=wrong)), 400, "DIGEST_INVALID", "PUT wrong digest")
    assert_dist_error(reg.req("GET", f"/v2/{repo}/blobs/{wrong}"), 404, "BLOB_UNKNOWN", "blob of a failed upload")
    assert reg.req("HEAD", f"/v2/{repo}/blobs/{sha256(data[:1000])}").status == 404

    # DELETE (cancel) an upload.
    loc = reg.start_upload(repo)
    assert reg.req("PATCH", loc, data).status == 202
    r = reg.req("DELETE", loc)
    assert r.status == 204, r
    assert_dist_error(reg.req("GET", loc), 404, "BLOB_UPLOAD_UNKNOWN", "GET a cancelled upload")
    assert_dist_error(reg.req("PUT", with_query(loc, digest=sha256(data))), 404, "BLOB_UPLOAD_UNKNOWN",
                      "PUT a cancelled upload")
    assert reg.req("HEAD", f"/v2/{repo}/blobs/{sha256(data)}").status == 404


def test_invalid_repository_names(reg):
    for name in ("Team/App", "UPPER", "a..b", "-lead", "trail-", "a//b"):
        assert_dist_error(reg.req("POST", f"/v2/{name}/blobs/uploads/"), 400, "NAME_INVALID", f"POST upload {name}")
        assert_dist_error(reg.req("GET", f"/v2/{name}/tags/list"), 400, "NAME_INVALID", f"tags {name}")
        assert_dist_error(reg.get_manifest(name, "v1"), 400, "NAME_INVALID", f"manifest {name}")
        assert_dist_error(reg.req("GET", f"/v2/{name}/blobs/{sha256(b'x')}"), 400, "NAME_INVALID", f"blob {name}")
    catalog = reg.req("GET", "/v2/_catalog").json["repositories"]
    assert not any(any(c.isupper() for c in n) for n in catalog), catalog


# --------------------------------------------------------------------------
# 4. Authentication
# --------------------------------------------------------------------------


def _assert_401(r, what: str) -> None:
    assert_dist_error(r, 401, "UNAUTHORIZED", what)
    assert r.headers.get("www-authenticate") == CHALLENGE, (what, r.headers)


def test_unauthenticated_requests_are_challenged(berth, reg, token, pushed):
    repo = pushed["repo"]
    paths = [
        ("GET", "/v2/"),
        ("GET", "/v2/_catalog"),
        ("GET", f"/v2/{repo}/tags/list"),
        ("GET", f"/v2/{repo}/manifests/v1"),
        ("HEAD", f"/v2/{repo}/manifests/v1"),
        ("POST", f"/v2/{repo}/blobs/uploads/"),
        ("DELETE", f"/v2/{repo}/manifests/{sha256(b'x')}"),
    ]
    akid, secret = berth.env["AWS_ACCESS_KEY_ID"], berth.env["AWS_SECRET_ACCESS_KEY"]
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
    bad = {
        "no auth": None,
        "AWS + wrong password": basic("AWS", "wrong-password"),
        "AWS + garbage token": basic("AWS", "b1.Z2FyYmFnZQ.0123456789abcdef"),
        "AWS + tampered token": basic("AWS", tampered),
        "access key + wrong secret": basic(akid, secret + "x"),
        "unknown access key + secret": basic("AKIAUNKNOWNUNKNOWN00", secret),
        "bearer token": f"Bearer {token}",
        "basic garbage": "Basic !!!not-base64!!!",
    }
    for what, header in bad.items():
        for method, path in paths:
            r = reg.req(method, path, auth=header or False)
            if method == "HEAD":
                assert r.status == 401 and r.headers.get("www-authenticate") == CHALLENGE, (what, path, r)
            else:
                _assert_401(r, f"{what}: {method} {path}")

    # The good credentials.
    assert reg.req("GET", "/v2/").status == 200
    r = reg.req("GET", f"/v2/{repo}/tags/list", auth=basic(akid, secret))
    assert r.status == 200 and r.json["tags"] == ["v1"], r


def test_token_of_another_instance_is_refused(berth, private_berth):
    foreign = registry_token(private_berth)
    assert Registry(private_berth, basic("AWS", foreign)).req("GET", "/v2/").status == 200
    _assert_401(Registry(berth, basic("AWS", foreign)).req("GET", "/v2/"), "token of another Berth")
    pb = private_berth.env
    _assert_401(
        Registry(berth, basic(pb["AWS_ACCESS_KEY_ID"], pb["AWS_SECRET_ACCESS_KEY"])).req("GET", "/v2/"),
        "access key of another Berth",
    )


# --------------------------------------------------------------------------
# 5. Uploads across kill -9
# --------------------------------------------------------------------------


def _range_end(r) -> int:
    """The size a Range: 0-N header reports (0-0 read as empty)."""
    start, _, end = r.headers["range"].partition("-")
    assert start == "0", r.headers
    return 0 if end == "0" else int(end) + 1


def test_upload_resumes_after_kill9(private_berth):
    b = private_berth
    token = registry_token(b)
    reg = Registry(b, basic("AWS", token))
    repo = f"resume/{unique('app')}"
    data = os.urandom(1 * MiB + 123)
    half = len(data) // 2
    other = os.urandom(300_000)

    loc = reg.start_upload(repo)
    r = reg.req("PATCH", loc, data[:half], {"Content-Range": f"0-{half - 1}"})
    assert r.status == 202 and r.headers["range"] == f"0-{half - 1}", r
    loc2 = reg.start_upload(repo)
    assert reg.req("PATCH", loc2, other).status == 202

    b.kill9()
    b.start()

    r = reg.req("GET", "/v2/")
    assert r.status == 200, f"the registry token issued before the restart is refused after it: {r}"
    st = reg.req("GET", loc)
    assert st.status == 204, st
    assert st.headers["range"] == f"0-{half - 1}", st.headers
    r = reg.req("PATCH", loc, data[half:], {"Content-Range": f"{half}-{len(data) - 1}"})
    assert r.status == 202 and r.headers["range"] == f"0-{len(data) - 1}", r
    r = reg.req("PUT", with_query(loc, digest=sha256(data)))
    assert r.status == 201, r
    g = reg.req("GET", f"/v2/{repo}/blobs/{sha256(data)}")
    assert g.status == 200 and len(g.body) == len(data) and g.body == data

    # The second session, started before the crash, finished with a wrong digest.
    assert reg.req("GET", loc2).headers.get("range") == f"0-{len(other) - 1}"
    wrong = sha256(other + b"!")
    assert_dist_error(reg.req("PUT", with_query(loc2, digest=wrong)), 400, "DIGEST_INVALID", "wrong digest")
    assert_dist_error(reg.req("GET", f"/v2/{repo}/blobs/{wrong}"), 404, "BLOB_UNKNOWN", "GET the wrong digest")
    assert_dist_error(reg.req("GET", f"/v2/{repo}/blobs/{sha256(other)}"), 404, "BLOB_UNKNOWN",
                      "GET the digest of a rejected upload's bytes")

    # A session started after the restart, finished with a wrong digest.
    loc3 = reg.start_upload(repo)
    third = os.urandom(10_000)
    assert_dist_error(reg.req("PUT", with_query(loc3, digest=wrong), third), 400, "DIGEST_INVALID", "wrong digest 3")
    assert_dist_error(reg.req("GET", f"/v2/{repo}/blobs/{wrong}"), 404, "BLOB_UNKNOWN", "GET wrong digest 3")
    assert reg.req("HEAD", f"/v2/{repo}/blobs/{sha256(third)}").status == 404

    # The repository and its blob survive one more (graceful) restart.
    b.restart()
    g = reg.req("GET", f"/v2/{repo}/blobs/{sha256(data)}")
    assert g.status == 200 and g.body == data


class _SlowBody(threading.Thread):
    """Sends a request whose body is streamed in pieces; after `pause_at`
    bytes it signals `reached` and waits for `release` before going on."""

    def __init__(self, inst, method: str, path: str, auth: str, body: bytes, pause_at: int) -> None:
        super().__init__(daemon=True)
        url = urllib.parse.urlsplit(inst.env["AWS_ENDPOINT_URL"])
        self.host, self.port = url.hostname, url.port
        self.method, self.path, self.auth, self.body, self.pause_at = method, path, auth, body, pause_at
        self.reached = threading.Event()
        self.release = threading.Event()
        self.sent = 0
        self.outcome: object = None

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.putrequest(self.method, self.path)
            conn.putheader("Authorization", self.auth)
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Length", str(len(self.body)))
            conn.endheaders()
            piece = 256 * 1024
            while self.sent < len(self.body):
                if self.sent >= self.pause_at and not self.reached.is_set():
                    self.reached.set()
                    self.release.wait(30)
                conn.send(self.body[self.sent : self.sent + piece])
                self.sent += piece
                time.sleep(0.005)
            resp = conn.getresponse()
            self.outcome = (resp.status, resp.read())
        except OSError as e:
            self.outcome = e
        finally:
            self.reached.set()
            conn.close()


def test_kill9_while_streaming_large_bodies(private_berth):
    b = private_berth
    reg = Registry(b, basic(b.env["AWS_ACCESS_KEY_ID"], b.env["AWS_SECRET_ACCESS_KEY"]))
    repo = f"crash/{unique('app')}"
    data = os.urandom(8 * MiB)
    full = sha256(data)
    pause_at = 6 * MiB

    patch_loc = reg.start_upload(repo)
    put_loc = reg.start_upload(repo)
    senders = [
        _SlowBody(b, "PATCH", patch_loc, reg.authorization, data, pause_at),
        _SlowBody(b, "PUT", with_query(put_loc, digest=full), reg.authorization, data, pause_at),
        _SlowBody(b, "POST", f"/v2/{repo}/blobs/uploads/?digest={full}", reg.authorization, data, pause_at),
    ]
    for s in senders:
        s.start()
    for s in senders:
        assert s.reached.wait(30), "the slow request did not get going"
    time.sleep(0.5)  # let the server consume what was sent
    b.kill9()
    for s in senders:
        s.release.set()
    for s in senders:
        s.join(30)
    for s in senders:
        assert not (isinstance(s.outcome, tuple) and s.outcome[0] in (201, 202)), (
            f"{s.method} {s.path} completed although the server was killed: {s.outcome}"
        )
    b.start()

    # No blob whose bytes do not hash to its name: over the API...
    candidates = {full} | {sha256(data[:n]) for n in (4 * MiB, 6 * MiB, 8 * MiB)}
    for d in sorted(candidates):
        h = reg.req("HEAD", f"/v2/{repo}/blobs/{d}")
        if h.status == 200:
            g = reg.req("GET", f"/v2/{repo}/blobs/{d}")
            assert sha256(g.body) == d, f"blob {d} holds bytes hashing to {sha256(g.body)}"
        else:
            assert h.status == 404, h
            assert_dist_error(reg.req("GET", f"/v2/{repo}/blobs/{d}"), 404, "BLOB_UNKNOWN", f"blob {d} after the crash")
    # ...and on disk.
    blob_dir = b.data_dir / "registry" / "blobs" / "sha256"
    assert blob_dir.is_dir(), f"no blob directory at {blob_dir}"
    for f in blob_dir.iterdir():
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        assert digest == f.name, f"{f} holds bytes hashing to sha256:{digest}"

    # The PATCHed session resumes where the server left it: its bytes are a
    # prefix of what was sent.
    for loc in (patch_loc, put_loc):
        st = reg.req("GET", loc)
        if st.status == 404:
            assert_dist_error(st, 404, "BLOB_UPLOAD_UNKNOWN", "session after crash")
            continue
        assert st.status == 204, st
        have = _range_end(st)
        assert have <= pause_at + 256 * 1024, (have, st.headers)
        rest = data[have:]
        r = reg.req("PATCH", loc, rest, {"Content-Range": f"{have}-{len(data) - 1}"})
        assert r.status == 202 and r.headers["range"] == f"0-{len(data) - 1}", r
        r = reg.req("PUT", with_query(loc, digest=full))
        assert r.status == 201, f"resuming {loc} at {have} bytes: {r}"
    g = reg.req("GET", f"/v2/{repo}/blobs/{full}")
    assert g.status == 200 and g.body == data


def test_repositories_named_like_route_keywords_and_nested(reg):
    """Names are decided by the path's tail; nested names keep their own tags."""
    data = os.urandom(1000)
    for repo in ("kw/manifests/yy", "kw/blobs/uploads"):
        d = reg.push_blob(repo, data)
        r = reg.req("GET", f"/v2/{repo}/blobs/{d}")
        assert r.status == 200 and r.body == data, (repo, r)
    parent = f"nest/{unique('p')}"
    child = f"{parent}/child"
    for repo in (parent, child):
        reg.push_blob(repo, data)
    # A manifest referencing the blob, under a tag in each repository.
    cfg = b"{}"
    for repo in (parent, child):
        reg.push_blob(repo, cfg)
    import hashlib, json as _json
    def dg(b):
        return "sha256:" + hashlib.sha256(b).hexdigest()
    manifest = _json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": dg(cfg), "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": dg(data), "size": len(data)}],
    }).encode()
    ct = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    assert reg.req("PUT", f"/v2/{parent}/manifests/v1", body=manifest, headers=ct).status == 201
    assert reg.req("PUT", f"/v2/{child}/manifests/v1", body=manifest, headers=ct).status == 201
    assert reg.req("PUT", f"/v2/{child}/manifests/onlychild", body=manifest, headers=ct).status == 201
    tags = _json.loads(reg.req("GET", f"/v2/{parent}/tags/list").body)["tags"]
    assert tags == ["v1"], tags
    # Deleting the parent's manifest leaves the child's tags alone.
    assert reg.req("DELETE", f"/v2/{parent}/manifests/{dg(manifest)}").status == 202
    assert reg.req("GET", f"/v2/{child}/manifests/onlychild").status == 200
    # A descriptor size that contradicts the blob is refused.
    lying = manifest.replace(f'"size": {len(data)}'.encode(), f'"size": {len(data) + 1}'.encode())
    assert_dist_error(reg.req("PUT", f"/v2/{child}/manifests/lie", body=lying, headers=ct), 400, "MANIFEST_INVALID", "size lie")
