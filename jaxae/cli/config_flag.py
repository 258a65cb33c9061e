"""`--config=FILE` and its `--config.FIELD=VALUE` overrides for train.py (ml_collections,
locked), evaluate.py's `--config.eval.FIELD=VALUE`, and the names of the model and task a
config gives made findable from anywhere, so that a run's config.json names the same code."""

from __future__ import annotations

import ast
import difflib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import ml_collections
from absl import flags
from ml_collections import config_flags
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

from jaxae.cli.arguments import config_files, flag_value, none_overrides, override_paths
from jaxae.cli.config_errors import config_error, field_hint, unknown_field
from jaxae.cli.exits import EXIT_ERROR


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_ERROR)


_DEFAULT_CONFIG: list[str] = []  # the entry point's default config file, once defined


def define_config_flag(default: str | None, flag_values: flags.FlagValues = flags.FLAGS,
                       argv: list[str] | None = None) -> None:
    """`--config=FILE` with `--config.FIELD=VALUE` overrides (ml_collections), locked.

    A misspelt override, or a config file that does not load, is one error line (file and
    line for the file's own mistakes). The config file's own folder goes on the import path
    (as a script's does), and the current directory at its end (not with `python -P`), so a
    config imports the module that sits beside it from anywhere, and a file in the current
    directory shadows no installed module; a folder that is a package (it has an
    __init__.py, as jaxae's configs/) is left to imports that name the package.
    """
    if os.getcwd() not in sys.path and not sys.flags.safe_path:  # (python -P: not at all)
        sys.path.append(os.getcwd())  # last: a file there shadows no module installed
    if default is not None:
        _DEFAULT_CONFIG.append(default)
    named = flag_value(sys.argv if argv is None else argv, "config") or default
    folder = os.path.dirname(os.path.abspath(named.split(":", 1)[0])) if named else None
    if folder and folder not in sys.path and \
            not os.path.isfile(os.path.join(folder, "__init__.py")):
        sys.path.insert(1, folder)
    try:
        config_flags.DEFINE_config_file("config", default, "Experiment config file.",
                                        flag_values=flag_values, lock_config=True,
                                        sys_argv=argv)
    except Exception as e:  # noqa: BLE001 (ml_collections loads the file here for overrides)
        given = sys.argv if argv is None else argv
        _fail(config_error(e, _config_argument(given, flag_values), given, flag_values))
    parser = flag_values["config"].parser
    load = parser.parse

    def load_with_entry_fields(path: str) -> Any:
        config = load(path)
        if isinstance(config, ml_collections.ConfigDict) and \
                all(section in config for section, _ in OPEN_SECTIONS):
            _add_overridden_fields(config, sys.argv if argv is None else argv,
                                   path.split(":", 1)[0])
        return config

    parser.parse = load_with_entry_fields


def _config_argument(argv: Sequence[str], flag_values: flags.FlagValues) -> str:
    """The --config file named on the command line (the flag's default otherwise, also
    where the flag failed to load it), without a ':argument' for get_config."""
    named = flag_value(argv, "config")
    if named is not None:
        return named.split(":", 1)[0]
    if "config" not in flag_values:  # its default failed to load as it was defined
        return _DEFAULT_CONFIG[-1] if _DEFAULT_CONFIG else "the default config"
    return str(flag_values["config"].default_as_str).strip("'\"")


def default_config_note(argv: Sequence[str] | None = None) -> str | None:
    """The line an entry point prints when it runs its default config because no --config
    was given (a user may not know it has one); None when --config was given."""
    if flag_value(sys.argv if argv is None else argv, "config") is not None or \
            not _DEFAULT_CONFIG:
        return None
    return f"no --config given: the default, --config={_DEFAULT_CONFIG[-1]}"


def use_help_of(doc: str | None, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """--help for a command whose flags a module of jaxae defines (`jaxae-train`, and the
    train.py that calls it): `doc` as its text, its flags listed as the script's own (absl
    shows __main__'s docstring and the flags its module defines)."""
    import __main__

    __main__.__doc__ = doc
    main_module = sys.argv[0]
    for module, defined in flag_values.flags_by_module_dict().items():
        if module.startswith("jaxae.cli."):  # the command's flags, and --config
            for flag in defined:
                flag_values.register_key_flag_for_module(main_module, flag)


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """absl's flag parsing (app.run's flags_parser), with a wrong flag as one error line.

    ml_collections reports a misspelt --config.FIELD as a bare AttributeError, and runs the
    config file as the flags are parsed: its syntax errors, import errors, misspelt fields
    and exceptions, and a get_config() that returns something else than a config, become
    one `error: --config=FILE:LINE: ...` line.
    """
    parsed, unset = none_overrides(argv)
    files = config_files(argv)
    if "config" in flag_values and _is_config_file_flag(flag_values["config"]) and \
            len(files) > 1:
        _fail(f"--config is given {len(files)} times ({', '.join(files)}): give one config "
              "file, and change its fields with --config.SECTION.FIELD=VALUE")
    try:
        rest = flag_values(parsed)
        if "config" in flag_values and _is_config_file_flag(flag_values["config"]):
            config = flag_values.config
            if hasattr(config, "_ReportError"):  # ml_collections' stand-in for a failed load
                config.get("seed")
            _check_config_type(config, _config_argument(argv, flag_values))
        if unset and "config" in flag_values:
            _set_to_none(flag_values.config, unset, _config_argument(argv, flag_values))
        return rest
    except Exception as e:  # noqa: BLE001 (any error of the config file is one line)
        message = config_error(e, _config_argument(argv, flag_values), argv, flag_values) \
            if "config" in flag_values else str(e)
    _fail(message)


def _check_config_type(config: object, path: str) -> None:
    """A config file's get_config() must return the ConfigDict of jaxae.config.base_config()
    (changed), not a dict or None."""
    from jaxae.config import SECTIONS

    if isinstance(config, ml_collections.ConfigDict) and all(s in config for s in SECTIONS):
        return
    what = (f"a {type(config).__name__}" if not isinstance(config, ml_collections.ConfigDict)
            else "a ConfigDict without the sections " + ", ".join(
                s for s in SECTIONS if s not in config))
    _fail(f"--config={path}: get_config() returned {what}, not a jaxae config: start from "
          "jaxae.config.base_config() (or a shipped config's get_config()) and change its "
          "fields")


def _is_config_file_flag(flag: flags.Flag) -> bool:
    """Whether --config names a file (train.py), not a dict of fields (evaluate.py)."""
    return isinstance(flag.parser, ConfigFileFlagParser)


# the sections open to the fields of the entry they name (a model's, a task's, a likelihood's,
# a data set loader's)
OPEN_SECTIONS = (("model", "name"), ("task", "name"), ("objective", "likelihood"),
                 ("data", "name"))


def _add_overridden_fields(config: ml_collections.ConfigDict, argv: Sequence[str],
                           path: str) -> None:
    """Adds to the loaded config's model, task, objective and data sections, at the entry's
    default, each field that a --config.SECTION.FIELD override names and the config file
    left unset, so that every field a model, a task, a likelihood or a data set's loader
    declares (one's own too) can be overridden; a field the entry does not declare is one
    line naming the fields it does."""
    registries = _registries()
    for section, name_field in OPEN_SECTIONS:
        fields = [p.split(".", 1)[1] for p in override_paths(argv)
                  if p.startswith(f"{section}.") and p.count(".") == 1]
        whole = _whole_section(argv, section)
        if whole is not None and (loose := [f for f in fields if f not in whole]):
            _fail(f"--config.{section}.{loose[0]}: --config.{section}=... replaces the whole "
                  f"section, which then holds only {', '.join(whole) or 'nothing'}: give "
                  f"{loose[0]} inside it, --config.{section}=\"{{..., '{loose[0]}': VALUE}}\"")
        missing = [f for f in fields if f not in config[section]]
        name = flag_value(argv, f"config.{section}.{name_field}") or \
            config[section].get(name_field)
        if missing and isinstance(name, str):  # (no name: its own error follows)
            _add_fields(config, section, registries[section], name, missing, path)


def _whole_section(argv: Sequence[str], section: str) -> dict | None:
    """The fields of a section given whole, --config.SECTION="{'name': ..., ...}"; None where
    no flag gives it so (or not as a dict: its own error follows)."""
    whole = flag_value(argv, f"config.{section}")
    try:
        given = ast.literal_eval(whole) if whole else None
    except (ValueError, SyntaxError):
        return None
    return given if isinstance(given, dict) else None


def _add_fields(config: ml_collections.ConfigDict, section: str, registry: Any, name: str,
                missing: list[str], path: str) -> None:
    """`_add_overridden_fields` for one section, whose entry `registry` names `name`."""
    from jaxae.config import TASK_FROM_DATA, base_config
    from jaxae.kernels import conv
    from jaxae.models.initializers import DEFAULT_SCHEME
    from jaxae.models.registry import FROM_DATA, settable_fields
    from jaxae.registry import RegistryError, parameters

    field_of_name = dict(OPEN_SECTIONS)[section]
    name = _located(name, os.path.dirname(os.path.abspath(path)),  # as loaded_config
                    f"{section}.{field_of_name}")
    try:
        entry = registry.get(name)
    except (RegistryError, ImportError, OSError):
        return  # the name's own error comes with the rest of the config's checks
    declared = parameters(entry)
    builder = {}  # options the model builder reads, at the builder's defaults
    if section == "model":
        builder = {"init": DEFAULT_SCHEME,
                   **({"conv": conv.DEFAULT_IMPLEMENTATION} if "conv" in declared else {})}
    for field in missing:
        kind = _declared_type(entry, field)
        if section == "task" and field in TASK_FROM_DATA:
            _fail(f"--config.task.{field}: a task's {field} follows "
                  f"{TASK_FROM_DATA[field]}: set that instead")
        if section == "model" and field in FROM_DATA and field in declared:
            _fail(f"--config.model.{field}: a model's {field} comes from the data set: leave "
                  "it out")
        if field in builder:
            default = builder[field]
        elif field not in declared and section in ("objective", "data"):  # and their own
            own = sorted(base_config()[section])
            extra = sorted(set(declared) - set(own))
            close = difflib.get_close_matches(field, own + extra, n=1)
            _fail(f"--config.{section}.{field}: config.{section} has no field {field!r}; "
                  + (f"did you mean {close[0]!r}? " if close else "")
                  + f"its fields are {', '.join(own)}, and those the {registry.kind} "
                  f"{name!r} declares ({', '.join(extra) or 'none'})"
                  + ("; a loss takes no fields: give it its constants in its own file"
                     if section == "objective" else ""))
        elif field not in declared:
            settable = settable_fields(entry) if section == "model" else \
                sorted({field_of_name, *declared} - set(TASK_FROM_DATA))
            close = difflib.get_close_matches(field, settable, n=1)
            _fail(f"--config.{section}.{field}: {registry.kind} {name!r} has no field "
                  f"{field!r}; " + (f"did you mean {close[0]!r}? " if close else "")
                  + f"its fields are {', '.join(settable) or 'none'}")
        elif (default := declared[field].default) is None and kind is not None:
            default = ml_collections.config_dict.placeholder(kind)  # None, of that type
        elif default is declared[field].empty or default is None or callable(default):
            _fail(f"--config.{section}.{field}: {path} does not set config.{section}.{field} "
                  f"and {registry.kind} {name!r} gives it no default to override: set it in "
                  "the config file")
        elif kind is float and isinstance(default, int) and not isinstance(default, bool):
            default = float(default)  # `beta: float = 1` takes 0.5
        with config.unlocked():
            config[section][field] = default


def _declared_type(entry: Any, field: str) -> type | None:
    """The plain type (tuple, int, float, str or bool) that `entry` annotates `field` with,
    `X | None` read as X; None when it annotates none of these."""
    import types
    import typing

    try:
        kind = typing.get_type_hints(entry).get(field)
    except Exception:  # noqa: BLE001 (annotations that do not resolve: no type to offer)
        return None
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        kind = options[0] if len(options) == 1 else None
    kind = typing.get_origin(kind) or kind
    if kind is list:
        return tuple
    return kind if kind in (tuple, int, float, str, bool) else None


def _may_be_unset(config: ml_collections.ConfigDict, path: str, config_file: str) -> bool:
    """Whether the field at `path` may be None: its default is None, in the base config
    (data.train_size, train.stop_after_steps, ...) or, for a field of a model, a task, a
    likelihood or a data set's loader, in what the entry declares (`features: tuple | None
    = None`; its file, named relative to the `config_file`, found beside it)."""
    from jaxae.config import base_config
    from jaxae.registry import CodeName, parameters

    section, _, field = path.partition(".")
    base = base_config()
    if section in base and isinstance(base[section], ml_collections.ConfigDict) and \
            field in base[section]:
        return base[section][field] is None
    if section not in dict(OPEN_SECTIONS) or "." in field:
        return False
    name = config[section].get(dict(OPEN_SECTIONS)[section])
    code = CodeName.parse(name) if isinstance(name, str) else None
    if code is not None and code.file and not os.path.isabs(code.file):
        beside = os.path.join(os.path.dirname(os.path.abspath(config_file)), code.file)
        name = code.elsewhere(beside) if os.path.isfile(beside) else name
    try:
        declared = parameters(_registries()[section].get(name)).get(field)
    except Exception:  # noqa: BLE001 (a name that does not resolve: its own error follows)
        return False
    return declared is not None and declared.default is None


def _registries() -> dict[str, Any]:
    """The registry of each of OPEN_SECTIONS' entries."""
    from jaxae.data import DATASETS
    from jaxae.models import MODELS
    from jaxae.objectives import LIKELIHOODS
    from jaxae.tasks import TASKS

    return {"model": MODELS, "task": TASKS, "objective": LIKELIHOODS, "data": DATASETS}


def _set_to_none(config: ml_collections.ConfigDict, paths: Sequence[str],
                 config_file: str) -> None:
    """Sets each field to None, as `--config.X=None` asks; one error line for a field that
    does not exist or does not take None (one whose default is None: its None means "not
    set", e.g. data.train_size, every image)."""
    for path in paths:
        *parents, leaf = path.split(".")
        section = config
        for name in parents:
            section = section.get(name) if isinstance(section, ml_collections.ConfigDict) \
                else None
        if not isinstance(section, ml_collections.ConfigDict) or leaf not in section:
            hint = field_hint(path)
            _fail(f"unknown config field config.{path}" + (f": {hint}" if hint else ""))
        if not _may_be_unset(config, path, config_file):
            _fail(f"--config.{path}=None: config.{path} needs a value (it is "
                  f"{section[leaf]!r}); None unsets only the fields whose default is None, "
                  "such as config.data.train_size")
        with config.unlocked():
            section[leaf] = None


def loaded_config(flag_values: flags.FlagValues = flags.FLAGS) -> ml_collections.ConfigDict:
    """The --config flag's config, with each model or task name made findable from anywhere,
    so that the workdir's config.json names the same code: a relative `file.py:Name` made
    absolute (beside the config file, else in the current directory; a file in both places is
    an error), and a name registered by the user's own module made `its_file.py:name`. A
    data path's leading `~` is made the home folder (`config.expand_home`)."""
    from jaxae.config import expand_home, fill_defaults

    config = flag_values.config
    fill_defaults(config)
    expand_home(config)
    locate_code_names(config, config_flags.get_config_filename(flag_values["config"]))
    return config


def locate_code_names(config: ml_collections.ConfigDict, config_file: str | None) -> None:
    """Make each field that names code (config.CODE_FIELDS: the model, the task, the loss,
    the likelihood, the data set) findable from anywhere (`loaded_config`), in place: a
    relative `file.py:Name` beside `config_file` (else in the current directory) made
    absolute, a name registered by the user's own module made `its_file.py:name`; a name
    that finds nothing is one line on stderr and exit 1."""
    from jaxae.config import CODE_FIELDS
    from jaxae.registry import locatable_name

    beside = os.path.dirname(os.path.abspath(config_file)) if config_file else os.getcwd()
    for code in CODE_FIELDS:
        section = config[code.section]
        if code.field not in section:
            _fail(f"config.{code.section} has no {code.field}: set config.{code.path} to one "
                  f"of {', '.join(code.registry.names())}, or to 'path/to/file.py:Class'")
        if not isinstance(section[code.field], str):
            continue  # (its own error comes with the config's checks)
        name = locatable_name(code.registry, _located(section[code.field], beside, code.path))
        if name != section[code.field]:
            with config.unlocked():
                section[code.field] = name


def _located(name: str, beside: str, path: str) -> str:
    """config.PATH (a model's name, say) with the relative file it names ('my_models.py:Tiny')
    made absolute: beside the config file, else in the current directory; refused when both
    hold a different file, or neither holds one. Other names as they are."""
    from jaxae.registry import CodeName, close_file

    code = CodeName.parse(name)
    if code.file is None or os.path.isabs(code.file):
        return name
    where = code.file
    near, here = os.path.join(beside, where), os.path.abspath(where)
    if os.path.isfile(near) and os.path.isfile(here) and \
            os.path.realpath(near) != os.path.realpath(here):
        _fail(f"config.{path}: {where!r} is both {near} (beside the config) and "
              f"{here} (in the current directory): name the one you mean by its absolute "
              "path")
    if not os.path.isfile(near) and not os.path.isfile(here):
        _fail(f"config.{path}: {where!r} is neither beside the config ({near}) nor in "
              f"the current directory ({here}): give its path from one of them, or an "
              "absolute one" + next((f"; did you mean {close!r}?" for place in (near, here)
                                    if (close := close_file(place))), ""))
    return code.elsewhere(os.path.abspath(near if os.path.isfile(near) else here))


def define_eval_overrides(flag_values: flags.FlagValues = flags.FLAGS,
                          argv: list[str] | None = None) -> None:
    """`--config.eval.FIELD=VALUE` (and the data's location) for evaluate.py: the fields
    that change what is measured, not the trained model (jaxae.evaluation.evaluate.
    OVERRIDABLE). Any other field is one error line."""
    from jaxae.evaluation.evaluate import OVERRIDABLE, overridable_config, overridable_text
    from jaxae.training.workdir import OTHER_DATA

    try:
        config_flags.DEFINE_config_dict("config", overridable_config(), "Evaluation fields to "
                                        "change: --config.eval.FIELD=VALUE.",
                                        flag_values=flag_values, lock_config=True,
                                        sys_argv=argv)
    except (AttributeError, KeyError) as e:
        unknown = unknown_field(e, argv)
        field = unknown.removeprefix("unknown config field config.").split(":")[0]
        section = field.split(".")[0]
        if section in OVERRIDABLE:  # a misspelt field of a section it takes (eval.iwae_sampl)
            fields = ", ".join(overridable_config()[section].keys())
            _fail(unknown if ":" in unknown else f"{unknown}: config.{section} has {fields}")
        other_data = f" ({OTHER_DATA})" if section == "data" else ""
        _fail(f"evaluate.py cannot change config.{field}: it takes only "
              f"{overridable_text()} (e.g. --config.eval."
              "iwae_samples='(1, 50)'); the rest is the trained run's (its config.json), "
              f"so train another run to change it{other_data}")


def eval_overrides(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS
                   ) -> dict[str, Any]:
    """{'eval.iwae_samples': (1, 50), ...}: the fields given as --config.X on the command
    line (`--config.X=V` or `--config.X V`), with the values ml_collections parsed."""
    return {**config_flags.get_override_values(flag_values["config"]),
            **dict.fromkeys(none_overrides(argv)[1])}  # ml_collections keeps what it parsed
