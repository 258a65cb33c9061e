"""Named registries of models, tasks, losses and likelihoods, open to code outside jaxae.

A config names what it uses by a registered name (`"conv_vae"`), or by where it lives:
`"mypkg.models:DeeperVAE"` (an importable module) or `"path/to/my_models.py:DeeperVAE"` (a
file, imported once, and run again where it changed since: `_as_on_disk`). Either way the
name is all a workdir's `config.json` needs to find the same code again, so `evaluate.py`
reloads a run of a user's model with no wrapper.

Entries are callables (classes or factory functions). `build` calls one with the options of
its config section that it declares as parameters; `check_options` says which options no
parameter takes, so a misspelt field is an error rather than ignored.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import sysconfig
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from jaxae.messages import first_line

if TYPE_CHECKING:
    from ml_collections import ConfigDict

Entry = Callable[..., Any]


class CodeName(NamedTuple):
    """A config's name for code, in its parts: a registered name ('conv_vae': no `where`), a
    module's attribute ('mypkg.models:DeeperVAE') or a file's ('path/my_models.py:DeeperVAE')."""

    where: str  # '' for a registered name; else a dotted module or a .py file's path
    attribute: str

    @classmethod
    def parse(cls, name: str) -> CodeName:
        where, _, attribute = name.rpartition(":")
        return cls(where, attribute)

    @property
    def file(self) -> str | None:
        """The .py file it names; None for a registered or dotted name."""
        return self.where if self.where.endswith(".py") else None

    def elsewhere(self, where: str) -> str:
        """The name of the same attribute in `where` (a file's absolute path, say)."""
        return f"{where}:{self.attribute}"

    def __str__(self) -> str:
        return self.elsewhere(self.where) if self.where else self.attribute


class RegistryError(ValueError):
    """A name that resolves to nothing, or options its entry does not take."""


class Registry:
    """Names -> callables of one kind ("model", "task", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._origins: dict[str, str] = {}  # name -> the module that registered it
        self._files: dict[str, str | None] = {}  # name -> the file that defined its entry

    def register(self, name: str) -> Callable[[Entry], Entry]:
        """Decorator: `@MODELS.register("my_vae")` on a class or factory function (or
        `MODELS.register("my_vae")(entry)`); the module doing it is kept as the name's
        origin, which `locatable_name` records. The same definition run again (a notebook
        cell, a module reloaded, a file imported under a second module name) replaces the
        entry; another one under the name is refused."""

        def add(entry: Entry) -> Entry:
            file = _source_file(entry)  # now: a module of the same name may replace it later
            origin = sys._getframe(1).f_globals.get("__name__", "")
            if origin_file := getattr(sys.modules.get(origin), "__file__", None):
                _remember_run_source(origin_file)  # the source running now, registering it
            if name in self._entries and not (self._entries[name] is entry or (
                    _qualname(self._entries[name]) == _qualname(entry)
                    and self._files.get(name) == file)):
                raise RegistryError(f"a {self.kind} named {name!r} is registered already "
                                    f"({_where(self._entries[name])}): register yours under "
                                    "another name, or name it by its file "
                                    "('path/to/file.py:Class' needs no registration)")
            self._entries[name] = entry
            self._files[name] = file
            self._origins[name] = origin
            return entry

        return add

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def registered(self, name: str) -> Entry | None:
        """The entry registered under exactly `name`, or None (nothing is imported)."""
        return self._entries.get(name)

    def origin(self, name: str) -> str:
        """The name of the module that registered `name` ('' if unknown)."""
        return self._origins.get(name, "")

    def own(self, name: str) -> bool:
        """Whether `name` is one of jaxae's own entries (registered by a jaxae module)."""
        origin = self.origin(name)
        return name in self._entries and is_jaxae_module(origin)

    @staticmethod
    def defined_by_jaxae(entry: Entry) -> bool:
        """Whether `entry` (a class or function, or a partial of one) is jaxae's own code,
        however it was named ('jaxae.models.autoencoders:DenseAE' as well as 'dense_ae')."""
        return is_jaxae_module(getattr(getattr(entry, "func", entry), "__module__", "") or "")

    def get(self, name: str) -> Entry:
        """The entry registered as `name`, or the object `module:attribute` / `file.py:attribute`
        names: the module's attribute, else a name the import registered (never one of
        jaxae's own entries: 'my_models.py:vae' is the file's `vae`, not jaxae's)."""
        if name in self._entries:
            module = sys.modules.get(self.origin(name))
            if getattr(module, "__file__", None) and not self.own(name):  # a user's module
                _as_on_disk(module, module.__file__)  # edited since it ran: run again
            return self._entries[name]
        if ":" not in name:
            same_letters = [n for n in self._entries if n.lower() == name.lower()]
            close = same_letters or difflib.get_close_matches(name, self._entries, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}: {hint}choose one of {', '.join(self._entries)}, "
                f"or name your own as 'module:Class' or 'path/to/file.py:Class' (a name "
                f"your module registers counts once your config file imports it)")
        where, attribute = CodeName.parse(name)
        module = import_location(where, self.kind)
        if hasattr(module, attribute):
            return _not_pythons_own(getattr(module, attribute), where, name, self.kind)
        origin = self.origin(attribute)  # a name the import registered, in it or below it
        if attribute in self._entries and (not self.own(attribute) or origin == module.__name__
                                           or origin.startswith(module.__name__ + ".")):
            return self._entries[attribute]
        defined = sorted(n for n, v in vars(module).items() if not n.startswith("_")
                         and callable(v) and getattr(v, "__module__", None) == module.__name__)
        raise RegistryError(f"{self.kind} {name!r}: {where} defines no {attribute!r}; it "
                            f"defines {', '.join(defined) or 'no class or function'}")


def is_jaxae_module(module: str) -> bool:
    """Whether the dotted module name is jaxae or one of its modules."""
    return module == "jaxae" or module.startswith("jaxae.")


def display_name(name: str) -> str:
    """How titles and logs name an entry: 'DeeperVAE' for '/home/me/my_models.py:DeeperVAE'
    or 'mypkg.models:DeeperVAE', a registered name (or a TFDS name with its version,
    'celeb_a/align:2.1.0') as it is."""
    code = CodeName.parse(name)
    in_code = code.file is not None or (
        code.where and all(part.isidentifier() for part in code.where.split(".")))
    return code.attribute if in_code and code.attribute.isidentifier() else name


def import_location(where: str, kind: str = "code") -> Any:
    """Imports a dotted module name, or a `.py` file by its path (once per file, again where
    it changed since: a file that
    is imported already, e.g. by the config that registers its models, is that module)."""
    if where.endswith(".py"):
        path = os.path.abspath(where)
        if not os.path.isfile(path):
            close = close_file(path)
            named = None if close is None else os.path.join(os.path.dirname(where),
                                                            os.path.basename(close))
            raise RegistryError(
                f"{kind} file {where!r} does not exist"
                + (f" (looked for {path})" if path != where else "")
                + (f": did you mean {named!r}?" if named else ""))
        return _as_on_disk(_imported_file(path) or _import_file(path), path)
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        if e.name != where.split(".")[0] and e.name != where:
            raise  # the module exists but something it imports does not: the real error
        raise RegistryError(f"{kind} module {where!r} cannot be imported ({e}): install it or "
                            "put the folder that holds it on PYTHONPATH, or name its file "
                            "instead ('path/to/file.py:Class')") from None


def close_file(path: str) -> str | None:
    """The .py file beside the missing `path` whose name is closest to its name, or None
    (none close, or a folder that cannot be read)."""
    folder = os.path.dirname(path)
    try:
        nearby = [f for f in os.listdir(folder) if f.endswith(".py")]
    except OSError:  # no such folder, or not readable: nothing to suggest
        return None
    close = difflib.get_close_matches(os.path.basename(path), nearby, n=1)
    return os.path.join(folder, close[0]) if close else None


def _imported_file(path: str) -> Any | None:
    """The module already imported from the file at `path`, if any (only modules of the
    same file name are resolved on disk)."""
    base, real = os.path.basename(path), os.path.realpath(path)
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and os.path.basename(file) == base and os.path.realpath(file) == real:
            return module
    return None


def locatable_name(registry: Registry, name: str) -> str:
    """`name` as a config.json must record it for another process to find the same code: a
    name registered by a module of the user's becomes 'path/to/that_module.py:name', which
    imports that module, and so registers the name, wherever `evaluate.py` runs; jaxae's
    own names, and names registered where no file can be named (`__main__`), stay as they
    are."""
    if ":" in name or registry.registered(name) is None or registry.own(name):
        return name
    origin = registry.origin(name)
    module = sys.modules.get(origin)
    if origin in ("", "__main__"):
        return name
    file = getattr(module, "__file__", None)
    return str(CodeName(os.path.abspath(file), name)) if file else name


def same_code(saved: str, name: str, registry: Registry) -> bool:
    """Whether a run's recorded code name `saved` and a config's `name` name the same code:
    equal, a file recorded by its path relative to the current folder and its absolute
    form, a short name recorded before names were made locatable and its located form
    ('path/to/my_models.py:tiny_dense' for 'tiny_dense'; not where `registry` holds `saved`
    as one of jaxae's own: 'my_models.py:vae' is not jaxae's 'vae'), or the same file moved
    (`moved`)."""
    short = ":" not in saved and CodeName.parse(name).attribute == saved and \
        not registry.own(saved)
    recorded = CodeName.parse(saved)  # a file recorded by a relative path (a loss's, once)
    relative = recorded.file is not None and not os.path.isabs(recorded.file) and \
        recorded.elsewhere(os.path.abspath(recorded.file)) == name
    return saved == name or short or relative or moved(saved, name)


def moved(saved: str, name: str) -> bool:
    """Whether `name` ('new/place/my_models.py:Class') names the code of `saved`
    ('old/place/my_models.py:Class') in its new place: the same file name and attribute,
    where the recorded file is gone and the new one is there (a project folder moved)."""
    before, after = CodeName.parse(saved), CodeName.parse(name)
    return (before.file is not None and after.file is not None
            and before.attribute == after.attribute
            and os.path.basename(before.file) == os.path.basename(after.file)
            and not os.path.exists(before.file) and os.path.isfile(after.file))


def missing_file(name: str) -> str | None:
    """The file a located name ('path/to/my_models.py:Class') names, where it is gone; else
    None (a registered or dotted name, or a file that is there)."""
    file = CodeName.parse(name).file
    return file if file is not None and not os.path.isfile(file) else None


def _package_of(path: str) -> tuple[str, str] | None:
    """(the folder above its top package, 'pkg.sub.module') for a file inside a package (its
    folder and those above with an __init__.py), else None."""
    folder, parts = os.path.dirname(path), [os.path.splitext(os.path.basename(path))[0]]
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        parts.insert(0, os.path.basename(folder))
        folder = os.path.dirname(folder)
    return (folder, ".".join(parts)) if len(parts) > 1 else None


@functools.cache
def _import_file(path: str) -> Any:
    """The module of the file at `path`, run once (a file of a package is imported as the
    package's module, so its relative imports work; a loose file's folder joins the end of
    the import path, so it imports the modules beside it, where no installed module has
    their name); an error while it runs (a syntax error, a failed import) is a
    RegistryError naming the file's line."""
    if package := _package_of(path):
        root, dotted = package
        if root not in sys.path:
            sys.path.append(root)
        try:
            module = importlib.import_module(dotted)
        except Exception as e:  # noqa: BLE001 (the user's file may raise anything)
            raise _run_error(path, e) from None
        if os.path.realpath(getattr(module, "__file__", "")) == os.path.realpath(path):
            return module  # (another package of that name: the file is run on its own below)
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.append(folder)
    stem = os.path.splitext(os.path.basename(path))[0]
    if _importable_as(stem, path):  # `import my_models` later finds this same module
        try:
            return importlib.import_module(stem)
        except Exception as e:  # noqa: BLE001 (the user's file may raise anything)
            raise _run_error(path, e) from None
    name = "jaxae_user_" + stem
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look it up
    if (source := _read(path)) is not None:
        _RUN_SOURCES[os.path.realpath(path)] = source  # as run (it may change later)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 (the user's file may raise anything)
        del sys.modules[name]
        raise _run_error(path, e) from None
    return module


_RUN_SOURCES: dict[str, bytes] = {}  # {a user's file: its source as this process last ran it}


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:  # a source file: small
            return f.read()
    except OSError:
        return None


_STARTED = time.time()  # this module's import: before any module of the user's that uses it


def _remember_run_source(path: str) -> None:
    """Records the source of a user's module as it runs (it registers an entry now), if no
    run of it is recorded yet."""
    real = os.path.realpath(path)
    if real.endswith(".py") and real not in _RUN_SOURCES and (source := _read(real)):
        _RUN_SOURCES[real] = source


def _maybe_edited_since_run(module: Any, path: str) -> bool:
    """Whether the file at `path` may no longer be the source `module` ran, where jaxae saw
    it run neither by importing it nor by its registering an entry: changed after jaxae was
    imported (a module using jaxae imports it first; a file written after that and then
    imported is run again once, harmlessly), or other than its .pyc records."""
    try:
        stat = os.stat(path)
    except OSError:
        return False
    if stat.st_mtime > _STARTED:  # (a .pyc another process rewrote since would hide it)
        return True
    try:
        with open(module.__cached__, "rb") as f:
            header = f.read(16)
    except (AttributeError, OSError, TypeError):
        return False
    flags, mtime, size = (int.from_bytes(header[i:i + 4], "little") for i in (4, 8, 12))
    return len(header) == 16 and flags == 0 and (mtime, size) != (
        int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF)


def _as_on_disk(module: Any, path: str) -> Any:
    """`module`, run again where its file has changed since this process ran it (a notebook
    whose model file was edited between two trainings): otherwise a run would train the
    class as first imported while recording the edited file's hash as its code. The
    running script (__main__) is never run again: its classes stay as first defined."""
    real = os.path.realpath(path)
    spec = getattr(module, "__spec__", None)
    if not real.endswith(".py") or spec is None or module.__name__ == "__main__":
        return module  # (a .pyc alone, an extension: not a source to compare)
    source = _read(real)
    if source is None:
        return module
    ran = _RUN_SOURCES.get(real)
    if ran == source or (ran is None and not _maybe_edited_since_run(module, real)):
        _RUN_SOURCES[real] = source  # first seen, and not edited since it was imported
        return module
    try:
        spec.loader.exec_module(module)  # as importlib.reload does, by its path
    except Exception as e:  # noqa: BLE001 (the user's file may raise anything)
        raise _run_error(path, e) from None
    _RUN_SOURCES[real] = source
    return module


def source_as_run(path: str) -> bytes | None:
    """The source of the user's file at `path` as this process last ran it (None: not run
    by jaxae's imports, or not seen)."""
    return _RUN_SOURCES.get(os.path.realpath(path))


def _importable_as(stem: str, path: str) -> bool:
    """Whether `import <stem>` imports the file at `path` (not another module of its name)."""
    if not stem.isidentifier():
        return False
    try:
        spec = importlib.util.find_spec(stem)
    except (ImportError, ValueError):
        return False
    origin = getattr(spec, "origin", None)
    return bool(origin) and os.path.realpath(origin) == os.path.realpath(path)


def _run_error(path: str, e: Exception) -> RegistryError:
    """'path:line: Type: message' for an error raised while the file at `path` ran."""
    line = line_in_file(path, e)
    text = e.msg if isinstance(e, SyntaxError) else first_line(e)
    return RegistryError(f"{path}{f':{line}' if line else ''}: {type(e).__name__}: {text}")


def line_in_file(path: str, error: BaseException) -> int | None:
    """The line of the file at `path` where `error` was raised: a SyntaxError's own line in
    it, else the deepest frame of its traceback in that file; None if neither."""
    real = os.path.realpath(path)
    if isinstance(error, SyntaxError) and error.filename and \
            os.path.realpath(error.filename) == real:
        return error.lineno
    line, tb = None, error.__traceback__
    while tb is not None:
        if os.path.realpath(tb.tb_frame.f_code.co_filename) == real:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _source_file(entry: Entry) -> str | None:
    """The file of the module that defines `entry` (None for a notebook's or a shell's)."""
    module = sys.modules.get(getattr(entry, "__module__", None) or "")
    return getattr(module, "__file__", None)


def _where(entry: Entry) -> str:
    target = _called(entry)
    return f"{getattr(target, '__module__', '?')}.{_qualname(target)}"


def _called(entry: Entry) -> Any:
    """What `entry` calls: a partial's function (a partial's own text holds addresses,
    other each time its module runs)."""
    while isinstance(entry, functools.partial):
        entry = entry.func
    return entry


def _qualname(entry: Entry) -> str:
    """The qualified name of what `entry` calls (an instance's: its class's)."""
    entry = _called(entry)
    return str(getattr(entry, "__qualname__", None) or type(entry).__qualname__)


def _in_stdlib_folder(path: str) -> bool:
    """Whether the file at `path` is one of Python's standard library (its folder, less the
    installed packages some interpreters keep inside it)."""
    paths = sysconfig.get_paths()
    real = os.path.realpath(path)
    inside = [os.path.join(os.path.realpath(paths[k]), "") for k in ("stdlib", "platstdlib")]
    packages = [os.path.join(os.path.realpath(paths[k]), "") for k in ("purelib", "platlib")]
    return real.startswith(tuple(inside)) and not real.startswith(tuple(packages))


def _not_pythons_own(entry: Any, where: str, name: str, kind: str) -> Any:
    """`entry`, unless the module named (`where`) is Python's standard library or builtins,
    which hold no model, task, loss, likelihood or data set: a run's config.json naming
    'os:system' or 'shutil:rmtree' would otherwise have it called with the section's fields.
    (A file or module of the user's is the user's code, whatever it holds.)"""
    top = where.split(".")[0]
    if (_in_stdlib_folder(where) if where.endswith(".py")
            else top in (*sys.stdlib_module_names, "builtins")):
        raise RegistryError(f"{kind} {name!r} is part of Python's standard library, not a "
                            f"{kind}: name a class or function of your own "
                            "('path/to/file.py:Class')")
    return entry


def parameters(entry: Entry) -> dict[str, inspect.Parameter]:
    """The keyword parameters `entry` accepts (a Flax module's fields, a function's arguments),
    without Flax's own `parent` and `name`."""
    signature = inspect.signature(entry)
    return {name: p for name, p in signature.parameters.items()
            if name not in ("parent", "name", "self")
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_options(entry: Entry, options: Iterable[str], allowed: Iterable[str], section: str,
                  label: str, listed: Iterable[str] | None = None, fix: str = "") -> None:
    """Raises RegistryError for the first option neither `entry` declares nor `allowed` lists;
    its message lists the fields `listed` (default: those `entry` declares, and then the
    suggestion comes from those and `allowed`; else from `listed` alone), then `fix`
    (starting "; ")."""
    declared = parameters(entry)
    for option in options:
        if option not in declared and option not in allowed:
            known = sorted(set(declared) | set(allowed))
            fields = sorted(declared if listed is None else listed)
            close = difflib.get_close_matches(option, known if listed is None else fields, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise RegistryError(f"config.{section}.{option} is not a field of {label}: {hint}"
                                f"its fields are {', '.join(fields) or 'none'}{fix}")


def build(entry: Entry, options: Mapping[str, Any] | ConfigDict) -> Any:
    """entry(**the options it declares); a required parameter the options leave unset is a
    MissingFields error naming it."""
    declared = parameters(entry)
    kwargs = {k: _plain(v) for k, v in options.items() if k in declared}
    if missing := [name for name, p in declared.items()
                   if p.default is inspect.Parameter.empty and name not in kwargs]:
        one = len(missing) == 1
        named = getattr(getattr(entry, "func", entry), "__name__", "the entry")  # a partial's
        raise MissingFields(f"{', '.join(missing)} {'is' if one else 'are'} unset and {named} "
                            f"gives {'it' if one else 'them'} no default: set "
                            f"{'it' if one else 'them'} in the config file (a --config flag "
                            "overrides only the fields a config file sets)")
    return entry(**kwargs)


class MissingFields(TypeError):
    """An entry's parameters without a default that its section leaves unset; the message
    starts with their names, so that a caller can put the section in front."""


def _plain(value: Any) -> Any:
    """Config values as plain Python: lists (JSON) become tuples, hashable as module fields."""
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    return value
