"""The batched trainer: many children trained at once, under the reference protocol.

Children of one depth form a group, trained as one program. In each layer,
children with the same activation and the same widths share a block: one
batched matrix product per pass, one activation call per activation. A child
therefore meets the same arithmetic whatever its batch-mates, and its result
does not depend on them. (With ``BLOCK_COST > 0`` a block also takes children
of other widths, zero-padded: a padded weight has a zero gradient and zero Adam
moments, so it stays zero, and padding changes only the rounding of sums.)
Each epoch runs one forward pass over the training and validation points
together, a hand-written backward pass, and Adam on one flat parameter buffer.
A child that stops hands in its result at once and later leaves the batch with
its optimiser state.

Notebook 03 compares what this trainer and the reference trainer cost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from .child import (
    ChildResult,
    TrainConfig,
    Weights,
    compute_reward,
    diverged_result,
    init_weights,
)
from .data import Dataset
from .search_space import Architecture

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

BETAS = (0.9, 0.999)
"""Adam's coefficients, the defaults of ``torch.optim.Adam``."""

EPS = 1e-8
"""Adam's epsilon, the default of ``torch.optim.Adam``."""

MAX_GROUP = 32
"""Most children in one group (see :func:`plan_groups`)."""

MIN_GROUPS = 4
"""Fewest groups a request of at least this many children is cut into, so
that a small request (one episode's children) still keeps several cores busy.
On two cores, 4 beat 1 and 8; 2 was faster still there, but leaves larger
machines idle."""

BLOCK_COST = 0.0
"""What one more block costs, in output units of one member. Above zero, a
block takes children of other widths while their padding costs less; measured
on two moons, no setting was faster than zero, which keeps every child's
arithmetic free of its batch-mates."""

INPUT_COST = 0.6
"""Cost of one input row of a block member, relative to one output unit."""

MATMUL_COST = 0.2
"""Cost of one weight of a block member, relative to one output unit."""

COMPACT_SHARE = 0.25
"""Rebuild the batch once this share of its children has finished."""


# activations: forward in place on the pre-activation, backward from the output


def _elu_(z: torch.Tensor) -> torch.Tensor:
    return F.elu_(z)


def _relu_backward_(grad: torch.Tensor, out: torch.Tensor) -> None:
    torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)


def _tanh_backward_(grad: torch.Tensor, out: torch.Tensor) -> None:
    torch.ops.aten.tanh_backward.grad_input(grad, out, grad_input=grad)


def _sigmoid_backward_(grad: torch.Tensor, out: torch.Tensor) -> None:
    torch.ops.aten.sigmoid_backward.grad_input(grad, out, grad_input=grad)


def _elu_backward_(grad: torch.Tensor, out: torch.Tensor) -> None:
    # is_result=True: the derivative comes from the output, which overwrote z
    torch.ops.aten.elu_backward.grad_input(
        grad, 1.0, 1.0, 1.0, True, out, grad_input=grad
    )


FORWARD: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu_,
    "tanh": torch.tanh_,
    "sigmoid": torch.sigmoid_,
    "elu": _elu_,
}
BACKWARD: dict[str, Callable[[torch.Tensor, torch.Tensor], None]] = {
    "relu": _relu_backward_,
    "tanh": _tanh_backward_,
    "sigmoid": _sigmoid_backward_,
    "elu": _elu_backward_,
}


# groups


def plan_groups(
    archs: Sequence[Architecture],
    max_group: int = MAX_GROUP,
    min_groups: int = MIN_GROUPS,
) -> list[list[int]]:
    """Split a request into the groups of children that are trained together.

    Children are grouped by depth (shallow first) and sorted by their layers;
    a depth with more children than the group size is cut into near-equal
    runs. The group size is ``max_group``, or less for a small request: at
    most ``ceil(len(archs) / min_groups)``. The plan depends only on the
    architectures, their order and these two numbers, so every back end and
    every number of processes trains the same groups.

    Parameters
    ----------
    archs : sequence of Architecture
        The request; repeats are planned (and trained) as separate children.
    max_group : int, default :data:`MAX_GROUP`
        Most children in one group.
    min_groups : int, default :data:`MIN_GROUPS`
        Fewest groups for a request of at least that many children.

    Returns
    -------
    list of list of int
        Positions in ``archs``; every position appears in exactly one group.

    Examples
    --------
    >>> archs = [Architecture.parse(t) for t in ("8-relu", "linear", "4-tanh")]
    >>> plan_groups(archs)
    [[1], [2], [0]]
    >>> plan_groups(archs, min_groups=1)
    [[1], [2, 0]]
    """
    if max_group < 1:
        raise ValueError(f"max_group must be positive, got {max_group}")
    if min_groups < 1:
        raise ValueError(f"min_groups must be positive, got {min_groups}")
    size = min(max_group, max(1, math.ceil(len(archs) / min_groups)))
    by_depth: dict[int, list[int]] = {}
    for i, arch in enumerate(archs):
        by_depth.setdefault(arch.depth, []).append(i)

    groups = []
    for depth in sorted(by_depth):
        order = sorted(by_depth[depth], key=lambda i: (archs[i].layers, i))
        num_groups = math.ceil(len(order) / size)
        cuts = [round(j * len(order) / num_groups) for j in range(num_groups + 1)]
        groups += [order[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    return groups


# where each child of a group sits


class _Shapes:
    """Real widths and activations of the children of a group, layer by layer."""

    def __init__(self, archs: Sequence[Architecture], num_in: int, num_out: int):
        depth = archs[0].depth
        sizes = np.array([[num_in, *a.units, num_out] for a in archs]).reshape(
            len(archs), depth + 2
        )
        self.num_children, self.num_layers = len(archs), depth + 1
        self.fan_in = [sizes[:, layer] for layer in range(depth + 1)]
        self.fan_out = [sizes[:, layer + 1] for layer in range(depth + 1)]
        self.activations = [
            [a.activations[layer] for a in archs] for layer in range(depth)
        ]


@dataclass
class _Block:
    """Children that share one matrix product in one layer.

    A member's weights are a (fan_out, fan_in + 1) matrix, the bias last;
    its inputs are fan_in rows and a row of ones.
    """

    members: np.ndarray  # child numbers within the group
    fan_out: int
    fan_in: int
    activation: str | None
    w_offset: int  # into the flat parameters
    row_offset: int  # into the layer's outputs
    in_offset: int  # into the layer's inputs

    @property
    def num_weights(self) -> int:
        return len(self.members) * self.fan_out * (self.fan_in + 1)


def _cost(fan_out: int, fan_in: int) -> float:
    """Work of one block member padded to ``fan_out`` x ``fan_in``."""
    return fan_out + (fan_in + 1) * (INPUT_COST + fan_out * MATMUL_COST)


def _cut_blocks(items: list[tuple[str, int, int, int]]) -> list[list[int]]:
    """Cut ``(activation, fan_out, fan_in, child)`` items into blocks of children.

    Items are sorted; a child joins the open block while the padding it adds
    costs less than a new block would.
    """
    blocks: list[list[int]] = []
    name, fan_out, fan_in = "", 0, 0
    for item_name, out, inp, child in sorted(items):
        if blocks and item_name == name:
            n = len(blocks[-1])
            wide_out, wide_in = max(fan_out, out), max(fan_in, inp)
            extra = (n + 1) * _cost(wide_out, wide_in) - n * _cost(fan_out, fan_in)
            if extra - _cost(out, inp) <= BLOCK_COST:
                blocks[-1].append(child)
                fan_out, fan_in = wide_out, wide_in
                continue
        blocks.append([child])
        name, fan_out, fan_in = item_name, out, inp
    return blocks


class _Layout:
    """Blocks, offsets and row indices for the children still training.

    The outputs of a layer are rows of a matrix, block after block, then a zero
    row and a row of ones; the inputs of every layer but the first are gathered
    from the rows of the layer before.
    The canonical order of children is that of the output layer's blocks.
    """

    def __init__(self, shapes: _Shapes, children: Sequence[int]) -> None:
        num = shapes.num_children
        self.layers: list[list[_Block]] = []
        self.rows: list[int] = []  # outputs per layer
        self.in_rows: list[int] = []  # inputs per layer, bias rows included
        self.w_offset = [np.full(num, -1) for _ in range(shapes.num_layers)]
        self.stride = [np.ones(num, dtype=np.int64) for _ in self.w_offset]
        self.row_start = [np.zeros(num, dtype=np.int64) for _ in self.w_offset]
        offset = 0
        for layer in range(shapes.num_layers):
            offset = self._add_layer(shapes, layer, children, offset)
        self.num_params = offset

        self.order = np.concatenate([b.members for b in self.layers[-1]])
        self.position = np.full(num, -1)
        self.position[self.order] = np.arange(len(self.order))
        slots = [
            np.repeat(self.position[b.members], b.fan_out * (b.fan_in + 1))
            for blocks in self.layers
            for b in blocks
        ]
        self.param_slot = torch.from_numpy(np.concatenate(slots))
        self.gather = [
            self._gather(shapes, layer) for layer in range(shapes.num_layers)
        ]
        self.scatter = [self._scatter(layer) for layer in range(shapes.num_layers)]

    def _add_layer(
        self, shapes: _Shapes, layer: int, children: Sequence[int], offset: int
    ) -> int:
        last = layer == shapes.num_layers - 1
        items = [
            (
                "" if last else shapes.activations[layer][c],
                int(shapes.fan_out[layer][c]),
                int(shapes.fan_in[layer][c]),
                int(c),
            )
            for c in children
        ]
        blocks, rows, in_rows = [], 0, 0
        for block_children in _cut_blocks(items):
            child = np.array(block_children)
            fan_out = int(shapes.fan_out[layer][child].max())
            fan_in = int(shapes.fan_in[layer][child].max())
            name = None if last else shapes.activations[layer][child[0]]
            blocks.append(_Block(child, fan_out, fan_in, name, offset, rows, in_rows))
            position = np.arange(len(child))
            self.w_offset[layer][child] = offset + position * fan_out * (fan_in + 1)
            self.stride[layer][child] = fan_in + 1
            self.row_start[layer][child] = rows + position * fan_out
            offset += blocks[-1].num_weights
            rows += len(child) * fan_out
            in_rows += len(child) * (fan_in + 1)
        self.layers.append(blocks)
        self.rows.append(rows)
        self.in_rows.append(in_rows)
        return offset

    def _gather(self, shapes: _Shapes, layer: int) -> torch.Tensor:
        """Rows of the previous layer's outputs that form the inputs of ``layer``.

        Padded inputs read the zero row (number ``rows``), the bias input the
        row of ones (number ``rows + 1``).
        """
        if layer == 0:
            return torch.zeros(0, dtype=torch.int64)
        rows, parts = self.rows[layer - 1], []
        for block in self.layers[layer]:
            start = self.row_start[layer - 1][block.members][:, None]
            unit = np.arange(block.fan_in + 1)[None, :]
            real = unit < shapes.fan_in[layer][block.members][:, None]
            index = np.where(real, start + unit, rows)
            index[:, -1] = rows + 1
            parts.append(index.reshape(-1))
        return torch.from_numpy(np.concatenate(parts))

    def _scatter(self, layer: int) -> torch.Tensor:
        """Rows of the next layer's input gradients that are the gradients of the
        outputs of ``layer``; padded outputs read the zero row (``in_rows``)."""
        if layer == len(self.layers) - 1:
            return torch.zeros(0, dtype=torch.int64)
        gather = self.gather[layer + 1].numpy()
        index = np.full(self.rows[layer], self.in_rows[layer + 1])
        real = gather < self.rows[layer]
        index[gather[real]] = np.flatnonzero(real)
        return torch.from_numpy(index)


class _Exact:
    """Parameters of each child back to back, unpadded: the initial layout."""

    def __init__(self, shapes: _Shapes) -> None:
        sizes = np.stack(
            [
                shapes.fan_out[layer] * (shapes.fan_in[layer] + 1)
                for layer in range(shapes.num_layers)
            ],
            axis=1,
        )
        starts = np.cumsum(sizes.reshape(-1)) - sizes.reshape(-1)
        starts = starts.reshape(sizes.shape)
        self.w_offset = [starts[:, layer] for layer in range(shapes.num_layers)]
        self.stride = [fan_in + 1 for fan_in in shapes.fan_in]
        self.num_params = int(sizes.sum())


def _source_index(
    old: _Layout | _Exact, shapes: _Shapes, new: _Layout, zero: int
) -> torch.Tensor:
    """For every parameter of ``new``, its place in ``old`` (``zero`` for padding)."""
    parts = []
    for layer, blocks in enumerate(new.layers):
        for block in blocks:
            m = block.members
            offset = old.w_offset[layer][m][:, None, None]
            stride = old.stride[layer][m][:, None, None]
            row = np.arange(block.fan_out)[None, :, None]
            col = np.arange(block.fan_in + 1)[None, None, :]
            bias = col == block.fan_in
            old_col = np.where(bias, stride - 1, col)
            real = (row < shapes.fan_out[layer][m][:, None, None]) & (
                (col < shapes.fan_in[layer][m][:, None, None]) | bias
            )
            parts.append(np.where(real, offset + row * stride + old_col, zero))
    return torch.from_numpy(np.concatenate([p.reshape(-1) for p in parts]))


def _take(flat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``flat[index]``, where the index ``len(flat)`` reads zero."""
    return torch.cat([flat, flat.new_zeros(1)]).index_select(0, index)


def _activation_ranges(layout: _Layout) -> list[list[tuple[str, int, int]]]:
    """Per layer, ``(activation, first row, end row)`` of the outputs: blocks
    come sorted by activation, so each activation is one call."""
    layers = []
    for blocks in layout.layers:
        ranges: list[tuple[str, int, int]] = []
        for block in blocks:
            end = block.row_offset + len(block.members) * block.fan_out
            if block.activation is None:
                continue
            if ranges and ranges[-1][0] == block.activation:
                ranges[-1] = (block.activation, ranges[-1][1], end)
            else:
                ranges.append((block.activation, block.row_offset, end))
        layers.append(ranges)
    return layers


# one group


@contextmanager
def single_thread() -> Iterator[None]:
    """Run PyTorch on one thread inside the block, then restore the setting.

    A fixed thread count keeps results bit-identical across processes and back
    ends, since a reduction may split its terms by thread.
    """
    previous = torch.get_num_threads()
    if previous != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if previous != 1:
            torch.set_num_threads(previous)


def train_group(
    archs: Sequence[Architecture],
    data: Dataset,
    config: TrainConfig | None = None,
    seed: int = 0,
    keep_history: bool = False,
    warn: bool = True,
) -> list[ChildResult]:
    """Train children of one depth together, as :func:`train_child` would.

    Use :func:`train_batch` for a request of any architectures; a group is the
    unit of work a back end ships (see :func:`plan_groups`).

    Parameters
    ----------
    archs : sequence of Architecture
        Children of one depth.
    data : Dataset
    config : TrainConfig, optional
    seed : int, default 0
        With each architecture, fixes its initial weights (see
        :func:`~automl_lib.child.init_weights`).
    keep_history : bool, default False
        Return per-epoch ``loss`` and ``val_accuracy`` lists.
    warn : bool, default True
        Warn with :class:`~automl_lib.child.NonFiniteLossWarning` for each
        child whose loss became non-finite. Back ends that run groups in other
        processes pass False and call :func:`warn_if_diverged` at home.

    Returns
    -------
    list of ChildResult
        In the order of ``archs``, with the weights of each child's best epoch.
    """
    config = config or TrainConfig()
    if not archs:
        return []
    if len({a.depth for a in archs}) > 1:
        raise ValueError("train_group needs children of one depth; see plan_groups")
    with torch.no_grad(), single_thread():
        results = _Trainer(archs, data, config, seed, keep_history).run()
    if warn:
        results = [warn_if_diverged(r) for r in results]
    return results


def warn_if_diverged(result: ChildResult) -> ChildResult:
    """Warn about ``result`` if its loss became non-finite; return it.

    Worker processes cannot warn their caller: the caller runs this on what
    they send back.
    """
    if result.status != "non-finite":
        return result
    return diverged_result(result.architecture, result.epochs_trained)


class _Points:
    """The data as the trainer reads it: points as columns, training points
    sorted by label so that each class is a slice."""

    def __init__(self, data: Dataset, dtype: torch.dtype) -> None:
        order = np.argsort(data.y_train, kind="stable")
        X = np.concatenate([data.X_train[order], data.X_val]).T
        self.X = torch.ones(len(X) + 1, X.shape[1], dtype=dtype)  # last row: ones
        self.X[:-1] = torch.as_tensor(X, dtype=dtype)
        self.num_train, self.num_val = len(data.y_train), len(data.y_val)
        counts = np.bincount(data.y_train, minlength=data.num_classes)
        bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()
        self.classes = list(zip(bounds[:-1], bounds[1:], strict=True))
        self.y_val = torch.as_tensor(data.y_val).view(1, -1)


class _Trainer:
    """The epoch loop of one group: forward, early stopping, backward, Adam."""

    def __init__(
        self,
        archs: Sequence[Architecture],
        data: Dataset,
        config: TrainConfig,
        seed: int,
        keep_history: bool,
    ) -> None:
        dtype = self.dtype = config.torch_dtype
        self.archs, self.config, self.keep_history = list(archs), config, keep_history
        self.num_classes = data.num_classes
        self.points = _Points(data, dtype)
        self.shapes = shapes = _Shapes(archs, data.num_features, data.num_classes)

        num = len(archs)
        self.results: list[ChildResult | None] = [None] * num
        # per-epoch records, only when asked for; they grow with the epochs
        self.record = keep_history or config.reward_rule == "last5"
        self.val_counts = torch.zeros(num, 0, dtype=torch.int64)
        self.losses = torch.zeros(num, 0, dtype=torch.float64)

        # initial weights, unpadded and back to back, then laid out in blocks
        initial = [
            torch.cat([W, b.unsqueeze(1)], dim=1).reshape(-1)
            for arch in archs
            for W, b in init_weights(
                arch, data.num_features, data.num_classes, seed, dtype
            )
        ]
        exact = _Exact(shapes)
        self.layout = _Layout(shapes, range(num))
        source = _source_index(exact, shapes, self.layout, exact.num_params)
        self.params = _take(torch.cat(initial), source)
        self.exp_avg = torch.zeros_like(self.params)
        self.exp_avg_sq = torch.zeros_like(self.params)
        self.best = self.params.clone()
        self.best_count = torch.full((num,), -1, dtype=torch.int64)
        self.best_epoch = torch.zeros(num, dtype=torch.int64)
        self.since_best = torch.zeros(num, dtype=torch.int64)
        self.alive = torch.ones(num, dtype=torch.bool)
        self.num_alive = num
        self._allocate()

    def _allocate(self) -> None:
        """Buffers and views for the current layout."""
        layout, dtype = self.layout, self.dtype
        X, n = self.points.X, self.points.num_train
        points = X.shape[1]
        self.grad = torch.zeros_like(self.params)
        self.denom = torch.zeros_like(self.params)
        self.order = torch.from_numpy(layout.order)

        # outputs end with a zero row and a row of ones, input gradients with a
        # zero row: padding reads them; the first layer's inputs are X itself
        self.Z = [torch.zeros(r + 2, points, dtype=dtype) for r in layout.rows]
        for Z in self.Z:
            Z[-1] = 1
        self.dZ = [torch.zeros(r, n, dtype=dtype) for r in layout.rows]
        self.H = [X] + [torch.zeros(r, points, dtype=dtype) for r in layout.in_rows[1:]]
        self.dH = [X[:, :0]]
        self.dH += [torch.zeros(r + 1, n, dtype=dtype) for r in layout.in_rows[1:]]

        # every block of the first layer shares its inputs: one matrix product
        first = sum(b.num_weights for b in layout.layers[0])
        self.first_W = self.params[:first].view(-1, len(X))
        self.first_dW = self.grad[:first].view(-1, len(X))
        self.first_Z = self.Z[0][: layout.rows[0]]

        self.blocks: list[list[_BlockViews]] = [[]] + [
            [self._views(layer, block) for block in blocks]
            for layer, blocks in enumerate(layout.layers)
            if layer > 0
        ]
        self.activations = [
            [(name, self.Z[layer][a:b], self.dZ[layer][a:b]) for name, a, b in ranges]
            for layer, ranges in enumerate(_activation_ranges(layout))
        ]
        classes, num = self.num_classes, len(layout.order)
        self.logits = self.Z[-1][:-2].view(num, classes, points)
        self.dlogits = self.dZ[-1].view(num, classes, n)

    def _views(self, layer: int, block: _Block) -> _BlockViews:
        k, out, inp = len(block.members), block.fan_out, block.fan_in + 1
        w = slice(block.w_offset, block.w_offset + block.num_weights)
        z = slice(block.row_offset, block.row_offset + k * out)
        h = slice(block.in_offset, block.in_offset + k * inp)
        return _BlockViews(
            self.params[w].view(k, out, inp),
            self.grad[w].view(k, out, inp),
            self.Z[layer][z].view(k, out, -1),
            self.dZ[layer][z].view(k, out, -1),
            self.H[layer][h].view(k, inp, -1),
            self.dH[layer][h].view(k, inp, -1),
        )

    def compact(self) -> None:
        """Rebuild the batch from the children still training."""
        children = self.layout.order[self.alive.numpy()]
        new = _Layout(self.shapes, children)
        source = _source_index(self.layout, self.shapes, new, self.layout.num_params)
        for name in ("params", "exp_avg", "exp_avg_sq", "best"):
            setattr(self, name, _take(getattr(self, name), source))
        keep = torch.from_numpy(self.layout.position[new.order])
        for name in ("best_count", "best_epoch", "since_best", "alive"):
            setattr(self, name, getattr(self, name).index_select(0, keep))
        self.layout = new
        self._allocate()

    def run(self) -> list[ChildResult]:
        max_epochs, n = self.config.max_epochs, self.points.num_train
        for epoch in range(max_epochs + 1):
            if self.num_alive <= (1 - COMPACT_SHARE) * len(self.alive):
                self.compact()

            # one pass gives the accuracy of epoch and the loss of epoch + 1
            self.forward()
            if epoch > 0:
                self.early_stopping(self.logits[:, :, n:], epoch)
            if epoch == max_epochs or not self.num_alive:
                break
            loss = self.loss(self.logits[:, :, :n])
            finite = torch.isfinite(loss)
            if not bool(finite.all()):
                diverged = ~finite & self.alive
                if bool(diverged.any()):
                    self.finish_diverged(diverged, epoch)
                    if not self.num_alive:
                        break
            if self.keep_history:
                self.losses = _grown(self.losses, epoch)
                self.losses[self.order, epoch] = loss.to(torch.float64)
            self.backward()
            self.adam_step(epoch + 1)
        self.finish(self.alive, max_epochs)
        return [r for r in self.results if r is not None]

    def forward(self) -> None:
        for layer, blocks in enumerate(self.blocks):
            if layer == 0:
                torch.mm(self.first_W, self.points.X, out=self.first_Z)
            else:
                gather = self.layout.gather[layer]
                torch.index_select(self.Z[layer - 1], 0, gather, out=self.H[layer])
            for block in blocks:
                torch.bmm(block.W, block.H, out=block.Z)
            for name, Z, _ in self.activations[layer]:
                FORWARD[name](Z)

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy per child (C,); its gradient goes to ``dlogits``."""
        n = self.points.num_train
        largest = logits[:, 0]
        for k in range(1, logits.shape[1]):
            largest = torch.maximum(largest, logits[:, k])
        shifted = logits - largest.unsqueeze(1)
        picked = sum(
            shifted[:, k, a:b].sum(dim=1)
            for k, (a, b) in enumerate(self.points.classes)
        )
        exp = shifted.exp_()
        total = exp[:, 0]
        for k in range(1, logits.shape[1]):
            total = total + exp[:, k]
        loss = (total.log().sum(dim=1) - picked) / n
        torch.div(exp, total.unsqueeze(1), out=self.dlogits)
        for k, (a, b) in enumerate(self.points.classes):
            self.dlogits[:, k, a:b] -= 1
        self.dlogits.div_(n)
        return loss  # type: ignore[return-value]

    def backward(self) -> None:
        """Gradients into ``self.grad``, from the output layer down."""
        n, last = self.points.num_train, len(self.blocks) - 1
        for layer in range(last, -1, -1):
            if layer < last:
                scatter = self.layout.scatter[layer]
                torch.index_select(self.dH[layer + 1], 0, scatter, out=self.dZ[layer])
                for name, Z, dZ in self.activations[layer]:
                    BACKWARD[name](dZ, Z[:, :n])
            for block in self.blocks[layer]:
                torch.bmm(block.dZ, block.H_train_T, out=block.dW)
                torch.bmm(block.W_T, block.dZ, out=block.dH)
        # (inputs, units) is the fast orientation for a shared input
        self.first_dW.copy_(torch.mm(self.points.X[:, :n], self.dZ[0].T).T)

    def adam_step(self, step: int) -> None:
        """``torch.optim.Adam``'s update, term by term, on the flat buffers."""
        lr, (beta1, beta2) = self.config.lr, BETAS
        self.exp_avg.lerp_(self.grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(self.grad, self.grad, value=1 - beta2)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        torch.sqrt(self.exp_avg_sq, out=self.denom)
        self.denom.div_(bias_correction2**0.5).add_(EPS)
        self.params.addcdiv_(self.exp_avg, self.denom, value=-step_size)

    def early_stopping(self, logits: torch.Tensor, epoch: int) -> None:
        """Record the accuracy of ``epoch``, keep the best weights, stop children."""
        correct = (_argmax(logits) == self.points.y_val).sum(dim=1)
        if self.record:
            self.val_counts = _grown(self.val_counts, epoch - 1)
            self.val_counts[self.order, epoch - 1] = correct
        improved = correct > self.best_count
        if bool(improved.any()):
            # lerp by 0 or 1 copies exactly, and much faster than where
            mask = improved.to(self.dtype).index_select(0, self.layout.param_slot)
            self.best.lerp_(self.params, mask)
        torch.maximum(self.best_count, correct, out=self.best_count)
        self.best_epoch.masked_fill_(improved, epoch)
        self.since_best.add_(1).masked_fill_(improved, 0)
        stop = (self.since_best >= self.config.patience) & self.alive
        if bool(stop.any()):
            self.finish(stop, epoch)

    def finish(self, done: torch.Tensor, epochs: int) -> None:
        """Results of the children marked ``done`` (C,), which stop training."""
        num_val = self.points.num_val
        for i in torch.nonzero(done).flatten().tolist():
            child = int(self.layout.order[i])
            best = int(self.best_count[i]) / num_val
            # compute_reward reads the list only for the "last5" rule
            counts = self.val_counts[child, :epochs].tolist() if self.record else []
            val_accuracies = [c / num_val for c in counts]
            history = None
            if self.keep_history:
                losses = self.losses[child, :epochs].tolist()
                history = {"loss": losses, "val_accuracy": val_accuracies}
            self.results[child] = ChildResult(
                self.archs[child],
                compute_reward(val_accuracies, best, self.config),
                best,
                int(self.best_epoch[i]),
                epochs,
                weights=self.child_weights(child),
                history=history,
            )
        self.alive &= ~done
        self.num_alive = int(self.alive.sum())

    def finish_diverged(self, diverged: torch.Tensor, epochs: int) -> None:
        """Children whose next loss is non-finite get the defined outcome."""
        for i in torch.nonzero(diverged).flatten().tolist():
            child = int(self.layout.order[i])
            arch = self.archs[child]
            self.results[child] = ChildResult(arch, 0.0, 0.0, 0, epochs, "non-finite")
        self.alive &= ~diverged
        self.num_alive = int(self.alive.sum())

    def child_weights(self, child: int) -> Weights:
        """Best weights of ``child`` without padding, as NumPy copies."""
        pairs = []
        for layer in range(self.shapes.num_layers):
            start, stride = (
                self.layout.w_offset[layer][child],
                self.layout.stride[layer][child],
            )
            fan_out = self.shapes.fan_out[layer][child]
            fan_in = self.shapes.fan_in[layer][child]
            Wb = self.best[start : start + fan_out * stride].view(fan_out, stride)
            pairs.append((Wb[:, :fan_in].numpy().copy(), Wb[:, -1].numpy().copy()))
        return tuple(pairs)


class _BlockViews:
    """One block's slices of the batch buffers, in a layer after the first.

    W, dW (k, out, in + 1) with the bias last; Z (k, out, points); dZ (k, out,
    train points); H (k, in + 1, points); dH (k, in + 1, train points).
    """

    def __init__(
        self,
        W: torch.Tensor,
        dW: torch.Tensor,
        Z: torch.Tensor,
        dZ: torch.Tensor,
        H: torch.Tensor,
        dH: torch.Tensor,
    ) -> None:
        n = dZ.shape[2]
        self.W, self.W_T, self.dW = W, W.transpose(1, 2), dW
        self.Z, self.dZ = Z, dZ
        self.H, self.H_train_T = H, H[:, :, :n].transpose(1, 2)
        self.dH = dH


def _grown(record: torch.Tensor, column: int) -> torch.Tensor:
    """``record`` (children, epochs), with room for ``column`` at least."""
    if column < record.shape[1]:
        return record
    wider = record.new_zeros(record.shape[0], max(2 * record.shape[1], 64))
    wider[:, : record.shape[1]] = record
    return wider


def _argmax(logits: torch.Tensor) -> torch.Tensor:
    """``logits.argmax(dim=1)`` for few classes: the first maximum, NaN the
    largest, as in PyTorch, but without a slow reduction over a short axis."""
    best, index = logits[:, 0], None
    for k in range(1, logits.shape[1]):
        value = logits[:, k]
        better = (value > best) | (value.isnan() & ~best.isnan())
        if index is None:
            index = better.to(torch.int64)
        else:
            index.masked_fill_(better, k)
        best = torch.maximum(best, value)  # NaN sticks, as in argmax
    return index if index is not None else torch.zeros(best.shape, dtype=torch.int64)


# a whole request


def parallel_map(
    function: Callable[[T], R], items: Sequence[T], processes: int = 1
) -> list[R]:
    """``[function(item) for item in items]``, in worker processes if asked.

    Parameters
    ----------
    function : callable
        Picklable (defined at module level) when ``processes > 1``.
    items : sequence
    processes : int, default 1
        1 runs here, on one PyTorch thread. More uses that many loky workers
        (joblib) with one thread each; they work from a notebook and under the
        spawn start method, and end with this process.

    Returns
    -------
    list
        Results in the order of ``items``.
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    if processes == 1 or len(items) <= 1:
        with single_thread():
            return [function(item) for item in items]

    from joblib import Parallel, delayed

    # idle workers leave after a short wait, so they also end soon after this
    # process is killed (loky's default wait is five minutes)
    parallel = Parallel(
        n_jobs=processes, backend="loky", batch_size=1, idle_worker_timeout=10
    )
    return list(parallel(delayed(_in_worker)(function, item) for item in items))


def _in_worker(function: Callable[[T], R], item: T) -> R:
    torch.set_num_threads(1)
    return function(item)


@dataclass(frozen=True)
class GroupTask:
    """One group of a request as a picklable unit of work: call it to train."""

    archs: tuple[Architecture, ...]
    data: Dataset
    config: TrainConfig
    seed: int
    keep_history: bool = False

    def __call__(self) -> list[ChildResult]:
        return train_group(
            self.archs, self.data, self.config, self.seed, self.keep_history, False
        )

    @property
    def cost(self) -> float:
        """Rough relative cost, to start the costly groups first."""
        return float(sum(_cost(sum(a.units) + 2, 2) for a in self.archs))


def plan_tasks(
    archs: Sequence[Architecture],
    data: Dataset,
    config: TrainConfig | None = None,
    seed: int = 0,
    keep_history: bool = False,
    max_group: int = MAX_GROUP,
) -> tuple[list[list[int]], list[GroupTask]]:
    """The groups of :func:`plan_groups` and a task that trains each."""
    config = config or TrainConfig()
    groups = plan_groups(archs, max_group)
    tasks = [
        GroupTask(tuple(archs[i] for i in g), data, config, seed, keep_history)
        for g in groups
    ]
    return groups, tasks


def _run_task(task: GroupTask) -> list[ChildResult]:
    return task()


def train_batch(
    archs: Sequence[Architecture],
    data: Dataset,
    config: TrainConfig | None = None,
    seed: int = 0,
    processes: int = 1,
    keep_history: bool = False,
    max_group: int = MAX_GROUP,
) -> list[ChildResult]:
    """Train many children at once under the protocol of :func:`train_child`.

    The same initial weights, full-batch Adam, order of each epoch (loss, step,
    validation accuracy of the new weights), early stopping, kept weights and
    reward as the reference trainer; only the rounding of sums differs.

    Parameters
    ----------
    archs : sequence of Architecture
        Any mix of depths, widths and activations; repeats are trained again.
    data : Dataset
    config : TrainConfig, optional
    seed : int, default 0
    processes : int, default 1
        Worker processes; results are bit-identical for every value.
    keep_history : bool, default False
        Return per-epoch ``loss`` and ``val_accuracy`` lists.
    max_group : int, default :data:`MAX_GROUP`
        Most children trained together, see :func:`plan_groups`.

    Returns
    -------
    list of ChildResult
        In the order of ``archs``.

    Warns
    -----
    NonFiniteLossWarning
        For each child whose loss became non-finite; its reward is 0.

    Examples
    --------
    >>> from automl_lib.data import make_two_moons
    >>> archs = [Architecture.parse("8-tanh 4-relu"), Architecture.parse("linear")]
    >>> config = TrainConfig(max_epochs=20, patience=5)
    >>> [r.epochs_trained for r in train_batch(archs, make_two_moons(), config)]
    [20, 20]
    """
    groups, tasks = plan_tasks(archs, data, config, seed, keep_history, max_group)
    # costly groups first, so that the last to finish is a cheap one
    order = sorted(range(len(tasks)), key=lambda k: -tasks[k].cost)
    done = parallel_map(_run_task, [tasks[k] for k in order], processes)
    logger.debug("trained %d children in %d groups", len(archs), len(groups))

    results: list[ChildResult | None] = [None] * len(archs)
    for k, group_results in zip(order, done, strict=True):
        for i, result in zip(groups[k], group_results, strict=True):
            results[i] = warn_if_diverged(result)
    return [r for r in results if r is not None]
