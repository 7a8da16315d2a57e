"""Helpers for the registry tests: OCI images built in Python, an OCI image
layout on disk, a small raw client for the distribution API (`/v2/...`) and
wrappers around skopeo.

Nothing here touches global state: auth files and HOME are always temp paths
given by the caller.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.config

from conftest import RawResponse, _isolated_env, _send

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ACCEPT_MANIFESTS = ", ".join(
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, "application/vnd.docker.distribution.manifest.list.v2+json"]
)
API_VERSION = "registry/2.0"
CHALLENGE = 'Basic realm="Berth Registry"'
BUSYBOX = Path("/bin/busybox")
SKOPEO = "/usr/bin/skopeo"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(v: Any) -> bytes:
    return json.dumps(v, separators=(",", ":"), sort_keys=True).encode()


def host_arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}.get(m, m)


# --------------------------------------------------------------------------
# Images built in Python
# --------------------------------------------------------------------------


def _tar_entry(tf: tarfile.TarFile, name: str, data: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = mode
    if data is None:
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
    else:
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))


def layer_tar_gz(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    """A deterministic layer: (gzip bytes, uncompressed tar bytes). `files`
    maps paths (no leading slash) to contents; parent directories are added,
    files under bin/ are executable. Same input, same bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs: set[str] = set()
        for path in sorted(files):
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    _tar_entry(tf, d + "/", None, 0o755)
            _tar_entry(tf, path, files[path], 0o755 if path.startswith("bin/") else 0o644)
    tar = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=6) as g:
        g.write(tar)
    return gz.getvalue(), tar


@dataclass
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass
class Image:
    """An image: config, layers and the manifest that names them."""

    config: Blob
    layers: list[Blob]
    manifest: bytes
    media_type: str = OCI_MANIFEST

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def blobs(self) -> list[Blob]:
        return [self.config, *self.layers]

    @property
    def manifest_json(self) -> dict[str, Any]:
        return json.loads(self.manifest)


def make_image(
    files: dict[str, bytes],
    *,
    entrypoint: list[str] | None = None,
    media_type: str = OCI_MANIFEST,
    label: str = "",
) -> Image:
    """One-layer image of `files`. `label` makes otherwise equal images differ."""
    docker = media_type == DOCKER_MANIFEST
    gz, tar = layer_tar_gz(files)
    layer = Blob(DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP, gz)
    config = {
        "architecture": host_arch(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Entrypoint": entrypoint or ["/bin/busybox", "cat", "/etc/hello.txt"],
            "Env": ["PATH=/bin"],
            "Labels": {"berth.test": label} if label else {},
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "berth e2e oci_helpers"}],
    }
    cfg = Blob(DOCKER_CONFIG if docker else OCI_CONFIG, canonical_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": cfg.descriptor(),
        "layers": [layer.descriptor()],
    }
    return Image(cfg, [layer], json.dumps(manifest, indent=2).encode(), media_type)


def busybox_image(label: str = "") -> Image:
    """The image of the brief: /bin/busybox from the host plus a small file,
    Entrypoint running busybox."""
    if not BUSYBOX.is_file():
        raise AssertionError(f"{BUSYBOX} is missing: install busybox-static")
    return make_image(
        {
            "bin/busybox": BUSYBOX.read_bytes(),
            "etc/hello.txt": b"hello from a berth e2e image\n",
        },
        entrypoint=["/bin/busybox", "cat", "/etc/hello.txt"],
        label=label,
    )


def small_image(label: str, media_type: str = OCI_MANIFEST) -> Image:
    """A tiny image, distinct per `label`."""
    return make_image({"etc/label.txt": label.encode()}, media_type=media_type, label=label)


# --------------------------------------------------------------------------
# OCI image layout
# --------------------------------------------------------------------------


def write_oci_layout(root: Path, image: Image, tag: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for b in [*image.blobs, Blob(image.media_type, image.manifest)]:
        (blobs / b.digest.split(":", 1)[1]).write_bytes(b.data)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": len(image.manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index, indent=2))


def layout_manifest_descriptor(root: Path, tag: str) -> dict[str, Any]:
    """The index.json entry of `tag` in the layout at `root`."""
    index = json.loads((root / "index.json").read_text())
    found = [
        m
        for m in index.get("manifests", [])
        if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag
    ]
    assert len(found) == 1, f"{root}/index.json has {len(found)} entries for tag {tag!r}: {index}"
    return found[0]


def layout_blob(root: Path, digest: str) -> bytes:
    algo, hexd = digest.split(":", 1)
    return (root / "blobs" / algo / hexd).read_bytes()


# --------------------------------------------------------------------------
# The ECR API (boto3) and tokens
# --------------------------------------------------------------------------


def ecr_client(inst):
    return boto3.session.Session().client(
        "ecr",
        endpoint_url=inst.env["AWS_ENDPOINT_URL"],
        aws_access_key_id=inst.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=inst.env["AWS_SECRET_ACCESS_KEY"],
        region_name=inst.env["AWS_REGION"],
        config=botocore.config.Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30),
    )


def registry_token(inst) -> str:
    """The password for user AWS, from GetAuthorizationToken."""
    data = ecr_client(inst).get_authorization_token()["authorizationData"][0]
    user, _, token = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == "AWS", data
    return token


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --------------------------------------------------------------------------
# A raw distribution API client
# --------------------------------------------------------------------------


class Registry:
    """Hand-built `/v2` requests against one Berth instance."""

    def __init__(self, inst, authorization: str | None) -> None:
        self.inst = inst
        self.authorization = authorization

    @property
    def endpoint(self) -> str:
        return self.inst.env["AWS_ENDPOINT_URL"]

    @property
    def host(self) -> str:
        return self.inst.env["BERTH_REGISTRY"]

    def req(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        auth: str | None | bool = True,
    ) -> RawResponse:
        """`path` may be absolute (`/v2/...`) or a full URL (a Location).
        `auth`: True = this client's header, None/False = none, str = that header."""
        if path.startswith("http://") or path.startswith("https://"):
            u = urllib.parse.urlsplit(path)
            path = u.path + (f"?{u.query}" if u.query else "")
        h = dict(headers or {})
        if auth is True and self.authorization:
            h["Authorization"] = self.authorization
        elif isinstance(auth, str):
            h["Authorization"] = auth
        r = _send(self.endpoint, method, path, h, body)
        # Every registry response, success or error, carries the API version.
        assert r.headers.get("docker-distribution-api-version") == API_VERSION, (
            f"{method} {path}: no `Docker-Distribution-API-Version: {API_VERSION}` header "
            f"(HTTP {r.status}, headers {r.headers})"
        )
        return r

    # -- blobs --------------------------------------------------------------

    def start_upload(self, repo: str) -> str:
        r = self.req("POST", f"/v2/{repo}/blobs/uploads/")
        assert r.status == 202, r
        return r.headers["location"]

    def push_blob(self, repo: str, data: bytes) -> str:
        """Monolithic upload (POST then PUT ?digest=); returns the digest."""
        loc = self.start_upload(repo)
        d = sha256(data)
        r = self.req("PUT", with_query(loc, digest=d), data, {"Content-Type": "application/octet-stream"})
        assert r.status == 201, r
        return d

    def push_image(self, repo: str, image: Image, tag: str | None) -> RawResponse:
        for b in image.blobs:
            self.push_blob(repo, b.data)
        return self.put_manifest(repo, tag or image.digest, image.manifest, image.media_type)

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str = OCI_MANIFEST) -> RawResponse:
        return self.req("PUT", f"/v2/{repo}/manifests/{reference}", data, {"Content-Type": media_type})

    def get_manifest(self, repo: str, reference: str, method: str = "GET") -> RawResponse:
        return self.req(method, f"/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT_MANIFESTS})


def with_query(location: str, **params: str) -> str:
    sep = "&" if "?" in location else "?"
    return location + sep + urllib.parse.urlencode(params)


def error_codes(r: RawResponse) -> list[str]:
    if isinstance(r.json, dict) and isinstance(r.json.get("errors"), list):
        return [e.get("code") for e in r.json["errors"]]
    return []


def assert_dist_error(r: RawResponse, status: int, code: str, what: str = "") -> None:
    """A spec error: the status, {"errors":[{"code": code, "message": ...}]},
    and the API version header every response carries."""
    assert r.status == status and error_codes(r) == [code], (
        f"{what}: expected HTTP {status} {code}, got HTTP {r.status} {error_codes(r)} {r.body[:500]!r}"
    )
    assert isinstance(r.json["errors"][0].get("message"), str) and r.json["errors"][0]["message"], r
    assert r.headers.get("docker-distribution-api-version") == API_VERSION, (what, r.headers)


# --------------------------------------------------------------------------
# skopeo
# --------------------------------------------------------------------------


def skopeo_bin() -> str:
    path = shutil.which("skopeo") or (SKOPEO if os.access(SKOPEO, os.X_OK) else None)
    if not path:
        raise AssertionError("skopeo is not installed (expected /usr/bin/skopeo): the registry tests need it")
    return path


@dataclass
class Tools:
    """Runs skopeo / shell pipelines with a private HOME, auth file and
    the Berth instance's AWS environment."""

    inst: Any
    tmp: Path
    env_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.tmp / "home"

    @property
    def authfile(self) -> Path:
        return self.tmp / "auth.json"

    def env(self) -> dict[str, str]:
        self.home.mkdir(parents=True, exist_ok=True)
        env = _isolated_env(self.tmp)
        env.update(self.inst.env)
        env.pop("XDG_RUNTIME_DIR", None)
        env.update(
            HOME=str(self.home),
            REGISTRY_AUTH_FILE=str(self.authfile),
            # skopeo's own config (registries.conf, policy) stays the system's.
        )
        env.update(self.env_overrides)
        return env

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            argv, capture_output=True, text=True, env=self.env(), input=input, timeout=timeout, cwd=str(self.tmp)
        )

    def shell(self, script: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["/bin/bash", "-o", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            cwd=str(self.tmp),
        )

    def skopeo(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run([skopeo_bin(), *args], timeout=timeout)

    def skopeo_ok(self, *args: str, timeout: float = 120) -> str:
        p = self.skopeo(*args, timeout=timeout)
        assert p.returncode == 0, f"$ skopeo {' '.join(args)}\n-> exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
        return p.stdout
