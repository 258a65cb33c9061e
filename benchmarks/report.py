"""The report the benchmarks write (BENCHMARKS.md): one "## " section per device, each
run's heading, machine line and code version (`report_section`, `header`, `code_version`),
the throughput mode's table (`table`), and the file itself, read and rewritten a section at a
time (`write_section`, `section_contents`). Kept apart from the measuring
(`benchmarks.bench`), which fills it, and from the command line (`benchmarks.bench_args`),
which checks a report's sections before anything runs."""

from __future__ import annotations

import datetime
import os
import platform
import shutil

import jax

from jaxae.provenance import (
    head_commit,
    host_cpu_kind,
    is_code,
    uncommitted_files,
    usable_cpus,
)

# Names the commit whose files a copy holds, where its .git is missing or older than its
# files (a GPU machine's copy): set, the reports name it and do not ask that copy's git.
COMMIT_VAR = "JAXAE_COMMIT"


def measured_commit() -> str:
    """The commit a report names: $JAXAE_COMMIT where set, else the checkout's HEAD."""
    return os.environ.get(COMMIT_VAR) or head_commit()


UNSTEADY_SPREAD = 1.5  # a row whose fastest chunk beats its slowest by more is flagged


def header(devices: int = 1) -> str:
    """The machine line of a report: the kind of device and how many of the machine's the
    measurements ran on (`devices`: throughput splits each batch over them; quality and
    precision train as train.py does, over all; determinism and matmuls use the first)."""
    device, count = jax.devices()[0], jax.device_count()
    used = f"x {devices}" if devices == count else f"({devices} of {count} devices used)"
    return (f"{device.device_kind} {used} ({device.platform}; host "
            f"{host_cpu_kind()}, {platform.machine()}, {usable_cpus()} CPU threads), "
            f"jax {jax.__version__}, {datetime.date.today().isoformat()}")


def device_title() -> str:
    """The heading of this device's section in the report: the accelerator's kind (e.g.
    "NVIDIA H100 80GB HBM3"), or on a CPU "cpu: <its kind>" (`host_cpu_kind`: one model
    name covers CPUs of several generations), so that runs on different CPUs keep sections
    of their own."""
    device = jax.devices()[0]
    return f"cpu: {host_cpu_kind()}" if device.platform == "cpu" else device.device_kind


def code_version(commit: str | None = None) -> str:
    """" Code: jaxae commit <sha>." for the report (of `commit`, default `measured_commit`:
    $JAXAE_COMMIT, labelled so, or the checkout's HEAD), naming up to three uncommitted code
    files apart from the other uncommitted files (a report, a log or a plot written before
    it is committed changes no code measured), so a section measured before a change says
    so and one measured beside new reports says that it is not; "" outside a git
    checkout."""
    commit = measured_commit() if commit is None else commit
    if not commit:
        return ""
    if os.environ.get(COMMIT_VAR):  # whoever set it vouches for the files: git is not asked
        return f" Code: jaxae commit {commit[:12]} (named by ${COMMIT_VAR}, not checked)."
    files = uncommitted_files()  # one `git status` for both the mark and the names

    def named(paths: list[str]) -> str:
        return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")

    code = [f for f in files if is_code(f)]
    other = [f for f in files if f not in code]
    if code:
        dirty = f" with uncommitted changes to code: {named(code)}" + (
            f" (and to {len(other)} other file{'s' if len(other) > 1 else ''})" if other else "")
    else:
        dirty = f" (uncommitted: {named(other)}; no code)" if other else ""
    return f" Code: jaxae commit {commit[:12]}{dirty}."


REPORT_PREAMBLE = ("# Benchmarks\n\nOne section per device, each written by the command it "
                   "quotes.\n")  # a new report's text above its sections


def _split_report(path: str) -> tuple[str, list[str]]:
    """(the text above the first "## " section, the sections) of the report at `path`; a
    report that does not exist yet has REPORT_PREAMBLE and no sections."""
    if not os.path.exists(path):
        return REPORT_PREAMBLE, []
    with open(path) as f:
        lines = f.read().splitlines()
    parts, fence = [[]], None  # the open fence's marker (``` or ~~~, 3 or more), if any
    for line in lines:  # a "## " line inside a fenced block is code, not a heading
        marker = line[:len(line) - len(line.lstrip("`~"))] if line[:3] in ("```", "~~~") else ""
        if marker and fence is None:
            fence = marker
        elif marker and marker[0] == fence[0] and len(marker) >= len(fence) and \
                not line.strip(marker[0]).strip():
            fence = None  # a closing fence: the same character, as long, nothing after it
        if line.startswith("## ") and fence is None:
            parts.append([])
        parts[-1].append(line)
    preamble, *sections = ("\n".join(part) for part in parts)
    return preamble.strip("\n") + "\n", [part.strip() + "\n" for part in sections]


def _sections(path: str) -> list[str]:
    return _split_report(path)[1]


def write_section(path: str, section: str, append: bool = False) -> None:
    """Writes `section` (starting "## <device>") into the report at `path`, replacing that
    device's earlier section and keeping the others and the text above them, so each
    machine's run updates its own; with `append`, adds the section's body to the end of that
    device's section instead."""
    heading = section.splitlines()[0]
    preamble, sections = _split_report(path)
    if append and any(s.splitlines()[0] == heading for s in sections):
        body = section.split("\n", 1)[1].strip("\n")
        sections = [s.rstrip("\n") + "\n\n" + body + "\n" if s.splitlines()[0] == heading
                    else s for s in sections]
    else:
        sections = [s for s in sections if s.splitlines()[0] != heading] + [section]
    path = os.path.realpath(path)  # through a link: the file it names gets the run
    partial = f"{path}.partial"  # written whole, then renamed: a killed run keeps the old file
    with open(partial, "w") as f:
        f.write((preamble + "\n" if preamble.strip() else "") + "\n".join(sections))
    if os.path.exists(path):
        shutil.copymode(path, partial)  # the report keeps its permissions
    os.replace(partial, path)


def _fraction_text(row: dict, prefix: str = "") -> str:
    """A row's fraction of the roof (`prefix` "device_bytes_": under the device's byte
    count), or why it has none."""
    fraction = row.get(f"{prefix}fraction_of_roof")
    if fraction is not None:
        return f"{fraction:.1%}"
    if row.get(f"{prefix}roof_errors"):
        return "over the roof: mismeasured"
    return "n/a"


def table(rows: list[tuple[dict, dict | None]]) -> str:
    """The markdown table of the results, with the roofline's and the peer's columns (and,
    off the CPU, the device program's bytes per step and the fraction of the roof they
    give)."""
    device = any("device_bytes_fraction_of_roof" in ours for ours, _ in rows)
    lines = ["| model | conv | dtype | image | width | batch | compile s | step ms | epoch ms | "
             "images/s | GFLOP/step | MB/step | FLOP/byte | GFLOP/s | GB/s | peak GFLOP/s | "
             "bandwidth GB/s | bound | of roof | "
             + ("device MB/step | device bound | of roof (device bytes) | " if device else "")
             + "step memory | peer images/s | jaxae / peer |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
             "---|---:|" + ("---:|---|---:|" if device else "") + "---:|---:|---:|"]
    for ours, peer in rows:
        # the compiled step's arguments, results and temporaries (XLA's memory analysis), not
        # the device's peak_bytes_in_use: that is the process's high-water mark, never reset
        memory = ours.get("footprint_bytes")
        memory_text = f"{memory / 2**20:,.0f} MiB" if memory else "n/a"
        peer_rate = f"{peer['img_per_s']:,.0f}" if peer else "-"
        ratio = f"{ours['img_per_s'] / peer['img_per_s']:.2f}x" if peer else "-"
        height, wide, channels = ours["image_shape"]
        peak, bandwidth = ours.get("peak_gflops"), ours.get("bandwidth_gbytes_per_s")
        lines.append(
            f"| {ours['model']} | {ours['conv'] or '-'} | {ours['compute_dtype']} | "
            f"{height}x{wide}x{channels} | {ours.get('width', 1)} | {ours['batch']} | "
            f"{ours['compile_s']:.1f} | {ours['step_ms']:.2f} | {ours['epoch_ms']:,.1f} | "
            f"{ours['img_per_s']:,.0f} | {ours['flops_per_step'] / 1e9:.3f} | "
            f"{ours['bytes_per_step'] / 1e6:,.1f} | {ours['intensity']:.1f} | "
            f"{ours['achieved_gflops']:,.1f} | {ours['achieved_gbytes_per_s']:,.1f} | "
            f"{f'{peak:,.0f}' if peak else 'n/a'} | "
            f"{f'{bandwidth:,.1f}' if bandwidth else 'n/a'} | {ours.get('bound', 'n/a')} | "
            f"{_fraction_text(ours)} | {_device_columns(ours) if device else ''}"
            f"{memory_text} | {peer_rate} | {ratio} |")
    unsteady = [f"{ours['model']} {ours['compute_dtype']} {'x'.join(map(str, ours['image_shape']))}"
                f" width {ours.get('width', 1)} batch {ours['batch']} "
                f"({side}: {min(rates):,.0f}-{max(rates):,.0f} images/s)"
                for ours, peer in rows
                for side, rates in (("jaxae", ours.get("chunk_img_per_s")),
                                    ("peer", peer and peer.get("chunk_img_per_s")))
                if _varies(rates)]
    if unsteady:
        lines += ["", f"Chunks that varied more than {UNSTEADY_SPREAD}x (a busy moment?): "
                  f"{', '.join(unsteady)}; the rates are their medians, rerun before quoting."]
    if shaky := [text for ours, _ in rows if (text := _unsteady_roofs(ours))]:
        lines += ["", f"Binding roofs whose readings between chunks varied more than "
                  f"{UNSTEADY_SPREAD}x, or that a chunk beat (a busy moment?): "
                  f"{', '.join(shaky)}; those rows' fractions of the roof are unsure."]
    return "\n".join(lines)


def _varies(values: list[float] | None) -> bool:
    """Whether readings (chunks' rates, roofs) spread more than UNSTEADY_SPREAD apart."""
    return bool(values) and min(values) > 0 and max(values) / min(values) > UNSTEADY_SPREAD


def _unsteady_roofs(row: dict) -> str | None:
    """What made a row's roof unsure, in words ("conv_ae float32 32x32x3 width 1 batch 16
    (peak 77-220 GFLOP/s; a chunk over the roof)"), or None where its binding roof held
    steady between chunks and no chunk beat it. Off the CPU the device program's byte
    count gives the roof that binds (the host's overcounts a GPU's fusions)."""
    said = []
    prefix = "device_bytes_" if row.get("device_bytes_per_step") else ""
    key, unit = {"compute": ("chunk_peak_gflops", "peak {}-{} GFLOP/s"),
                 "memory": ("chunk_bandwidth_gbytes_per_s", "bandwidth {}-{} GB/s")
                 }.get(row.get(f"{prefix}bound"), (None, ""))
    values = row.get(key) if key else None
    if _varies(values):
        said.append(unit.format(f"{min(values):,.0f}", f"{max(values):,.0f}"))
    if row.get(f"{prefix}roof_errors"):
        said.append("a chunk over the roof")
    if not said:
        return None
    return (f"{row['model']} {row['compute_dtype']} {'x'.join(map(str, row['image_shape']))} "
            f"width {row.get('width', 1)} batch {row['batch']} ({'; '.join(said)})")


def _device_columns(row: dict) -> str:
    """The device program's bytes per step, its bound and fraction cells (with the bar)."""
    if not row.get("device_bytes_per_step"):
        return "n/a | n/a | n/a | "
    return (f"{row['device_bytes_per_step'] / 1e6:,.1f} | {row.get('device_bytes_bound', 'n/a')}"
            f" | {_fraction_text(row, 'device_bytes_')} | ")


def section_contents(path: str, title: str) -> str:
    """What the section headed `## title` of the report at `path` holds ('2 runs', '1 run',
    or 'text' where it holds no run), '' where it is missing or empty: --write replaces none
    of it, since notes written by hand beside a run cannot be told from its report."""
    for section in _sections(path):
        lines = section.splitlines()
        if lines[0] == f"## {title}" and any(line.strip() for line in lines[1:]):
            runs = runs_in_section(path, title)
            return f"{runs} run{'s' * (runs != 1)}" if runs else "text"
    return ""


def runs_in_section(path: str, title: str) -> int:
    """How many runs (each with its "Machine:" line) the report at `path` holds in the
    section headed `## title`; 0 where there is no such file or section."""
    for section in _sections(path):
        if section.splitlines()[0] == f"## {title}":
            return sum(line.startswith("Machine: ") for line in section.splitlines())
    return 0


def report_section(parts: list[tuple[str, str]], measured_code: str, command: str,
                   commit: str = "", devices: int = 1) -> str:
    """A run's markdown: this device's heading, then the run's own heading (what it measured,
    the date and the `commit` measured), the machine and the command, then each mode's
    part."""
    titles = ", ".join(title for title, _ in parts)
    when = datetime.date.today().isoformat() + (f", {commit[:7]}" if commit else "")
    if len(parts) == 1:
        body = parts[0][1]
    else:
        body = "\n\n".join(f"#### {title}\n\n{text}" for title, text in parts)
    return (f"## {device_title()}\n\n### {titles} ({when})\n\n"
            f"Machine: {header(devices)}.{measured_code}\n\nCommand: `{command}`\n\n{body}\n")
