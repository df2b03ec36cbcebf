"""The Python examples of the docs run as written, against the installed wheel."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server, clean_environment, documented_block, documented_markers

pytestmark = pytest.mark.e2e

# Every `<!-- tested: name -->` marker in the README and docs/, each read by a test: a marker
# no test reads would promise a check that never happens.
TESTED = {
    "service-bootstrap",  # the tests below
    "basic-server-setup",
    "node-module",
    "engine-in-process",
    "customer-support-demo",  # test_customer_support_demo.py
    "client-example",
}


def test_every_marked_example_is_one_a_test_runs() -> None:
    assert documented_markers() == TESTED


def test_service_bootstrap_example_starts_in_order_and_stops_in_reverse_on_sigterm(
    installed_bin: Path, tmp_path: Path
) -> None:
    script = tmp_path / "bootstrap_example.py"
    script.write_text(documented_block("service-bootstrap"))
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
    script.write_text(documented_block("basic-server-setup"))
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
    (modules / "acme_nodes.py").write_text(documented_block("node-module"))
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
    # the four templates (order_summary, customer_support, knowledge_base, support_agent) and
    # customer_lookup
    assert workflows["data"] == {"workflows": 5}


def test_engine_in_process_example_runs_a_workflow_without_the_server(
    installed_bin: Path, tmp_path: Path
) -> None:
    script = tmp_path / "engine_example.py"
    script.write_text(documented_block("engine-in-process"))
    done = subprocess.run(
        [str(installed_bin / "python"), str(script)], capture_output=True, text=True,
        timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "True completed HELLO ADA, BYE"


def test_client_example_triggers_and_waits_for_the_seeds_workflow(
    server_factory: type[Server], installed_bin: Path, tmp_path: Path
) -> None:
    server = server_factory().start()
    created = subprocess.run(
        [str(installed_bin / "workflow-engine"), "users", "create", "--email", "user@example.com",
         "--role", "operator", "--password-stdin", "--allow-weak-password"],
        input="password\n", capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env=dict(clean_environment(), DATA_DIR=str(tmp_path / "data")),
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    script = tmp_path / "client_example.py"
    script.write_text(documented_block("client-example").replace("http://localhost:8080",
                                                                 server.url))  # fmt: skip
    done = subprocess.run([str(installed_bin / "python"), str(script)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "completed order"
