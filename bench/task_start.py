#!/usr/bin/env python3
"""Task start latency: `berth run IMAGE -- true` end to end (RunTask,
placement, the agent's long poll, layer cache hit, sandbox with its own
netns/veth/cgroup/overlayfs, runc through the shim, exit code back) beside
plain `runc run` of the same busybox rootfs, in the same run.

    ./bench/task_start.py [--runs 10]

Needs root, runc, busybox-static and a built berth (BERTH_BIN, default the
newest of /var/tmp/berth-target/{release,debug}/berth). Prints figures;
asserts nothing. Uses its own bridge, cgroup parent and task network.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    cands = [Path(p) for p in ("/var/tmp/berth-target/release/berth", "/var/tmp/berth-target/debug/berth") if Path(p).exists()]
    berth = os.environ.get("BERTH_BIN") or (str(max(cands, key=lambda p: p.stat().st_mtime)) if cands else None)
    if not berth or os.geteuid() != 0 or not shutil.which("runc"):
        raise SystemExit("needs root, runc and a built berth")
    work = Path(tempfile.mkdtemp(prefix="berth-bench-start-"))
    data = work / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([berth, "up", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}",
                             "--bridge", "bbench0", "--cgroup-parent", "berth-bench", "--task-network", "10.250.0.0/16"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "BERTH_LOG": "warn"})
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        root = work / "rootfs"
        (root / "bin").mkdir(parents=True)
        shutil.copy("/bin/busybox", root / "bin" / "busybox")
        for a in ("sh", "true"):
            (root / "bin" / a).symlink_to("busybox")
        env = {**os.environ, "BERTH_IMAGE_STORE": str(work / "store")}
        subprocess.run([berth, "image", "build", "-t", "bb:1", "--from-dir", str(root), "--entrypoint", "/bin/busybox"],
                       env=env, check=True, capture_output=True)
        token = subprocess.run([berth, "registry", "password", "--data-dir", str(data)], capture_output=True, text=True, check=True).stdout
        ref = f"127.0.0.1:{port}/bench/bb:1"
        subprocess.run([berth, "image", "push", "bb:1", ref, "--username", "AWS", "--password-stdin"],
                       env=env, input=token, text=True, check=True, capture_output=True)
        # Warm the layer cache once (a first pull is not what is measured).
        subprocess.run([berth, "run", "--data-dir", str(data), ref, "--", "true"], check=True, capture_output=True)
        berth_times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run([berth, "run", "--data-dir", str(data), ref, "--", "true"], check=True, capture_output=True)
            berth_times.append(time.perf_counter() - t)

        # The peer: runc run of the same rootfs, no network setup.
        bundle = work / "bundle"
        bundle.mkdir()
        shutil.copytree(root, bundle / "rootfs", symlinks=True)
        subprocess.run(["runc", "spec"], cwd=bundle, check=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["/bin/busybox", "true"]
        (bundle / "config.json").write_text(json.dumps(spec))
        runc_times = []
        for i in range(args.runs):
            t = time.perf_counter()
            subprocess.run(["runc", "--root", str(work / "runc"), "run", "--bundle", str(bundle), f"bench-{i}"], check=True, capture_output=True)
            runc_times.append(time.perf_counter() - t)

        bm, rm = statistics.median(berth_times), statistics.median(runc_times)
        print(f"{args.runs} runs each, median (min..max), seconds")
        print(f"{'berth run -- true':<24}{bm:>8.3f}  ({min(berth_times):.3f}..{max(berth_times):.3f})  whole task: API, placement, agent, netns, cgroup, overlay, shim")
        print(f"{'runc run (peer)':<24}{rm:>8.3f}  ({min(runc_times):.3f}..{max(runc_times):.3f})  one container, no network")
        print(f"{'ratio berth/runc':<24}{bm / rm:>8.1f}x")
    finally:
        proc.terminate()
        proc.wait(10)
        subprocess.run(["ip", "link", "del", "bbench0"], capture_output=True)
        for ctrl in Path("/sys/fs/cgroup").iterdir():
            try:
                (ctrl / "berth-bench").rmdir()
            except OSError:
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
