"""The one line of another error's text that jaxae's one-line messages quote."""

from __future__ import annotations


def first_line(error: BaseException | str, limit: int | None = None) -> str:
    """The first line of an error's message (or of a text), at most `limit` characters:
    what a one-line message quotes of an error whose own text runs to many lines (TFDS's,
    TensorStore's, the network's); empty where it has no text."""
    return (str(error).strip().splitlines() or [""])[0][:limit]
