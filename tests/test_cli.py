"""The command line: help, tiny runs, resume after SIGKILL, same seed same run."""

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from automl_lib import cli
from automl_lib.controller import Controller
from automl_lib.runs import CHECKPOINT, MANIFEST, lock_folder, read_json
from automl_lib.search_space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]

TINY = ["--max-epochs", "5", "--trainer", "reference", "--processes", "1"]
TINY += ["--no-progress", "--units", "2", "4", "8", "--max-layers", "2"]

# the search the subprocess tests run, killed or not: about 2 s of training
SMALL = ["search", "--episodes", "12", "--batch-size", "4", "--max-epochs", "60"]
SMALL += ["--trainer", "reference", "--processes", "1", "--no-progress", "--seed", "3"]

SUMMARY_FIELDS = {
    "best_architecture",
    "best_reward",
    "validation_accuracy",
    "test_accuracy",
    "episodes",
    "children_sampled",
    "children_trained",
    "seed",
    "seconds",
}
HISTORY_COLUMNS = [
    "episode",
    "mean_reward",
    "max_reward",
    "baseline",
    "loss",
    "entropy",
    "best_reward",
    "seconds",
]


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def results(folder):
    """What must not change between runs: history without seconds, children,
    and the best child."""
    history = [
        {k: v for k, v in row.items() if k != "seconds"}
        for row in read_rows(folder / "history.csv")
    ]
    summary = read_json(folder / "summary.json")
    best = {
        k: summary[k] for k in ("best_architecture", "best_reward", "test_accuracy")
    }
    return history, read_rows(folder / "children.csv"), best


# help and tiny runs, in this process --------------------------------------------


@pytest.mark.parametrize(
    "command, option", [("search", "--resume"), ("random", "--num")]
)
def test_help_lists_the_options(command, option, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([command, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert option in text and "--overwrite" in text and "--seed" in text


def test_tiny_search_writes_the_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["search", "--episodes", "2", "--batch-size", "3", *TINY, "--out", str(out)]
    assert cli.main(argv) == 0
    assert "best architecture:" in capsys.readouterr().out

    summary = read_json(out / "summary.json")
    assert SUMMARY_FIELDS <= set(summary)
    assert summary["episodes"] == 2 and summary["children_sampled"] == 6
    assert 0 <= summary["test_accuracy"] <= 1 and summary["seed"] == 0
    assert read_rows(out / "history.csv")[0].keys() == set(HISTORY_COLUMNS)
    assert len(read_rows(out / "history.csv")) == 2
    assert len(read_rows(out / "children.csv")) == 6
    space = SearchSpace(units=(2, 4, 8), max_layers=2)
    assert Controller.load(out / "controller.pt", space).space == space
    assert (out / "rewards.png").stat().st_size > 0
    assert (out / "decision_regions.png").stat().st_size > 0
    assert read_json(out / "run.json")["options"]["episodes"] == "2"
    assert read_json(out / CHECKPOINT / MANIFEST)["episode"] == 2


def test_tiny_random_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["random", "--num", "5", *TINY, "--out", str(out)]) == 0
    summary = read_json(out / "summary.json")
    assert {"best_architecture", "best_reward", "validation_accuracy"} <= set(summary)
    assert summary["children_sampled"] == 5 and summary["strategy"] == "random"
    assert len(read_rows(out / "children.csv")) == 5
    assert (out / "histogram.png").stat().st_size > 0


def test_resuming_a_finished_run_prints_its_summary(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["search", "--episodes", "1", "--batch-size", "2", *TINY, "--out", str(out)]
    assert cli.main(argv) == 0
    before = (out / "summary.json").read_bytes()
    capsys.readouterr()

    assert cli.main(["search", "--resume", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "is a finished run" in printed and "best architecture:" in printed
    assert (out / "summary.json").read_bytes() == before


def test_a_run_folder_in_use_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["search", "--episodes", "1", "--batch-size", "2", *TINY, "--out", str(out)]
    assert cli.main(argv) == 0
    (out / "summary.json").unlink()
    with lock_folder(out):
        assert cli.main(["search", "--resume", str(out)]) == cli.EXIT_USAGE
    assert "in use by another process" in capsys.readouterr().err


def test_non_finite_children_show_in_the_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["search", "--episodes", "1", "--batch-size", "3", *TINY, "--out", str(out)]
    argv += ["--activations", "relu", "--child-lr", "1e20"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr()
    assert "non-finite losses:" in printed.out
    warnings = [line for line in printed.err.splitlines() if "NonFiniteLoss" in line]
    assert warnings and all("-relu" in line for line in warnings)
    statuses = {row["status"] for row in read_rows(out / "children.csv")}
    assert "non-finite" in statuses
    summary = read_json(out / "summary.json")
    assert summary["children_non_finite"] >= 1


def test_sigterm_unwinds_like_an_exit_and_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop, cli._handlers():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert stop.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before


# fresh processes -------------------------------------------------------------


def start(argv, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    return subprocess.Popen(
        [sys.executable, "-m", "automl_lib", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process, timeout=120):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out


@pytest.fixture(scope="module")
def two_fresh_runs(tmp_path_factory):
    """The same small search, seed 3, in two fresh processes side by side."""
    base = tmp_path_factory.mktemp("fresh")
    runs = [start([*SMALL, "--out", str(base / name)], base) for name in "ab"]
    for process in runs:
        finish(process)
    return base / "a", base / "b"


def test_same_seed_same_results_in_two_processes(two_fresh_runs):
    first, second = two_fresh_runs
    assert results(first) == results(second)
    assert len(results(first)[0]) == 12


def wait_for_checkpoint(folder, process, after=0, timeout=60.0):
    """Wait until the folder's checkpoint is past episode ``after``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if read_json(folder / CHECKPOINT / MANIFEST)["episode"] > after:
                return
        except (ValueError, KeyError):
            pass
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


def test_killed_search_resumes_to_the_same_results(two_fresh_runs, tmp_path):
    seed = random.randrange(2**32)
    delay = random.Random(seed).uniform(0.0, 0.7)
    note = f"killed {delay:.3f} s after the first checkpoint"
    out = tmp_path / "run"

    process = start([*SMALL, "--out", str(out)], tmp_path)
    wait_for_checkpoint(out, process)
    time.sleep(delay)
    finished = process.poll() is not None
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert not finished, f"the run ended before it was killed ({note})"
    manifest = read_json(out / CHECKPOINT / MANIFEST)
    assert (out / CHECKPOINT / manifest["state"]["file"]).exists(), note

    finish(start(["search", "--resume", str(out)], tmp_path))
    reference, _ = two_fresh_runs
    assert results(out) == results(reference), note
    names = {p.name for p in [*out.iterdir(), *(out / CHECKPOINT).iterdir()]}
    assert not any(name.endswith(".tmp") for name in names)
    assert len([n for n in names if n.startswith("state-")]) == 1


def descendants(pid):
    """Processes whose chain of parents leads to ``pid`` (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_worker_processes_end_with_their_parent(tmp_path):
    out = tmp_path / "run"
    argv = ["search", "--episodes", "40", "--batch-size", "6", "--max-epochs", "60"]
    argv += ["--processes", "2", "--no-progress", "--out", str(out)]
    process = start(argv, tmp_path)
    wait_for_checkpoint(out, process)
    workers = descendants(process.pid)
    process.send_signal(signal.SIGKILL)
    # workers that kept the pipes open would make this wait time out
    process.communicate(timeout=60)

    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)]
