"""A run on disk: summary, per-episode history, per-child record, checkpoints.

A run folder holds ``run.json`` (the settings it was started with),
``summary.json``, ``history.csv`` (one row per episode), ``children.csv`` (one
row per sampled child), the controller's weights, PNG figures, and a
``checkpoint`` folder, written after every episode of a search.

A checkpoint is one consistent snapshot: ``state-NNNNNN.pt`` (strategy,
controller, optimiser, baseline, random generators, best child) and
``records-NNNNNN.pt`` files (what each episode added: its history row, its
children's rows, and the children first trained in it with their kept
weights) are written first; then the small manifest ``checkpoint.json``, which
names them with their SHA-256 digests, is renamed into place. Each episode
writes only what is new, so a checkpoint costs the same at the last episode as
at the first. A crash at any instant leaves the previous manifest and every
file it names whole. Files no manifest names are removed. Everything is JSON or
weights-only tensors, so opening a shared run folder never runs code from it.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
from collections.abc import Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from . import __version__
from .child import ChildResult, score_on_test
from .controller import load_weights_only
from .data import Dataset
from .reinforce import Search
from .search_space import Architecture
from .strategies import (
    CHILD_COLUMNS,
    HISTORY_COLUMNS,
    Strategy,
    child_row,
    result_from_state,
    result_state,
)

logger = logging.getLogger(__name__)

SUMMARY = "summary.json"
HISTORY = "history.csv"
CHILDREN = "children.csv"
CONTROLLER = "controller.pt"
RUN_SETTINGS = "run.json"
MANIFEST = "checkpoint.json"
CHECKPOINT = "checkpoint"
"""The folder of a run that holds its checkpoint (see :class:`Checkpointer`)."""
LOCK = "run.lock"

CHECKPOINT_FORMAT = 2
"""Version of the checkpoint layout; another version is refused."""

RUN_FILES = (SUMMARY, RUN_SETTINGS, HISTORY, CHILDREN)
"""A folder holding one of these is a run folder that ``overwrite`` may replace."""

_SNAPSHOT_FILE = re.compile(r"(state|records)-\d{6}\.pt")


def prepare_folder(path: str | Path, overwrite: bool = False) -> Path:
    """Create an empty run folder; refuse an existing non-empty one unless
    ``overwrite``.

    Even with ``overwrite``, a non-empty folder is only deleted when it is a
    run folder (holds one of :data:`RUN_FILES`).

    Raises
    ------
    FileExistsError
        If ``path`` exists, is not empty and ``overwrite`` is False, or it is
        not a run folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"out: {path} exists and is not a folder")
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"out: run folder {path} already exists; choose another folder, "
                "resume it (--resume), or pass overwrite (--overwrite) to replace it"
            )
        if not _is_run_folder(path):
            raise FileExistsError(
                f"out: {path} is not empty and is not a run folder; "
                "refusing to delete it, even with overwrite"
            )
        with lock_folder(path):
            for entry in path.iterdir():
                if entry.is_dir():  # the checkpoint folder: files only
                    for inner in entry.iterdir():
                        inner.unlink()
                    entry.rmdir()
                elif entry.name != LOCK:
                    entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _is_run_folder(path: Path) -> bool:
    """True if ``path`` holds a run's settings or summary and nothing but run
    files: overwrite never deletes anything else."""
    if not any((path / name).is_file() for name in (RUN_SETTINGS, SUMMARY)):
        return False
    patterns = (*RUN_FILES, MANIFEST, CONTROLLER, LOCK, "*.png", "*.pt", "*.tmp")
    return all(
        entry.is_file() and any(entry.match(p) for p in patterns)
        for entry in path.iterdir()
        if not (entry.name == CHECKPOINT and _is_checkpoint_folder(entry))
    )


def _is_checkpoint_folder(path: Path) -> bool:
    """True if ``path`` is a folder of checkpoint files and nothing else."""
    return path.is_dir() and all(
        entry.is_file()
        and (
            entry.name == MANIFEST
            or entry.name.endswith(".tmp")
            or bool(_SNAPSHOT_FILE.fullmatch(entry.name))
        )
        for entry in path.iterdir()
    )


def _clean(value: Any) -> Any:
    # JSON has no NaN; write null instead
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (a temporary file renamed into place)."""
    path = Path(path)
    text = json.dumps({k: _clean(v) for k, v in data.items()}, indent=2) + "\n"
    _write_atomic(path, text.encode("utf-8"))


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON object.

    Raises
    ------
    ValueError
        If the file is missing, is not JSON or does not hold an object.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def _write_atomic(path: Path, data: bytes) -> None:
    # a temporary name, flushed to disk, then renamed: readers see old or new
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    # makes the rename itself durable; not every platform can open a folder
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def save_torch(path: str | Path, payload: Any) -> str:
    """``torch.save`` atomically; return the file's SHA-256 hex digest."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    _write_atomic(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def write_csv(
    path: str | Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]
) -> None:
    """Write rows as CSV with the given columns (floats at full precision)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: repr(v) if isinstance(v, float) else v for k, v in row.items()}
            )
    os.replace(tmp, path)


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Read a CSV written by :func:`write_csv`, converting numbers and booleans."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            {k: _parse(v) for k, v in row.items()} for row in csv.DictReader(handle)
        ]


def _parse(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# run settings -------------------------------------------------------------


def write_run_settings(out: Path, command: str, options: dict[str, Any]) -> None:
    """Record the command and its options, so ``--resume`` can rebuild the run."""
    write_json(
        out / RUN_SETTINGS,
        {"library_version": __version__, "command": command, "options": options},
    )


def read_run_settings(
    out: str | Path, check_version: bool = True
) -> tuple[str, dict[str, Any]]:
    """The command and options a run folder was started with.

    Raises
    ------
    ValueError
        If the folder has no readable ``run.json``, or (with ``check_version``)
        another library version wrote it.
    """
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"{out} is not a run folder")
    if not (out / RUN_SETTINGS).exists():
        raise ValueError(f"{out} has no {RUN_SETTINGS}; it is not a run folder")
    settings = read_json(out / RUN_SETTINGS)
    if check_version:
        _check_version(settings.get("library_version"), out / RUN_SETTINGS)
    command, options = settings.get("command"), settings.get("options")
    if not isinstance(command, str) or not isinstance(options, dict):
        raise ValueError(f"{out / RUN_SETTINGS} lacks a command and its options")
    return command, options


def _check_version(version: Any, source: Path) -> None:
    if version != __version__:
        raise ValueError(
            f"{source} was written by automl_lib {version}; this is automl_lib "
            f"{__version__}, which only continues its own runs"
        )


class FolderInUseError(ValueError):
    """Another process holds the run folder."""


@contextlib.contextmanager
def lock_folder(out: Path) -> Iterator[None]:
    """Hold the run folder for one process; a second one gets
    :class:`FolderInUseError`.

    The lock dies with the process, however it ends. Where ``fcntl`` is
    missing (Windows), nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(out / LOCK, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUseError(f"{out} is in use by another process") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# checkpoints ---------------------------------------------------------------


@runtime_checkable
class CachingEvaluator(Protocol):
    """An evaluator with a cache of results keyed by :meth:`key`."""

    num_trained: int
    cache: dict[Hashable, ChildResult]

    def key(self, arch: Architecture) -> Hashable: ...


class Checkpointer:
    """Write a snapshot of a search after every episode; restore the latest.

    Pass an instance as the ``callback`` of :meth:`Strategy.run`.

    Parameters
    ----------
    folder : path
        Where the snapshot files go, created on the first save; the command
        line uses the run folder's :data:`CHECKPOINT` folder.
    evaluator : Evaluator
        Its cache (each child with its kept weights) and ``num_trained`` are
        part of the snapshot.

    Examples
    --------
    >>> import tempfile
    >>> from automl_lib.evaluation import FunctionEvaluator
    >>> from automl_lib.reinforce import SearchConfig
    >>> from automl_lib.search_space import SearchSpace
    >>> folder = Path(tempfile.mkdtemp())
    >>> toy = FunctionEvaluator(lambda arch: float(arch.depth == 1))
    >>> search = Search(SearchSpace(), toy, SearchConfig(episodes=2), seed=0)
    >>> _ = search.run(progress=False, callback=Checkpointer(folder, toy))
    >>> again = Search(SearchSpace(), toy, SearchConfig(episodes=2), seed=0)
    >>> Checkpointer(folder, toy).restore(again), again.history == search.history
    (True, True)
    """

    def __init__(self, folder: str | Path, evaluator: Any) -> None:
        self.folder = Path(folder)
        self.evaluator = evaluator
        # how much of the cache and of the records the snapshot files hold
        self._saved: set[Hashable] = set()
        self._num_history = self._num_children = 0
        self._record_files: list[dict[str, str]] = []

    def __call__(self, strategy: Strategy) -> None:
        self.save(strategy)

    def _identity(self) -> str | None:
        # the cache key of the empty architecture names data, settings and seed
        if isinstance(self.evaluator, CachingEvaluator):
            return repr(self.evaluator.key(Architecture()))
        return None

    def save(self, strategy: Strategy) -> None:
        """Write the snapshot after the strategy's current episode."""
        self.folder.mkdir(parents=True, exist_ok=True)
        new: list[tuple[Hashable, ChildResult]] = []
        if isinstance(self.evaluator, CachingEvaluator):
            new = self._unsaved(self.evaluator.cache)
        history = strategy.history[self._num_history :]
        children = strategy.children[self._num_children :]
        record_files = list(self._record_files)
        if new or history or children:
            name = f"records-{len(record_files) + 1:06d}.pt"
            payload = {
                "results": [result_state(result) for _, result in new],
                "history": [dict(row) for row in history],
                "children": [dict(row) for row in children],
            }
            digest = save_torch(self.folder / name, payload)
            record_files.append({"file": name, "sha256": digest})

        name = f"state-{strategy.episode:06d}.pt"
        state = {
            "strategy": strategy.state_dict(records=False),
            "num_trained": int(self.evaluator.num_trained),
            "evaluator": self._identity(),
        }
        digest = save_torch(self.folder / name, state)
        manifest = {
            "format_version": CHECKPOINT_FORMAT,
            "library_version": __version__,
            "episode": strategy.episode,
            "state": {"file": name, "sha256": digest},
            "records": record_files,
        }
        # the rename of the manifest is the moment the new snapshot counts
        write_json(self.folder / MANIFEST, manifest)
        self._saved.update(key for key, _ in new)
        self._num_history += len(history)
        self._num_children += len(children)
        self._record_files = record_files
        self._remove_unnamed(manifest)

    def _unsaved(
        self, cache: dict[Hashable, ChildResult]
    ) -> list[tuple[Hashable, ChildResult]]:
        """Cache entries the snapshot files lack, in the cache's order.

        A cache only grows, so these are usually its newest entries, found
        from the end back; only a cache that held unsaved entries before a
        restore added saved ones after them needs the full scan.
        """
        new = []
        for key in reversed(cache):
            if key in self._saved:
                break
            new.append((key, cache[key]))
        new.reverse()
        if len(self._saved) + len(new) < len(cache):
            new = [(k, r) for k, r in cache.items() if k not in self._saved]
        return new

    def restore(self, strategy: Strategy) -> bool:
        """Load the latest snapshot into ``strategy`` and the evaluator.

        Returns False (and changes nothing) if the folder holds no snapshot.

        Raises
        ------
        ValueError
            If the snapshot is damaged, was written by another library version,
            or belongs to another search (search space, settings, data); or if
            checkpoint files lie in the folder without their manifest (they are
            kept).
        """
        path = self.folder / MANIFEST
        if not path.exists():
            if any(_SNAPSHOT_FILE.fullmatch(p.name) for p in self._files()):
                raise ValueError(
                    f"{self.folder} holds checkpoint files but no {MANIFEST}, so "
                    "they cannot be checked; put it back, or move the files away to "
                    "start the search again"
                )
            self._remove_unnamed(None)
            return False
        manifest = read_json(path)
        if manifest.get("format_version") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"{path} has checkpoint format {manifest.get('format_version')!r}; "
                f"this library reads format {CHECKPOINT_FORMAT}"
            )
        _check_version(manifest.get("library_version"), path)
        entries = manifest.get("records")
        if not isinstance(entries, list):
            raise ValueError(f"{path} lacks its list of record files")

        state = self._load_entry(manifest.get("state"))
        if not isinstance(state, dict):
            raise ValueError(f"{path}: the state file does not hold a dict")
        if state.get("evaluator") != self._identity():
            raise ValueError(
                f"{self.folder} was searched with other data, child-training "
                "settings or seed than this evaluator"
            )
        num_trained = state.get("num_trained")
        if not isinstance(num_trained, int):
            raise ValueError(f"{path}: bad num_trained {num_trained!r}")
        saved = state.get("strategy")
        if not isinstance(saved, dict):
            raise ValueError(f"{path}: the state file lacks the strategy's state")
        results: list[ChildResult] = []
        history: list[Any] = []
        children: list[Any] = []
        for entry in entries:
            payload = self._load_entry(entry)
            if not isinstance(payload, dict) or not all(
                isinstance(payload.get(part), list)
                for part in ("results", "history", "children")
            ):
                raise ValueError(f"{path}: a record file does not hold records")
            results.extend(result_from_state(r) for r in payload["results"])
            history += payload["history"]
            children += payload["children"]
        if manifest.get("episode") != len(history):
            raise ValueError(
                f"{path} names episode {manifest.get('episode')!r}, but its record "
                f"files hold {len(history)} episodes"
            )
        strategy.load_state_dict({**saved, "history": history, "children": children})

        self.evaluator.num_trained = num_trained
        if isinstance(self.evaluator, CachingEvaluator):
            for result in results:
                key = self.evaluator.key(result.architecture)
                self.evaluator.cache[key] = result
                self._saved.add(key)
        self._num_history, self._num_children = len(history), len(children)
        self._record_files = entries
        self._remove_unnamed(manifest)
        logger.info("resumed %s after episode %d", self.folder, strategy.episode)
        return True

    def _load_entry(self, entry: Any) -> Any:
        # names are checked first: a manifest may not point outside the folder
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("file"), str)
            or not _SNAPSHOT_FILE.fullmatch(entry["file"])
        ):
            raise ValueError(f"{self.folder / MANIFEST} names a bad file: {entry!r}")
        path = self.folder / entry["file"]
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ValueError(
                f"checkpoint file {path} cannot be read: {error}"
            ) from None
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise ValueError(f"checkpoint file {path} does not match its digest")
        return load_weights_only(io.BytesIO(data), f"checkpoint file {path}")

    def _remove_unnamed(self, manifest: dict[str, Any] | None) -> None:
        # snapshot files of older episodes, or of one a crash cut short
        keep = set()
        if manifest is not None:
            keep = {manifest["state"]["file"]}
            keep |= {entry["file"] for entry in manifest["records"]}
        for path in self._files():
            stale = _SNAPSHOT_FILE.fullmatch(path.name) and path.name not in keep
            if stale or path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)

    def _files(self) -> list[Path]:
        return list(self.folder.iterdir()) if self.folder.is_dir() else []


def base_summary() -> dict[str, Any]:
    """Fields every summary carries: the library version."""
    return {"library_version": __version__}


def finish_search(
    out: Path,
    search: Strategy,
    data: Dataset,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Score the best child once on the test split and write the run folder.

    Writes ``summary.json`` (last, so its presence means the run is complete),
    ``history.csv``, ``children.csv``, the controller (for REINFORCE) and the
    figures; returns the summary. If every child's loss went non-finite, no
    child has weights to score: ``test_accuracy`` is then None (null).
    """
    best = search.best
    if best is None:
        raise ValueError("the search has no child yet: run at least one episode")
    test_accuracy = None
    if best.weights is not None:
        test_accuracy = score_on_test(best.architecture, best.weights, data)
    else:
        logger.warning("no child trained to a finite loss; nothing to score on test")

    summary = {
        **base_summary(),
        "strategy": search.name,
        "best_architecture": str(best.architecture),
        "best_reward": best.reward,
        "best_status": best.status,
        "validation_accuracy": best.val_accuracy,
        "test_accuracy": test_accuracy,
        "episodes": search.episode,
        "children_sampled": search.children_sampled,
        "children_trained": search.children_trained,
        "children_non_finite": sum(r["status"] != "ok" for r in search.children),
        "seconds": search.seconds,
        **extra,
    }
    write_csv(out / HISTORY, search.history, HISTORY_COLUMNS)
    write_csv(out / CHILDREN, search.children, CHILD_COLUMNS)
    if isinstance(search, Search):
        save_torch(out / CONTROLLER, search.controller.to_payload())
        summary["controller_greedy_architecture"] = str(search.controller.greedy())
    save_search_figures(out, search, data)
    write_json(out / SUMMARY, summary)
    return summary


def save_search_figures(out: Path, search: Strategy, data: Dataset) -> None:
    """Reward curve and the best child's decision regions over all points."""
    import matplotlib.pyplot as plt

    from .plotting import plot_decision_regions, plot_rewards

    fig, ax = plt.subplots(figsize=(7, 4))
    plot_rewards(search.history, ax=ax)
    fig.tight_layout()
    fig.savefig(out / "rewards.png", dpi=120)
    plt.close(fig)

    best = search.best
    if best is not None and best.weights is not None and data.num_features == 2:
        X, y = data.all_points()
        fig, ax = plt.subplots(figsize=(5, 4))
        plot_decision_regions(best.architecture, best.weights, X, y, ax=ax)
        fig.tight_layout()
        fig.savefig(out / "decision_regions.png", dpi=120)
        plt.close(fig)


RANDOM_COLUMNS = (
    "index",
    "architecture",
    "reward",
    "val_accuracy",
    "epochs_trained",
    "cached",
    "status",
)


def finish_random(
    out: Path,
    results: Sequence[ChildResult],
    num_trained: int,
    seconds: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Write the run folder of a random-architecture experiment; return the summary."""
    import matplotlib.pyplot as plt

    from .plotting import plot_accuracy_histogram

    best = max(results, key=lambda r: r.reward)
    summary = {
        **base_summary(),
        "strategy": "random",
        "best_architecture": str(best.architecture),
        "best_reward": best.reward,
        "best_status": best.status,
        "validation_accuracy": best.val_accuracy,
        "children_sampled": len(results),
        "children_trained": num_trained,
        "children_non_finite": sum(r.status != "ok" for r in results),
        "seconds": seconds,
        **extra,
    }
    rows = [{"index": i, **child_row(0, i, r)} for i, r in enumerate(results)]
    write_csv(out / CHILDREN, rows, RANDOM_COLUMNS)

    fig, ax = plt.subplots(figsize=(7, 4))
    plot_accuracy_histogram([r.val_accuracy for r in results], ax=ax)
    ax.set_title(f"{len(results)} random architectures")
    fig.tight_layout()
    fig.savefig(out / "histogram.png", dpi=120)
    plt.close(fig)
    write_json(out / SUMMARY, summary)
    return summary
