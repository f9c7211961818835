"""Command line: ``python -m automl_lib search`` and ``python -m automl_lib random``.

This is the only module that prints. Every option is checked before anything
is trained; a bad value gets a one-line ``error: ...`` naming the option and
the value, and exit status 2, never a traceback.

A search writes a checkpoint after every episode; ``search --resume DIR``
continues it with the settings stored in ``DIR/run.json`` and ends with the
same history, children and best architecture as an uninterrupted run.
:func:`main` runs torch on one thread, which this reproducibility needs.

``--scheduler ADDRESS`` (a running Dask scheduler) or ``--workers N`` (a new
cluster on 127.0.0.1) trains the children on a Dask cluster with the same
results (:mod:`automl_lib.distributed`); without them Dask is never imported.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

EXIT_USAGE = 2

MAX_PROCESSES = 4 * (os.cpu_count() or 1)
"""More worker processes than this only queue behind each other."""

MAX_SEED = 2**32 - 1
"""Largest seed: scikit-learn's data set makers take seeds below 2**32."""

STORED_OPTIONS = (
    "units",
    "activations",
    "max_layers",
    "dataset",
    "max_epochs",
    "patience",
    "child_lr",
    "reward_exponent",
    "reward_rule",
    "trainer",
    "processes",
    "seed",
    "episodes",
    "batch_size",
    "lr",
    "entropy_weight",
    "baseline_decay",
    "num",
)
"""Options recorded in ``run.json``, as typed, so a resumed run is rebuilt from
them through the same checks."""

RESUME_MAY_CHANGE = ("resume", "processes", "scheduler", "workers", "no_progress")
"""Options that ``--resume`` accepts: they do not change any result."""

LIBRARY_FIELDS = {
    "units": "--units",
    "activations": "--activations",
    "max_layers": "--max-layers",
    "max_epochs": "--max-epochs",
    "patience": "--patience",
    "reward_exponent": "--reward-exponent",
    "reward_rule": "--reward-rule",
    "episodes": "--episodes",
    "batch_size": "--batch-size",
    "entropy_weight": "--entropy-weight",
    "baseline_decay": "--baseline-decay",
    "seed": "--seed",
}
"""Library field names and the options that set them (``lr`` depends on the
object: ``--child-lr`` for a child, ``--lr`` for the controller)."""


class UsageError(Exception):
    """A bad command-line value, reported without a traceback."""


class _Parser(argparse.ArgumentParser):
    # argparse's own errors also become one line and exit status 2
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


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
    cluster = parser.add_argument_group(
        'Dask cluster (optional: pip install "automl_lib[distributed]")'
    )
    cluster.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="train children on the workers of a running Dask scheduler, "
        "e.g. tcp://HOST:8786 (same results as training here)",
    )
    cluster.add_argument(
        "--workers",
        default=None,
        metavar="N",
        help="start a Dask cluster of N worker processes on this machine "
        "(127.0.0.1 only) and train children there",
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--seed",
        default="0",
        metavar="S",
        help="random seed, 0 to 2**32 - 1 (default: 0)",
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
        help="replace the run folder if it already exists (only a run folder)",
    )
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m automl_lib",
        description="Neural architecture search by REINFORCE on scikit-learn's "
        "two moons, and the random-architecture experiment.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    search = commands.add_parser(
        "search",
        help="run the REINFORCE architecture search",
        allow_abbrev=False,
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
    search.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue the run in DIR with the settings stored there, from its "
        "last checkpoint; a finished run prints its summary (only --processes, "
        "--scheduler, --workers and --no-progress may be given with it)",
    )
    _common_options(search)

    random = commands.add_parser(
        "random",
        help="evaluate random architectures (the 5000-architecture histogram)",
        allow_abbrev=False,
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


def _parse_int(text: str) -> int:
    """``int(text)`` without Python's digit separators: "1_000" is a typo here."""
    if "_" in str(text):
        raise ValueError(text)
    return int(text)


def _int(
    args: argparse.Namespace, name: str, minimum: int = 1, maximum: int | None = None
) -> int:
    text = getattr(args, name)
    option = "--" + name.replace("_", "-")
    try:
        value = _parse_int(text)
    except ValueError:
        raise UsageError(f"{option} must be an integer, got {text!r}") from None
    if value < minimum:
        raise UsageError(f"{option} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{option} must be <= {maximum}, got {value}")
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


def _option_message(message: str, lr_option: str = "--lr") -> str:
    """Turn a library message that starts with a field name into one that
    starts with the option."""
    fields = {**LIBRARY_FIELDS, "lr": lr_option}
    for field in sorted(fields, key=len, reverse=True):
        if message.startswith((field + " ", field + ":")):
            return fields[field] + message[len(field) :]
    return message


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Check every common option before anything is trained; return library
    objects."""
    from .child import REWARD_RULES, TrainConfig
    from .data import DATASETS
    from .evaluation import TRAINERS
    from .search_space import SearchSpace

    # argparse checks these on the command line; run.json may have been edited
    for name, choices in (
        ("dataset", tuple(DATASETS)),
        ("trainer", TRAINERS),
        ("reward_rule", REWARD_RULES),
    ):
        if getattr(args, name) not in choices:
            option = "--" + name.replace("_", "-")
            raise UsageError(
                f"{option} must be one of {', '.join(choices)}, "
                f"got {getattr(args, name)!r}"
            )
    units = []
    for text in args.units:
        try:
            units.append(_parse_int(text))
        except ValueError:
            raise UsageError(f"--units must be integers, got {text!r}") from None
    max_layers = _int(args, "max_layers")
    try:
        space = SearchSpace(tuple(units), tuple(args.activations), max_layers)
    except (TypeError, ValueError) as error:
        raise UsageError(_option_message(str(error))) from None
    try:
        train = TrainConfig(
            max_epochs=_int(args, "max_epochs"),
            lr=_float(args, "child_lr", positive=True),
            patience=_int(args, "patience"),
            reward_exponent=_float(args, "reward_exponent"),
            reward_rule=args.reward_rule,
        )
    except (TypeError, ValueError) as error:
        raise UsageError(_option_message(str(error), "--child-lr")) from None
    processes = os.cpu_count() or 1
    if args.processes is not None:
        processes = _int(args, "processes")
        if processes > MAX_PROCESSES:
            raise UsageError(
                f"--processes must be at most {MAX_PROCESSES}, got {processes}"
            )
    return {
        "space": space,
        "train": train,
        "seed": _int(args, "seed", minimum=0, maximum=MAX_SEED),
        "processes": processes,
        **_cluster_settings(args),
    }


def _cluster_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Check ``--scheduler`` and ``--workers`` (Dask is imported only if given)."""
    if args.scheduler is None and args.workers is None:
        return {"scheduler": None, "workers": None}
    option = "--scheduler" if args.scheduler is not None else "--workers"
    if args.scheduler is not None and args.workers is not None:
        raise UsageError("--scheduler and --workers exclude each other; give one")
    if args.processes is not None:
        raise UsageError(f"--processes trains here; leave it out with {option}")
    if args.trainer != "batched":
        raise UsageError(f"{option} needs --trainer batched, got {args.trainer!r}")
    from .distributed import check_address, require_distributed

    try:
        require_distributed()
        if args.scheduler is not None:
            check_address(args.scheduler)
    except (ImportError, ValueError) as error:
        raise UsageError(f"{option}: {error}") from None
    workers = None
    if args.workers is not None:
        workers = _int(args, "workers", maximum=MAX_PROCESSES)
    return {"scheduler": args.scheduler, "workers": workers}


@contextmanager
def _cluster(settings: dict[str, Any]) -> Iterator[Any]:
    """A Dask client when ``--scheduler`` or ``--workers`` asks for one, else
    None; connecting (or starting the cluster) fails before any training."""
    scheduler, workers = settings["scheduler"], settings["workers"]
    if scheduler is None and workers is None:
        yield None
        return
    from .distributed import connect

    # Dask sets its loggers to INFO; the command line shows warnings only
    logging.getLogger("distributed").setLevel(logging.WARNING)
    option = "--scheduler" if scheduler is not None else "--workers"
    with ExitStack() as stack:
        try:
            client = stack.enter_context(connect(scheduler, workers))
        except (RuntimeError, OSError) as error:
            first_line = (str(error).strip() or type(error).__name__).splitlines()[0]
            raise UsageError(f"{option}: {first_line}") from None
        yield client


def _search_config(args: argparse.Namespace) -> Any:
    from .reinforce import SearchConfig

    try:
        return SearchConfig(
            episodes=_int(args, "episodes"),
            batch_size=_int(args, "batch_size"),
            lr=_float(args, "lr", positive=True),
            entropy_weight=_float(args, "entropy_weight"),
            baseline_decay=_float(args, "baseline_decay"),
        )
    except (TypeError, ValueError) as error:
        raise UsageError(_option_message(str(error))) from None


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in STORED_OPTIONS if hasattr(args, name)}


def _out_folder(args: argparse.Namespace, seed: int) -> Path:
    from .runs import FolderInUseError, prepare_folder, write_run_settings

    out = Path(args.out or f"runs/{args.command}-seed{seed}")
    try:
        folder = prepare_folder(out, overwrite=args.overwrite)
    except FileExistsError as error:
        raise UsageError("--" + str(error)) from None
    except FolderInUseError as error:
        raise UsageError(f"--out: {error}") from None
    except OSError as error:
        raise UsageError(f"--out: cannot create {out}: {error.strerror}") from None
    write_run_settings(folder, args.command, _options(args))
    return folder


def _evaluator(args: argparse.Namespace, settings: dict[str, Any]) -> Any:
    from .data import load_dataset
    from .evaluation import ChildEvaluator

    data = load_dataset(args.dataset, seed=settings["seed"])
    if settings.get("client") is not None:
        from .distributed import DaskEvaluator

        progress = args.command == "random" and not args.no_progress
        return data, DaskEvaluator(
            data,
            settings["train"],
            settings["seed"],
            client=settings["client"],
            progress=progress,
        )
    evaluator = ChildEvaluator(
        data,
        config=settings["train"],
        seed=settings["seed"],
        trainer=args.trainer,
        processes=settings["processes"],
    )
    return data, evaluator


def run_search(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """``search``: a new run, or ``--resume DIR``; returns the summary and folder."""
    if args.resume is not None:
        return _resume(args)
    settings = _settings(args)
    config = _search_config(args)
    with _cluster(settings) as client:
        out = _out_folder(args, settings["seed"])
        settings["client"] = client
        return _search(args, settings, config, out, resume=False), out


def _search(
    args: argparse.Namespace,
    settings: dict[str, Any],
    config: Any,
    out: Path,
    resume: bool,
) -> dict[str, Any]:
    from .reinforce import Search
    from .runs import (
        CHECKPOINT,
        Checkpointer,
        FolderInUseError,
        finish_search,
        lock_folder,
    )

    seed = settings["seed"]
    data, evaluator = _evaluator(args, settings)
    search = Search(settings["space"], evaluator, config, seed=seed)
    checkpointer = Checkpointer(out / CHECKPOINT, evaluator)
    try:
        with lock_folder(out):
            if resume:
                try:
                    checkpointer.restore(search)
                except ValueError as error:
                    raise UsageError(f"--resume: {error}") from None
            search.run(progress=not args.no_progress, callback=checkpointer)
            extra = {
                "seed": seed,
                "dataset": args.dataset,
                "trainer": args.trainer,
                "space": settings["space"].to_dict(),
            }
            return finish_search(out, search, data, extra)
    except FolderInUseError as error:
        raise UsageError(str(error)) from None


def _resume(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    from .runs import SUMMARY, read_json, read_run_settings

    out = Path(args.resume)
    defaults = build_parser().parse_args([args.command])
    # an option typed at its default value would be ignored just the same
    given = [
        option
        for option in args.typed
        if option[2:].replace("-", "_") not in RESUME_MAY_CHANGE
    ]
    if given:
        raise UsageError(
            f"--resume continues {out} with the settings stored there; "
            f"leave out {' '.join(given)}"
        )
    try:
        command, options = read_run_settings(out, check_version=False)
        if command != "search":
            raise ValueError(f"{out} holds a {command!r} run, not a search")
        if (out / SUMMARY).exists():
            print(f"{out} is a finished run")
            return read_json(out / SUMMARY), out
        read_run_settings(out)
    except ValueError as error:
        raise UsageError(f"--resume: {error}") from None

    stored = _stored_namespace(defaults, options, out)
    stored.no_progress = args.no_progress
    stored.scheduler, stored.workers = args.scheduler, args.workers
    cluster = args.scheduler is not None or args.workers is not None
    if args.processes is not None or cluster:
        stored.processes = args.processes
    settings = _settings(stored)
    config = _search_config(stored)
    with _cluster(settings) as client:
        settings["client"] = client
        return _search(stored, settings, config, out, resume=True), out


def _stored_namespace(
    defaults: argparse.Namespace, options: dict[str, Any], out: Path
) -> argparse.Namespace:
    # run.json holds the options as typed; anything else was edited by hand
    stored = argparse.Namespace(**vars(defaults))
    for name, value in options.items():
        listed = name in ("units", "activations")
        good = (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
            if listed
            else isinstance(value, str) or (name == "processes" and value is None)
        )
        if name not in STORED_OPTIONS or not hasattr(defaults, name) or not good:
            raise UsageError(f"{out}/run.json has a bad option {name}: {value!r}")
        setattr(stored, name, value)
    return stored


def run_random(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """``random``: evaluate random architectures; returns the summary and folder."""
    from .runs import FolderInUseError, finish_random, lock_folder

    settings = _settings(args)
    num = _int(args, "num")
    seed = settings["seed"]
    with _cluster(settings) as client:
        out = _out_folder(args, seed)
        settings["client"] = client
        data, evaluator = _evaluator(args, settings)
        try:
            with lock_folder(out):
                start = time.perf_counter()
                archs = settings["space"].sample(num, seed)
                results = evaluator.evaluate(archs)
                seconds = time.perf_counter() - start
                extra = {"seed": seed, "dataset": args.dataset, "trainer": args.trainer}
                summary = finish_random(
                    out, results, evaluator.num_trained, seconds, extra
                )
        except FolderInUseError as error:
            raise UsageError(str(error)) from None
    return summary, out


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    test_accuracy = summary.get("test_accuracy")
    print(f"best architecture:   {summary['best_architecture']}")
    print(f"validation accuracy: {summary['validation_accuracy']:.4f}")
    if "test_accuracy" in summary:
        text = "n/a (no child trained)" if test_accuracy is None else "{:.4f}"
        print(f"test accuracy:       {text.format(test_accuracy)}")
    print(
        f"children trained:    {summary['children_trained']} "
        f"of {summary['children_sampled']} sampled"
    )
    if summary.get("children_non_finite"):
        print(f"non-finite losses:   {summary['children_non_finite']} children")
    print(f"wall time:           {summary['seconds']:.1f} s")
    print(f"run folder:          {out}")


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    # one line per warning, like the errors
    print(f"warning: {category.__name__}: {message}", file=sys.stderr)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def _handlers() -> Iterator[None]:
    """One-line warnings, and SIGTERM unwinding like Ctrl-C, so worker pools
    and the folder lock are released; the previous handlers come back after."""
    show = warnings.showwarning
    warnings.showwarning = _show_warning
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        warnings.showwarning = show
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _typed_options(argv: Sequence[str]) -> list[str]:
    """The long options on a command line, in order, each once (``--name`` of
    ``--name value`` and of ``--name=value``)."""
    typed: list[str] = []
    for token in argv:
        if token == "--":  # what follows is not an option
            break
        name = token.split("=", 1)[0]
        if name.startswith("--") and name not in typed:
            typed.append(name)
    return typed


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status.

    torch runs on one thread (``torch.set_num_threads(1)``): on small networks
    and few cores this is the fastest setting, and it keeps every sum in the
    same order, so the same seed gives the same history in any fresh process.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.typed = _typed_options(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("MPLBACKEND", "Agg")

    runner = run_search if args.command == "search" else run_random
    with _handlers():
        try:
            import torch  # inside: Ctrl-C while it loads ends like any other

            torch.set_num_threads(1)
            summary, out = runner(args)
        except UsageError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted; a search continues with --resume", file=sys.stderr)
            return 130
    _print_summary(summary, out)
    return 0
