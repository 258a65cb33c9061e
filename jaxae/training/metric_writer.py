"""Metrics as one JSON object per line in `<workdir>/metrics.jsonl`, echoed to stdout, and
read back (`read_metrics`); the run's timings the same way in `<workdir>/timings.jsonl`
(`read_timings`), not echoed."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping

from tqdm import tqdm

from jaxae.training.files import finite_or_null, write_error, write_whole
from jaxae.training.workdir import METRICS_FILE, TIMINGS_FILE


def _plain(value: object) -> object:
    """A JSON-ready Python number from a float, an int or a 0-d array; a non-finite float
    is null (NaN is no JSON token)."""
    return finite_or_null(value.item() if hasattr(value, "item") else value)


def _record(line: str) -> dict | None:
    """A metrics line's record, or None if the line is not one (edited, damaged)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return record if isinstance(step, int) and not isinstance(step, bool) else None


def _record_step(line: str) -> int | None:
    """The step of a metrics line, or None if the line is not a record."""
    record = _record(line)
    return None if record is None else record["step"]


def read_metrics(workdir: str, file: str = METRICS_FILE) -> list[dict]:
    """The records of `<workdir>/metrics.jsonl` (or of `file`), in order (none where it is
    missing); a line that is no record (cut short, edited) is skipped, as a resume drops it."""
    path = os.path.join(workdir, file)
    if not os.path.isfile(path):
        return []
    with open(path, errors="replace") as f:
        return [record for line in f if (record := _record(line)) is not None]


def read_timings(workdir: str) -> list[dict]:
    """The records of `<workdir>/timings.jsonl` (`TimingLog` says what they hold)."""
    return read_metrics(workdir, TIMINGS_FILE)


class MetricWriter:
    """Appends records to `<workdir>/metrics.jsonl` (or to `file`), so a resumed run
    continues the file its first part started. A failed write is a WriteError naming the
    file and the reason."""

    def __init__(self, workdir: str, echo: bool = True, file: str = METRICS_FILE,
                 what: str = "metrics"):
        self.path = os.path.join(workdir, file)
        self.echo, self.what = echo, what  # what its records are, for its warnings

    def drop_after(self, step: int) -> list[dict]:
        """Removes records of steps after `step`: a restart from that step writes them again.
        Returns the records kept.

        A last line cut short (power loss, full disk) is dropped, with a warning where its
        record is lost for good (`_drop_cut_line`), or kept where only its newline is
        missing; any other line that is not a record is moved, with a one-line warning, to
        metrics.jsonl.rejected, so the file stays readable and nothing typed into it is
        lost.
        """
        if not os.path.exists(self.path):
            return []
        with open(self.path, errors="replace") as f:
            lines = f.readlines()
        mended = False
        if lines and not lines[-1].endswith("\n"):  # a write cut short (power loss, full disk)
            if _record_step(lines[-1]) is not None:  # whole but for its newline: kept
                lines[-1], mended = lines[-1] + "\n", True
            else:
                self._drop_cut_line(lines[-1], step)
                lines[-1] = ""
        kept, records, rejected = [], [], []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            record = _record(line)
            if record is None:
                rejected.append(line)
                print(f"warning: {self.path} line {number} is not a {self.what} record "
                      f"({line.strip()[:40]!r}): moved to {self.path}.rejected",
                      file=sys.stderr, flush=True)
            elif record["step"] <= step:
                kept.append(line)
                records.append(record)
        if rejected:
            try:
                with open(self.path + ".rejected", "a") as f:
                    f.writelines(rejected)
            except OSError as e:
                raise write_error(self.path + ".rejected", e) from None
        if mended or len(kept) != len(lines):
            write_whole(self.path, "".join(kept))
        return records

    def _drop_cut_line(self, line: str, step: int) -> None:
        """Warns where the cut record is lost for good: one of a step up to `step`, which
        the resumed run does not write again (a later step's it does), or of no step one
        can read."""
        begun = re.match(r'\{"step": (\d+)[,}]', line)
        lost = int(begun.group(1)) if begun else None
        if lost is not None and lost > step:
            return
        whose = f"step {lost}'s {self.what} are" if lost is not None else "its record may be"
        print(f"warning: {self.path}'s last line was cut short (a write interrupted) and is "
              f"dropped: {whose} lost, as the run goes on after step {step}; the checkpoints "
              "and the other records are whole", file=sys.stderr, flush=True)

    def write(self, record: Mapping[str, object]) -> None:
        line = json.dumps({key: _plain(value) for key, value in record.items()})
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError as e:
            raise write_error(self.path, e) from None
        if self.echo:  # above a progress bar on the terminal, not after its text
            tqdm.write(line, file=sys.stdout)
            sys.stdout.flush()
