"""The command line read ahead of absl: a flag's value, the config fields that overrides
name, and paths as a user gives them and as a command to copy names them."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn


class OneLineErrors(argparse.ArgumentParser):
    """An ArgumentParser whose error is one line (argparse prints its whole usage first):
    every command that imports jaxae parses with it (tests/test_layout.py checks)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists every option)\n")


def flag_value(argv: Sequence[str], name: str) -> str | None:
    """The value of --name in argv (--name=V or --name V), or None: a look ahead of absl."""
    for index, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and index + 1 < len(argv):
            return argv[index + 1]
    return None


def override_path(field: str, argv: Sequence[str] | None = None,
                  exists: Callable[[str], bool] = lambda path: False) -> str:
    """The dotted path of the --config.X override that names `field`, if there is one: of
    several (model.name and objective.name name "name"), the first that is no field
    (`exists`), the one the error is about."""
    paths = [p for p in override_paths(sys.argv if argv is None else argv)
             if field in p.split(".")]
    return next((p for p in paths if not exists(p)), paths[0] if paths else field)


def override_paths(argv: Sequence[str]) -> list[str]:
    """The fields that --config.X=V (or --config.X V) overrides name, e.g. 'model.width'."""
    return [arg.lstrip("-")[len("config."):].split("=", 1)[0] for arg in argv[1:]
            if arg.startswith("-") and arg.lstrip("-").startswith("config.")]


def config_files(argv: Sequence[str]) -> list[str]:
    """The files that --config names, once each time it is given (a user may give two)."""
    return [arg.partition("=")[2] or (argv[i + 1] if i + 1 < len(argv) else "")
            for i, arg in enumerate(argv[1:], 1)
            if arg.partition("=")[0] in ("--config", "-config")]


def none_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """argv without its `--config.X=None` (or `--config.X None`) overrides, and those X.

    ml_collections parses an override by the type of the field's value, so `None` cannot
    unset a field that the config file set (`--config.data.train_size=None` would be "invalid
    literal for int()"); parse_flags sets these fields itself, after the rest. As with
    absl, the last override of a field wins: a None followed by a value is dropped."""
    kept, unset, skip = [], {}, False
    for index, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--":  # what follows is not a flag
            kept.extend(argv[index:])
            break
        name, equals, value = arg.partition("=")
        flag = name.lstrip("-")
        path = flag[len("config."):] if flag != name and flag.startswith("config.") else None
        if index and path:
            unset.pop(path, None)
            if (equals and value == "None") or (
                    not equals and index + 1 < len(argv) and argv[index + 1] == "None"):
                unset[path] = True
                skip = not equals
                continue
        kept.append(arg)
    return kept, list(unset)


def user_path(path: str | None) -> str | None:
    """A path flag with a leading `~` made the user's home folder: the shell leaves the `~`
    of `--workdir=~/runs` as it is."""
    return os.path.expanduser(path) if path else path


def shortest_path(path: str) -> str:
    """`path` relative to the current folder where it lies inside it, else absolute: how a
    command to copy names a file."""
    relative = os.path.relpath(path)
    return os.path.abspath(path) if relative.startswith("..") else relative
