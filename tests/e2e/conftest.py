"""End-to-end fixtures: a real `berth up` process driven by the AWS CLI and boto3.

Run with:

    BERTH_BIN=/path/to/berth python -m pytest tests/e2e

The suite never skips: without a usable BERTH_BIN it refuses to run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113"
JSON11 = "application/x-amz-json-1.1"
STARTUP_TIMEOUT = 30.0
AWS_CLI = os.path.join(os.path.dirname(sys.executable), "aws")

# Every Berth process the session started, so their logs can be shown when
# something fails.
_INSTANCES: list["BerthProcess"] = []


# --------------------------------------------------------------------------
# The binary
# --------------------------------------------------------------------------


def _berth_bin() -> str:
    path = os.environ.get("BERTH_BIN")
    if not path:
        raise pytest.UsageError(
            "BERTH_BIN is not set: build berth (cd /work/main && "
            "CARGO_TARGET_DIR=/var/tmp/berth-target cargo build -p berth) and run "
            "BERTH_BIN=/var/tmp/berth-target/debug/berth python -m pytest tests/e2e"
        )
    p = Path(path)
    if not p.is_file() or not os.access(p, os.X_OK):
        raise pytest.UsageError(f"BERTH_BIN={path!r} is not an executable file")
    return str(p.resolve())


def pytest_configure(config: pytest.Config) -> None:
    # Fail loudly, before collecting anything, when the binary is unusable.
    _berth_bin()
    if not os.access(AWS_CLI, os.X_OK):
        raise pytest.UsageError(f"the AWS CLI is not installed next to {sys.executable} ({AWS_CLI})")


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ANN001
    for inst in _INSTANCES:
        inst.stop()
        inst.reap()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if exitstatus == 0:
        return
    for inst in _INSTANCES:
        terminalreporter.section(f"berth log ({inst.data_dir})")
        terminalreporter.write(inst.log_text()[-20000:] or "(empty)\n")


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def parse_env_output(text: str) -> dict[str, str]:
    """Parses `export NAME='value'` lines as printed by `berth env`."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        assert line.startswith("export "), f"unexpected `berth env` line: {line!r}"
        name, _, raw = line[len("export "):].partition("=")
        values = shlex.split(raw)
        assert len(values) == 1, f"unexpected `berth env` value: {line!r}"
        env[name] = values[0]
    return env


def run_berth(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_berth_bin(), *args], capture_output=True, text=True, timeout=timeout
    )


# --------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------


_SEQ = iter(range(1, 10_000))
# Each session starts at its own offset in 10.200-10.249, so two test runs on
# one machine (a developer's and CI's) rarely pick the same task networks.
_NET_BASE = os.getpid() % 50


class BerthProcess:
    """One `berth up` process on its own data directory.

    With `agent=True` (the default) it runs an agent beside the server, with
    its own bridge, cgroup parent and task network, so that several
    instances can share the machine; `reap()` removes what they leave.
    """

    def __init__(
        self,
        data_dir: Path,
        agent: bool = True,
        listen: str = "127.0.0.1:0",
        extra_args: list[str] | None = None,
    ) -> None:
        """`listen`: a fixed address keeps the endpoint across restarts (a
        separate `berth agent` keeps talking to it); `extra_args` are added
        to `berth up` (e.g. `--agent-cpu`)."""
        self.bin = _berth_bin()
        self.data_dir = Path(data_dir)
        self.agent = agent
        self.listen = listen
        self.extra_args = list(extra_args or [])
        n = next(_SEQ)
        tag = f"{os.getpid() % 10000}n{n}"
        self.bridge = f"bt{tag}"[:15]
        self.cgroup_parent = f"berth-t{tag}"
        self.task_network = f"10.{200 + (_NET_BASE + n) % 50}.0.0/16"
        # Set when a separate `berth agent` uses this instance's names.
        self.reap_agent = False
        self.log_path = self.data_dir.parent / (self.data_dir.name + ".log")
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""
        self.env: dict[str, str] = {}
        self.account = ""
        self.region = ""
        self._log_file = None
        _INSTANCES.append(self)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "berth is already running"
        # A stale endpoint file from an earlier (killed) run must not be
        # mistaken for the new process's.
        try:
            (self.data_dir / "endpoint").unlink()
        except FileNotFoundError:
            pass
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n===== berth up (started {time.ctime()}) =====\n".encode())
        self._log_file.flush()
        extra = ["--task-network", self.task_network] + (
            ["--bridge", self.bridge, "--cgroup-parent", self.cgroup_parent] if self.agent else ["--no-agent"]
        )
        self.proc = subprocess.Popen(
            [self.bin, "up", "--data-dir", str(self.data_dir), "--listen", self.listen, *extra, *self.extra_args],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "BERTH_LOG": os.environ.get("BERTH_LOG", "info")},
        )
        self._wait_ready()
        out = run_berth("env", "--data-dir", str(self.data_dir))
        assert out.returncode == 0, f"`berth env` failed: {out.stderr}"
        self.env = parse_env_output(out.stdout)
        assert self.env["AWS_ENDPOINT_URL"] == self.endpoint, (self.env, self.endpoint)
        config = json.loads((self.data_dir / "config.json").read_text())
        self.account = config["account"]
        self.region = config["region"]

    def _fail(self, why: str) -> None:
        self.stop()
        raise RuntimeError(f"berth did not start: {why}\n--- berth log ---\n{self.log_text()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        endpoint_file = self.data_dir / "endpoint"
        while True:
            if self.proc.poll() is not None:
                self._fail(f"the process exited with status {self.proc.returncode}")
            if endpoint_file.exists():
                text = endpoint_file.read_text().strip()
                if text:
                    self.endpoint = text
                    break
            if time.monotonic() > deadline:
                self._fail(f"no endpoint file after {STARTUP_TIMEOUT}s")
            time.sleep(0.05)
        url = urllib.parse.urlsplit(self.endpoint)
        assert url.scheme == "http" and url.hostname == "127.0.0.1" and url.port, self.endpoint
        while True:
            if self.proc.poll() is not None:
                self._fail(f"the process exited with status {self.proc.returncode}")
            try:
                with socket.create_connection((url.hostname, url.port), timeout=1):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self._fail(f"{self.endpoint} does not accept connections after {STARTUP_TIMEOUT}s")
            time.sleep(0.05)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit within 10 s."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._close_log()
        return self.proc.returncode

    def kill9(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "berth is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close_log()

    def reap(self) -> None:
        """Removes every container, shim, mount, netns, cgroup and bridge this
        instance's agent made (tests must not leave the machine dirty)."""
        root = self.data_dir / "agent" / "runner"
        runc_root = root / "runc"
        if runc_root.exists():
            ids = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"], capture_output=True, text=True).stdout.split()
            for cid in ids:
                subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", cid], capture_output=True)
        for pid_file in root.glob("tasks/*/containers/*/shim.pid"):
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (ValueError, ProcessLookupError, PermissionError):
                pass
        mounts = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4]
                if mp.startswith(str(root)):
                    mounts.append(mp)
        for mp in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        for d in (root / "tasks").glob("*") if (root / "tasks").exists() else []:
            subprocess.run(["ip", "netns", "delete", f"berth-{d.name}"], capture_output=True)
        if self.agent or self.reap_agent:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
            for rule in (["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"], ["-j", "DROP"]):
                subprocess.run(["iptables", "-D", "INPUT", "-i", self.bridge, *rule], capture_output=True)
            for ctrl in Path("/sys/fs/cgroup").iterdir():
                parent = ctrl / self.cgroup_parent
                if parent.is_dir():
                    for d in sorted(parent.rglob("*"), key=lambda p: len(str(p)), reverse=True):
                        if d.is_dir():
                            try:
                                d.rmdir()
                            except OSError:
                                pass
                    try:
                        parent.rmdir()
                    except OSError:
                        pass

    def restart(self) -> None:
        """Stops the process if it runs and starts a new one on the same data dir."""
        self.stop()
        self.start()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- conveniences --------------------------------------------------------

    @property
    def net16(self) -> str:
        """The first two octets of this instance's task network (e.g. `10.203`)."""
        return ".".join(self.task_network.split(".")[:2])

    @property
    def credentials(self) -> botocore.credentials.Credentials:
        return botocore.credentials.Credentials(
            self.env["AWS_ACCESS_KEY_ID"], self.env["AWS_SECRET_ACCESS_KEY"]
        )

    def cluster_arn(self, name: str) -> str:
        return f"arn:aws:ecs:{self.region}:{self.account}:cluster/{name}"

    def taskdef_arn(self, family: str, revision: int) -> str:
        return f"arn:aws:ecs:{self.region}:{self.account}:task-definition/{family}:{revision}"

    def boto3_client(self, service: str = "ecs", **overrides: Any):
        kwargs = dict(
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_REGION"],
            config=botocore.config.Config(
                retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30
            ),
        )
        kwargs.update(overrides)
        return boto3.session.Session().client(service, **kwargs)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_instance(tmp_root: Path, agent: bool = True) -> BerthProcess:
    inst = BerthProcess(tmp_root / "data", agent=agent)
    inst.start()
    return inst


@pytest.fixture(scope="session")
def berth(tmp_path_factory: pytest.TempPathFactory):
    """The shared Berth instance every test may use (with unique names)."""
    inst = _start_instance(tmp_path_factory.mktemp("berth-shared"))
    yield inst
    inst.stop()


@pytest.fixture()
def private_berth(tmp_path_factory: pytest.TempPathFactory):
    """A Berth instance of the test's own, for tests that kill or restart it
    (the API and registry only: no agent)."""
    inst = _start_instance(tmp_path_factory.mktemp("berth-private"), agent=False)
    yield inst
    inst.stop()


# --------------------------------------------------------------------------
# The AWS CLI
# --------------------------------------------------------------------------


@dataclass
class CliResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    json: Any = None

    def __str__(self) -> str:
        return (
            f"$ aws {' '.join(self.args)}\n-> exit {self.returncode}\n"
            f"stdout: {self.stdout}\nstderr: {self.stderr}"
        )


def _isolated_env(tmp: Path) -> dict[str, str]:
    """The caller's environment without anything that could point the AWS
    CLI elsewhere (profiles, other credentials, other endpoints)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(tmp / "aws-config-does-not-exist"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "aws-credentials-does-not-exist"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
    )
    return env


class AwsCli:
    """Runs `aws ... --output json` against a Berth instance."""

    def __init__(self, inst: BerthProcess, tmp: Path) -> None:
        self.inst = inst
        self.tmp = tmp

    def env(self, **overrides: str) -> dict[str, str]:
        env = _isolated_env(self.tmp)
        env.update(self.inst.env)
        env.update(overrides)
        return env

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> CliResult:
        argv = [str(a) for a in args]
        p = subprocess.run(
            [AWS_CLI, *argv, "--output", "json"],
            capture_output=True,
            text=True,
            env=self.env(**(env or {})),
            timeout=timeout,
            cwd=str(REPO_ROOT),
        )
        parsed = None
        if p.stdout.strip():
            try:
                parsed = json.loads(p.stdout)
            except ValueError:
                parsed = None
        return CliResult(argv, p.returncode, p.stdout, p.stderr, parsed)

    def ok(self, *args: str, **kw: Any) -> Any:
        """Runs the command, asserts it succeeded, returns its JSON output."""
        r = self(*args, **kw)
        assert r.returncode == 0, str(r)
        return r.json


@pytest.fixture(scope="session")
def aws(berth: BerthProcess, tmp_path_factory: pytest.TempPathFactory) -> AwsCli:
    return AwsCli(berth, tmp_path_factory.mktemp("aws-cli"))


@pytest.fixture(scope="session")
def aws_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[BerthProcess], AwsCli]:
    tmp = tmp_path_factory.mktemp("aws-cli-private")
    return lambda inst: AwsCli(inst, tmp)


@pytest.fixture(scope="session")
def ecs(berth: BerthProcess):
    return berth.boto3_client()


# --------------------------------------------------------------------------
# Raw HTTP
# --------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    json: Any
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def type(self) -> str | None:
        """The error `__type`, without any `namespace#` prefix."""
        if isinstance(self.json, dict) and "__type" in self.json:
            return str(self.json["__type"]).rsplit("#", 1)[-1]
        return None

    @property
    def message(self) -> str:
        if isinstance(self.json, dict):
            return str(self.json.get("message") or self.json.get("Message") or "")
        return ""

    def __repr__(self) -> str:
        return f"<HTTP {self.status} {self.body[:2000]!r}>"

    __str__ = __repr__

    def __iter__(self):
        """`status, body = raw.send(...)`"""
        return iter((self.status, self.json))


def _send(endpoint: str, method: str, path_and_query: str, headers: dict[str, str], body: bytes) -> RawResponse:
    url = urllib.parse.urlsplit(endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest(method, path_and_query, skip_host=True, skip_accept_encoding=True)
        names = {k.lower() for k in headers}
        if "host" not in names:
            conn.putheader("Host", url.netloc)
        for k, v in headers.items():
            conn.putheader(k, v)
        if "content-length" not in names:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        try:
            # The server may answer (e.g. 413) and stop reading before the
            # whole body is sent; the answer is still there to read.
            if body:
                conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = conn.getresponse()
        data = resp.read()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return RawResponse(resp.status, parsed, data, {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


def amz_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def manual_sigv4_headers(
    *,
    method: str,
    host: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
    service: str = "ecs",
    amz_date: str | None = None,
) -> dict[str, str]:
    """An independent SigV4 signer (no botocore): returns `headers` plus
    X-Amz-Date and Authorization. `amz_date` (YYYYMMDDTHHMMSSZ) may be any
    time, e.g. a stale one."""
    amz_date = amz_date or amz_now()
    date = amz_date[:8]
    all_headers = {**headers, "Host": host, "X-Amz-Date": amz_date}
    canon = {}
    for k, v in all_headers.items():
        canon[k.lower().strip()] = " ".join(str(v).strip().split())
    signed = sorted(canon)
    canonical_headers = "".join(f"{k}:{canon[k]}\n" for k in signed)
    signed_headers = ";".join(signed)
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    enc = lambda s: urllib.parse.quote(s, safe="-_.~")  # noqa: E731
    canonical_query = "&".join(sorted(f"{enc(k)}={enc(v)}" for k, v in pairs))
    canonical_request = "\n".join(
        [
            method,
            urllib.parse.quote(path, safe="/-_.~"),
            canonical_query,
            canonical_headers,
            signed_headers,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )

    def h(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    k = h(("AWS4" + secret_key).encode(), date)
    k = h(k, region)
    k = h(k, service)
    k = h(k, "aws4_request")
    signature = hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()
    out = {**headers, "X-Amz-Date": amz_date}
    out["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return out


class RawClient:
    """Sends hand-built ECS requests, signed (botocore or the independent
    signer) or not, and returns (status, parsed JSON) as a RawResponse."""

    def __init__(self, inst: BerthProcess) -> None:
        self.inst = inst

    @property
    def endpoint(self) -> str:
        return self.inst.env["AWS_ENDPOINT_URL"]

    @staticmethod
    def _body(body: Any) -> bytes:
        if body is None:
            return b""
        if isinstance(body, (bytes, bytearray)):
            return bytes(body)
        if isinstance(body, str):
            return body.encode()
        return json.dumps(body).encode()

    def headers_for(self, operation: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"Content-Type": JSON11}
        if operation is not None:
            h["X-Amz-Target"] = f"{TARGET_PREFIX}.{operation}"
        h.update(extra or {})
        return h

    def send(
        self,
        operation: str | None,
        body: Any = None,
        *,
        sign: str | None = "botocore",
        headers: dict[str, str] | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str | None = None,
        service: str = "ecs",
        amz_date: str | None = None,
        method: str = "POST",
        path: str = "/",
    ) -> RawResponse:
        """`sign`: "botocore" (SigV4Auth), "manual" (the independent signer,
        honouring `amz_date`) or None (unsigned)."""
        data = self._body({} if body is None else body)
        hdrs = self.headers_for(operation, headers)
        access_key = access_key or self.inst.env["AWS_ACCESS_KEY_ID"]
        secret_key = secret_key or self.inst.env["AWS_SECRET_ACCESS_KEY"]
        region = region or self.inst.region
        url = urllib.parse.urlsplit(self.endpoint)
        if sign == "botocore":
            req = botocore.awsrequest.AWSRequest(
                method=method, url=f"{self.endpoint}{path}", data=data, headers=hdrs
            )
            botocore.auth.SigV4Auth(
                botocore.credentials.Credentials(access_key, secret_key), service, region
            ).add_auth(req)
            hdrs = dict(req.headers.items())
        elif sign == "manual":
            hdrs = manual_sigv4_headers(
                method=method,
                host=url.netloc,
                path=path,
                query="",
                headers=hdrs,
                body=data,
                access_key=access_key,
                secret_key=secret_key,
                region=region,
                service=service,
                amz_date=amz_date,
            )
        elif sign is not None:
            raise ValueError(f"unknown signer {sign!r}")
        return _send(self.endpoint, method, path, hdrs, data)

    def presigned(self, operation: str, body: Any = None, *, expires: int = 300) -> RawResponse:
        """A request authenticated by a presigned query string
        (botocore.auth.SigV4QueryAuth) instead of an Authorization header."""
        data = self._body({} if body is None else body)
        req = botocore.awsrequest.AWSRequest(
            method="POST", url=f"{self.endpoint}/", headers=self.headers_for(operation)
        )
        botocore.auth.SigV4QueryAuth(
            self.inst.credentials, "ecs", self.inst.region, expires=expires
        ).add_auth(req)
        url = urllib.parse.urlsplit(req.url)
        return _send(self.endpoint, "POST", f"{url.path}?{url.query}", dict(req.headers.items()), data)


@pytest.fixture(scope="session")
def raw(berth: BerthProcess) -> RawClient:
    return RawClient(berth)


# --------------------------------------------------------------------------
# Helpers shared by the tests
# --------------------------------------------------------------------------


def fargate_taskdef(family: str, **overrides: Any) -> dict[str, Any]:
    """A minimal valid Fargate task definition."""
    td: dict[str, Any] = {
        "family": family,
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{"name": "app", "image": "busybox:latest", "essential": True}],
    }
    td.update(overrides)
    return td


def error_of(excinfo: pytest.ExceptionInfo) -> tuple[str, int, str]:
    """(code, HTTP status, message) of a botocore ClientError."""
    r = excinfo.value.response
    return (
        r["Error"]["Code"],
        r["ResponseMetadata"]["HTTPStatusCode"],
        r["Error"].get("Message", ""),
    )
