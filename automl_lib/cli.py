"""Command line: ``python -m automl_lib search`` and ``python -m automl_lib random``.

This is the only module that prints. Bad values get a one-line error naming
the option and the value, and exit status 2, before any training starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad command-line value, reported without a traceback."""


def _common_options(parser: argparse.ArgumentParser) -> None:
    space = parser.add_argument_group("search space")
    space.add_argument(
        "--units",
        nargs="+",
        default=["1", "2", "4", "8", "16", "32"],
        metavar="N",
        help="unit counts a hidden layer may have (default: 1 2 4 8 16 32)",
    )
    space.add_argument(
        "--activations",
        nargs="+",
        default=["relu", "tanh"],
        metavar="NAME",
        help="activations a hidden layer may use: relu, tanh, sigmoid, elu "
        "(default: relu tanh)",
    )
    space.add_argument(
        "--max-layers",
        default="5",
        metavar="N",
        help="most hidden layers a child may have (default: 5)",
    )
    child = parser.add_argument_group("child training")
    child.add_argument(
        "--dataset",
        default="moons",
        choices=["moons", "circles", "digits"],
        help="data set: two moons (1000 points, noise 0.2), circles or digits "
        "(default: moons)",
    )
    child.add_argument(
        "--max-epochs",
        default="1000",
        metavar="N",
        help="full-batch Adam steps per child at most (default: 1000)",
    )
    child.add_argument(
        "--patience",
        default="50",
        metavar="N",
        help="stop a child after N epochs without a better validation accuracy "
        "(default: 50)",
    )
    child.add_argument(
        "--child-lr",
        default="0.01",
        metavar="LR",
        help="Adam learning rate of every child (default: 0.01)",
    )
    child.add_argument(
        "--reward-exponent",
        default="3",
        metavar="P",
        help="reward = validation accuracy ** P (default: 3)",
    )
    child.add_argument(
        "--reward-rule",
        default="best",
        choices=["best", "last5"],
        help="'best': accuracy of the kept best epoch; 'last5': the best of the "
        "last five epochs trained, the report's literal rule (default: best)",
    )
    child.add_argument(
        "--trainer",
        default="batched",
        choices=["batched", "reference"],
        help="train children together (batched) or one at a time with autograd "
        "(reference) (default: batched)",
    )
    child.add_argument(
        "--processes",
        default=None,
        metavar="N",
        help="local worker processes that train children (default: all cores)",
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--seed", default="0", metavar="S", help="random seed (default: 0)"
    )
    run.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="run folder to write (default: runs/<command>-seed<S>)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run folder if it already exists",
    )
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m automl_lib",
        description="Neural architecture search by REINFORCE on scikit-learn's "
        "two moons, and the random-architecture experiment.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    search = commands.add_parser(
        "search",
        help="run the REINFORCE architecture search",
        description="Train an LSTM controller with REINFORCE to design classifiers; "
        "score the best child once on the test split; write a run folder.",
    )
    search.add_argument(
        "--episodes",
        default="500",
        metavar="N",
        help="controller updates (default: 500)",
    )
    search.add_argument(
        "--batch-size",
        default="15",
        metavar="M",
        help="architectures sampled per episode (default: 15)",
    )
    search.add_argument(
        "--lr",
        default="0.01",
        metavar="LR",
        help="Adam learning rate of the controller (default: 0.01)",
    )
    search.add_argument(
        "--entropy-weight",
        default="0.01",
        metavar="W",
        help="weight of the entropy bonus (default: 0.01)",
    )
    search.add_argument(
        "--baseline-decay",
        default="0.9",
        metavar="D",
        help="decay of the moving-average baseline (default: 0.9)",
    )
    _common_options(search)

    random = commands.add_parser(
        "random",
        help="evaluate random architectures (the 5000-architecture histogram)",
        description="Sample architectures (depth uniform, then each layer uniform), "
        "train each under the search's protocol, write a run folder.",
    )
    random.add_argument(
        "--num",
        default="5000",
        metavar="N",
        help="random architectures to evaluate (default: 5000)",
    )
    _common_options(random)
    return parser


def _int(args: argparse.Namespace, name: str, minimum: int = 1) -> int:
    text = getattr(args, name)
    option = "--" + name.replace("_", "-")
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{option} must be an integer, got {text!r}") from None
    if value < minimum:
        raise UsageError(f"{option} must be >= {minimum}, got {value}")
    return value


def _float(args: argparse.Namespace, name: str, positive: bool = False) -> float:
    text = getattr(args, name)
    option = "--" + name.replace("_", "-")
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{option} must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise UsageError(f"{option} must be a finite number, got {text!r}")
    if positive and value <= 0:
        raise UsageError(f"{option} must be a positive number, got {text!r}")
    return value


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Check every option before anything is trained; return library objects."""
    from .child import TrainConfig
    from .search_space import SearchSpace

    units = []
    for text in args.units:
        try:
            units.append(int(text))
        except ValueError:
            raise UsageError(f"--units must be integers, got {text!r}") from None
    try:
        space = SearchSpace(
            tuple(units), tuple(args.activations), _int(args, "max_layers")
        )
    except (TypeError, ValueError) as error:
        raise UsageError(_option_message(str(error))) from None
    train = TrainConfig(
        max_epochs=_int(args, "max_epochs"),
        lr=_float(args, "child_lr", positive=True),
        patience=_int(args, "patience"),
        reward_exponent=_float(args, "reward_exponent"),
        reward_rule=args.reward_rule,
    )
    processes = os.cpu_count() or 1
    if args.processes is not None:
        processes = _int(args, "processes")
    return {
        "space": space,
        "train": train,
        "seed": _int(args, "seed", minimum=0),
        "processes": processes,
    }


def _option_message(message: str) -> str:
    # library messages start with the field name; turn it into the option
    for field, option in (
        ("units", "--units"),
        ("activations", "--activations"),
        ("max_layers", "--max-layers"),
    ):
        if message.startswith(field):
            return option + message[len(field) :]
    return message


def _out_folder(args: argparse.Namespace, seed: int) -> Path:
    from .runs import prepare_folder

    out = Path(args.out or f"runs/{args.command}-seed{seed}")
    try:
        return prepare_folder(out, overwrite=args.overwrite)
    except FileExistsError as error:
        raise UsageError(str(error)) from None


def run_search(args: argparse.Namespace) -> dict[str, Any]:
    from .data import load_dataset
    from .evaluation import ChildEvaluator
    from .reinforce import Search, SearchConfig
    from .runs import finish_search

    settings = _settings(args)
    try:
        config = SearchConfig(
            episodes=_int(args, "episodes"),
            batch_size=_int(args, "batch_size"),
            lr=_float(args, "lr", positive=True),
            entropy_weight=_float(args, "entropy_weight"),
            baseline_decay=_float(args, "baseline_decay"),
        )
    except (TypeError, ValueError) as error:
        raise UsageError("--" + str(error).replace("_", "-", 1)) from None
    out = _out_folder(args, settings["seed"])
    seed = settings["seed"]
    data = load_dataset(args.dataset, seed=seed)
    evaluator = ChildEvaluator(
        data, settings["train"], seed, args.trainer, settings["processes"]
    )
    search = Search(settings["space"], evaluator, config, seed=seed)
    search.run(progress=not args.no_progress)
    extra = {
        "seed": seed,
        "dataset": args.dataset,
        "trainer": args.trainer,
        "space": settings["space"].to_dict(),
    }
    return finish_search(out, search, data, extra)


def run_random(args: argparse.Namespace) -> dict[str, Any]:
    from .data import load_dataset
    from .evaluation import ChildEvaluator
    from .runs import finish_random

    settings = _settings(args)
    num = _int(args, "num")
    out = _out_folder(args, settings["seed"])
    seed = settings["seed"]
    data = load_dataset(args.dataset, seed=seed)
    evaluator = ChildEvaluator(
        data, settings["train"], seed, args.trainer, settings["processes"]
    )
    start = time.perf_counter()
    archs = settings["space"].sample(num, seed)
    results = evaluator.evaluate(archs)
    seconds = time.perf_counter() - start
    extra = {"seed": seed, "dataset": args.dataset, "trainer": args.trainer}
    return finish_random(out, results, evaluator.num_trained, seconds, extra)


def _print_summary(summary: dict[str, Any], out: str) -> None:
    print(f"best architecture:   {summary['best_architecture']}")
    print(f"validation accuracy: {summary['validation_accuracy']:.4f}")
    if "test_accuracy" in summary:
        print(f"test accuracy:       {summary['test_accuracy']:.4f}")
    print(
        f"children trained:    {summary['children_trained']} "
        f"of {summary['children_sampled']} sampled"
    )
    print(f"wall time:           {summary['seconds']:.1f} s")
    print(f"run folder:          {out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("MPLBACKEND", "Agg")

    import torch

    # one thread per process: fastest for these tiny networks, and reproducible
    torch.set_num_threads(1)
    runner = run_search if args.command == "search" else run_random
    try:
        summary = runner(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    _print_summary(summary, str(args.out or f"runs/{args.command}-seed{args.seed}"))
    return 0
