"""What a run's files tell a program that reads them: timings.jsonl beside metrics.jsonl,
environment.json's "run", eval/metrics.json's validation figures and what its loss is, and
strict JSON where a figure is not finite."""

import json
import math

import pytest

from jaxae.evaluation import evaluate
from jaxae.evaluation.evaluate import evaluate_workdir
from jaxae.training import files
from jaxae.training.metric_writer import MetricWriter, read_metrics, read_timings
from jaxae.training.trainer import train_and_evaluate


def test_a_run_records_its_timings_facts_and_validation_figures_for_a_program(
        tiny_config, tmp_path, capsys, monkeypatch):
    """A run stopped at step 20 and resumed to 32 (16 steps an epoch, logs every 8): its
    timings sit at metrics.jsonl's steps, training seconds add up over the parts, each
    evaluation is timed; metrics.jsonl holds no timings; environment.json says what the
    config and data came to; evaluate.py scores the validation split as training did."""
    workdir = str(tmp_path / "run")
    config = tiny_config(**{"data.val_size": 64, "train.stop_after_steps": 20})
    train_and_evaluate(config, workdir)
    first_part = capsys.readouterr().out
    assert "trained steps 1 to 20 in " in first_part  # the part's length, said at its end
    with open(f"{workdir}/timings.jsonl", "a") as f:  # as a part killed after its checkpoint
        f.write('{"step": 22, "epoch": 2, "time": 0.0, "train_s": 99.0}\nedited\n')  # leaves
    train_and_evaluate(tiny_config(**{"data.val_size": 64}), workdir)  # it; and a hand edit
    resumed = capsys.readouterr()
    assert "trained steps 21 to 28 in " in resumed.out
    assert f"warning: {workdir}/timings.jsonl line 6 is not a timings record ('edited'): " \
        f"moved to {workdir}/timings.jsonl.rejected" in resumed.err  # 448 train images: 14 a
    # epoch, 28 in all

    metrics, timings = read_metrics(workdir), read_timings(workdir)
    assert all("time" not in r and "train_s" not in r for r in metrics)  # the same bytes in
    # every run of a config and seed
    trained = [r for r in timings if "train_s" in r]
    assert [r["step"] for r in trained] == [r["step"] for r in metrics if "train_loss" in r]
    assert [r["step"] for r in timings if "eval_s" in r] == [14, 28]  # each epoch's evaluation
    assert all(r["eval_s"] > 0 for r in timings if "eval_s" in r)
    times = [r["time"] for r in timings]
    assert times == sorted(times) and abs(times[-1] - times[0]) < 600  # Unix seconds, in order
    seconds = [r["train_s"] for r in trained]
    assert seconds == sorted(seconds) and 0 < seconds[-1] < 99  # over both parts, never reset
    assert 0.0 not in times  # the record after the checkpoint was dropped by the resume
    # a rate from each part's second read on (its first chunk compiles: not timed)
    assert [r["step"] for r in trained if "images_per_s" not in r] == [8, 24]
    assert all(r["images_per_s"] > 0 for r in trained if "images_per_s" in r)

    with open(f"{workdir}/environment.json") as f:
        facts = json.load(f)["run"]
    assert {k: v for k, v in facts.items() if k != "data_source"} == {
        "train_images": 448, "val_images": 64, "test_images": 256, "image_shape": [28, 28, 1],
        "steps_per_epoch": 14, "total_steps": 28, "parameters": 16474}
    assert "fashion" in facts["data_source"]

    with monkeypatch.context() as undrawn:  # its figures are checked, not its pictures
        undrawn.setattr(evaluate, "write_pictures", lambda *args, **kwargs: {})
        result = evaluate_workdir(workdir)
    last_val = [r for r in metrics if "val_loss" in r][-1]
    assert {k: result[k] for k in last_val if k.startswith("val_")} == \
        {k: v for k, v in last_val.items() if k.startswith("val_")}  # as training scored it
    assert result["val_images"] == 64 and result["counts"]["val_loss"] == 64
    assert result["loss"] == "mse"  # what test_loss and val_loss are
    from jaxae.provenance import source_sha256

    assert result["evaluated_by"]["jaxae_sha256"] == source_sha256()  # the figures' code
    assert "note: the run was trained by another jaxae source" not in capsys.readouterr().out
    environment = json.loads((tmp_path / "run" / "environment.json").read_text())
    (tmp_path / "run" / "environment.json").write_text(json.dumps(
        {**environment, "jaxae_sha256": "0" * 64, "git_commit": "0123456789abcdef"}))
    from jaxae.evaluation.evaluate import _other_code_note  # what evaluate_workdir prints

    assert _other_code_note(workdir).startswith(  # trained by other code: the figures'
        "note: the run was trained by another jaxae source (0123456789ab; this is ")  # may
    # differ from those its own code gave
    (tmp_path / "run" / "environment.json").write_text(json.dumps(environment))

    # a field this jaxae has no place for (another version's, renamed): evaluate.py had
    # dropped it unsaid, a resume asked for it and the command line then refused it
    import jaxae
    from jaxae.config import ConfigError
    from jaxae.provenance import git_commit

    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    saved["optim"]["lr_schedule"] = saved["optim"].pop("schedule")
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    said = (f"{workdir}/config.json holds config.optim.lr_schedule, which this jaxae has no "
            "field for (did you mean config.optim.schedule?)")
    attempts = (lambda: evaluate_workdir(workdir),
                lambda: train_and_evaluate(tiny_config(**{"data.val_size": 64}), workdir))
    for attempt in attempts:  # this jaxae wrote the run: the field was edited in
        with pytest.raises(ConfigError) as refused:
            attempt()
        assert str(refused.value) == f"{said}: it was edited into config.json: rename it or " \
            "remove it there"
    (tmp_path / "run" / "environment.json").write_text(json.dumps(
        {**environment, "jaxae_sha256": "0" * 64, "git_commit": "0123abc"}))
    now = " ".join(filter(None, (jaxae.__version__, git_commit())))
    for attempt in attempts:  # another version wrote it
        with pytest.raises(ConfigError) as refused:
            attempt()
        assert str(refused.value) == (
            f"{said}; the run was written by jaxae 0.2.0 0123abc, this is {now}: evaluate "
            "and resume it with that version, or edit the field out of config.json (its run "
            "must have left it at the value this jaxae assumes)")


def test_a_figure_that_is_not_finite_is_written_as_null_strict_json(tmp_path):
    """NaN and Infinity are no JSON tokens: a strict reader refused the file (eval's
    metrics.json wrote NaN; metrics.jsonl wrote the string "nan")."""
    def strict(text: str) -> object:
        return json.loads(text, parse_constant=lambda token: (_ for _ in ()).throw(
            ValueError(f"{token} is no JSON")))

    files.write_json(str(tmp_path / "m.json"), {"a": math.nan, "b": [1.5, -math.inf]})
    assert strict((tmp_path / "m.json").read_text()) == {"a": None, "b": [1.5, None]}
    MetricWriter(str(tmp_path), echo=False).write({"step": 1, "loss": float("nan")})
    assert strict((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "loss": None}


def test_running_out_of_memory_is_one_line_and_the_epoch_before_it_is_saved(
        tiny_config, tmp_path, monkeypatch, capsys):
    """XLA's RESOURCE_EXHAUSTED was a traceback of 50 lines; and where it struck in the
    evaluation at an epoch's end (a larger eval batch than memory holds), the epoch's steps
    were lost with it: the checkpoint came after the evaluation."""
    import jax
    import jax.numpy as jnp

    from jaxae import cli
    from jaxae.training import trainer

    def too_large() -> None:  # 4 TiB at once: refused by the allocator, nothing allocated
        jax.jit(lambda: jnp.ones((2**40,), jnp.float32))().block_until_ready()

    with pytest.raises(SystemExit) as ended:
        cli.run(too_large)
    assert ended.value.code == 1
    assert capsys.readouterr().err == (
        "error: out of memory (4096.0 GiB asked for at once): lower "
        "--config.train.batch_size, or data.image_size or the model's size, to train; "
        "--config.eval.batch_size or eval.iwae_chunk to evaluate (the checkpoints on disk are "
        "kept; JAXAE_DEBUG=1 shows XLA's message)\n")

    config = tiny_config(**{"train.checkpoint_every_epochs": 2})
    with monkeypatch.context() as patched:
        patched.setattr(trainer, "evaluate_splits", lambda *args, **kwargs: too_large())
        with pytest.raises(jax.errors.JaxRuntimeError):  # saved every 2 epochs: not at 16
            train_and_evaluate(config, str(tmp_path / "run"))
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["16"]
    # the rerun evaluates step 16 before it trains on: metrics.jsonl as an uninterrupted
    # run writes it (the resumed run had gone on without step 16's evaluation record)
    train_and_evaluate(config, str(tmp_path / "run"))
    train_and_evaluate(config, str(tmp_path / "whole"))
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == \
        (tmp_path / "whole" / "metrics.jsonl").read_bytes()
