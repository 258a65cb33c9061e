"""A run's folder: checks before writing to it, its writer lock, and the files that describe
the run.

Nothing is written into a workdir before its run is accepted: `prepare_workdir` only reads
(the saved config.json) and probes (that the folders and files a run writes can be written);
the trainer then takes the lock, loads the data and restores the checkpoint, and only then
writes config.json.
"""

from __future__ import annotations

import copy
import difflib
import fcntl
import functools
import hashlib
import importlib
import importlib.metadata
import json
import os
import platform
import sys
from typing import NamedTuple

import jax
import ml_collections

import jaxae
from jaxae import config as config_lib
from jaxae.provenance import cpu_threads, git_commit, host_cpu_kind, source_sha256
from jaxae.registry import (
    CodeName,
    is_jaxae_module,
    locatable_name,
    missing_file,
    moved,
    same_code,
    source_as_run,
)
from jaxae.training import lock
from jaxae.training.checkpoints import (
    CHECKPOINTS,
    UNSAVEABLE_FIX,
    CheckpointMismatch,
    unsaveable_path,
)
from jaxae.training.files import write_error, write_whole
from jaxae.training.lock import LOCK_FILE

CONFIG_FILE = "config.json"
ENVIRONMENT_FILE = "environment.json"
METRICS_FILE = "metrics.jsonl"
# when each record's step was reached, and how long training and evaluations took: apart
# from metrics.jsonl, which holds the same bytes in every run of a config and seed
TIMINGS_FILE = "timings.jsonl"
RESUMES_FILE = "resumes.jsonl"  # what each resume changed: config.json holds only the last
# the libraries whose versions environment.json records and a resume compares (each may
# change how a step computes); jax's own version is recorded as "jax"
LIBRARIES = ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "numpy")
def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Checks, without writing anything, that the config may train in `workdir`: a run
    already there agrees with it on every run-defining field (config.RESUMABLE_FIELDS), and
    every folder and file a run writes can be written, and the data's paths are of the
    right kind (config.check_data_paths: refused before the workdir is even made)."""
    config_lib.check_data_paths(config)
    if os.path.isfile(os.path.join(workdir, CONFIG_FILE)):
        saved, current, _ = _saved_and_current(workdir, config)
        differences = config_lib.run_differences(saved, current)
        if differences:
            spanning = (f" (under the {config.optim.schedule} schedule the learning rate "
                        "decays over the run's steps, so its length is part of the run)")
            said = [(f"{field} unset (its default)" if value is None else f"{field}={value!r}")
                    + ", " + (("but the config leaves it unset" if wanted is None else
                               f"but the config says {wanted!r}") if i == 0 else
                              "not unset" if wanted is None else f"not {wanted!r}")
                    + (spanning if field == "train.num_epochs" else "")  # only then
                    for i, (field, value, wanted) in enumerate(differences)]
            fields = [field for field, _, _ in differences]
            if fields == ["train.num_epochs"]:
                may = ("--config.train.stop_after_steps stops it earlier; a longer run needs "
                       "a new --workdir")
            else:
                may = ("a resumed run may change only how long it runs, its learning rate, how "
                       "it logs, saves and evaluates, where its data lives, whether it "
                       "streams, and its convolutions' implementation")
            raise config_lib.ConfigError(
                f"workdir {workdir!r} holds a run with {'; and '.join(said)}: use a new "
                f"--workdir, or the same {', '.join(fields)} ({may})")
    check_writable(workdir, folders=(CHECKPOINTS,),
                   files=(CONFIG_FILE, ENVIRONMENT_FILE, METRICS_FILE, TIMINGS_FILE, RESUMES_FILE,
                          LOCK_FILE))


def holds_run(workdir: str) -> bool:
    """Whether `workdir` holds a run: its config.json, or a checkpoint saved without one."""
    return os.path.isfile(os.path.join(workdir, CONFIG_FILE)) or _holds_checkpoints(workdir)


def _holds_checkpoints(workdir: str) -> bool:
    """Whether `workdir`'s checkpoints folder holds a saved step (an abandoned temporary save
    is none)."""
    checkpoints = os.path.join(workdir, CHECKPOINTS)
    return os.path.isdir(checkpoints) and any(name.isdigit() for name in os.listdir(checkpoints))


def recorded_environment(workdir: str) -> dict:
    """The run's environment.json in `workdir` (what it ran on, and the hashes of its data
    and code); {} where it is missing or damaged: the run writes it again."""
    try:
        with open(os.path.join(workdir, ENVIRONMENT_FILE)) as f:
            environment = json.load(f)
    except (OSError, ValueError):
        return {}
    return environment if isinstance(environment, dict) else {}


def _recorded_data(workdir: str) -> dict | None:
    """The data section of the config.json in `workdir`; None where there is no readable
    one (no run there yet, or a damage prepare_workdir names)."""
    try:
        with open(os.path.join(workdir, CONFIG_FILE)) as f:
            data = json.load(f).get("data", {})
    except (OSError, ValueError, AttributeError):
        return None
    return data if isinstance(data, dict) else None


def recorded_data_fingerprint(workdir: str) -> str | None:
    """The fingerprint of the images the run in `workdir` trained on (environment.json's),
    or None where it records none."""
    return recorded_environment(workdir).get("data_fingerprint") or None


def recorded_data_path(workdir: str) -> str | None:
    """The data.path a run in `workdir` records in its config.json, normalised (an older
    run's may end in '/'); None: none, no file, or no string (a damaged file)."""
    path = _place((_recorded_data(workdir) or {}).get("path"))
    return path if isinstance(path, str) else None


def _place(path: object) -> object:
    """A data path as config.json records it: absolute and normalised (no trailing '/', no
    '..'), so that one folder is one value whoever typed it and however; a URL (or no path)
    as it is."""
    return os.path.abspath(path) if isinstance(path, str) and path and "://" not in path \
        else path


def _unwritable(path: str, why: str) -> config_lib.ConfigError:
    return config_lib.ConfigError(f"{path} cannot be written ({why}): make it writable, or "
                                  "pass another --workdir")


def _wrong_kind(path: str, found: str, wanted: str) -> config_lib.ConfigError:
    return config_lib.ConfigError(f"{path} is a {found}, not a {wanted}: a run writes a "
                                  f"{wanted} there; move it away, or pass another --workdir")


def probe_folder(folder: str) -> None:
    """Makes and removes a folder inside `folder` (what Orbax does for every step); raises
    the OSError if it cannot. `os.access` would answer for the real user id and ignore
    capabilities: the probe asks the file system itself. Shared by training and evaluation,
    so both decide alike whether a folder can be written."""
    probe = os.path.join(folder, f".write_test.{os.getpid()}")
    os.mkdir(probe)
    os.rmdir(probe)


def _dangling_link(path: str) -> str | None:
    """The first of `path` and the folders above it that is a link to nothing, or None."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        if os.path.islink(path):
            return path
        if os.path.dirname(path) == path:
            return None
        path = os.path.dirname(path)
    return None


def check_writable(workdir: str, folders: tuple[str, ...] = (), files: tuple[str, ...] = ()
                   ) -> None:
    """Raises ConfigError naming the first of `workdir` and the `folders` and `files` in it
    that a run could not write: a file where a folder must be (or the reverse), a folder
    whose entries cannot be made, a file that cannot be opened for writing. Creates only
    `workdir` itself. A disk that fills later cannot be foreseen: such writes fail with a
    WriteError or CheckpointWriteError when they happen."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise config_lib.ConfigError(f"workdir {workdir!r} is a file, not a folder: pass a "
                                     "--workdir that is a folder, or one that does not exist")
    if why := unsaveable_path(workdir):
        where = "" if os.path.isabs(workdir) else f" (in {os.getcwd()})"
        raise config_lib.ConfigError(
            f"workdir {workdir!r}{where}: its checkpoints could not be read back ({why}): "
            f"pass a --workdir whose path has {UNSAVEABLE_FIX}")
    if link := _dangling_link(workdir):
        raise config_lib.ConfigError(
            f"workdir {workdir!r}: {link} is a link to {os.readlink(link)!r}, which does not "
            "exist: create that folder (mkdir -p), or pass another --workdir")
    try:
        os.makedirs(workdir, exist_ok=True)
        probe_folder(workdir)
    except OSError as e:
        raise config_lib.ConfigError(
            f"workdir {workdir!r} cannot be written ({e.strerror}): pass a --workdir you can "
            "write to") from None
    for name in folders:
        path = os.path.join(workdir, name)
        if os.path.exists(path) and not os.path.isdir(path):
            raise _wrong_kind(path, "file", "folder")
        try:
            if os.path.isdir(path):
                probe_folder(path)
        except OSError as e:
            raise _unwritable(path, e.strerror) from None
    for name in files:
        path = os.path.join(workdir, name)
        if os.path.isdir(path):
            raise _wrong_kind(path, "folder", "file")
        try:
            if os.path.exists(path):
                with open(path, "a"):  # opened for writing; nothing is written
                    pass
        except OSError as e:
            raise _unwritable(path, e.strerror) from None


# --- one writer per workdir --------------------------------------------------------------

class WorkdirBusy(config_lib.ConfigError):
    """Another process is training in the workdir."""


def lock_workdir(workdir: str) -> int:
    """Takes the workdir's writer lock (an advisory `flock` on <workdir>/train.lock) and
    returns its file descriptor: the lock lasts until that is closed, or the process ends,
    however it ends (SIGKILL included), so it never goes stale. Raises WorkdirBusy if
    another process holds it.

    The file stays; the folder is locked too (`lock.lock_folder`), so that a train.lock
    deleted while its run lives lets no second run in (it had locked a new file, and both
    wrote checkpoints and metrics). The file's content (the holder's pid and host) only
    feeds the message. Not inherited by programs the process starts (O_CLOEXEC). Released by
    `unlock_workdir`.
    """
    path = os.path.join(workdir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise _unwritable(path, e.strerror) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = lock.holder_of(fd)
        os.close(fd)
        if e.errno not in lock.BUSY:
            raise config_lib.ConfigError(
                f"cannot lock workdir {workdir!r} ({e.strerror}): use a workdir on a file "
                "system with file locks") from None
        raise WorkdirBusy(lock.busy_message(workdir, holder)) from None
    try:
        folder = lock.lock_folder(workdir)
    except BlockingIOError:
        os.close(fd)
        raise WorkdirBusy(lock.folder_busy_message(workdir)) from None
    lock.write_holder(fd)
    if folder is not None:
        _FOLDER_LOCKS[fd] = folder
    return fd


_FOLDER_LOCKS: dict[int, int] = {}  # {a workdir's lock file descriptor: its folder's}


def unlock_workdir(fd: int) -> None:
    """Releases the lock `lock_workdir` returned `fd` for."""
    folder = _FOLDER_LOCKS.pop(fd, None)
    os.close(fd)
    if folder is not None:
        os.close(folder)


def in_use(workdir: str) -> bool:
    """Whether a training run holds the workdir's lock now (it may write and delete
    checkpoints meanwhile)."""
    return lock.busy(workdir) is not None


# --- the files that describe the run -----------------------------------------------------

def _saved_and_current(workdir: str, config: ml_collections.ConfigDict
                       ) -> tuple[dict, dict, dict[str, list[str]]]:
    """The workdir's config.json and `config`, both in JSON form, the saved model and task
    names given as `config` gives them where they name the same code; and the names of
    files moved ({'model.name': [recorded, now]})."""
    saved = _read_json(os.path.join(workdir, CONFIG_FILE),
                       "delete it and rerun with the run's own flags (without it only the "
                       "parameters' shapes and batches are checked): this run writes it again")
    _check_release(saved, workdir)
    _check_known_fields(saved, config_lib.base_config(), os.path.join(workdir, CONFIG_FILE),
                        workdir)
    for field in config_lib.data_path_kinds(config):  # an older run's as typed ('photos/')
        if isinstance(saved.get("data"), dict) and field in saved["data"]:
            saved["data"][field] = _place(saved["data"][field])
    current = json.loads(config.to_json_best_effort())
    located = _located_names(config)
    relocated: dict[str, list[str]] = {}
    for code in config_lib.CODE_FIELDS:  # short names recorded, files moved
        recorded = saved.get(code.section, {}).get(code.field)
        name = current[code.section].get(code.field)
        where = located.get(code.path, name)  # the same name as config.json would record it
        if isinstance(recorded, str) and isinstance(name, str) and (
                same_code(recorded, name, code.registry) or
                same_code(recorded, where, code.registry)):
            if moved(recorded, where):
                relocated[code.path] = [recorded, where]
            saved[code.section][code.field] = name
    return saved, current, relocated


class ResumeChanges(NamedTuple):
    """What a resume changes from the run as its files describe it: `record`, the line for
    resumes.jsonl (None if nothing changed), and the lines to print."""

    record: dict | None
    notes: list[str]
    warnings: list[str]


def resume_changes(workdir: str, config: ml_collections.ConfigDict, step: int,
                   code_now: dict[str, str] | None = None,
                   environment_now: dict | None = None) -> ResumeChanges:
    """The fields a resume at `step` gives other values (those a resume may change), another
    device count, other code (`code_now`: the run's `code_files`, where it has them), other
    threads, XLA_FLAGS, source or libraries (`environment_now`: `run_environment()` as the
    run began, default now); read from the run's config.json and environment.json, which
    describe only its last part (hence resumes.jsonl, `append_resume`). Raises nothing a run
    should stop for (a damaged environment.json compares as empty)."""
    if not os.path.isfile(os.path.join(workdir, CONFIG_FILE)):
        return ResumeChanges(
            {"step": step, "unchecked": f"{CONFIG_FILE} was missing"}, [],
            [f"warning: {workdir} holds checkpoints but no {CONFIG_FILE}, so only the "
             "parameters' shapes and the batches (their size, the training images' number) "
             "were checked against this config, not the seed, model options or schedule: "
             f"resuming at step {step} as this config says, and writing "
             f"{CONFIG_FILE} from it"])
    saved, _, relocated = _saved_and_current(workdir, config)
    current = json.loads(recorded_config(config).to_json_best_effort())
    changed = {**config_lib.resumed_changes(saved, current), **relocated}
    before = recorded_environment(workdir)  # missing or damaged: empty, written again
    environment = run_environment() if environment_now is None else environment_now
    now = {"devices": len(environment["devices"]),
           **{k: environment[k] for k in ("git_commit", "jaxae_sha256", "xla_flags",
                                          *LIBRARIES)},
           **({k: environment[k] for k in ("cpu_threads", "cpu")}
              if jax.default_backend() == "cpu" else {})}
    was = {**{k: before.get(k) for k in now}, "devices": len(before.get("devices", [])) or None}
    differs = {k: [was[k], now[k]] for k in now if was[k] is not None and was[k] != now[k]}
    if code := code_changes(workdir, config, code_now):
        differs["code_sha256"] = code
    if not changed and not differs:
        return ResumeChanges(None, [], [])
    notes, warnings = [], code_warnings(code, config)
    if changed:
        notes.append(f"resumed at step {step} with {changes_shown(changed)} ({RESUMES_FILE} "
                     "keeps each resume's changes once it saves a checkpoint)")
    if "model.conv" in changed:
        warnings.append("warning: the convolutions' two implementations round differently: "
                        "from here the bits will differ from an uninterrupted run's")
    if "devices" in differs:
        warnings.append(f"warning: the run trained on {differs['devices'][0]} device(s) and "
                        f"resumes on {differs['devices'][1]}: the batch's sums now run in another "
                        "order, so its bits will differ from an uninterrupted run's")
    if "cpu_threads" in differs:
        was_threads, threads = differs["cpu_threads"]
        warnings.append(f"warning: the run trained with {was_threads} CPU thread(s) and resumes "
                        f"with {threads}: XLA splits some sums by thread, so its bits may "
                        f"differ from an uninterrupted run's (PJRT_NPROC={was_threads} runs "
                        f"as it did)")
    if "cpu" in differs:
        was_cpu, cpu = differs["cpu"]
        warnings.append(f"warning: the run trained on the CPU {was_cpu} and resumes on {cpu}: "
                        "XLA compiles for the CPU it runs on, so its bits may differ from an "
                        "uninterrupted run's (on a CPU of the kind it trained on, they repeat)")
    if "xla_flags" in differs:
        was_flags, flags = (repr(f) for f in differs["xla_flags"])
        warnings.append(f"warning: the run trained with XLA_FLAGS={was_flags} and resumes with "
                        f"XLA_FLAGS={flags}: XLA's options change its programs, so its bits may "
                        "differ from an uninterrupted run's")
    if "git_commit" in differs:
        was_commit, now_commit = (commit or "a copy outside git" for commit in
                                  differs["git_commit"])
        warnings.append(f"warning: the run's code was {was_commit}, now {now_commit} "
                        f"({RESUMES_FILE} records it once the run saves a checkpoint)")
    elif "jaxae_sha256" in differs:
        warnings.append("warning: jaxae's source has changed since the run's last part "
                        f"(uncommitted edits, or another copy; {RESUMES_FILE} records its "
                        "hashes once the run saves a checkpoint)")
    if versions := [f"{m} {differs[m][0]} -> {differs[m][1]}" for m in LIBRARIES
                    if m in differs]:
        warnings.append(f"warning: the run resumes with other libraries ({', '.join(versions)}): "
                        "they may compute in another order, so its bits may differ from an "
                        "uninterrupted run's")
    return ResumeChanges({"step": step, "config": changed, **differs}, notes, warnings)


def changes_shown(changed: dict[str, list]) -> str:
    """'train.keep_checkpoints 4 -> 1, ...' of {field: [old, new]}."""
    return ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())


def append_resume(workdir: str, record: dict) -> str | None:
    """Appends a resume's `record` to resumes.jsonl, as the config.json it changes is
    written; a failed write is the warning returned (the run goes on, on every process
    alike)."""
    path = os.path.join(workdir, RESUMES_FILE)
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        return f"warning: {write_error(path, e)}"
    return None


def run_environment() -> dict:
    """What a run computes on: jaxae's version, commit and source hash, Python, the devices,
    the CPU threads and the CPU (`host_cpu_kind`), the platform, XLA_FLAGS and the
    libraries' versions. A run reads it as it starts (the source it imported, not edits made
    while it trains) and records it in environment.json."""
    return {
        "jaxae": jaxae.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_threads": cpu_threads(),
        "cpu": host_cpu_kind(),
        "jaxae_sha256": source_sha256(),
        "platform": platform.platform(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),  # its options change bits (GPU kernels)
        **{module: _version_of(module) for module in (*LIBRARIES, "tensorflow_datasets")},
    }


def write_run_files(workdir: str, config: ml_collections.ConfigDict,
                    data_fingerprint: str = "", code_sha256: dict[str, str] | None = None,
                    data_content_sha256: str = "", environment: dict | None = None,
                    run: dict | None = None) -> None:
    """config.json and environment.json: everything a rerun needs to repeat this run, the
    fingerprint and content hash of the images it trains on, against which images moved
    elsewhere (a new data.path) are checked, `environment` (`run_environment()` as the run
    started, default now), `code_sha256` (`code_files` as the run started, default now)
    of its user files, and `run`: what the config and data came to (the splits' sizes, the
    steps, the parameters; the trainer's `run_facts`)."""
    write_whole(os.path.join(workdir, CONFIG_FILE),
                 recorded_config(config).to_json_best_effort(indent=2, sort_keys=True) + "\n")
    recorded = {
        "data_fingerprint": data_fingerprint,
        "data_content_sha256": data_content_sha256,
        **(run_environment() if environment is None else environment),
        "code_sha256": code_files(config) if code_sha256 is None else code_sha256,
        **({"run": run} if run else {}),
    }
    write_whole(os.path.join(workdir, ENVIRONMENT_FILE), json.dumps(recorded, indent=2))


def code_files(config: ml_collections.ConfigDict) -> dict[str, str]:
    """{'model': sha256, ...} of the user's files that the config's model, task, loss,
    likelihood and data set name ('path/to/my_models.py:Class'; not the modules those
    import): a run records them as it starts, so that a file changed or replaced since
    (moved with its project, or edited) is named when the run resumes or evaluates. A file
    that cannot be read is left out."""
    hashes = {}
    located = _located_names(config)
    for code in config_lib.CODE_FIELDS:
        name = located.get(code.path, config[code.section].get(code.field))
        file = CodeName.parse(name).file if isinstance(name, str) else None
        if file is None:
            continue
        source = source_as_run(file)  # what this process ran, where it ran it
        if source is None:
            try:
                with open(file, "rb") as f:  # a source file: small
                    source = f.read()
            except OSError:
                continue
        hashes[code.registry.kind] = hashlib.sha256(source).hexdigest()
    return hashes


def code_changes(workdir: str, config: ml_collections.ConfigDict,
                 now: dict[str, str] | None = None) -> dict[str, list[str]]:
    """{'model': [sha256 trained with, now], ...} for each user file of the config's code
    (`code_files`) whose contents differ from those the run in `workdir` recorded (nothing where it
    recorded none: a run from before that record has its first resume's hash recorded);
    `now`: `code_files(config)`, where the caller has it already."""
    recorded = recorded_environment(workdir).get("code_sha256") or {}
    if not recorded:
        return {}
    now = code_files(config) if now is None else now
    return {section: [recorded[section], now[section]] for section in now
            if isinstance(recorded, dict) and recorded.get(section) not in (None, now[section])}


def _changed_files(config: ml_collections.ConfigDict, changes: dict[str, list[str]],
                   said: str) -> list[str]:
    """'the model file '...' `said` (sha256 OLD then, NEW now)' for each file of
    `code_changes` ({kind: [old, new]}, kind "model", "task", "loss", "likelihood" or "data
    set"), once for a file that holds several ("the task and loss file ...")."""
    located, by_file = _located_names(config), {}
    for kind, hashes in changes.items():
        code = next(c for c in config_lib.CODE_FIELDS if c.registry.kind == kind)
        name = located.get(code.path, config[code.section][code.field])
        by_file.setdefault(CodeName.parse(name).where, ([], hashes))[0].append(kind)
    return [f"the {' and '.join(kinds)} file {where!r} {said} (sha256 {old[:12]} then, "
            f"{new[:12]} now)" for where, (kinds, (old, new)) in by_file.items()]


def code_warnings(changes: dict[str, list[str]], config: ml_collections.ConfigDict) -> list[str]:
    """One warning line for each file of `code_changes`."""
    return [f"warning: {line}: the run's checkpoint still loads, but what that code computes "
            "may differ" for line in _changed_files(config, changes,
                                                   "is not the one the run trained with")]


def mismatch_with_code(error: CheckpointMismatch, workdir: str,
                       config: ml_collections.ConfigDict,
                       now: dict[str, str] | None = None) -> CheckpointMismatch:
    """`error` (a checkpoint of the run in `workdir` that does not fit), told by the user's
    files changed since the run trained (`code_changes`), where any did; else by jaxae's
    source or a library changed since (environment.json's record); else by the record
    (config.json edited since, or a step of another run's). A workdir without a record
    keeps the error, whose hint is about the config given."""
    changes = code_changes(workdir, config, now)
    if not changes:
        if not os.path.isfile(os.path.join(workdir, CONFIG_FILE)):
            return error
        recorded, current = recorded_environment(workdir), run_environment()
        moved = [f"{name} {recorded[name]} -> {current[name]}" for name in ("jaxae", *LIBRARIES)
                 if name in recorded and recorded[name] != current[name]]
        if recorded.get("jaxae_sha256") not in (None, current["jaxae_sha256"]):
            moved.append("jaxae's source")
        if moved:
            return CheckpointMismatch(
                f"{error.fact}: {', '.join(moved)} changed since the run trained, which may "
                "have changed what a checkpoint holds: run it with the versions its "
                "environment.json records, or train a new run in another --workdir",
                error.fact)
        unhashed = " and ".join(_unhashed_code(config))
        return CheckpointMismatch(
            f"{error.fact}: the run's config.json and model code describe another model than "
            "that step's (a config.json edited since, "
            + (f"a step of another run's, or the code of {unhashed} changed since the run "
               "trained: only code in a file has its hash recorded): put back the run's own "
               "config.json or code" if unhashed else
               "or a step of another run's): put back the run's own config.json")
            + ", or move that step's folder out of the checkpoints", error.fact)
    files = "; ".join(_changed_files(config, changes, "changed since the run trained with it"))
    return CheckpointMismatch(f"{error.fact}: {files}: put back the version it trained with, "
                              "or train a new run in another --workdir", error.fact)


def _unhashed_code(config: ml_collections.ConfigDict) -> list[str]:
    """The config's model and task whose code neither a run's record of files (`code_files`)
    nor jaxae's source hash covers ("model 'nb_ae'": a class a notebook or script registered,
    or one in an installed module)."""
    from jaxae.models import MODELS
    from jaxae.tasks import TASKS

    unhashed = []
    for section, entries in (("model", MODELS), ("task", TASKS)):
        name = config[section].get("name")
        code = CodeName.parse(name) if isinstance(name, str) else None
        if code and code.file is None and not (entries.own(name) or is_jaxae_module(code.where)):
            unhashed.append(f"{section} {name!r}")
    return unhashed


def _located_names(config: ml_collections.ConfigDict) -> dict[str, str]:
    """{'model.name': name, ...} of the fields that name code (config.CODE_FIELDS: model,
    task, loss, likelihood, data set) as another process finds them, where that differs: a
    name a module of the user's registered as 'path/to/that_module.py:name'
    (`registry.locatable_name`), a relative 'file.py:Class' made absolute, a 'module:Class'
    of a module in a folder of the user's by its file (what train.py records): a run trained
    from a script or a folder of one's own evaluates with evaluate.py from anywhere."""
    located = {}
    for field in config_lib.CODE_FIELDS:
        name = config[field.section].get(field.field)
        if not isinstance(name, str):
            continue
        code = CodeName.parse(name)
        if code.file is not None and not os.path.isabs(code.file):
            located[field.path] = code.elsewhere(os.path.abspath(code.file))
        elif code.where and "." not in code.where and \
                (file := _file_of_uninstalled_module(code.where)):
            located[field.path] = code.elsewhere(file)
        elif (found := locatable_name(field.registry, name)) != name:
            located[field.path] = found
    return located


def _file_of_uninstalled_module(module_name: str) -> str | None:
    """The file of an imported top-level single-file module that no installed distribution
    provides (found in a folder of the user's: the current one or the config's, which the
    entry points put on the import path, or $PYTHONPATH's): from another folder its name
    imports nothing. None for the standard library's, an installed (or editable) module's,
    whose name imports it anywhere, and a package's (it keeps its name: imported by file
    its __init__ would run twice)."""
    if module_name in sys.stdlib_module_names or module_name in _distributed_modules():
        return None
    file = getattr(sys.modules.get(module_name), "__file__", None)
    if not file or os.path.basename(file) == "__init__.py":
        return None
    return os.path.abspath(file)


@functools.cache
def _distributed_modules() -> frozenset[str]:
    """The top-level module names the installed distributions provide (editable ones too)."""
    return frozenset(importlib.metadata.packages_distributions())


def recorded_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config as config.json records it: the names of code (model, task, loss,
    likelihood, data set) registered by a module of the user's located (`_located_names`),
    and the data's paths on disk (those its loader declares, and TFDS's data dir) made
    absolute and normalised (no trailing '/', no '..'), so that the run resumes and
    evaluates from any folder, and compares with the path given then. A URL is left as it
    is."""
    recorded = copy.deepcopy(config)
    located = _located_names(config)
    for code in config_lib.CODE_FIELDS:
        if code.path in located:
            recorded[code.section][code.field] = located[code.path]
    for field in config_lib.data_path_kinds(config):
        if field in recorded.data:
            recorded.data[field] = _place(recorded.data[field])
    return recorded


def _read_json(path: str, fix: str) -> dict:
    """A JSON file of the workdir; a damaged one is a one-line ConfigError with the fix."""
    try:
        with open(path) as f:
            saved = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise config_lib.ConfigError(f"{path} is damaged ({e}): {fix}") from None
    if not isinstance(saved, dict):
        raise config_lib.ConfigError(f"{path} is damaged (not a JSON object): {fix}")
    return saved


def _check_release(saved: dict, workdir: str) -> None:
    """A config.json of the flat layout (jaxae 0.1) cannot be read by this release."""
    if isinstance(saved.get("model"), str):
        raise config_lib.ConfigError(
            f"workdir {workdir!r} was written by jaxae 0.1.0, whose flat config and checkpoints "
            f"this release ({jaxae.__version__}) does not read: evaluate it with jaxae 0.1.0, "
            "or train a new run in another --workdir")


def _check_known_fields(saved: dict, config: ml_collections.ConfigDict, path: str,
                        workdir: str) -> None:
    """A config.json field this jaxae has no place for is one line naming it: written by
    another version (it had been dropped unsaid by evaluate.py, the run then evaluated under
    the default, and a resume asked for the field that the command line then refused), or
    edited in by hand. The sections of fixed fields are those the base config locks; the
    model, task, objective and data sections hold their entries' own fields."""
    fixed = [s for s in config if isinstance(config[s], ml_collections.ConfigDict)
             and config[s].is_locked]
    unknown = [section for section in saved if section not in config] + [
        f"{section}.{key}" for section in fixed if isinstance(saved.get(section), dict)
        for key in saved[section] if key not in config[section]]
    if not unknown:
        return
    field, hint = unknown[0], config_lib.field_hint(unknown[0])
    said = f"{path} holds config.{field}, which this jaxae has no field for" + \
        (f" ({hint})" if hint else "")
    written = recorded_environment(workdir)
    if written.get("jaxae_sha256") == source_sha256():  # this code wrote the run
        raise config_lib.ConfigError(f"{said}: it was edited into {CONFIG_FILE}: rename it "
                                     "or remove it there")
    by = " ".join(str(written[k]) for k in ("jaxae", "git_commit") if written.get(k)) or \
        "an unknown version"
    now = " ".join(filter(None, (jaxae.__version__, git_commit())))
    raise config_lib.ConfigError(
        f"{said}; the run was written by jaxae {by}, this is {now}: evaluate and resume it "
        "with that version, or edit the field out of config.json (its run must have left it "
        "at the value this jaxae assumes)")


def _version_of(module: str) -> str:
    return getattr(importlib.import_module(module), "__version__", "unknown")


def _sibling_runs(workdir: str) -> list[str]:
    """The names of the folders beside `workdir` that hold a run's config.json."""
    return _runs_in(os.path.dirname(os.path.normpath(workdir)) or ".")


def _runs_in(folder: str) -> list[str]:
    """The names of the folders in `folder` that hold a run's config.json."""
    try:
        return [name for name in os.listdir(folder)
                if os.path.isfile(os.path.join(folder, name, CONFIG_FILE))]
    except OSError:
        return []


def _no_run_here(workdir: str) -> str:
    """Why a folder without config.json holds no run, where it is near one: a run's own
    sub-folder (its checkpoints, its eval), or a folder of runs."""
    parent = os.path.dirname(os.path.normpath(workdir))
    if parent and os.path.isfile(os.path.join(parent, CONFIG_FILE)):
        return (f"{workdir!r} is a folder inside the run {parent!r}: pass the run itself, "
                f"--workdir={parent}")
    if runs := sorted(_runs_in(workdir)):
        shown = ", ".join(os.path.join(workdir, r) for r in runs[:4])
        return (f"{workdir!r} holds runs, not a run: pass one of them, e.g. --workdir="
                f"{os.path.join(workdir, runs[0])} ({shown}{', ...' if len(runs) > 4 else ''})")
    return ""


def load_run_config(workdir: str, moved_names: dict[str, str | None] | None = None
                    ) -> ml_collections.ConfigDict:
    """The config a workdir's run was trained with (its config.json), validated. A user's
    file of code (config.CODE_FIELDS: a model, task, loss, likelihood or data set) may have
    moved with its project: `moved_names` ({'model.name': name, ...}) then names it in its
    new place (`registry.moved`; a relative path is from the current folder, `~` is the home
    folder), and the run's other files of that folder are looked for in the new one."""
    path = os.path.join(workdir, CONFIG_FILE)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise FileNotFoundError(f"{workdir!r} is a file, not a run's folder: pass the --workdir "
                                "that train.py trained into")
    if not os.path.exists(workdir):
        runs = _sibling_runs(workdir)
        close = difflib.get_close_matches(os.path.basename(os.path.normpath(workdir)), runs, n=1)
        shown = ", ".join(sorted(runs)[:6]) + (", ..." if len(runs) > 6 else "")
        parent = os.path.dirname(os.path.normpath(workdir))
        raise FileNotFoundError(
            f"{workdir!r} does not exist: "
            + (f"did you mean {os.path.join(parent, close[0])!r}? " if close else "")
            + (f"runs beside it: {shown}" if runs else
               "pass the --workdir that train.py trained into"))
    if not os.path.isfile(path):
        if _holds_checkpoints(workdir):
            raise FileNotFoundError(
                f"{workdir!r} holds checkpoints but no {CONFIG_FILE}, which says what model "
                "and data they are of: put it back, or rerun the train.py command that made "
                "them (it writes config.json again once the checkpoint it resumes fits)")
        if in_use(workdir):  # a run starting there: its config.json comes with its first save
            raise FileNotFoundError(
                f"{workdir!r} is a training run's ({lock.holder_in(workdir) or 'running'}) that "
                "has saved no checkpoint yet: evaluate it once it has saved one "
                "(train.checkpoint_every_epochs or checkpoint_every_steps say when)")
        raise FileNotFoundError(_no_run_here(workdir) or (
            f"{workdir!r} holds no run ({CONFIG_FILE} is missing): train one first with "
            f"train.py (installed: jaxae-train) --config=YOUR_CONFIG.py --workdir={workdir}"))
    saved = _read_json(
        path, "rerun train.py (jaxae-train) with this --workdir and the run's flags to write "
        "it again")
    _check_release(saved, workdir)
    config = config_lib.base_config()
    _check_known_fields(saved, config, path, workdir)
    for section, values in saved.items():
        if section == "model":  # a model section is the model's own fields, whole
            config.model = ml_collections.ConfigDict(_from_json(values))
        elif isinstance(values, dict) and section in config:
            with config[section].unlocked():
                for key, value in values.items():
                    config[section][key] = _from_json(value)
        elif section in config:
            config[section] = _from_json(values)
    given = {code: (moved_names or {}).get(code.path) for code in config_lib.CODE_FIELDS}
    folders = {}  # a moved file's old folder -> its new one
    for code, name in given.items():
        if name is not None and (old := _relocate(config, code, name)) is not None:
            folders[os.path.dirname(old)] = os.path.dirname(config[code.section][code.field])
    for code in (code for code, name in given.items() if name is None):  # the others
        recorded, name = config[code.section].get(code.field), None
        gone = missing_file(recorded) if isinstance(recorded, str) else None
        if gone and os.path.dirname(gone) in folders:  # moved with the files given
            beside = os.path.join(folders[os.path.dirname(gone)], os.path.basename(gone))
            name = str(CodeName(beside, CodeName.parse(recorded).attribute))
        _relocate(config, code, name)
    config_lib.validate(config)
    return config


# where a run's evaluation on another data set's images is, for the messages that refuse it
OTHER_DATA = ("to score the trained model on other images: evaluate.py --images=FOLDER "
              "(or FILE.npz)")


def _relocate(config: ml_collections.ConfigDict, code: config_lib.CodeField,
              name: str | None) -> str | None:
    """Gives a run's field of code (a model's name, say) the `name` of its file in a new
    place, which only the same file name and attribute, with the recorded file gone, may be;
    returns the recorded file that moved, if one did. Without `name`, a recorded file that
    is gone is a ConfigError naming that fix."""
    section, label = config[code.section], code.registry.kind
    recorded = section.get(code.field)
    flag = f"--config.{code.path}"
    if name is not None and not isinstance(name, str):
        raise config_lib.ConfigError(f"{flag}={name!r}: give a file and class, "
                                     f"NEW_PLACE/my_{label}s.py:Class")
    if not isinstance(recorded, str):
        if name is not None:
            raise config_lib.ConfigError(f"{flag}={name!r}: the run's {label} is not a file "
                                         f"that could move: drop {flag}")
        return None
    was = CodeName.parse(recorded)
    if name is None:
        if gone := missing_file(recorded):
            raise config_lib.ConfigError(
                f"the run's {label} file {gone!r} does not exist: if its project moved, give "
                f"its new place, {flag}=NEW_PLACE/{os.path.basename(gone)}:"
                f"{was.attribute} (a resume takes it from train.py's config)")
        return None
    given = CodeName.parse(name)
    if given.file is not None:
        given = CodeName(os.path.abspath(os.path.expanduser(given.file)), given.attribute)
        name = str(given)
    if name == recorded and not missing_file(recorded):
        return None
    if was.file is None:
        module = was.where
        importable = (f", and make {module!r} importable as it was in training (installed, or "
                      "its folder on PYTHONPATH)" if module else "")
        elsewhere = f" ({OTHER_DATA})" if code.section == "data" else ""
        raise config_lib.ConfigError(
            f"{flag}={name!r}: the run's {label} is {recorded!r}, not a file that moved, and "
            f"evaluation does not change it: drop {flag}{importable}{elsewhere}")
    if not missing_file(recorded):
        raise config_lib.ConfigError(
            f"{flag}={name!r}: the run's {label} is {recorded!r}, which is still there, and "
            f"evaluation does not change it: drop {flag}")
    if not moved(recorded, name):
        why = (f"{given.where!r} does not exist" if given.file is not None and
               not os.path.isfile(given.file) else "only the same file name and class may be")
        raise config_lib.ConfigError(
            f"{flag}={name!r} cannot stand for the run's {label} {recorded!r}, moved: {why}; "
            f"give NEW_PLACE/{os.path.basename(was.where)}:{was.attribute}")
    with section.unlocked():
        section[code.field] = name
    return was.file


def _from_json(value):
    """JSON lists back to tuples (the config's sequences are tuples)."""
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    return tuple(_from_json(v) for v in value) if isinstance(value, list) else value


def check_same_data(workdir: str, data: ml_collections.ConfigDict, fingerprint: str,
                    content_sha256: str = "", evaluation: bool = False) -> None:
    """The images a run in `workdir` resumes or is evaluated on (config section `data`, of
    that `fingerprint` and `content_sha256`) must be those it trained on: the fingerprint
    its environment.json records, or else the content hash it records (the same images and
    labels packed otherwise: IDX files gunzipped, an npz saved again compressed), so that
    its data may move (a new data.path, data_dir) or be repacked but not change. A run
    recorded before the fingerprint may only keep its data.path. An `evaluation`'s refusal
    names how to score the model on other images (OTHER_DATA)."""
    if (saved := _recorded_data(workdir)) is None:
        return  # no run there yet (or prepare_workdir has named its damage)
    saved_path = saved.get("path")
    environment = recorded_environment(workdir)
    recorded = environment.get("data_fingerprint", "")
    recorded_content = environment.get("data_content_sha256", "")
    path = data.get("path")
    back = f"point --config.data.path back at {saved_path!r}"
    # config.json records the path absolute
    places_differ = _place(path) != _place(saved_path)
    repacked = bool(content_sha256) and recorded_content == content_sha256
    if recorded and recorded != fingerprint and not repacked:
        where = f"data.path={path!r}" if path else f"config.data ({data.name})"
        fix = f"{back}, or at a copy of them" if places_differ else (
            "restore the run's images, or train a new run on these in a new --workdir")
        raise config_lib.ConfigError(
            f"the images at {where} are not those the run in {workdir!r} trained on (other "
            f"files or options): {fix}" + (f" ({OTHER_DATA})" if evaluation else ""))
    if not recorded and places_differ:
        raise config_lib.ConfigError(
            f"the run in {workdir!r} trained on data.path={saved_path!r} and records no "
            f"fingerprint of those images to check {path!r} against (it predates that "
            f"record): {back}; a run resumed there records it")

