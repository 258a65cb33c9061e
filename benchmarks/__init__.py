"""Measurements beside the library: throughput (`bench`; its workloads, report file and
command line in `workloads`, `report` and `bench_args`), quality and time to quality against
the PyTorch peer (`parity`, `same_draws_parity`, with `peer_draws` run by the peer's Python)
and a kernel profile of one epoch (`profile_epoch`). Run them from the repository root, e.g.
`python -m benchmarks.bench`; the peer's script is never part of this repository and is
always passed as --peer-script PATH."""
