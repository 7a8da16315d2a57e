#!/usr/bin/env python3
"""Load balancer throughput: Berth's data path beside haproxy, in the same run,
against the same backends, with the same load generator.

    ./bench/lb_throughput.py [--connections 64] [--duration 10] [--rounds 2]
                             [--backends 3] [--lb-cpu 0] [--load-cpu 1]

Each load balancer forwards HTTP/1.1 round robin to N keep-alive backends on
loopback (crates/berth-lb/examples/backend.rs, one thread serving every port)
and adds X-Forwarded-For/-Proto/-Port; `wrk` drives it with C connections for
D seconds per run; each LB gets a warm-up run, then R measured rounds in
alternating order; the median round is printed, with the ratios berth/haproxy.

Pinning on 2 cores: the load balancer under test runs alone on --lb-cpu (Berth
with one tokio worker thread, haproxy with `nbthread 1`); wrk (one thread) and
the backends share --load-cpu. So both LBs get one whole core each and the
same load generator and backends; the LB is the bottleneck by design (it does
twice the HTTP work of a backend).

Berth's side is started by `setup_berth_lb`: `berth up` (release build),
configured with boto3 through the ELBv2 API (the backends are registered as
targets: `--lb-target-networks 127.0.0.0/8`); `--standalone` serves the same
configuration with the data path alone (`examples/serve.rs`).

Needs: wrk and haproxy (Debian), built examples
(`cargo build --release -p berth-lb --examples`; BERTH_LB_EXAMPLES or
CARGO_TARGET_DIR to find them). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROCS: list[subprocess.Popen] = []
WORK = Path(tempfile.mkdtemp(prefix="berth-bench-lb-"))
ARGS: argparse.Namespace


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_http_ok(url: str, timeout: float = 30) -> None:
    """Until the LB answers 200 (its targets are healthy)."""
    import urllib.request
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception as e:  # noqa: BLE001 - anything but 200 means "not yet"
            last = e
        time.sleep(0.1)
    dead = [f"{' '.join(map(str, p.args))}: {p.stderr.read().decode(errors='replace').strip()}"
            for p in PROCS if p.poll() is not None]
    raise SystemExit(f"{url} did not answer 200 within {timeout}s ({last}); exited: {dead or 'none'}")


def pinned(cpu: int, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if shutil.which("taskset") else cmd


def spawn(cmd: list[str], **kw) -> subprocess.Popen:
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    PROCS.append(p)
    return p


def examples_dir() -> Path:
    if os.environ.get("BERTH_LB_EXAMPLES"):
        return Path(os.environ["BERTH_LB_EXAMPLES"])
    for target in (os.environ.get("CARGO_TARGET_DIR"), "/var/tmp/berth-target-lb", "/var/tmp/berth-target",
                   str(Path(__file__).resolve().parent.parent / "target")):
        if target and (Path(target) / "release/examples/serve").exists():
            return Path(target) / "release/examples"
    raise SystemExit("no built examples; run: cargo build --release -p berth-lb --examples "
                     "(or set BERTH_LB_EXAMPLES to the folder holding serve and backend)")


def start_backends(n: int) -> list[int]:
    ports = [free_port() for _ in range(n)]
    spawn(pinned(ARGS.load_cpu, [str(examples_dir() / "backend"), *[f"127.0.0.1:{p}" for p in ports]]))
    for p in ports:
        wait_port(p)
    return ports


# ---------------------------------------------------------------------------
# Berth's side. THE SWITCH: today `setup_berth_lb` serves a DataPlaneConfig
# with the standalone runner; with --via-api it goes through `berth up` and
# the ELBv2 API with boto3 (the product path, once the API is merged).
# ---------------------------------------------------------------------------

TG_ARN = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/bench/0123456789abcdef"
LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/bench/0123456789abcdef"


def setup_berth_lb(backends: list[int]) -> str:
    if ARGS.via_api:
        return setup_berth_lb_via_api(backends)
    port = free_port()
    forward = {"order": None, "kind": {"type": "forward", "target_groups": [{"targetGroupArn": TG_ARN, "weight": 1}],
                                       "forward_config": False, "stickiness_seconds": None}}
    cfg = {
        "listeners": {str(port): {
            "arn": f"{LB_ARN}/00000000000000aa", "lbName": "bench", "port": port, "protocol": "HTTP",
            "certificates": [], "idleTimeoutMs": 60000, "http2": True,
            "rules": [{"priority": None, "conditions": [], "actions": [forward]}],
        }},
        "targetGroups": {TG_ARN: {
            "arn": TG_ARN, "name": "bench", "protocol": "HTTP", "protocolVersion": "HTTP1",
            "algorithm": "round_robin", "responseTimeoutMs": 60000,
            "healthCheck": {"enabled": True, "protocol": "HTTP", "port": None, "path": "/health",
                            "intervalMs": 5000, "timeoutMs": 2000, "healthyThreshold": 2,
                            "unhealthyThreshold": 2, "matcher": "200"},
            # Stored healthy: serves at once (health checks go on every 5 s).
            "targets": [{"ip": "127.0.0.1", "port": p, "draining": False, "registered": 0,
                         "lastHealth": "healthy"} for p in backends],
        }},
    }
    path = WORK / "dataplane.json"
    path.write_text(json.dumps(cfg, indent=1))
    cmd = pinned(ARGS.lb_cpu, [str(examples_dir() / "serve"), str(path), "--threads", str(ARGS.lb_threads)])
    print("berth:   ", " ".join(cmd))
    spawn(cmd, env={**os.environ, "BERTH_LOG": "warn"})
    url = f"http://127.0.0.1:{port}/"
    wait_http_ok(url)
    return url


def setup_berth_lb_via_api(backends: list[int]) -> str:
    """The product path (the default): `berth up` + ELBv2 with boto3. The
    whole `berth up` is pinned to --lb-cpu: its data path shares the
    process with the API."""
    import boto3  # the test venv has it
    cands = [Path(p) for p in ("/var/tmp/berth-target/release/berth", "/var/tmp/berth-target-lb/release/berth")
             if Path(p).exists()]
    berth = os.environ.get("BERTH_BIN") or (str(max(cands, key=lambda p: p.stat().st_mtime)) if cands else None)
    if not berth:
        raise SystemExit("no berth binary; build it (cargo build --release -p berth) or set BERTH_BIN")
    api = free_port()
    data = WORK / "berth"
    # The backends are on loopback: allow them as targets (by default only
    # the task network is).
    spawn(pinned(ARGS.lb_cpu, [berth, "up", "--no-agent", "--data-dir", str(data), "--listen", f"127.0.0.1:{api}",
                               "--lb-target-networks", "127.0.0.0/8"]),
          env={**os.environ, "BERTH_LOG": "warn"})
    wait_port(api)
    env = {}
    out = subprocess.run([berth, "env", "--data-dir", str(data)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        k, v = line.removeprefix("export ").split("=", 1)
        env[k] = v.strip("'")
    elb = boto3.client("elbv2", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env.get("AWS_REGION", "us-east-1"),
                       aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    lb = elb.create_load_balancer(Name="bench", Subnets=["subnet-bench"])["LoadBalancers"][0]
    tg = elb.create_target_group(Name="bench", Protocol="HTTP", Port=80, VpcId="vpc-bench", TargetType="ip",
                                 HealthCheckPath="/health", HealthCheckIntervalSeconds=5,
                                 HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2)["TargetGroups"][0]
    elb.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": "127.0.0.1", "Port": p} for p in backends])
    port = free_port()
    elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])
    elb.get_waiter("target_in_service").wait(TargetGroupArn=tg["TargetGroupArn"],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    url = f"http://127.0.0.1:{port}/"
    wait_http_ok(url)
    return url


# ---------------------------------------------------------------------------
# The peer.
# ---------------------------------------------------------------------------

def setup_haproxy(backends: list[int]) -> str:
    port = free_port()
    servers = "\n".join(f"  server s{i} 127.0.0.1:{p} check inter 5s" for i, p in enumerate(backends))
    cfg = WORK / "haproxy.cfg"
    cfg.write_text(f"""global
  nbthread {ARGS.lb_threads}
  maxconn 4096
defaults
  mode http
  timeout connect 10s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option http-keep-alive
frontend bench
  bind 127.0.0.1:{port}
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Port %[dst_port]
  default_backend targets
backend targets
  balance roundrobin
  http-reuse always
  option httpchk GET /health
{servers}
""")
    cmd = pinned(ARGS.lb_cpu, ["haproxy", "-db", "-f", str(cfg)])
    print("haproxy: ", " ".join(cmd))
    spawn(cmd)
    url = f"http://127.0.0.1:{port}/"
    wait_http_ok(url)
    return url


# ---------------------------------------------------------------------------
# Load.
# ---------------------------------------------------------------------------

def to_ms(v: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", v)
    if not m:
        raise ValueError(v)
    x = float(m.group(1))
    return {"us": x / 1000, "ms": x, "s": x * 1000}[m.group(2)]


def wrk(url: str, duration: int) -> dict:
    cmd = pinned(ARGS.load_cpu, ["wrk", "-t1", f"-c{ARGS.connections}", f"-d{duration}s", "--latency", url])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:(.*)", out)
    return {"rps": rps, "p50": to_ms(lat["50"]), "p99": to_ms(lat["99"]),
            "non2xx": int(bad.group(1)) if bad else 0, "errors": errs.group(1).strip() if errs else "",
            "cmd": " ".join(cmd)}


def main() -> None:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--backends", type=int, default=3)
    ap.add_argument("--lb-cpu", type=int, default=0, help="the core the load balancer under test runs on")
    ap.add_argument("--load-cpu", type=int, default=1, help="the core wrk and the backends share")
    ap.add_argument("--lb-threads", type=int, default=1, help="Berth's tokio workers and haproxy's nbthread")
    ap.add_argument("--standalone", dest="via_api", action="store_false",
                    help="Berth's data path alone (examples/serve.rs) instead of `berth up` + ELBv2 (boto3)")
    ARGS = ap.parse_args()
    if ARGS.via_api:
        try:
            import boto3  # noqa: F401
        except ImportError:
            venv = Path(os.environ.get("BERTH_VENV", "/var/tmp/berth-venv")) / "bin" / "python"
            if not venv.exists():
                raise SystemExit("boto3 is missing: run ./scripts/test once (it makes the venv) or pass --standalone")
            os.execv(str(venv), [str(venv), *sys.argv])
    for tool in ("wrk", "haproxy"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (apt-get install wrk haproxy, or scripts/lib.sh's ensure_packages)")
    try:
        backends = start_backends(ARGS.backends)
        print(f"backends: {ARGS.backends} on 127.0.0.1:{','.join(map(str, backends))} (examples/backend, cpu {ARGS.load_cpu})")
        urls = {"berth": setup_berth_lb(backends), "haproxy": setup_haproxy(backends)}
        direct = f"http://127.0.0.1:{backends[0]}/"
        load = " ".join(pinned(ARGS.load_cpu, ["wrk", "-t1", f"-c{ARGS.connections}", f"-d{ARGS.duration}s", "--latency", "URL"]))
        print(f"load:     {load}  (after a 3 s warm-up per LB)")
        for url in urls.values():
            wrk(url, 3)
        runs: dict[str, list[dict]] = {name: [] for name in urls}
        for r in range(ARGS.rounds):
            order = list(urls) if r % 2 == 0 else list(reversed(urls))
            for name in order:
                res = wrk(urls[name], ARGS.duration)
                runs[name].append(res)
                print(f"  round {r + 1} {name:<8} {res['rps']:>10.0f} req/s  p50 {res['p50']:.2f} ms  "
                      f"p99 {res['p99']:.2f} ms{'  non-2xx ' + str(res['non2xx']) if res['non2xx'] else ''}"
                      f"{'  socket errors' + res['errors'] if res['errors'] else ''}")
        base = wrk(direct, ARGS.duration)

        def med(name: str, key: str) -> float:
            return statistics.median(x[key] for x in runs[name])

        print(f"\n{ARGS.connections} connections, {ARGS.duration} s per run, median of {ARGS.rounds} rounds; "
              f"LB on cpu {ARGS.lb_cpu} ({ARGS.lb_threads} thread), wrk + backends on cpu {ARGS.load_cpu}")
        print(f"{'':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
        for name in urls:
            print(f"{name:<22}{med(name, 'rps'):>10.0f}{med(name, 'p50'):>10.2f}{med(name, 'p99'):>10.2f}")
        print(f"{'ratio berth/haproxy':<22}{med('berth', 'rps') / med('haproxy', 'rps'):>10.2f}"
              f"{med('berth', 'p50') / med('haproxy', 'p50'):>10.2f}{med('berth', 'p99') / med('haproxy', 'p99'):>10.2f}")
        print(f"{'(one backend direct)':<22}{base['rps']:>10.0f}{base['p50']:>10.2f}{base['p99']:>10.2f}")
    finally:
        for p in PROCS:
            p.terminate()
        for p in PROCS:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
