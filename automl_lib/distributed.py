"""Training children on a Dask cluster: the same groups, shipped to workers.

The cluster back end plans a request exactly as the local batched trainer
does (:func:`~automl_lib.batched.plan_groups`), sends each group to a worker
as one task, and puts the results back in request order. A group is the unit
of work everywhere, so a child gets the same reward wherever it was trained.
Dask is imported only when a cluster is used. Notebook 09 teaches this module.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from .batched import MAX_GROUP, plan_groups, train_group, warn_if_diverged
from .child import ChildResult, TrainConfig
from .data import Dataset
from .evaluation import ChildEvaluator
from .search_space import Architecture

if TYPE_CHECKING:
    from distributed import Client, Future

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "automl_lib[distributed]"'
"""How to install what the cluster back end needs."""

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a scheduler before giving up."""

START_TIMEOUT = 60.0
"""Seconds a new local cluster may take until all its workers are up."""

FOLDER_PREFIX = "automl-dask-"
"""Name prefix of a local cluster's temporary folder."""

OWNER_FILE = "owner.pid"
"""The process id of the process that made a cluster's temporary folder."""

MAX_ATTEMPTS = 3
"""Times the groups of a request are sent at most: tasks cancelled on the
cluster (the client lost the scheduler for a while, say) are sent again."""


class ClusterError(RuntimeError):
    """The cluster cannot train children: the scheduler is unreachable, its
    workers cannot run this library, or it kept cancelling the tasks."""


def require_distributed() -> ModuleType:
    """Import ``dask.distributed``, or say how to install it.

    Raises
    ------
    ImportError
        If dask.distributed is missing; the message names the pip command.
    """
    try:
        import distributed
    except ImportError as error:
        raise ImportError(
            f"the Dask back end needs dask.distributed; install it with {INSTALL_HINT}"
        ) from error
    return distributed


def check_address(address: str) -> str:
    """Check the form of a scheduler address such as ``tcp://HOST:PORT``.

    Parameters
    ----------
    address : str
        ``SCHEME://HOST:PORT`` or ``HOST:PORT`` (TCP); nothing is contacted.

    Returns
    -------
    str
        The address, unchanged.

    Raises
    ------
    ValueError
        If the scheme is unknown or the host or port is missing or bad.
    ImportError
        If dask.distributed is missing.
    """
    require_distributed()
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        _, port = parse_host_port(location)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"bad scheduler address {address!r} ({error}); expected tcp://HOST:PORT"
        ) from None
    if not 0 < port < 2**16:
        raise ValueError(f"bad scheduler address {address!r}: port {port}")
    return address


@contextmanager
def local_cluster(num_workers: int = 2) -> Iterator[Client]:
    """A Dask cluster of worker processes on this machine, and a client.

    Every listener binds to 127.0.0.1; each worker has one thread; the
    dashboard takes a free port; the workers' scratch files live in a
    temporary folder that is removed when the cluster closes.

    Parameters
    ----------
    num_workers : int, default 2

    Yields
    ------
    distributed.Client
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    distributed = require_distributed()
    import dask

    _remove_stale_folders()
    folder = tempfile.mkdtemp(prefix=FOLDER_PREFIX)
    Path(folder, OWNER_FILE).write_text(str(os.getpid()))
    try:
        # the scheduler and the nannies keep scratch folders too
        with dask.config.set({"temporary-directory": folder}):
            cluster = distributed.LocalCluster(
                n_workers=num_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                local_directory=folder,
                env={"TMPDIR": folder},
            )
        with cluster, distributed.Client(cluster, set_as_default=False) as client:
            # the whole cluster, before the caller measures or uses it
            client.wait_for_workers(num_workers, timeout=START_TIMEOUT)
            logger.info("local cluster of %d workers started", num_workers)
            yield client
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _remove_stale_folders() -> None:
    """Remove the temporary folders of local clusters whose process is gone
    (killed before it could clean up); a folder whose owner runs is kept."""
    for folder in Path(tempfile.gettempdir()).glob(FOLDER_PREFIX + "*"):
        try:
            pid = int((folder / OWNER_FILE).read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            logger.info("removing %s, left by process %d", folder, pid)
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge: unreadable, or owned by another user


@contextmanager
def connect(
    scheduler: str | None = None,
    workers: int | None = None,
    timeout: float | None = None,
) -> Iterator[Client]:
    """A client of an existing scheduler, or of a new local cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler, e.g. ``tcp://10.0.0.5:8786``.
    workers : int, optional
        Start a :func:`local_cluster` of this many workers instead.
    timeout : float, optional
        Seconds to wait for the scheduler; :data:`CONNECT_TIMEOUT` by default.

    Yields
    ------
    distributed.Client
        Closed (with the local cluster) on leaving the block.

    Raises
    ------
    ValueError
        If not exactly one of ``scheduler`` and ``workers`` is given, or the
        address is malformed.
    ClusterError
        If the scheduler cannot be reached, or its workers cannot import
        this library or run another version of it.
    """
    if (scheduler is None) == (workers is None):
        raise ValueError("give exactly one of scheduler and workers")
    if workers is not None:
        with local_cluster(workers) as client:
            yield client
        return

    assert scheduler is not None
    distributed = require_distributed()
    check_address(scheduler)
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    try:
        client = distributed.Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise ClusterError(
            f"cannot reach a Dask scheduler at {scheduler} within {timeout:g} s"
        ) from error
    with client:
        check_workers(client)
        yield client


def _library_version() -> str:
    from . import __version__

    return __version__


def check_workers(client: Client) -> int:
    """Check that every worker runs this version of the library.

    Returns
    -------
    int
        Workers connected now (0 is allowed: workers may join later).

    Raises
    ------
    ClusterError
        If a worker cannot import ``automl_lib`` or has another version.
    """
    mine = _library_version()
    try:
        versions = client.run(_library_version)
    except Exception as error:  # whatever the worker raised while unpickling
        raise ClusterError(
            f"the workers cannot run automl_lib ({type(error).__name__}: {error}); "
            f"install it on every worker with {INSTALL_HINT}"
        ) from None
    for worker, version in sorted(versions.items()):
        if version != mine:
            raise ClusterError(
                f"worker {worker} runs automl_lib {version}, this process {mine}"
            )
    return len(versions)


def _group_cost(archs: Sequence[Architecture], data: Dataset) -> int:
    """Weights in a group: a rough guide to how long it trains."""
    total = 0
    for arch in archs:
        sizes = [data.num_features, *arch.units, data.num_classes]
        total += sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return total


def _training_data(data: Dataset) -> Dataset:
    """The identity: the data become a task's result, which the scheduler
    can compute again, unlike scattered data."""
    return data


class DaskEvaluator(ChildEvaluator):
    """A :class:`~automl_lib.evaluation.ChildEvaluator` whose children are
    trained on a Dask cluster, batched, group by group.

    The cache, the cache keys and ``num_trained`` are those of the local
    evaluator, so a run can move between back ends (a checkpoint written with
    one resumes with the other) and gives the same results on both.

    Parameters
    ----------
    data : Dataset
        Its training and validation splits go to the cluster once, as a task
        whose result every group reads (a worker fetches it from a peer; if
        every copy is lost, the scheduler runs the task again). The test split
        stays in this process.
    config : TrainConfig, optional
    seed : int, default 0
    client : distributed.Client
        For instance from :func:`connect` or :func:`local_cluster`; the
        evaluator does not close it.
    cache : dict, optional
    max_group : int, default :data:`~automl_lib.batched.MAX_GROUP`
        Most children in one task. Results depend on the grouping, so keep
        the default to match the local trainer bit for bit.
    progress : bool, default False
        Show a progress bar of the children as their groups come back.

    Attributes
    ----------
    num_trained : int
        Children trained (cache misses), as in the local evaluator.
    num_groups_submitted, num_children_submitted : int
        Tasks sent to the cluster and the children in them. A group that the
        scheduler retries after a worker died counts once; one that this
        evaluator sends again after its task was cancelled counts again.

    Examples
    --------
    >>> from automl_lib.data import make_two_moons
    >>> with local_cluster(2) as client:  # doctest: +SKIP
    ...     ev = DaskEvaluator(make_two_moons(), client=client)
    ...     results = ev.evaluate([Architecture.parse("8-tanh")])
    """

    def __init__(
        self,
        data: Dataset,
        config: TrainConfig | None = None,
        seed: int = 0,
        *,
        client: Client,
        cache: dict[Hashable, ChildResult] | None = None,
        max_group: int = MAX_GROUP,
        progress: bool = False,
    ) -> None:
        super().__init__(data, config=config, seed=seed, cache=cache)
        if max_group < 1:
            raise ValueError(f"max_group must be positive, got {max_group}")
        self.client = client
        self.max_group = max_group
        self.progress = progress
        self.num_groups_submitted = 0
        self.num_children_submitted = 0
        self._data_future: Future[Dataset] | None = None

    def _cluster_data(self) -> Future[Dataset]:
        """The training data on the cluster; sent again if it was cancelled."""
        future = self._data_future
        if future is None or future.cancelled():
            # the test split never leaves this process
            empty = self.data.X_train[:0], self.data.y_train[:0]
            shipped = dataclasses.replace(self.data, _X_test=empty[0], _y_test=empty[1])
            # a task rather than scattered data: the scheduler keeps the
            # recipe, so losing every worker that held it loses nothing
            future = self.client.submit(_training_data, shipped, pure=False)
            self._data_future = future
        return future

    def train(self, archs: list[Architecture]) -> list[ChildResult]:
        """Train ``archs`` (no cache) on the cluster; results in request order.

        Raises
        ------
        ClusterError
            If the tasks were cancelled :data:`MAX_ATTEMPTS` times.
        distributed.KilledWorker
            If a group's workers died too often (a crash, not a restart).
        """
        if not archs:
            return []
        groups = plan_groups(archs, self.max_group)
        results: list[ChildResult | None] = [None] * len(archs)
        pending = sorted(
            range(len(groups)),
            key=lambda k: -_group_cost([archs[i] for i in groups[k]], self.data),
        )
        bar = tqdm(
            total=len(archs), disable=not self.progress, desc="children", unit="child"
        )
        with bar:
            for _ in range(MAX_ATTEMPTS):
                pending = self._run(archs, groups, pending, results, bar)
                if not pending:
                    break
                logger.warning("%d groups cancelled; sending them again", len(pending))
            else:
                raise ClusterError(
                    f"the cluster cancelled the training tasks {MAX_ATTEMPTS} times"
                )
        logger.debug("trained %d children in %d groups", len(archs), len(groups))
        return [warn_if_diverged(r) for r in results if r is not None]

    def _run(
        self,
        archs: list[Architecture],
        groups: list[list[int]],
        pending: list[int],
        results: list[ChildResult | None],
        bar: Any,
    ) -> list[int]:
        """Submit the groups ``pending`` (costly first) and fill ``results``;
        return the groups whose tasks were cancelled."""
        from distributed import as_completed

        data = self._cluster_data()
        futures = {}
        for k in pending:
            group = [archs[i] for i in groups[k]]
            # pure=False: a fresh key, so a retry never reuses an old result
            future = self.client.submit(
                train_group, group, data, self.config, self.seed, warn=False, pure=False
            )
            futures[future] = k
            self.num_groups_submitted += 1
            self.num_children_submitted += len(group)

        cancelled = []
        try:
            for future in as_completed(futures, loop=self.client.loop):
                k = futures[future]
                if future.status == "cancelled":
                    cancelled.append(k)
                    continue
                for i, result in zip(groups[k], future.result(), strict=True):
                    results[i] = result
                bar.update(len(groups[k]))
        finally:
            # after an error or Ctrl-C, nothing keeps training for nobody
            unfinished = [f for f in futures if not f.done()]
            if unfinished:
                self.client.cancel(unfinished)
        return sorted(cancelled, key=pending.index)
