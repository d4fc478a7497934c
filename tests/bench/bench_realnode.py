"""The operator as users run it, on the local cluster's real node: time from BackgroundJob
created to its container started (p50/p99), and leader failover time with two replicas.

    .venv/bin/python tests/bench/bench_realnode.py [--jobs 50] [--interval 1] [--failovers 3]

A fresh cluster with the real node (hack/cluster.sh, STOKER_REAL_NODE=1), the chart installed
with hack/local-values.yaml and 2 replicas, jobs that run the runner image's
send_welcome_email task there. "Started" is the first pod watch event that reports the
container running or terminated (client clock, like the creation time), so both ends are
measured the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes
from benchkit import Watch, percentile  # also puts tests/ on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "realnode"))
from realnode_kit import GROUP, VERSION, background_job, installed_chart, runner_task_spec

from harness import create_namespace, start_cluster, stop_cluster, wait_for


def container_started(pod: dict[str, Any]) -> bool:
    for status in pod.get("status", {}).get("containerStatuses", []):
        state = status.get("state", {})
        if "running" in state or "terminated" in state:
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between creates")
    parser.add_argument("--failovers", type=int, default=3)
    args = parser.parse_args()

    t0 = time.monotonic()
    cluster = start_cluster(f"stoker-bench-realnode-{os.getpid()}", real_node=True)
    print(f"cluster with the real node up in {time.monotonic() - t0:.0f}s", flush=True)
    try:
        release_ns, jobs_ns = (
            create_namespace(cluster, "bench-"),
            create_namespace(cluster, "jobs-"),
        )
        with installed_chart(cluster, release_ns, {"replicas": 2}) as release:
            release.wait_ready(2)
            api = kubernetes.client.CustomObjectsApi(cluster.api_client("stoker-bench"))
            core = kubernetes.client.CoreV1Api(cluster.api_client("stoker-bench"))
            created: dict[str, float] = {}
            started: dict[str, float] = {}
            lock = threading.Lock()

            def sink(kind: str, pod: dict[str, Any], at: float) -> None:
                job = pod["metadata"].get("labels", {}).get("stoker.dev/job-name")
                if job and job not in started and container_started(pod):
                    started[job] = at

            watch = Watch(lambda **kw: core.list_namespaced_pod(jobs_ns, **kw), sink, lock=lock)
            try:
                for i in range(args.jobs):
                    name = f"welcome-{i}"
                    body = background_job(
                        name,
                        runner_task_spec("send_welcome_email", {"user_id": i, "email": "b@x.io"}),
                    )
                    api.create_namespaced_custom_object(
                        GROUP, VERSION, jobs_ns, "backgroundjobs", body
                    )
                    with lock:
                        created[name] = time.monotonic()
                    time.sleep(args.interval)
                wait_for(
                    lambda: watch.check() or len(started) == args.jobs,
                    timeout=300,
                    description=f"{args.jobs} containers started",
                )
            finally:
                watch.stop()
            latency = [started[n] - created[n] for n in created]
            print(
                f"created -> container started on the real node, {len(latency)} jobs "
                f"(one every {args.interval:g}s): p50 {percentile(latency, 50):.2f}s, "
                f"p99 {percentile(latency, 99):.2f}s, max {max(latency):.2f}s",
                flush=True,
            )

            times = []
            for _ in range(args.failovers):
                leader = wait_for(release.leader, timeout=60, description="a leader")
                t = time.monotonic()
                cluster.kubectl("delete", "pod", leader, "-n", release_ns, "--wait=false")
                wait_for(
                    lambda old=leader: release.leader() not in (None, old),
                    timeout=120,
                    interval=0.1,
                    description="a new leader",
                )
                times.append(time.monotonic() - t)
                release.wait_ready(2)
            print(
                "failover (leader pod deleted -> the standby holds the Lease), 2 replicas: "
                + ", ".join(f"{t:.1f}s" for t in times),
                flush=True,
            )
    finally:
        stop_cluster(cluster)


if __name__ == "__main__":
    main()
