"""Run by a Python with torch: the PyTorch peer's dense or conv AE for one seed, as the peer
draws it.

    python benchmarks/peer_draws.py --peer-script P --model dense|conv --seed S \
        [--epochs E] [--remainder] --out F.npz

Writes the peer's initial weights (glorot, zero biases, drawn right after
torch.manual_seed(S) as the peer's own `--mode train` does), as layer{i}_kernel in jaxae's
layout ([in, out] for Linear, [kh, kw, in, out] for Conv2d) and layer{i}_bias in the peer's
module order, and E batch orders (one permutation per epoch from numpy default_rng(S));
trains the peer on those epochs' full batches (with --remainder, also on each epoch's last,
smaller batch), and writes its test figure (MSE per pixel for dense, BCE for conv) alongside
as peer_test. `python -m benchmarks.same_draws_parity` runs it with the peer's Python and
trains jaxae from the same file. Nothing here imports jaxae or JAX: the peer's Python need
not have them.
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
    parser = argparse.ArgumentParser(prog="PEER_PYTHON -m benchmarks.peer_draws",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer-script", required=True)
    parser.add_argument("--model", choices=("dense", "conv"), default="dense")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--latent-dim", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--remainder", action="store_true",
                        help="also train each epoch's last, smaller batch (the peer's own "
                             "training does; jaxae drops it)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    peer = load_peer(args.peer_script)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = peer.build(args.model, args.latent_dim, "glorot")
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    initial = {}
    for i, layer in enumerate(layers):
        weight = layer.weight.detach().numpy()
        initial[f"layer{i}_kernel"] = (weight.T if weight.ndim == 2
                                       else weight.transpose(2, 3, 1, 0)).copy()
        initial[f"layer{i}_bias"] = layer.bias.detach().numpy().copy()
    data_dir = peer.debian_data_dir()
    x_train, x_test = peer.load_split(data_dir, "train"), peer.load_split(data_dir, "test")
    rng = np.random.default_rng(args.seed)
    orders = np.stack([rng.permutation(len(x_train)) for _ in range(args.epochs)])
    step = peer.make_step(args.model, model, torch.optim.Adam(model.parameters(), lr=1e-3),
                          None)
    for order in orders:
        shuffled = x_train[torch.from_numpy(order)]
        ends = range(args.batch_size, len(order) + (args.batch_size - 1) * args.remainder + 1,
                     args.batch_size)  # full batches only, as jaxae trains, or all
        for end in ends:
            step(shuffled[end - args.batch_size:min(end, len(order))])
    figure = (torch.nn.functional.mse_loss if args.model == "dense"
              else torch.nn.functional.binary_cross_entropy)
    with torch.no_grad():
        test = sum(float(figure(model(x_test[i:i + 1000]), x_test[i:i + 1000])) *
                   len(x_test[i:i + 1000]) for i in range(0, len(x_test), 1000)) / len(x_test)
    np.savez(args.out, orders=orders, peer_test=test, **initial)


if __name__ == "__main__":
    main()
