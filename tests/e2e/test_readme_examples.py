"""The README's Python examples run as written, against the installed wheel."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ROOT, Server

pytestmark = pytest.mark.e2e


def readme_example(name: str) -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- tested: {name} -->\n```python\n(.*?)```", readme, re.DOTALL)
    assert match, f"README has no example marked {name}"
    return match.group(1)


def test_service_bootstrap_example_starts_in_order_and_stops_in_reverse_on_sigterm(
    installed_bin: Path, tmp_path: Path
) -> None:
    script = tmp_path / "bootstrap_example.py"
    script.write_text(readme_example("service-bootstrap"))
    process = subprocess.Popen(
        [str(installed_bin / "python"), str(script)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    lines = [process.stdout.readline().strip(), process.stdout.readline().strip()]
    assert lines == ["cache started", "mailer started"]
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=10)
    assert rest.split() == ["mailer", "stopped", "cache", "stopped"]
    assert process.returncode == 0


def test_basic_server_setup_example_serves_its_own_router(
    installed_bin: Path, tmp_path: Path
) -> None:
    script = tmp_path / "server_example.py"
    script.write_text(readme_example("basic-server-setup"))
    server = Server(
        [str(installed_bin / "python"), str(script)],
        cwd=tmp_path,
        env={"DATA_DIR": str(tmp_path / "data"), "AUTO_MIGRATE": "false"},
    )
    # The example does not migrate (the CLI does); migrate first as an operator would.
    subprocess.run(
        [str(installed_bin / "workflow-engine"), "migrate"],
        cwd=tmp_path, env={"DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"},
        check=True, capture_output=True,
    )  # fmt: skip
    server.start()
    assert httpx.get(f"{server.url}/api/v1/orders/count").json() == {"orders": 0}
    assert httpx.get(f"{server.url}/health/detailed").status_code == 200
    assert server.stop() == 0


def test_node_module_example_lets_definitions_use_its_node(
    server_factory: type[Server], tmp_path: Path
) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "acme_nodes.py").write_text(readme_example("node-module"))
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "lookup.yaml").write_text(
        "name: customer_lookup\nsteps:\n  - id: find\n    uses: crm.lookup\n"
        "    with: {email: '{{ input.email }}'}\n"
    )
    server = server_factory(env={
        "PYTHONPATH": str(modules), "NODE_MODULES": "acme_nodes", "WORKFLOWS_DIR": str(flows),
    })  # fmt: skip
    server.start()  # a definition using crm.lookup is valid only once the module registered it
    detailed = httpx.get(f"{server.url}/health/detailed", timeout=5).json()
    workflows = {s["name"]: s for s in detailed["services"]}["workflows"]
    # the three templates (order_summary, customer_support, knowledge_base) and customer_lookup
    assert workflows["data"] == {"workflows": 4}
