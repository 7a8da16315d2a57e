"""Services for real: CreateService/UpdateService/DeleteService through the
AWS CLI, boto3 and ecs-deploy against `berth up` with its real agent (runc,
network namespaces, cgroups), the service reconciler keeping desired state
true: replacement of killed tasks, scaling, rolling updates within the
minimum/maximum percentages, the circuit breaker's rollback, a server
killed with -9 in the middle of a deployment, draining, `berth deploy`.

Needs root, runc and `ip netns`; these tests FAIL, never skip, when a
prerequisite is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import botocore.exceptions
import pytest

from conftest import BerthProcess, error_of, free_port, run_berth, unique
from test_agent_lifecycle import Split
from test_tasks_runtime import _require_runtime

ECS_DEPLOY = os.path.join(os.path.dirname(sys.executable), "ecs")
# httpd as PID 1 would ignore SIGTERM (and wait out stopTimeout): a shell
# that exits on TERM runs it.
HTTPD = ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]
HEALTH = {
    "command": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1"],
    "interval": 5,
    "timeout": 2,
    "retries": 1,
    "startPeriod": 0,
}


# --------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------


def build_and_push(inst: BerthProcess, tmp: Path, tag: str, page: str,
                   cmd: list[str] | None = None) -> str:
    """A busybox image whose default command is an HTTP server on :8080
    serving `page` (or `cmd`), pushed to the instance's registry as
    test/web:TAG."""
    root = tmp / f"root-{tag}"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "echo", "sleep", "httpd", "wget", "cat", "true", "false", "cp", "mkdir"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "www").mkdir()
    (root / "www" / "index.html").write_text(page)
    (root / "tmp").mkdir()
    env = {**os.environ, "BERTH_IMAGE_STORE": str(tmp / "store")}
    b = os.environ["BERTH_BIN"]
    out = subprocess.run(
        [b, "image", "build", "-t", f"web:{tag}", "--from-dir", str(root),
         "--entrypoint", "/bin/busybox", "--cmd", json.dumps(cmd or HTTPD)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    ref = f"{inst.env['BERTH_REGISTRY']}/test/web:{tag}"
    token = run_berth("registry", "password", "--data-dir", str(inst.data_dir)).stdout.strip()
    out = subprocess.run(
        [b, "image", "push", f"web:{tag}", ref, "--username", "AWS", "--password-stdin"],
        env=env, input=token, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return ref


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory):
    """This module's own `berth up` with a real agent (room for many tasks)."""
    _require_runtime()
    b = BerthProcess(tmp_path_factory.mktemp("berth-services") / "data", agent=True,
                     extra_args=["--agent-cpu", "16384"])
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def images(inst: BerthProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("service-images")
    return {
        "v1": build_and_push(inst, tmp, "v1", "version one\n"),
        "v2": build_and_push(inst, tmp, "v2", "version two\n"),
        "missing": f"{inst.env['BERTH_REGISTRY']}/test/does-not-exist:v1",
    }


@pytest.fixture(scope="module")
def client(inst: BerthProcess):
    return inst.boto3_client()


@pytest.fixture(scope="module")
def cli(inst: BerthProcess, aws_factory):
    return aws_factory(inst)


def taskdef(family: str, image: str, *, health: bool = False, command: list[str] | None = None,
            env: dict[str, str] | None = None, container: str = "web") -> dict[str, Any]:
    c: dict[str, Any] = {"name": container, "image": image, "essential": True, "stopTimeout": 2,
                         "portMappings": [{"containerPort": 8080}]}
    if health:
        c["healthCheck"] = HEALTH
    if command:
        c["command"] = command
    if env:
        c["environment"] = [{"name": k, "value": v} for k, v in env.items()]
    return {"family": family, "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
            "cpu": "256", "memory": "512", "containerDefinitions": [c]}


def register(client, family: str, image: str, **kw: Any) -> str:
    return client.register_task_definition(**taskdef(family, image, **kw))["taskDefinition"]["taskDefinitionArn"]


def describe(client, name: str, cluster: str = "default") -> dict[str, Any]:
    out = client.describe_services(cluster=cluster, services=[name])
    assert out["services"], out["failures"]
    return out["services"][0]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last: {last!r})"
        time.sleep(every)


def wait_stable(client, name: str, timeout: int = 90, cluster: str = "default") -> dict[str, Any]:
    """boto3's services-stable waiter, polling every second."""
    client.get_waiter("services_stable").wait(
        cluster=cluster, services=[name], WaiterConfig={"Delay": 1, "MaxAttempts": timeout})
    return describe(client, name, cluster)


def wait_completed(client, name: str, timeout: float = 90, cluster: str = "default") -> dict[str, Any]:
    """Until the service has one deployment, COMPLETED (its tasks healthy)."""
    def check():
        s = describe(client, name, cluster)
        return (len(s["deployments"]) == 1 and s["deployments"][0]["rolloutState"] == "COMPLETED"
                and s["runningCount"] == s["desiredCount"]) and s
    return wait_for(f"service {name} to complete its deployment", check, timeout)


def service_tasks(client, name: str, desired: str = "RUNNING", cluster: str = "default") -> list[dict]:
    arns = client.list_tasks(cluster=cluster, serviceName=name, desiredStatus=desired)["taskArns"]
    if not arns:
        return []
    return client.describe_tasks(cluster=cluster, tasks=arns)["tasks"]


def all_tasks(client, name: str, cluster: str = "default") -> list[dict]:
    seen: dict[str, dict] = {}
    for desired in ("RUNNING", "STOPPED"):
        token = None
        arns: list[str] = []
        while True:
            kw = {"nextToken": token} if token else {}
            page = client.list_tasks(cluster=cluster, serviceName=name, desiredStatus=desired, **kw)
            arns += page["taskArns"]
            token = page.get("nextToken")
            if not token:
                break
        for i in range(0, len(arns), 100):
            for t in client.describe_tasks(cluster=cluster, tasks=arns[i:i + 100])["tasks"]:
                seen[t["taskArn"]] = t
    return list(seen.values())


def delete(client, name: str, cluster: str = "default") -> None:
    client.delete_service(cluster=cluster, service=name, force=True)
    client.get_waiter("services_inactive").wait(
        cluster=cluster, services=[name], WaiterConfig={"Delay": 1, "MaxAttempts": 90})


def messages(service: dict) -> list[str]:
    return [e["message"] for e in service["events"]]


# --------------------------------------------------------------------------
# Steady state, replacement, scaling
# --------------------------------------------------------------------------


def test_service_reaches_a_steady_state(inst, client, cli, images):
    name = unique("steady")
    family = unique("steady-td")
    register(client, family, images["v1"])
    created = cli.ok("ecs", "create-service", "--service-name", name, "--task-definition", family,
                     "--desired-count", "3", "--launch-type", "FARGATE",
                     "--network-configuration", "awsvpcConfiguration={subnets=[subnet-berth-a]}",
                     "--tags", "key=team,value=web")["service"]
    assert created["serviceArn"] == f"arn:aws:ecs:{inst.region}:{inst.account}:service/default/{name}"
    assert created["status"] == "ACTIVE" and created["desiredCount"] == 3
    assert created["launchType"] == "FARGATE" and created["schedulingStrategy"] == "REPLICA"
    assert created["deploymentController"] == {"type": "ECS"}
    assert created["deploymentConfiguration"]["maximumPercent"] == 200
    assert created["deploymentConfiguration"]["minimumHealthyPercent"] == 100
    [d] = created["deployments"]
    assert d["status"] == "PRIMARY" and d["rolloutState"] == "IN_PROGRESS"
    assert d["id"].startswith("ecs-svc/") and len(d["id"]) == len("ecs-svc/") + 19 and d["id"][8:].isdigit()

    # The AWS CLI's own waiter.
    wait = cli("ecs", "wait", "services-stable", "--services", name, timeout=120)
    assert wait.returncode == 0, str(wait)

    s = describe(client, name)
    assert s["runningCount"] == 3 and s["pendingCount"] == 0
    # The waiter may see the third task RUNNING a moment before the
    # reconciler marks the rollout COMPLETED (as with ECS itself).
    s = wait_completed(client, name)
    [d] = s["deployments"]
    assert d["rolloutState"] == "COMPLETED", d
    assert d["rolloutStateReason"] == f"ECS deployment {d['id']} completed."
    assert d["runningCount"] == 3 and d["desiredCount"] == 3 and d["failedTasks"] == 0
    assert d["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == ["subnet-berth-a"]
    msgs = messages(s)
    assert msgs[0] == f"(service {name}) has reached a steady state.", msgs
    assert f"(service {name}) (deployment {d['id']}) deployment completed." in msgs
    started = [m for m in msgs if m.startswith(f"(service {name}) has started 3 tasks: (task ")]
    assert started, msgs
    assert "tags" not in s or s["tags"] == []
    tagged = client.describe_services(services=[name], include=["TAGS"])["services"][0]
    assert tagged["tags"] == [{"key": "team", "value": "web"}]

    tasks = service_tasks(client, name)
    assert len(tasks) == 3
    for t in tasks:
        assert t["lastStatus"] == "RUNNING"
        assert t["startedBy"] == d["id"] and t["group"] == f"service:{name}"
        assert t["taskDefinitionArn"] == s["taskDefinition"]
        subnet = next(x["value"] for x in t["attachments"][0]["details"] if x["name"] == "subnetId")
        assert subnet == "subnet-berth-a"
    by_deployment = client.list_tasks(startedBy=d["id"])["taskArns"]
    assert sorted(by_deployment) == sorted(t["taskArn"] for t in tasks)

    assert f"arn:aws:ecs:{inst.region}:{inst.account}:service/default/{name}" in cli.ok(
        "ecs", "list-services")["serviceArns"]
    cluster = client.describe_clusters(clusters=["default"])["clusters"][0]
    assert cluster["activeServicesCount"] >= 1
    # Tags on the service ARN.
    assert client.list_tags_for_resource(resourceArn=s["serviceArn"])["tags"] == [{"key": "team", "value": "web"}]
    delete(client, name)


def _container_pid(inst: BerthProcess, task: dict) -> int:
    cid = f"{task['taskArn'].rsplit('/', 1)[1]}-{task['containers'][0]['name']}"
    root = inst.data_dir / "agent" / "runner" / "runc"
    out = subprocess.run(["runc", "--root", str(root), "state", cid], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["pid"]


def test_a_killed_task_is_replaced(inst, client, images):
    name = unique("replace")
    td = register(client, unique("replace-td"), images["v1"])
    client.create_service(serviceName=name, taskDefinition=td, desiredCount=2)
    s = wait_stable(client, name)
    before = {t["taskArn"] for t in service_tasks(client, name)}
    assert len(before) == 2
    victim = sorted(before)[0]
    task = client.describe_tasks(tasks=[victim])["tasks"][0]
    os.kill(_container_pid(inst, task), signal.SIGKILL)

    stopped = wait_for("the killed task to stop",
                       lambda: (t := client.describe_tasks(tasks=[victim])["tasks"][0])["lastStatus"] == "STOPPED" and t)
    assert stopped["stopCode"] == "EssentialContainerExited", stopped
    assert stopped["containers"][0]["exitCode"] == 137

    def replaced():
        now = {t["taskArn"]: t for t in service_tasks(client, name)}
        fresh = set(now) - before
        return len(now) == 2 and victim not in now and fresh and all(
            now[a]["lastStatus"] == "RUNNING" for a in now) and fresh
    fresh = wait_for("a replacement task", replaced)
    assert len(fresh) == 1
    s = wait_stable(client, name)
    assert s["runningCount"] == 2
    msgs = messages(s)
    new_id = next(iter(fresh)).rsplit("/", 1)[1]
    assert f"(service {name}) has started 1 tasks: (task {new_id})." in msgs, msgs
    assert msgs[0] == f"(service {name}) has reached a steady state."
    delete(client, name)


def test_scaling_out_and_in(client, images):
    name = unique("scale")
    td = register(client, unique("scale-td"), images["v1"])
    client.create_service(serviceName=name, taskDefinition=td, desiredCount=3)
    wait_stable(client, name)
    first = {t["taskArn"] for t in service_tasks(client, name)}
    assert len(first) == 3

    client.update_service(service=name, desiredCount=5)
    s = wait_stable(client, name)
    assert s["runningCount"] == 5 and len(s["deployments"]) == 1
    assert len(service_tasks(client, name)) == 5

    client.update_service(service=name, desiredCount=1)
    s = wait_stable(client, name)
    assert s["runningCount"] == 1 and s["desiredCount"] == 1
    left = service_tasks(client, name)
    assert len(left) == 1
    # Scale-in stops the newest tasks: the survivor is one of the first three.
    assert left[0]["taskArn"] in first
    dep = s["deployments"][0]["id"]
    stopped = wait_for("the scaled-in tasks to stop", lambda: len(
        st := [t for t in all_tasks(client, name) if t["lastStatus"] == "STOPPED"]) == 4 and st)
    for t in stopped:
        assert t["stopCode"] == "ServiceSchedulerInitiated"
        assert t["stoppedReason"] == f"Scaling activity initiated by (deployment {dep})"
    assert any(m.startswith(f"(service {name}) has stopped 4 running tasks: ") for m in messages(s))
    delete(client, name)


def test_a_task_failing_its_health_checks_is_replaced(client, images):
    name = unique("sick")
    family = unique("sick-td")
    spec = taskdef(family, images["v1"])
    spec["containerDefinitions"][0]["healthCheck"] = {**HEALTH, "command": ["CMD-SHELL", "exit 1"]}
    td = client.register_task_definition(**spec)["taskDefinition"]["taskDefinitionArn"]
    client.create_service(serviceName=name, taskDefinition=td, desiredCount=1, healthCheckGracePeriodSeconds=0)
    first = wait_for("the first task", lambda: service_tasks(client, name))[0]["taskArn"]

    def stopped_for_health():
        t = client.describe_tasks(tasks=[first])["tasks"][0]
        return t["desiredStatus"] == "STOPPED" and t
    t = wait_for("the unhealthy task to be stopped", stopped_for_health, timeout=60)
    assert t["stopCode"] == "ServiceSchedulerInitiated", t
    assert t["stoppedReason"] == "Task failed container health checks"
    assert t["healthStatus"] == "UNHEALTHY"
    replacement = wait_for("a replacement", lambda: [x for x in service_tasks(client, name) if x["taskArn"] != first])
    assert len(replacement) == 1
    msgs = messages(describe(client, name))
    assert f"(service {name}) (task {first.rsplit('/', 1)[1]}) failed container health checks." in msgs
    delete(client, name)


# --------------------------------------------------------------------------
# Deployments
# --------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Samples a service's tasks every ~200 ms: the fewest healthy RUNNING
    tasks and the most unstopped tasks seen."""

    def __init__(self, client, name: str) -> None:
        super().__init__(daemon=True)
        self.client, self.name = client, name
        self.min_healthy = 10**9
        self.max_live = 0
        self.samples = 0
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.is_set():
                tasks = all_tasks(self.client, self.name)
                healthy = [t for t in tasks if t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING"
                           and t.get("healthStatus") == "HEALTHY"]
                live = [t for t in tasks if t["lastStatus"] != "STOPPED"]
                self.min_healthy = min(self.min_healthy, len(healthy))
                self.max_live = max(self.max_live, len(live))
                self.samples += 1
                time.sleep(0.2)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def test_rolling_update_keeps_the_minimum_healthy(inst, images):
    client = inst.boto3_client()
    name = unique("roll")
    family = unique("roll-td")
    v1 = register(client, family, images["v1"], health=True)
    v2 = register(client, family, images["v2"], health=True)
    # D=3, min 50% -> 2 healthy at all times, max 150% -> at most 4 tasks.
    client.create_service(serviceName=name, taskDefinition=v1, desiredCount=3,
                          deploymentConfiguration={"minimumHealthyPercent": 50, "maximumPercent": 150})
    s = wait_completed(client, name)
    first = s["deployments"][0]["id"]
    assert all(t["healthStatus"] == "HEALTHY" for t in service_tasks(client, name))

    sampler = Sampler(inst.boto3_client(), name)
    sampler.start()
    try:
        updated = client.update_service(service=name, taskDefinition=v2)["service"]
        assert [d["status"] for d in updated["deployments"]] == ["PRIMARY", "ACTIVE"]
        assert updated["deployments"][1]["id"] == first
        second = updated["deployments"][0]["id"]
        assert updated["taskDefinition"] == v2

        def done():
            s = describe(client, name)
            return (len(s["deployments"]) == 1 and s["deployments"][0]["id"] == second
                    and s["deployments"][0]["rolloutState"] == "COMPLETED" and s["runningCount"] == 3) and s
        s = wait_for("the rolling update", done, timeout=120)
    finally:
        sampler.done.set()
        sampler.join(10)
    assert sampler.error is None, sampler.error
    assert sampler.samples >= 10, sampler.samples
    assert sampler.min_healthy >= 2, f"healthy tasks dropped to {sampler.min_healthy}"
    assert sampler.max_live <= 4, f"{sampler.max_live} tasks were not stopped at once (max 4)"
    # Both revisions served side by side at some point: a v1 task was still
    # running (not yet told to stop) after a v2 task had started. Read from
    # the tasks' own timestamps, not from the samples (which a loaded
    # machine may space out beyond the overlap).
    every = all_tasks(client, name)
    v2_started = min(t["startedAt"] for t in every if t["taskDefinitionArn"] == v2 and "startedAt" in t)
    assert any(t["taskDefinitionArn"] == v1 and t.get("stoppingAt") and t["stoppingAt"] > v2_started
               for t in every), [(t["taskDefinitionArn"], t.get("startedAt"), t.get("stoppingAt")) for t in every]
    tasks = service_tasks(client, name)
    assert len(tasks) == 3 and all(t["taskDefinitionArn"] == v2 for t in tasks)
    assert f"(service {name}) (deployment {second}) deployment completed." in messages(s)
    delete(client, name)


def test_broken_revision_trips_the_circuit_breaker_and_rolls_back(client, images):
    name = unique("breaker")
    family = unique("breaker-td")
    good = register(client, family, images["v1"])
    bad = register(client, family, images["missing"])
    client.create_service(serviceName=name, taskDefinition=good, desiredCount=2,
                          deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}})
    s = wait_stable(client, name)
    good_dep = s["deployments"][0]["id"]
    bad_dep = client.update_service(service=name, taskDefinition=bad)["service"]["deployments"][0]["id"]

    def rolled_back():
        s = describe(client, name)
        return s["deployments"][0]["id"] not in (good_dep, bad_dep) and s
    s = wait_for("the circuit breaker's rollback", rolled_back, timeout=120)
    primary = s["deployments"][0]
    assert primary["status"] == "PRIMARY" and primary["taskDefinition"] == good
    assert primary["rolloutStateReason"] == f"ECS deployment circuit breaker: rolling back to deploymentId {good_dep}."
    assert s["taskDefinition"] == good
    # The failed deployment stays (ACTIVE, FAILED) only while it has tasks.
    for d in s["deployments"]:
        if d["id"] == bad_dep:
            assert d["status"] == "ACTIVE" and d["rolloutState"] == "FAILED", d
            assert d["rolloutStateReason"] == "ECS deployment circuit breaker: tasks failed to start."
    msgs = messages(s)
    assert f"(service {name}) (deployment {bad_dep}) deployment failed: tasks failed to start." in msgs
    assert f"(service {name}) rolling back to deployment {good_dep}." in msgs

    s = wait_stable(client, name)
    [final] = s["deployments"]
    assert final["id"] == primary["id"] and final["rolloutState"] == "COMPLETED"
    assert s["runningCount"] == 2 and s["taskDefinition"] == good
    tasks = service_tasks(client, name)
    assert len(tasks) == 2 and all(t["taskDefinitionArn"] == good for t in tasks)
    failures = [t for t in all_tasks(client, name) if t["taskDefinitionArn"] == bad]
    assert len(failures) >= 3 and all(t["stopCode"] == "TaskFailedToStart" for t in failures)
    assert all(t["stoppedReason"].startswith("CannotPullContainerError:") for t in failures)
    delete(client, name)


def test_server_kill9_mid_deployment_converges_without_duplicates(tmp_path):
    _require_runtime()
    split = Split(tmp_path)
    split.inst.listen = f"127.0.0.1:{free_port()}"
    split.start_server()
    try:
        split.start_agent(cpu=8192)
        image = build_and_push(split.inst, tmp_path, "k1", "kill me\n")
        ecs = split.ecs()
        family = unique("crash-td")
        v1 = register(ecs, family, image, health=True)
        v2 = register(ecs, family, image, health=True, env={"REVISION": "2"})
        name = unique("crash")
        ecs.create_service(serviceName=name, taskDefinition=v1, desiredCount=3)
        wait_completed(ecs, name)
        dep = ecs.update_service(service=name, taskDefinition=v2)["service"]["deployments"][0]["id"]
        # Kill the control plane once the new tasks run (pulled from the
        # server's registry) but before they are HEALTHY (~5 s): the
        # deployment is in progress, the old tasks not yet replaced.
        def new_running():
            arns = ecs.list_tasks(startedBy=dep)["taskArns"]
            ts = ecs.describe_tasks(tasks=arns)["tasks"] if arns else []
            return len(ts) == 3 and all(t["lastStatus"] == "RUNNING" for t in ts)
        wait_for("the new deployment's tasks to run", new_running, timeout=60, every=0.1)
        assert describe(ecs, name)["deployments"][0]["rolloutState"] == "IN_PROGRESS"
        split.inst.kill9()
        split.inst.start()
        ecs = split.ecs()

        def converged():
            s = describe(ecs, name)
            return (len(s["deployments"]) == 1 and s["deployments"][0]["id"] == dep
                    and s["deployments"][0]["rolloutState"] == "COMPLETED" and s["runningCount"] == 3) and s
        wait_for("the deployment to finish after the restart", converged, timeout=120)
        wait_stable(ecs, name)
        tasks = all_tasks(ecs, name)
        live = [t for t in tasks if t["lastStatus"] != "STOPPED"]
        assert len(live) == 3, [(t["taskArn"], t["lastStatus"]) for t in live]
        assert all(t["taskDefinitionArn"] == v2 for t in live)
        # No duplicates: the new deployment started exactly 3 tasks, ever.
        started = [t for t in tasks if t["startedBy"] == dep]
        assert len(started) == 3, [(t["taskArn"], t["lastStatus"], t.get("stoppedReason")) for t in started]
        assert len(split.runc_ids()) == 3
        ecs.delete_service(service=name, force=True)
        ecs.get_waiter("services_inactive").wait(services=[name], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    finally:
        split.stop()


# --------------------------------------------------------------------------
# Deleting, errors
# --------------------------------------------------------------------------


def test_delete_service_drains_to_inactive(client, cli, images):
    name = unique("del")
    td = register(client, unique("del-td"), images["v1"])
    client.create_service(serviceName=name, taskDefinition=td, desiredCount=2)
    wait_stable(client, name)
    r = cli("ecs", "delete-service", "--service", name)
    assert r.returncode != 0 and "InvalidParameterException" in r.stderr, str(r)
    assert "The service cannot be stopped while it is scaled above 0." in r.stderr
    out = cli.ok("ecs", "delete-service", "--service", name, "--force")["service"]
    assert out["status"] == "DRAINING" and out["desiredCount"] == 0
    assert out["serviceArn"] not in cli.ok("ecs", "list-services")["serviceArns"]
    wait = cli("ecs", "wait", "services-inactive", "--services", name, timeout=120)
    assert wait.returncode == 0, str(wait)
    s = describe(client, name)
    assert s["status"] == "INACTIVE"
    assert all(t["lastStatus"] == "STOPPED" for t in all_tasks(client, name))
    assert service_tasks(client, name) == []

    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.update_service(service=name, desiredCount=1)
    assert error_of(e)[:2] == ("ServiceNotActiveException", 400)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_service(service=name, force=True)
    assert error_of(e)[0] == "ServiceNotFoundException"
    # The name can be used again.
    again = client.create_service(serviceName=name, taskDefinition=td, desiredCount=0)["service"]
    assert again["status"] == "ACTIVE"
    delete(client, name)


def test_delete_cluster_with_services_is_refused(client, images):
    cluster = unique("svc-cluster")
    client.create_cluster(clusterName=cluster)
    td = register(client, unique("cl-td"), images["v1"])
    name = unique("in-cluster")
    client.create_service(cluster=cluster, serviceName=name, taskDefinition=td, desiredCount=0)
    c = client.describe_clusters(clusters=[cluster])["clusters"][0]
    assert c["activeServicesCount"] == 1
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_cluster(cluster=cluster)
    code, status, msg = error_of(e)
    assert (code, status) == ("ClusterContainsServicesException", 400)
    assert "The Cluster cannot be deleted while Services are active" in msg
    client.delete_service(cluster=cluster, service=name)
    client.get_waiter("services_inactive").wait(cluster=cluster, services=[name],
                                                WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    assert client.describe_clusters(clusters=[cluster])["clusters"][0]["activeServicesCount"] == 0
    assert client.delete_cluster(cluster=cluster)["cluster"]["status"] == "INACTIVE"


def test_service_errors(inst, client, cli, images):
    td = register(client, unique("err-td"), images["v1"])
    missing = unique("nope")
    out = client.describe_services(services=[missing])
    assert out["services"] == []
    assert out["failures"] == [{"arn": f"arn:aws:ecs:{inst.region}:{inst.account}:service/default/{missing}",
                                "reason": "MISSING"}]
    # services-stable fails at once on a MISSING service.
    with pytest.raises(botocore.exceptions.WaiterError):
        client.get_waiter("services_stable").wait(services=[missing], WaiterConfig={"Delay": 1, "MaxAttempts": 3})

    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.update_service(service=missing, desiredCount=1)
    assert error_of(e)[:2] == ("ServiceNotFoundException", 400)

    r = cli("ecs", "create-service", "--service-name", unique("daemon"), "--task-definition", td,
            "--scheduling-strategy", "DAEMON")
    assert r.returncode != 0 and "InvalidParameterException" in r.stderr, str(r)
    assert "DAEMON" in r.stderr and "FARGATE" in r.stderr

    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_service(serviceName=unique("nocount"), taskDefinition=td)
    assert error_of(e)[0] == "InvalidParameterException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_service(serviceName="bad/name", taskDefinition=td, desiredCount=1)
    assert error_of(e)[0] == "InvalidParameterException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_service(cluster=unique("no-cluster"), serviceName=unique("x"), taskDefinition=td, desiredCount=1)
    assert error_of(e)[0] == "ClusterNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_service(serviceName=unique("x"), taskDefinition=unique("no-family"), desiredCount=1)
    assert error_of(e)[0] == "ClientException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_service(serviceName=unique("stuck"), taskDefinition=td, desiredCount=1,
                              deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 100})
    code, _, msg = error_of(e)
    assert code == "InvalidParameterException" and "maximumPercent" in msg
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_service(serviceName=unique("lb"), taskDefinition=td, desiredCount=1,
                              loadBalancers=[{"targetGroupArn": "arn:aws:elasticloadbalancing:x", "containerName": "web",
                                              "containerPort": 8080}])
    assert error_of(e)[0] == "InvalidParameterException"

    name = unique("dup")
    client.create_service(serviceName=name, taskDefinition=td, desiredCount=0, clientToken="tok-1")
    # The same token is idempotent; another request with the name is not.
    again = client.create_service(serviceName=name, taskDefinition=td, desiredCount=0, clientToken="tok-1")
    assert again["service"]["serviceName"] == name
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_service(serviceName=name, taskDefinition=td, desiredCount=0)
    code, _, msg = error_of(e)
    assert code == "InvalidParameterException" and "Creation of service was not idempotent" in msg

    # ListServices filters and pages.
    assert client.list_services(launchType="EC2")["serviceArns"] == []
    assert client.list_services(schedulingStrategy="DAEMON")["serviceArns"] == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.list_services(maxResults=101)
    assert error_of(e)[0] == "InvalidParameterException"
    names = {unique("page") for _ in range(3)}
    for n in names:
        client.create_service(serviceName=n, taskDefinition=td, desiredCount=0)
    pages = list(client.get_paginator("list_services").paginate(PaginationConfig={"PageSize": 2}))
    arns = [a for p in pages for a in p["serviceArns"]]
    assert len(arns) == len(set(arns)) and len(pages) >= 2
    assert {a.rsplit("/", 1)[1] for a in arns} >= names | {name}
    for n in names | {name}:
        client.delete_service(service=n)


# --------------------------------------------------------------------------
# Real tools: ecs-deploy, berth deploy
# --------------------------------------------------------------------------


def test_ecs_deploy_rolls_out_a_new_image(inst, client, cli, images):
    assert os.access(ECS_DEPLOY, os.X_OK), f"ecs-deploy is not installed ({ECS_DEPLOY}); pip install ecs-deploy"
    name = unique("ecsdeploy")
    family = unique("ecsdeploy-td")
    td = register(client, family, images["v1"])
    client.create_service(serviceName=name, taskDefinition=td, desiredCount=2)
    wait_stable(client, name)
    out = subprocess.run(
        [ECS_DEPLOY, "deploy", "default", name, "--image", "web", images["v2"], "--timeout", "120",
         "--region", inst.region],
        env=cli.env(), capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, f"stdout: {out.stdout}\nstderr: {out.stderr}"
    assert "Deployment successful" in out.stdout, out.stdout
    s = describe(client, name)
    assert s["taskDefinition"] == f"arn:aws:ecs:{inst.region}:{inst.account}:task-definition/{family}:2"
    new_td = client.describe_task_definition(taskDefinition=s["taskDefinition"])["taskDefinition"]
    assert new_td["containerDefinitions"][0]["image"] == images["v2"]
    # ecs-deploy deregisters the revision it replaced.
    assert client.describe_task_definition(taskDefinition=td)["taskDefinition"]["status"] == "INACTIVE"
    s = wait_stable(client, name)
    tasks = service_tasks(client, name)
    assert len(tasks) == 2 and all(t["containers"][0]["image"] == images["v2"] for t in tasks)
    delete(client, name)


def test_berth_deploy(inst, client, images):
    name = unique("bdeploy")
    dd = ["--data-dir", str(inst.data_dir)]
    out = run_berth("deploy", name, "--image", images["v1"], "--count", "2", "--port", "8080", *dd, timeout=120)
    assert out.returncode == 0, f"stdout: {out.stdout}\nstderr: {out.stderr}"
    assert f"service {name} created" in out.stdout
    assert "completed" in out.stdout and "has reached a steady state" in out.stdout, out.stdout
    s = describe(client, name)
    assert s["runningCount"] == 2
    assert s["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    td = client.describe_task_definition(taskDefinition=s["taskDefinition"])["taskDefinition"]
    assert td["family"] == name and td["containerDefinitions"][0]["name"] == name
    assert td["containerDefinitions"][0]["portMappings"][0]["containerPort"] == 8080

    out = run_berth("deploy", name, "--image", images["v2"], "--port", "8080", *dd, timeout=120)
    assert out.returncode == 0, f"stdout: {out.stdout}\nstderr: {out.stderr}"
    assert f"service {name} updated" in out.stdout
    tasks = wait_for("v2 tasks", lambda: (ts := service_tasks(client, name)) and len(ts) == 2 and all(
        t["containers"][0]["image"] == images["v2"] for t in ts) and ts)
    assert len(tasks) == 2

    out = run_berth("deploy", name, "--image", images["missing"], "--port", "8080", *dd, timeout=120)
    assert out.returncode == 1, f"stdout: {out.stdout}\nstderr: {out.stderr}"
    assert "failed: ECS deployment circuit breaker: tasks failed to start." in out.stderr, out.stderr
    assert "rolling back to" in out.stderr
    s = wait_stable(client, name)
    assert client.describe_task_definition(taskDefinition=s["taskDefinition"])["taskDefinition"][
        "containerDefinitions"][0]["image"] == images["v2"]
    delete(client, name)
