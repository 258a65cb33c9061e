"""The precision matrix: each model's speed and quality in float32, bfloat16 and TF32.

    python -m benchmarks.bench --mode precision [--models dense_ae,dae,conv_ae,vae]
        [--compute-dtype float32,bfloat16,tf32] [--epochs N]

For each model and dtype: the training step's time and fraction of the roof (the throughput
bench's `bench_model`, batch 128, --steps-per-chunk x --chunks), and the test figure after
training its lesson config for its own number of epochs (or --epochs) with that dtype, same
seed: test MSE (dense AE), restored PSNR in dB (DAE), BCE (conv AE), ELBO in nats (VAEs).
"float32" is full float32 everywhere; "bfloat16" runs the Dense matmuls on bfloat16
operands with float32 accumulation (`jaxae.kernels.precision`, config.train.compute_dtype);
"tf32" (GPUs only) runs float32 matmuls and convolutions at TensorFloat-32
(`jax.default_matmul_precision`). Each difference is against the float32 run of the same
seed, so it includes the run-to-run change any change of bits brings, which the float32
figure's own spread over seeds bounds (`python -m benchmarks.parity --seeds N`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import tempfile

import jax

from benchmarks import bench, bench_args, parity, workloads
from jaxae.experiments.common import load_config


@dataclasses.dataclass(frozen=True)
class Lesson:
    """A model's lesson config and the test figure it is judged on."""

    config: str
    metric: str  # the evaluation's test metric, without "test_"
    label: str
    higher_is_better: bool = False

    def pairing(self, epochs: int) -> parity.Pairing:
        return parity.Pairing(self.config, epochs, 60_000, "glorot", self.metric, "", self.label,
                              self.higher_is_better)


LESSONS = {
    "dense_ae": Lesson("default", "mse", "test MSE"),
    "dae": Lesson("dae_dropout", "psnr", "test PSNR (dB)", higher_is_better=True),
    "conv_ae": Lesson("conv_ae_fashion", "bce", "test BCE"),
    "vae": Lesson("vae_fashion_2d", "elbo", "test ELBO (nats)", higher_is_better=True),
    "conv_vae": Lesson("conv_vae", "elbo", "test ELBO (nats)", higher_is_better=True),
}
DEFAULT_MODELS = ("dense_ae", "dae", "conv_ae", "vae")


def train_figure(model: str, dtype: str, epochs: int | None, seed: int,
                 tfds_dir: str | None) -> tuple[float, int]:
    """(the test figure after training `model`'s lesson config in `dtype`, its epochs)."""
    lesson = LESSONS[model]
    epochs = epochs or load_config(lesson.config).train.num_epochs
    with tempfile.TemporaryDirectory(prefix=f"jaxae_precision_{model}_") as workdir:
        with workloads.matmul_precision(dtype):
            run = parity.run_jaxae(lesson.pairing(epochs), workdir, tfds_dir, seed,
                                   compute_dtype=workloads.config_dtype(dtype))
    return run["value"], epochs


def table(rows: list[dict], dtypes: list[str]) -> str:
    others = dtypes[1:]
    head = (["model", "config", "epochs", "figure", dtypes[0]]
            + [c for d in others for c in (d, f"{d} - {dtypes[0]}")]
            + [f"{d} step ms" for d in dtypes] + [f"{d} of roof" for d in dtypes]
            + [f"{d} speed-up" for d in others])
    lines = ["| " + " | ".join(head) + " |",
             "|---|---|---:|---|" + "---:|" * (len(head) - 4)]
    for r in rows:
        base = r["figures"][dtypes[0]]
        cells = [r["model"], f"`{r['config']}`", str(r["epochs"]), r["label"], f"{base:.4f}"]
        for d in others:
            cells += [f"{r['figures'][d]:.4f}", f"{r['figures'][d] - base:+.4f}"]
        cells += [f"{r['step_ms'][d]:.2f}" for d in dtypes]
        cells += [f"{r['fraction_of_roof'][d]:.1%}" if r["fraction_of_roof"][d] is not None
                  else "n/a" for d in dtypes]
        cells += [f"{r['step_ms'][dtypes[0]] / r['step_ms'][d]:.2f}x" for d in others]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> tuple[str | None, signal.Signals | None]:
    """The precision mode of `benchmarks.bench`: JSON lines, then the markdown table of the
    models measured (None if stopped before the first), and the signal that cut it short."""
    models = (args.models or ",".join(DEFAULT_MODELS)).split(",")
    if unknown := [m for m in models if m not in LESSONS]:
        raise SystemExit(f"--mode precision: no lesson config for {', '.join(unknown)}")
    requested = (args.compute_dtype or ",".join(workloads.DTYPES)).split(",")  # default: all
    dtypes = ["float32", *[d for d in requested if d != "float32"]]
    dtypes, skipped = workloads.dtypes_here(dtypes)
    data = workloads.BenchData(args.data, args.tfds_dir)
    arrays, _ = data.arrays(workloads.FASHION_SHAPE, workloads.TRAIN_BATCH)
    steps_per_chunk = bench_args.chunk_steps(args.steps_per_chunk)
    rows = []

    def measure() -> None:  # a model's row once every dtype of it is measured
        for model in models:
            lesson = LESSONS[model]
            row = {"model": model, "config": lesson.config, "label": lesson.label,
                   "figures": {}, "step_ms": {}, "fraction_of_roof": {}}
            for dtype in dtypes:
                speed = bench.bench_model(model, workloads.TRAIN_BATCH, steps_per_chunk,
                                          args.chunks, arrays, "patches", dtype,
                                          peak_n=args.peak_n, roofs=not args.no_roofs,
                                          devices=jax.device_count())
                row["step_ms"][dtype] = speed["step_ms"]
                row["fraction_of_roof"][dtype] = speed.get("fraction_of_roof")
                row["figures"][dtype], row["epochs"] = train_figure(
                    model, dtype, args.epochs, args.seed, args.tfds_dir)
            rows.append(row)
            print(json.dumps(row), flush=True)

    cut_short = bench.measure_rows(measure, rows)
    if not rows:
        return None, cut_short
    report = table(rows, dtypes) + bench.cut_short_note(cut_short, "models")
    print("\n" + report, flush=True)
    return (f"{skipped}Seed {args.seed}, batch 128 over every device (as train.py splits it); "
            f"step times from chunks of {args.steps_per_chunk} steps (the throughput bench's "
            "workloads: the DAE's rescales its dropout as the peer, its lesson config does "
            "not).\n\n" + report), cut_short


if __name__ == "__main__":
    raise SystemExit("this module is run by the bench: "
                     "python -m benchmarks.bench --mode precision "
                     "(--help lists its options)")
