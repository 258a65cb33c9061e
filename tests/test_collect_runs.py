"""scripts/collect_runs.py: a sweep's train.py runs in one table, read from their files."""

import csv
import fcntl
import importlib.util
import io
import json
import os
import sys

import pytest

from jaxae.evaluation import evaluate
from jaxae.evaluation.evaluate import evaluate_workdir
from jaxae.training.trainer import train_and_evaluate
from jaxae.training.workdir import lock_workdir, unlock_workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script():
    spec = importlib.util.spec_from_file_location(
        "collect_runs", os.path.join(ROOT, "scripts", "collect_runs.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


collect_runs = load_script()


def test_a_sweep_is_one_table_of_its_differing_fields_resumes_and_figures(tiny_config, tmp_path,
                                                                          capsys, monkeypatch):
    """Two seeds, one evaluated; the other resumed with another learning rate after its
    evaluation: the table names the seeds, the rate's change and its step, and the stale
    evaluation. (The table reads metrics.json alone: the evaluations draw no pictures.)"""
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        train_and_evaluate(tiny_config(**{"seed": seed, "train.num_epochs": 1}),
                           str(sweep / f"s{seed}"))
    with monkeypatch.context() as undrawn:
        undrawn.setattr(evaluate, "write_pictures", lambda *args, **kwargs: {})
        evaluate_workdir(str(sweep / "s0"), overrides={"eval.batch_size": 64})  # not in
        evaluate_workdir(str(sweep / "s1"))  # config.json
    train_and_evaluate(tiny_config(**{"seed": 1, "train.num_epochs": 2,
                                      "optim.learning_rate": 0.01}), str(sweep / "s1"))
    header, rows, shared = collect_runs.table([str(sweep)])
    # the fields' last values (numbers a program can read), the evaluation's own settings
    # (an override of evaluate.py's, which config.json does not hold), a resume's changes
    # and a stale evaluation in their own columns
    assert header[:7] == ["run", "optim.learning_rate", "seed", "train.num_epochs",
                          "checkpoint", "eval step", "evaluated eval.batch_size"]
    assert [row[:7] for row in rows] == [[str(sweep / "s0"), 0.001, 0, 1, 16, 16, 64],
                                         [str(sweep / "s1"), 0.01, 1, 2, 32, 16, ""]]
    columns = [dict(zip(header, row, strict=True)) for row in rows]
    assert [c["eval"] for c in columns] == ["", "stale: rerun evaluate.py"]
    assert [c["resumed"] for c in columns] == [
        "", "optim.learning_rate 0.001 -> 0.01 @16; train.num_epochs 1 -> 2 @16"]
    assert [c["loss"] for c in columns] == ["mse", "mse"]  # what test_loss is
    assert shared["model.name"] == "dense_ae" and "seed" not in shared
    with open(sweep / "s0" / "eval" / "metrics.json") as f:
        evaluation = json.load(f)
    assert columns[0]["test_mse"] == evaluation["test_mse"] and columns[0]["test_images"] == 256
    capsys.readouterr()
    collect_runs.main([str(sweep / "s1"), str(sweep), "--csv", str(tmp_path / "t.csv")])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("| run | optim.learning_rate | seed |") and len(printed) == 6
    with open(tmp_path / "t.csv", newline="") as f:  # every field; figures unrounded
        csv_rows = list(csv.DictReader(f))
    assert [(r["model.name"], r["seed"]) for r in csv_rows] == [("dense_ae", "1"),
                                                                ("dense_ae", "0")]
    assert float(csv_rows[1]["test_mse"]) == evaluation["test_mse"]
    # the CSV is written before the table is printed: a reader that ends (`| head`) does not
    # cost it (it was written after the print, which raised BrokenPipeError)
    os.remove(tmp_path / "t.csv")

    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    with pytest.raises(BrokenPipeError):
        collect_runs.main([str(sweep), "--csv", str(tmp_path / "t.csv")])
    monkeypatch.undo()
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 3
    capsys.readouterr()
    with pytest.raises(SystemExit, match=r"holds no train.py run \(no config.json at or under"):
        collect_runs.main([str(tmp_path / "sweep" / "s0" / "eval")])
    # a folder of links to the runs (one back up the tree too), and a run named twice: each
    # run once (the links had been "no train.py run", the second name a second row)
    links = tmp_path / "links"
    links.mkdir()
    for name in ("s0", "s1"):
        os.symlink(sweep / name, links / name)
    os.symlink(tmp_path, links / "up")
    assert collect_runs.workdirs([str(links), str(sweep / "s0"), str(sweep / ".." / "sweep")]) \
        == [str(links / "s0"), str(links / "s1")]
    # a run training now, and one starting (its folder locked, nothing saved): said so (a
    # run half-trained looked finished, and one starting was left out)
    (sweep / "s2").mkdir()
    holders = [lock_workdir(str(sweep / "s1")), lock_workdir(str(sweep / "s2"))]
    try:
        header, rows, shared = collect_runs.table([str(sweep)])
    finally:
        for holder in holders:
            unlock_workdir(holder)
    assert [(row[0], dict(zip(header, row, strict=True))["status"]) for row in rows] == [
        (str(sweep / "s0"), ""), (str(sweep / "s1"), "training"),
        (str(sweep / "s2"), "starting (no checkpoint yet)")]
    assert header[1:4] == ["optim.learning_rate", "seed", "train.num_epochs"]  # as before
    folder = os.open(sweep, os.O_RDONLY | os.O_DIRECTORY)  # `flock sweep cmd`: no run there
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        assert collect_runs.workdirs([str(sweep)]) == [str(sweep / "s0"), str(sweep / "s1")]
    finally:
        os.close(folder)
    (sweep / "s1" / "config.json").write_text("{cut short")  # said, not a row of blanks
    collect_runs.table([str(sweep)])
    assert capsys.readouterr().err == (f"warning: {sweep}/s1/config.json cannot be read: its "
                                       "run's fields are left empty\n")
    os.symlink(ROOT, links / "elsewhere")  # a link that is no run: not walked
    assert collect_runs.workdirs([str(links)]) == [str(links / "s0"), str(links / "s1")]
    for csv_path, problem in [(tmp_path / "nowhere" / "t.csv", "its folder does not exist: "
                               "create it, or give a file in an existing folder"),
                              (links, "it is a folder: give a file's name, e.g. sweep.csv"),
                              ("", "give a file's name, e.g. sweep.csv")]:
        with pytest.raises(SystemExit):  # before the table: it was a traceback after it
            collect_runs.main([str(sweep), "--csv", str(csv_path)])
        assert capsys.readouterr() == ("", f"error: --csv={csv_path}: {problem}\n")


def test_every_resume_of_a_field_is_listed_in_turn(tmp_path):
    """A field two resumes changed reads from its first value through each later one, with
    the step of each change, not the last change alone."""
    (tmp_path / "resumes.jsonl").write_text(
        json.dumps({"step": 16, "config": {"train.num_epochs": [1, 2]}}) + "\n"
        + json.dumps({"step": 32, "config": {"train.num_epochs": [2, 3],
                                             "optim.learning_rate": [0.001, 0.0005]}}) + "\n")
    assert collect_runs.resumed_changes(str(tmp_path)) == (
        "train.num_epochs 1 -> 2 @16 -> 3 @32; optim.learning_rate 0.001 -> 0.0005 @32")
