"""The benchmark's code path: it times real steps of every model it knows."""

import jax
import numpy as np
import pytest

from jaxae import bench


def test_bench_configs_match_the_peer_models():
    assert bench.bench_config("dae", 128).latent_dim == 940
    assert bench.bench_config("dae", 128).dropout_rescale  # nn.Dropout, as the peer
    assert bench.bench_config("conv_ae", 64).loss == "bce"
    assert bench.bench_config("vae", 64).latent_dim == 2


@pytest.mark.parametrize("model", ["dense_ae", "vae"])
def test_bench_model_reports_rates_and_flops(model):
    rng = np.random.default_rng(0)
    arrays = jax.device_put({"image": rng.integers(0, 256, (256, 28, 28), np.uint8),
                             "label": rng.integers(0, 10, 256).astype(np.int32)})
    result = bench.bench_model(model, batch_size=32, steps_per_chunk=3, chunks=2,
                               arrays=arrays, peak_flops=1e12)
    assert result["img_per_s"] > 0 and len(result["chunk_img_per_s"]) == 2
    # a dense AE step is at least forward + backward of two 784 x 10 matmuls
    assert result["flops_per_step"] > 6 * 32 * 784 * 10
    assert 0 < result["fraction_of_peak"] < 1
    assert "| " + model + " | 32 |" in bench.table([(result, None)])
