"""`python -m jaxae.experiments report`: RESULTS.md from the experiments' table.json files.

The page holds no number of its own: each section is rendered from the JSON record that the
experiment's command wrote, with its command, scale, machine, date, wall time and data. With
`--redraw-plots` each experiment's plot is drawn again from that record too (`redraw_plots`).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import os

from jaxae.experiments import EXPERIMENTS
from jaxae.experiments.render import (
    describe_commit,
    describe_machine,
    display_paths,
    render_section,
    render_table,
)

PAGE = "RESULTS.md"
TITLE = "# jaxae: experiment results"  # the first line of every page this module writes
# what each kind of figure on the page is, so that it can be set against others' numbers
DEFINITIONS = """## How the figures are defined

- PSNR (dB): each test image's PSNR against its clean image, with the pixels in [0, 1] (MAX = 1,
  capped at 100 dB), averaged over the images. It is not the PSNR of the mean MSE, which is
  lower: a row's MSE and PSNR do not convert into each other.
- MSE and BCE: means per pixel over the test images (BCE computed from the logits).
- ELBO and IWAE k (nats per image, higher is better): log p(x|z) summed over the pixels minus
  the KL divergence to N(0, I) (analytic; weight 1 whatever beta the run trained with); IWAE
  k is the importance-weighted bound with k samples of z, on the images its row names (k = 1:
  a one-sample estimate of the ELBO, its KL sampled too). p(x|z) is a Bernoulli on grey
  [0, 1] pixels unless a row says otherwise: a cross-entropy surrogate, not a density, whose
  log at a perfect reconstruction is minus the pixels' own binary entropy rather than 0, so
  it also scores how close to black and white a data set's pixels are. A statically
  binarised row binarises each image once with a draw derived from the run's seed (on the
  offline MNIST digits): not the fixed binarised MNIST that published bounds use, so not
  comparable with them. A Gaussian row is a density with a fixed standard deviation
  (`objective.gaussian_scale`) on 8-bit pixels that are not dequantised: its value is set by
  that deviation, and can be positive.
- A conditional VAE's (`cvae`) ELBO bounds log p(x|y), the image given its class.
"""
CONFIGS_TABLE = os.path.join("configs", "table.md")  # written by scripts/config_results.py


def table_paths(out: str) -> dict[str, str]:
    """{name: the table.json path} of every experiment that has been run into `out`."""
    paths = {name: os.path.join(out, name, "table.json") for name in EXPERIMENTS}
    return {name: path for name, path in paths.items() if os.path.isfile(path)}


def load_records(out: str) -> dict[str, dict]:
    """The table.json of every experiment that has been run into `out`, by name."""
    records = {}
    for name, path in table_paths(out).items():
        with open(path) as f:
            try:
                records[name] = json.load(f)
            except ValueError as e:
                raise UnreadableTable(f"{path} is not a table an experiment wrote ({e}): "
                                      f"rerun `python -m jaxae.experiments {name}` to write it "
                                      "again") from None
    return records


class UnreadableTable(ValueError):
    """An experiment's table.json that is not JSON (cut short, or written over)."""


def redraw_plots(out: str) -> list[str]:
    """Draws the plot of every experiment whose table.json is in `out` again from that record
    alone (its module's `plot_record`: no training), where the record says (`plot`): a change
    to a plot reaches the published results without rerunning hours of training. Returns the
    plots' paths."""
    paths = []
    for name, record in load_records(out).items():
        path = os.path.join(out, name, record["plot"])
        importlib.import_module(f"jaxae.experiments.{name}").plot_record(record, path)
        paths.append(path)
    return paths


def _summary(records: dict[str, dict]) -> str:
    rows = []
    for name, r in records.items():
        runs = r["runs"].values()
        rows.append({"name": f"[{name}](#{_anchor(r['title'])})", "scale": r["scale"],
                     "date": r["date"], "commit": describe_commit(r["machine"]),
                     "wall": r["wall_time_s"],
                     "runs": f"{sum(x['trained_now'] for x in runs)} / {len(runs)}",
                     "train": sum(x["train_seconds"] for x in runs),
                     "machine": describe_machine(r["machine"])})
    columns = [{"key": "name", "header": "experiment", "format": ""},
               {"key": "scale", "header": "scale", "format": ""},
               {"key": "date", "header": "date (UTC)", "format": ""},
               {"key": "commit", "header": "jaxae commit", "format": ""},
               {"key": "wall", "header": "wall time of the command (s)", "format": ",.1f"},
               {"key": "runs", "header": "runs trained by it / used", "format": ""},
               {"key": "train", "header": "training time of its runs (s)", "format": ",.0f"},
               {"key": "machine", "header": "machine", "format": ""}]
    return render_table(columns, rows)


def _anchor(title: str) -> str:
    """GitHub's anchor for a heading: lower case, spaces to dashes, punctuation dropped."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def _data_table(records: dict[str, dict]) -> str:
    seen: dict[tuple, dict] = {}
    for name, r in records.items():
        for d in r["data"]:
            key = (d["key"], d["train_used"], d["test_used"])
            seen.setdefault(key, {**d, "experiments": []})["experiments"].append(name)
    rows = [{**d, "experiments": ", ".join(d["experiments"])} for d in seen.values()]
    columns = [{"key": "dataset", "header": "data set", "format": ""},
               {"key": "train_used", "header": "training images used", "format": ","},
               {"key": "train_available", "header": "of", "format": ","},
               {"key": "test_used", "header": "test images used", "format": ","},
               {"key": "test_available", "header": "of", "format": ","},
               {"key": "note", "header": "what it is", "format": ""},
               {"key": "experiments", "header": "used by", "format": ""}]
    sources = sorted({f"- {d['dataset']}: {display_paths(d['source'])}" for d in rows})
    return render_table(columns, rows) + "\n\nRead from:\n\n" + "\n".join(sources)


def _scale_warning(records: dict[str, dict]) -> list[str]:
    scales = sorted({r["scale"] for r in records.values()})
    if scales == ["full"]:
        return []
    return [f"**Scale: {', '.join(scales)}.** The numbers below are not the full-scale ones "
            "(see each section's scale line); run each command with `--scale full` for those.",
            ""]


def build_page(out: str, page_dir: str) -> str:
    """The markdown of RESULTS.md; links to the plots are relative to `page_dir`."""
    records = load_records(out)
    parts = [TITLE, "",
             f"Generated by `python -m jaxae.experiments report --out {display_paths(out)}` "
             "from the "
             "`table.json` file each experiment's command wrote (the shipped configs' section: "
             "`scripts/config_results.py`'s table); every number on this page is read from "
             "those files. Rerun a command to refresh its section, then rerun the report.", ""]
    parts += _scale_warning(records)
    missing = [n for n in EXPERIMENTS if n not in records]
    if records:
        parts += ["## Summary", "", _summary(records), "", "## Data", "", _data_table(records),
                  "", DEFINITIONS]
    for name, record in records.items():
        plot = os.path.relpath(os.path.abspath(os.path.join(out, name, record["plot"])),
                               os.path.abspath(page_dir))
        parts += [render_section(record, plot, level=2)]
    configs = os.path.join(out, CONFIGS_TABLE)
    if os.path.isfile(configs):  # the shipped configs' own runs (scripts/config_results.py)
        with open(configs) as f:
            parts += [f.read()]
    if missing:
        parts += ["## Not run yet", ""]
        parts += [f"- {n}: `{display_paths(_command_like_the_others(n, records, out))}`"
                  for n in missing]
        parts += [""]
    return "\n".join(parts)


def _command_like_the_others(name: str, records: dict[str, dict], out: str) -> str:
    """The command that runs experiment `name` into `out` as the page's others were run
    (their scale, data sets and TFDS dir, where they agree), else at the full scale."""
    prefix = "python -m jaxae.experiments "
    rests = {r["command"].removeprefix(prefix).partition(" ")[2] for r in records.values()
             if r.get("command", "").startswith(prefix)}
    flags = rests.pop().split(" ") if len(rests) == 1 else ["--scale", "full", "--out", out]
    if "--out" in flags[:-1]:  # into this page's folder
        flags[flags.index("--out") + 1] = out
    return f"{prefix}{name} {' '.join(flags)}"


class PageNotWritten(OSError):
    """The page (or its folder) could not be written, or is not to be (errno 0: `strerror`
    says why, whole); the tables it is made of are intact."""


def write_report(out: str, page: str | None = None) -> str:
    """Writes the page (default `<out>/RESULTS.md`), whole or not at all; returns its path.
    A page that cannot be written, or an existing file that is no page of this module's (a
    table.json, the README), is PageNotWritten: nothing is replaced."""
    page = page or os.path.join(out, PAGE)
    if os.path.isdir(page):
        raise PageNotWritten(errno.EISDIR, os.strerror(errno.EISDIR), page)
    try:
        with open(page) as f:
            ours = f.readline().rstrip("\n") == TITLE
    except FileNotFoundError:
        ours = True
    except (OSError, UnicodeDecodeError):
        ours = False
    if not ours:
        raise PageNotWritten(0, f"{page} is a file this command did not write (its first line "
                                f"is not {TITLE!r}), which the report would replace: pass "
                                "another --page, or remove that file", page)
    folder = os.path.dirname(os.path.abspath(page))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise PageNotWritten(e.errno, e.strerror, page) from None
    text = build_page(out, folder)
    try:
        with open(f"{page}.partial", "w") as f:
            f.write(text)
        os.replace(f"{page}.partial", page)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(f"{page}.partial")
        raise PageNotWritten(e.errno, e.strerror, page) from None
    return page
