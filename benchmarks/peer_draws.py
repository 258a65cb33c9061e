"""Run by a Python with torch: the PyTorch peer's dense AE for one seed, as the peer draws it.

    python benchmarks/peer_draws.py --peer-script P --seed S --out F.npz

Writes the peer's initial weights (glorot, zero biases, drawn right after
torch.manual_seed(S) as the peer's own `--mode train` does) and its first epoch's order
(numpy default_rng(S).permutation), trains the peer on that epoch's full batches, and writes
its test MSE per pixel alongside. `python -m benchmarks.same_draws_parity` runs it with the
peer's Python and trains jaxae from the same file. Nothing here imports jaxae or JAX: the
peer's Python need not have them.
"""

import argparse
import importlib.util

import numpy as np
import torch


def load_peer(path: str):
    spec = importlib.util.spec_from_file_location("torch_autoencoders", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer-script", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--latent-dim", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    peer = load_peer(args.peer_script)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = peer.build("dense", args.latent_dim, "glorot")
    encoder, decoder = model[0][1], model[1][0]
    initial = {"encoder_kernel": encoder.weight.detach().numpy().T.copy(),
               "encoder_bias": encoder.bias.detach().numpy().copy(),
               "decoder_kernel": decoder.weight.detach().numpy().T.copy(),
               "decoder_bias": decoder.bias.detach().numpy().copy()}
    data_dir = peer.debian_data_dir()
    x_train, x_test = peer.load_split(data_dir, "train"), peer.load_split(data_dir, "test")
    order = np.random.default_rng(args.seed).permutation(len(x_train))
    step = peer.make_step("dense", model, torch.optim.Adam(model.parameters(), lr=1e-3), None)
    shuffled = x_train[torch.from_numpy(order)]
    for i in range(len(order) // args.batch_size):  # full batches only, as jaxae trains
        step(shuffled[i * args.batch_size:(i + 1) * args.batch_size])
    with torch.no_grad():
        test_mse = float(torch.nn.functional.mse_loss(model(x_test), x_test))
    np.savez(args.out, order=order, peer_test_mse=test_mse, **initial)


if __name__ == "__main__":
    main()
