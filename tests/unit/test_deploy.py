"""The monitoring stack's files parse, and the dashboard asks only for metrics we export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
# Read from the database at scrape time (api/metrics.py), not in the process registry.
SCRAPE_TIME = {
    "workflow_queue_tasks", "workflow_queue_oldest_ready_age_seconds", "workflow_runs_active",
    "registry_services", "workflow_engine_database_facts_up",
}  # fmt: skip
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "clamp_min", "max", "le"}


def exported_names() -> set[str]:
    import workflow_engine.observability.metrics  # noqa: F401  (registers them)

    names = set(SCRAPE_TIME)
    for family in REGISTRY.collect():
        names.update(sample.name for sample in family.samples)
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names.update(f"{family.name}_{part}" for part in ("bucket", "count", "sum"))
    return names


def test_compose_and_prometheus_files_parse_and_agree() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"postgres", "redis", "api", "worker", "prometheus", "grafana"} <= set(
        compose["services"]
    )
    worker = compose["services"]["worker"]["command"]
    port = worker[worker.index("--metrics-port") + 1]
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in scrape["scrape_configs"]
    }
    assert targets == {"workflow-engine-api": ["api:8080"],
                       "workflow-engine-worker": [f"worker:{port}"]}  # fmt: skip
    for path in (ROOT / "deploy/grafana/provisioning").rglob("*.yml"):
        assert yaml.safe_load(path.read_text())["apiVersion"] == 1


def test_the_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/workflow-engine.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 10
    used = set()
    for expr in exprs:
        without_labels = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"|\b\d[\d.]*(e-?\d+)?", "", expr)
        used |= set(re.findall(r"[a-z_][a-z0-9_]*", without_labels)) - PROMQL_WORDS
    used -= {"status", "workflow", "node", "outcome", "state", "route", "provider", "model",
             "kind", "server"}  # fmt: skip
    missing = used - exported_names()
    assert not missing, missing
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("runs", "failure", "latency", "queue", "rate limit", "llm cost"):
        assert topic in titles
