"""Experiment `dae_sweep`: the material's exercise: sweep the code size of the dropout-corrupted
denoising autoencoder (half the pixels zeroed) on Fashion-MNIST and MNIST, in test PSNR."""

from __future__ import annotations

import math

from jaxae.experiments import figures
from jaxae.experiments.common import (
    Context,
    DataChoice,
    Result,
    and_list,
    by_dataset,
    column,
    fewer_images,
    run_as_command,
    steps_note,
    steps_per_dataset,
)
from jaxae.experiments.render import SEED_SPREAD, seed_range, seeds_overlap, uneven_steps

TITLE = "Denoising autoencoder: code size sweep under dropout corruption (rate 0.5)"
CONFIG = "dae_dropout"  # dense_ae, task denoise, corruption "dropout", dropout_rate 0.5
NEAR_BEST_DB = 0.5  # "as good as the best": within this many dB of the best size
PLATEAU_DB = 0.1  # sizes this close to the best PSNR are one plateau: none of them is "the best"
OVERCOMPLETE = 1.2  # the material's code: 1.2 times the image's pixels (configs/dae_dropout.py)
OWN_FLAGS = ("dae-sizes",)  # its grid of code sizes (`Context.dae_sizes`)


def latents(scale: str, pixels: int, given: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The code sizes swept at a scale, for images of `pixels` values: fixed small and large
    sizes, the image's own size and the material's over-complete code, at full scale up to
    about eight times the image's size; or those `given` (`--dae-sizes`: a grid of one's
    own)."""
    if given:
        return tuple(sorted(set(given)))
    overcomplete = int(pixels * OVERCOMPLETE)
    sizes = {"full": (16, 64, 256, 512, pixels, overcomplete, 1500, 3000, 6000),
             "small": (16, 64, 256, 512, pixels, overcomplete, 1500),
             "tiny": (16, overcomplete)}[scale]
    return tuple(sorted(set(sizes)))


# what the rows' median_psnr is of, where a row or its run's record does not say (those
# written before the task's baseline for dropout became the masked median: the plain median)
PLAIN_MEDIAN = "median 3x3"


def baseline_label(rows: list[dict]) -> str:
    """The classical filter the rows' median_psnr scores, in words."""
    names = sorted({r.get("baseline", PLAIN_MEDIAN) for r in rows})
    return " / ".join(f"{name.replace('median 3x3', '3x3 median')} filter" for name in names)


def dataset_rows(ctx: Context, choice: DataChoice) -> list[dict]:
    rows = []
    for d in latents(ctx.scale.name, math.prod(ctx.splits(choice).image_shape), ctx.dae_sizes):
        run = ctx.train(CONFIG, choice, {"model.latent_dim": d})
        metrics = run.metrics
        rows.append({"dataset": choice.title, "latent": d, "test_psnr": metrics["psnr"],
                     "input_psnr": metrics["input_psnr"],
                     "median_psnr": metrics["baseline_psnr"],
                     "baseline": run.baseline or PLAIN_MEDIAN,
                     "gain_db": metrics["psnr"] - metrics["input_psnr"],
                     "test_mse": metrics["mse"]})
    return rows


def dataset_findings(rows: list[dict], pixels: int) -> list[str]:
    """The best size, and whether (and how well) a code smaller than the image (of `pixels`
    values) denoises."""
    best = max(rows, key=lambda r: r["test_psnr"])
    dataset = best["dataset"]
    out = [f"{dataset}: best code size (by test PSNR) d={best['latent']}: "
           f"{best['test_psnr']:.2f} dB against "
           f"{best['input_psnr']:.2f} dB for the corrupted input ({best['gain_db']:+.2f} dB) "
           f"and {best['median_psnr']:.2f} dB for a {baseline_label([best])}"
           + (": no code size restores the corrupted input here, every one scores below it."
              if best["gain_db"] < 0 else ".")]
    if edge := edge_finding(rows) or bracket_finding(rows):
        out.append(edge)
    small = [r for r in rows if r["latent"] < pixels]
    if small:
        top = max(small, key=lambda r: r["test_psnr"])
        works = top["gain_db"] > 0
        out.append(f"{dataset}: a code smaller than the {pixels}-pixel image "
                   f"{'works' if works else 'does not work'}: the best one, d={top['latent']}, "
                   f"restores {top['gain_db']:+.2f} dB over the corrupted input, "
                   f"{best['test_psnr'] - top['test_psnr']:.2f} dB below the best size.")
    out.append(f"{dataset}: the smallest code within {NEAR_BEST_DB} dB of the best is "
               f"d={smallest_near_best(rows)['latent']}.")
    if seeds := seeds_finding(rows):
        out.append(seeds)
    return out


def edge_finding(rows: list[dict]) -> str | None:
    """Where the best size is the largest one swept: that the PSNR still rises there, with
    the last two steps' gains (shrinking or not), so the sweep brackets no best size; None
    where a larger size swept scores lower."""
    ordered = sorted(rows, key=lambda r: r["latent"])
    if len(ordered) < 3 or max(rows, key=lambda r: r["test_psnr"]) is not ordered[-1]:
        return None
    a, b, c = ordered[-3:]
    first, last = b["test_psnr"] - a["test_psnr"], c["test_psnr"] - b["test_psnr"]
    return (f"{c['dataset']}: d={c['latent']}, the largest size swept, is the best: the PSNR "
            f"rises to it ({last:+.2f} dB from d={b['latent']}; {first:+.2f} dB from "
            f"d={a['latent']} to {b['latent']}), so the sweep finds no size beyond which a "
            "larger code stops helping" + (", only that the gains shrink." if 0 <= last < first
                                           else "."))


def bracket_finding(rows: list[dict]) -> str | None:
    """Where the best sizes (the plateau within PLATEAU_DB of the best PSNR) lie inside the
    sweep: the PSNR rising to them and falling past them, so the sweep brackets them; None
    where they reach the smallest or the largest size swept."""
    ordered = sorted(rows, key=lambda r: r["latent"])
    best = plateau(rows)
    low = [r for r in ordered if r["latent"] < best[0]]
    high = [r for r in ordered if r["latent"] > best[-1]]
    if not low or not high:
        return None
    top = max(rows, key=lambda r: r["test_psnr"])
    what = (f"size, d={best[0]}" if len(best) == 1 else f"sizes, d={best[0]} to {best[-1]} "
            f"(within {PLATEAU_DB} dB of the best, d={top['latent']})")
    it = "it" if len(best) == 1 else "them"
    return (f"{top['dataset']}: the sweep brackets its best {what}: the PSNR is "
            f"{top['test_psnr'] - low[-1]['test_psnr']:.2f} dB lower at d={low[-1]['latent']}, "
            f"below {it}, and {top['test_psnr'] - high[0]['test_psnr']:.2f} dB lower at "
            f"d={high[0]['latent']}, above {it}.")


def seeds_finding(rows: list[dict]) -> str | None:
    """Whether the seeds settle the best size: the best and the next best size by mean PSNR,
    and whether their [lowest, highest] over the seeds overlap; None for one seed's rows."""
    ranked = sorted(rows, key=lambda r: r["test_psnr"], reverse=True)
    if len(ranked) < 2 or not any(SEED_SPREAD in r for r in ranked[:2]):
        return None
    (best, lo, hi), (next_, next_lo, next_hi) = ((r, *seed_range(r, "test_psnr"))
                                                 for r in ranked[:2])
    overlap = seeds_overlap(best, next_, "test_psnr")
    return (f"{best['dataset']}: over the seeds, d={best['latent']} gives {best['test_psnr']:.2f} "
            f"dB [{lo:.2f}, {hi:.2f}] and the next best, d={next_['latent']}, "
            f"{next_['test_psnr']:.2f} dB [{next_lo:.2f}, {next_hi:.2f}]: "
            + ("their ranges overlap, so these seeds do not settle which size is better."
               if overlap else f"their ranges do not overlap: every seed's d={best['latent']} run "
               f"scores above every seed's d={next_['latent']} run."))


def smallest_near_best(rows: list[dict]) -> dict:
    """The row of the smallest code whose PSNR is within NEAR_BEST_DB of the best one's."""
    best = max(r["test_psnr"] for r in rows)
    return min((r for r in rows if best - r["test_psnr"] <= NEAR_BEST_DB),
               key=lambda r: r["latent"])


def comparison_finding(rows: list[dict], run_steps: dict[str, list[int]],
                       train_sizes: dict[str, int] | None = None) -> str | None:
    """How the two data sets differ: floor, best PSNR and the gain over the floor; and, where
    their runs (`run_steps`: {data set: each run's steps}) trained for different numbers of
    steps, or on training sets of different sizes (`train_sizes`: {data set: images}), that
    the comparison is of those too."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    if len(datasets) < 2:
        return None
    parts = []
    for dataset in datasets:
        mine = [r for r in rows if r["dataset"] == dataset]
        best = max(mine, key=lambda r: r["test_psnr"])
        parts.append(f"{dataset} floor {best['input_psnr']:.2f} dB, best {best['test_psnr']:.2f}"
                     f" dB ({best['gain_db']:+.2f} dB at d={best['latent']}), within "
                     f"{NEAR_BEST_DB} dB of it from d={smallest_near_best(mine)['latent']}")
    text = "Data sets compared: " + "; ".join(parts) + "."
    if uneven := uneven_steps({d: run_steps.get(d, []) for d in datasets}):
        fewest, n, most, m = uneven
        text += (f" The runs on {fewest} trained for {n:,} steps against {m:,} on {most}, so "
                 "the gap between the data sets is partly one of training length.")
    if fewer := fewer_images({d: n for d, n in (train_sizes or {}).items() if d in datasets}):
        small, n, large, m = fewer
        text += (f" {small} also has {n:,} training images against {large}'s {m:,}: these "
                 "runs do not tell that apart from the data themselves.")
    return text


def _best(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: r["test_psnr"])


def smaller_code_note(rows: list[dict], pixels: int) -> str:
    """Why a code smaller than the image can denoise, and how well the best one does here
    (or that here none does: its gain over the input is negative, or none)."""
    best = {dataset: top for dataset, mine in by_dataset(rows).items()
            if (small := [r for r in mine if r["latent"] < pixels]) and (top := _best(small))}
    gains = [f"{top['gain_db']:+.2f} dB (d={top['latent']}) on {dataset}"
             for dataset, top in best.items() if top["gain_db"] > 0]
    losses = [f"{-top['gain_db']:.2f} dB (d={top['latent']}) on {dataset}"
              for dataset, top in best.items() if top["gain_db"] < 0]
    ties = [f"d={top['latent']} on {dataset}" for dataset, top in best.items()
            if top["gain_db"] == 0]
    text = ("Denoising is not copying: the clean images lie near a low-dimensional set, and a "
            "code that can only describe such images must drop the corruption, so a code "
            "smaller than the image may denoise")
    if gains:
        text += f"; here the best one gains {and_list(gains)} over the input"
    if losses:
        text += (f"{'; but' if gains else '; here'} even the best one scores "
                 f"{and_list(losses)} below the input")
    if ties:
        text += f"; the best one only matches the input ({and_list(ties)})"
    text += "."
    wider = sorted({r["latent"] for r in rows if r["latent"] > pixels})
    if wider:
        text += (f" A code wider than the image ({int(pixels * OVERCOMPLETE)} in the material) "
                 "does not copy the input either, because the input is corrupted afresh at "
                 "every step and the target is the clean image.")
    return text


def datasets_note(rows: list[dict]) -> str | None:
    """How the data sets differ: which floor is higher, and which comes within NEAR_BEST_DB of
    its best with the smaller code; the reasons for MNIST against Fashion-MNIST only where the
    numbers go that way."""
    grouped = by_dataset(rows)
    if len(grouped) < 2:
        return None
    floors = {d: mine[0]["input_psnr"] for d, mine in grouped.items()}
    near = {d: smallest_near_best(mine)["latent"] for d, mine in grouped.items()}
    text = ("The data sets differ in what the corruption destroys and what is left to restore. "
            "The corrupted input scores " +
            and_list([f"{floor:.2f} dB on {d}" for d, floor in floors.items()]) + ".")
    digits = next((d for d in grouped if d.startswith("MNIST")), None)
    fashion = next((d for d in grouped if d.startswith("Fashion-MNIST")), None)
    if digits and fashion and len(grouped) == 2:
        if floors[digits] > floors[fashion]:
            text += (" MNIST digits are thin strokes on a black background: zeroing a "
                     "background pixel changes nothing, so the corrupted input loses less (the "
                     "higher floor); Fashion-MNIST garments fill much of the frame with grey "
                     "levels and texture, so more is destroyed.")
        if near[digits] < near[fashion]:
            text += (f" Digits vary little within a class, so a smaller code holds them: MNIST "
                     f"comes within {NEAR_BEST_DB} dB of its best from d={near[digits]}, "
                     f"Fashion-MNIST, with more detail to restore, from d={near[fashion]}.")
            return text
    sizes = sorted(set(near.values()))
    if len(sizes) == 1:
        text += (f" Both come within {NEAR_BEST_DB} dB of their best from the same code size, "
                 f"d={sizes[0]}.")
    else:
        text += (f" The smallest code within {NEAR_BEST_DB} dB of the best is " +
                 and_list([f"d={n} on {d}" for d, n in near.items()]) + ".")
    return text


def plateau(rows: list[dict]) -> list[int]:
    """The code sizes whose PSNR is within PLATEAU_DB of the best one's: no best among them."""
    best = max(r["test_psnr"] for r in rows)
    return sorted(r["latent"] for r in rows if best - r["test_psnr"] <= PLATEAU_DB)


def _sizes(sizes: list[int], swept: list[int]) -> str:
    """'d=512', 'd=784 to 1500' (every size swept between them), or 'd=512 and 1500'."""
    if len(sizes) == 1:
        return f"d={sizes[0]}"
    between = [d for d in swept if sizes[0] <= d <= sizes[-1]]
    return (f"d={sizes[0]} to {sizes[-1]}" if between == sizes
            else "d=" + and_list([str(d) for d in sizes]))


def overfit_note(rows: list[dict], train_sizes: dict[str, int]) -> str | None:
    """Where the training sets differ in size: whether the smaller one's best codes (its
    plateau within PLATEAU_DB) are smaller (the larger codes' overfitting would pull them
    down) or not: all below the larger set's, or ending below them, its PSNR falling past
    them (the plateaus may share a size)."""
    grouped = by_dataset(rows)
    fewer = fewer_images({d: n for d, n in train_sizes.items() if d in grouped})
    if fewer is None:
        return None
    small, n, large, m = fewer
    mine, theirs = plateau(grouped[small]), plateau(grouped[large])
    swept = sorted({r["latent"] for r in rows})
    text = (f"{small} has {n:,} training images against {large}'s {m:,}: large codes have more "
            "parameters per training image there and may overfit, which would pull its best "
            f"size down. Its best codes (within {PLATEAU_DB} dB of its best PSNR) are "
            f"{_sizes(mine, swept)}, {large}'s {_sizes(theirs, swept)}")
    if mine[-1] == max(r["latent"] for r in grouped[small]):
        return text + "; by PSNR no overfitting shows: the largest code swept is among its best."
    if mine[-1] < theirs[0]:
        return text + ": smaller, as overfitting would make them."
    if mine[-1] < theirs[-1]:
        best = max(r["test_psnr"] for r in grouped[small])
        past = min((r for r in grouped[small] if r["latent"] > mine[-1]),
                   key=lambda r: r["latent"])
        return text + (f": they end at a smaller code, its PSNR falling past them "
                       f"({past['test_psnr'] - best:+.2f} dB at d={past['latent']} against its "
                       "best), as overfitting would make it.")
    return text + ": not smaller."


def notes(rows: list[dict], pixels: int, train_sizes: dict[str, int],
          run_steps: dict[str, list[int]] | None = None, cap: int | None = None
          ) -> list[str]:
    """Why the numbers come out as they do, for images of `pixels` values; what is said about
    the results is computed from `rows`, `train_sizes` ({data set: training images}) and
    `run_steps` ({data set: each run's steps}; `cap`: the scale's cap on epochs)."""
    return [
        "Corruption: each pixel is set to 0 with probability 0.5 (kept pixels unchanged), at "
        "training and test time; the test corruption is drawn with the run's fixed evaluation "
        "key, derived from its seed, so every code size is scored on the same corrupted images "
        "(each seed on its own draw). The floor is the PSNR "
        "of the corrupted input against the clean image: a model below it makes things worse.",
        "The sizes are ranked by their test PSNR: the sweep shows how the test figure depends "
        "on the code size, and chooses no model to report: the best size's figure, chosen on "
        "the test images, is an optimistic estimate for a model chosen that way (to choose a "
        "size, score the candidates on a validation split of the training images: train.py's "
        "data.val_size).",
        smaller_code_note(rows, pixels),
        *(n for n in (datasets_note(rows), overfit_note(rows, train_sizes),
                      steps_note(run_steps or {}, cap)) if n),
    ]


def swept_pixels(rows: list[dict], scale: str) -> int:
    """The image's pixel count whose sweep at `scale` (`latents`) is the rows' code sizes (or,
    for a grid of an earlier version, the one size swept beside its over-complete code): the
    plot's image-size line, for a table.json that records the sizes but not the image."""
    swept = tuple(sorted({r["latent"] for r in rows}))
    found = [p for p in range(1, swept[-1] + 1) if latents(scale, p) == swept] or \
        [p for p in swept if int(p * OVERCOMPLETE) in swept]  # a grid of an earlier version
    if len(found) != 1:
        raise ValueError(f"dae_sweep's table holds code sizes {', '.join(map(str, swept))}, "
                         f"which are not the {scale} scale's sweep of any image size: rerun "
                         "dae_sweep to write a table its plot can be drawn from")
    return found[0]


def plot_record(record: dict, path: str) -> None:
    """The plot drawn again from the experiment's table.json record alone (no training)."""
    pixels = record.get("settings", {}).get("image pixels") or \
        swept_pixels(record["rows"], record["scale"])  # (a record of before it was kept)
    plot(record["rows"], record["scale"], pixels, path)


def plot(rows: list[dict], scale: str, pixels: int, path: str) -> None:
    fig, axes = figures.panels(1, "Dropout-corrupted DAE (rate 0.5): test PSNR against code "
                               "size", scale, width=10.5, height=6.4)
    ax = axes[0, 0]
    colors = ("tab:blue", "tab:red", "tab:green")
    for color, dataset in zip(colors, dict.fromkeys(r["dataset"] for r in rows), strict=False):
        mine = [r for r in rows if r["dataset"] == dataset]
        x = [r["latent"] for r in mine]
        y = [r["test_psnr"] for r in mine]
        ax.plot(x, y, marker="o", color=color, label=f"{dataset}: DAE output" + (
            f" ({figures.SEED_BARS})" if figures.any_spread(mine, "test_psnr") else ""))
        figures.seed_errorbars(ax, x, mine, "test_psnr")
        ax.plot(x, [r["median_psnr"] for r in mine], linestyle=":", color=color,
                label=f"{dataset}: {baseline_label(mine)} of the input")
        ax.plot(x, [r["input_psnr"] for r in mine], linestyle="--", color=color,
                label=f"{dataset}: corrupted input, no restoration")
    ax.axvline(pixels, color="gray", linewidth=1)
    ax.annotate(f"image size {pixels} ", (pixels, 0.98), xycoords=("data", "axes fraction"),
                fontsize=8, color="gray", ha="right", va="top")
    figures.log2_latent_axis(ax, sorted({r["latent"] for r in rows}))
    ax.tick_params(axis="x", labelrotation=90)  # close sizes (784, 940) keep apart
    ax.set_ylabel("test PSNR against the clean image (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    figures.save(fig, path)


def run(ctx: Context) -> Result:
    choices = ctx.data()
    rows = ctx.over_seeds(
        lambda c: [row for choice in choices for row in dataset_rows(c, choice)])
    pixels = math.prod(ctx.splits(choices[0]).image_shape)
    sizes = ctx.train_sizes()
    findings = [f for dataset in dict.fromkeys(r["dataset"] for r in rows)
                for f in dataset_findings([r for r in rows if r["dataset"] == dataset], pixels)]
    compared = comparison_finding(rows, steps_per_dataset(ctx.used_runs), sizes)
    columns = [column("dataset", "data set"), column("latent", "code size d", "d"),
               column("test_psnr", "DAE output PSNR (dB)", ".2f"),
               column("input_psnr", "corrupted input PSNR, floor (dB)", ".2f"),
               column("median_psnr", f"{baseline_label(rows)} PSNR (dB)", ".2f"),
               column("gain_db", "gain over the input (dB)", "+.2f"),
               column("test_mse", "DAE output test MSE", ".5f")]
    return Result(
        title=TITLE,
        question=f"Which code size denoises best, and can a code smaller than the {pixels}-pixel "
                 "image still denoise? Dense DAEs (configs/dae_dropout.py) with the code size "
                 "swept, scored by the test PSNR of the restored image against the clean one.",
        columns=columns, rows=rows, findings=findings + ([compared] if compared else []),
        notes=notes(rows, pixels, sizes, steps_per_dataset(ctx.used_runs), ctx.scale.max_epochs),
        plot=lambda path: plot(rows, ctx.scale.name, pixels, path),
        settings={"code sizes": ", ".join(map(str, latents(ctx.scale.name, pixels,
                                                              ctx.dae_sizes))),
                  "image pixels": pixels,
                  "config": "configs/dae_dropout.py (dense_ae, dropout 0.5, MSE)"})


if __name__ == "__main__":
    run_as_command("dae_sweep")
