"""Markdown from an experiment's JSON record: the same text in its table.md and in RESULTS.md,
so every number on the page is one that the run wrote into its table.json."""

from __future__ import annotations


def format_value(value: object, fmt: str) -> str:
    """A table cell: numbers with the column's format, nothing for a missing value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if fmt and isinstance(value, (int, float)):
        return format(value, fmt)
    return str(value)


def render_table(columns: list[dict], rows: list[dict]) -> str:
    """A markdown table with one line per row."""
    header = "| " + " | ".join(c["header"] for c in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [header, rule]
    for row in rows:
        cells = [format_value(row.get(c["key"]), c["format"]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
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
                     f"{d['note']}; from {d['source']}")
    return "\n".join(lines)


def _train_summary(runs: dict) -> str:
    trained = [r for r in runs.values() if r["trained_now"]]
    total = sum(r["train_seconds"] for r in runs.values())
    return (f"{len(runs)} training runs, {len(trained)} of them trained by this command (the "
            f"others reloaded from their workdirs); training them took {total:,.0f} s in all")


def render_section(record: dict, plot_path: str, level: int = 2) -> str:
    """The markdown of one experiment: what it asks, how it was run, table, findings, plot."""
    hashes = "#" * level
    parts = [f"{hashes} {record['title']}", "", record["question"], "",
             f"- command: `{record['command']}`",
             f"- scale: `{record['scale']}`: {record['scale_description']}",
             f"- measured {record['date']} at jaxae commit {describe_commit(record['machine'])} "
             f"on {describe_machine(record['machine'])}",
             f"- wall time of the command: {record['wall_time_s']:,.1f} s; "
             f"{_train_summary(record['runs'])}",
             "- data:", describe_data(record["data"]), ""]
    if record["settings"]:
        settings = "; ".join(f"{k}: {v}" for k, v in record["settings"].items())
        parts += [f"Settings: {settings}.", ""]
    parts += [render_table(record["columns"], record["rows"]), ""]
    if record["findings"]:
        parts += ["What the numbers say:", ""] + [f"- {f}" for f in record["findings"]] + [""]
    if record["notes"]:
        parts += ["Why:", ""] + [f"- {n}" for n in record["notes"]] + [""]
    parts += [f"![{record['title']}]({plot_path})", ""]
    return "\n".join(parts)
