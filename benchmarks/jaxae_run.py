"""One jaxae run of a time-to-quality pairing, in a fresh process (`parity.run_jaxae_process`
starts it).

    python -m benchmarks.jaxae_run SPEC_JSON WORKDIR

Trains as `parity.run_jaxae` does and prints its result as the last line of stdout, with
"called_at", the wall-clock time the training call began: the caller, which noted when it
started this process, counts Python's start-up and the imports before that call as part of
jaxae's time, as it counts the peer's own start-up.
"""

from __future__ import annotations

import json
import sys
import time

from benchmarks import parity


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python -m benchmarks.jaxae_run SPEC_JSON WORKDIR")
    spec, workdir = json.loads(argv[0]), argv[1]
    called_at = time.time()
    result = parity.run_jaxae(parity.Pairing(**spec["pairing"]), workdir, spec["tfds_dir"],
                              spec["seed"], spec["extra_epochs"],
                              checks_per_extra_epoch=spec["checks_per_extra_epoch"])
    print(json.dumps({**result, "called_at": called_at}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
