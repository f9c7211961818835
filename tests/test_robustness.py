"""Bad inputs at the boundary, and the README table that lists them.

Every row of :data:`ROWS` is run here and must give exactly its message; the
README's bad-input table is rendered from the same rows, so the two cannot
drift apart. After changing a row, rewrite the README's table with

    python tests/test_robustness.py
"""

import hashlib
import io
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from automl_lib import __version__, cli
from automl_lib.child import NonFiniteLossWarning, TrainConfig
from automl_lib.controller import Controller
from automl_lib.data import from_arrays, from_splits  # noqa: F401 - used by rows
from automl_lib.evaluation import ChildEvaluator
from automl_lib.reinforce import SearchConfig  # noqa: F401 - used by rows
from automl_lib.runs import (
    CHECKPOINT,
    MANIFEST,
    RUN_SETTINGS,
    SUMMARY,
    read_json,
    write_json,
)
from automl_lib.search_space import Architecture, SearchSpace

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- bad-input-table:start -->", "<!-- bad-input-table:end -->"

# small arrays the data rows use: 40 points, two features, two classes
X = np.random.default_rng(0).normal(size=(40, 2))
y = np.arange(40) % 2
X_nan = X.copy()
X_nan[3, 1] = np.nan
y_rare = np.r_[np.zeros(38, dtype=int), [1, 1]]


# run folders the rows start from -------------------------------------------

CHEAP = ["--max-epochs", "5", "--trainer", "reference", "--processes", "1"]
CHEAP += ["--no-progress"]
TINY = ["search", "--episodes", "1", "--batch-size", "2", *CHEAP]


def finished_run(folder: Path) -> None:
    assert cli.main([*TINY, "--out", str(folder)]) == 0


def unfinished_run(folder: Path) -> None:
    finished_run(folder)
    (folder / SUMMARY).unlink()


def random_run(folder: Path) -> None:
    assert cli.main(["random", "--num", "2", *CHEAP, "--out", str(folder)]) == 0


def run_of_another_version(folder: Path) -> None:
    unfinished_run(folder)
    settings = read_json(folder / RUN_SETTINGS)
    write_json(folder / RUN_SETTINGS, {**settings, "library_version": "0.0.1"})


class Payload:
    """Unpickling this creates a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def run_with_crafted_checkpoint(folder: Path) -> None:
    unfinished_run(folder)
    buffer = io.BytesIO()
    torch.save({"strategy": Payload(folder.parent / "marker")}, buffer)
    data = buffer.getvalue()
    (folder / CHECKPOINT / "state-000001.pt").write_bytes(data)
    # the digest is easy to fix too; the loader must refuse on its own
    manifest = read_json(folder / CHECKPOINT / MANIFEST)
    manifest["state"]["sha256"] = hashlib.sha256(data).hexdigest()
    write_json(folder / CHECKPOINT / MANIFEST, manifest)


def controller_of_another_version(folder: Path) -> None:
    folder.mkdir()
    payload = Controller(SearchSpace()).to_payload()
    torch.save({**payload, "library_version": "0.0.1"}, folder / "controller.pt")


def folder_with_notes(folder: Path) -> None:
    folder.mkdir()
    (folder / "notes.txt").write_text("not a run")


# the rows -------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One bad input: code ``shown`` (and a ``note`` on DIR) gets ``message``."""

    shown: str
    message: str
    argv: tuple[str, ...] = ()
    expr: str = ""
    setup: object = None
    note: str = ""


def cli_row(argv: str, message: str, setup=None, note: str = "") -> Row:
    return Row(argv, "error: " + message, tuple(argv.split()), setup=setup, note=note)


def lib_row(expr: str, message: str, setup=None, note: str = "") -> Row:
    return Row(expr, message, expr=expr, setup=setup, note=note)


ROWS = [
    # search space
    lib_row("SearchSpace(units=(0, 8))", "ValueError: units must be positive, got 0"),
    lib_row("SearchSpace(units=(-2, 8))", "ValueError: units must be positive, got -2"),
    lib_row(
        "SearchSpace(units=(1.5, 8))", "TypeError: units must be an integer, got 1.5"
    ),
    lib_row(
        "SearchSpace(units=('8', 4))",
        "TypeError: units must be integers, got the string '8'",
    ),
    lib_row(
        "SearchSpace(units=(4, 4))", "ValueError: units must be distinct, got [4, 4]"
    ),
    lib_row("SearchSpace(units=())", "ValueError: units must not be empty"),
    lib_row(
        "SearchSpace(units=(10**6,))",
        "ValueError: units must be at most 4096, got 1000000",
    ),
    lib_row(
        "SearchSpace(activations=('relu', 'swish'))",
        "ValueError: activations: unknown activation 'swish'; "
        "choose from ('relu', 'tanh', 'sigmoid', 'elu')",
    ),
    lib_row("SearchSpace(activations=())", "ValueError: activations must not be empty"),
    lib_row(
        "SearchSpace(max_layers=0)",
        "ValueError: max_layers must be between 1 and 64, got 0",
    ),
    lib_row(
        "SearchSpace(max_layers=10**6)",
        "ValueError: max_layers must be between 1 and 64, got 1000000",
    ),
    lib_row(
        "SearchSpace(max_layers=2.0)",
        "TypeError: max_layers must be an integer, got 2.0",
    ),
    lib_row("SearchSpace(units=np.array([2, 4]), max_layers=np.int64(3))", "accepted"),
    cli_row("search --units 0 8", "--units must be positive, got 0"),
    cli_row("search --units 1.5 8", "--units must be integers, got '1.5'"),
    cli_row("search --units eight", "--units must be integers, got 'eight'"),
    cli_row("search --units 8 8", "--units must be distinct, got [8, 8]"),
    cli_row(
        "search --activations relu swish",
        "--activations: unknown activation 'swish'; "
        "choose from ('relu', 'tanh', 'sigmoid', 'elu')",
    ),
    cli_row("search --max-layers 0", "--max-layers must be >= 1, got 0"),
    cli_row(
        "search --max-layers 100", "--max-layers must be between 1 and 64, got 100"
    ),
    # data
    lib_row(
        "from_arrays(X_nan, y)", "ValueError: X holds 1 non-finite values (NaN or inf)"
    ),
    lib_row(
        "from_arrays(X, np.zeros(40, dtype=int))",
        "ValueError: y must hold at least two classes, got only [0]",
    ),
    lib_row(
        "from_arrays(X, y.astype(float))",
        "TypeError: y must hold integer class labels, got dtype float64",
    ),
    lib_row(
        "from_arrays(X, np.eye(2)[y])",
        "ValueError: y must be 1-D class labels, got shape (40, 2) "
        "(one-hot? use argmax)",
    ),
    lib_row(
        "from_arrays(X, y[:, None])",
        "ValueError: y must be 1-D class labels, got shape (40, 1)",
    ),
    lib_row(
        "from_arrays(X, y[:-1])", "ValueError: y has 39 labels but X has 40 points"
    ),
    lib_row(
        "from_arrays(X, 2 * y)",
        "ValueError: y must use every label 0..2, but label 1 has no points; "
        "renumber the classes",
    ),
    lib_row(
        "from_arrays(X, y, split=(0.98, 0.01, 0.01))",
        "ValueError: split (0.98, 0.01, 0.01) of 40 points leaves an empty part "
        "(train 40, val 0, test 0)",
    ),
    lib_row(
        "from_arrays(X, y, split=(0.8, 0.2, 0))",
        "ValueError: split parts must be finite positive numbers, got (0.8, 0.2, 0)",
    ),
    lib_row(
        "from_arrays(X, y_rare)",
        "ValueError: the test split of 4 points misses classes [1]; "
        "use more points or another split",
    ),
    lib_row(
        "from_splits(X, y, X[:, :1], y, X, y)",
        "ValueError: X_val has 1 features but X_train has 2",
    ),
    lib_row(
        "from_splits(X, y, X, 0 * y, X, y)",
        "ValueError: y_val misses classes [1] of 0..1; every split needs every class",
    ),
    lib_row(
        "from_splits(X, y, X, y, X, y.astype(float))",
        "TypeError: y_test must hold integer class labels, got dtype float64",
    ),
    # settings
    lib_row(
        "TrainConfig(max_epochs=0)",
        "ValueError: max_epochs must be a positive integer, got 0",
    ),
    lib_row(
        "TrainConfig(max_epochs=2.5)",
        "TypeError: max_epochs must be a positive integer, got 2.5",
    ),
    lib_row(
        "TrainConfig(lr=0)", "ValueError: lr must be a finite positive number, got 0"
    ),
    lib_row("TrainConfig(lr=1e40)", "ValueError: lr must be at most 1e+30, got 1e+40"),
    lib_row(
        "TrainConfig(reward_exponent=float('nan'))",
        "ValueError: reward_exponent must be a finite positive number, got nan",
    ),
    lib_row(
        "SearchConfig(episodes=0)",
        "ValueError: episodes must be between 1 and 10000000, got 0",
    ),
    lib_row(
        "SearchConfig(batch_size=1.5)",
        "TypeError: batch_size must be a positive integer, got 1.5",
    ),
    lib_row(
        "SearchConfig(lr=-0.1)",
        "ValueError: lr must be a finite positive number, got -0.1",
    ),
    lib_row(
        "SearchConfig(entropy_weight=float('inf'))",
        "ValueError: entropy_weight must be a finite number, got inf",
    ),
    cli_row("search --episodes 0", "--episodes must be >= 1, got 0"),
    cli_row("search --episodes 2.5", "--episodes must be an integer, got '2.5'"),
    cli_row("search --episodes 1_000", "--episodes must be an integer, got '1_000'"),
    cli_row(
        "search --max-epochs 1000000000",
        "--max-epochs must be at most 100000, got 1000000000",
    ),
    cli_row("search --batch-size -3", "--batch-size must be >= 1, got -3"),
    cli_row("search --max-epochs 0", "--max-epochs must be >= 1, got 0"),
    cli_row("search --lr 0", "--lr must be a positive number, got '0'"),
    cli_row("search --child-lr -1", "--child-lr must be a positive number, got '-1'"),
    cli_row("search --child-lr 1e40", "--child-lr must be at most 1e+30, got 1e+40"),
    cli_row(
        "search --reward-exponent nan",
        "--reward-exponent must be a finite number, got 'nan'",
    ),
    cli_row(
        "search --reward-exponent -1",
        "--reward-exponent must be a finite positive number, got -1.0",
    ),
    cli_row(
        "search --entropy-weight inf",
        "--entropy-weight must be a finite number, got 'inf'",
    ),
    cli_row("search --seed -1", "--seed must be >= 0, got -1"),
    cli_row("random --num 0", "--num must be >= 1, got 0"),
    cli_row(
        "search --trainer fast",
        "argument --trainer: invalid choice: 'fast' (choose from 'batched', "
        "'reference') (see python -m automl_lib search --help)",
    ),
    # run folders and saved controllers
    cli_row(
        "search --out DIR",
        "--out: run folder DIR already exists; choose another folder, resume it "
        "(--resume), or pass overwrite (--overwrite) to replace it",
        setup=finished_run,
        note="DIR an existing run",
    ),
    cli_row(
        "search --out DIR --overwrite",
        "--out: DIR is not empty and is not a run folder; refusing to delete it, "
        "even with overwrite",
        setup=folder_with_notes,
        note="DIR not a run folder",
    ),
    cli_row(
        "search --resume DIR --episodes 5",
        "--resume continues DIR with the settings stored there; leave out --episodes",
        setup=unfinished_run,
        note="DIR an unfinished run",
    ),
    cli_row(
        "search --resume DIR --seed 0 --lr=0.01",
        "--resume continues DIR with the settings stored there; leave out --seed --lr",
        setup=unfinished_run,
        note="DIR an unfinished run; options at their default values",
    ),
    cli_row(
        "search --resume DIR",
        "--resume: DIR holds a 'random' run, not a search",
        setup=random_run,
        note="DIR a random run",
    ),
    cli_row(
        "search --resume DIR",
        "--resume: DIR is not a run folder",
        note="DIR missing",
    ),
    cli_row(
        "search --resume DIR",
        "--resume: DIR/run.json was written by automl_lib 0.0.1; this is "
        f"automl_lib {__version__}, which only continues its own runs",
        setup=run_of_another_version,
        note="DIR from automl_lib 0.0.1",
    ),
    cli_row(
        "search --resume DIR",
        "--resume: refused to load checkpoint file DIR/checkpoint/state-000001.pt: "
        "it holds more than tensors and plain data (Unsupported global: GLOBAL "
        "io.open), and unpickling it could run code",
        setup=run_with_crafted_checkpoint,
        note="a checkpoint whose unpickling would run code",
    ),
    lib_row(
        "Controller.load(DIR / 'controller.pt', SearchSpace(units=(1, 2)))",
        "ValueError: DIR/controller.pt was trained on another search space "
        "(units: (1, 2, 4, 8, 16, 32) vs (1, 2); saved vs requested)",
        setup=finished_run,
        note="DIR a finished run",
    ),
    lib_row(
        "Controller.load(DIR / 'controller.pt')",
        "ValueError: DIR/controller.pt was saved by automl_lib 0.0.1; "
        f"this is automl_lib {__version__}",
        setup=controller_of_another_version,
        note="saved by automl_lib 0.0.1",
    ),
]


def outcome(row: Row, folder: Path, capsys) -> str:
    """Run one row; return its message as the README shows it."""
    if row.setup is not None:
        row.setup(folder)
        capsys.readouterr()
    if row.argv:
        argv = [str(folder) if word == "DIR" else word for word in row.argv]
        try:
            status = cli.main(argv)
        except SystemExit as stop:
            status = stop.code
        err = capsys.readouterr().err
        assert status == cli.EXIT_USAGE, err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        message = err.strip()
    else:
        namespace = {**globals(), "DIR": folder}
        try:
            eval(row.expr, namespace)  # noqa: S307 - the rows are this file's code
        except (TypeError, ValueError) as error:
            message = f"{type(error).__name__}: {error}"
        else:
            message = "accepted"
    return message.replace(str(folder), "DIR")


@pytest.mark.parametrize(
    "row", ROWS, ids=[f"{r.shown} ({r.note})" if r.note else r.shown for r in ROWS]
)
def test_bad_input_gets_its_message(row, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert outcome(row, tmp_path / "run", capsys) == row.message
    # nothing ran from a crafted file, and no run folder appeared by accident
    assert not (tmp_path / "marker").exists()
    assert not (tmp_path / "runs").exists()


def render_table() -> str:
    """The README's table: one row per bad input, in the order of ROWS."""
    lines = ["| input | message |", "|---|---|"]
    for row in ROWS:
        shown = f"`python -m automl_lib {row.shown}`" if row.argv else f"`{row.shown}`"
        if row.note:
            shown += f" ({row.note})"
        lines.append(f"| {shown} | `{row.message}` |")
    return "\n".join(lines)


CAPTION = (
    "Each row runs in `tests/test_robustness.py`, which also checks this table.\n"
    "There `X` is 40 points with two features, `y` is 0, 1, 0, 1, ..., `X_nan` is "
    "`X` with one NaN, `y_rare` gives class 1 only two points, and `DIR` is a run "
    "folder.\n"
    "Rewrite the table with `python tests/test_robustness.py`."
)


def render_region() -> str:
    """What stands between the README's markers."""
    return CAPTION + "\n\n" + render_table()


def readme_span(text: str) -> tuple[int, int]:
    """Start and end of the text strictly between the README's markers."""
    start, end = text.find(START), text.find(END)
    assert 0 <= start < end, "the README has lost its bad-input-table markers"
    return start + len(START), end


def test_readme_table_matches_the_rows():
    text = README.read_text(encoding="utf-8")
    start, end = readme_span(text)
    assert text[start:end].strip() == render_region(), (
        "the README's bad-input table is out of date; run "
        "`python tests/test_robustness.py` to rewrite it"
    )


# behaviour beyond the table ---------------------------------------------------


def test_numpy_integers_are_ordinary_integers():
    space = SearchSpace(units=np.array([2, 4]), max_layers=np.int64(3))
    assert space.units == (2, 4) and type(space.max_layers) is int
    assert all(type(u) is int for u in space.units)
    assert json.loads(json.dumps(space.to_dict())) == space.to_dict()


def test_from_splits_keeps_the_given_splits():
    data = from_splits(X, y, X[:10], y[:10], X[:6], y[:6], name="mine")
    assert data.sizes == (40, 10, 6) and data.num_classes == 2
    assert data.X_train.dtype == np.float32 and data.y_val.dtype == np.int64


def test_diverging_child_gets_reward_zero_and_a_warning_naming_it(moons):
    evaluator = ChildEvaluator(
        moons, TrainConfig(max_epochs=10, lr=1e20), trainer="reference"
    )
    arch = Architecture.parse("8-relu")
    with pytest.warns(NonFiniteLossWarning, match="child 8-relu"):
        (result,) = evaluator.evaluate([arch])
    assert result.status == "non-finite" and result.reward == 0.0
    assert result.weights is None

    # asked again, the cached result keeps its status
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (again,) = evaluator.evaluate([arch])
    assert again.cached and again.status == "non-finite"


def rewrite_readme() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = readme_span(text)
    region = "\n\n" + render_region() + "\n\n"
    README.write_text(text[:start] + region + text[end:], encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit("usage: python tests/test_robustness.py")
    rewrite_readme()
