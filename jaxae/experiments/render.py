"""Markdown from an experiment's JSON record: the same text in its table.md and in RESULTS.md,
so every number on the page is one that the run wrote into its table.json."""

from __future__ import annotations

import os
import re

# An absolute path inside free text: two or more parts ("/a/b"), starting the text or after a
# blank, "=" or "(" (so "+/-", "images /s", "</a>" and URLs are left alone).
_ABSOLUTE = re.compile(r"(?:(?<=^)|(?<=[\s=(]))/[\w.~+-]+(?:/[^\s,;()'\"`]*)+")
# A prepared TFDS data set's version folder, "TFDS <builder>/<config>:<version> in
# <data dir>/<builder>/<config>/<version>": the page names the data dir only.
_TFDS_FOLDER = re.compile(r"TFDS (?P<name>[\w.-]+/[\w.-]+):(?P<version>[\w.-]+) in "
                          r"(?P<dir>[^\s,;()]+?)/(?P=name)/(?P=version)/?(?=[\s),;.]|$)")


def repository_root() -> str:
    """The folder that holds the jaxae package: the repository, in a clone."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def display_path(path: str, root: str | None = None, home: str | None = None) -> str:
    """How the page names a folder: relative to the repository (`root`) when inside it,
    '~/...' when inside the home folder, else as it is (a shared data folder such as
    /usr/share/datasets names where the data came from). A relative path (already relative
    to the repository the command ran in) is kept."""
    if not os.path.isabs(path):
        return path
    path = os.path.normpath(path)
    root = os.path.normpath(os.path.abspath(root or repository_root()))
    home = os.path.normpath(home or os.path.expanduser("~"))
    if _inside(path, root):
        return os.path.relpath(path, root)
    if home != os.sep and _inside(path, home):
        rel = os.path.relpath(path, home)
        return "~" if rel == "." else f"~/{rel}"
    return path


def display_paths(text: str, root: str | None = None, home: str | None = None) -> str:
    """`text` with every absolute path in it named as `display_path` names it, and a TFDS
    data set's version folder by its data dir (the name and version are given beside it)."""
    text = _TFDS_FOLDER.sub(lambda m: f"TFDS {m['name']}:{m['version']} in {m['dir']}", text)

    def one(match: re.Match) -> str:
        found = match.group(0)
        path = found.rstrip(".")  # a sentence's full stop is not part of the path
        shown = display_path(path, root, home)
        if shown.startswith("~") and match.string[match.start() - 1:match.start()] == "=":
            shown = "$HOME" + shown[1:]  # a shell expands "~" only at a word's start
        return shown + found[len(path):]

    return _ABSOLUTE.sub(one, text)


# A row's {column key: [lowest, highest]} over the seeds whose mean it shows, for the numbers
# in which the seeds' runs differ (jaxae.experiments.common.mean_rows).
SEED_SPREAD = "seed_spread"


def seed_range(row: dict, key: str) -> tuple[float, float]:
    """(lowest, highest) of a row's figure `key` over the seeds it is the mean of; (value,
    value) where the seeds agree or the row is one seed's."""
    low, high = row.get(SEED_SPREAD, {}).get(key, (row[key], row[key]))
    return low, high


def seeds_overlap(a: dict, b: dict, key: str) -> bool:
    """Whether two rows' [lowest, highest] of `key` over the seeds overlap; False for rows
    of one seed (no ranges to compare)."""
    if SEED_SPREAD not in a and SEED_SPREAD not in b:
        return False
    (a_low, a_high), (b_low, b_high) = seed_range(a, key), seed_range(b, key)
    return a_low <= b_high and b_low <= a_high


def format_value(value: object, fmt: str) -> str:
    """A table cell: numbers with the column's format, nothing for a missing value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if fmt and isinstance(value, (int, float)):
        return format(value, fmt)
    return str(value)


def format_cell(row: dict, column: dict) -> str:
    """A row's value in `column`, with its [lowest, highest] over the seeds where they print
    differently."""
    text = format_value(row.get(column["key"]), column["format"])
    if spread := row.get(SEED_SPREAD, {}).get(column["key"]):
        low, high = (format_value(v, column["format"]) for v in spread)
        if low != high:
            text += f" [{low}, {high}]"
    return text


def render_table(columns: list[dict], rows: list[dict]) -> str:
    """A markdown table with one line per row."""
    header = "| " + " | ".join(c["header"] for c in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [header, rule]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row, c) for c in columns) + " |")
    return "\n".join(lines)


def describe_machine(machine: dict) -> str:
    devices = ", ".join(machine.get("devices", []))
    memory = f", {machine['memory_gib']} GiB" if machine.get("memory_gib") else ""
    return (f"{machine.get('cpu', 'unknown CPU')}, {machine.get('cores')} cores{memory}; "
            f"JAX {machine.get('jax')} on {devices}")


def describe_commit(machine: dict) -> str:
    """The jaxae commit a result was measured at, shortened ('+dirty': uncommitted changes)."""
    commit = machine.get("jaxae_commit") or "unknown"
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")


def describe_data(data: list[dict]) -> str:
    """One line per data set: name, images used out of those available, and the source."""
    lines = []
    for d in data:
        lines.append(f"  - {d['dataset']}: {d['train_used']:,} of {d['train_available']:,} "
                     f"training and {d['test_used']:,} of {d['test_available']:,} test images; "
                     f"{d['note']}; from {display_paths(d['source'])}")
    return "\n".join(lines)


def _train_summary(runs: dict) -> str:
    trained = [r for r in runs.values() if r["trained_now"]]
    total = sum(r["train_seconds"] for r in runs.values())
    if not runs:
        return "no training runs"
    if len(runs) == 1:
        how = "trained by this command" if trained else "reloaded from its workdir"
        return f"1 training run, {how}; training it took {total:,.0f} s"
    if len(trained) == len(runs):
        how = "all of them trained by this command"
    elif not trained:
        how = "none trained by this command (each reloaded from its workdir)"
    else:
        how = (f"{len(trained)} of them trained by this command (the others reloaded from "
               "their workdirs)")
    return f"{len(runs)} training runs, {how}; training them took {total:,.0f} s in all"


# Data sets whose runs' training steps differ by more than this factor are said to compare
# lengths of training as well as data.
STEPS_APART = 1.1


def _span(values: list[int], unit: str) -> str:
    """'4,680 steps', '2,340-4,680 steps', '1 epoch'."""
    low, high = min(values), max(values)
    if low == high:
        return f"{low:,} {unit}" + ("" if low == 1 else "s")
    return f"{low:,}-{high:,} {unit}s"


def uneven_steps(run_steps: dict[str, list[int]]) -> tuple[str, int, str, int] | None:
    """(data set of the shortest runs, their steps, of the longest, theirs), each data set
    measured by its longest run (`run_steps`: {data set: each run's steps}), where they are
    more than STEPS_APART apart; None where they are not (or there is one data set)."""
    lengths = {dataset: max(steps) for dataset, steps in run_steps.items() if steps}
    if len(lengths) < 2:
        return None
    fewest, most = min(lengths, key=lengths.get), max(lengths, key=lengths.get)
    if lengths[most] <= STEPS_APART * lengths[fewest]:
        return None
    return fewest, lengths[fewest], most, lengths[most]


def describe_training(runs: dict) -> str | None:
    """How long the runs trained, per data set, and with which seeds: the rows of two data
    sets whose runs took different numbers of steps differ in training as well as data."""
    by_dataset: dict[str, list[dict]] = {}
    for run in runs.values():
        by_dataset.setdefault(run["dataset"], []).append(run)
    if not by_dataset:
        return None
    parts = [f"{dataset} {_span([r['steps'] for r in mine], 'step')} a run "
             f"({_span([r['epochs'] for r in mine], 'epoch')})"
             for dataset, mine in by_dataset.items()]
    text = "; ".join(parts)
    if uneven_steps({dataset: [r["steps"] for r in mine]
                     for dataset, mine in by_dataset.items()}):
        text += (": the data sets' runs trained for different numbers of steps, so their rows "
                 "differ in training as well as in data")
    seeds = sorted({r["seed"] for r in runs.values() if "seed" in r})
    if len(seeds) == 1:
        text += f"; each run trained once, with seed {seeds[0]}"
    elif seeds:
        text += (f"; each run trained once with each of the seeds {', '.join(map(str, seeds))}: "
                 "a figure is the mean over the seeds, followed by [lowest, highest] where "
                 "they differ")
    return text


def render_section(record: dict, plot_path: str, level: int = 2) -> str:
    """The markdown of one experiment: what it asks, how it was run, table, findings, plot."""
    hashes = "#" * level
    parts = [f"{hashes} {record['title']}", "", record["question"], "",
             f"- command: `{display_paths(record['command'])}`",
             f"- scale: `{record['scale']}`: {record['scale_description']}",
             f"- measured {record['date']} at jaxae commit {describe_commit(record['machine'])} "
             f"on {describe_machine(record['machine'])}",
             f"- wall time of the command: {record['wall_time_s']:,.1f} s; "
             f"{_train_summary(record['runs'])}",
             *([f"- training: {training}"] if (training := describe_training(record["runs"]))
               else []),
             "- data:", describe_data(record["data"]), ""]
    if record["settings"]:
        settings = "; ".join(f"{k}: {v}" for k, v in record["settings"].items())
        parts += [f"Settings: {settings}.", ""]
    parts += [render_table(record["columns"], record["rows"]), ""]
    if record["findings"]:
        heading = ("What the numbers say (a smoke test: too little training for them to mean "
                   "anything; --scale full gives the findings):" if record.get("smoke_test")
                   else "What the numbers say:")
        parts += [heading, ""] + [f"- {f}" for f in record["findings"]] + [""]
    if record["notes"]:
        parts += ["Why:", ""] + [f"- {n}" for n in record["notes"]] + [""]
    parts += [f"![{record['title']}]({plot_path})", ""]
    return "\n".join(parts)
