"""The roofline's arithmetic, on fake costs and timings (nothing here is timed): the lower
roof binds, and a fraction above 100% is refused and flagged rather than reported."""

import json

import jax
import jax.numpy as jnp
import pytest

from benchmarks import bench, report, roofline

COST = roofline.Cost(flops=1e9, bytes=1e8)  # 10 FLOPs per byte
ROOFS = roofline.Roofs(peak_flops=100e9, bandwidth=20e9)  # the ridge at 5 FLOPs per byte
MEMORY_BOUND = roofline.Cost(flops=1e9, bytes=1e9)  # 1 FLOP per byte: a 20 GFLOP/s roof


def test_the_lower_roof_binds():
    assert COST.intensity == 10
    assert roofline.attainable(COST, ROOFS) == (100e9, "compute")
    assert roofline.attainable(MEMORY_BOUND, ROOFS) == (20e9, "memory")


def test_the_fraction_is_of_the_binding_roof():
    # 1 GFLOP in 20 ms: 50 GFLOP/s of the 100 GFLOP/s matmul peak
    assert roofline.fraction_of_roof(COST, 0.02, ROOFS) == pytest.approx(0.5)
    # 1 GB in 0.1 s: 10 GB/s of the 20 GB/s bandwidth
    assert roofline.fraction_of_roof(MEMORY_BOUND, 0.1, ROOFS) == pytest.approx(0.5)


@pytest.mark.parametrize("cost, seconds", [(COST, 0.009), (MEMORY_BOUND, 0.049)])
def test_a_step_faster_than_its_roof_is_a_mismeasurement(cost, seconds):
    with pytest.raises(roofline.RoofExceeded, match="mismeasured"):
        roofline.fraction_of_roof(cost, seconds, ROOFS)


def test_a_chunk_over_its_roof_is_flagged_and_left_out():
    fractions, errors = roofline.chunk_fractions(COST, [0.02, 0.005, 0.025], [ROOFS] * 4)
    assert fractions[0] == pytest.approx(0.5) and fractions[2] == pytest.approx(0.4)
    assert fractions[1] is None
    assert len(errors) == 1 and errors[0].startswith("chunk 1:")


def test_each_chunk_is_judged_under_the_better_roof_measured_beside_it():
    busy = roofline.Roofs(peak_flops=40e9, bandwidth=5e9)  # a busy moment during one measure
    fractions, errors = roofline.chunk_fractions(COST, [0.02], [busy, ROOFS])
    assert fractions == [pytest.approx(0.5)] and not errors  # not 50 / 40 = 125%
    with pytest.raises(ValueError, match="roof measurements around them"):
        roofline.chunk_fractions(COST, [0.02, 0.02], [ROOFS] * 2)


def test_a_rows_columns_are_those_of_its_median_chunk_so_the_row_recomputes():
    """Roofs that move between chunks: the row's fraction, bound, peak and bandwidth all come
    from one chunk (its median by rate, whose images/s the row reports) and the roofs read
    beside it, so its GFLOP/s over min(peak, bandwidth x intensity) is its fraction."""
    cost = roofline.Cost(flops=1e9, bytes=0.5e9)  # 2 FLOP/byte
    even = roofline.Roofs(peak_flops=100e9, bandwidth=100e9)  # compute binds: 100 < 200
    wide = roofline.Roofs(peak_flops=300e9, bandwidth=30e9)  # memory binds: 60 < 300
    # two chunks at 10 GFLOP/s, each beside both readings, whose better is (300, 100):
    # compute would bind at 300, but the chunks' own roofs are 300 and 2 x 100 = 200
    columns = bench.roof_columns(cost, [0.1, 0.1], [even, wide, even])
    assert columns["fraction_of_roof"] == pytest.approx(10 / 200)
    assert columns["bound"] == "memory"  # the readings' medians, (100, 100), would say compute
    assert (columns["peak_gflops"], columns["bandwidth_gbytes_per_s"]) == (300, 100)
    slow = roofline.Roofs(peak_flops=100e9, bandwidth=30e9)  # memory binds: 60 < 100
    # chunks at 20, 25 and 33 GFLOP/s: the median one (25) sits between two slow readings,
    # memory-bound at 25 / 60, while the readings' medians (100, 65) say compute
    seconds = [0.05, 0.04, 0.03]
    columns = bench.roof_columns(cost, seconds, [even, slow, slow, even])
    assert bench.median_chunk(seconds) == 1
    assert columns["chunk_fraction_of_roof"] == [0.2, pytest.approx(25 / 60, abs=1e-4),
                                                 pytest.approx(1 / 3, abs=1e-4)]
    assert columns["fraction_of_roof"] == pytest.approx(25 / 60) and columns["bound"] == "memory"
    peak, bandwidth = columns["peak_gflops"], columns["bandwidth_gbytes_per_s"]
    assert (peak, bandwidth) == (100, 30)
    achieved = cost.flops / seconds[1] / 1e9
    assert achieved / min(peak, bandwidth * cost.intensity) == \
        pytest.approx(columns["fraction_of_roof"])
    assert bench.median_chunk([0.04, 0.02, 0.03, 0.01]) == 2  # the slower of the middle two


def test_a_row_whose_chunks_all_beat_the_roof_reports_no_fraction():
    columns = bench.roof_columns(COST, [0.001, 0.002], [ROOFS] * 3)
    assert columns["fraction_of_roof"] is None and len(columns["roof_errors"]) == 2
    assert columns["bound"] == "compute" and columns["peak_gflops"] == 100
    row = {"model": "dae", "conv": None, "compute_dtype": "float32", "image_shape": [28, 28, 1],
           "width": 1, "batch": 128, "compile_s": 1.0, "step_ms": 1.0, "epoch_ms": 468.0,
           "img_per_s": 128000.0, "flops_per_step": COST.flops, "bytes_per_step": COST.bytes,
           "intensity": COST.intensity, "achieved_gflops": 1000.0,
           "achieved_gbytes_per_s": 100.0, **columns}
    text = report.table([(row, None)])
    [line] = [x for x in text.splitlines() if x.startswith("| dae ")]
    assert "over the roof: mismeasured" in line and "%" not in line
    assert text.endswith("dae float32 28x28x1 width 1 batch 128 (a chunk over the roof); "
                         "those rows' fractions of the roof are unsure.")


def test_the_roof_meter_measures_both_roofs():
    meter = roofline.RoofMeter(64, 3 * 4096)
    roofs = meter.measure()
    assert roofs.peak_flops > 0 and roofs.bandwidth > 0
    assert meter.array_bytes == 3 * 4096


def test_the_peak_is_the_best_rate_of_the_matmul_sizes(monkeypatch):
    """The peak is read at n and at smaller sizes, and is the best of their rates."""
    meter = roofline.RoofMeter(64, 3 * 4096)
    assert [a.shape[0] for a, _ in meter._operands] == [64, 48, 32]
    clock = iter(range(100))  # each call takes 1 s: the smallest matmul's rate is the lowest
    monkeypatch.setattr(roofline.time, "perf_counter", lambda: float(next(clock)))
    assert meter.peak_flops() == 2 * 64**3


def test_stream_arrays_follow_the_step_footprint_within_bounds():
    assert roofline.stream_array_bytes(0) == roofline.STREAM_MIN_BYTES // 3
    assert roofline.stream_array_bytes(30 * 2**20) == 10 * 2**20
    assert roofline.stream_array_bytes(2**40) == roofline.STREAM_MAX_BYTES // 3


def test_step_cost_counts_a_matmul_and_its_traffic():
    a = jnp.ones((64, 32))
    b = jnp.ones((32, 16))
    cost = roofline.step_cost(jax.jit(jnp.matmul).lower(a, b).compile())
    assert cost.flops == 2 * 64 * 32 * 16
    assert cost.bytes == 4 * (64 * 32 + 32 * 16 + 64 * 16)  # both operands and the result
    assert cost.footprint >= cost.bytes


def test_the_plot_is_written(tmp_path):
    rows = [{"model": "conv_ae", "flops_per_step": 1e9 * k, "fraction_of_roof": 0.1 * k,
             "achieved_gflops": 10.0 * k, "bound": "memory" if k < 3 else "compute",
             "image_shape": [32, 32, 3], "width": 1, "batch": 128} for k in range(1, 5)]
    path = tmp_path / "roof.png"
    roofline.plot(rows, str(path), "test")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_the_plot_names_the_peak_the_sweep_and_no_bound_for_rows_over_every_roof():
    """A row over its roof by every count of bytes was called memory-bound beside the empty
    panel that refused its bytes; the peak's line had no figure; the title no sweep."""
    import matplotlib.pyplot as plt

    over = {"model": "conv_ae", "conv": "patches", "compute_dtype": "bfloat16",
            "image_shape": [32, 32, 3], "width": 1, "batch": 1024, "flops_per_step": 1.2e10,
            "achieved_gflops": 8000.0, "bound": "memory", "fraction_of_roof": None,
            "roof_errors": ["over its roof"], "peak_gflops": 650000.0}
    fits = dict(over, batch=2048, roof_errors=[], fraction_of_roof=0.5, peak_gflops=604175.0)
    figure = roofline.draw([over, fits], "NVIDIA H200, 2026-12-04")
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert labels == ["conv_ae (memory-bound)", "conv_ae (bound unknown: bytes mismeasured)",
                      "bfloat16 matmul peak, the highest measured: 650,000 GFLOP/s"]
    assert figure._suptitle.get_text() == ("NVIDIA H200, 2026-12-04\nconv_ae; 32 px, 3 "
                                           "channels; width 1; batch 1024, 2048; bfloat16; "
                                           "conv patches")
    plt.close(figure)


def test_each_workload_is_labelled_once_and_no_label_covers_another():
    """Two models at one workload share its label, and workloads of nearly the same FLOPs
    and rate (28x28x3 and 32x32x3 at width 1) had their labels drawn over each other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [{"model": model, "image_shape": [size, size, 3], "width": 1, "batch": 128,
             "flops_per_step": flops, "achieved_gflops": rate + bump}
            for model, bump in (("conv_ae", 0.0), ("conv_vae", 2.0))
            for size, flops, rate in ((28, 1.0e9, 80.0), (32, 1.1e9, 82.0), (64, 5e9, 90.0))]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.scatter([r["flops_per_step"] for r in rows], [r["achieved_gflops"] for r in rows])
    axes.set_xscale("log")
    figure.tight_layout()
    roofline._label_workloads(axes, [(r, r["achieved_gflops"]) for r in rows])
    assert sorted(t.get_text() for t in axes.texts) == [
        "28x28x3 w1 b128", "32x32x3 w1 b128", "64x64x3 w1 b128"]
    renderer = figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in axes.texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    highest = {t.get_text(): t.xy[1] for t in axes.texts}
    assert highest["28x28x3 w1 b128"] == 82.0  # beside the higher of the two models' points
    plt.close(figure)


def test_the_plot_tells_apart_rows_that_differ_in_convolution_or_dtype():
    rows = [{"model": model, "conv": conv, "compute_dtype": "bfloat16", "fraction_of_roof": 0.2}
            for model in ("conv_ae", "conv_vae") for conv in ("patches", "xla")]
    rows.append({"model": "conv_ae", "conv": "xla", "compute_dtype": "bfloat16"})  # no roof
    series = roofline._series(rows)
    assert list(series) == ["conv_ae patches", "conv_ae xla", "conv_vae patches",
                            "conv_vae xla"]
    assert [len(members) for members in series.values()] == [1, 2, 1, 1]  # its rate is drawn
    one_conv = [dict(r, conv="patches") for r in rows[:2]]
    assert list(roofline._series(one_conv)) == ["conv_ae"]
    dense = {"model": "dense_ae", "conv": None, "compute_dtype": "bfloat16"}  # no convolutions
    assert list(roofline._series([dense, rows[0], rows[1]])) == ["dense_ae", "conv_ae patches",
                                                                  "conv_ae xla"]


def test_the_plot_draws_every_row_s_rate_and_counts_the_rows_over_their_roof(tmp_path):
    """A run whose rows all came out over the roof still gets a picture (their FLOP/s), and
    `python -m benchmarks.roofline` redraws it from the run's printed JSON lines."""
    row = {"model": "conv_ae", "framework": "jaxae", "conv": "patches",
           "compute_dtype": "bfloat16", "image_shape": [32, 32, 3], "width": 1,
           "batch": 1024, "flops_per_step": 1.2e10, "achieved_gflops": 8000.0,
           "bound": "memory", "fraction_of_roof": None}
    log = tmp_path / "gpu.log"
    log.write_text("# a header\n" + json.dumps(row) + "\n"
                   + json.dumps({**row, "batch": 2048, "fraction_of_roof": 0.5}) + "\n"
                   + json.dumps({"framework": "peer", "img_per_s": 1.0}) + "\n")
    rows = roofline.rows_of_log(str(log))
    assert [r["batch"] for r in rows] == [1024, 2048]
    steps = tmp_path / "steps.log"
    steps.write_text("== gpu.sh: epoch (at 10 s)\n" + json.dumps(row) + "\n== gpu.sh: growth"
                     " (at 90 s)\n" + json.dumps({**row, "batch": 4096}) + "\n== gpu.sh: \n")
    assert [r["batch"] for r in roofline.rows_of_log(str(steps), "growth")] == [4096]
    log.write_text(log.read_text() + '{"model": "conv_ae", "framework": "jaxae", "fl')  # cut off
    assert len(roofline.rows_of_log(str(log))) == 2
    assert roofline.plot([dict(rows[0], roof_errors=["over"])], str(tmp_path / "a.png"), "t") == 0
    import matplotlib.pyplot as plt

    alone = roofline.draw([dict(rows[0], roof_errors=["over"])], "t")  # no empty second panel
    assert len(alone.axes) == 1 and alone._suptitle.get_text().endswith(
        "\n1 of 1 rows' fraction of the roof not drawn: over their roof, so their bytes or a "
        "roof were mismeasured")
    both = roofline.draw(rows, "t")
    assert len(both.axes) == 2
    plt.close(alone)
    plt.close(both)
    assert roofline.plot(rows, str(tmp_path / "b.png"), "t") == 1  # only the 2048 row's fraction
    by_device = dict(rows[0], roof_errors=["over"], device_bytes_fraction_of_roof=0.6,
                     device_bytes_bound="memory")  # a GPU's fusions: its own bytes fit
    assert roofline.roof_point(by_device) == (0.6, "memory", "device")
    assert roofline.roof_point(rows[1]) == (0.5, "memory", "host")
    assert roofline.plot([by_device, rows[1]], str(tmp_path / "c.png"), "t") == 2
    roofline.main([str(log), str(tmp_path / "roof.png"), "a title"])
    assert (tmp_path / "roof.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="no such log"):
        roofline.main([str(tmp_path / "missing.log"), str(tmp_path / "x.png"), "t"])
    with pytest.raises(SystemExit, match=r"x.txt: give a file ending in .png, .svg, .pdf"):
        roofline.main([str(log), str(tmp_path / "x.txt"), "t"])
    with pytest.raises(SystemExit, match="is missing or not writable: give another path"):
        roofline.main([str(log), str(tmp_path / "no" / "x.png"), "t"])
    with pytest.raises(SystemExit, match="no throughput rows"):
        empty = tmp_path / "empty.log"
        empty.write_text("# nothing\n")
        roofline.main([str(empty), str(tmp_path / "x.png"), "t"])


def test_off_the_cpu_the_device_byte_count_gets_its_own_fraction_and_column():
    # host bytes that put every chunk over the bandwidth, device bytes that do not
    host = roofline.Cost(flops=1e6, bytes=1e9, device_flops=0.0, device_bytes=1e8)
    roofs = roofline.Roofs(peak_flops=100e9, bandwidth=10e9)
    seconds = [0.02, 0.025]  # host: 5e10 and 4e10 B/s, over 1e10; device: 50% and 40%
    columns = bench.roof_columns(host, seconds, [roofs] * 3)
    assert columns["fraction_of_roof"] is None and len(columns["roof_errors"]) == 2
    device = bench.device_bytes_roof(host, seconds, [roofs] * 3)
    assert device["device_bytes_bound"] == "memory" and not device["device_bytes_roof_errors"]
    assert device["device_bytes_fraction_of_roof"] == pytest.approx(0.4)  # the lower middle
    assert bench.device_bytes_roof(COST, seconds, [roofs] * 3) == {}  # a CPU's cost
    row = {"model": "conv_vae", "conv": "xla", "compute_dtype": "bfloat16",
           "image_shape": [64, 64, 3], "width": 1, "batch": 1024, "compile_s": 1.0,
           "step_ms": 20.0, "epoch_ms": 20.0, "img_per_s": 51200.0,
           "flops_per_step": host.flops, "bytes_per_step": host.bytes,
           "intensity": host.intensity, "achieved_gflops": 0.05, "achieved_gbytes_per_s": 50.0,
           "device_bytes_per_step": host.device_bytes, **columns, **device}
    header, _, line = report.table([(row, None)]).splitlines()[:3]
    assert "| of roof (device bytes) |" in header
    assert header.count("|") == line.count("|")
    assert "| 100.0 | memory | 40.0% |" in line and "over the roof: mismeasured" in line
    cpu_row = {k: v for k, v in row.items() if k not in device}
    assert "device" not in report.table([(cpu_row, None)]).splitlines()[0]  # a CPU's table
