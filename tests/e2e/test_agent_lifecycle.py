"""The agent as a separate process: kill -9 and restart while tasks run
(none lost, none started twice), StopTask while the agent is down, and no
leftovers after many tasks. Real runc, netns and cgroups; needs root."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import boto3
import botocore.config
import pytest

from conftest import BerthProcess, parse_env_output, run_berth, unique
from test_tasks_runtime import _require_runtime, _taskdef, _wait, _ip


class Split:
    """`berth server` and `berth agent` as two processes on one data dir."""

    def __init__(self, root: Path) -> None:
        self.inst = BerthProcess(root / "data", agent=False)  # server only; reaped at session end
        self.inst.reap_agent = True  # reap() also removes the separate agent's bridge and cgroups
        self.agent_proc: subprocess.Popen | None = None
        self.agent_log = root / "agent.log"

    def start_server(self) -> None:
        # `up --no-agent` is `berth server`; the task network flag applies to both.
        self.inst.start()

    def start_agent(self, cpu: int = 2048, memory: int | None = None) -> None:
        log = open(self.agent_log, "ab")
        self.agent_proc = subprocess.Popen(
            [os.environ["BERTH_BIN"], "agent", "--data-dir", str(self.inst.data_dir),
             "--bridge", self.inst.bridge, "--cgroup-parent", self.inst.cgroup_parent,
             "--agent-cpu", str(cpu), *(["--agent-memory", str(memory)] if memory else [])],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "BERTH_LOG": "info"},
        )

    def kill9_agent(self) -> None:
        assert self.agent_proc and self.agent_proc.poll() is None, self.agent_log.read_text()
        self.agent_proc.send_signal(signal.SIGKILL)
        self.agent_proc.wait(10)

    def stop(self) -> None:
        if self.agent_proc and self.agent_proc.poll() is None:
            self.agent_proc.terminate()
            try:
                self.agent_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.agent_proc.kill()
        self.inst.stop()

    def ecs(self):
        e = self.inst.env
        return boto3.session.Session().client(
            "ecs", endpoint_url=e["AWS_ENDPOINT_URL"], aws_access_key_id=e["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=e["AWS_SECRET_ACCESS_KEY"], region_name=e["AWS_REGION"],
            config=botocore.config.Config(retries={"total_max_attempts": 1}))

    def runc_ids(self) -> list[str]:
        root = self.inst.data_dir / "agent" / "runner" / "runc"
        out = subprocess.run(["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True)
        return sorted(out.stdout.split())


def push_busybox(inst: BerthProcess, tmp: Path) -> str:
    root = tmp / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "echo", "sleep", "httpd", "wget", "cat"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "www").mkdir()
    (root / "www" / "index.html").write_text("still here\n")
    env = {**os.environ, "BERTH_IMAGE_STORE": str(tmp / "store")}
    b = os.environ["BERTH_BIN"]
    out = subprocess.run([b, "image", "build", "-t", "bb:1", "--from-dir", str(root),
                          "--entrypoint", "/bin/busybox", "--cmd", '["sh"]'], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    ref = f"{inst.env['BERTH_REGISTRY']}/test/bb:1"
    token = run_berth("registry", "password", "--data-dir", str(inst.data_dir)).stdout.strip()
    out = subprocess.run([b, "image", "push", "bb:1", ref, "--username", "AWS", "--password-stdin"],
                         env=env, input=token, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return ref


@pytest.fixture()
def split(tmp_path: Path):
    _require_runtime()
    s = Split(tmp_path)
    s.start_server()
    yield s
    s.stop()


def _get(url: str) -> str:
    for _ in range(50):
        try:
            return urllib.request.urlopen(url, timeout=2).read().decode()
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


def test_agent_kill9_and_restart_adopts_running_tasks(split, tmp_path):
    split.start_agent()
    image = push_busybox(split.inst, tmp_path)
    ecs = split.ecs()
    arn_td = ecs.register_task_definition(**_taskdef(unique("adopt"), [
        {"name": "web", "image": image, "command": ["httpd", "-f", "-p", "8080", "-h", "/www"], "stopTimeout": 2}]))["taskDefinition"]["taskDefinitionArn"]
    tasks = ecs.run_task(taskDefinition=arn_td, count=2)["tasks"]
    arns = [t["taskArn"] for t in tasks]
    ips = [_ip(_wait(ecs, a, "RUNNING")) for a in arns]
    before = split.runc_ids()
    assert len(before) == 2, before

    split.kill9_agent()
    # The tasks keep running without their agent.
    for ip in ips:
        assert _get(f"http://{ip}:8080/") == "still here\n"
    # A stop asked for while the agent is down is carried out after it returns.
    ecs.stop_task(task=arns[1], reason="stopped while the agent was away")

    split.start_agent()
    stopped = _wait(ecs, arns[1], "STOPPED", timeout=60)
    assert stopped["stopCode"] == "UserInitiated"
    assert stopped["stoppedReason"] == "stopped while the agent was away"
    # The other was adopted, not restarted: same container, still answering.
    assert _get(f"http://{ips[0]}:8080/") == "still here\n"
    t0 = ecs.describe_tasks(tasks=[arns[0]])["tasks"][0]
    assert t0["lastStatus"] == "RUNNING", t0
    deadline = time.monotonic() + 30
    while split.runc_ids() != [before[0]] and split.runc_ids() != [b for b in before if arns[0].rsplit('/', 1)[1] in b]:
        assert time.monotonic() < deadline, (split.runc_ids(), before)
        time.sleep(0.3)
    ecs.stop_task(task=arns[0])
    _wait(ecs, arns[0], "STOPPED", timeout=60)
    assert split.runc_ids() == []


def _leftovers(split: Split, task_ids: list[str]) -> dict:
    root = split.inst.data_dir / "agent" / "runner"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    veths = subprocess.run(["ip", "-o", "link", "show", "master", split.inst.bridge], capture_output=True, text=True).stdout
    mounts = [l.split()[4] for l in open("/proc/self/mountinfo") if l.split()[4].startswith(str(root))]
    cgroups = []
    for ctrl in Path("/sys/fs/cgroup").iterdir():
        p = ctrl / split.inst.cgroup_parent
        if p.is_dir():
            cgroups += [str(d) for d in p.iterdir() if d.is_dir()]
    tasks_dir = root / "tasks"
    return {
        "netns": [t for t in task_ids if f"berth-{t}" in netns],
        "veths": [l for l in veths.splitlines() if "veth" in l or "bv" in l],
        "mounts": mounts,
        "cgroups": cgroups,
        "runc": split.runc_ids(),
        "task_dirs": [p.name for p in tasks_dir.iterdir()] if tasks_dir.exists() else [],
        "shims": [l for l in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
                  if "shim run" in l and str(root) in l],
    }


def test_no_leftovers_after_fifty_tasks(split, tmp_path):
    # Declared capacity for 50 small tasks; they are short and run a few at a time.
    split.start_agent(cpu=16384, memory=32768)
    image = push_busybox(split.inst, tmp_path)
    ecs = split.ecs()
    ok = ecs.register_task_definition(**_taskdef(unique("many"), [
        {"name": "main", "image": image, "command": ["sh", "-c", "echo hi; sleep 0.2"]}]))["taskDefinition"]["taskDefinitionArn"]
    nopull = ecs.register_task_definition(**_taskdef(unique("nopull"), [
        {"name": "main", "image": f"{split.inst.env['BERTH_REGISTRY']}/missing/image:v1"}]))["taskDefinition"]["taskDefinitionArn"]
    noexe = ecs.register_task_definition(**_taskdef(unique("noexe"), [
        {"name": "main", "image": image, "entryPoint": ["/missing"]}]))["taskDefinition"]["taskDefinitionArn"]
    arns = []
    for td, count in ((ok, 10), (ok, 10), (ok, 10), (nopull, 10), (noexe, 5), (ok, 5)):
        out = ecs.run_task(taskDefinition=td, count=count)
        assert out["failures"] == [], out["failures"]
        arns += [t["taskArn"] for t in out["tasks"]]
    assert len(arns) == 50
    # An agent crash in the middle, too: once some tasks are under way.
    deadline = time.monotonic() + 60
    while True:
        ts = [t for i in range(0, len(arns), 100) for t in ecs.describe_tasks(tasks=arns[i:i + 100])["tasks"]]
        if sum(t["lastStatus"] != "PROVISIONING" for t in ts) >= 5:
            break
        assert time.monotonic() < deadline, "no task got going"
        time.sleep(0.1)
    split.kill9_agent()
    split.start_agent(cpu=16384, memory=32768)
    for a in arns:
        t = _wait(ecs, a, "STOPPED", timeout=180)
        assert t["lastStatus"] == "STOPPED", t
    ids = [a.rsplit("/", 1)[1] for a in arns]
    deadline = time.monotonic() + 30
    while True:
        left = _leftovers(split, ids)
        if not any(left.values()):
            break
        assert time.monotonic() < deadline, json.dumps(left, indent=1)
        time.sleep(0.5)


def test_adopted_task_survives_a_failed_pull(split, tmp_path):
    """After an agent restart, a running task whose image can no longer be
    pulled is adopted, not reported STOPPED (its address stays its own)."""
    split.start_agent()
    image = push_busybox(split.inst, tmp_path)
    ecs = split.ecs()
    td = ecs.register_task_definition(**_taskdef(unique("keep"), [
        {"name": "web", "image": image, "command": ["httpd", "-f", "-p", "8080", "-h", "/www"], "stopTimeout": 2}]))
    arn = ecs.run_task(taskDefinition=td["taskDefinition"]["taskDefinitionArn"])["tasks"][0]["taskArn"]
    ip = _ip(_wait(ecs, arn, "RUNNING"))
    split.kill9_agent()
    e = split.inst.env
    ecr = boto3.session.Session().client(
        "ecr", endpoint_url=e["AWS_ENDPOINT_URL"], aws_access_key_id=e["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=e["AWS_SECRET_ACCESS_KEY"], region_name=e["AWS_REGION"])
    ecr.batch_delete_image(repositoryName="test/bb", imageIds=[{"imageTag": "1"}])
    # (The manifest is always resolved from the registry, so the pull now
    # fails even though the layers are cached.)
    split.start_agent()
    # Wait until the restarted agent has adopted the task despite the failed pull.
    deadline = time.monotonic() + 60
    while "pull failed while adopting" not in split.agent_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, split.agent_log.read_text(errors="replace")[-3000:]
        time.sleep(0.1)
    t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
    assert t["lastStatus"] == "RUNNING", t
    assert _get(f"http://{ip}:8080/") == "still here\n"
    # A new task does not get the address of the one still running.
    td2 = ecs.register_task_definition(**_taskdef(unique("other"), [
        {"name": "main", "image": f"{e['BERTH_REGISTRY']}/missing/x:1"}]))
    arn2 = ecs.run_task(taskDefinition=td2["taskDefinition"]["taskDefinitionArn"])["tasks"][0]["taskArn"]
    assert _ip(ecs.describe_tasks(tasks=[arn2])["tasks"][0]) != ip
    ecs.stop_task(task=arn)
    _wait(ecs, arn, "STOPPED", timeout=60)
    _wait(ecs, arn2, "STOPPED", timeout=60)
