"""A wheel install works away from the repository: the recipes ship inside the package.

Builds the wheel from a copy of the sources (no network: no build isolation), installs it without
dependencies into a fresh virtualenv that borrows the test environment's site-packages for them,
then runs `slsearch --help` and looks recipes up by name from an unrelated folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}  # nothing of the repo
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, env=env, **kw)
    assert r.returncode == 0, f"{args}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


@pytest.mark.slow
def test_wheel_install_finds_recipes_from_any_folder(tmp_path):
    # build from a copy, so the build leaves nothing (build/, egg-info) in the working tree
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "slsearch", src / "slsearch", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--disable-pip-version-check", "-q", "-w", dist, src])
    (wheel,) = dist.glob("slsearch-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # dependencies (torch, typer, ...) come from this environment's site-packages, after the venv's own;
    # a plain path line: the editable install's own .pth files there are not processed
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "-q", wheel])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = _run([env_dir / "bin" / "slsearch", "--help"], cwd=elsewhere)
    assert "train" in r.stdout and "demo" in r.stdout
    check = (
        "import slsearch, slsearch.demo as d\n"
        "from slsearch.training.recipe import find_recipe, load_recipe, recipe_names\n"
        "print(slsearch.__file__)\n"
        "assert {'cpu', 'demo', 'tiny', 'translate'} <= set(recipe_names()), recipe_names()\n"
        "assert load_recipe('cpu').train.epochs >= 1 and find_recipe(d.DEMO_RECIPE).name == 'demo.toml'\n"
        "print(find_recipe('cpu'))\n"
    )
    r = _run([py, "-c", check], cwd=elsewhere)
    module, cpu = r.stdout.split()
    assert Path(module).is_relative_to(env_dir) and Path(cpu).is_relative_to(env_dir), r.stdout
