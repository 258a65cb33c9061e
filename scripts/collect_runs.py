"""A sweep's runs in one table: the config fields they differ in, and their figures.

    python scripts/collect_runs.py runs/sweep                  # every run under the folder
    python scripts/collect_runs.py runs/s0_d2 runs/s1_d2 --csv sweep.csv

Reads each train.py workdir's files only (nothing is loaded or computed): `config.json` (the
fields that differ between the runs are the table's first columns; those all runs share are
listed once under it), `resumes.jsonl` (the fields a resume changed, as `old -> new @step`,
in the column "resumed"; the field's own column holds its last value), the newest
checkpoint's step and `eval/metrics.json` (its test and validation figures, what its
test_loss is, the eval settings it was computed with where they differ from config.json's,
as "evaluated eval.FIELD", and its step: an evaluation older than the newest checkpoint is
marked stale: rerun evaluate.py). A run that trains now has
the status `training`; one that has saved nothing yet (no config.json) is listed as
`starting`. Prints a markdown table; `--csv` also writes it as CSV, every field a column.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterator

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # its jaxae
from jaxae.training.lock import busy  # noqa: E402 (the standard library's only: light)

CONFIG_FILE, RESUMES_FILE, CHECKPOINTS = "config.json", "resumes.jsonl", "checkpoints"
LOCK_FILE = "train.lock"
EVAL_METRICS = os.path.join("eval", "metrics.json")


def workdirs(paths: list[str]) -> list[str]:
    """The run folders (holding config.json) at or under each path, in sorted order, each
    once however many paths lead to it (a link to a run, a/../a)."""
    found, seen = [], set()
    for path in paths:
        if not os.path.isdir(path):
            raise SystemExit(f"error: {path} is not a folder: give train.py workdirs, or a "
                             "folder that holds them")
        runs = sorted(_runs_under(path))
        if not runs:
            raise SystemExit(f"error: {path} holds no train.py run (no {CONFIG_FILE} at or "
                             "under it)")
        for run in runs:
            if os.path.realpath(run) not in seen:
                seen.add(os.path.realpath(run))
                found.append(run)
    return found


def _is_run(path: str) -> bool:
    """A run's folder: its config.json, or a training run starting there (its train.lock
    held, nothing saved yet)."""
    return os.path.isfile(os.path.join(path, CONFIG_FILE)) or (
        os.path.isfile(os.path.join(path, LOCK_FILE)) and busy(path) is not None)


def _runs_under(path: str) -> Iterator[str]:
    if _is_run(path):
        yield os.path.normpath(path)
        return  # a run's own sub-folders (eval/, checkpoints/) hold no other run
    for directory, folders, files in os.walk(path):
        if CONFIG_FILE in files or (LOCK_FILE in files and busy(directory) is not None):
            folders.clear()
            yield os.path.normpath(directory)
        for name in folders:  # a link to a run (a folder of links); links elsewhere (to a
            link = os.path.join(directory, name)  # data set, to the home folder) are not walked
            if os.path.islink(link) and _is_run(link):
                yield os.path.normpath(link)


def flat(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"model.latent_dim": 2, ...} of a nested dict; lists as tuples (hashable)."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flat(value, f"{name}.")
        else:
            out[name] = tuple(value) if isinstance(value, list) else value
    return out


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def resumed_changes(workdir: str) -> str:
    """"field first -> ... -> last @step; ..." of the config fields its resumes changed."""
    changes: dict[str, list[str]] = {}
    try:
        with open(os.path.join(workdir, RESUMES_FILE)) as f:
            records = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return ""
    for record in records:
        for field, (old, new) in (record.get("config") or {}).items():
            steps = changes.setdefault(field, [repr(old)])
            steps.append(f"{new!r} @{record.get('step')}")
    return "; ".join(f"{field} {' -> '.join(values)}" for field, values in changes.items())


def evaluated_with(metrics: dict, config: dict[str, object]) -> dict[str, object]:
    """{"evaluated eval.FIELD": value} of the eval settings an eval/metrics.json was computed
    with where they differ from config.json's (an evaluate.py override such as
    --config.eval.batch_size=64), whose settings computed metrics.jsonl's figures."""
    draws = metrics.get("draws") or {}
    settings = {"eval.batch_size": draws.get("eval_batch_size"),
                "eval.iwae_chunk": draws.get("iwae_chunk")}
    if bounds := sorted(int(key.removeprefix("test_iwae_k")) for key in metrics
                        if key.startswith("test_iwae_k")):
        settings["eval.iwae_samples"] = tuple(bounds)
    return {f"evaluated {field}": value for field, value in settings.items()
            if value is not None and value != config.get(field)}


def newest_checkpoint(workdir: str) -> int | None:
    try:
        steps = [int(name) for name in os.listdir(os.path.join(workdir, CHECKPOINTS))
                 if name.isdigit()]
    except OSError:
        return None
    return max(steps, default=None)


def run_row(workdir: str) -> tuple[dict[str, object], dict[str, object]]:
    """(the run's flat config, its other columns: status, checkpoint, eval step, figures)."""
    training = busy(workdir) is not None
    if training and not os.path.isfile(os.path.join(workdir, CONFIG_FILE)):
        return {}, {"status": "starting (no checkpoint yet)"}
    saved = _read_json(os.path.join(workdir, CONFIG_FILE))
    if saved is None:  # its row would show every field as one the runs differ in
        print(f"warning: {os.path.join(workdir, CONFIG_FILE)} cannot be read: its run's fields "
              "are left empty", file=sys.stderr)
    config = flat(saved or {})  # the last value of a field a resume changed ("resumed")
    metrics = _read_json(os.path.join(workdir, EVAL_METRICS)) or {}
    checkpoint, evaluated = newest_checkpoint(workdir), metrics.get("step")
    other: dict[str, object] = {"status": "training"} if training else {}
    other |= {"checkpoint": checkpoint, "eval step": evaluated, **evaluated_with(metrics, config)}
    if evaluated is not None and checkpoint is not None and evaluated < checkpoint:
        other["eval"] = "stale: rerun evaluate.py"
    if resumed := resumed_changes(workdir):
        other["resumed"] = resumed
    if isinstance(metrics.get("loss"), str):  # what test_loss is: "mse", "negative_elbo"
        other["loss"] = metrics["loss"]
    other |= {key: value for key, value in metrics.items()
              if key.startswith(("test_", "val_")) and isinstance(value, (int, float))}
    return config, other


def table(paths: list[str]) -> tuple[list[str], list[list[object]], dict[str, object]]:
    """(header, rows, the config fields every run shares with their value)."""
    runs = [(path, *run_row(path)) for path in workdirs(paths)]
    configs = [config for _, config, _ in runs if config] or [{}]  # a starting run has none
    fields = sorted({f for config in configs for f in config})
    differing = [f for f in fields if len({repr(config.get(f)) for config in configs}) > 1]
    shared = {f: configs[0].get(f) for f in fields if f not in differing}
    figures = list(dict.fromkeys(k for _, _, other in runs for k in other))
    header = ["run", *differing, *figures]
    rows = [[path, *(config.get(f, "") for f in differing), *(other.get(k, "") for k in figures)]
            for path, config, other in runs]
    return header, rows, shared


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value).replace("|", "\\|")


def markdown(header: list[str], rows: list[list[object]], shared: dict[str, object]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    if shared:
        lines += ["", "Shared by every run: " + ", ".join(
            f"{field}={_cell(value)}" for field, value in shared.items()) + "."]
    return "\n".join(lines)


def _unwritable_csv(path: str) -> str | None:
    """Why a CSV file could not be written at `path` (the fix included), or None; nothing is
    written (an existing file is replaced only once the table is made)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not path:
        return "give a file's name, e.g. sweep.csv"
    if os.path.isdir(path):
        return "it is a folder: give a file's name, e.g. sweep.csv"
    if not os.path.isdir(folder):
        return "its folder does not exist: create it, or give a file in an existing folder"
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return "it cannot be written: give a file in a folder you can write to"
    return None


def write_csv(path: str, header: list[str], rows: list[list[object]],
              shared: dict[str, object]) -> None:
    """The table as CSV, for a program: every field a column (those the runs share too),
    numbers as Python writes them (nothing rounded)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([header[0], *shared, *header[1:]])
        writer.writerows([[row[0], *shared.values(), *row[1:]] for row in rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="train.py workdirs, or folders holding them")
    parser.add_argument("--csv", help="also write the table to this CSV file (every field, "
                        "numbers unrounded)")
    args = parser.parse_args(argv)
    if args.csv is not None and (problem := _unwritable_csv(args.csv)):  # before the table
        parser.exit(1, f"error: --csv={args.csv}: {problem}\n")
    header, rows, shared = table(args.paths)
    if args.csv is not None:  # first: a reader of the printed table that ends (`| head`)
        write_csv(args.csv, header, rows, shared)  # does not cost the file
        print(f"wrote {args.csv}", file=sys.stderr)
    print(markdown(header, rows, shared))


if __name__ == "__main__":
    main()
