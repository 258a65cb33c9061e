"""Metrics as one JSON object per line in `<workdir>/metrics.jsonl`, echoed to stdout."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping


def _plain(value: object) -> object:
    """A JSON-ready Python number from a float, an int or a 0-d array."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricWriter:
    """Appends records, so a resumed run continues the file its first part started."""

    def __init__(self, workdir: str, echo: bool = True):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.echo = echo

    def drop_after(self, step: int) -> None:
        """Removes records of steps after `step`: a restart from that step writes them again."""
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            lines = f.readlines()
        if lines and not lines[-1].endswith("\n"):  # a write cut short (power loss, full disk)
            lines[-1] = ""
        kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
        if len(kept) != len(lines):
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.writelines(kept)
            os.replace(tmp, self.path)

    def write(self, record: Mapping[str, object]) -> None:
        line = json.dumps({key: _plain(value) for key, value in record.items()})
        with open(self.path, "a") as f:
            f.write(line + "\n")
        if self.echo:
            print(line, flush=True)
