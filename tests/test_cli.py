"""The entry points as a user runs them: train.py then evaluate.py, their error lines, and a
model of the user's own, in a file beside the user's config, with no edit to jaxae.

A run with XLA's defaults or another JAX setting is a process started for it; the others are
forks of one process that has imported the libraries (`Prestarted`): each a process with its
own exit code, output and current folder, that imports jaxae and the user's files afresh."""

import dataclasses
import importlib
import json
import os
import select
import shlex
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence

import jax
import pytest
from absl import flags

from jaxae import cli
from jaxae.cli.config_flag import locate_code_names
from jaxae.config import base_config
from tests.conftest import TEST_JAX_SETTINGS, TEST_XLA_FLAGS, one_line, tiny_model_source

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args: str, cwd: str = ROOT, production: bool = False) -> subprocess.CompletedProcess:
    """python *args; compiled programs are shared with this test process's cache (the
    child runs while this process waits, so they never write it at the same time).
    production: compile with XLA's and JAX's defaults, as users do, not TEST_XLA_FLAGS and
    TEST_JAX_SETTINGS."""
    env = cache_env()
    if production:
        env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace(TEST_XLA_FLAGS, "").strip()
        for name in TEST_JAX_SETTINGS:
            env.pop(name, None)
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def cache_env() -> dict[str, str]:
    """The environment of a run: this test process's compilation cache, where it has one."""
    cache = jax.config.jax_compilation_cache_dir
    return {**os.environ, **({"JAX_COMPILATION_CACHE_DIR": cache,
                              "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"} if cache else {})}


# The libraries that train.py and evaluate.py import before their first line of output, all
# but jaxae's own (a bad flag's run imports them too): a `Prestarted` process imports them
# once, and each run is a fork of it.
LIBRARIES = ("numpy", "jax.numpy", "flax.linen", "optax", "orbax.checkpoint", "absl.app",
             "absl.flags", "ml_collections", "tensorflow_datasets", "PIL.Image", "matplotlib")

# Imports LIBRARIES, says what that cost, then forks a run per request line: the child
# becomes `python SCRIPT ARGS` (its stdin, stdout, stderr, folder, sys.argv, sys.path[0])
# and runs the script at the top level, so that it exits as a script does (exit code,
# traceback, atexit, interpreter shutdown); the parent answers its exit code and usage
# (killed after 300 s: the timeout of the process started for each run before).
_PRESTARTED = """
import gc, json, os, resource, signal, sys, time
sys.path.pop(0)  # python -c's current folder: a script's own folder takes its place
for library in sys.argv[1:]:
    __import__(library)
gc.freeze()  # the libraries' objects: no run's garbage collections walk them (0.4 s a run)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"cpu_s": usage.ru_utime + usage.ru_stime}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    sys.stderr.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        break
    signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
    signal.alarm(300)
    _, status, usage = os.wait4(pid, 0)
    signal.alarm(0)
    print(json.dumps({"returncode": os.waitstatus_to_exitcode(status),
                      "cpu_s": usage.ru_utime + usage.ru_stime,
                      "wall_s": time.monotonic() - start}), flush=True)
else:
    sys.exit(0)
signal.signal(signal.SIGALRM, signal.SIG_DFL)
os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
for fd, name in ((1, "stdout"), (2, "stderr")):
    os.dup2(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
os.chdir(request["cwd"])
sys.argv = request["argv"]
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
import runpy
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclasses.dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str
    cpu_s: float  # user + system time, LIBRARIES' imports included as a fresh process has them
    wall_s: float  # and how long it took, those imports included


class Prestarted:
    """Runs `python SCRIPT ARGS` as forks of one process that has imported LIBRARIES: each
    run is a process of its own (exit code, stdout, stderr, current folder) that imports
    jaxae and the user's files afresh, without the seconds of imports every start of
    train.py and evaluate.py pays. A run's stderr begins with what that process said while
    importing (nothing, unless a library warns as a fresh process's would); what it says
    later (Python 3.12's warning that it forks with threads: OpenBLAS's) is no run's."""

    ANSWER_S = 330  # a run is killed after 300 s: its answer comes by then

    def __init__(self, folder: str, env: dict[str, str] | None = None,
                 prefix: Sequence[str] = ()):
        self.folder, self.runs = folder, 0
        started = time.monotonic()
        self.err_file = os.path.join(folder, "prestarted.err")
        with open(self.err_file, "w") as err:
            self.proc = subprocess.Popen([*prefix, sys.executable, "-c", _PRESTARTED, *LIBRARIES],
                                         cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, text=True)
        self.imports_cpu_s = self._answer()["cpu_s"]
        self.imports_wall_s = time.monotonic() - started
        with open(self.err_file) as f:
            self.imports_said = f.read()

    def _answer(self) -> dict:
        """The process's next line; a process that has ended or hangs fails the test with
        what it said."""
        ready, _, _ = select.select([self.proc.stdout], [], [], self.ANSWER_S)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            with open(self.err_file) as f:
                raise RuntimeError(f"the pre-started process {'ended' if ready else 'hangs'} "
                                   f"(exit code {self.proc.wait()}): {f.read()[-3000:]}")
        return json.loads(line)

    def run(self, *args: str, cwd: str = ROOT) -> Ran:
        """python *args in `cwd`."""
        self.runs += 1
        out, err = (os.path.join(self.folder, f"run{self.runs}.{name}") for name in ("out", "err"))
        self.proc.stdin.write(json.dumps({"argv": list(args), "cwd": cwd, "stdout": out,
                                          "stderr": err}) + "\n")
        self.proc.stdin.flush()
        done = self._answer()
        with open(out) as said, open(err) as complained:
            stdout, stderr = said.read(), complained.read()
        return Ran(done["returncode"], stdout, self.imports_said + stderr,
                   self.imports_cpu_s + done["cpu_s"], self.imports_wall_s + done["wall_s"])

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def entry_points(tmp_path_factory) -> Iterator[Prestarted]:
    """train.py and evaluate.py runs, with this test process's compilation cache."""
    prestarted = Prestarted(str(tmp_path_factory.mktemp("prestarted")), cache_env())
    yield prestarted
    prestarted.close()


def test_train_then_evaluate_writes_checkpoint_metrics_and_picture(fashion_tfds_dir, tmp_path):
    """As users run it: XLA's and JAX's defaults, not the tests' settings; the command
    train.py prints to evaluate the run, pasted (a workdir with a space was two arguments)."""
    workdir = str(tmp_path / "my run")
    trained = run("train.py", "--config=configs/test.py", f"--workdir={workdir}",
                  f"--config.data.tfds_dir={fashion_tfds_dir}", "--config.model.latent_dim=2",
                  production=True)
    assert trained.returncode == 0, trained.stderr[-2000:]
    said = trained.stdout.splitlines()[-1]
    assert said == (f"evaluate it: {cli.shortest_path(sys.executable)} "
                    f"{cli.shortest_path(os.path.join(ROOT, 'evaluate.py'))} "
                    f"'--workdir={workdir}'")
    saved = sorted(os.listdir(os.path.join(workdir, "checkpoints")), key=int)
    assert saved == ["16", "32"]  # one per epoch of 16 steps
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["model"]["latent_dim"] == 2
    with open(os.path.join(workdir, "environment.json")) as f:  # a GPU's kernels repeat too
        assert "--xla_gpu_deterministic_ops=true" in json.load(f)["xla_flags"].split()
    python, *command = shlex.split(said.removeprefix("evaluate it: "))
    assert python == cli.shortest_path(sys.executable)
    evaluated = run(*command, production=True)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "evaluating the checkpoint at step 32" in evaluated.stdout
    assert evaluated.stdout.splitlines()[-1] == (
        f"wrote {workdir}/eval/metrics.json and reconstructions.png, samples.png, manifold.png, "
        "latent_scatter.png beside it")
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["step"] == 32 and metrics["test_images"] == 256
    with open(os.path.join(workdir, "eval", "reconstructions.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("given, expected", [
    (None, "--xla_gpu_deterministic_ops=true"),
    ("--xla_force_host_platform_device_count=8",
     "--xla_force_host_platform_device_count=8 --xla_gpu_deterministic_ops=true"),
    ("--xla_gpu_deterministic_ops=false", "--xla_gpu_deterministic_ops=false"),  # the user's
    ("--xla_gpu_deterministic_ops", "--xla_gpu_deterministic_ops"),
    ("--xla_gpu_deterministic_ops_x=1", "--xla_gpu_deterministic_ops_x=1 "
                                        "--xla_gpu_deterministic_ops=true"),
    ("/etc/xla_flags.txt", "/etc/xla_flags.txt")])  # a file XLA reads the flags from
def test_the_commands_ask_for_deterministic_gpu_kernels_unless_xla_flags_name_them(given,
                                                                                  expected):
    environ = {} if given is None else {"XLA_FLAGS": given}
    for _ in range(2):  # once
        cli.use_deterministic_gpu_ops(environ)
        assert environ == {"XLA_FLAGS": expected}


@pytest.mark.parametrize("command", [
    "import jaxae.cli.train_command as c; c.main()",
    "import jaxae.cli.evaluate_command as c; c.main()",
    "import jaxae.experiments.__main__ as c; c.main()",
    "import runpy; runpy.run_path('examples/own_loop.py', run_name='__main__')"])
def test_the_commands_ask_for_the_kernels_before_jax_starts_its_backend(command):
    """The commands' first step (XLA reads XLA_FLAGS once, as its backend starts): a spy in
    its place says whether the backend had started; each command then stops at its usage."""
    spy = textwrap.dedent(f"""
        import sys
        import jaxae.cli.determinism

        def spy(*args):
            from jax._src import xla_bridge
            print("backend started:", xla_bridge.backends_are_initialized(), flush=True)

        jaxae.cli.determinism.use_deterministic_gpu_ops = spy
        jaxae.cli.use_deterministic_gpu_ops = spy
        sys.argv = ["command", "--nonsense"]
        {command}
        """)
    done = subprocess.run([sys.executable, "-c", spy], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=cache_env())
    assert done.stdout.splitlines()[:1] == ["backend started: False"], (done.stdout,
                                                                          done.stderr[-2000:])
    assert done.returncode != 0  # stopped at its usage, not run


def _example(name: str) -> str:
    with open(os.path.join(ROOT, "examples", name)) as f:
        return f.read()


MY_MODELS = _example("my_models.py")  # the README's model of one's own, and its config
MY_CONFIG = _example("my_config.py")


def installed_command(name: str) -> str:
    """The command an install of jaxae puts beside its Python (`make setup` installs it)."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    assert os.path.isfile(path), f"{path} is not installed: run make setup"
    return path


def test_the_installed_commands_are_train_py_s_and_evaluate_py_s():
    """pyproject's [project.scripts]: an installed jaxae (no clone, no train.py) has them."""
    import tomllib

    from jaxae.cli import evaluate_command, train_command

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts == {"jaxae-train": "jaxae.cli.train_command:main",
                       "jaxae-evaluate": "jaxae.cli.evaluate_command:main"}
    assert train_command.EVALUATE_COMMAND == "jaxae-evaluate"
    assert callable(train_command.main) and callable(evaluate_command.main)
    assert train_command.shipped_config("default") == cli.shortest_path(
        os.path.join(ROOT, "configs", "default.py"))


def test_a_users_model_in_their_own_file_trains_and_evaluates(entry_points, fashion_tfds_dir,
                                                              tmp_path):
    """my_models.py beside my_config.py, outside the package; the installed commands
    (jaxae-train, then the jaxae-evaluate line it prints) run from another folder, and the
    pictures are titled by what the model declares."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_models.py").write_text(textwrap.dedent(MY_MODELS))
    (project / "my_config.py").write_text(textwrap.dedent(MY_CONFIG))
    workdir = str(tmp_path / "runs" / "deeper")
    trained = entry_points.run(installed_command("jaxae-train"),
                               f"--config={project}/my_config.py", f"--workdir={workdir}",
                               f"--config.data.tfds_dir={fashion_tfds_dir}", cwd=str(tmp_path))
    assert trained.returncode == 0, trained.stderr[-2000:]
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["model"]["name"] == f"{project}/my_models.py:DeeperVAE"
    evaluate, said_workdir = shlex.split(trained.stdout.splitlines()[-1].removeprefix(
        "evaluate it: "))
    assert (evaluate, said_workdir) == (installed_command("jaxae-evaluate"),
                                        f"--workdir={workdir}")
    evaluated = entry_points.run(evaluate, f"--workdir={workdir}",
                                 "--config.eval.iwae_samples=(1, 5)",
                                 "--config.eval.iwae_images=64", cwd="/")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["test_elbo"] < 0 and metrics["test_iwae_k5"] >= metrics["test_iwae_k1"]
    assert metrics["pictures"]["samples.png"].endswith("samples from the prior")
    assert "manifold.png" in metrics["pictures"]


def test_bad_input_is_one_line_and_nothing_is_written(entry_points, tmp_path):
    workdir = str(tmp_path / "bad")
    result = entry_points.run("train.py", "--config=configs/test.py", f"--workdir={workdir}",
                 "--config.model.name=vae9")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: config.model.name: unknown model 'vae9': did you mean 'vae'? choose one of "
        "dense_ae, deep_ae, conv_ae, superres, vae, cvae, conv_vae, or name your own as "
        "'module:Class' or 'path/to/file.py:Class' (a name your module registers counts once "
        "your config file imports it)"]
    assert not os.path.exists(workdir)


@pytest.mark.parametrize("safe_path", [False, True])
def test_the_current_folder_joins_the_import_path_last_and_not_under_python_p(tmp_path,
                                                                              safe_path):
    """A module of the current folder (a model beside the config) stays importable, but a
    file there named like an installed module (fileinput.py in a downloaded folder) shadowed
    it; `python -P` asks for no current folder at all."""
    code = ("import os, sys\n"
            "from absl import flags\n"
            "from jaxae.cli import config_flag\n"
            "config_flag.define_config_flag(None, flags.FlagValues(), argv=['x'])\n"
            "print(sys.path.index(os.getcwd()) == len(sys.path) - 1 "
            "if os.getcwd() in sys.path else 'absent')\n")
    result = subprocess.run([sys.executable, *(["-P"] if safe_path else []), "-c", code],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ("absent" if safe_path else "True")


def test_a_file_name_s_control_characters_are_shown_escaped_in_an_error_line(capsys):
    """A received folder's file named with terminal escapes: quoted raw, it retitled the
    terminal or wiped the line; letters of any script stay as they are."""
    from jaxae.data import DataError

    def fails():
        raise DataError("image 写真\u200d2024/\x1b]0;title\x07\x1b[2Kéß\u202e.png cannot be "
                        "read: remove it")

    with pytest.raises(SystemExit):
        cli.run(fails)
    assert capsys.readouterr().err == (
        "error: image 写真\u200d2024/\\x1b]0;title\\x07\\x1b[2Kéß\\u202e.png cannot be read: "
        "remove it\n")  # (a joiner kept: a path shown so pastes as it is)


def test_jax_in_64_bits_is_one_line_before_anything_is_written(tmp_path, monkeypatch):
    """JAX_ENABLE_X64 (or a notebook's jax_enable_x64): a run's int64 step fitted no 32-bit
    checkpoint (resume and evaluate.py failed, blaming config.json) nor repeated its bits."""
    workdir = str(tmp_path / "x64")
    monkeypatch.setenv("JAX_ENABLE_X64", "1")
    result = run("train.py", "--config=configs/test.py", f"--workdir={workdir}")
    assert (result.returncode, result.stderr) == (1, (
        "error: jax_enable_x64 is on in this process: jaxae runs in 32 bits (its seeded bits "
        "and checkpoints are 32-bit ones); turn it off with jax.config.update("
        "'jax_enable_x64', False), or unset JAX_ENABLE_X64\n"))
    assert not os.path.exists(workdir)


def test_jax_in_64_bits_is_refused_by_the_other_commands_before_their_work(tmp_path, capsys):
    """The bench had refused every workload as though of its size ("drop that size from
    --image-sizes"), the experiments prepared their data first, config_results.py started a
    train.py per config: one line each now, and nothing written."""
    from benchmarks import bench_args
    from jaxae.experiments.__main__ import main as experiments_main
    from tests.test_config_results import config_results

    refusal = r"^error: jax_enable_x64 is on in this process: jaxae runs in 32 bits"
    jax.config.update("jax_enable_x64", True)
    try:
        with pytest.raises(SystemExit):
            bench_args.parse_args(["--models", "dense_ae", "--data", "random"])
        said = capsys.readouterr().err
        assert "or unset JAX_ENABLE_X64 (--help" in said and "image-sizes" not in said, said
        with pytest.raises(SystemExit, match=refusal):
            experiments_main(["dae_sweep", "--scale", "tiny", "--out", str(tmp_path / "e")])
        with pytest.raises(SystemExit, match=refusal):
            config_results.main(["--out", str(tmp_path / "c"), "--only", "default"])
    finally:
        jax.config.update("jax_enable_x64", False)
    assert os.listdir(tmp_path) == []


def test_misspelt_and_moved_config_fields_are_one_line_naming_the_right_one(entry_points,
                                                                           tmp_path):
    workdir = str(tmp_path / "typo")
    for flag, line in [
            ("--config.modle.name=vae", "error: unknown config field config.modle.name: "
                                        "did you mean config.model.name?"),
            ("--config.latent_dim=2", "error: unknown config field config.latent_dim: it "
                                      "moved to config.model.latent_dim"),
            ("--num_epochs=3", "error: Unknown command line flag 'num_epochs': did you mean "
                               "--config.train.num_epochs?"),
            ("--nonsense=3", "error: Unknown command line flag 'nonsense'")]:
        result = entry_points.run("train.py", "--config=configs/test.py",
                                  f"--workdir={workdir}", flag)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [line]
    assert not os.path.exists(workdir)


def test_an_unknown_field_is_told_apart_from_a_real_one_of_the_same_name():
    """ml_collections names only the last part ('name'): model.name and objective.name both
    end so, and the error named the real field, model.name."""
    from jaxae.cli.config_errors import unknown_field

    argv = ["train.py", "--config.model.name=my.py:Mine", "--config.objective.name=vae"]
    assert unknown_field(KeyError("'name'"), argv) == (
        "unknown config field config.objective.name: did you mean config.objective.beta?")
    assert unknown_field(KeyError("'name'"), argv[:1] + argv[2:]).startswith(
        "unknown config field config.objective.name")


def test_an_older_command_s_moved_fields_are_named_in_one_line():
    """A 0.1 command's flat fields (--config.train_size=... --config.tfds_dir=...) were
    refused one at a time: each fixed, the rerun named the next."""
    from jaxae.cli.config_errors import unknown_field

    argv = ["train.py", "--config.train_size=12800", "--config.seed=1",
            "--config.tfds_dir=/data", "--config.num_epochs=3", "--config.train_size=64"]
    assert unknown_field(KeyError("'train_size'"), argv) == (
        "unknown config field config.train_size: it moved to config.data.train_size; "
        "config.tfds_dir moved to config.data.tfds_dir; config.num_epochs moved to "
        "config.train.num_epochs")


def test_evaluating_a_workdir_without_a_run_is_one_line(entry_points, tmp_path):
    result = entry_points.run("evaluate.py", f"--workdir={tmp_path}")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds no run (config.json is missing)" in lines[0]


def test_a_run_s_sub_folder_or_a_folder_of_runs_names_the_run_to_pass(tmp_path):
    from jaxae.training.workdir import load_run_config

    run_dir = tmp_path / "runs" / "default"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    for given, said in (
            (run_dir / "checkpoints", f"{str(run_dir / 'checkpoints')!r} is a folder inside the "
                                      f"run {str(run_dir)!r}: pass the run itself, "
                                      f"--workdir={run_dir}"),
            (tmp_path / "runs", f"{str(tmp_path / 'runs')!r} holds runs, not a run: pass one of "
                                f"them, e.g. --workdir={run_dir} ({run_dir})")):
        with pytest.raises(FileNotFoundError) as caught:
            load_run_config(str(given))
        assert str(caught.value) == said


def test_a_run_of_the_flat_config_release_is_named(entry_points, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": "dense_ae", "latent_dim": 10}))
    result = entry_points.run("evaluate.py", f"--workdir={tmp_path}")
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "was written by jaxae 0.1.0, whose flat config and checkpoints this release " \
        "(0.2.0) does not read" in line


# --- config files and overrides, parsed in this process as the entry points parse them ----

CONFIG_FILES = {  # name: (the file's lines, the error after '--config=FILE:')
    "syntax error": (["from jaxae.config import base_config", "def get_config()",
                      "    return base_config()"], ":2: SyntaxError: expected ':'"),
    "import error": (["from jaxae.config import base_confg"],
                     ":1: ImportError: cannot import name 'base_confg' from 'jaxae.config'"),
    "get_config raises": (["from jaxae.config import base_config", "def get_config():",
                           "    c = base_config()", "    c.train.batch_size = 1 // 0"],
                          ":4: ZeroDivisionError: integer division or modulo by zero"),
    "misspelt field": (["from jaxae.configs import test", "def get_config():",
                        "    c = test.get_config()", "    c.train.batch_sise = 64", "    return c"],
                       ":4: unknown config field config.train.batch_sise: did you mean "
                       "config.train.batch_size?"),
    "moved field": (["from jaxae.configs import test", "def get_config():",
                     "    c = test.get_config()", "    c.latent_dim = 3", "    return c"],
                    ":4: unknown config field config.latent_dim: it moved to "
                    "config.model.latent_dim"),
    "returns a dict": (["def get_config():", "    return {'seed': 0}"],
                       ": get_config() returned a dict, not a jaxae config: start from "
                       "jaxae.config.base_config()"),
    "no get_config": (["seed = 0"], ": it defines no get_config() returning the config"),
}


def parse(argv: list[str], define) -> tuple[int, object]:
    """(exit code, the flags) of defining and parsing `argv` with fresh flags."""
    sys.modules.pop("config_config", None)  # ml_collections' module of the last config file
    flag_values = flags.FlagValues()
    try:
        define(flag_values, argv)
        cli.parse_flags(argv, flag_values)
    except SystemExit as e:
        return int(e.code), flag_values
    return 0, flag_values


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections'
@pytest.mark.parametrize("fault", list(CONFIG_FILES))
@pytest.mark.parametrize("overridden", [False, True], ids=["", "overridden"])
def test_a_config_file_s_own_mistake_is_one_line_with_its_line(fault, overridden, tmp_path,
                                                                capsys):
    lines, error = CONFIG_FILES[fault]
    path = tmp_path / f"{fault.replace(' ', '_')}.py"
    path.write_text("\n".join(lines) + "\n")
    argv = ["train.py", f"--config={path}", *(["--config.seed=1"] if overridden else [])]
    code, _ = parse(argv, lambda fv, a: cli.define_config_flag(None, fv, a))
    assert code == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"error: --config={path}{error}"), line


def evaluate_flags(flag_values: flags.FlagValues, argv: list[str]) -> None:
    """evaluate.py's flags."""
    flags.DEFINE_string("workdir", None, "", flag_values=flag_values)
    cli.define_eval_overrides(flag_values, argv)


def test_evaluation_overrides_are_parsed_and_the_model_s_fields_refused(capsys):
    argv = ["evaluate.py", "--workdir=w", "--config.eval.iwae_samples=(1, 5)",
            "--config.eval.iwae_images=100", "--config.eval.num_images", "7"]
    code, flag_values = parse(argv, evaluate_flags)
    assert code == 0
    assert cli.eval_overrides(argv, flag_values) == {"eval.iwae_samples": (1, 5),
                                                     "eval.iwae_images": 100,
                                                     "eval.num_images": 7}
    code, _ = parse(["evaluate.py", "--workdir=w", "--config.model.latent_dim=3"],
                    evaluate_flags)
    assert code == 1
    assert capsys.readouterr().err == (
        "error: evaluate.py cannot change config.model.latent_dim: it takes only config.eval, "
        "config.data.tfds_dir, config.data.data_dir, config.data.path, and where a file of "
        "code moved, config.model.name, config.task.name, config.objective.loss, "
        "config.objective.likelihood, config.data.name (e.g. "
        "--config.eval.iwae_samples='(1, 50)'); the rest is the trained run's (its "
        "config.json), so train another run to change it\n")
    code, _ = parse(["evaluate.py", "--workdir=w", "--config.data.train_size=9"],
                    evaluate_flags)
    assert code == 1 and capsys.readouterr().err.endswith(
        "so train another run to change it (to score the trained model on other images: "
        "evaluate.py --images=FOLDER (or FILE.npz))\n")
    code, _ = parse(["evaluate.py", "--workdir=w", "--config.eval.iwae_sample=3"],
                    evaluate_flags)
    assert code == 1  # a misspelt field of a section it takes: named as such, not forbidden
    assert capsys.readouterr().err == ("error: unknown config field config.eval.iwae_sample: "
                                       "did you mean config.eval.iwae_samples?\n")
    code, _ = parse(["evaluate.py", "--workdir=w", "--config.eval.iwae_sample", "3"],
                    evaluate_flags)  # the value as the next word: the same line
    assert code == 1
    assert capsys.readouterr().err == ("error: unknown config field config.eval.iwae_sample: "
                                       "did you mean config.eval.iwae_samples?\n")


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections'
def test_two_config_files_a_value_for_a_section_and_a_config_for_evaluate_are_one_line(
        capsys):
    train = lambda fv, a: cli.define_config_flag(None, fv, a)  # noqa: E731
    test = os.path.join(ROOT, "configs", "test.py")
    for argv, line in [
            (["train.py", "--config=configs/test.py", "--config", "configs/default.py"],
             "error: --config is given 2 times (configs/test.py, configs/default.py): give one "
             "config file, and change its fields with --config.SECTION.FIELD=VALUE"),
            (["train.py", f"--config={test}", "--config.model=foo"],
             "error: --config.model=foo gives a value to a whole section: give one of its "
             "fields, e.g. --config.model.name=foo"),
            (["train.py", f"--config={test}", "--config.train.num_epochs=1.5"],
             "error: --config.train.num_epochs=1.5 is not a whole number: give a whole "
             "number, e.g. --config.train.num_epochs=2"),
            (["train.py", f"--config={test}", "--config.optim.learning_rate=abc"],
             "error: --config.optim.learning_rate=abc is not a number: give a number, e.g. "
             "--config.optim.learning_rate=0.001"),
            (["train.py", f"--config={test}", "--config.task.dropout_rescale=yes"],
             "error: --config.task.dropout_rescale=yes is not True or False: give "
             "--config.task.dropout_rescale=True or --config.task.dropout_rescale=False")]:
        code, _ = parse(argv, train)
        assert code == 1
        assert capsys.readouterr().err.strip().splitlines() == [line]
    for twice in ([], ["--config=configs/test.py"]):  # evaluate.py takes no file at all
        code, _ = parse(["evaluate.py", "--workdir=w", "--config=configs/default.py", *twice],
                        evaluate_flags)
        assert code == 1
        assert capsys.readouterr().err == (
            "error: evaluate.py takes no --config file: it evaluates with the run's own "
            "config.json; change what it measures with --config.eval.FIELD=VALUE\n")


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections'
def test_a_config_that_is_not_there_is_one_line_naming_the_shipped_one(tmp_path, capsys,
                                                                        monkeypatch):
    """A config's name for its path, and train.py's default config from another folder
    with an override (a KeyError traceback before), are one line; the note says which
    config a run without --config uses."""
    monkeypatch.chdir(ROOT)
    define = lambda fv, a: cli.define_config_flag("configs/default.py", fv, a)  # noqa: E731
    code, _ = parse(["train.py", "--config=default"], define)
    assert code == 1 and capsys.readouterr().err == (
        "error: --config: [Errno 2] No such file or directory: 'default': did you mean "
        "--config=configs/default.py?\n")
    assert cli.default_config_note(["train.py", "--workdir=w"]) == \
        "no --config given: the default, --config=configs/default.py"
    assert cli.default_config_note(["train.py", "--config=configs/test.py"]) is None
    monkeypatch.chdir(tmp_path)  # the default's relative path names nothing here
    code, _ = parse(["train.py", "--config.train.stop_after_steps=5"], define)
    assert code == 1 and capsys.readouterr().err == (
        "error: --config: [Errno 2] No such file or directory: 'configs/default.py': did you "
        f"mean --config={ROOT}/configs/default.py?\n")


REGISTERING_MODULE = tiny_model_source(8, registered_as="tiny_dense") + '''

import jax
import jax.numpy as jnp
import numpy as np

from jaxae import data, objectives


@objectives.LOSSES.register("l1_own")
def l1(logits, targets):
    return jnp.abs(jax.nn.sigmoid(logits) - targets).mean(axis=-1)


@data.DATASETS.register("tiny_arrays")
def tiny_arrays():
    images = np.random.default_rng(0).integers(0, 256, (96, 8, 8, 1), dtype=np.uint8)
    return data.from_arrays(images[:64], images[64:], name="tiny_arrays")
'''

REGISTERING_CONFIG = '''
    import reg_models  # noqa: F401 (registers tiny_dense, l1_own, tiny_arrays)
    from jaxae.configs import test


    def get_config():
        config = test.get_config()
        config.model = {"name": "tiny_dense", "latent_dim": 3}
        config.objective.loss = "l1_own"
        config.data.name = "tiny_arrays"
        config.data.train_size = config.data.test_size = None
        config.train.num_epochs = 1
        return config
'''


def test_a_model_loss_and_data_set_a_module_beside_the_config_registers_evaluate_anywhere(
        entry_points, tmp_path):
    """The config imports its neighbour, which registers short names: train.py finds the
    module from another folder, and config.json names its file for each (a model's, a
    loss's, a data set's), so evaluate.py, with no config file and no import, finds them
    from anywhere."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "reg_models.py").write_text(textwrap.dedent(REGISTERING_MODULE))
    (project / "reg_config.py").write_text(textwrap.dedent(REGISTERING_CONFIG))
    workdir = str(tmp_path / "runs" / "reg")
    trained = entry_points.run(os.path.join(ROOT, "train.py"),
                               "--config=../project/reg_config.py", f"--workdir={workdir}",
                               cwd=str(elsewhere))
    assert trained.returncode == 0, trained.stderr[-2000:]
    with open(os.path.join(workdir, "config.json")) as f:
        recorded = json.load(f)
    module = f"{project}/reg_models.py"
    assert (recorded["model"]["name"], recorded["objective"]["loss"],
            recorded["data"]["name"]) == (f"{module}:tiny_dense", f"{module}:l1_own",
                                          f"{module}:tiny_arrays")
    # (that the run resumes from its short name: test_reliability's library run of it)
    evaluated = entry_points.run(os.path.join(ROOT, "evaluate.py"), f"--workdir={workdir}",
                                 cwd="/")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
        metrics = json.load(f)
    assert (metrics["step"], metrics["test_images"]) == (2, 32)
    # a loss named by its file is found beside the config, as a model's is
    config = base_config()
    config.objective.loss = "reg_models.py:l1"
    locate_code_names(config, str(project / "reg_config.py"))
    assert config.objective.loss == f"{module}:l1"
    assert (config.model.name, config.data.name) == ("dense_ae", "fashion_mnist")


def config_flag(flag_values: flags.FlagValues, argv: list[str]) -> None:
    cli.define_config_flag(None, flag_values, argv)


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections'
def test_none_unsets_a_field_the_config_file_set_and_is_refused_for_one_that_needs_a_value(
        capsys):
    """configs/test.py uses the first 512 training images; `None` asks for all of them."""
    config = f"--config={ROOT}/configs/test.py"
    for unset in (["--config.data.train_size=None"], ["--config.data.train_size", "None"]):
        code, flag_values = parse(["train.py", config, *unset, "--config.seed=3"], config_flag)
        assert code == 0, capsys.readouterr().err
        assert flag_values.config.data.train_size is None
        assert (flag_values.config.data.test_size, flag_values.config.seed) == (256, 3)
    code, _ = parse(["train.py", config, "--config.seed=None"], config_flag)
    assert code == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: --config.seed=None: config.seed needs a value (it is 0)")
    # the last override of a field wins, as with absl; "none" is a value of its own
    code, flag_values = parse(["train.py", config, "--config.data.train_size=None",
                               "--config.data.train_size=100", "--config.data.binarize=none"],
                              config_flag)
    assert code == 0, capsys.readouterr().err
    assert (flag_values.config.data.train_size, flag_values.config.data.binarize) == (100, "none")
    # a model field whose declared default is None (conv_ae's features: from the image size)
    code, flag_values = parse(["train.py", f"--config={ROOT}/configs/conv_ae_folder.py",
                               "--config.model.features=None"], config_flag)
    assert code == 0, capsys.readouterr().err
    assert flag_values.config.model.features is None
    code, _ = parse(["train.py", config, "--config.data.trian_size=None"], config_flag)
    assert code == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: --config.data.trian_size: config.data has no field "
                           "'trian_size'; did you mean 'train_size'? its fields are binarize, ")
    assert line.endswith("and those the data set 'fashion_mnist' declares (none)")
    argv = ["evaluate.py", "--workdir=w", "--config.data.tfds_dir=None"]
    code, flag_values = parse(argv, evaluate_flags)
    assert code == 0
    assert cli.eval_overrides(argv, flag_values) == {"data.tfds_dir": None}


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections'
def test_a_field_the_model_declares_is_overridable_though_the_config_file_leaves_it_out(
        capsys):
    """conv_ae_fashion.py sets no width; conv_ae declares one (default 1)."""
    argv = ["train.py", f"--config={ROOT}/configs/conv_ae_fashion.py", "--config.model.width=2",
            "--config.model.features=(8, 4, 4)"]
    code, flag_values = parse(argv, config_flag)
    assert code == 0, capsys.readouterr().err
    assert flag_values.config.model.width == 2
    assert flag_values.config.model.features == (8, 4, 4)
    argv = ["train.py", f"--config={ROOT}/configs/conv_ae_fashion.py",
            "--config.model.latent_dim=3"]
    code, _ = parse(argv, config_flag)
    assert code == 1
    line = one_line(capsys.readouterr().err)
    assert line == ("error: --config.model.latent_dim: model 'conv_ae' has no field "
                    "'latent_dim'; its fields are conv, features, init, width")
    code, _ = parse([*argv[:2], "--config.model.widht=2"], config_flag)
    assert code == 1
    line = one_line(capsys.readouterr().err)
    assert line == ("error: --config.model.widht: model 'conv_ae' has no field 'widht'; did "
                    "you mean 'width'? its fields are conv, features, init, width")
    # a field the data gives: not "set it in the config file", where it would override them
    code, _ = parse(["train.py", f"--config={ROOT}/configs/cvae.py",
                     "--config.model.num_classes=5"], config_flag)
    assert code == 1
    assert one_line(capsys.readouterr().err) == (
        "error: --config.model.num_classes: a model's num_classes comes from the data set: "
        "leave it out")


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections'
def test_a_section_given_whole_keeps_the_defaults_of_the_fields_it_leaves_out(capsys):
    """--config.objective="{'likelihood': 'gaussian'}" had ended in a traceback (no beta),
    --config.data="{...}" too (no binarize); the model's section stays the model's own."""
    from jaxae import config as config_lib

    argv = ["train.py", f"--config={ROOT}/configs/vae_fashion_2d.py",
            "--config.objective={'likelihood': 'gaussian'}",
            "--config.data={'name': 'npz', 'path': 'x.npz'}", "--config.model={'name': 'vae'}"]
    code, flag_values = parse(argv, config_flag)
    assert code == 0, capsys.readouterr().err
    config = cli.loaded_config(flag_values)
    assert (config.objective.likelihood, config.objective.beta) == ("gaussian", 1.0)
    assert (config.data.binarize, config.data.memory_budget_mb) == ("none", 2048)
    assert dict(config.model) == {"name": "vae"}
    config_lib.validate(config)


OWN_TASK_AND_LIKELIHOOD = '''
    import dataclasses

    import jax
    import jax.numpy as jnp

    from jaxae.tasks import Task


    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Inpaint(Task):
        hole: int = 6

        def corrupt(self, targets, key):
            return targets.at[:, :self.hole, :self.hole].set(0.0)


    @dataclasses.dataclass(frozen=True)
    class Laplace:
        laplace_scale: float = 0.1

        def log_prob(self, logits, targets):
            return -jnp.abs(jax.nn.sigmoid(logits) - targets).sum(-1) / self.laplace_scale
'''


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections'
def test_fields_of_ones_own_task_and_likelihood_and_of_a_whole_model_flag_are_overridable(
        tmp_path, capsys):
    """As a model's: a field a task or likelihood of one's own declares (the config file
    leaves it out) takes a flag; a field a flag adds after a whole section given as a dict
    is told to go inside it (ml_collections refused it as an unknown field)."""
    (tmp_path / "own_parts.py").write_text(textwrap.dedent(OWN_TASK_AND_LIKELIHOOD))
    config = f"--config={ROOT}/configs/vae_fashion_2d.py"
    argv = ["train.py", config, f"--config.task.name={tmp_path}/own_parts.py:Inpaint",
            "--config.task.hole=4", f"--config.objective.likelihood={tmp_path}/own_parts.py:"
            "Laplace", "--config.objective.laplace_scale=0.3"]
    code, flag_values = parse(argv, config_flag)
    assert code == 0, capsys.readouterr().err
    assert (flag_values.config.task.hole, flag_values.config.objective.laplace_scale) == (4, 0.3)
    code, _ = parse([*argv[:3], "--config.task.hoel=4"], config_flag)
    assert code == 1
    assert one_line(capsys.readouterr().err).endswith(
        "own_parts.py:Inpaint' has no field 'hoel'; did you mean 'hole'? its fields are "
        "hole, name")
    code, _ = parse([*argv[:3], "--config.task.binarize_targets=True"], config_flag)
    assert code == 1  # it follows data.binarize: given here, it was recorded and overwritten
    assert one_line(capsys.readouterr().err) == (
        "error: --config.task.binarize_targets: a task's binarize_targets follows "
        "config.data.binarize (dynamic: binarised at every step): set that instead")
    code, _ = parse(["train.py", f"--config={ROOT}/configs/default.py",
                     "--config.objective.delta=0.1"], config_flag)  # a loss takes no options
    assert code == 1
    assert one_line(capsys.readouterr().err) == (
        "error: --config.objective.delta: config.objective has no field 'delta'; did you mean "
        "'beta'? its fields are beta, beta_warmup_steps, gaussian_scale, likelihood, loss, and "
        "those the likelihood 'bernoulli' declares (none); a loss takes no fields: give it its "
        "constants in its own file")
    code, _ = parse(["train.py", config, "--config.model={'name': 'vae'}",
                     "--config.model.latent_dim=3"], config_flag)
    assert code == 1
    assert one_line(capsys.readouterr().err) == (
        "error: --config.model.latent_dim: --config.model=... replaces the whole section, "
        "which then holds only name: give latent_dim inside it, --config.model=\"{..., "
        "'latent_dim': VALUE}\"")


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections'
def test_a_field_override_finds_the_users_model_beside_the_config(tmp_path, monkeypatch,
                                                                  capsys):
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_models.py").write_text(textwrap.dedent(MY_MODELS))
    (project / "my_config.py").write_text(textwrap.dedent(MY_CONFIG))
    monkeypatch.chdir(tmp_path)
    code, _ = parse(["train.py", f"--config={project}/my_config.py", "--config.model.width=3"],
                    config_flag)
    assert code == 1
    line = one_line(capsys.readouterr().err)
    assert line.endswith("my_models.py:DeeperVAE' has no field 'width'; its fields are hidden, "
                         "init, latent_dim"), line


def project_and_here(tmp_path, monkeypatch, config_text: str, models_here: bool) -> tuple:
    """(project, here, the parsed flags): a config and my_models.py in project/, the
    current folder here/ (holding its own my_models.py too, if `models_here`)."""
    project, here = tmp_path / "project", tmp_path / "here"
    for folder in (project, here):
        folder.mkdir()
    for folder in (project, here) if models_here else (project,):
        (folder / "my_models.py").write_text(textwrap.dedent(MY_MODELS))
    (project / "my_config.py").write_text(textwrap.dedent(config_text))
    monkeypatch.chdir(here)
    code, flag_values = parse(["train.py", f"--config={project}/my_config.py"], config_flag)
    assert code == 0
    return project, here, flag_values


def loaded_config_error(flag_values, capsys) -> str:
    """The one line `cli.loaded_config` refuses the flags' config with."""
    with pytest.raises(SystemExit):
        cli.loaded_config(flag_values)
    line = one_line(capsys.readouterr().err)
    return line


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections'
def test_a_model_file_both_beside_the_config_and_in_the_current_folder_is_refused(
        tmp_path, monkeypatch, capsys):
    project, here, flag_values = project_and_here(tmp_path, monkeypatch, MY_CONFIG, True)
    line = loaded_config_error(flag_values, capsys)
    assert line == (f"error: config.model.name: 'my_models.py' is both {project}/my_models.py "
                    f"(beside the config) and {here}/my_models.py (in the current directory): "
                    "name the one you mean by its absolute path")
    os.remove(here / "my_models.py")
    assert cli.loaded_config(flag_values).model.name == f"{project}/my_models.py:DeeperVAE"


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections'
def test_a_model_file_in_neither_place_and_a_section_without_a_name_are_one_line(
        tmp_path, monkeypatch, capsys):
    project, here, flag_values = project_and_here(
        tmp_path, monkeypatch, MY_CONFIG.replace("my_models.py:", "my_modles.py:"), False)
    line = loaded_config_error(flag_values, capsys)
    assert line == (f"error: config.model.name: 'my_modles.py' is neither beside the config "
                    f"({project}/my_modles.py) nor in the current directory ({here}/"
                    "my_modles.py): give its path from one of them, or an absolute one; did you "
                    f"mean '{project}/my_models.py'?")
    for section, names in (("model", "dense_ae, deep_ae, conv_ae, superres, vae, cvae, conv_vae"),
                           ("task", "reconstruct, denoise, superresolve")):
        code, flag_values = parse(["train.py", f"--config={ROOT}/configs/test.py",
                                   f"--config.{section}={{'latent_dim': 3}}"], config_flag)
        assert code == 0
        line = loaded_config_error(flag_values, capsys)  # (and names tests registered)
        assert line.startswith(f"error: config.{section} has no name: set config.{section}.name "
                               f"to one of {names}, ")
        assert line.endswith(", or to 'path/to/file.py:Class'")


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections'
def test_builder_options_and_float_fields_are_overridable_at_their_defaults(tmp_path, capsys):
    argv = ["train.py", f"--config={ROOT}/configs/test.py", "--config.model.name=conv_ae",
            "--config.model.conv=xla", "--config.model.init=lecun"]
    code, flag_values = parse(argv, config_flag)
    assert code == 0, capsys.readouterr().err
    assert (flag_values.config.model.conv, flag_values.config.model.init) == ("xla", "lecun")
    (tmp_path / "scaled.py").write_text(textwrap.dedent('''
        from jaxae.models.autoencoders import DenseAE


        class Scaled(DenseAE):
            scale: float = 1
    '''))
    argv = ["train.py", f"--config={ROOT}/configs/test.py",
            f"--config.model.name={tmp_path}/scaled.py:Scaled", "--config.model.scale=0.5"]
    code, flag_values = parse(argv, config_flag)
    assert code == 0, capsys.readouterr().err
    assert flag_values.config.model.scale == 0.5


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections'
def test_a_leading_tilde_in_a_path_is_the_home_folder(tmp_path, monkeypatch):
    """The shell leaves the `~` of `--workdir=~/runs` and `--config.data.path=~/photos`."""
    from jaxae import config as config_lib
    from jaxae.evaluation import evaluate

    monkeypatch.setenv("HOME", str(tmp_path))
    code, flag_values = parse(["train.py", f"--config={ROOT}/configs/test.py",
                               "--config.data.name=folder", "--config.data.path=~/photos",
                               "--config.data.tfds_dir=~/tfds"], config_flag)
    assert code == 0
    config = cli.loaded_config(flag_values)
    assert (config.data.path, config.data.tfds_dir) == (f"{tmp_path}/photos", f"{tmp_path}/tfds")
    assert cli.user_path("~/runs/a") == f"{tmp_path}/runs/a" and cli.user_path(None) is None
    run_config = config_lib.base_config()
    evaluate.apply_overrides(run_config, {"data.tfds_dir": "~/moved", "eval.num_images": 4})
    assert run_config.data.tfds_dir == f"{tmp_path}/moved"


def test_a_writer_thread_failing_after_the_error_line_prints_no_traceback():
    """A full disk fails the run (its one error line) and Orbax's writer threads with it: their
    own failures, as the process waits for them, are one line each, not more tracebacks;
    another thread's still is a traceback, whole, though all fail at the same moment."""
    script = textwrap.dedent("""
        import threading, time
        from jaxae.cli import exits

        together = threading.Barrier(16)

        def fail(what):
            while threading.excepthook is not exits._quiet_writer_errors:  # the error line is out
                time.sleep(0.01)
            together.wait()
            raise ValueError(what)

        others = [threading.Thread(target=fail, args=("not a writer's",), name=f"worker-{i}")
                  for i in range(8)]
        writers = [threading.Thread(target=fail, args=("RESOURCE_EXHAUSTED: writing",),
                                    name="async_save") for _ in range(8)]
        for thread in others + writers:
            thread.start()
        exits.exit_now_if_stuck(1, grace_s=10)
        for thread in others:
            thread.join()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    lines = done.stderr.splitlines()
    warning = "warning: a checkpoint writer failed too: ValueError: RESOURCE_EXHAUSTED: writing"
    assert lines.count(warning) == 8, done.stderr
    assert done.stderr.count("Traceback") == 8, done.stderr  # the other threads'
    assert sorted(line for line in lines if line.startswith("Exception in thread")) == \
        sorted(f"Exception in thread worker-{i}:" for i in range(8)), done.stderr
    assert lines.count("ValueError: not a writer's") == 8, done.stderr


def test_an_error_exit_leaves_its_one_line_without_a_dropped_coroutine_warning():
    """A failed save leaves Orbax's write coroutines unawaited; dropped as the interpreter
    ends, each would add Python's 'coroutine ... was never awaited' warning (two lines, at
    'sys:1') after the run's one error line."""
    script = textwrap.dedent("""
        from jaxae.cli import exits
        from jaxae.training.checkpoints import CheckpointWriteError

        async def write_fragment():
            pass

        def fails():
            global dropped
            dropped = write_fragment()  # never awaited: destroyed at exit
            raise CheckpointWriteError("could not write the checkpoint at step 14")

        exits.run(fails, entry_point=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["error: could not write the checkpoint at step 14"], \
        done.stderr


def test_jaxae_debug_prints_the_traceback_behind_an_error_line(monkeypatch, capsys):
    """The line replaces the exception it was raised from; JAXAE_DEBUG=1 shows that one."""
    from jaxae.config import ConfigError

    def fails():
        try:
            {}["missing"]
        except KeyError:
            raise ConfigError("config.x is wrong: give y") from None

    monkeypatch.delenv("JAXAE_DEBUG", raising=False)
    with pytest.raises(SystemExit):
        cli.run(fails)
    assert capsys.readouterr().err == "error: config.x is wrong: give y\n"
    monkeypatch.setenv("JAXAE_DEBUG", "1")
    with pytest.raises(SystemExit):
        cli.run(fails)
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in fails" in err
    assert err.endswith("KeyError: 'missing'\nerror: config.x is wrong: give y\n"), err


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections'
def test_none_unsets_a_field_a_likelihood_of_ones_own_declares_with_a_default_of_none(
        tmp_path, capsys):
    """As for a model's and a task's fields: `--config.objective.scale=None` where the
    likelihood declares `scale: float | None = None` (it had said the field needs a value)."""
    (tmp_path / "none_scaled_lik.py").write_text(textwrap.dedent('''
        import dataclasses


        @dataclasses.dataclass(frozen=True)
        class Scaled:
            scale: float | None = None

            def log_prob(self, logits, targets):
                return -abs(logits - targets).sum(-1)
    '''))
    (tmp_path / "cfg.py").write_text(textwrap.dedent('''
        from jaxae.configs import test


        def get_config():
            config = test.get_config()
            config.model = {"name": "vae", "latent_dim": 2}
            config.objective.likelihood = "none_scaled_lik.py:Scaled"
            config.objective.scale = 0.5
            return config
    '''))
    code, flag_values = parse(["train.py", f"--config={tmp_path}/cfg.py",
                               "--config.objective.scale=None"], config_flag)
    assert code == 0, capsys.readouterr().err
    assert flag_values.config.objective.scale is None
    code, _ = parse(["train.py", f"--config={tmp_path}/cfg.py", "--config.objective.beta=None"],
                    config_flag)
    assert code == 1 and "config.objective.beta needs a value" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["jaxae.experiments.__main__", "jaxae.data.mnist5k",
                                     "jaxae.data.photo_crops"])
def test_a_module_commands_bad_option_is_one_line(command, capsys):
    """argparse would print the whole usage above the error: one line names the problem."""
    module = importlib.import_module(command)
    with pytest.raises(SystemExit) as exited:
        module.main(["--no-such-option"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"python -m {command.removesuffix('.__main__')}: error: ") and \
        "--help lists every option" in err, err
