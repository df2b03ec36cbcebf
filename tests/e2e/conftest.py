"""End-to-end: the real `workflow-engine` command, installed from a freshly built wheel.

Installing the wheel (not the source tree) proves that migrations, Swagger assets and every
other data file really ship in the package: an editable install would find them in the source
tree even if the wheel left them out (pitfall 13 in docs/architecture.md).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from workflow_engine.config import Settings

ROOT = Path(__file__).resolve().parents[2]
# Where examples marked `<!-- tested: name -->` live: the README and the pages of docs/.
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def documented_markers() -> set[str]:
    """The names of every `<!-- tested: name -->` marker (a line of its own) in the README and
    docs/."""
    marker = re.compile(r"^<!-- tested: ([\w-]+) -->$", re.MULTILINE)
    return {name for doc in DOCUMENTS for name in marker.findall(doc.read_text())}


def documented_block(name: str, language: str = "python") -> str:
    """The code block right after `<!-- tested: name -->`: exactly one in the README and docs/."""
    pattern = re.compile(
        rf"^<!-- tested: {re.escape(name)} -->\n```{language}\n(.*?)```", re.DOTALL | re.MULTILINE
    )
    found = [match.group(1) for doc in DOCUMENTS for match in pattern.finditer(doc.read_text())]
    assert len(found) == 1, f"{len(found)} {language} blocks marked {name} in the README and docs/"
    return found[0]


def clean_environment() -> dict[str, str]:
    """The test's environment without any setting of ours, so that a developer's own
    DATABASE_URL or config file never leaks into a test server."""
    ours = {name.upper() for name in Settings.model_fields} | {"CONFIG_FILE"}
    return {k: v for k, v in os.environ.items() if k.upper() not in ours}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process on a free port; stopped (SIGTERM) when the test ends."""

    args: list[str]
    cwd: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    log_file: Path = Path("/dev/null")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> Server:
        env = dict(clean_environment(), **self.env, PORT=str(self.port))
        # A file, not a pipe: a busy server fills a pipe nobody reads and then blocks on it.
        self.log_file = self.cwd / f"server-{self.port}.log"
        with self.log_file.open("w") as log:
            self.process = subprocess.Popen(
                self.args, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
        if wait:
            self.wait_until_healthy()
        return self

    def wait_until_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"server not healthy within {timeout} s:\n{self.output()}")

    def stop(self, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def output(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""


@pytest.fixture
def server_factory(installed_bin: Path, tmp_path: Path) -> Iterator[type[Server]]:
    started: list[Server] = []

    class _Server(Server):
        def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
            command = list(args) or ["serve"]
            super().__init__(
                [str(installed_bin / "workflow-engine"), *command],
                cwd=tmp_path,
                env={"DATA_DIR": str(tmp_path / "data"), "LOG_FORMAT": "json", **(env or {})},
            )
            started.append(self)

    yield _Server
    for server in started:
        if server.process and server.process.poll() is None:
            server.stop()


def run_cli(installed_bin: Path, *args: str, cwd: Path, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [str(installed_bin / "workflow-engine"), *args], cwd=cwd, capture_output=True,
        text=True, timeout=60, env=dict(clean_environment(), **(env or {})),
    )  # fmt: skip
