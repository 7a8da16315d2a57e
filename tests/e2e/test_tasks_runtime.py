"""Tasks run for real: `berth up` (server + agent), runc, network namespaces,
cgroups and overlayfs, driven by the AWS CLI and boto3.

Needs root, runc and `ip netns` (scripts/lib.sh installs runc and iproute2).
These tests FAIL, never skip, when a prerequisite is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BerthProcess, run_berth, unique


def _require_runtime() -> None:
    assert os.geteuid() == 0, "the task runtime tests need root (containers, netns, cgroups)"
    assert shutil.which("runc"), "runc is missing (apt-get install runc; scripts/lib.sh does)"
    assert shutil.which("ip"), "ip (iproute2) is missing"
    assert Path("/bin/busybox").is_file(), "/bin/busybox is missing (apt-get install busybox-static)"


@pytest.fixture(scope="module")
def image(berth: BerthProcess, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A busybox image built with `berth image` and pushed to Berth's registry."""
    _require_runtime()
    tmp = tmp_path_factory.mktemp("img")
    root = tmp / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "echo", "sleep", "httpd", "wget", "cat", "true", "false", "dd", "tail"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "www").mkdir()
    (root / "www" / "index.html").write_text("hello from a berth task\n")
    (root / "tmp").mkdir()
    store = tmp / "store"
    env = {**os.environ, "BERTH_IMAGE_STORE": str(store)}
    out = subprocess.run(
        [os.environ["BERTH_BIN"], "image", "build", "-t", "busybox:test",
         "--from-dir", str(root), "--entrypoint", "/bin/busybox", "--cmd", '["sh"]'],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    ref = f"{berth.env['BERTH_REGISTRY']}/test/busybox:v1"
    token = run_berth("registry", "password", "--data-dir", str(berth.data_dir)).stdout.strip()
    push = subprocess.run(
        [os.environ["BERTH_BIN"], "image", "push", "busybox:test", ref, "--username", "AWS", "--password-stdin"],
        env=env, input=token, capture_output=True, text=True, timeout=120,
    )
    assert push.returncode == 0, push.stderr
    return ref


def _taskdef(family: str, containers: list[dict], cpu: str = "256", memory: str = "512") -> dict:
    return {
        "family": family,
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": cpu,
        "memory": memory,
        "containerDefinitions": containers,
    }


def _run(ecs, td: dict, **kw) -> dict:
    arn = ecs.register_task_definition(**td)["taskDefinition"]["taskDefinitionArn"]
    out = ecs.run_task(taskDefinition=arn, **kw)
    assert out["failures"] == [], out["failures"]
    return out["tasks"][0]


def _wait(ecs, arn: str, status: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
        if t["lastStatus"] == status or (status != "STOPPED" and t["lastStatus"] == "STOPPED"):
            return t
        assert time.monotonic() < deadline, f"task {arn} stuck in {t['lastStatus']} (wanted {status}): {json.dumps(t, default=str)[:2000]}"
        time.sleep(0.3)


def _ip(task: dict) -> str:
    return next(d["value"] for d in task["attachments"][0]["details"] if d["name"] == "privateIPv4Address")


def test_aws_cli_runs_a_task_and_reads_the_exit_code(berth, aws, image):
    family = unique("exit")
    aws.ok("ecs", "register-task-definition", "--cli-input-json", json.dumps(_taskdef(family, [
        {"name": "main", "image": image, "command": ["sh", "-c", "echo out-line; echo err-line >&2; exit 7"]}])))
    run = aws.ok("ecs", "run-task", "--task-definition", family)
    arn = run["tasks"][0]["taskArn"]
    assert run["tasks"][0]["lastStatus"] == "PROVISIONING"
    aws.ok("ecs", "wait", "tasks-stopped", "--tasks", arn)
    t = aws.ok("ecs", "describe-tasks", "--tasks", arn)["tasks"][0]
    assert t["lastStatus"] == "STOPPED" and t["desiredStatus"] == "STOPPED"
    assert t["containers"][0]["exitCode"] == 7
    assert t["stopCode"] == "EssentialContainerExited"
    for k in ("pullStartedAt", "pullStoppedAt", "startedAt", "stoppedAt", "stoppingAt"):
        assert k in t, (k, t)
    assert t["containers"][0]["imageDigest"].startswith("sha256:")
    # Logs are captured and served.
    task_id = arn.rsplit("/", 1)[1]
    logs = run_berth("logs", task_id, "--data-dir", str(berth.data_dir))
    assert "out-line" in logs.stdout and "err-line" in logs.stderr, (logs.stdout, logs.stderr)


def test_http_server_task_answers_at_its_ip(berth, ecs, image):
    family = unique("web")
    t = _run(ecs, _taskdef(family, [
        {"name": "web", "image": image, "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
         "portMappings": [{"containerPort": 8080}]},
        {"name": "probe", "image": image, "essential": False,
         "command": ["sh", "-c", "sleep 1; wget -q -O- http://127.0.0.1:8080/ && echo sibling-ok"]},
    ]))
    running = _wait(ecs, t["taskArn"], "RUNNING")
    assert running["lastStatus"] == "RUNNING", running
    ip = _ip(running)
    body = None
    for _ in range(50):
        try:
            body = urllib.request.urlopen(f"http://{ip}:8080/", timeout=2).read().decode()
            break
        except OSError:
            time.sleep(0.2)
    assert body == "hello from a berth task\n", body
    # Its MAC follows from its address (02:42 + the IPv4 bytes): a later
    # task given the same address answers the host at once, through the
    # host's existing ARP entry.
    mac = "02:42:" + ":".join(f"{int(o):02x}" for o in ip.split("."))
    link = subprocess.run(["ip", "-n", f"berth-{t['taskArn'].rsplit('/', 1)[1]}", "link", "show", "eth0"],
                          capture_output=True, text=True)
    assert mac in link.stdout, (mac, link.stdout, link.stderr)
    # The sibling reached it over 127.0.0.1 (shared network namespace).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        c = {x["name"]: x for x in ecs.describe_tasks(tasks=[t["taskArn"]])["tasks"][0]["containers"]}
        if c["probe"]["lastStatus"] == "STOPPED":
            break
        time.sleep(0.3)
    assert c["probe"].get("exitCode") == 0, c["probe"]
    ecs.stop_task(task=t["taskArn"], reason="test done")
    stopped = _wait(ecs, t["taskArn"], "STOPPED")
    assert stopped["stopCode"] == "UserInitiated" and stopped["stoppedReason"] == "test done"


def test_memory_limit_kills_with_oom_reason(ecs, image):
    t = _run(ecs, _taskdef(unique("oom"), [
        {"name": "hog", "image": image, "command": ["sh", "-c", "dd if=/dev/zero bs=1M count=2000 | tail -c 1000000000 > /dev/null"]},
    ], cpu="256", memory="512"))
    stopped = _wait(ecs, t["taskArn"], "STOPPED", timeout=120)
    assert stopped["containers"][0].get("reason") == "OutOfMemoryError: Container killed due to memory usage", stopped["containers"][0]


def test_depends_on_healthy_and_health_checks(ecs, image):
    t = _run(ecs, _taskdef(unique("dep"), [
        {"name": "web", "image": image, "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
         "healthCheck": {"command": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"],
                         "interval": 5, "timeout": 2, "retries": 2, "startPeriod": 0}},
        {"name": "client", "image": image, "essential": False,
         "dependsOn": [{"containerName": "web", "condition": "HEALTHY"}],
         "command": ["sh", "-c", "wget -q -O- http://127.0.0.1:8080/"]},
    ]))
    deadline = time.monotonic() + 60
    while True:
        task = ecs.describe_tasks(tasks=[t["taskArn"]])["tasks"][0]
        c = {x["name"]: x for x in task["containers"]}
        if c["client"]["lastStatus"] == "STOPPED":
            break
        assert time.monotonic() < deadline, task
        time.sleep(0.5)
    assert c["web"]["healthStatus"] == "HEALTHY", c["web"]
    assert c["client"]["exitCode"] == 0, c["client"]
    assert task["healthStatus"] == "HEALTHY"
    ecs.stop_task(task=t["taskArn"])
    _wait(ecs, t["taskArn"], "STOPPED")


def test_stop_task_honours_stop_timeout(ecs, image):
    t = _run(ecs, _taskdef(unique("stubborn"), [
        {"name": "main", "image": image, "stopTimeout": 2,
         "command": ["sh", "-c", "trap 'echo ignoring TERM' TERM; while true; do sleep 1; done"]},
    ]))
    _wait(ecs, t["taskArn"], "RUNNING")
    ecs.stop_task(task=t["taskArn"], reason="stop it")
    stopped = _wait(ecs, t["taskArn"], "STOPPED", timeout=60)
    assert stopped["containers"][0]["exitCode"] == 137, stopped["containers"][0]
    assert stopped["stopCode"] == "UserInitiated"


def test_pull_failure_stops_the_task(ecs, berth):
    t = _run(ecs, _taskdef(unique("nopull"), [
        {"name": "main", "image": f"{berth.env['BERTH_REGISTRY']}/does/not-exist:v1"}]))
    stopped = _wait(ecs, t["taskArn"], "STOPPED")
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert stopped["stoppedReason"].startswith("CannotPullContainerError:"), stopped["stoppedReason"]


def test_missing_entrypoint_binary(ecs, image):
    t = _run(ecs, _taskdef(unique("noexe"), [
        {"name": "main", "image": image, "entryPoint": ["/no/such/binary"]}]))
    stopped = _wait(ecs, t["taskArn"], "STOPPED")
    assert stopped["containers"][0]["reason"].startswith("CannotStartContainerError:"), stopped["containers"][0]
    assert stopped["stopCode"] == "TaskFailedToStart"


def test_berth_run_streams_output_and_exits_with_the_code(berth, image):
    out = run_berth("run", "--data-dir", str(berth.data_dir), image, "--", "sh", "-c", "echo via-berth-run; exit 3", timeout=120)
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert "via-berth-run" in out.stdout


def test_tasks_cannot_reach_the_host(berth, ecs, image):
    """A task may answer the host, but not open connections to it: a server
    the host runs on all its addresses (so also on the task bridge's
    gateway address) is out of the task's reach."""
    import socket
    import threading

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 0))
    srv.listen(8)
    srv.settimeout(60)
    port = srv.getsockname()[1]
    hits = []

    def accept() -> None:
        try:
            while True:
                c, addr = srv.accept()
                hits.append(addr)
                c.close()
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    try:
        # The gateway is .1 of the host's task subnet: learn it from a first task.
        probe = _run(ecs, _taskdef(unique("probe"), [{"name": "main", "image": image, "command": ["true"]}]))
        gateway = _ip(_wait(ecs, probe["taskArn"], "STOPPED")).rsplit(".", 1)[0] + ".1"
        t = _run(ecs, _taskdef(unique("nohost"), [{"name": "main", "image": image, "command": [
            "sh", "-c", f"echo hello | busybox nc -w 3 {gateway} {port}; echo attempt-rc=$?; "
            "echo ipv6-addresses=$(cat /proc/net/if_inet6 | busybox wc -l)"]}]))
        _wait(ecs, t["taskArn"], "STOPPED", timeout=60)
        logs = run_berth("logs", t["taskArn"].rsplit("/", 1)[1], "--data-dir", str(berth.data_dir)).stdout
        # busybox nc exits 1 when the connection times out (0 when it connects).
        assert "attempt-rc=1" in logs, logs
        # No IPv6 at all inside the task: no link-local path to the host.
        assert "ipv6-addresses=0" in logs, logs
        assert hits == [], f"a task opened a connection to the host at {gateway}: {hits}"
    finally:
        srv.close()


def test_logs_are_complete_and_not_repeated(berth, ecs, image):
    """Lines shipped while the task runs are not sent again when its log file
    moves at teardown; big lines are split into batches the server takes."""
    t = _run(ecs, _taskdef(unique("lines"), [{"name": "main", "image": image, "command": [
        "sh", "-c",
        "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); [ $((i % 50)) -eq 0 ] && sleep 0.3; done; "
        "x=$(busybox head -c 3000 /dev/zero | busybox tr '\\\\0' y); j=0; "
        "while [ $j -lt 400 ]; do echo big-$j-$x; j=$((j+1)); done; echo END"]}]))
    _wait(ecs, t["taskArn"], "STOPPED", timeout=90)
    out = run_berth("logs", t["taskArn"].rsplit("/", 1)[1], "--data-dir", str(berth.data_dir)).stdout.splitlines()
    small = [l for l in out if l.startswith("line-")]
    big = [l for l in out if l.startswith("big-")]
    assert small == [f"line-{i}" for i in range(300)], (len(small), small[:3])
    assert len(big) == 400 and len(set(big)) == 400, len(big)
    assert out[-1] == "END" and out.count("END") == 1
