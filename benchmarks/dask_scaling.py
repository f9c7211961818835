"""The random-architecture experiment on two back ends, timed in one run.

Trains the same random architectures with local worker processes
(``ChildEvaluator(processes=P)``, joblib) and on a local Dask cluster of the
same size, checks that both give the same rewards, and prints both times and
their ratio::

    python benchmarks/dask_scaling.py            # 1000 architectures
    python benchmarks/dask_scaling.py --num 200 --json

Both back ends train the same groups (``plan_groups``); what differs is how a
group reaches a process and how its results come back. Each back end's start
(processes up, PyTorch imported there) is timed apart from its training: a
long search pays it once.

The cluster's task stream gives each group's training time; from those the
script predicts, with longest-first list scheduling, the speed-up of W workers
over one process, which is what N machines could reach at best.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from typing import Any

import torch

from automl_lib.child import TrainConfig
from automl_lib.data import make_two_moons
from automl_lib.distributed import DaskEvaluator, local_cluster, require_distributed
from automl_lib.evaluation import ChildEvaluator
from automl_lib.search_space import Architecture, SearchSpace

# two groups (two depths) of one epoch: enough to start every worker
WARM_UP = [Architecture(), Architecture.parse("1-relu")]
WARM_CONFIG = TrainConfig(max_epochs=1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000, help="architectures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--processes", type=int, default=2, help="local processes and Dask workers"
    )
    parser.add_argument("--max-epochs", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args()


def makespan(times: list[float], workers: int) -> float:
    """Longest group first, each to the worker that is free first."""
    free = [0.0] * workers
    for t in sorted(times, reverse=True):
        free[free.index(min(free))] += t
    return max(free)


def group_seconds(stream: list[dict[str, Any]]) -> list[float]:
    """Compute time of every ``train_group`` task in a Dask task stream."""
    return [
        sum(
            s["stop"] - s["start"]
            for s in task["startstops"]
            if s["action"] == "compute"
        )
        for task in stream
        if str(task["key"]).startswith("train_group")
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from distributed import get_task_stream

    data = make_two_moons(seed=args.seed)
    config = TrainConfig(max_epochs=args.max_epochs)
    archs = SearchSpace().sample(args.num, args.seed)

    # local worker processes (joblib's reusable pool: started once, kept)
    start = time.perf_counter()
    P = args.processes
    ChildEvaluator(data, WARM_CONFIG, args.seed, processes=P).evaluate(WARM_UP)
    local_startup = time.perf_counter() - start
    start = time.perf_counter()
    here = ChildEvaluator(data, config, args.seed, processes=P)
    local = here.evaluate(archs)
    local_seconds = time.perf_counter() - start

    # a Dask cluster of as many single-threaded worker processes
    start = time.perf_counter()
    with local_cluster(P) as client:
        DaskEvaluator(data, WARM_CONFIG, args.seed, client=client).evaluate(WARM_UP)
        dask_startup = time.perf_counter() - start
        start = time.perf_counter()
        there = DaskEvaluator(data, config, args.seed, client=client)
        with get_task_stream(client=client) as stream:
            remote = there.evaluate(archs)
        dask_seconds = time.perf_counter() - start
    times = group_seconds(stream.data)

    with_startup = (dask_startup + dask_seconds) / (local_startup + local_seconds)
    return {
        "architectures": args.num,
        "children_trained": here.num_trained,
        "groups": there.num_groups_submitted,
        "processes": P,
        "max_epochs": args.max_epochs,
        "local_startup_seconds": round(local_startup, 2),
        "local_seconds": round(local_seconds, 2),
        "dask_startup_seconds": round(dask_startup, 2),
        "dask_seconds": round(dask_seconds, 2),
        "ratio": round(dask_seconds / local_seconds, 3),
        "ratio_with_startup": round(with_startup, 3),
        "same_rewards": [r.reward for r in local] == [r.reward for r in remote],
        "group_seconds_sum": round(sum(times), 2),
        "group_seconds_max": round(max(times), 2),
        "predicted_speedup": {
            w: round(sum(times) / makespan(times, w), 2) for w in (1, 2, 4, 8, 16, 32)
        },
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    require_distributed()  # its import sets its loggers to INFO: quieten after
    logging.getLogger("distributed").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['architectures']} architectures, {result['children_trained']} "
        f"children trained in {result['groups']} groups, "
        f"{result['processes']} processes or workers"
    )
    rows = [
        ("local processes, start", result["local_startup_seconds"]),
        ("local processes, training", result["local_seconds"]),
        ("Dask cluster, start", result["dask_startup_seconds"]),
        ("Dask cluster, training", result["dask_seconds"]),
    ]
    for name, seconds in rows:
        print(f"{name:<28}{seconds:9.2f} s")
    print(f"{'ratio Dask / local':<28}{result['ratio']:9.3f}")
    print(f"{'  with both starts':<28}{result['ratio_with_startup']:9.3f}")
    print(f"{'same rewards':<28}{result['same_rewards']!s:>9}")
    print(
        f"groups on the cluster: {result['group_seconds_sum']:.2f} s of training, "
        f"the largest {result['group_seconds_max']:.2f} s"
    )
    speedups = result["predicted_speedup"].items()
    print("predicted speed-up of W workers over one process (longest first):")
    print("  " + "  ".join(f"W={w}: {x:.2f}" for w, x in speedups))


if __name__ == "__main__":  # the workers start by spawning: keep this guard
    main()
