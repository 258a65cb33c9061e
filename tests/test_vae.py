"""VAE conventions and bounds: sampling, KL, likelihoods, IWAE, and what evaluation checks."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import build, losses, objectives
from jaxae import config as config_lib
from jaxae.evaluation import generation, iwae, metrics
from jaxae.evaluation.evaluate import evaluate_workdir
from jaxae.evaluation.metrics import evaluate_split, padded_batches
from jaxae.keys import derive_keys
from jaxae.models import reparameterize
from jaxae.training import steps
from jaxae.training.checkpoints import CheckpointMismatch
from jaxae.training.trainer import train_and_evaluate
from tests.conftest import set_fields


def test_log_sigma_is_the_log_standard_deviation_in_sampling():
    mean = jnp.array([1.0, -2.0])
    log_sigma = jnp.log(jnp.array([0.5, 3.0]))
    keys = jax.random.split(jax.random.key(0), 200_000)
    z = jax.vmap(lambda k: reparameterize(k, mean, log_sigma))(keys)
    np.testing.assert_allclose(z.mean(axis=0), [1.0, -2.0], atol=0.02)
    np.testing.assert_allclose(z.std(axis=0), [0.5, 3.0], rtol=0.01)


def test_closed_form_kl_equals_a_monte_carlo_estimate():
    mean = jnp.array([0.5, -1.0, 2.0])
    log_sigma = jnp.array([-0.5, 0.3, -1.2])
    keys = jax.random.split(jax.random.key(1), 400_000)
    z = jax.vmap(lambda k: reparameterize(k, mean, log_sigma))(keys)
    zeros = jnp.zeros(3)
    log_q, log_p = losses.log_normal(z, mean, log_sigma), losses.log_normal(z, zeros, zeros)
    monte_carlo = jnp.mean(log_q - log_p)
    closed_form = losses.gaussian_kl(mean, log_sigma)
    # by hand: 0.5 * sum(mean^2 + sigma^2 - 1 - 2 log_sigma)
    by_hand = 0.5 * sum(m * m + np.exp(2 * s) - 1 - 2 * s
                        for m, s in zip([0.5, -1.0, 2.0], [-0.5, 0.3, -1.2], strict=True))
    np.testing.assert_allclose(closed_form, by_hand, rtol=1e-5)
    np.testing.assert_allclose(monte_carlo, closed_form, rtol=0.01)


def test_kl_is_zero_only_at_the_prior():
    assert float(losses.gaussian_kl(jnp.zeros(4), jnp.zeros(4))) == 0.0
    assert float(losses.gaussian_kl(jnp.full(4, 0.1), jnp.zeros(4))) > 0
    assert float(losses.gaussian_kl(jnp.zeros(4), jnp.full(4, -0.1))) > 0


def test_likelihoods_hand_computed():
    logits = jnp.zeros((1, 28, 28, 1))  # p = 0.5 for every one of 784 pixels
    targets = jnp.ones((1, 28, 28, 1))
    np.testing.assert_allclose(losses.bernoulli_log_likelihood(logits, targets),
                               [-784 * np.log(2)], rtol=1e-6)
    # N(1; 0.5, 0.1^2) per pixel: -0.5 * 25 - log(0.1) - 0.5 log(2 pi)
    per_pixel = -12.5 - np.log(0.1) - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(losses.gaussian_log_likelihood(logits, targets, 0.1),
                               [784 * per_pixel], rtol=1e-5)


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory, fashion_tfds_dir):
    """A VAE with a 2-D latent after 2 epochs on 512 real images, with its workdir."""
    config = config_lib.base_config()
    set_fields(config, {
        "model": {"name": "vae", "latent_dim": 2}, "data.tfds_dir": fashion_tfds_dir,
        "data.train_size": 512, "data.test_size": 256, "train.batch_size": 32,
        "train.num_epochs": 2, "eval.batch_size": 128, "eval.iwae_samples": (1, 10, 100),
        "eval.iwae_images": 256})
    workdir = str(tmp_path_factory.mktemp("vae"))
    state = train_and_evaluate(config, workdir)
    return config, state, workdir


def vae_parts(config):
    """(model, task, objective, test split) of the trained VAE's config."""
    data = build.load_data(config, derive_keys(config.seed).data)
    model = build.make_model(config, data.image_shape, data.num_classes)
    return model, config_lib.make_task(config), build.make_objective(config, model), data


def test_iwae_bound_is_the_elbo_at_k1_and_tightens_with_k(trained_vae):
    config, state, _ = trained_vae
    model, task, objective, data = vae_parts(config)
    batches = [b for _, b in padded_batches(data.test, 64)]
    bounds = iwae.iwae_bounds(model, task, objective.likelihood, state.params, batches,
                              jax.random.key(7), (1, 10, 100))
    elbo = evaluate_split(steps.make_eval_step(model, task, objective), state.params,
                          data.test, 64, jax.random.key(8))["elbo"]
    assert abs(bounds[1] - elbo) < 0.01 * abs(elbo), f"k=1 bound {bounds[1]} vs ELBO {elbo}"
    assert bounds[1] < bounds[10] < bounds[100], f"not monotone in k: {bounds}"


def test_each_batch_of_an_iwae_bound_draws_its_own_samples(trained_vae):
    """Batch i draws from fold_in(key, i): the same images twice are two estimates (one key
    for every batch made the bound over [b, b] that over [b])."""
    config, state, _ = trained_vae
    model, task, objective, data = vae_parts(config)
    batch = next(padded_batches(data.test, 32))[1]
    key = jax.random.key(3)

    def bound(batches: list) -> float:
        return iwae.iwae_bounds(model, task, objective.likelihood, state.params, batches, key,
                                (1,), progress=False)[1]

    step = iwae.make_iwae_step(model, task, objective.likelihood, 1, 50)
    each = [float(step(state.params, batch, jax.random.fold_in(key, i))) for i in (0, 1)]
    assert each[0] != each[1]
    assert bound([batch, batch]) == pytest.approx(sum(each) / 64, rel=1e-6)
    assert bound([batch]) == pytest.approx(each[0] / 32, rel=1e-6)


def test_iwae_chunking_does_not_change_the_bound(trained_vae):
    config, state, _ = trained_vae
    model, task, objective, data = vae_parts(config)
    batch = next(padded_batches(data.test, 32))[1]
    key = jax.random.key(3)
    whole = iwae.make_iwae_step(model, task, objective.likelihood, 30, chunk=30)(
        state.params, batch, key)
    chunked = iwae.make_iwae_step(model, task, objective.likelihood, 30, chunk=7)(
        state.params, batch, key)
    assert np.isfinite(float(whole)) and np.isfinite(float(chunked))
    np.testing.assert_allclose(float(chunked), float(whole), rtol=0.02)  # other samples

    class FlatOnly:  # a likelihood of one's own: it sums axis -1 of [B, pixels], as trained
        def log_prob(self, logits, targets):
            return -(jnp.maximum(logits, 0) - logits * targets
                     + jnp.log1p(jnp.exp(-jnp.abs(logits)))).sum(axis=-1)

    own = iwae.make_iwae_step(model, task, FlatOnly(), 30, chunk=30)(state.params, batch, key)
    np.testing.assert_allclose(float(own), float(whole), rtol=1e-5)  # given images, it failed


def test_iwae_chunks_count_each_of_the_k_samples_once(monkeypatch):
    """With every z at its mean the k log-weights are equal, so the bound is the same in
    one chunk or in chunks of 7 (35 samples drawn: the 5 beyond k=30 must be left out,
    else the bound moves by log(35 / 30) nats), and the same as k=1's (the mean of the k
    weights, not their sum: without its log k the bound would rise by log 30 nats)."""
    from jaxae import models
    from jaxae.tasks import Reconstruct

    monkeypatch.setattr(iwae, "sample_with_noise",
                        lambda key, mean, log_sigma: (mean, jnp.zeros_like(mean)))
    model = models.build_model({"name": "vae", "latent_dim": 2}, image_shape=(4, 4, 1))
    params = steps.init_params(model, (4, 4, 1), jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (8, 4, 4, 1), dtype=np.uint8)
    batch = {"image": images, "label": np.zeros(8, np.int32)}
    bounds = [float(iwae.make_iwae_step(model, Reconstruct(), objectives.Bernoulli(), k,
                                        chunk=chunk)(params, batch, jax.random.key(3)))
              for k, chunk in ((30, 30), (30, 7), (1, 1))]
    np.testing.assert_allclose(bounds[1:], [bounds[0]] * 2, rtol=1e-6)


def test_the_iwae_bound_of_a_collapsed_posterior_is_finite_and_near_the_elbo():
    """An encoder whose sigma underflows (log sigma -200: z is its mean) gave log q as
    0 * inf = NaN, and metrics.json a null bound without a word; log q from the draw's eps
    is exact there."""
    from jaxae import models
    from jaxae.tasks import Reconstruct

    model = models.build_model({"name": "vae", "latent_dim": 2}, image_shape=(4, 4, 1))
    params = steps.init_params(model, (4, 4, 1), jax.random.key(0))
    params["z_log_sigma"] = {"kernel": jnp.zeros((512, 2)), "bias": jnp.full((2,), -200.0)}
    images = np.random.default_rng(0).integers(0, 256, (8, 4, 4, 1), dtype=np.uint8)
    batch = {"image": images, "label": np.zeros(8, np.int32)}
    bounds = [float(iwae.make_iwae_step(model, Reconstruct(), objectives.Bernoulli(), k, 5)(
        params, batch, jax.random.key(3))) for k in (1, 5)]
    assert np.isfinite(bounds).all(), bounds
    assert bounds[1] >= bounds[0] - 1e-3 * abs(bounds[0])


def test_the_reported_elbo_is_beta_free_while_the_loss_weights_the_kl_by_beta():
    """A beta-VAE minimises recon + beta * KL, but reports the ELBO itself (beta = 1), the
    figure the IWAE bound at k=1 equals and other runs compare with."""
    rng = np.random.default_rng(0)
    logits, targets = jnp.asarray(rng.normal(size=(3, 8))), jnp.asarray(rng.random((3, 8)))
    aux = {"mean": jnp.asarray(rng.normal(size=(3, 2))),
           "log_sigma": jnp.asarray(rng.normal(size=(3, 2)) * 0.3)}
    plain, heavy = (objectives.NegativeELBO(objectives.Bernoulli(), beta)(logits, targets, aux)
                    for beta in (1.0, 4.0))
    np.testing.assert_array_equal(heavy["elbo"], plain["elbo"])
    np.testing.assert_allclose(heavy["loss"], plain["loss"] + 3 * plain["kl_nats"], rtol=1e-6)
    np.testing.assert_allclose(plain["elbo"], -plain["loss"], rtol=1e-6)


def test_iwae_working_memory_does_not_grow_with_k_when_chunked(trained_vae):
    config, state, _ = trained_vae
    model, task, objective, data = vae_parts(config)
    batch = {"image": jnp.zeros((100, *data.image_shape), jnp.uint8),
             "label": jnp.zeros((100,), jnp.int32), "mask": jnp.ones((100,), jnp.float32)}

    def temp_bytes(k: int, chunk: int) -> int:
        step = iwae.make_iwae_step(model, task, objective.likelihood, k, chunk)
        compiled = step.lower(state.params, batch, jax.random.key(0)).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    small, large = temp_bytes(50, 50), temp_bytes(1000, 50)
    assert large < 1.1 * small, f"k=1000 in chunks of 50 needs {large} bytes, k=50 {small}"
    assert temp_bytes(1000, 1000) > 10 * small  # what the chunks save


def test_evaluation_of_a_vae_writes_bounds_and_pictures(trained_vae):
    _, _, workdir = trained_vae
    result = evaluate_workdir(workdir)
    assert result["test_iwae_k1"] < result["test_iwae_k10"] < result["test_iwae_k100"]
    assert set(result["pictures"]) == {"reconstructions.png", "samples.png", "manifold.png",
                                       "latent_scatter.png"}
    assert result["pictures"]["manifold.png"].endswith(  # the range its axes sweep
        "decoded latent grid over the N(0, 1) quantiles 5% to 95%")
    for name in result["pictures"]:
        assert os.path.getsize(os.path.join(workdir, "eval", name)) > 5000
    config, state, _ = trained_vae
    model, task, _, data = vae_parts(config)
    means = generation.encode(model, state.params, data.test.images, data.test.labels, 128,
                              task, derive_keys(config.seed).eval)
    variances = means.var(axis=0)
    assert result["test_active_units"] == int(np.sum(variances > 0.01)) >= 1, variances
    assert result["counts"]["test_active_units"] == len(data.test)


def test_active_units_count_the_latent_units_whose_posterior_mean_varies():
    """Burda et al.'s count: a unit whose z_mean is (nearly) the same for every image, as in
    posterior collapse, is idle."""
    rng = np.random.default_rng(0)
    used = rng.normal(size=(500, 3))  # variance about 1
    means = np.concatenate([used, np.full((500, 1), 0.3), 0.05 * used[:, :1]], axis=1)
    assert metrics.active_units(means) == 3  # the constant and the 0.0025-variance unit idle
    assert metrics.active_units(means, threshold=0.001) == 4
    unit = rng.normal(size=500)
    near = np.stack([unit / unit.std() * np.sqrt(v) for v in (0.015, 0.008)], axis=1)
    assert metrics.active_units(near) == 1  # the threshold is Burda et al.'s 0.01
    with pytest.raises(ValueError, match=r"active_units takes the z_mean of 2 images or more"):
        metrics.active_units(means[0])


def test_a_checkpoint_that_does_not_fit_the_config_is_named(trained_vae, tmp_path):
    _, _, workdir = trained_vae
    config_path = os.path.join(workdir, "config.json")
    with open(config_path) as f:
        saved = json.load(f)
    try:
        with open(config_path, "w") as f:
            json.dump({**saved, "model": {**saved["model"], "latent_dim": 3}}, f)
        with pytest.raises(CheckpointMismatch) as caught:
            evaluate_workdir(workdir)
    finally:
        with open(config_path, "w") as f:
            json.dump(saved, f)
    message = str(caught.value)
    assert "params/decoder/Dense_0/kernel is (2, 512) there, (3, 512) here: the run's " \
        "config.json and model code describe another model than that step's (a config.json " \
        "edited since" in message
    assert "\n" not in message


def test_class_samples_with_a_shared_z_decode_one_z_per_column_as_every_class():
    from jaxae import models

    cvae = models.build_model({"name": "cvae", "latent_dim": 2}, image_shape=(28, 28, 1),
                              num_classes=3)
    params = steps.init_params(cvae, (28, 28, 1), jax.random.key(0))
    key = jax.random.key(5)
    grid = generation.class_samples(cvae, params, key, 4, 3, shared_z=True)
    z = jax.random.normal(key, (4, 2))
    for c in range(3):
        np.testing.assert_allclose(grid[c], generation.decode(cvae, params, z, np.full(4, c)),
                                   atol=1e-6)
    own = generation.class_samples(cvae, params, key, 4, 3)  # a z of its own per sample
    np.testing.assert_allclose(own.reshape(12, 28, 28, 1), generation.prior_samples(
        cvae, params, key, 12, np.repeat(np.arange(3), 4)), atol=1e-6)
    assert not np.allclose(own, grid)
    for shared in (True, False):  # more rows than the model has classes: refused alike
        with pytest.raises(ValueError, match=r"labels 0 \.\. 4, outside its 3 classes"):
            generation.class_samples(cvae, params, key, 4, 5, shared_z=shared)


def test_a_kl_warm_up_raises_beta_from_zero_to_its_value_over_its_steps(tiny_config):
    """objective.beta_warmup_steps (KL annealing): at step 0 a VAE's step minimises the
    reconstruction alone; after the warm-up, beta's objective; 0 leaves the step as it was."""
    objective = objectives.NegativeELBO(objectives.Bernoulli(), beta=2.0, warmup_steps=4)
    assert [float(objective.at_step(s).beta) for s in (0, 2, 4, 9)] == [0.0, 1.0, 2.0, 2.0]
    plain = objectives.NegativeELBO(objectives.Bernoulli(), beta=2.0)
    assert plain.at_step(3) is plain

    class Own(objectives.Objective):  # one's own, with no schedule: itself at every step
        def __call__(self, logits, targets, aux):
            return {"loss": losses.mse(logits, targets)}

    assert Own().at_step(5) is not None and isinstance(Own().at_step(5), Own)
    with pytest.raises(ValueError, match=r"^warmup_steps=-1 must be a whole number >= 0"):
        objectives.NegativeELBO(objectives.Bernoulli(), warmup_steps=-1)
    config = tiny_config(**{"model": {"name": "vae", "latent_dim": 2},
                            "objective.beta_warmup_steps": 10})
    assert build.warmup_note(config, True, 32) == ("note: beta rises from 0 to 1 over the first "
                                                   "10 of 32 steps")
    assert build.warmup_note(config, True, 6) == ("warning: objective.beta_warmup_steps=10 is "
                                                  "more than the run's 6 steps: its last step "
                                                  "trains with beta 0.5 of 1")
    data = build.load_data(config, derive_keys(0).data)
    task, model, _, warm = build.run_objects(config, data.image_shape, data.num_classes)
    batch = {"image": np.asarray(data.train.images[:32])}
    state = steps.create_train_state(model, build.make_optimizer(config), data.image_shape,
                                     jax.random.key(0))
    _, metrics = steps.make_train_step(model, task, warm)(state, batch, jax.random.key(1))
    metrics = {k: float(v) for k, v in metrics.items()}  # beta 0 at the first step:
    assert metrics["loss"] == metrics["recon_nats"] and metrics["kl_nats"] > 0  # no KL yet
