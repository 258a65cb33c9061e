"""The roofline of a training step: its FLOPs and bytes against the machine's two roofs.

A step's work is XLA's cost analysis of the compiled training loop (`step_cost`): "flops"
counts every floating-point operation of one step (a matmul's 2*M*N*K, one per element of
an elementwise op; transcendentals apart), and "bytes accessed" counts, for every operation
of the compiled program after fusion, the bytes of its operands and of its result: the
traffic if each fused kernel read its inputs from memory and wrote its output back, with no
reuse through the caches between kernels. Its arithmetic intensity is FLOPs per byte.
These are the operations the compiled step performs, so they depend on how it computes:
the same conv model is charged more FLOPs with `--conv patches` (each tap a matmul over
padded images) than with `--conv xla` (XLA's convolutions, as its cost analysis counts
them); the bench's table prints both, and fractions of the roof compare like with like
only within one implementation.

The machine's two roofs are measured by `RoofMeter`, right beside each timed chunk of steps
(before it and after it, so that a busy moment lowers a roof and the timing together):

- the matmul peak: FLOP/s of n x n matmuls of the run's compute dtype (float32, or
  bfloat16 operands with float32 accumulation), the best of a few at n and at 3/4 and 1/2
  of it (on a CPU the largest is not the fastest);
- the memory bandwidth: a STREAM-like triad and copy in JAX (a = b + s*a and a = s*a, in
  place, in a compiled loop), counted as STREAM counts (the arrays read plus the array
  written, no write-allocate), the best of the two, over arrays whose total size is the
  step's own footprint (its arguments, results and temporaries), so that both see the same
  level of the cache hierarchy.

The roof a step can reach is min(peak, bandwidth * intensity) (`attainable`); it is bound by
whichever of the two is lower, and its fraction of the roof is achieved FLOP/s over that.
A fraction above 100% means a roof or a timing was mismeasured, never that the step beat
the machine: `fraction_of_roof` raises `RoofExceeded` rather than report one
(`tests/test_roofline.py`). `python -m benchmarks.bench` reports all of it per model;
`--image-sizes`, `--channels` and `--widths` grow the conv workloads along it, and `plot`
draws the achieved FLOP/s and the fraction of the roof against FLOPs per step;
`python -m benchmarks.roofline LOG PNG TITLE [STEP]` draws it again from a run's log.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxae.kernels import precision

PLOT_FORMATS = (".png", ".svg", ".pdf")  # what `plot` writes (matplotlib, by extension)
STREAM_MIN_BYTES = 3 * 2**20  # the smallest STREAM footprint: three 1 MiB arrays
STREAM_MAX_BYTES = 3 * 2**28  # the largest: three 256 MiB arrays
STREAM_LOOP = 8  # triads per dispatch: the dispatch's own cost stays out of the rate


class RoofExceeded(ValueError):
    """A step measured faster than the roof over it: a timing or a roof is wrong."""


@dataclasses.dataclass(frozen=True)
class Cost:
    """One training step's work as XLA counts it in the compiled program."""

    flops: float
    bytes: float  # bytes accessed: every fused op's operands and result
    footprint: int = 0  # bytes of the program's arguments, results and temporaries
    # off the CPU, the accelerator's own compiled step as its cost analysis counts it, kept
    # beside the host program's counts above (None when the device is the CPU)
    device_flops: float | None = None
    device_bytes: float | None = None

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved."""
        return self.flops / self.bytes if self.bytes else math.inf


def _first(analysis):
    return analysis[0] if isinstance(analysis, (list, tuple)) else analysis


def step_cost(compiled) -> Cost:
    """The cost of one step of a compiled training loop (or of one compiled step).

    XLA's cost analysis counts a while loop's body once, whatever its trip count: for the
    chunked loop that is one training step, plus the loop's few scalar operations.
    """
    cost = _first(compiled.cost_analysis()) or {}
    memory = compiled.memory_analysis()
    footprint = 0
    if memory is not None:
        footprint = (memory.argument_size_in_bytes + memory.output_size_in_bytes
                     - memory.alias_size_in_bytes + memory.temp_size_in_bytes)
    return Cost(float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0)),
                int(footprint))


@dataclasses.dataclass(frozen=True)
class Roofs:
    """The two roofs at one moment."""

    peak_flops: float  # FLOP/s
    bandwidth: float  # bytes/s

    def __or__(self, other: Roofs) -> Roofs:
        """The higher of each roof: the better of two measurements of the same machine."""
        return Roofs(max(self.peak_flops, other.peak_flops),
                     max(self.bandwidth, other.bandwidth))


def attainable(cost: Cost, roofs: Roofs) -> tuple[float, str]:
    """(the FLOP/s the roofline allows this step, "compute" or "memory": the binding roof)."""
    memory_roof = roofs.bandwidth * cost.intensity
    if roofs.peak_flops <= memory_roof:
        return roofs.peak_flops, "compute"
    return memory_roof, "memory"


def fraction_of_roof(cost: Cost, seconds_per_step: float, roofs: Roofs) -> float:
    """Achieved FLOP/s over the attainable; raises RoofExceeded above 1 (a mismeasurement:
    no step runs above the roofline)."""
    if seconds_per_step <= 0 or cost.flops <= 0 or cost.bytes <= 0:
        raise ValueError(f"no roofline for {cost} in {seconds_per_step} s per step")
    roof, bound = attainable(cost, roofs)
    fraction = cost.flops / seconds_per_step / roof
    if fraction > 1.0:
        raise RoofExceeded(
            f"{fraction:.1%} of the {bound} roof: {cost.flops / seconds_per_step / 1e9:.1f} "
            f"GFLOP/s and {cost.bytes / seconds_per_step / 1e9:.1f} GB/s achieved against a "
            f"peak of {roofs.peak_flops / 1e9:.1f} GFLOP/s and {roofs.bandwidth / 1e9:.1f} "
            "GB/s: a roof or the timing was mismeasured")
    return fraction


def stream_array_bytes(footprint: int) -> int:
    """Bytes of each of the STREAM's three arrays, for a step whose footprint is given."""
    total = min(max(footprint, STREAM_MIN_BYTES), STREAM_MAX_BYTES)
    return total // 3 // 4096 * 4096


CPU_PEAK_N, ACCELERATOR_PEAK_N = 2048, 8192  # the peak's default matmul size (--peak-n)
PEAK_SIZES = (1.0, 0.75, 0.5)  # the peak's matmul sizes, as fractions of peak_n


class RoofMeter:
    """Measures both roofs, compiled once: the matmul peak and the STREAM bandwidth over
    three arrays of `array_bytes` each. The peak is the best rate of n x n matmuls at
    n = peak_n and at PEAK_SIZES' smaller fractions of it: on a CPU the largest is not the
    fastest (its operands outgrow the last-level cache), and a step's products ran faster
    than it alone (`python -m benchmarks.bench --mode matmuls` names such a row). `dtype`:
    "float32" (full float32 matmuls), "tf32" (TensorFloat-32 where the device has it) or
    "bfloat16" (bfloat16 operands, float32 accumulation, as `jaxae.kernels.precision` runs
    the Dense layers). With a `mesh` of N devices (a data-parallel step's), every device
    runs its own matmuls and STREAM arrays at once, and the roofs are their sum: the
    machine's over the devices the step is split across."""

    def __init__(self, peak_n: int, array_bytes: int, dtype: str = "float32",
                 repeats: int = 2, mesh: Mesh | None = None):
        self.peak_n, self.array_bytes, self.repeats = peak_n, array_bytes, repeats
        self.devices = 1 if mesh is None else mesh.size
        if dtype == "bfloat16":
            matmul = precision.bfloat16_matmul
        else:
            level = jax.lax.Precision.HIGH if dtype == "tf32" else jax.lax.Precision.HIGHEST
            matmul = functools.partial(jnp.matmul, precision=level)
        # with a mesh, one [n, n] product per device: a leading axis split over the mesh
        self._matmul = jax.jit(matmul if mesh is None else jax.vmap(matmul))
        per_device = () if mesh is None else (self.devices,)
        split = None if mesh is None else NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
        self._operands = []
        for n in sorted({max(1, int(peak_n * f)) for f in PEAK_SIZES}, reverse=True):
            a = jax.random.uniform(jax.random.key(0), (*per_device, n, n), jnp.float32)
            b = jax.random.uniform(jax.random.key(1), (*per_device, n, n), jnp.float32)
            if dtype == "bfloat16":
                a, b = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
            self._operands.append((a, b) if split is None else jax.device_put((a, b), split))
        n = array_bytes // 4
        self._a = jnp.full((*per_device, n), 1.0, jnp.float32)
        self._b = jnp.full((*per_device, n), 2.0, jnp.float32)
        if split is not None:
            self._a, self._b = jax.device_put((self._a, self._b), split)
        self._scalar = jnp.float32(0.5)
        self._triad = jax.jit(self._triad_loop, donate_argnums=0)
        self._copy = jax.jit(self._copy_loop, donate_argnums=0)
        self.measure()  # compiles both, warms the caches and pages

    @staticmethod
    def _triad_loop(a, b, s):
        return jax.lax.fori_loop(0, STREAM_LOOP, lambda _, x: b + s * x, a)

    @staticmethod
    def _copy_loop(a, s):
        return jax.lax.fori_loop(0, STREAM_LOOP, lambda _, x: s * x, a)

    def peak_flops(self) -> float:
        rates = []
        for a, b in self._operands:
            for _ in range(self.repeats):
                start = time.perf_counter()
                self._matmul(a, b).block_until_ready()
                rates.append(self.devices * 2 * a.shape[-1] ** 3 / (time.perf_counter() - start))
        return max(rates)

    def bandwidth(self) -> float:
        rates = []
        for _ in range(self.repeats):
            start = time.perf_counter()
            self._a = self._triad(self._a, self._b, self._scalar).block_until_ready()
            rates.append(3 * self.devices * self.array_bytes * STREAM_LOOP
                         / (time.perf_counter() - start))
            start = time.perf_counter()
            self._a = self._copy(self._a, self._scalar).block_until_ready()
            rates.append(2 * self.devices * self.array_bytes * STREAM_LOOP
                         / (time.perf_counter() - start))
        return max(rates)

    def measure(self) -> Roofs:
        return Roofs(self.peak_flops(), self.bandwidth())


def chunk_fractions(cost: Cost, seconds_per_step: list[float], roofs: list[Roofs]
                    ) -> tuple[list[float | None], list[str]]:
    """Each chunk's fraction of the roof, under the better of the roofs measured just before
    and just after it (len(roofs) == chunks + 1); a chunk that would exceed its roof gets
    None and its message."""
    if len(roofs) != len(seconds_per_step) + 1:
        raise ValueError(f"{len(seconds_per_step)} chunks need {len(seconds_per_step) + 1} "
                         f"roof measurements around them, not {len(roofs)}")
    fractions, errors = [], []
    for index, seconds in enumerate(seconds_per_step):
        try:
            fractions.append(fraction_of_roof(cost, seconds, roofs[index] | roofs[index + 1]))
        except RoofExceeded as error:
            fractions.append(None)
            errors.append(f"chunk {index}: {error}")
    return fractions, errors


def plot(rows: list[dict], path: str, title: str) -> int:
    """Writes `draw`'s picture of the rows to `path` (PNG, SVG or PDF); returns how many rows
    its second panel draws."""
    import matplotlib.pyplot as plt

    figure = draw(rows, title)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return sum(bool(roof_point(r)) for r in rows)


def draw(rows: list[dict], title: str) -> Any:
    """A figure of two panels against each row's FLOPs per step (log scale): the FLOP/s it
    achieved (every row, under the measured matmul peak), and its fraction of the roof
    (`roof_point`: the panel counts the rows over their roof by every count of bytes; where
    no row has a fraction, the first panel alone, counting them). One
    marker and colour per series (a model,
    and its convolution implementation and compute dtype where the rows differ in those),
    filled where the matmul peak binds and hollow where the bandwidth does (in the first
    panel a row over its roof by every count of bytes has no bound: "bound unknown"), each
    workload labelled once with its image shape, width and batch; under `title`, the sweep
    the rows span (`sweep`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fractions = any(roof_point(r) for r in rows)  # else no second panel: it would be empty
    figure, panels = plt.subplots(1, 1 + fractions, figsize=(13 if fractions else 7.5, 5),
                                  sharex=True, squeeze=False)
    rate_axes, roof_axes = panels[0][0], panels[0][-1]  # one panel: both the rates'
    markers = itertools.cycle("osD^v<>p*hX")
    rate_points: list[tuple[dict, float]] = []  # (row, its y) of each panel, labelled below
    roof_points: list[tuple[dict, float]] = []
    for index, (name, mine) in enumerate(_series(rows).items()):
        marker, color = next(markers), f"C{index % 10}"
        for bound, fill in (("compute", color), ("memory", "none"), (None, "none")):
            points = [r for r in mine if _known_bound(r) == bound]
            if points:
                rate_axes.scatter([r["flops_per_step"] for r in points],
                                  [r["achieved_gflops"] for r in points], marker=marker,
                                  facecolors=fill, edgecolors=color,
                                  label=f"{name} ({bound}-bound)" if bound else
                                  f"{name} (bound unknown: bytes mismeasured)"
                                  if any(r.get("roof_errors") for r in points) else name)
        drawn = [(r, *point) for r in mine if (point := roof_point(r))]
        for bound, fill in (("compute", color), ("memory", "none")):
            for counted in ("host", "device"):
                points = [(r, f) for r, f, b, c in drawn if b == bound and c == counted]
                if points:  # by the device's bytes: hollow and dotted, whatever binds
                    roof_axes.scatter(
                        [r["flops_per_step"] for r, _ in points], [100 * f for _, f in points],
                        marker=marker, facecolors=fill if counted == "host" else "none",
                        edgecolors=color, linestyle="-" if counted == "host" else ":",
                        label=f"{name} ({bound}-bound"
                              + (", the device's bytes)" if counted == "device" else ")"))
        rate_points += [(r, r["achieved_gflops"]) for r in mine]
        roof_points += [(r, 100 * fraction) for r, fraction, _, _ in drawn]
    dtypes = dict.fromkeys(r.get("compute_dtype") for r in rows)
    for dtype, style in zip(dtypes, itertools.cycle(["--", ":", "-."])):  # the roof above them
        peaks = [r["peak_gflops"] for r in rows
                 if r.get("compute_dtype") == dtype and r.get("peak_gflops")]
        if peaks:
            rate_axes.axhline(max(peaks), linestyle=style, color="grey", linewidth=1,
                              label=f"{dtype} matmul peak, the highest measured: "
                                    f"{max(peaks):,.0f} GFLOP/s")
    if len({r.get("conv") for r in rows if r.get("conv")}) > 1:
        figure.text(0.01, 0.005, "FLOPs as each compiled step counts them: conv=patches is "
                    "charged more than conv=xla for the same model, so compare the two by "
                    "their step times (the report's table), not by these FLOP/s.", fontsize=7)
    over = sum(bool(r.get("roof_errors")) and not roof_point(r) for r in rows)
    over_note = (f"{over} of {len(rows)} rows' fraction of the roof not drawn: over their "
                 "roof, so their bytes or a roof were mismeasured") if over else ""
    if over_note and fractions:
        roof_axes.text(0.02, 0.97, over_note, transform=roof_axes.transAxes, va="top",
                       fontsize=7)
    if any(roof_point(r) and roof_point(r)[2] == "device" for r in rows):
        roof_axes.text(0.02, 0.90, "hollow, dotted: over the roof by the host program's "
                       "bytes, drawn by the device program's (a lower bound on its traffic)",
                       transform=roof_axes.transAxes, va="top", fontsize=7)
    rate_axes.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}")  # not 2x10^2
    rate_axes.yaxis.set_major_formatter(plain)
    low, high = rate_axes.get_ylim()
    rate_axes.yaxis.set_minor_formatter(  # within a decade the minor ticks are the only ones
        plain if high < 10 * low else matplotlib.ticker.NullFormatter())
    rate_axes.set_ylabel("achieved GFLOP/s")
    if fractions:
        roof_axes.set_ylim(0, 105)
        roof_axes.set_ylabel("% of the roofline (min(peak, bandwidth x intensity))")
    for axes in panels[0]:
        axes.set_xscale("log")
        axes.set_xlabel("FLOPs per training step (XLA cost analysis)")
        axes.grid(True, which="both", alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7, loc="best")
    low, high = rate_axes.get_xlim()
    for axes in panels[0]:
        if high >= 10 * low:  # a decade's tick is on the axis: its minor labels ran together
            axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        else:  # within a decade the log axis labels every minor tick in full: a few instead
            axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
            axes.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter())
            axes.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    figure.suptitle(f"{title}\n{sweep(rows)}" + ("" if fractions else f"\n{over_note}"),
                    fontsize=9)
    figure.tight_layout()
    _label_workloads(rate_axes, rate_points)  # where the laid-out axes put the points
    if fractions:
        _label_workloads(roof_axes, roof_points)
    return figure


LABEL_POINTS = 6  # the workloads' labels' font size
SAME_FLOPS = 1.2  # a workload's points within this factor of FLOPs share one label


def _label_workloads(axes, points: list[tuple[dict, float]]) -> None:
    """Each workload's label (`workload_label`) once, beside its highest point (the series
    at one workload share it, where their FLOPs are within SAME_FLOPS), raised above the
    labels and markers it would cover, with a line to its point where raised; left to
    right. Call it once the figure is laid out."""
    groups: list[tuple[str, list[tuple[float, float]]]] = []  # a workload near one FLOPs
    for r, y in sorted(points, key=lambda p: (workload_label(p[0]), p[0]["flops_per_step"])):
        label, x = workload_label(r), r["flops_per_step"]
        if groups and groups[-1][0] == label and x <= SAME_FLOPS * groups[-1][1][0][0]:
            groups[-1][1].append((x, y))
        else:  # another workload, or the same one counted at other FLOPs (conv=patches)
            groups.append((label, [(x, y)]))
    top = [(label, max(members, key=lambda p: p[1])) for label, members in groups]
    to_points = 72 / axes.figure.dpi
    right_edge = axes.get_window_extent().x1 * to_points
    height = 1.3 * LABEL_POINTS
    marker = 3.5  # half a marker's size
    placed = [(px - marker, py - marker, px + marker, py + marker)  # boxes, in points
              for px, py in (axes.transData.transform((r["flops_per_step"], y)) * to_points
                             for r, y in points)]
    for label, (x, y) in sorted(top, key=lambda item: item[1]):
        px, py = axes.transData.transform((x, y)) * to_points
        width, rise = 0.6 * LABEL_POINTS * len(label), 4.0
        shift = 4.0 if px + 4 + width <= right_edge else -4.0 - width  # left of it at the edge
        left = px + shift
        while any(left < x1 and x0 < left + width and py + rise < y1 and y0 < py + rise + height
                  for x0, y0, x1, y1 in placed):
            rise += height
        placed.append((left, py + rise, left + width, py + rise + height))
        line = {} if rise == 4.0 else {"arrowprops": {"arrowstyle": "-", "color": "0.6",
                                                      "linewidth": 0.5}}
        axes.annotate(label, (x, y), fontsize=LABEL_POINTS, xytext=(shift, rise),
                      textcoords="offset points", color="0.25", **line)


def _known_bound(row: dict) -> str | None:
    """The roof that binds a row as the plot draws it (`roof_point`'s count of bytes); None
    where every count put it over its roof, and so its bound was mismeasured too."""
    point = roof_point(row)
    if point is not None:
        return point[1]
    return None if row.get("roof_errors") else row.get("bound")


def sweep(rows: list[dict]) -> str:
    """What the rows span, in a line: 'conv_ae, conv_vae; 32-128 px, 3 channels; width 1,
    4; batch 1024; bfloat16; conv patches, xla'."""
    def listed(values: list) -> str:
        return ", ".join(str(v) for v in sorted({v for v in values if v is not None}))

    def span(values: list[int]) -> str:
        low, high = min(values), max(values)
        return f"{low}" if low == high else f"{low}-{high}"

    parts = [listed([r["model"] for r in rows]),
             f"{span([r['image_shape'][0] for r in rows])} px, "
             f"{listed([r['image_shape'][2] for r in rows])} channels",
             f"width {listed([r.get('width') or 1 for r in rows])}",
             f"batch {listed([r['batch'] for r in rows])}",
             listed([r.get("compute_dtype") for r in rows])]
    if convs := listed([r.get("conv") for r in rows]):
        parts.append(f"conv {convs}")
    return "; ".join(p for p in parts if p)


def roof_point(row: dict) -> tuple[float, str | None, str] | None:
    """(fraction of the roof, the bound, "host" or "device") that the plot draws for a row:
    its fraction by the host program's bytes, else, where that came out over the roof, by
    the device program's own (a GPU's fusions move fewer bytes); None where it has neither."""
    if row.get("fraction_of_roof"):
        return row["fraction_of_roof"], row.get("bound"), "host"
    if row.get("device_bytes_fraction_of_roof"):
        return (row["device_bytes_fraction_of_roof"], row.get("device_bytes_bound"), "device")
    return None


def _series(rows: list[dict]) -> dict[str, list[dict]]:
    """The rows by series: the model, plus the convolution implementation and the compute
    dtype where the rows hold more than one of them."""
    varies = [field for field in ("conv", "compute_dtype")
              if len({r.get(field) for r in rows}) > 1]
    series: dict[str, list[dict]] = {}
    for r in rows:
        name = " ".join([r["model"], *(str(r[f]) for f in varies if r.get(f))])  # no conv: none
        series.setdefault(name, []).append(r)
    return series


def rows_of_log(path: str, step: str | None = None) -> list[dict]:
    """jaxae's rows among the JSON lines a throughput run printed (its log); in a log of
    gpu.sh's, with `step`, only that step's (after its "== gpu.sh: <step>" line)."""
    rows, inside = [], step is None
    with open(path) as f:
        for line in f:
            if line.startswith("== gpu.sh: ") and step is not None:
                inside = line.split()[2:3] == [step]
            elif inside and line.startswith("{"):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut off when the run was killed
                    continue
                if row.get("framework") == "jaxae" and "flops_per_step" in row:
                    rows.append(row)
    return rows


def workload_label(row: dict) -> str:
    """'64x64x3 w2 b256': image size, channels, width multiplier and batch of a row."""
    height, width, channels = row["image_shape"]
    return f"{height}x{width}x{channels} w{row.get('width') or 1} b{row['batch']}"


def main(argv: list[str] | None = None) -> None:
    """python -m benchmarks.roofline LOG PNG TITLE [STEP]: draws `plot` of the rows a
    throughput run printed (a log of several runs gives one plot of them all; STEP picks one
    step of gpu.sh's gpu.log)."""
    args = sys.argv[1:] if argv is None else argv
    usage = ("usage: python -m benchmarks.roofline LOG PNG TITLE [STEP] (the bench itself: "
             "python -m benchmarks.bench --help)")
    if args[:1] in (["-h"], ["--help"]):
        print(usage + "\n\n" + (main.__doc__ or ""))
        return
    if len(args) not in (3, 4):
        raise SystemExit(usage)
    if not os.path.isfile(args[0]):
        raise SystemExit(f"{args[0]}: no such log: give the log a throughput run printed")
    folder = os.path.dirname(os.path.abspath(args[1]))
    if os.path.splitext(args[1])[1].lower() not in PLOT_FORMATS:
        raise SystemExit(f"{args[1]}: give a file ending in {', '.join(PLOT_FORMATS)}")
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise SystemExit(f"{args[1]}: its folder {folder} is missing or not writable: give "
                         "another path")
    rows = rows_of_log(args[0], args[3] if len(args) == 4 else None)
    if not rows:
        raise SystemExit(f"{args[0]}: no throughput rows (JSON lines of jaxae) in it"
                         + (f" under '== gpu.sh: {args[3]}'" if len(args) == 4 else ""))
    drawn = plot(rows, args[1], args[2])
    print(f"wrote {args[1]} ({len(rows)} rows, {drawn} with a fraction of the roof)")


if __name__ == "__main__":
    main()
