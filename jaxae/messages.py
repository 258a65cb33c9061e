"""What jaxae's one-line messages quote of another error: its first line, and where in a
user's own code (a model of their own) it was raised."""

from __future__ import annotations

import functools
import os
import site
import sysconfig
import traceback
import unicodedata
from collections.abc import Iterator

_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """`text` with its control characters (and the marks that reorder a line) written as
    escapes ('\\x1b'): a file name of a received folder, quoted in a line, could otherwise
    move the cursor, retitle the terminal or break the line in two. Letters of any script,
    and spaces of any kind, stay as they are."""
    return "".join(c.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS else c
                   for c in text)


def first_line(error: BaseException | str, limit: int | None = None) -> str:
    """The first line of an error's message (or of a text), at most `limit` characters:
    what a one-line message quotes of an error whose own text runs to many lines (TFDS's,
    TensorStore's, the network's); empty where it has no text."""
    return (str(error).strip().splitlines() or [""])[0][:limit]


@functools.cache
def _library_folders() -> tuple[str, ...]:
    """Where code that is not the user's lives: jaxae, the standard library, and the
    installed packages (JAX, Flax, NumPy)."""
    paths = sysconfig.get_paths()
    folders = {os.path.dirname(os.path.realpath(__file__)),
               *(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths),
               *site.getsitepackages(), site.getusersitepackages()}
    return tuple(os.path.join(os.path.realpath(f), "") for f in folders)


def raised_at(error: BaseException) -> str:
    """" (at FILE:LINE, in FUNCTION)" for the innermost frame of `error`'s traceback in the
    user's own code (outside jaxae and the installed packages: a model of one's own), so a
    one-line message about it says which line to look at; "" where there is none."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = os.path.realpath(frame.filename)
        if frame.filename.startswith("<") or path.startswith(_library_folders()):
            continue
        shown = os.path.relpath(path) if path.startswith(os.path.join(os.getcwd(), "")) \
            else path
        return f" (at {shown}:{frame.lineno}, in {frame.name})"
    return ""


def causes(error: BaseException | None) -> Iterator[BaseException]:
    """`error`, then each error it was raised from or while handling (`__cause__`, else
    `__context__`), each once: where a library's message hides the one that says why."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__
