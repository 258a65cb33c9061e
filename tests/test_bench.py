"""The benchmark's code path: it times real steps of every model it knows."""

import jax
import numpy as np

from jaxae import bench


def test_bench_configs_match_the_peer_models():
    assert bench.bench_config("dae", 128).latent_dim == 940
    assert bench.bench_config("dae", 128).dropout_rescale  # nn.Dropout, as the peer
    assert bench.bench_config("conv_ae", 64).loss == "bce"


def test_bench_model_reports_a_positive_rate():
    images = jax.device_put(np.random.default_rng(0).integers(0, 256, (256, 28, 28), np.uint8))
    result = bench.bench_model("dense_ae", batch_size=32, num_steps=3, chunks=2,
                               train_images=images)
    assert result["img_per_s"] > 0 and len(result["chunk_img_per_s"]) == 2
