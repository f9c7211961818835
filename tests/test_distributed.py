"""The Dask back end: same results as training here, faults, cache, command line.

Every cluster here is a LocalCluster on 127.0.0.1 with two worker processes.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import automl_lib
from automl_lib import cli
from automl_lib import distributed as dist
from automl_lib.batched import plan_groups, train_group
from automl_lib.child import TrainConfig
from automl_lib.evaluation import ChildEvaluator
from automl_lib.reinforce import Search, SearchConfig
from automl_lib.runs import Checkpointer, read_csv, read_json
from automl_lib.search_space import Architecture, SearchSpace
from automl_lib.strategies import HISTORY_COLUMNS

ROOT = Path(__file__).resolve().parents[1]

SPACE = SearchSpace(units=(1, 2, 4, 8), max_layers=3)
CONFIG = TrainConfig(max_epochs=40, patience=10)
ARCHS = SPACE.sample(40, seed=5)

# a search small enough for the command line tests
CLI_SEARCH = ["search", "--episodes", "4", "--batch-size", "4", "--max-epochs", "30"]
CLI_SEARCH += ["--units", "2", "4", "8", "--max-layers", "2", "--no-progress"]
CLI_SEARCH += ["--seed", "7"]


@pytest.fixture(scope="module")
def client():
    with dist.local_cluster(2) as client:
        yield client


@pytest.fixture(scope="module")
def fragile_client():
    """A cluster of its own for the tests that kill workers."""
    with dist.local_cluster(2) as client:
        yield client


def local(data, config=CONFIG, seed=3, cache=None):
    """The local reference: batched, in this process."""
    return ChildEvaluator(
        data, config, seed=seed, trainer="batched", processes=1, cache=cache
    )


def same_results(a, b):
    """Equal in every number and every weight, bit for bit."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        fields = ("architecture", "reward", "val_accuracy", "best_epoch")
        fields += ("epochs_trained", "status", "cached")
        assert [getattr(x, f) for f in fields] == [getattr(y, f) for f in fields]
        for (W1, b1), (W2, b2) in zip(x.weights, y.weights, strict=True):
            assert np.array_equal(W1, W2) and np.array_equal(b1, b2)
    return True


def wait_until_training(client, timeout=30.0):
    """The address of a worker that is running a group now."""
    # a lambda travels by value: the workers need not import this file
    executing = lambda dask_worker: dask_worker.state.executing_count  # noqa: E731
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [w for w, n in client.run(executing).items() if n]
        if busy:
            return busy[0]
        time.sleep(0.01)
    raise AssertionError("no worker started a group")


def evaluate_in_thread(evaluator, archs):
    out = {}
    thread = threading.Thread(target=lambda: out.update(r=evaluator.evaluate(archs)))
    thread.start()
    return thread, out


# clusters -----------------------------------------------------------------------


def test_a_local_cluster_stays_on_loopback_and_cleans_up(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # folders of clusters whose process was killed go; a living owner's stay
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, alive = tmp_path / "automl-dask-stale", tmp_path / "automl-dask-alive"
    for folder, pid in ((stale, dead.pid), (alive, os.getpid())):
        folder.mkdir()
        (folder / dist.OWNER_FILE).write_text(str(pid))

    with dist.local_cluster(1) as client:
        addresses = [client.scheduler.address, *client.nthreads()]
        folder = Path(client.run(lambda: os.environ["TMPDIR"]).popitem()[1])
        assert folder.parent == tmp_path and folder.is_dir()
        link = client.dashboard_link
    assert all(a.startswith("tcp://127.0.0.1:") for a in addresses)
    assert link.startswith("http://127.0.0.1:")
    assert not folder.exists() and not stale.exists() and alive.exists()


@pytest.mark.parametrize(
    "kwargs", [{}, {"scheduler": "tcp://127.0.0.1:1", "workers": 2}]
)
def test_connect_needs_one_of_scheduler_and_workers(kwargs):
    with pytest.raises(ValueError, match="exactly one"):
        with dist.connect(**kwargs):
            pass


# results ------------------------------------------------------------------------


def test_the_cluster_gives_the_local_results_bit_for_bit(client, moons):
    remote = dist.DaskEvaluator(moons, CONFIG, seed=3, client=client)
    same_results(remote.evaluate(ARCHS), local(moons).evaluate(ARCHS))
    assert remote.num_trained == len(set(ARCHS))
    assert remote.num_groups_submitted == len(plan_groups(list(set(ARCHS))))


def test_a_search_has_the_same_history_on_the_cluster(client, moons):
    config = SearchConfig(episodes=3, batch_size=6)
    runs = []
    for evaluator in (
        local(moons, seed=1),
        dist.DaskEvaluator(moons, CONFIG, seed=1, client=client),
    ):
        search = Search(SPACE, evaluator, config, seed=4).run(progress=False)
        history = [{k: row[k] for k in HISTORY_COLUMNS[:-1]} for row in search.history]
        runs.append((history, search.children, search.best.architecture))
    assert runs[0] == runs[1]


def test_cached_children_are_not_shipped_again(client, moons, monkeypatch):
    submitted = []
    submit = client.submit

    def counting_submit(function, *args, **kwargs):
        if function is train_group:
            submitted.append(args[0])
        return submit(function, *args, **kwargs)

    monkeypatch.setattr(client, "submit", counting_submit)
    evaluator = dist.DaskEvaluator(moons, CONFIG, seed=3, client=client)
    evaluator.evaluate(ARCHS[:10])
    first = sum(len(archs) for archs in submitted)
    assert first == len(set(ARCHS[:10])) == evaluator.num_children_submitted

    results = evaluator.evaluate(ARCHS[:20])
    shipped = [a for archs in submitted for a in archs]
    assert len(shipped) == len(set(shipped)) == len(set(ARCHS[:20]))
    assert [r.cached for r in results[:10]] == [True] * 10

    evaluator.evaluate(ARCHS[:20])
    assert len(submitted) == evaluator.num_groups_submitted
    assert evaluator.num_children_submitted == evaluator.num_trained == len(shipped)

    # a cache filled here is answered without the cluster
    cache = {}
    local(moons, cache=cache).evaluate(ARCHS[20:])
    shared = dist.DaskEvaluator(moons, CONFIG, seed=3, client=client, cache=cache)
    shared.evaluate(ARCHS[20:])
    assert shared.num_groups_submitted == shared.num_trained == 0


def test_workers_with_another_library_version_are_refused(client, monkeypatch):
    assert dist.check_workers(client) == 2
    monkeypatch.setattr(automl_lib, "__version__", "9.9.9")
    with pytest.raises(dist.ClusterError, match=r"runs automl_lib .*, this process"):
        dist.check_workers(client)


# faults -------------------------------------------------------------------------


SLOW = TrainConfig(max_epochs=400, patience=400)  # no early stop: groups of ~0.5 s


@pytest.fixture(scope="module")
def slow_request(moons):
    """A request whose groups train long enough to be hit, and its local results."""
    archs = SPACE.sample(24, seed=8)
    return archs, local(moons, SLOW, seed=2).evaluate(archs)


def fault_run(client, moons, archs, fault):
    """Evaluate ``archs`` on warm workers and call ``fault`` while a group
    trains; return the evaluator and its results."""
    client.wait_for_workers(2, timeout=60)
    evaluator = dist.DaskEvaluator(moons, SLOW, seed=2, client=client)
    evaluator.evaluate([Architecture()])  # workers import torch, hold the data
    thread, out = evaluate_in_thread(evaluator, archs)
    fault(evaluator, wait_until_training(client))
    thread.join(120)
    assert not thread.is_alive()
    assert evaluator.num_trained == 1 + len(set(archs))
    return evaluator, out["r"]


def test_a_killed_worker_loses_no_child(fragile_client, moons, slow_request):
    archs, expected = slow_request
    killed = []

    def kill_it(evaluator, busy):
        killed.append(fragile_client.run(os.getpid, workers=[busy])[busy])
        os.kill(killed[0], signal.SIGKILL)

    evaluator, results = fault_run(fragile_client, moons, archs, kill_it)
    same_results(results, expected)
    # the scheduler ran the group again, not the evaluator
    assert evaluator.num_children_submitted == evaluator.num_trained
    fragile_client.wait_for_workers(2, timeout=60)  # the nanny restarted it
    assert killed[0] not in fragile_client.run(os.getpid).values()


def test_losing_every_worker_at_once_loses_no_child(
    fragile_client, moons, slow_request
):
    archs, expected = slow_request

    def kill_all(evaluator, busy):
        for pid in fragile_client.run(os.getpid).values():
            os.kill(pid, signal.SIGKILL)

    evaluator, results = fault_run(fragile_client, moons, archs, kill_all)
    same_results(results, expected)
    # the data are a task the scheduler runs again, so nothing was lost
    assert evaluator.num_children_submitted == evaluator.num_trained


def test_cancelled_groups_are_sent_again(fragile_client, moons, slow_request):
    archs, expected = slow_request

    def cancel_data(evaluator, busy):
        fragile_client.cancel([evaluator._data_future])  # and every group with it

    evaluator, results = fault_run(fragile_client, moons, archs, cancel_data)
    same_results(results, expected)
    assert evaluator.num_children_submitted > evaluator.num_trained


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_fails_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dist, "CONNECT_TIMEOUT", 0.5)
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(dist.ClusterError, match="cannot reach"):
        with dist.connect(scheduler=address):
            pass

    out = tmp_path / "run"
    argv = ["random", "--num", "3", "--scheduler", address, "--out", str(out)]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    message = f"cannot reach a Dask scheduler at {address} within 0.5 s"
    assert err == f"error: --scheduler: {message}\n"
    assert not out.exists()


# command line -------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, message",
    [
        (["--workers", "0"], "--workers must be >= 1"),
        (["--workers", "two"], "--workers must be an integer"),
        (["--scheduler", "nonsense"], "--scheduler: bad scheduler address"),
        (["--scheduler", "ftp://127.0.0.1:1"], "unknown address scheme"),
        (["--scheduler", "127.0.0.1:1", "--workers", "2"], "exclude each other"),
        (["--workers", "2", "--processes", "2"], "leave it out with --workers"),
        (["--workers", "2", "--trainer", "reference"], "needs --trainer batched"),
    ],
)
def test_bad_cluster_options_are_one_line_errors(options, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["random", *options, "--out", str(out)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_a_missing_dask_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r'pip install "automl_lib\[distributed\]"'):
        dist.require_distributed()
    argv = ["random", "--workers", "2", "--out", str(tmp_path / "run")]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert 'pip install "automl_lib[distributed]"' in capsys.readouterr().err


def run_python(code, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_without_cluster_options_dask_is_never_imported(tmp_path):
    code = """
import sys
from automl_lib.cli import main
tiny = ["--max-epochs", "5", "--processes", "1", "--no-progress"]
assert main(["random", "--num", "3", *tiny, "--out", "r"]) == 0
search = ["search", "--episodes", "1", "--batch-size", "2"]
assert main([*search, *tiny, "--out", "s"]) == 0
print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
"""
    assert run_python(code, tmp_path).splitlines()[-1] == "[]"


def test_random_on_a_local_cluster_matches_a_local_run(tmp_path):
    argv = ["random", "--num", "24", "--max-epochs", "30", "--seed", "2"]
    argv += ["--no-progress", "--units", "2", "4", "8", "--max-layers", "2"]
    assert cli.main([*argv, "--workers", "2", "--out", str(tmp_path / "cluster")]) == 0
    assert cli.main([*argv, "--processes", "1", "--out", str(tmp_path / "here")]) == 0
    rows = [read_csv(tmp_path / name / "children.csv") for name in ("cluster", "here")]
    assert rows[0] == rows[1] and len(rows[0]) == 24


def test_a_search_resumes_on_a_cluster(client, tmp_path, monkeypatch):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    assert cli.main([*CLI_SEARCH, "--processes", "1", "--out", str(reference)]) == 0

    save = Checkpointer.save

    def save_then_stop(self, strategy):
        save(self, strategy)
        if strategy.episode == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Checkpointer, "save", save_then_stop)
        argv = [*CLI_SEARCH, "--processes", "1", "--out", str(interrupted)]
        assert cli.main(argv) == 130
    address = client.scheduler.address
    argv = ["search", "--resume", str(interrupted), "--scheduler", address]
    assert cli.main([*argv, "--no-progress"]) == 0

    for name in ("history.csv", "children.csv"):
        rows = [read_csv(folder / name) for folder in (reference, interrupted)]
        for table in rows:
            for row in table:
                row.pop("seconds", None)
        assert rows[0] == rows[1]
    summaries = [read_json(f / "summary.json") for f in (reference, interrupted)]
    for key in ("best_architecture", "best_reward", "test_accuracy"):
        assert summaries[0][key] == summaries[1][key]
