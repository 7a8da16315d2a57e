"""Load balancers for real: services behind ELBv2 listeners and target
groups made with the AWS CLI and boto3, the data path inside `berth up`
answering at http://127.0.0.1:PORT, tasks under runc registered by IP,
health-checked, drained before they stop and replaced when they fail.

Needs root, runc and `ip netns`; these tests FAIL, never skip, when a
prerequisite is missing.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import BerthProcess, free_port, run_berth, unique
from test_services import build_and_push
from test_tasks_runtime import _require_runtime

# The task writes a random id and its service's name where httpd serves
# them, then runs httpd beside a shell that outlives it (so a killed httpd
# leaves a running task that fails its health checks).
APP = (
    "trap 'exit 0' TERM; "
    "cat /proc/sys/kernel/random/uuid > /www/id; "
    "for d in /www /www/a /www/b; do mkdir -p $d; echo ${SVC:-none} > $d/svc; cp /www/id $d/id; done; "
    "httpd -f -p 8080 -h /www & "
    "while true; do sleep 1; done"
)


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory):
    _require_runtime()
    b = BerthProcess(tmp_path_factory.mktemp("berth-lb") / "data", agent=True,
                     extra_args=["--agent-cpu", "16384"])
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def image(inst: BerthProcess, tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_and_push(inst, tmp_path_factory.mktemp("lb-image"), "lb", "ok\n", cmd=["sh", "-c", APP])


@pytest.fixture(scope="module")
def ecs(inst: BerthProcess):
    return inst.boto3_client()


@pytest.fixture(scope="module")
def elb(inst: BerthProcess):
    return inst.boto3_client("elbv2")


@pytest.fixture(scope="module")
def cli(inst: BerthProcess, aws_factory):
    return aws_factory(inst)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last: {last!r})"
        time.sleep(every)


def get(port: int, path: str = "/id", host: str | None = None, timeout: float = 10) -> tuple[int, str]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": host} if host else {})
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace").strip()
    finally:
        c.close()


def taskdef(ecs, family: str, image: str, svc: str) -> str:
    return ecs.register_task_definition(
        family=family, requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        containerDefinitions=[{
            "name": "app", "image": image, "essential": True, "stopTimeout": 2,
            "portMappings": [{"containerPort": 8080}],
            "environment": [{"name": "SVC", "value": svc}],
        }],
    )["taskDefinition"]["taskDefinitionArn"]


def front(cli, name: str, *, delay: int = 2) -> tuple[str, str, int]:
    """A load balancer with an HTTP listener on a free port forwarding to a
    new ip target group (fast health checks), all made with the AWS CLI.
    Returns (lb arn, target group arn, port)."""
    lb = cli.ok("elbv2", "create-load-balancer", "--name", name, "--type", "application",
                "--subnets", "subnet-berth")["LoadBalancers"][0]
    tg = cli.ok("elbv2", "create-target-group", "--name", name, "--protocol", "HTTP", "--port", "8080",
                "--target-type", "ip", "--vpc-id", "vpc-berth", "--health-check-path", "/id",
                "--health-check-interval-seconds", "5", "--health-check-timeout-seconds", "2",
                "--healthy-threshold-count", "2", "--unhealthy-threshold-count", "2")["TargetGroups"][0]
    cli.ok("elbv2", "modify-target-group-attributes", "--target-group-arn", tg["TargetGroupArn"],
           "--attributes", f"Key=deregistration_delay.timeout_seconds,Value={delay}")
    port = free_port()
    cli.ok("elbv2", "create-listener", "--load-balancer-arn", lb["LoadBalancerArn"], "--protocol", "HTTP",
           "--port", str(port), "--default-actions", f"Type=forward,TargetGroupArn={tg['TargetGroupArn']}")
    cli.ok("elbv2", "wait", "load-balancer-available", "--load-balancer-arns", lb["LoadBalancerArn"])
    return lb["LoadBalancerArn"], tg["TargetGroupArn"], port


def service(ecs, name: str, td: str, tg: str, count: int, **kw: Any) -> None:
    ecs.create_service(
        serviceName=name, taskDefinition=td, desiredCount=count,
        loadBalancers=[{"targetGroupArn": tg, "containerName": "app", "containerPort": 8080}],
        deploymentConfiguration={"maximumPercent": 200, "minimumHealthyPercent": 100}, **kw)


def healthy_targets(elb, tg: str) -> list[str]:
    d = elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    return sorted(t["Target"]["Id"] for t in d if t["TargetHealth"]["State"] == "healthy")


def wait_completed(ecs, name: str, timeout: float = 120) -> dict:
    def check():
        s = ecs.describe_services(services=[name])["services"][0]
        return (len(s["deployments"]) == 1 and s["deployments"][0]["rolloutState"] == "COMPLETED"
                and s["runningCount"] == s["desiredCount"]) and s
    return wait_for(f"service {name} to complete its deployment", check, timeout)


def ids_seen(port: int, n: int, path: str = "/id", host: str | None = None) -> dict[str, int]:
    seen: dict[str, int] = {}
    for _ in range(n):
        status, body = get(port, path, host)
        assert status == 200, (status, body)
        seen[body] = seen.get(body, 0) + 1
    return seen


def cleanup(ecs, elb, names: list[str], lbs: list[str]) -> None:
    for n in names:
        try:
            ecs.delete_service(service=n, force=True)
        except Exception:  # noqa: BLE001 - best effort
            pass
    for n in names:
        try:
            ecs.get_waiter("services_inactive").wait(services=[n], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        except Exception:  # noqa: BLE001
            pass
    for lb in lbs:
        elb.delete_load_balancer(LoadBalancerArn=lb)


# --------------------------------------------------------------------------


def test_three_tasks_behind_a_listener_share_the_requests(inst, ecs, elb, cli, image):
    name = unique("lb3")
    lb, tg, port = front(cli, name)
    service(ecs, name, taskdef(ecs, name, image, "a"), tg, 3)
    s = wait_completed(ecs, name)
    # The deployment completed only once the load balancer found all 3 healthy.
    ips = sorted(a["details"][[d["name"] for d in a["details"]].index("privateIPv4Address")]["value"]
                 for t in ecs.describe_tasks(tasks=ecs.list_tasks(serviceName=name)["taskArns"])["tasks"]
                 for a in t["attachments"])
    assert healthy_targets(elb, tg) == ips, (ips, elb.describe_target_health(TargetGroupArn=tg))
    # The waiter the AWS CLI users know.
    cli.ok("elbv2", "wait", "target-in-service", "--target-group-arn", tg,
           "--targets", *[f"Id={ip},Port=8080" for ip in ips])
    assert any("registered" in e["message"] and "targets in (target-group" in e["message"] for e in s["events"])
    seen = ids_seen(port, 30)
    assert len(seen) == 3, seen
    # Round robin: an even share each.
    assert sorted(seen.values()) == [10, 10, 10], seen
    # The DNS name works from this machine too (curl resolves *.localhost to loopback).
    dns = elb.describe_load_balancers(LoadBalancerArns=[lb])["LoadBalancers"][0]["DNSName"]
    assert dns.endswith(".elb.localhost"), dns
    out = subprocess.run(["curl", "-sS", "-m", "5", f"http://{dns}:{port}/id"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() in seen, out
    cleanup(ecs, elb, [name], [lb])


LOAD_LOOP = r"""
import http.client, json, sys, time, os
port, stop, out, deadline = int(sys.argv[1]), sys.argv[2], sys.argv[3], time.monotonic() + float(sys.argv[4])
ok, failures, svcs = 0, [], {}
conn = None
while not os.path.exists(stop) and time.monotonic() < deadline:
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/svc")
        r = conn.getresponse()
        body = r.read().decode().strip()
        if r.status == 200:
            ok += 1
            svcs[body] = svcs.get(body, 0) + 1
        else:
            failures.append(f"{r.status} {body[:80]}")
        if r.getheader("connection", "").lower() == "close":
            conn.close(); conn = None
    except Exception as e:
        failures.append(repr(e)); conn = None
json.dump({"ok": ok, "failures": failures, "svcs": svcs}, open(out, "w"))
"""


def test_a_rolling_deployment_under_load_loses_no_request(inst, ecs, elb, cli, image, tmp_path):
    name = unique("lbroll")
    lb, tg, port = front(cli, name, delay=2)
    service(ecs, name, taskdef(ecs, name, image, "v1"), tg, 2)
    wait_completed(ecs, name)
    stop, out = tmp_path / "stop", tmp_path / "out.json"
    # A bounded loop in a second process: at most 180 s, stopped once done.
    loop = subprocess.Popen([sys.executable, "-c", LOAD_LOOP, str(port), str(stop), str(out), "180"])
    try:
        wait_for("traffic to flow", lambda: ids_seen(port, 1, "/svc") == {"v1": 1})
        ecs.update_service(service=name, taskDefinition=taskdef(ecs, name, image, "v2"))
        wait_for("v2 to serve alone", lambda: wait_completed(ecs, name) and ids_seen(port, 10, "/svc") == {"v2": 10},
                 timeout=150)
    finally:
        stop.touch()
        loop.wait(timeout=30)
    result = json.loads(out.read_text())
    assert result["failures"] == [], result
    assert result["svcs"].get("v1", 0) > 0 and result["svcs"].get("v2", 0) > 0, result
    s = ecs.describe_services(services=[name])["services"][0]
    assert any("deregistered" in e["message"] for e in s["events"]), s["events"][:10]
    cleanup(ecs, elb, [name], [lb])


def _httpd_pid(inst: BerthProcess, task: dict) -> int:
    cid = f"{task['taskArn'].rsplit('/', 1)[1]}-app"
    root = inst.data_dir / "agent" / "runner" / "runc"
    out = subprocess.run(["runc", "--root", str(root), "state", cid], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    pid = json.loads(out.stdout)["pid"]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        if Path(f"/proc/{child}/comm").read_text().strip() == "httpd":
            return int(child)
    raise AssertionError(f"no httpd under container pid {pid}")


def test_a_task_that_stops_answering_is_taken_out_by_health_checks_and_replaced(inst, ecs, elb, cli, image):
    name = unique("lbkill")
    lb, tg, port = front(cli, name)
    service(ecs, name, taskdef(ecs, name, image, "a"), tg, 3, healthCheckGracePeriodSeconds=0)
    wait_completed(ecs, name)
    tasks = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName=name)["taskArns"])["tasks"]
    victim = tasks[0]
    victim_ip = next(d["value"] for d in victim["attachments"][0]["details"] if d["name"] == "privateIPv4Address")
    status, victim_id = get(port, "/id")  # warm
    os.kill(_httpd_pid(inst, victim), signal.SIGKILL)
    # The task still runs, but its target fails the health checks...
    def unhealthy():
        for d in elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]:
            if d["Target"]["Id"] == victim_ip and d["TargetHealth"]["State"] in ("unhealthy", "draining"):
                return d
        return None
    d = wait_for("the victim's target to fail its health checks", unhealthy, timeout=60)
    # ...and from then on no request goes to it.
    seen = ids_seen(port, 20)
    assert len(seen) == 2, seen
    # The service replaces it (ELB health check failure), back to 3 healthy.
    stopped = wait_for("the victim to be stopped",
                       lambda: (t := ecs.describe_tasks(tasks=[victim["taskArn"]])["tasks"][0])["desiredStatus"] == "STOPPED" and t)
    assert "failed ELB health checks" in stopped["stoppedReason"], stopped
    wait_for("three healthy targets again", lambda: len(healthy_targets(elb, tg)) == 3 and victim_ip not in healthy_targets(elb, tg), timeout=90)
    assert len(ids_seen(port, 30)) == 3
    cleanup(ecs, elb, [name], [lb])


def test_path_and_host_rules_route_to_two_services(inst, ecs, elb, cli, image):
    a, b = unique("lba"), unique("lbb")
    lb, tg_a, port = front(cli, a)
    tg_b = cli.ok("elbv2", "create-target-group", "--name", b, "--protocol", "HTTP", "--port", "8080",
                  "--target-type", "ip", "--health-check-path", "/id", "--health-check-interval-seconds", "5",
                  "--health-check-timeout-seconds", "2",
                  "--healthy-threshold-count", "2")["TargetGroups"][0]["TargetGroupArn"]
    listener = elb.describe_listeners(LoadBalancerArn=lb)["Listeners"][0]["ListenerArn"]
    elb.create_rule(ListenerArn=listener, Priority=10,
                    Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/b/*"]}}],
                    Actions=[{"Type": "forward", "TargetGroupArn": tg_b}])
    cli.ok("elbv2", "create-rule", "--listener-arn", listener, "--priority", "20",
           "--conditions", "Field=host-header,Values=b.example.com",
           "--actions", f"Type=forward,TargetGroupArn={tg_b}")
    elb.create_rule(ListenerArn=listener, Priority=30,
                    Conditions=[{"Field": "path-pattern", "Values": ["/teapot"]}],
                    Actions=[{"Type": "fixed-response", "FixedResponseConfig": {
                        "StatusCode": "418", "ContentType": "text/plain", "MessageBody": "short and stout"}}])
    elb.create_rule(ListenerArn=listener, Priority=40,
                    Conditions=[{"Field": "path-pattern", "Values": ["/old/*"]}],
                    Actions=[{"Type": "redirect", "RedirectConfig": {"Path": "/a/#{path}", "StatusCode": "HTTP_301"}}])
    service(ecs, a, taskdef(ecs, a, image, "a"), tg_a, 1)
    service(ecs, b, taskdef(ecs, b, image, "b"), tg_b, 1)
    wait_completed(ecs, a)
    wait_completed(ecs, b)
    assert get(port, "/svc") == (200, "a")
    assert get(port, "/a/svc") == (200, "a")
    assert get(port, "/b/svc") == (200, "b")
    assert get(port, "/svc", host="b.example.com") == (200, "b")
    assert get(port, "/svc", host="B.Example.COM:80") == (200, "b")
    assert get(port, "/teapot") == (418, "short and stout")
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/old/x?q=1")
    r = c.getresponse()
    assert r.status == 301 and r.getheader("Location").endswith(f":{port}/a/old/x?q=1"), (r.status, r.getheaders())
    c.close()
    # DescribeRules shows them in order, then the default.
    rules = elb.describe_rules(ListenerArn=listener)["Rules"]
    assert [r["Priority"] for r in rules] == ["10", "20", "30", "40", "default"]
    cleanup(ecs, elb, [a, b], [lb])
    elb.delete_target_group(TargetGroupArn=tg_b)


def test_no_healthy_target_gives_503(inst, ecs, elb, cli, image):
    name = unique("lb503")
    lb, tg, port = front(cli, name)
    status, body = get(port, "/id")
    assert status == 503 and "503" in body, (status, body)
    # A service whose task never answers on the target port: 503 too.
    ecs.create_service(serviceName=name, taskDefinition=taskdef(ecs, name, image, "x"), desiredCount=1,
                       loadBalancers=[{"targetGroupArn": tg, "containerName": "app", "containerPort": 8080}])
    elb.modify_target_group(TargetGroupArn=tg, HealthCheckPath="/nope")
    wait_for("a registered target", lambda: elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"])
    wait_for("the target to fail its health checks", lambda: any(
        d["TargetHealth"]["State"] == "unhealthy" and d["TargetHealth"].get("Reason") == "Target.ResponseCodeMismatch"
        for d in elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]), timeout=60)
    status, body = get(port, "/id")
    assert status == 503, (status, body)
    cleanup(ecs, elb, [name], [lb])


def test_berth_deploy_puts_a_load_balancer_in_front(inst, ecs, image):
    name = unique("lbdeploy")
    out = run_berth("deploy", name, "--image", image, "--port", "8080", "--health-check-path", "/id",
                    "--data-dir", str(inst.data_dir), timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    url = next(l.split(" ", 1)[1] for l in out.stdout.splitlines() if l.startswith("url: "))
    port = int(url.rsplit(":", 1)[1].strip("/"))
    assert get(port, "/svc")[0] == 200
    ls = run_berth("lb", "ls", "--data-dir", str(inst.data_dir))
    assert ls.returncode == 0 and url in ls.stdout and "1/1" in ls.stdout, ls.stdout
    # Deploying again keeps the same URL.
    out = run_berth("deploy", name, "--image", image, "--port", "8080", "--health-check-path", "/id",
                    "--data-dir", str(inst.data_dir), timeout=180)
    assert out.returncode == 0 and f"url: {url}" in out.stdout, out.stdout + out.stderr


def test_https_and_http2_listeners(inst, elb, cli, tmp_path):
    """An HTTPS listener whose certificate is read from the data dir's
    certs/ (the ACM-style ARN names the files), answering HTTP/2 (ALPN) and
    HTTP/1.1; an HTTP listener answering HTTP/2 with prior knowledge."""
    name = unique("lbtls")
    certs = inst.data_dir / "certs"
    certs.mkdir(exist_ok=True)
    out = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(certs / f"{name}.key"), "-out", str(certs / f"{name}.crt")],
        capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lb = elb.create_load_balancer(Name=name, Type="application")["LoadBalancers"][0]["LoadBalancerArn"]
    fixed = [{"Type": "fixed-response", "FixedResponseConfig": {
        "StatusCode": "200", "ContentType": "text/plain", "MessageBody": "over tls"}}]
    https_port, http_port = free_port(), free_port()
    cert = f"arn:aws:acm:{inst.region}:{inst.account}:certificate/{name}"
    elb.create_listener(LoadBalancerArn=lb, Protocol="HTTPS", Port=https_port,
                        Certificates=[{"CertificateArn": cert}], DefaultActions=fixed)
    elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=http_port, DefaultActions=fixed)

    def curl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", *args],
                              capture_output=True, text=True)

    def answers(*args: str) -> str | None:
        r = curl(*args)
        return r.stdout if r.returncode == 0 else None

    ca = str(certs / f"{name}.crt")
    assert wait_for("the HTTPS listener", lambda: answers("--cacert", ca, f"https://127.0.0.1:{https_port}/"),
                    timeout=30) == "2 200"
    assert answers("--http1.1", "--cacert", ca, f"https://127.0.0.1:{https_port}/") == "1.1 200"
    assert wait_for("the HTTP listener", lambda: answers(f"http://127.0.0.1:{http_port}/"), timeout=30) == "1.1 200"
    assert answers("--http2-prior-knowledge", f"http://127.0.0.1:{http_port}/") == "2 200"
    # A certificate that is not in the data dir is refused by the API.
    try:
        elb.create_listener(LoadBalancerArn=lb, Protocol="HTTPS", Port=free_port(),
                            Certificates=[{"CertificateArn": cert + "-missing"}], DefaultActions=fixed)
        raise AssertionError("a missing certificate was accepted")
    except elb.exceptions.CertificateNotFoundException as e:
        assert f"{name}-missing.crt" in str(e), e
    elb.delete_load_balancer(LoadBalancerArn=lb)
    # Deleting the load balancer closes its listeners.
    wait_for("the listener to close", lambda: curl(f"http://127.0.0.1:{http_port}/").returncode != 0, timeout=30)


def test_kill9_of_berth_keeps_the_load_balancer_and_its_tasks(inst, cli, image):
    """Runs last in this module (it restarts the module's Berth). After a
    kill -9 of `berth up`, the restarted one serves the same listener from
    the same tasks (adopted by the agent, not restarted; the data path
    starts from their stored health)."""
    name = unique("lbkill9")
    lb, tg, port = front(cli, name)
    ecs = inst.boto3_client()
    service(ecs, name, taskdef(ecs, name, image, "a"), tg, 2)
    wait_completed(ecs, name)
    before = set(ids_seen(port, 10))
    assert len(before) == 2, before
    inst.kill9()
    # The listener went down with the process.
    assert subprocess.run(["curl", "-sS", "-m", "2", f"http://127.0.0.1:{port}/id"],
                          capture_output=True).returncode != 0
    inst.start()
    # The same two tasks answer again.
    after = wait_for("the listener to serve again", lambda: (s := set(ids_seen_or_none(port, 10))) and s, timeout=30)
    assert after == before, (before, after)
    ecs = inst.boto3_client()
    elb = inst.boto3_client("elbv2")
    assert len(healthy_targets(elb, tg)) == 2
    cleanup(ecs, elb, [name], [lb])


def ids_seen_or_none(port: int, n: int) -> dict[str, int]:
    try:
        return ids_seen(port, n)
    except (OSError, AssertionError):
        return {}
