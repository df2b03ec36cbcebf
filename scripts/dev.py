#!/usr/bin/env python3
"""Install, run and test workflow-engine with nothing but Python 3.11+.

    python3 scripts/dev.py run     # install into .venv, then serve on the embedded default
    python3 scripts/dev.py test    # install into .venv, then ruff, mypy and pytest

The virtual environment is built from `uv.lock`, so every machine gets the same versions.
uv itself is installed from PyPI into the environment at a pinned version: the only thing a
machine needs beforehand is Python. Standard library only, so it runs before anything is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

UV_VERSION = "0.13.8"
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    completed = subprocess.run([str(a) for a in args], cwd=ROOT, env=env, check=False)
    if completed.returncode != 0:
        sys.exit(completed.returncode)


def install() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"workflow-engine needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"creating {VENV.relative_to(ROOT)} with {sys.executable}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    uv = BIN / "uv"
    if not uv.exists() or f"uv {UV_VERSION}" not in _output(uv, "--version"):
        _run(BIN / "python", "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}")
    env = dict(os.environ, UV_PROJECT_ENVIRONMENT=str(VENV), UV_PYTHON_DOWNLOADS="never")
    # --inexact keeps uv itself (and pip) in the environment; --locked fails if uv.lock is stale.
    _run(uv, "sync", "--locked", "--inexact", "--all-extras", "--quiet", env=env)


def _output(*args: str | Path) -> str:
    try:
        return subprocess.run([str(a) for a in args], capture_output=True, text=True).stdout
    except OSError:
        return ""


def run(extra: list[str]) -> None:
    install()
    os.chdir(ROOT)
    exe = BIN / "workflow-engine"
    os.execv(exe, [str(exe), "serve", *extra])


def test(extra: list[str]) -> None:
    install()
    _run(BIN / "ruff", "check", ".")
    _run(BIN / "ruff", "format", "--check", ".")
    _run(BIN / "mypy")
    # pytest replaces this process, so a signal sent to it (Ctrl-C, a CI timeout) reaches
    # the tests instead of orphaning them.
    os.chdir(ROOT)
    python = BIN / "python"
    os.execv(python, [str(python), "-m", "pytest", *extra])


def main() -> None:
    command, extra = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if command == "install":
        install()
    elif command == "run":
        run(extra)
    elif command == "test":
        test(extra)
    else:
        sys.exit("usage: python3 scripts/dev.py {install|run|test} [args...]")


if __name__ == "__main__":
    main()
