"""`workflow-engine runs ...` and `templates list` (the installed command) against a real
server: trigger with --wait, follow logs, cancel; `--output json` is JSON for every command;
credentials from the environment or a profile; a bad credential exits 1 with the problem's
title on stderr."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, run_cli
from tests.e2e.test_client import ADMIN, DRIP, LOGIN, NODES, ORDER, TICKET, _api_key

pytestmark = pytest.mark.e2e

UNLIMITED = {
    "RATE_LIMIT_PER_MINUTE": "1000000", "RATE_LIMIT_BURST": "100000",
    "RATE_LIMIT_TENANT_PER_MINUTE": "1000000", "RATE_LIMIT_TENANT_BURST": "100000",
    "RATE_LIMIT_ENDPOINTS": "{}",
}  # fmt: skip


def test_the_remote_cli_drives_a_real_server(
    server_factory: type[Server], installed_bin: Path, tmp_path: Path
) -> None:
    modules, flows = tmp_path / "modules", tmp_path / "flows"
    modules.mkdir()
    flows.mkdir()
    (modules / "e2e_nodes.py").write_text(NODES)
    (flows / "drip.yaml").write_text(DRIP)
    server = server_factory(env={
        **ADMIN, **UNLIMITED, "PYTHONPATH": str(modules), "NODE_MODULES": "e2e_nodes",
        "WORKFLOWS_DIR": str(flows),
    }).start()  # fmt: skip
    login = {"WORKFLOW_ENGINE_URL": server.url, "WORKFLOW_ENGINE_EMAIL": LOGIN["email"],
             "WORKFLOW_ENGINE_PASSWORD": LOGIN["password"]}  # fmt: skip
    operator = {"WORKFLOW_ENGINE_URL": server.url,
                "WORKFLOW_ENGINE_API_KEY": _api_key(server.url, "operator")}  # fmt: skip

    def cli(*args: str, env: dict[str, str] = operator) -> subprocess.CompletedProcess[str]:
        done = run_cli(installed_bin, *args, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        return done

    def as_json(*args: str) -> object:
        return json.loads(cli(*args, "--output", "json").stdout)

    # Trigger and wait, with the input from a file: the outcome, as text and as JSON.
    (tmp_path / "order.json").write_text(json.dumps(ORDER))
    done = cli("runs", "trigger", "order_summary", "--data", "@order.json", "--wait", "30",
               env=login)  # fmt: skip
    first, *rest = done.stdout.splitlines()
    run_id, name, version, status = first.split()
    assert (name, version, status) == ("order_summary", "v1", "completed")
    assert json.loads("\n".join(rest))["total"] == 12.5
    finished = as_json("runs", "trigger", "order_summary", "--data", json.dumps(ORDER),
                       "--wait", "30")  # fmt: skip
    assert isinstance(finished, dict)
    assert finished["status"] == "completed"
    assert finished["output"]["total"] == 12.5

    # Every command's JSON parses, and says what the text says.
    status_json = as_json("runs", "status", run_id)
    assert isinstance(status_json, dict)
    assert status_json["status"] == "completed"
    results_json = as_json("runs", "results", run_id)
    assert isinstance(results_json, dict)
    assert results_json["output"]["total"] == 12.5
    templates_json = as_json("templates", "list")
    assert isinstance(templates_json, list)
    assert {"order_summary", "drip"} <= {t["name"] for t in templates_json}
    assert "order_summary" in cli("templates", "list").stdout
    assert " completed " in cli("runs", "status", run_id).stdout.splitlines()[0] + " "
    logs_json = as_json("runs", "logs", run_id)
    assert isinstance(logs_json, list)
    assert logs_json[-1]["message"] == "run completed"

    # Follow a running run's log to its end, as text and as one JSON array.
    drip = as_json("runs", "trigger", "drip")
    assert isinstance(drip, dict)
    followed = cli("runs", "logs", drip["workflow_id"], "--follow").stdout.splitlines()
    assert followed[-1].endswith("run completed")
    assert sum("drop " in line for line in followed) == 15
    entries = as_json("runs", "logs", drip["workflow_id"], "--follow")
    assert isinstance(entries, list)
    assert [e["message"] for e in entries] == [line.split(maxsplit=2)[2].split("] ")[-1]
                                               for line in followed]  # fmt: skip
    assert len({e["id"] for e in entries}) == len(entries)

    # Cancel a run that waits for an approval.
    waiting = {**TICKET, "require_approval": True}
    doomed = as_json("runs", "trigger", "customer_support", "--data", json.dumps(waiting))
    assert isinstance(doomed, dict)
    cancelled = as_json("runs", "cancel", doomed["workflow_id"])
    assert isinstance(cancelled, dict)
    assert cancelled["status"] in ("cancelling", "cancelled")
    ended = cli("runs", "logs", doomed["workflow_id"], "--follow").stdout.splitlines()
    assert ended[-1].endswith("run cancelled")
    assert "cancelled" in cli("runs", "results", doomed["workflow_id"]).stdout

    # A profile instead of the environment.
    profiles = tmp_path / "config" / "workflow-engine" / "profiles.toml"
    profiles.parent.mkdir(parents=True)
    profiles.write_text(
        f'[staging]\nurl = "{server.url}"\napi_key = "{operator["WORKFLOW_ENGINE_API_KEY"]}"\n'
    )
    by_profile = run_cli(installed_bin, "runs", "status", run_id, "--profile", "staging",
                         "-o", "json", cwd=tmp_path,
                         env={"XDG_CONFIG_HOME": str(tmp_path / "config")})  # fmt: skip
    assert by_profile.returncode == 0, by_profile.stderr
    assert json.loads(by_profile.stdout)["workflow_id"] == run_id

    # Errors: exit 1, the problem's title on stderr, nothing on stdout.
    for credential in ({"WORKFLOW_ENGINE_PASSWORD": "not-the-password"},
                       {"WORKFLOW_ENGINE_API_KEY": "wek_forged_key"}):  # fmt: skip
        env = {**(login if "WORKFLOW_ENGINE_PASSWORD" in credential else operator), **credential}
        refused = run_cli(installed_bin, "runs", "status", run_id, "-o", "json", cwd=tmp_path,
                          env=env)  # fmt: skip
        assert refused.returncode == 1
        assert refused.stdout == ""
        assert refused.stderr.startswith("workflow-engine: Unauthorized: ")
    unknown = run_cli(installed_bin, "runs", "status", "00000000-0000-0000-0000-000000000000",
                      cwd=tmp_path, env=operator)  # fmt: skip
    assert (unknown.returncode, unknown.stderr.split(":")[1].strip()) == (1, "Not Found")
    bad_data = run_cli(installed_bin, "runs", "trigger", "order_summary", "--data", "[1]",
                       cwd=tmp_path, env=operator)  # fmt: skip
    assert bad_data.returncode == 2
    assert "JSON object" in bad_data.stderr
