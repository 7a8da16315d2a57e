"""Tasks through the ECS API, with a *protocol-level simulated agent*.

The agent here is a few lines of Python speaking Berth's agent protocol
(`/agent/v1/...`, SigV4 for the service `berth-agent`): it registers a host,
long-polls its assignments and reports PENDING / RUNNING / STOPPED. It runs no
containers. These tests hold the control plane to its API shapes (ECS's for
RunTask, StopTask, DescribeTasks, ListTasks and the waiters; Berth's for the
agent protocol and the logs endpoint); the real agent (`berth agent`, running
containers with runc) is tested on its own.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
from typing import Any

import botocore.auth
import botocore.awsrequest
import http.client
import pytest
from botocore.exceptions import ClientError

from conftest import AWS_CLI, REPO_ROOT, BerthProcess, error_of, fargate_taskdef, unique


# --------------------------------------------------------------------------
# The simulated agent
# --------------------------------------------------------------------------


class Resp:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    @property
    def type(self) -> str | None:
        return self.json.get("__type") if isinstance(self.json, dict) else None

    def __repr__(self) -> str:
        return f"<HTTP {self.status} {self.body[:2000]!r}>"


def signed(
    inst: BerthProcess,
    method: str,
    path: str,
    query: dict[str, Any] | None = None,
    body: Any = None,
    *,
    service: str = "berth-agent",
    timeout: float = 30,
    raw_body: bytes | None = None,
) -> Resp:
    """One SigV4-signed request (botocore's signer) to the Berth listener."""
    endpoint = inst.env["AWS_ENDPOINT_URL"]
    qs = urllib.parse.urlencode(query or {})
    url = f"{endpoint}{path}" + (f"?{qs}" if qs else "")
    data = raw_body if raw_body is not None else (b"" if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json"} if data else {}
    req = botocore.awsrequest.AWSRequest(method=method, url=url, data=data, headers=headers)
    botocore.auth.SigV4Auth(inst.credentials, service, inst.region).add_auth(req)
    u = urllib.parse.urlsplit(endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, path + (f"?{qs}" if qs else ""), body=data, headers=dict(req.headers.items()))
        r = conn.getresponse()
        return Resp(r.status, r.read())
    finally:
        conn.close()


class FakeAgent:
    """A host agent that only speaks the protocol."""

    def __init__(self, inst: BerthProcess, cpu: int, memory: int) -> None:
        self.inst = inst
        self.cpu = cpu
        self.memory = memory
        self.host_id = ""
        self.registered: dict[str, Any] = {}
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    def call(self, method: str, path: str, query=None, body=None, **kw) -> Resp:
        return signed(self.inst, method, f"/agent/v1{path}", query, body, **kw)

    def register(self) -> dict[str, Any]:
        body = {"hostname": "fake-host", "cpu": self.cpu, "memory": self.memory, "agentVersion": "fake-1"}
        if self.host_id:
            body["hostId"] = self.host_id
        r = self.call("POST", "/register", body=body)
        assert r.status == 200, r
        self.registered = r.json
        self.host_id = r.json["hostId"]
        return r.json

    def start_heartbeats(self, every: float = 3.0) -> None:
        def beat() -> None:
            while not self._stop.wait(every):
                self.call("POST", f"/hosts/{self.host_id}/heartbeat", body={"runningTasks": []})

        self._beater = threading.Thread(target=beat, daemon=True)
        self._beater.start()

    def stop(self) -> None:
        self._stop.set()

    def assignments(self, after: int = 0, wait: int = 0, timeout: float = 30) -> dict[str, Any]:
        r = self.call(
            "GET",
            f"/hosts/{self.host_id}/assignments",
            {"after": after, "waitSeconds": wait},
            timeout=timeout,
        )
        assert r.status == 200, r
        return r.json

    def report(self, task_id: str, status: str, **fields: Any) -> Resp:
        body = {"lastStatus": status, **fields}
        return self.call("POST", f"/tasks/{task_id}/state", {"hostId": self.host_id}, body)

    def run(self, task_id: str, containers: list[str]) -> None:
        """Reports a task through PENDING to RUNNING, as a real agent would."""
        now = time.time()
        r = self.report(task_id, "PENDING", pullStartedAt=now)
        assert r.status == 200, r
        r = self.report(
            task_id,
            "RUNNING",
            pullStartedAt=now,
            pullStoppedAt=now + 0.5,
            startedAt=now + 1,
            containers=[
                {"name": c, "lastStatus": "RUNNING", "imageDigest": "sha256:" + "ab" * 32, "runtimeId": f"{task_id}-{c}"}
                for c in containers
            ],
        )
        assert r.status == 200, r

    def logs(self, task_id: str, lines: list[tuple[str, str, str]]) -> Resp:
        now = time.time()
        entries = [
            {"container": c, "stream": s, "timestamp": now + i / 1000, "message": m}
            for i, (c, s, m) in enumerate(lines)
        ]
        return self.call("POST", f"/tasks/{task_id}/logs", body={"entries": entries})


def task_id(task: dict[str, Any]) -> str:
    return task["taskArn"].rsplit("/", 1)[-1]


def details(task: dict[str, Any]) -> dict[str, str]:
    [att] = task["attachments"]
    return {d["name"]: d["value"] for d in att["details"]}


def read_logs(inst: BerthProcess, tid: str, timeout: float = 30, **query: str) -> tuple[int, list[dict]]:
    r = signed(inst, "GET", f"/berth/v1/tasks/{tid}/logs", query, service="ecs", timeout=timeout)
    if r.status != 200:
        return r.status, [r.json]
    return r.status, [json.loads(line) for line in r.body.decode().splitlines() if line]


# --------------------------------------------------------------------------
# Fixtures: one Berth of this module's own, with one big host
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    # The simulated agent is the only host: no real agent beside the server.
    b = BerthProcess(tmp_path_factory.mktemp("berth-tasks") / "data", agent=False)
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def agent(inst):
    a = FakeAgent(inst, cpu=8192, memory=16384)
    a.register()
    a.start_heartbeats()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def client(inst):
    return inst.boto3_client()


@pytest.fixture(scope="module")
def cli(inst, aws_factory):
    return aws_factory(inst)


@pytest.fixture(scope="module")
def family(client):
    name = unique("tasks")
    td = fargate_taskdef(name)
    td["containerDefinitions"].append(
        {"name": "sidecar", "image": "busybox:latest", "essential": False, "memoryReservation": 64}
    )
    client.register_task_definition(**td, tags=[{"key": "from", "value": "taskdef"}])
    return name


# --------------------------------------------------------------------------
# The life of a task
# --------------------------------------------------------------------------


def test_run_wait_describe_list_stop(inst, agent, client, cli, family):
    cluster = unique("tc")
    client.create_cluster(clusterName=cluster)
    started_by = unique("job")

    out = cli.ok(
        "ecs", "run-task", "--cluster", cluster, "--task-definition", family, "--count", "2",
        "--started-by", started_by, "--launch-type", "FARGATE",
        "--network-configuration", "awsvpcConfiguration={subnets=[subnet-0abc],assignPublicIp=DISABLED}",
        "--propagate-tags", "TASK_DEFINITION", "--tags", "key=run,value=1",
    )
    assert out["failures"] == []
    tasks = out["tasks"]
    assert len(tasks) == 2
    subnet = agent.registered["subnet"]
    prefix = subnet.rsplit(".", 2)[0]  # 10.213.N
    assert subnet.startswith(f"{inst.net16}.") and subnet.endswith(".0/24")
    ips = []
    for t in tasks:
        assert t["taskArn"] == f"arn:aws:ecs:{inst.region}:{inst.account}:task/{cluster}/{task_id(t)}"
        assert len(task_id(t)) == 32
        assert t["clusterArn"] == inst.cluster_arn(cluster)
        assert t["taskDefinitionArn"] == inst.taskdef_arn(family, 1)
        assert t["lastStatus"] == "PROVISIONING"
        assert t["desiredStatus"] == "RUNNING"
        assert t["launchType"] == "FARGATE"
        assert t["capacityProviderName"] == "FARGATE"
        assert t["platformVersion"] == "1.4.0"
        assert t["group"] == f"family:{family}"
        assert t["startedBy"] == started_by
        assert t["cpu"] == "256" and t["memory"] == "512"
        assert t["ephemeralStorage"] == {"sizeInGiB": 20}
        assert {tag["key"] for tag in t["tags"]} == {"from", "run"}
        [att] = t["attachments"]
        assert att["type"] == "ElasticNetworkInterface"
        assert att["status"] == "PRECREATED"
        d = details(t)
        assert d["subnetId"] == "subnet-0abc"
        assert d["networkInterfaceId"].startswith("eni-")
        assert d["privateIPv4Address"].startswith(prefix + ".")
        assert d["privateDnsName"] == "ip-" + d["privateIPv4Address"].replace(".", "-") + ".ec2.internal"
        ips.append(d["privateIPv4Address"])
        assert [c["name"] for c in t["containers"]] == ["app", "sidecar"]
        for c in t["containers"]:
            assert c["lastStatus"] == "PENDING"
            assert c["containerArn"].startswith(
                f"arn:aws:ecs:{inst.region}:{inst.account}:container/{cluster}/{task_id(t)}/"
            )
            assert c["networkInterfaces"] == [
                {"attachmentId": att["id"], "privateIpv4Address": d["privateIPv4Address"]}
            ]
    assert len(set(ips)) == 2
    ids = [task_id(t) for t in tasks]

    # The host learns of both tasks.
    asg = agent.assignments()
    mine = {a["taskId"]: a for a in asg["tasks"] if a["taskId"] in ids}
    assert set(mine) == set(ids)
    for t in tasks:
        a = mine[task_id(t)]
        assert a["desiredStatus"] == "RUNNING"
        assert a["ip"] == details(t)["privateIPv4Address"]
        assert a["prefixLen"] == 24
        assert a["gateway"] == agent.registered["gateway"]
        assert a["cpu"] == 256 and a["memory"] == 512
        assert a["taskDefinition"]["family"] == family
        assert a["taskArn"] == t["taskArn"]

    # The tasks-running waiter succeeds once the agent reports RUNNING.
    waiter = subprocess.Popen(
        [AWS_CLI, "ecs", "wait", "tasks-running", "--cluster", cluster, "--tasks", *ids],
        env=cli.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO_ROOT),
    )
    for tid in ids:
        assert agent.report(tid, "PENDING").status == 200
    # Let the waiter's first poll see PENDING (not a terminal state) so that
    # it really waits; it polls again 6 s later.
    time.sleep(3)
    for tid in ids:
        agent.run(tid, ["app", "sidecar"])
    _, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err

    described = client.describe_tasks(cluster=cluster, tasks=ids)
    assert described["failures"] == []
    for t in described["tasks"]:
        assert t["lastStatus"] == "RUNNING"
        assert t["attachments"][0]["status"] == "ATTACHED"
        assert "startedAt" in t and "pullStartedAt" in t and "pullStoppedAt" in t
        assert t["version"] == 4  # created, PENDING, PENDING with pullStartedAt, RUNNING
        assert not t.get("tags"), "tags only with include TAGS"
        for c in t["containers"]:
            assert c["lastStatus"] == "RUNNING"
            assert c["imageDigest"] == "sha256:" + "ab" * 32
    with_tags = client.describe_tasks(cluster=cluster, tasks=[ids[0]], include=["TAGS"])["tasks"][0]
    assert {tag["key"] for tag in with_tags["tags"]} == {"from", "run"}

    c = client.describe_clusters(clusters=[cluster])["clusters"][0]
    assert (c["runningTasksCount"], c["pendingTasksCount"]) == (2, 0)

    # Tasks are taggable resources, and they hold their cluster.
    client.tag_resource(resourceArn=tasks[0]["taskArn"], tags=[{"key": "later", "value": "x"}])
    keys = {t["key"] for t in client.list_tags_for_resource(resourceArn=tasks[0]["taskArn"])["tags"]}
    assert keys == {"from", "run", "later"}
    with pytest.raises(ClientError) as e:
        client.delete_cluster(cluster=cluster)
    assert error_of(e)[:2] == ("ClusterContainsTasksException", 400)

    # ListTasks and its filters.
    listed = client.list_tasks(cluster=cluster)["taskArns"]
    assert sorted(listed) == sorted(t["taskArn"] for t in tasks)
    assert len(client.list_tasks(cluster=cluster, family=family)["taskArns"]) == 2
    assert client.list_tasks(cluster=cluster, family="other-family")["taskArns"] == []
    assert len(cli.ok("ecs", "list-tasks", "--cluster", cluster, "--started-by", started_by)["taskArns"]) == 2
    assert client.list_tasks(cluster=cluster, startedBy="someone-else")["taskArns"] == []
    assert client.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"] == []
    page = client.list_tasks(cluster=cluster, maxResults=1)
    rest = client.list_tasks(cluster=cluster, maxResults=1, nextToken=page["nextToken"])
    assert len(page["taskArns"]) == 1 and len(rest["taskArns"]) == 1
    assert page["taskArns"] != rest["taskArns"]

    # StopTask wakes the host's long poll with the new desired state.
    polled: dict[str, Any] = {}

    def poll() -> None:
        t0 = time.monotonic()
        polled["answer"] = agent.assignments(after=asg["revision"], wait=60, timeout=90)
        polled["seconds"] = time.monotonic() - t0

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)
    stopped = cli.ok(
        "ecs", "stop-task", "--cluster", cluster, "--task", tasks[0]["taskArn"], "--reason", "done with it"
    )["task"]
    assert stopped["desiredStatus"] == "STOPPED"
    assert stopped["lastStatus"] == "RUNNING"
    assert stopped["stopCode"] == "UserInitiated"
    assert stopped["stoppedReason"] == "done with it"
    assert "stoppingAt" in stopped
    poller.join(timeout=100)
    assert polled["seconds"] < 50, "the long poll was not woken by StopTask (it waited for its 60 s timeout)"
    a = {x["taskId"]: x for x in polled["answer"]["tasks"]}[ids[0]]
    assert a["desiredStatus"] == "STOPPED"
    assert a["stopReason"] == "done with it"
    assert polled["answer"]["revision"] > asg["revision"]

    # StopTask again is a no-op.
    again = client.stop_task(cluster=cluster, task=ids[0], reason="other")["task"]
    assert again["stoppedReason"] == "done with it"
    assert again["version"] == stopped["version"]

    # The agent stops it; its own stop code does not replace UserInitiated.
    r = agent.report(
        ids[0], "STOPPED", stopCode="EssentialContainerExited", stoppedReason="Essential container in task exited",
        executionStoppedAt=time.time(),
        containers=[{"name": "app", "lastStatus": "STOPPED", "exitCode": 143},
                    {"name": "sidecar", "lastStatus": "STOPPED", "exitCode": 0}],
    )
    assert r.status == 200, r
    out = cli.ok("ecs", "wait", "tasks-stopped", "--cluster", cluster, "--tasks", ids[0])
    assert out is None
    final = client.describe_tasks(cluster=cluster, tasks=[ids[0]])["tasks"][0]
    assert final["lastStatus"] == "STOPPED"
    assert final["desiredStatus"] == "STOPPED"
    assert final["stopCode"] == "UserInitiated"
    assert final["stoppedReason"] == "done with it"
    assert final["attachments"][0]["status"] == "DELETED"
    assert [c["exitCode"] for c in final["containers"]] == [143, 0]
    assert "stoppedAt" in final and "executionStoppedAt" in final

    # A stale report does not move it back.
    assert agent.report(ids[0], "RUNNING").status == 200
    assert client.describe_tasks(cluster=cluster, tasks=[ids[0]])["tasks"][0]["lastStatus"] == "STOPPED"

    # It left the host's assignments and the RUNNING listing.
    assert ids[0] not in {x["taskId"] for x in agent.assignments()["tasks"]}
    assert client.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"] == [tasks[0]["taskArn"]]
    assert client.list_tasks(cluster=cluster)["taskArns"] == [tasks[1]["taskArn"]]
    c = client.describe_clusters(clusters=[cluster])["clusters"][0]
    assert c["runningTasksCount"] == 1

    client.stop_task(cluster=cluster, task=ids[1])
    assert agent.report(ids[1], "STOPPED").status == 200
    assert client.describe_tasks(cluster=cluster, tasks=[ids[1]])["tasks"][0]["stoppedReason"] == "Task stopped by user"
    assert client.delete_cluster(cluster=cluster)["cluster"]["status"] == "INACTIVE"


def test_logs_from_the_agent_are_readable_and_followable(inst, agent, client, family):
    [t] = client.run_task(taskDefinition=family)["tasks"]
    tid = task_id(t)
    agent.run(tid, ["app", "sidecar"])
    r = agent.logs(tid, [("app", "stdout", "hello"), ("sidecar", "stderr", "warming up"), ("app", "stdout", "world")])
    assert r.status == 200, r

    status, lines = read_logs(inst, tid)
    assert status == 200
    assert [(x["container"], x["stream"], x["message"]) for x in lines] == [
        ("app", "stdout", "hello"), ("sidecar", "stderr", "warming up"), ("app", "stdout", "world")
    ]
    assert [x["seq"] for x in lines] == [1, 1, 2]
    status, only = read_logs(inst, tid, container="app")
    assert [x["message"] for x in only] == ["hello", "world"]
    status, later = read_logs(inst, tid, since=str(lines[2]["timestamp"]))
    assert [x["message"] for x in later] == ["world"]

    # follow=true streams new lines and ends once the task is STOPPED.
    followed: dict[str, Any] = {}

    def follow() -> None:
        followed["result"] = read_logs(inst, tid, timeout=120, follow="true")

    f = threading.Thread(target=follow)
    f.start()
    time.sleep(1)
    assert agent.logs(tid, [("app", "stdout", "bye")]).status == 200
    client.stop_task(task=tid)
    assert agent.report(tid, "STOPPED").status == 200
    f.join(timeout=60)
    assert not f.is_alive(), "follow did not end after the task stopped"
    status, streamed = followed["result"]
    assert status == 200
    assert [x["message"] for x in streamed] == ["hello", "warming up", "world", "bye"]

    # Errors.
    assert read_logs(inst, "0" * 32)[0] == 404
    assert read_logs(inst, tid, since="yesterday")[0] == 400
    assert read_logs(inst, tid, container="../etc")[0] == 400
    bad = signed(inst, "GET", f"/berth/v1/tasks/{tid}/logs", service="berth-agent")
    assert bad.status == 403


def test_client_token_makes_run_task_idempotent(client, agent, family):
    token = unique("tok")
    a = client.run_task(taskDefinition=family, count=2, clientToken=token)
    b = client.run_task(taskDefinition=family, count=2, clientToken=token)
    assert len(a["tasks"]) == 2
    assert [t["taskArn"] for t in a["tasks"]] == [t["taskArn"] for t in b["tasks"]]
    with pytest.raises(ClientError) as e:
        client.run_task(taskDefinition=family, count=1, clientToken=token)
    code, status, msg = error_of(e)
    assert (code, status) == ("ConflictException", 400)
    assert token in msg
    for t in a["tasks"]:
        client.stop_task(task=t["taskArn"])
        agent.report(task_id(t), "STOPPED")


def test_run_task_errors(client, cli, family):
    r = cli("ecs", "run-task", "--task-definition", family, "--count", "11")
    assert r.returncode != 0 and "InvalidParameterException" in r.stderr, str(r)
    for kwargs, code, text in [
        ({"count": 0}, "InvalidParameterException", "count 0"),
        ({"launchType": "EC2"}, "InvalidParameterException", "launch type EC2 is not supported; use FARGATE"),
        ({"launchType": "FARGATE", "capacityProviderStrategy": [{"capacityProvider": "FARGATE"}]},
         "InvalidParameterException", "launchType"),
        ({"overrides": {"cpu": "256", "memory": "4096"}}, "ClientException",
         "memory 4096 is not valid with cpu 256"),
        ({"overrides": {"containerOverrides": [{"name": "ghost"}]}}, "InvalidParameterException", "ghost"),
        ({"startedBy": "x" * 129}, "InvalidParameterException", "startedBy"),
        ({"propagateTags": "SERVICE"}, "InvalidParameterException", "SERVICE"),
        ({"cluster": unique("nocluster")}, "ClusterNotFoundException", "not found"),
        ({"taskDefinition": unique("nofamily")}, "ClientException", "does not exist"),
    ]:
        args = {"taskDefinition": family, **kwargs}
        with pytest.raises(ClientError) as e:
            client.run_task(**args)
        got, status, msg = error_of(e)
        assert (got, status) == (code, 400), (kwargs, got, msg)
        assert text in msg, (kwargs, msg)

    ec2 = unique("ec2only")
    client.register_task_definition(
        family=ec2, networkMode="bridge",
        containerDefinitions=[{"name": "a", "image": "busybox", "memory": 64}],
    )
    with pytest.raises(ClientError) as e:
        client.run_task(taskDefinition=ec2)
    code, _, msg = error_of(e)
    assert code == "ClientException" and "not compatible with FARGATE" in msg

    with pytest.raises(ClientError) as e:
        client.stop_task(task="0" * 32)
    assert error_of(e)[:2] == ("InvalidParameterException", 400)
    assert error_of(e)[2] == "The referenced task was not found."

    out = client.describe_tasks(tasks=["0" * 32, "arn:aws:ecs:us-east-1:000000000000:task/default/abc"])
    assert out["tasks"] == []
    assert [f["reason"] for f in out["failures"]] == ["MISSING", "MISSING"]
    assert out["failures"][0]["arn"].endswith("task/default/" + "0" * 32)
    with pytest.raises(ClientError) as e:
        client.describe_tasks(tasks=[])
    assert error_of(e)[0] == "InvalidParameterException"


# --------------------------------------------------------------------------
# The agent protocol itself
# --------------------------------------------------------------------------


def test_agent_protocol_errors(inst, agent, client, family):
    # Re-registering keeps the id and the subnet.
    before = dict(agent.registered)
    assert agent.register() == before

    r = signed(inst, "POST", "/agent/v1/hosts/host-nope/heartbeat", body={})
    assert (r.status, r.type) == (404, "HostNotFound"), r
    r = signed(inst, "GET", "/agent/v1/hosts/host-nope/assignments")
    assert (r.status, r.type) == (404, "HostNotFound"), r
    r = signed(inst, "POST", "/agent/v1/register", raw_body=b"{not json")
    assert (r.status, r.type) == (400, "SerializationException"), r
    r = signed(inst, "POST", "/agent/v1/register", body={"hostname": "x", "cpu": 0, "memory": 1, "agentVersion": "1"})
    assert (r.status, r.type) == (400, "InvalidParameterException"), r
    r = signed(inst, "POST", "/agent/v1/tasks/" + "0" * 32 + "/state", body={"lastStatus": "RUNNING"})
    assert (r.status, r.type) == (404, "TaskNotFound"), r
    r = signed(inst, "POST", "/agent/v1/nowhere", body={})
    assert (r.status, r.type) == (404, "UnknownOperationException"), r
    r = signed(inst, "GET", f"/agent/v1/hosts/{agent.host_id}/assignments", {"waitSeconds": "soon"})
    assert (r.status, r.type) == (400, "InvalidParameterException"), r

    # Signed for the wrong service, or not at all.
    r = signed(inst, "GET", f"/agent/v1/hosts/{agent.host_id}/assignments", service="ecs")
    assert r.status == 403 and r.type == "InvalidSignatureException", r
    r = Resp(*_unsigned(inst, f"/agent/v1/hosts/{agent.host_id}/assignments"))
    assert r.status == 403 and r.type == "MissingAuthenticationTokenException", r

    # A report naming another host, or a container the task lacks.
    other = FakeAgent(inst, cpu=128, memory=128)  # too small to be given tasks
    other.register()
    assert other.host_id != agent.host_id
    [t] = client.run_task(taskDefinition=family)["tasks"]
    tid = task_id(t)
    r = other.report(tid, "RUNNING")
    assert (r.status, r.type) == (409, "TaskNotAssigned"), r
    r = agent.report(tid, "RUNNING", containers=[{"name": "ghost", "lastStatus": "RUNNING"}])
    assert (r.status, r.type) == (400, "InvalidParameterException"), r
    r = agent.report(tid, "SLEEPING")
    assert (r.status, r.type) == (400, "SerializationException"), r
    r = agent.logs(tid, [("../x", "stdout", "no")])
    assert (r.status, r.type) == (400, "InvalidParameterException"), r
    client.stop_task(task=tid)
    assert agent.report(tid, "STOPPED").status == 200


def _unsigned(inst: BerthProcess, path: str) -> tuple[int, bytes]:
    u = urllib.parse.urlsplit(inst.env["AWS_ENDPOINT_URL"])
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Capacity: no hosts, then a small one
# --------------------------------------------------------------------------


def test_placement_failures(private_berth):
    client = private_berth.boto3_client()
    fam = unique("cap")
    client.register_task_definition(**fargate_taskdef(fam))

    out = client.run_task(taskDefinition=fam)
    assert out["tasks"] == []
    [f] = out["failures"]
    assert f["reason"] == "AGENT"
    assert f["arn"] == private_berth.taskdef_arn(fam, 1)
    assert "no host is registered" in f["detail"]

    small = FakeAgent(private_berth, cpu=4096, memory=1024)
    small.register()
    assert small.registered["subnet"] == f"{private_berth.net16}.1.0/24"
    out = client.run_task(taskDefinition=fam, count=3)
    assert len(out["tasks"]) == 2
    assert [f["reason"] for f in out["failures"]] == ["RESOURCE:MEMORY"]
    net = private_berth.net16
    assert sorted(details(t)["privateIPv4Address"] for t in out["tasks"]) == [f"{net}.1.2", f"{net}.1.3"]

    # Stopping one frees its memory and its address.
    first = task_id(out["tasks"][0])
    client.stop_task(task=first)
    assert small.report(first, "STOPPED").status == 200
    [again] = client.run_task(taskDefinition=fam)["tasks"]
    assert details(again)["privateIPv4Address"] == details(out["tasks"][0])["privateIPv4Address"]
