"""One line for each way a `--config` fails to load: the file's own mistake (with its line), a
misspelt field or override, a flag that is a config field's name, a file that is not there."""

from __future__ import annotations

import linecache
import os
import re
import sys
from collections.abc import Sequence

import ml_collections
from absl import flags

from jaxae.cli.arguments import override_path, override_paths, shortest_path
from jaxae.messages import first_line
from jaxae.registry import line_in_file


def field_hint(path: str) -> str:
    """Where a field that does not exist moved, or the closest one (jaxae.config's, imported
    only when an error needs it)."""
    from jaxae import config

    return config.field_hint(path)


def unknown_field(error: AttributeError | KeyError, argv: Sequence[str] | None = None) -> str:
    """ml_collections' KeyError("'modle'\\nDid you mean ...?") or a locked config's
    AttributeError, as 'unknown config field config.X: <where it moved / closest field>'."""
    key = error.args[0] if error.args and isinstance(error.args[0], KeyError) else error
    text = str(key.args[0] if key.args else key)
    field = text.partition("\n")[0].strip("'\"")
    if text.startswith("Key \""):  # 'Key "latnt_dim" does not exist and cannot be added...'
        field = text.split('"')[1]
    from jaxae import config

    path = override_path(field, argv, config.is_field)
    hint = field_hint(path)
    if path in config.MOVED_FIELDS:  # an older command's flat fields: every one said at once
        others = [p for p in dict.fromkeys(override_paths(sys.argv if argv is None else argv))
                  if p in config.MOVED_FIELDS and p != path]
        hint += "".join(f"; config.{p} moved to config.{config.MOVED_FIELDS[p]}"
                        for p in others)
    return f"unknown config field config.{path}" + (f": {hint}" if hint else "")


def config_error(error: BaseException, path: str, argv: Sequence[str],
                 flag_values: flags.FlagValues) -> str:
    """One line for an error while loading the --config file at `path`: the file's own
    mistake (with its line), a misspelt --config.X override, or the file not loading at all."""
    for cause in (error, error.__cause__, error.__context__):
        if cause is not None and (message := _config_file_error(cause, path)):
            return message
    if "has no attribute 'get_config'" in str(error):
        return f"--config={path}: it defines no get_config() returning the config"
    if isinstance(error, (AttributeError, KeyError)):
        return unknown_field(error, argv)
    if isinstance(error, OSError):
        text = str(error).strip().splitlines()
        return f"--config: {text[-1].strip() if text else error}{_config_path_hint(path)}"
    if isinstance(error, flags.Error):
        first = first_line(error)
        if found := re.match(r"flag --config\.([\w.]+)=(.*?): Failed to parse .* as a ConfigDict",
                             first):
            section, value = found.groups()
            try:
                fields = list(flag_values.config.get(section, {}).keys())
            except Exception:  # noqa: BLE001 (no config loaded: no fields to name)
                fields = []
            example = (f"e.g. --config.{section}.name={value}" if "name" in fields else
                       f"config.{section} has {', '.join(fields)}" if fields else
                       f"--config.{section}.FIELD=VALUE")
            return (f"--config.{section}={value} gives a value to a whole section: give one "
                    f"of its fields, {example}")
        if found := re.match(r"Unknown command line flag '(\w+)'", first):
            return first + _field_flag_hint(found.group(1), flag_values)
        if found := re.match(r"flag (--config\.[\w.]+)=(.*?): (invalid literal for int\(\)|"
                             r"could not convert string to float)", first):
            flag, value, kind = found.groups()
            whole = kind.startswith("invalid")
            number = "a whole number" if whole else "a number"
            example = (_whole(value) if whole else None) or _current(flag_values, flag) or 1
            return f"{flag}={value} is not {number}: give {number}, e.g. {flag}={example}"
        if found := re.match(r"flag (--config\.[\w.]+)=(.*?): \('Non-boolean argument", first):
            flag, value = found.groups()
            return f"{flag}={value} is not True or False: give {flag}=True or {flag}=False"
        if "Overriding config is not allowed" in first:
            return ("evaluate.py takes no --config file: it evaluates with the run's own "
                    "config.json; change what it measures with --config.eval.FIELD=VALUE")
        return first
    return f"--config={path}: {type(error).__name__}: {first_line(error)}"


def _current(flag_values: flags.FlagValues, flag: str) -> object | None:
    """The loaded config's value of the field `flag` sets (--config.a.b), if it has one."""
    try:
        node = flag_values.config
        for part in flag.removeprefix("--config.").split("."):
            node = node[part]
    except Exception:  # noqa: BLE001 (no config loaded, or no such field)
        return None
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def _whole(value: str) -> str | None:
    """A whole number near `value` (2 for '1.5'), or None where it is no number at all."""
    try:
        return str(max(1, round(float(value))))
    except (ValueError, OverflowError):
        return None


def _config_file_error(error: BaseException, path: str) -> str | None:
    """'--config=FILE:LINE: <what went wrong>' for an error the config file's own code
    raised (a syntax or import error, a misspelt field, get_config raising); None if the
    error did not come from the file."""
    line = _in_file(path, error)
    if line is None:
        return None
    where = f"--config={path}:{line}"
    field = _locked_field(error, path, line)
    if field is not None:
        hint = field_hint(field)
        return f"{where}: unknown config field config.{field}" + (f": {hint}" if hint else "")
    if isinstance(error, SyntaxError):
        return f"{where}: SyntaxError: {error.msg}"
    text = str(error).strip()
    if "Error whilst parsing config file:" in text:  # ml_collections: the traceback as text
        text = text.rsplit("\n", 1)[-1].strip()
        return f"{where}: {text}"
    first = first_line(text)
    return f"{where}: {type(error).__name__}: {first}"


def _in_file(path: str, error: BaseException) -> int | None:
    """The line of `path` where `error` was raised (its deepest frame in that file, or a
    SyntaxError's own line), or None if it was not raised by that file."""
    line = line_in_file(path, error)
    if line is None:  # rewrapped by ml_collections: the traceback survives as text
        real = os.path.realpath(path)
        found = re.findall(rf'File "{re.escape(path)}", line (\d+)', str(error)) or \
            re.findall(rf'File "{re.escape(real)}", line (\d+)', str(error))
        line = int(found[-1]) if found else None
    return line


def _locked_field(error: BaseException, path: str, line: int) -> str | None:
    """For a config file that sets a field no section has (`c.train.batch_sise = 3`): the
    field's dotted path, from the file's line; None for any other error."""
    text = str(error.args[0] if error.args else error)
    found = re.search(r'Key "(\w+)" does not exist and cannot be added since the config is '
                      r'locked', text)
    if not found:
        return None
    field = found.group(1)
    source = linecache.getline(path, line)
    section = re.search(rf"\.(\w+)\s*(?:\.|\[['\"]){field}\b", source)
    from jaxae.config import SECTIONS

    return f"{section.group(1)}.{field}" if section and section.group(1) in SECTIONS else field


def _config_path_hint(path: str) -> str:
    """For a --config that names no file: the shipped config of that name ('default' ->
    ': did you mean --config=configs/default.py?'), else ''."""
    import jaxae.configs  # the shipped configs' folder (configs/ of a clone)

    stem = os.path.splitext(os.path.basename(path))[0]
    shipped = os.path.join(jaxae.configs.__path__[0], f"{stem}.py")
    if os.path.isfile(path) or not stem or not os.path.isfile(shipped):
        return ""
    return f": did you mean --config={shortest_path(shipped)}?"


def _field_flag_hint(name: str, flag_values: flags.FlagValues) -> str:
    """For a flag that is no flag but a config field's name (--num_epochs): the override
    that sets it (': did you mean --config.train.num_epochs?'), else ''."""
    from jaxae.config import base_config

    config = flag_values["config"].value if "config" in flag_values else None
    if not isinstance(config, ml_collections.ConfigDict):  # not loaded: the base config's
        config = base_config()
    paths = [key for key in config.keys() if key == name and
             not isinstance(config[key], ml_collections.ConfigDict)]
    paths += [f"{section}.{name}" for section in config.keys()
              if isinstance(config[section], ml_collections.ConfigDict)
              and name in config[section]]
    return f": did you mean {' or '.join(f'--config.{p}' for p in paths)}?" if paths else ""
