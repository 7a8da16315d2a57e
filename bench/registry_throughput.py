#!/usr/bin/env python3
"""Registry push/pull throughput: Berth's registry vs Debian's docker-registry.

Builds one ~100 MB image of 4 incompressible layers as an OCI layout, then,
in the same run and with the same client (skopeo), pushes it to and pulls it
from each registry on loopback, and prints MB/s side by side.

    ./bench/registry_throughput.py [--size-mb 100] [--layers 4] [--rounds 3]

Needs: a built berth (BERTH_BIN, default /var/tmp/berth-target/release/berth
or debug), skopeo, /usr/bin/docker-registry, and the AWS CLI (the test venv).
Benchmarks print figures; they assert nothing.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path


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


def put_blob(layout: Path, data: bytes) -> tuple[str, int]:
    d = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / d).write_bytes(data)
    return "sha256:" + d, len(data)


def build_layout(layout: Path, size_mb: int, layers: int) -> int:
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    per_layer = size_mb * 1024 * 1024 // layers
    descs, diff_ids, total = [], [], 0
    for i in range(layers):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tf:
            data = os.urandom(per_layer)
            info = tarfile.TarInfo(f"data/layer{i}.bin")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        tar = raw.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        gz = gzip.compress(tar, compresslevel=1, mtime=0)
        d, n = put_blob(layout, gz)
        total += n
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cd, cn = put_blob(layout, config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": descs,
    }).encode()
    md, mn = put_blob(layout, manifest)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
        "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}))
    return total


def timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    candidates = [Path(p) for p in ("/var/tmp/berth-target/release/berth", "/var/tmp/berth-target/debug/berth") if Path(p).exists()]
    berth = os.environ.get("BERTH_BIN") or (str(max(candidates, key=lambda p: p.stat().st_mtime)) if candidates else None)
    for tool in ("skopeo", "/usr/bin/docker-registry"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (apt-get install skopeo docker-registry)")
    if not berth:
        raise SystemExit("no berth binary; build it (cargo build --release -p berth) or set BERTH_BIN")
    aws = shutil.which("aws") or str(Path(sys.executable).parent / "aws")

    work = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    procs = []
    try:
        layout = work / "layout"
        total = build_layout(layout, args.size_mb, args.layers)
        mb = total / 1e6
        env = dict(os.environ)
        auth = work / "auth.json"
        env["REGISTRY_AUTH_FILE"] = str(auth)

        # Berth.
        bport = free_port()
        bdir = work / "berth"
        procs.append(subprocess.Popen([berth, "up", "--no-agent", "--data-dir", str(bdir), "--listen", f"127.0.0.1:{bport}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**env, "BERTH_LOG": "warn"}))
        wait_port(bport)
        out = subprocess.run([berth, "env", "--data-dir", str(bdir)], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            k, v = line.removeprefix("export ").split("=", 1)
            env[k] = v.strip("'")
        pw = subprocess.run([aws, "ecr", "get-login-password"], env=env, capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["skopeo", "login", "--authfile", str(auth), "--tls-verify=false", "-u", "AWS", "--password-stdin",
                        f"127.0.0.1:{bport}"], input=pw, text=True, env=env, check=True, capture_output=True)

        # docker-registry (Debian), the peer.
        dport = free_port()
        cfg = work / "registry.yml"
        cfg.write_text(f"version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {work / 'dreg'}}}}}\n"
                       f"http: {{addr: 127.0.0.1:{dport}}}\n")
        procs.append(subprocess.Popen(["/usr/bin/docker-registry", "serve", str(cfg)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(dport)

        results = {}
        for name, host in (("berth", f"127.0.0.1:{bport}"), ("docker-registry", f"127.0.0.1:{dport}")):
            push, pull = [], []
            for r in range(args.rounds):
                repo = f"{host}/bench/r{r}:bench"
                push.append(timed(["skopeo", "copy", "--authfile", str(auth), "--dest-tls-verify=false",
                                   f"oci:{layout}:bench", f"docker://{repo}"], env))
                dest = work / f"pull-{name}-{r}"
                pull.append(timed(["skopeo", "copy", "--authfile", str(auth), "--src-tls-verify=false",
                                   f"docker://{repo}", f"oci:{dest}:bench"], env))
                shutil.rmtree(dest)
            results[name] = (statistics.median(push), statistics.median(pull))

        print(f"image: {args.layers} gzip layers, {mb:.1f} MB compressed; client: skopeo; {args.rounds} rounds, median")
        print(f"{'registry':<18}{'push MB/s':>12}{'pull MB/s':>12}")
        for name, (p, q) in results.items():
            print(f"{name:<18}{mb / p:>12.1f}{mb / q:>12.1f}")
        (bp, bq), (dp, dq) = results["berth"], results["docker-registry"]
        print(f"{'berth/peer ratio':<18}{dp / bp:>12.2f}{dq / bq:>12.2f}")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
