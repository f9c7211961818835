"""Run folders: atomic writes, checkpoints that resume exactly, untrusted files."""

import json
import math
import pickle
import shutil

import numpy as np
import pytest
import torch

from automl_lib import __version__
from automl_lib.child import TrainConfig
from automl_lib.controller import Controller, load_weights_only
from automl_lib.evaluation import ChildEvaluator, FunctionEvaluator
from automl_lib.reinforce import Search, SearchConfig
from automl_lib.runs import (
    CHECKPOINT,
    MANIFEST,
    RUN_SETTINGS,
    Checkpointer,
    FolderInUseError,
    finish_search,
    lock_folder,
    prepare_folder,
    read_csv,
    read_json,
    write_json,
)
from automl_lib.search_space import Architecture, SearchSpace
from automl_lib.strategies import RandomSearch

SPACE = SearchSpace(units=(2, 4, 8), activations=("relu", "tanh"), max_layers=2)
TRAIN = TrainConfig(max_epochs=15, patience=5)
EPISODES = 5


def make_evaluator(moons, seed=0):
    return ChildEvaluator(moons, TRAIN, seed=seed, trainer="reference")


def make_strategy(kind, evaluator, space=SPACE, episodes=EPISODES):
    if kind == "reinforce":
        config = SearchConfig(episodes=episodes, batch_size=3)
        return Search(space, evaluator, config, seed=3)
    return RandomSearch(space, evaluator, episodes=episodes, batch_size=3, seed=3)


def without_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def same_floats(a, b):
    # NaN == NaN here: random search writes NaN for baseline, loss and entropy
    return all(
        x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
        for row_a, row_b in zip(a, b, strict=True)
        for x, y in zip(row_a.values(), row_b.values(), strict=True)
    )


# folders and files ---------------------------------------------------------


def test_prepare_folder_never_overwrites_unless_asked(tmp_path):
    out = prepare_folder(tmp_path / "run")
    write_json(out / "summary.json", {"best_reward": 1.0})
    with pytest.raises(FileExistsError, match="already exists"):
        prepare_folder(out)
    assert (out / "summary.json").exists()

    prepare_folder(out, overwrite=True)
    assert [p.name for p in out.iterdir()] in ([], ["run.lock"])


def test_overwrite_spares_a_folder_with_anything_but_run_files(tmp_path):
    (tmp_path / "history.csv").write_text("a,b\n")
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "thesis.tex").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a run folder"):
        prepare_folder(tmp_path, overwrite=True)
    assert (tmp_path / "src" / "thesis.tex").read_text() == "keep me"


def test_overwrite_replaces_a_run_with_its_checkpoint_but_nothing_else(tmp_path, moons):
    out = prepare_folder(tmp_path / "run")
    write_json(out / RUN_SETTINGS, {"command": "search", "options": {}})
    evaluator = make_evaluator(moons)
    search = make_strategy("random", evaluator, episodes=2)
    search.run(progress=False, callback=Checkpointer(out / CHECKPOINT, evaluator))
    assert (out / CHECKPOINT / MANIFEST).exists()

    (out / CHECKPOINT / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a run folder"):
        prepare_folder(out, overwrite=True)
    assert (out / CHECKPOINT / "notes.txt").read_text() == "keep me"

    (out / CHECKPOINT / "notes.txt").unlink()
    prepare_folder(out, overwrite=True)
    assert [p.name for p in out.iterdir()] in ([], ["run.lock"])


def test_overwrite_refuses_a_folder_in_use(tmp_path):
    out = prepare_folder(tmp_path / "run")
    write_json(out / "summary.json", {"best_reward": 1.0})
    with lock_folder(out), pytest.raises(FolderInUseError, match="in use"):
        prepare_folder(out, overwrite=True)
    assert (out / "summary.json").exists()


def test_prepare_folder_deletes_only_run_folders(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a run folder"):
        prepare_folder(tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    with pytest.raises(FileExistsError, match="not a folder"):
        prepare_folder(tmp_path / "notes.txt")


def test_write_json_is_atomic_and_writes_null_for_nan(tmp_path):
    write_json(tmp_path / "a.json", {"x": math.nan, "y": 1.5})
    assert read_json(tmp_path / "a.json") == {"x": None, "y": 1.5}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


# checkpoints ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["reinforce", "random"])
def test_resumed_twice_matches_uninterrupted_run(tmp_path, moons, kind):
    evaluator = make_evaluator(moons)
    whole = make_strategy(kind, evaluator).run(progress=False)

    # three "processes": each builds everything afresh and restores the folder;
    # the first two die after episodes 1 and 3, the last one finishes
    for crash_after in (1, 3, EPISODES):
        fresh = make_evaluator(moons)
        strategy = make_strategy(kind, fresh)
        checkpointer = Checkpointer(tmp_path, fresh)
        checkpointer.restore(strategy)
        while strategy.episode < crash_after:
            strategy.step()
            checkpointer.save(strategy)

    assert same_floats(
        without_seconds(strategy.history), without_seconds(whole.history)
    )
    assert strategy.children == whole.children
    assert strategy.best.architecture == whole.best.architecture
    assert strategy.best.reward == whole.best.reward
    pairs = zip(strategy.best.weights, whole.best.weights, strict=True)
    for (W1, b1), (W2, b2) in pairs:
        assert np.array_equal(W1, W2) and np.array_equal(b1, b2)
    assert fresh.num_trained == evaluator.num_trained
    assert set(fresh.cache) == set(evaluator.cache)
    if kind == "reinforce":
        params = zip(
            strategy.controller.parameters(), whole.controller.parameters(), strict=True
        )
        assert all(torch.equal(p1, p2) for p1, p2 in params)


def test_checkpoint_holds_weights_of_every_child(tmp_path, moons):
    evaluator = make_evaluator(moons)
    search = make_strategy("reinforce", evaluator, episodes=2)
    search.run(progress=False, callback=Checkpointer(tmp_path, evaluator))

    fresh = make_evaluator(moons)
    Checkpointer(tmp_path, fresh).restore(make_strategy("reinforce", fresh, episodes=2))
    assert len(fresh.cache) == len(evaluator.cache) == fresh.num_trained
    for key, result in evaluator.cache.items():
        restored = fresh.cache[key]
        assert restored.reward == result.reward and restored.status == result.status
        for (W1, b1), (W2, b2) in zip(restored.weights, result.weights, strict=True):
            assert W1.dtype == W2.dtype and np.array_equal(W1, W2)
            assert np.array_equal(b1, b2)


def test_a_crash_between_files_leaves_the_previous_snapshot(tmp_path, moons):
    evaluator = make_evaluator(moons)
    search = make_strategy("random", evaluator, episodes=2)
    search.run(progress=False, callback=Checkpointer(tmp_path, evaluator))
    # what a crash while writing episode 3 leaves behind
    (tmp_path / "state-000003.pt").write_bytes(b"half a file")
    (tmp_path / "records-000009.pt").write_bytes(b"half a file")
    (tmp_path / "checkpoint.json.tmp").write_text("{")

    again = make_strategy("random", make_evaluator(moons), episodes=2)
    assert Checkpointer(tmp_path, again.evaluator).restore(again)
    assert same_floats(again.history, search.history)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "state-000003.pt" not in names and "checkpoint.json.tmp" not in names
    assert "records-000009.pt" not in names and "state-000002.pt" in names
    assert "state-000001.pt" not in names  # older snapshots are cleaned


def test_each_episode_writes_only_what_it_added(tmp_path, moons):
    evaluator = make_evaluator(moons)
    search = make_strategy("random", evaluator, episodes=3)
    search.run(progress=False, callback=Checkpointer(tmp_path, evaluator))
    manifest = read_json(tmp_path / MANIFEST)
    parts = [
        load_weights_only(tmp_path / entry["file"], "records")
        for entry in manifest["records"]
    ]
    assert [len(part["history"]) for part in parts] == [1, 1, 1]
    assert [row["episode"] for part in parts for row in part["children"]] == [
        row["episode"] for row in search.children
    ]
    trained = sum(len(part["results"]) for part in parts)
    assert trained == len(evaluator.cache) == search.children_trained
    # the state file is the same size whatever the episode: no records in it
    state = load_weights_only(tmp_path / manifest["state"]["file"], "state")
    assert "history" not in state["strategy"]
    assert "children" not in state["strategy"]


def test_checkpoint_files_without_a_manifest_are_kept_and_refused(tmp_path, moons):
    evaluator = make_evaluator(moons)
    search = make_strategy("random", evaluator, episodes=2)
    search.run(progress=False, callback=Checkpointer(tmp_path, evaluator))
    (tmp_path / MANIFEST).unlink()
    before = sorted(p.name for p in tmp_path.iterdir())
    again = make_strategy("random", make_evaluator(moons), episodes=2)
    with pytest.raises(ValueError, match="checkpoint files but no checkpoint.json"):
        Checkpointer(tmp_path, again.evaluator).restore(again)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    "edit, episode, message",
    [
        (lambda files: files[1:], 2, "not episodes 1 to N"),
        (lambda files: [files[0], files[0], *files[2:]], 3, "not episodes 1 to N"),
        (lambda files: files[:-1], 3, "names episode 3, but its record files hold 2"),
    ],
)
def test_a_manifest_with_records_left_out_or_repeated_is_refused(
    tmp_path, moons, edit, episode, message
):
    evaluator = make_evaluator(moons)
    search = make_strategy("random", evaluator, episodes=3)
    search.run(progress=False, callback=Checkpointer(tmp_path, evaluator))
    records = edit(read_json(tmp_path / MANIFEST)["records"])
    edit_manifest(tmp_path, records=records, episode=episode)
    again = make_strategy("random", make_evaluator(moons), episodes=3)
    with pytest.raises(ValueError, match=message):
        Checkpointer(tmp_path, again.evaluator).restore(again)


def test_children_trained_before_a_restore_are_saved_too(tmp_path, moons):
    evaluator = make_evaluator(moons)
    search = make_strategy("random", evaluator, episodes=3)
    checkpointer = Checkpointer(tmp_path, evaluator)
    search.step()
    checkpointer.save(search)

    # a cache that already holds a child when the snapshot is restored into it
    again = make_evaluator(moons)
    [early] = again.evaluate([Architecture.parse("8-tanh 8-tanh")])
    resumed = make_strategy("random", again, episodes=3)
    checkpointer = Checkpointer(tmp_path, again)
    assert checkpointer.restore(resumed)
    resumed.step()
    checkpointer.save(resumed)

    last = make_evaluator(moons)
    assert Checkpointer(tmp_path, last).restore(
        make_strategy("random", last, episodes=3)
    )
    assert last.cache.keys() == again.cache.keys()
    assert last.cache[last.key(early.architecture)].reward == early.reward


def test_a_missing_record_file_is_a_clear_error(tmp_path, moons):
    evaluator = make_evaluator(moons)
    search = make_strategy("random", evaluator, episodes=2)
    search.run(progress=False, callback=Checkpointer(tmp_path, evaluator))
    (tmp_path / "records-000001.pt").unlink()
    again = make_strategy("random", make_evaluator(moons), episodes=2)
    with pytest.raises(ValueError, match="records-000001.pt cannot be read"):
        Checkpointer(tmp_path, again.evaluator).restore(again)


def test_restore_without_snapshot_changes_nothing(tmp_path, moons):
    search = make_strategy("reinforce", make_evaluator(moons))
    assert not Checkpointer(tmp_path, search.evaluator).restore(search)
    assert search.episode == 0


@pytest.fixture
def snapshot(tmp_path, moons):
    """A folder with the checkpoint of two REINFORCE episodes."""
    evaluator = make_evaluator(moons)
    search = make_strategy("reinforce", evaluator, episodes=EPISODES)
    checkpointer = Checkpointer(tmp_path, evaluator)
    for _ in range(2):
        search.step()
        checkpointer.save(search)
    return tmp_path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"space": SearchSpace(units=(2, 4), max_layers=2)}, "another search space"),
        ({"episodes": 9}, "episodes=5; this search has episodes=9"),
        ({"seed": 1}, "other data, child-training settings or seed"),
    ],
)
def test_restore_refuses_another_search(snapshot, moons, change, message):
    evaluator = make_evaluator(moons, seed=change.get("seed", 0))
    search = make_strategy(
        "reinforce",
        evaluator,
        space=change.get("space", SPACE),
        episodes=change.get("episodes", EPISODES),
    )
    with pytest.raises(ValueError, match=message):
        Checkpointer(snapshot, evaluator).restore(search)


def edit_manifest(folder, **changes):
    manifest = read_json(folder / MANIFEST)
    manifest.update(changes)
    write_json(folder / MANIFEST, manifest)
    return manifest


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"library_version": "0.0.1"}, "written by automl_lib 0.0.1"),
        ({"format_version": 99}, "checkpoint format 99"),
        ({"state": {"file": "../../etc/passwd", "sha256": "0"}}, "names a bad file"),
        ({"state": {"file": "state-000002.pt", "sha256": "0"}}, "does not match"),
        ({"state": {"file": "state-000007.pt", "sha256": "0"}}, "cannot be read"),
    ],
)
def test_restore_refuses_damaged_or_foreign_snapshots(
    snapshot, moons, changes, message
):
    edit_manifest(snapshot, **changes)
    search = make_strategy("reinforce", make_evaluator(moons))
    with pytest.raises(ValueError, match=message):
        Checkpointer(snapshot, search.evaluator).restore(search)


def test_damaged_manifest_is_a_clear_error(snapshot, moons):
    (snapshot / MANIFEST).write_text("{not json")
    search = make_strategy("reinforce", make_evaluator(moons))
    with pytest.raises(ValueError, match="cannot read"):
        Checkpointer(snapshot, search.evaluator).restore(search)


# untrusted files -----------------------------------------------------------


class Payload:
    """Unpickling this creates a file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_files(marker):
    """A torch zip file and a bare pickle, both of which would run code."""
    buffer = pickle.dumps({"format_version": 1, "state_dict": Payload(marker)})
    zipped = torch.serialization.io.BytesIO()
    torch.save({"format_version": 1, "state_dict": Payload(marker)}, zipped)
    return {"torch-zip": zipped.getvalue(), "bare-pickle": buffer}


@pytest.mark.parametrize("kind", ["torch-zip", "bare-pickle"])
def test_crafted_checkpoint_is_refused_without_running_code(snapshot, moons, kind):
    marker = snapshot.parent / "marker"
    data = crafted_files(marker)[kind]
    (snapshot / "state-000002.pt").write_bytes(data)
    # an attacker can fix the digest too: the loader must still refuse
    import hashlib

    edit_manifest(
        snapshot,
        state={"file": "state-000002.pt", "sha256": hashlib.sha256(data).hexdigest()},
    )
    search = make_strategy("reinforce", make_evaluator(moons))
    with pytest.raises(ValueError, match="refused to load .* could run code"):
        Checkpointer(snapshot, search.evaluator).restore(search)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["torch-zip", "bare-pickle"])
def test_crafted_controller_is_refused_without_running_code(tmp_path, kind):
    marker = tmp_path / "marker"
    path = tmp_path / "controller.pt"
    path.write_bytes(crafted_files(marker)[kind])
    with pytest.raises(
        ValueError, match="refused to load controller .* could run code"
    ):
        Controller.load(path)
    assert not marker.exists()


def test_controller_from_another_library_version_is_refused(tmp_path):
    payload = Controller(SPACE).to_payload()
    payload["library_version"] = "0.0.1"
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(
        ValueError, match=f"saved by automl_lib 0.0.1; this is automl_lib {__version__}"
    ):
        Controller.load(tmp_path / "c.pt")


def test_controller_round_trip_and_space_check(tmp_path):
    controller = Controller(SPACE, seed=4)
    controller.save(tmp_path / "c.pt")
    loaded = Controller.load(tmp_path / "c.pt", SPACE)
    assert loaded.greedy() == controller.greedy()
    with pytest.raises(ValueError, match="another search space"):
        Controller.load(tmp_path / "c.pt", SearchSpace())


# non-finite children -------------------------------------------------------


def test_non_finite_children_are_recorded_not_counted_as_ordinary(tmp_path, moons):
    space = SearchSpace(units=(8, 16), activations=("relu",), max_layers=2)
    evaluator = ChildEvaluator(
        moons, TrainConfig(max_epochs=10, lr=1e20), trainer="reference"
    )
    search = RandomSearch(space, evaluator, episodes=1, batch_size=4, seed=0)
    with pytest.warns(RuntimeWarning, match=r"child \d+-relu.*non-finite"):
        search.run(progress=False)
    summary = finish_search(tmp_path, search, moons, {})

    rows = read_csv(tmp_path / "children.csv")
    assert {row["status"] for row in rows} == {"non-finite"}
    assert all(row["reward"] == 0 for row in rows)
    assert summary["children_non_finite"] == 4
    assert summary["best_status"] == "non-finite"
    assert summary["test_accuracy"] is None
    assert json.loads((tmp_path / "summary.json").read_text())["test_accuracy"] is None


def test_function_evaluator_checkpoints_without_a_cache(tmp_path):
    toy = FunctionEvaluator(lambda arch: float(arch.depth == 1))
    search = Search(SPACE, toy, SearchConfig(episodes=3, batch_size=2), seed=0)
    search.run(progress=False, callback=Checkpointer(tmp_path, toy))
    toy2 = FunctionEvaluator(lambda arch: float(arch.depth == 1))
    again = Search(SPACE, toy2, SearchConfig(episodes=3, batch_size=2), seed=0)
    assert Checkpointer(tmp_path, toy2).restore(again)
    assert again.history == search.history and toy2.num_trained == 6
    shutil.rmtree(tmp_path)
