"""Children per second: the reference trainer against the batched trainer.

Trains one fixed set of random architectures (``SearchSpace().sample``) with
the reference trainer, one child at a time in this process on one thread, and
with the batched trainer in its default setting for this machine (one worker
process per core, started before the clock runs: a search starts them once),
then prints children per second for each and their ratio::

    python benchmarks/child_training.py              # 200 architectures
    python benchmarks/child_training.py --num 50 --json

It also reports the batched trainer in this process alone, how far the two
trainers' logits are apart after 100 steps in float64 on a subset, and how
often a float32 reward differs: between the two trainers, and for the batched
trainer between two requests that give a child different batch-mates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from automl_lib.batched import train_batch
from automl_lib.child import ChildResult, TrainConfig, build_child, train_child
from automl_lib.data import Dataset, make_two_moons
from automl_lib.search_space import Architecture, SearchSpace


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=200, help="architectures")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes of the batched trainer (default: one per core)",
    )
    parser.add_argument(
        "--subset", type=int, default=20, help="architectures of the float64 check"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args()


# two groups of one epoch: the first use of each trainer and each worker
WARM_UP = [Architecture(), Architecture.parse("1-relu")]
WARM_CONFIG = TrainConfig(max_epochs=1)


def timed(train: Callable[[], list[ChildResult]]) -> tuple[list[ChildResult], float]:
    start = time.perf_counter()
    results = train()
    return results, time.perf_counter() - start


def train_reference(
    archs: list[Architecture], data: Dataset, config: TrainConfig
) -> list[ChildResult]:
    return [train_child(a, data, config, seed=0, keep_history=False) for a in archs]


def max_logit_difference(archs: list[Architecture], data: Dataset) -> float:
    """Largest |logit| gap on the training and validation points between the
    two trainers after 100 full-batch steps in float64."""
    config = TrainConfig(max_epochs=100, patience=100, dtype="float64")
    X = torch.as_tensor(np.concatenate([data.X_train, data.X_val]), dtype=torch.float64)
    batched = train_batch(archs, data, config)
    largest = 0.0
    for arch, result in zip(archs, batched, strict=True):
        reference = train_child(arch, data, config)
        logits = []
        for weights in (result.weights, reference.weights):
            model = build_child(
                arch,
                data.num_features,
                data.num_classes,
                dtype=torch.float64,
                weights=weights,
            )
            with torch.no_grad():
                logits.append(model(X))
        largest = max(largest, float((logits[0] - logits[1]).abs().max()))
    return largest


def reward_changes(a: list[ChildResult], b: list[ChildResult]) -> tuple[float, float]:
    """Share of children whose reward differs, and the largest difference."""
    gaps = np.array([abs(x.reward - y.reward) for x, y in zip(a, b, strict=True)])
    return float(np.mean(gaps > 0)), float(gaps.max(initial=0.0))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    data, config = make_two_moons(), TrainConfig()
    archs = SearchSpace().sample(args.num, seed=args.seed)

    train_reference(WARM_UP, data, WARM_CONFIG)
    reference, reference_s = timed(lambda: train_reference(archs, data, config))
    _, start_s = timed(
        lambda: train_batch(WARM_UP, data, WARM_CONFIG, processes=args.processes)
    )
    batched, batched_s = timed(
        lambda: train_batch(archs, data, config, processes=args.processes)
    )
    in_process, in_process_s = timed(lambda: train_batch(archs, data, config))
    assert [r.reward for r in in_process] == [r.reward for r in batched]

    # the first half again, without the second half as batch-mates
    half = train_batch(archs[: args.num // 2], data, config, processes=args.processes)
    differs, largest = reward_changes(reference, batched)
    mates_differ, mates_largest = reward_changes(batched[: len(half)], half)
    epochs = sum(r.epochs_trained for r in reference)
    return {
        "num": args.num,
        "seed": args.seed,
        "reference_children_per_s": args.num / reference_s,
        "batched_children_per_s": args.num / batched_s,
        "ratio": reference_s / batched_s,
        "batched_setting": f"{args.processes} worker processes, one thread each",
        "batched_start_s": start_s,
        "batched_in_process_children_per_s": args.num / in_process_s,
        "ratio_in_process": reference_s / in_process_s,
        "reference_s": reference_s,
        "batched_s": batched_s,
        "batched_in_process_s": in_process_s,
        "mean_epochs": epochs / args.num,
        "float64_max_logit_difference": max_logit_difference(
            archs[: args.subset], data
        ),
        "float64_subset": min(args.subset, args.num),
        "float32_reward_differs_share": differs,
        "float32_largest_reward_difference": largest,
        "batchmates_reward_differs_share": mates_differ,
        "batchmates_largest_reward_difference": mates_largest,
        "peak_rss_mb_this_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        / 1024,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def main() -> None:
    args = parse_args()
    result = measure(args)
    if args.json:
        json.dump(result, sys.stdout)
        print()
        return
    print(f"{result['num']} random architectures (seed {result['seed']}), two moons")
    print(
        f"reference, one process, one thread: "
        f"{result['reference_children_per_s']:8.2f} children/s"
    )
    print(
        f"batched, {result['batched_setting']}: "
        f"{result['batched_children_per_s']:8.2f} children/s"
    )
    print(f"ratio: {result['ratio']:.1f}")
    print(f"(starting the worker processes took {result['batched_start_s']:.1f} s)")
    print(
        f"batched, this process only: "
        f"{result['batched_in_process_children_per_s']:8.2f} children/s "
        f"(ratio {result['ratio_in_process']:.1f})"
    )
    print(
        f"float64, 100 steps, {result['float64_subset']} children: largest logit "
        f"difference {result['float64_max_logit_difference']:.1e}"
    )
    print(
        f"float32 rewards that differ, reference vs batched: "
        f"{result['float32_reward_differs_share']:.1%} "
        f"(largest {result['float32_largest_reward_difference']:.3f})"
    )
    print(
        f"float32 rewards that differ, other batch-mates: "
        f"{result['batchmates_reward_differs_share']:.1%} "
        f"(largest {result['batchmates_largest_reward_difference']:.3f})"
    )


if __name__ == "__main__":
    main()
