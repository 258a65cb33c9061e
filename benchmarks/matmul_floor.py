"""Where a training step's time goes between its matmuls and the rest, in jaxae and in the
PyTorch peer: the float32 floor under the throughput ratio.

    python -m benchmarks.bench --mode matmuls [--models dae,vae] --peer-python PYTHON \
        --peer-script PATH/torch_autoencoders.py

For each model (default: the DAE and the VAE): the matrix products of one training step
(forward and backward), read from the step as XLA compiles it (its `dot` instructions, with
their operands' shapes and dimension numbers), each timed alone, float32:
- in XLA, compiled with jaxae's step's options: a loop of the product whose smaller operand
  is rewritten from the last product each call, so that no call can be hoisted or skipped;
  the same loop without the product is timed too and taken off;
- in the peer's library, with --peer-python: `torch.mm` on transposed views where the
  product is one of two matrices (as `nn.Linear` calls it), else `torch.einsum`, timed in a
  plain Python loop (torch's per-call dispatch included, as in its step). For the dense
  models these are the peer's own products; the conv AE's peer convolves instead, so its
  products are shown but not summed.
Beside the sums: each side's whole step (`benchmarks.bench`'s throughput timing, and the
peer's own step-bench with --peer-script), hence what each spends outside its matmuls, and
the step jaxae would need for twice the peer's rate. jaxae's step is timed again with plain
SGD in place of Adam: a one-pass update (read the parameter and its gradient, write the
parameter), the least any optimiser's update can cost, so that step bounds what a faster
Adam could reach. Adam's extra time over SGD is timed twice more outside the step, the two
updates alone on the model's parameters in a loop: once with their state in the caches, and
once with a pass over twice the largest cache before each update, so that it comes from
memory. Where the step's extra time is near the second and above the first, the
optimiser's state traffic to memory, not its arithmetic, is what it costs. Medians of 5
repeats.

Against the roofline goals (ROOF_GOALS: 75% of the matmul peak where compute binds, 50% of
the bandwidth roof where memory does): jaxae's step is timed with the roofs measured beside
it (`benchmarks.roofline`), and the row gives its fraction of the binding roof, its products'
own rate as a share of the peak measured beside their timings (before and after them), the
step the goal asks for (at the roofs beside the step), and what that leaves for the rest of
the step once the products, at the rate they run alone, are done. A negative rest
means the products alone are too slow for the goal.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import glob
import json
import math
import os
import re
import signal
import statistics
import string
import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import optax
from jax import lax

from benchmarks import bench, bench_args, roofline, workloads
from jaxae import optimizers
from jaxae.data import batches
from jaxae.provenance import usable_cpus
from jaxae.training import compiler, steps

DEFAULT_MODELS = ("dae", "vae")
REPEATS = 5
TARGET_FLOPS_PER_REPEAT = 1e10  # each repeat's calls: about this many FLOPs, long enough to time
# the fraction of its binding roof this project aims for in a model's step, by the roof
# that binds (BENCHMARKS.md's notes say where each model stands)
ROOF_GOALS = {"compute": 0.75, "memory": 0.50}
Dims = tuple[tuple[tuple[int, ...], tuple[int, ...]], tuple[tuple[int, ...], tuple[int, ...]]]


@dataclasses.dataclass(frozen=True)
class Dot:
    """One `lax.dot_general`: its operands' shapes and its dimension numbers
    ((lhs contracting, rhs contracting), (lhs batch, rhs batch))."""

    lhs: tuple[int, ...]
    rhs: tuple[int, ...]
    dims: Dims

    @property
    def out(self) -> tuple[int, ...]:
        """The product's shape, in dot_general's order: batch, lhs free, rhs free."""
        (lc, rc), (lb, rb) = self.dims
        return (tuple(self.lhs[i] for i in lb)
                + tuple(n for i, n in enumerate(self.lhs) if i not in lc and i not in lb)
                + tuple(n for i, n in enumerate(self.rhs) if i not in rc and i not in rb))

    @property
    def flops(self) -> int:
        (lc, _), _ = self.dims
        return 2 * math.prod(self.out) * math.prod(self.lhs[i] for i in lc)

    def label(self) -> str:
        (lc, rc), (lb, rb) = self.dims
        batch = f", batch {list(lb)}/{list(rb)}" if lb else ""
        return (f"[{','.join(map(str, self.lhs))}] x [{','.join(map(str, self.rhs))}] "
                f"-> [{','.join(map(str, self.out))}], contracting {list(lc)}/{list(rc)}"
                f"{batch}")

    def mm_transposes(self) -> tuple[bool, bool] | None:
        """(transpose lhs, transpose rhs) that make it `lhs @ rhs` of two matrices, or None
        where it is not a product of two matrices."""
        (lc, rc), (lb, _) = self.dims
        if len(self.lhs) != 2 or len(self.rhs) != 2 or lb or len(lc) != 1:
            return None
        return lc[0] == 0, rc[0] == 1

    def einsum(self) -> str:
        """The same product as an einsum equation (output in dot_general's order)."""
        (lc, rc), (lb, rb) = self.dims
        letters = iter(string.ascii_letters)
        lhs = [next(letters) for _ in self.lhs]
        rhs: list[str | None] = [None] * len(self.rhs)
        for left, right in zip(lc + lb, rc + rb, strict=True):
            rhs[right] = lhs[left]
        rhs = [letter or next(letters) for letter in rhs]
        out = ([lhs[i] for i in lb]
               + [c for i, c in enumerate(lhs) if i not in lc and i not in lb]
               + [c for i, c in enumerate(rhs) if i not in rc and i not in rb])
        return f"{''.join(lhs)},{''.join(rhs)}->{''.join(out)}"

    def calls(self) -> int:
        """Calls per timed repeat: about TARGET_FLOPS_PER_REPEAT, from 5 to 1,000."""
        return int(min(1000, max(5, TARGET_FLOPS_PER_REPEAT // max(1, self.flops))))


_DEFINITION = re.compile(r"%([\w.\-]+) = (\w+)\[([\d,]*)\]")
_DOT = re.compile(r" = \w+\[[\d,]*\]\S* dot\(%([\w.\-]+), %([\w.\-]+)\)(.*)")


def _dims(attributes: str, name: str) -> tuple[int, ...]:
    found = re.search(rf"\b{name}=\{{([\d,]*)\}}", attributes)
    return tuple(int(d) for d in found.group(1).split(",") if d) if found else ()


def hlo_dots(hlo_text: str) -> Iterator[Dot]:
    """The `dot` instructions of an optimised HLO module's text (in fusions or not), with
    their operands' shapes: the products as XLA runs them, after it has folded transposes
    into them (a jaxpr's `x.T @ g` may run as `(g.T @ x).T`, or the other way round)."""
    shapes = {name: tuple(int(d) for d in dims.split(",") if d)
              for name, _, dims in _DEFINITION.findall(hlo_text)}
    for line in hlo_text.splitlines():
        found = _DOT.search(line)
        if found:
            lhs, rhs, attributes = found.groups()
            yield Dot(shapes[lhs], shapes[rhs],
                      ((_dims(attributes, "lhs_contracting_dims"),
                        _dims(attributes, "rhs_contracting_dims")),
                       (_dims(attributes, "lhs_batch_dims"),
                        _dims(attributes, "rhs_batch_dims"))))


def step_matmuls(epoch: workloads.FirstEpoch, arrays: dict) -> collections.Counter[Dot]:
    """The matrix products of one training step of `epoch`'s model as XLA compiles it for
    the host CPU (the step `bench.step_cost` counts: one batch, no gradient norm), counted
    by kind. On the CPU they stay `dot` instructions; a GPU's compiled step calls its
    matmul library instead, at the same shapes."""
    train_step = steps.train_step_fn(epoch.train_model, epoch.task, epoch.objective)
    step = jax.jit(lambda state, batch, key: train_step(state, batch, key, False),
                   compiler_options=compiler.compiler_options("cpu"))
    batch = batches.take_batch(arrays, epoch.order, 0, epoch.batch_size)
    args = jax.device_put((epoch.state, batch, epoch.keys.train), jax.devices("cpu")[0])
    compiled = step.lower(*args).compile()
    return collections.Counter(hlo_dots(compiled.as_text()))


def _xla_loop(dot: Dot, calls: int, with_product: bool):
    """A compiled loop of `calls` products (or, without, of the loop's own work alone). The
    smaller operand is rewritten from the last product each call (+ 0 x one of its
    elements), so that no call can be hoisted or skipped; the loop without the product makes
    the same pass, and its time is taken off."""
    first = (0,) * len(dot.out)
    left_moves = math.prod(dot.lhs) <= math.prod(dot.rhs)

    def run(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
        def body(_, carry):
            total, lhs, rhs = carry
            value = (lax.dot_general(lhs, rhs, dot.dims)[first] if with_product
                     else lhs[(0,) * lhs.ndim] + rhs[(0,) * rhs.ndim])
            if left_moves:
                lhs = lhs + value * 0.0
            else:
                rhs = rhs + value * 0.0
            return total + value, lhs, rhs

        return lax.fori_loop(0, calls, body, (jnp.zeros((), lhs.dtype), lhs, rhs))[0]

    return jax.jit(run, compiler_options=compiler.compiler_options("cpu"))


def xla_us(dot: Dot) -> float:
    """Microseconds per product in XLA, float32 (the loop's own time taken off)."""
    key = jax.random.key(0)
    lhs = jax.random.normal(key, dot.lhs, jnp.float32)
    rhs = jax.random.normal(jax.random.fold_in(key, 1), dot.rhs, jnp.float32)
    calls = dot.calls()
    per_call = {}
    for with_product in (True, False):
        loop = _xla_loop(dot, calls, with_product).lower(lhs, rhs).compile()
        per_call[with_product] = _median_seconds(functools.partial(loop, lhs, rhs), calls)
    return 1e6 * max(0.0, per_call[True] - per_call[False])


def _median_seconds(call, calls: int) -> float:
    """Seconds per step of `call()`, a compiled loop of `calls` steps: the median of
    REPEATS timed calls after one untimed, each waited for to the end."""
    jax.block_until_ready(call())
    repeats = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        jax.block_until_ready(call())
        repeats.append((time.perf_counter() - start) / calls)
    return statistics.median(repeats)


PEER_TIMER = r"""
import json, statistics, sys, time
import torch
spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"])
torch.manual_seed(0)
times = []
for dot in spec["dots"]:
    lhs, rhs = torch.randn(dot["lhs"]), torch.randn(dot["rhs"])
    if dot["mm"] is not None:
        a, b = (lhs.t() if dot["mm"][0] else lhs), (rhs.t() if dot["mm"][1] else rhs)
        product = lambda: torch.mm(a, b)
    else:
        product = lambda: torch.einsum(dot["einsum"], lhs, rhs)
    with torch.no_grad():
        for _ in range(3):
            product()
        repeats = []
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            for _ in range(dot["calls"]):
                product()
            repeats.append((time.perf_counter() - start) / dot["calls"])
    times.append(1e6 * statistics.median(repeats))
print(json.dumps({"torch": torch.__version__, "us": times}))
"""


def peer_us(python: str, dots: list[Dot], threads: int) -> tuple[list[float], str]:
    """Microseconds per product in the peer's library (torch under `python`), and torch's
    version."""
    spec = {"threads": threads, "repeats": REPEATS,
            "dots": [{"lhs": d.lhs, "rhs": d.rhs, "mm": d.mm_transposes(),
                      "einsum": d.einsum(), "calls": d.calls()} for d in dots]}
    result = bench.peer_result([python, "-c", PEER_TIMER, json.dumps(spec)],
                               f"the peer's product timer ({python})")
    return result["us"], result["torch"]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _time_and_rate(us: float | None, mflop: float) -> str:
    """"us | GFLOP/s" cells of one product on one side ("-" where not timed, or where the
    product took no measurable time beside the loop's own)."""
    if us is None:
        return "- | -"
    return f"{us:.1f} | {1e3 * mflop / us:.1f}" if us > 0 else f"{us:.1f} | -"


def _read_text(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _cpu_list(text: str) -> set[int]:
    """sysfs's "0-3,8" as {0, 1, 2, 3, 8}."""
    cpus = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def flush_bytes(cpus: str = "/sys/devices/system/cpu", used: set[int] | None = None) -> int:
    """Bytes of a buffer whose pass evicts the caches: twice the sum of the distinct caches
    of the largest level the kernel lists (sysfs under `cpus`; one L3 per CCD or socket,
    each shared by the CPUs its shared_cpu_list names) among those of the CPUs this process
    may run on (`used`, default its affinity), or 64 MiB where it lists none."""
    if used is None:  # macOS has no affinity: every CPU
        used = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else \
            set(range(os.cpu_count() or 1))
    caches: dict[tuple[int, str], int] = {}
    for folder in glob.glob(os.path.join(cpus, "cpu[0-9]*", "cache", "index[0-9]*")):
        try:
            fields = {name: _read_text(os.path.join(folder, name))
                      for name in ("level", "size", "shared_cpu_list")}
            shared = _cpu_list(fields["shared_cpu_list"])
        except (OSError, ValueError):
            continue
        if not shared & used:
            continue
        text = fields["size"]
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        size = int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
        caches[(int(fields["level"]), fields["shared_cpu_list"])] = size
    if not caches:
        return 64 * 2**20
    top = max(level for level, _ in caches)
    return 2 * sum(size for (level, _), size in caches.items() if level == top)


def update_ms(params: dict, name: str, evict: bool = False, calls: int = 100) -> float:
    """Milliseconds per update of optimiser `name` (`optimizers.OPTIMIZERS`) on `params`, alone:
    a compiled loop of `calls` updates with a fixed gradient, its state donated and kept
    between calls, so that it stays in the caches as far as its size allows; with `evict`,
    a pass over `flush_bytes()` precedes each update, so that the state comes from memory
    as in a training step (the pass costs every optimiser the same, so differences between
    optimisers leave it out)."""
    tx = optimizers.make_optimizer(name, 1e-3)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-4), params)
    flush = jnp.ones(flush_bytes() // 4 if evict else 1, jnp.float32)

    def body(_, carry):
        params, opt_state, flush = carry
        flush = flush * 1.0000001  # a read and a write of every element
        _, touched = lax.optimization_barrier((flush, grads))  # the update after the pass
        updates, opt_state = tx.update(touched, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, flush

    loop = jax.jit(lambda carry: lax.fori_loop(0, calls, body, carry), donate_argnums=0,
                   compiler_options=compiler.compiler_options("cpu"))
    carry = [(jax.tree.map(jnp.copy, params), tx.init(params), flush)]

    def call():  # the state is donated: each call goes on from the last one's
        carry[0] = loop(carry[0])
        return carry[0]

    return 1e3 * _median_seconds(call, calls)


def goal_budget(timed: dict, matmul_gflop: float, matmuls_ms: float,
                products_peak_gflops: float) -> dict:
    """The roofline goal's budget for a step timed with its roofs (`bench.bench_model`'s row):
    the binding roof and the fraction of it reached, the products' own rate as a share of the
    peak measured beside them (`products_peak_gflops`), the step at ROOF_GOALS' fraction of
    the roof beside the step, and the time that leaves beside the products (negative: they
    alone are too slow for it)."""
    cost = roofline.Cost(timed["flops_per_step"], timed["bytes_per_step"])
    roofs = roofline.Roofs(1e9 * timed["peak_gflops"], 1e9 * timed["bandwidth_gbytes_per_s"])
    attainable, bound = roofline.attainable(cost, roofs)
    goal = ROOF_GOALS[bound]
    goal_step_ms = 1e3 * cost.flops / (goal * attainable)
    return {"peak_gflops": timed["peak_gflops"], "bound": bound,
            "fraction_of_roof": timed["fraction_of_roof"],
            "products_peak_gflops": products_peak_gflops,
            "matmuls_of_peak": (matmul_gflop / (matmuls_ms / 1e3) / products_peak_gflops
                                if matmuls_ms > 0 else None),
            "goal": goal, "goal_step_ms": goal_step_ms,
            "rest_allowed_ms": goal_step_ms - matmuls_ms}


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def model_rows(model: str, args: argparse.Namespace, data: workloads.BenchData
               ) -> tuple[dict, list[dict]]:
    """(the model's summary, one row per kind of product) at --batch-sizes (one value)."""
    batch_size = int(args.batch_sizes)  # one value (bench_args.ONE_VALUE_FLAGS)
    arrays, _ = data.arrays(workloads.FASHION_SHAPE, batch_size)
    epoch = workloads.first_epoch(workloads.bench_config(model, batch_size, args.conv),
                                  arrays)
    counts = step_matmuls(epoch, arrays)
    dots = sorted(counts, key=lambda d: (-d.flops, d.label()))
    peak_n = args.peak_n or roofline.CPU_PEAK_N  # (the products are timed on a CPU)
    meter = bench.roof_meter(peak_n, 0, "float32")  # the peak beside the products' timings
    peak_before = meter.peak_flops()
    ours = [xla_us(d) for d in dots]
    products_peak_gflops = max(peak_before, meter.peak_flops()) / 1e9
    theirs, torch_version = (peer_us(args.peer_python, dots, usable_cpus())
                             if args.peer_python else ([None] * len(dots), None))
    rows = [{"model": model, "product": d.label(), "per_step": counts[d],
             "mflop": d.flops / 1e6, "jaxae_us": a, "peer_us": b}
            for d, a, b in zip(dots, ours, theirs, strict=True)]
    print("\n".join(json.dumps(row) for row in rows), flush=True)
    timed = bench.bench_model(model, batch_size, bench_args.chunk_steps(args.steps_per_chunk),
                              args.chunks, arrays, args.conv, peak_n=peak_n)
    # timed as Adam's step is, with the roofs measured between its chunks (their passes
    # leave both steps' caches alike), so that the difference is the optimisers'
    with_sgd = bench.bench_model(model, batch_size, bench_args.chunk_steps(args.steps_per_chunk),
                                 args.chunks, arrays, args.conv, optimizer="sgd",
                                 peak_n=peak_n)
    step, peer_step = timed["step_ms"], None
    params = jax.device_put(epoch.state.params, jax.devices("cpu")[0])
    adam_alone, adam_evicted = (update_ms(params, "adam", evict) - update_ms(params, "sgd", evict)
                                for evict in (False, True))
    if args.peer_python and workloads.WORKLOADS[model].peer:
        peer = bench.bench_peer(args.peer_python, args.peer_script, model, batch_size,
                                timed["steps_per_chunk"], args.chunks, usable_cpus())
        peer_step = 1e3 * batch_size / peer["img_per_s"]
    matmuls = sum(counts[d] * a for d, a in zip(dots, ours, strict=True)) / 1e3
    # a conv model's peer convolves (mkldnn) where jaxae multiplies patches: no sum for it
    peer_matmuls = (sum(counts[d] * b for d, b in zip(dots, theirs, strict=True)) / 1e3
                    if args.peer_python and not workloads.WORKLOADS[model].uses_conv else None)
    gflop = sum(counts[d] * d.flops for d in dots) / 1e9
    summary = {"model": model, "batch": batch_size, "products": sum(counts.values()),
               "gflop": gflop, "step_ms": step, "peak_n": timed["peak_n"],
               "sgd_step_ms": with_sgd["step_ms"], "adam_over_sgd_alone_ms": adam_alone,
               "adam_over_sgd_evicted_ms": adam_evicted,
               "matmuls_ms": matmuls, "peer_step_ms": peer_step,
               "peer_matmuls_ms": peer_matmuls, "torch": torch_version,
               "twice_the_peer_ms": peer_step and peer_step / 2,
               "step_flops": timed["flops_per_step"],
               "fastest_product_gflops": max((1e-3 * d.flops / a for d, a in
                                              zip(dots, ours, strict=True) if a > 0),
                                             default=None),
               **{f"{name}_roofs": {key: run.get(key) for key in (
                   "chunk_peak_gflops", "chunk_bandwidth_gbytes_per_s",
                   "bandwidth_gbytes_per_s")} for name, run in (("step", timed),
                                                                 ("sgd_step", with_sgd))},
               **goal_budget(timed, gflop, matmuls, products_peak_gflops)}
    print(json.dumps(summary), flush=True)
    return summary, rows


def mismeasured(summaries: list[dict]) -> list[str]:
    """"model (jaxae)" or "model (peer)" for each step that took less than its products
    timed alone: a step cannot, so one of the two timings met a busy moment."""
    return [f"{s['model']} ({who})" for s in summaries
            for who, step, alone in (("jaxae", s["step_ms"], s["matmuls_ms"]),
                                     ("peer", s["peer_step_ms"], s["peer_matmuls_ms"]))
            if step is not None and alone is not None and step < alone]


def _doubt(s: dict) -> str:
    """A line naming what in a model's row contradicts itself (a busy moment, most likely),
    or '' where nothing does."""
    said = []
    if s["fastest_product_gflops"] and s["fastest_product_gflops"] > s["products_peak_gflops"]:
        said.append(f"a product ran at {s['fastest_product_gflops']:,.1f} GFLOP/s, above the "
                    f"peak of {s['products_peak_gflops']:,.1f} read beside them")
    if s["adam_over_sgd_alone_ms"] > s["adam_over_sgd_evicted_ms"]:
        said.append("Adam's update alone took longer over SGD's in the caches than evicted")
    if s["sgd_step_ms"] <= s["matmuls_ms"]:
        said.append("the SGD step took no longer than its products alone")
    return (f"\nIn doubt: {s['model']}: {'; '.join(said)}; rerun before quoting." if said
            else "")


def run(args: argparse.Namespace) -> tuple[str | None, signal.Signals | None]:
    """The matmuls mode: one summary row and one row per kind of product for each model;
    prints JSON lines and returns the markdown report of the models measured (None if
    stopped before the first) and the signal that cut it short."""
    models = args.models.split(",") if args.models else list(DEFAULT_MODELS)
    data = workloads.BenchData(args.data, args.tfds_dir)
    results = []

    def measure() -> None:
        for model in models:
            results.append(model_rows(model, args, data))

    cut_short = bench.measure_rows(measure, results)
    if not results:
        return None, cut_short
    lines = ["| model | batch | products a step | products' GFLOP a step | jaxae step, ms | "
             "its products alone, ms | step - products, ms | jaxae step with SGD, ms | Adam "
             "step - SGD step, ms | Adam - SGD update only, in cache, ms | Adam - SGD update "
             "only, caches evicted, ms | step's fraction of the roof (bound) | products' rate, "
             "of the peak beside them | the goal: a step of, ms | goal step - products, ms | "
             "peer step, ms | peer's products alone, ms | peer step - products, ms | 2x the "
             "peer: a step of, ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
             "---:|---:|"]
    for s, _ in results:
        rest = (s["peer_step_ms"] - s["peer_matmuls_ms"]
                if s["peer_step_ms"] is not None and s["peer_matmuls_ms"] is not None else None)
        lines.append(f"| {s['model']} | {s['batch']} | {s['products']} | {s['gflop']:.3f} | "
                     f"{_ms(s['step_ms'])} | {_ms(s['matmuls_ms'])} | "
                     f"{_ms(s['step_ms'] - s['matmuls_ms'])} | {_ms(s['sgd_step_ms'])} | "
                     f"{_ms(s['step_ms'] - s['sgd_step_ms'])} | "
                     f"{_ms(s['adam_over_sgd_alone_ms'])} | "
                     f"{_ms(s['adam_over_sgd_evicted_ms'])} | "
                     f"{_percent(s['fraction_of_roof'])} ({s['bound']}) | "
                     f"{_percent(s['matmuls_of_peak'])} | "
                     f"{_ms(s['goal_step_ms'])} ({100 * s['goal']:.0f}%) | "
                     f"{_ms(s['rest_allowed_ms'])} | "
                     f"{_ms(s['peer_step_ms'])} | "
                     f"{_ms(s['peer_matmuls_ms'])} | {_ms(rest)} | "
                     f"{_ms(s['twice_the_peer_ms'])} |")
    lines += ["", "| model | product | per step | MFLOP | jaxae (XLA), us | GFLOP/s | "
              "peer (torch), us | GFLOP/s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for _, rows in results:
        for r in rows:
            times = " | ".join(_time_and_rate(us, r["mflop"])
                               for us in (r["jaxae_us"], r["peer_us"]))
            lines.append(f"| {r['model']} | {r['product']} | {r['per_step']} | "
                         f"{r['mflop']:.2f} | {times} |")
    if negative := mismeasured([s for s, _ in results]):
        lines += ["", f"Mismeasured: {', '.join(negative)}: the products timed alone took "
                  "longer than the whole step (a busy moment, or a slow process of the peer's "
                  "library); rerun before quoting."]
    lines += [line for line in map(_doubt, (s for s, _ in results)) if line]
    report = "\n".join(lines) + bench.cut_short_note(cut_short, "models")
    print("\n" + report, flush=True)
    torch_version = next((s["torch"] for s, _ in results if s["torch"]), None)
    peer = f"; the peer's library: torch {torch_version}" if torch_version else \
        "; no --peer-python: the peer's columns are empty"
    return (f"Float32, {usable_cpus()} threads{peer}. Each product timed alone, "
            f"medians of {REPEATS} repeats (`benchmarks/matmul_floor.py` says how); steps from "
            f"{args.chunks} chunks of {args.steps_per_chunk} steps, jaxae's with the roofs "
            f"measured beside each chunk; the goal: {_goals_text()} of the roof that binds."
            "\n\n" + report), cut_short


def _goals_text() -> str:
    return " and ".join(f"{100 * goal:.0f}% ({bound})" for bound, goal in ROOF_GOALS.items())


if __name__ == "__main__":
    raise SystemExit("this module is run by the bench: "
                     "python -m benchmarks.bench --mode matmuls "
                     "(--help lists its options)")
