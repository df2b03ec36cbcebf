"""Settings: seed names and defaults, precedence env > config.toml > default, precise errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from workflow_engine.config import (
    TOML_KEYS,
    ConfigError,
    Settings,
    development_jwt_secret,
    effective_settings,
    load_settings,
)
from workflow_engine.config.settings import (
    EndpointLimit,
    LLMBudget,
    LLMPrice,
    MCPServerSettings,
)
from workflow_engine.integrations.mcp import mcp_server_configs

CONFIGURATION_DOC = Path(__file__).parents[2] / "docs" / "configuration.md"

# field -> (value written in config.toml, value given as an env var, expected from each)
SAMPLES: dict[str, tuple[Any, str, Any, Any]] = {
    "host": ("0.0.0.0", "10.1.2.3", "0.0.0.0", "10.1.2.3"),
    "port": (9000, "9001", 9000, 9001),
    "environment": ("production", "development", "production", "development"),
    "data_dir": ("/srv/a", "/srv/b", Path("/srv/a"), Path("/srv/b")),
    "shutdown_timeout": (5, "7.5", 5.0, 7.5),
    "cors_origins": (
        ["https://a.example"],
        "https://b.example, https://c.example",
        ["https://a.example"],
        ["https://b.example", "https://c.example"],
    ),
    "max_body_bytes": (2048, "4096", 2048, 4096),
    "database_url": (
        "postgresql://user:pass@localhost/workflow_db",
        "sqlite:///tmp/x.db",
        "postgresql://user:pass@localhost/workflow_db",
        "sqlite:///tmp/x.db",
    ),
    "db_max_connections": (20, "30", 20, 30),
    "db_connection_timeout": (5, "6", 5.0, 6.0),
    "auto_migrate": (False, "true", False, True),
    "jwt_secret": ("file-secret", "env-secret", "file-secret", "env-secret"),
    "jwt_expiration": (600, "900", 600, 900),
    "jwt_refresh_expiration": (86400, "172800", 86400, 172800),
    "jwt_algorithm": ("ES256", "RS256", "ES256", "RS256"),
    "jwt_private_key_file": (
        "/keys/a.pem",
        "/keys/b.pem",
        Path("/keys/a.pem"),
        Path("/keys/b.pem"),
    ),
    "jwt_issuer": ("issuer-a", "issuer-b", "issuer-a", "issuer-b"),
    "jwt_audience": ("aud-a", "aud-b", "aud-a", "aud-b"),
    "jwt_leeway": (10, "20", 10, 20),
    "bootstrap_admin_email": ("a@example.com", "b@example.com", "a@example.com", "b@example.com"),
    "bootstrap_admin_password": ("file-pw", "env-pw", "file-pw", "env-pw"),
    "password_hash_time_cost": (2, "4", 2, 4),
    "password_hash_memory_kib": (2048, "4096", 2048, 4096),
    "password_hash_parallelism": (1, "2", 1, 2),
    "login_backoff_after": (3, "4", 3, 4),
    "login_backoff_base_seconds": (0.5, "0.25", 0.5, 0.25),
    "login_backoff_max_seconds": (60, "120", 60.0, 120.0),
    "login_account_failure_limit": (20, "30", 20, 30),
    "login_account_window_seconds": (600, "1200", 600.0, 1200.0),
    "login_account_lock_seconds": (300, "450", 300.0, 450.0),
    "snapshot_every": (50, "200", 50, 200),
    "event_seal_interval": (5.0, "30", 5.0, 30.0),
    "event_partitions": (4, "8", 4, 8),
    "trigger_wait_max_seconds": (30, "0.5", 30.0, 0.5),
    "worker_enabled": (False, "true", False, True),
    "worker_concurrency": (4, "8", 4, 8),
    "worker_lease_seconds": (5, "2.5", 5.0, 2.5),
    "worker_max_claims": (10, "30", 10, 30),
    "max_running_per_tenant": (10, "3", 10, 3),
    "tenant_weights": (
        {"acme": 3},
        '{"acme": 2, "globex": 5}',
        {"acme": 3},
        {"acme": 2, "globex": 5},
    ),
    "workflow_env": (["REGION"], "REGION, TIER", ["REGION"], ["REGION", "TIER"]),
    "http_allowed_hosts": (
        ["api.example.com"],
        "*.example.com, *",
        ["api.example.com"],
        ["*.example.com", "*"],
    ),
    "http_max_response_bytes": (2048, "4096", 2048, 4096),
    "workflows_dir": ("/srv/flows", "/srv/other", Path("/srv/flows"), Path("/srv/other")),
    "node_modules": (
        ["acme.nodes"],
        "acme.crm, acme.billing",
        ["acme.nodes"],
        ["acme.crm", "acme.billing"],
    ),
    "rate_limit_per_minute": (120, "240", 120, 240),
    "rate_limit_tenant_per_minute": (300, "400", 300, 400),
    "rate_limit_tenant_burst": (50, "60", 50, 60),
    "rate_limit_endpoints": (
        {"GET /x": {"requests_per_minute": 5, "burst_size": 2}},
        '{"GET /y/{id}": {"requests_per_minute": 6, "burst_size": 3}}',
        {"GET /x": EndpointLimit(requests_per_minute=5, burst_size=2)},
        {"GET /y/{id}": EndpointLimit(requests_per_minute=6, burst_size=3)},
    ),
    "rate_limit_storage_url": (
        "redis://a:6379/0",
        "redis://b:6379/1",
        "redis://a:6379/0",
        "redis://b:6379/1",
    ),
    "rate_limit_fail_open": (False, "true", False, True),
    "trusted_proxies": (
        ["10.0.0.0/8"],
        "192.168.0.0/16, 127.0.0.1",
        ["10.0.0.0/8"],
        ["192.168.0.0/16", "127.0.0.1"],
    ),
    "rate_limit_burst": (20, "40", 20, 40),
    "metrics_enabled": (False, "true", False, True),
    "metrics_token": ("file-token", "env-token", "file-token", "env-token"),
    "worker_metrics_port": (9101, "9102", 9101, 9102),
    "llm_prices": (
        {"m1": {"input_per_million": 1, "output_per_million": 2}},
        '{"m2": {"input_per_million": 0.5, "output_per_million": 1.5}}',
        {"m1": LLMPrice(input_per_million=1, output_per_million=2)},
        {"m2": LLMPrice(input_per_million=0.5, output_per_million=1.5)},
    ),
    "tracing_enabled": (False, "1", False, True),
    "log_level": ("debug", "WARN", "debug", "warning"),
    "log_format": ("json", "console", "json", "console"),
    "mcp_servers": (
        {"crm": {"url": '"https://crm.example.com/mcp"', "timeout_seconds": 5}},
        '{"crm": {"transport": "stdio", "command": "crm-mcp", "args": ["--ro"]}}',
        {"crm": MCPServerSettings(url="https://crm.example.com/mcp", timeout_seconds=5)},
        {"crm": MCPServerSettings(transport="stdio", command="crm-mcp", args=["--ro"])},
    ),
    "demo_services": (False, "true", False, True),
    "mcp_server_enabled": (False, "true", False, True),
    "mcp_tool_wait_seconds": (5, "0.5", 5.0, 0.5),
    "llm_provider": ("openai", "anthropic", "openai", "anthropic"),
    "llm_model": ("file-model", "env-model", "file-model", "env-model"),
    "llm_base_url": (
        "http://llm.internal:8000/v1",
        "http://localhost:11434/v1",
        "http://llm.internal:8000/v1",
        "http://localhost:11434/v1",
    ),
    "llm_api_key": ("sk-file", "sk-env", "sk-file", "sk-env"),
    "anthropic_api_key": ("sk-ant-file", "sk-ant-env", "sk-ant-file", "sk-ant-env"),
    "anthropic_base_url": (
        "https://llm-gateway.internal/anthropic",
        "http://localhost:9000",
        "https://llm-gateway.internal/anthropic",
        "http://localhost:9000",
    ),
    "llm_timeout_seconds": (30, "12.5", 30.0, 12.5),
    "llm_max_retries": (4, "0", 4, 0),
    "llm_token_budget_per_day": (100000, "0", 100000, 0),
    "llm_cost_budget_per_day": (5, "2.5", 5.0, 2.5),
    "llm_tenant_budgets": (
        {"acme": {"token_budget_per_day": 1000}},
        '{"beta": {"cost_budget_per_day": 0.5}}',
        {"acme": LLMBudget(token_budget_per_day=1000)},
        {"beta": LLMBudget(cost_budget_per_day=0.5)},
    ),
    "registry_allowed_networks": (
        ["10.0.0.0/8"],
        "192.168.0.0/16, fd00::/8",
        ["10.0.0.0/8"],
        ["192.168.0.0/16", "fd00::/8"],
    ),
    "registry_check_interval_seconds": (30, "2.5", 30.0, 2.5),
    "registry_check_timeout_seconds": (3, "1", 3.0, 1.0),
    "registry_healthy_threshold": (3, "1", 3, 1),
    "registry_unhealthy_threshold": (4, "5", 4, 5),
    "registry_expired_grace_seconds": (60, "0", 60.0, 0.0),
    "registry_check_history": (20, "1", 20, 1),
    "ui_enabled": (False, "true", False, True),
    "notion_mcp_url": (
        "http://localhost:8002",
        "http://n:1",
        "http://localhost:8002",
        "http://n:1",
    ),
    "slack_mcp_url": ("http://localhost:8003", "http://s:1", "http://localhost:8003", "http://s:1"),
    "helpscout_mcp_url": (
        "http://localhost:8001",
        "http://h:1",
        "http://localhost:8001",
        "http://h:1",
    ),
}


# Settings that are only valid together with another one.
PARTNERS = {
    "jwt_algorithm": {"JWT_PRIVATE_KEY_FILE": "/keys/k.pem"},
    "environment": {"JWT_SECRET": "s" * 32},
    "bootstrap_admin_email": {"BOOTSTRAP_ADMIN_PASSWORD": "pw"},
    "bootstrap_admin_password": {"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com"},
    "event_partitions": {"DATABASE_URL": "postgresql://localhost/workflow_db"},
}


def _value(settings: Settings, field: str) -> Any:
    value = getattr(settings, field)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _toml(section: str, key: str, value: Any) -> str:
    if isinstance(value, dict) and not all(isinstance(v, dict) for v in value.values()):
        inline = ", ".join(f'"{name}" = {v}' for name, v in value.items())
        return f"[{section}]\n{key} = {{ {inline} }}\n"
    if isinstance(value, dict):  # nested tables: [section.key."name"]
        return "".join(
            f'[{section}.{key}."{name}"]\n' + "".join(f"{k} = {v}\n" for k, v in table.items())
            for name, table in value.items()
        )
    if isinstance(value, bool):
        rendered = "true" if value else "false"
    elif isinstance(value, str):
        rendered = f'"{value}"'
    elif isinstance(value, list):
        rendered = "[" + ", ".join(f'"{v}"' for v in value) + "]"
    else:
        rendered = str(value)
    return f"[{section}]\n{key} = {rendered}\n"


def test_every_setting_has_a_sample() -> None:
    assert set(SAMPLES) == set(TOML_KEYS.values())


def test_defaults_are_the_seeds() -> None:
    settings, _ = load_settings({})
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.rate_limit_per_minute == 60
    assert settings.rate_limit_burst == 10
    assert settings.db_max_connections == 10
    assert settings.db_connection_timeout == 30
    assert settings.jwt_expiration == 3600
    assert settings.jwt_refresh_expiration == 604800
    assert settings.metrics_enabled is True
    assert settings.tracing_enabled is True
    assert settings.log_level == "info"
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.shutdown_timeout == 30
    assert settings.is_sqlite
    assert str(settings.effective_database_url).endswith("/data/workflow-engine.db")


@pytest.mark.parametrize(("section", "key"), sorted(TOML_KEYS))
def test_file_overrides_default_and_env_overrides_file(
    section: str, key: str, tmp_path: Path
) -> None:
    field = TOML_KEYS[(section, key)]
    file_value, env_value, expected_from_file, expected_from_env = SAMPLES[field]
    config = tmp_path / "config.toml"
    config.write_text(_toml(section, key, file_value))
    base = {"CONFIG_FILE": str(config), **PARTNERS.get(field, {})}

    from_file, source = load_settings(base)
    assert _value(from_file, field) == expected_from_file
    assert field in source.from_file

    from_env, source = load_settings({**base, field.upper(): env_value})
    assert _value(from_env, field) == expected_from_env
    assert field in source.from_env
    assert field not in source.from_file


def test_config_toml_in_working_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.toml").write_text("[server]\nport = 9100\n")
    monkeypatch.chdir(tmp_path)
    settings, source = load_settings({})
    assert settings.port == 9100
    assert source.config_file == Path("config.toml")


def test_seed_config_toml_loads_as_written(tmp_path: Path) -> None:
    seed = """
[server]
host = "0.0.0.0"
port = 8080

[database]
url = "postgresql://user:pass@localhost/workflow_db"
max_connections = 10
connection_timeout = 30

[auth]
jwt_secret = "your-secret-key"
jwt_expiration = 3600
refresh_expiration = 604800

[rate_limiting]
requests_per_minute = 60
burst_size = 10

[monitoring]
metrics_enabled = true
tracing_enabled = true
log_level = "info"

[services]
notion_mcp_url = "http://localhost:8002"
slack_mcp_url = "http://localhost:8003"
helpscout_mcp_url = "http://localhost:8001"
"""
    config = tmp_path / "config.toml"
    config.write_text(seed)
    settings, _ = load_settings({"CONFIG_FILE": str(config)})
    assert settings.effective_database_url.drivername == "postgresql+asyncpg"
    assert settings.effective_database_url.database == "workflow_db"
    assert settings.notion_mcp_url == "http://localhost:8002"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"PORT": "eighty"}, r"^PORT='eighty': Input should be a valid integer"),
        ({"PORT": "70000"}, r"^PORT='70000': Input should be less than or equal to 65535"),
        ({"DATABASE_URL": "mysql://x/y"}, r"^DATABASE_URL='mysql://x/y': unsupported database"),
        ({"DATABASE_URL": "not a url"}, r"^DATABASE_URL='not a url': not a database URL"),
        (
            {"DATABASE_URL": "postgresql://u:hunter2@h"},
            r"^DATABASE_URL='postgresql://u:\*\*\*@h': a PostgreSQL URL needs a database name",
        ),
        ({"LOG_LEVEL": "loud"}, r"^LOG_LEVEL='loud': Input should be 'trace', 'debug'"),
        ({"CORS_ORIGINS": "nope"}, r"^CORS_ORIGINS='nope': 'nope' is not an origin"),
        ({"SLACK_MCP_URL": "ftp://x"}, r"^SLACK_MCP_URL='ftp://x': expected an http"),
        ({"EVENT_PARTITIONS": "4"}, r"^EVENT_PARTITIONS=4 needs PostgreSQL"),
        ({"NODE_MODULES": "acme.crm, 9bad"}, r"^NODE_MODULES='acme.crm, 9bad': '9bad' is not a"),
    ],
)
def test_bad_values_are_named_one_line_each(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    assert len(caught.value.problems) == 1
    assert re.search(expected, caught.value.problems[0]), caught.value.problems[0]
    assert "hunter2" not in caught.value.problems[0]


def test_bad_file_value_names_file_section_and_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[server]\nport = "high"\n[rate_limiting]\nburst_size = 0\n')
    with pytest.raises(ConfigError) as caught:
        load_settings({"CONFIG_FILE": str(config)})
    problems = caught.value.problems
    assert len(problems) == 2
    assert problems[0].startswith(f"{config} [server] port='high': ")
    assert problems[1].startswith(f"{config} [rate_limiting] burst_size=0: ")


def test_unknown_keys_and_sections_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[server]\nprot = 1\n[nonsense]\nx = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({"CONFIG_FILE": str(config)})
    assert any("unknown key [server] prot; known: " in p for p in caught.value.problems)
    assert any("unknown section [nonsense]" in p for p in caught.value.problems)


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[server\nport = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({"CONFIG_FILE": str(config)})
    assert caught.value.problems[0].startswith(f"{config}: not valid TOML")


def test_missing_config_file_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"CONFIG_FILE=/nowhere\.toml: no such file"):
        load_settings({"CONFIG_FILE": "/nowhere.toml"})


def test_production_requires_a_long_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"ENVIRONMENT": "production"})
    assert "JWT_SECRET is required when ENVIRONMENT=production" in caught.value.problems[0]
    with pytest.raises(ConfigError) as caught:
        load_settings({"ENVIRONMENT": "production", "JWT_SECRET": "your-secure-random-secret-key"})
    assert "JWT_SECRET is 29 bytes" in caught.value.problems[0]
    assert "needs at least 32" in caught.value.problems[0]
    settings, _ = load_settings({"ENVIRONMENT": "production", "JWT_SECRET": "x" * 32})
    assert settings.is_production
    assert not settings.should_auto_migrate


def test_bootstrap_admin_needs_both_email_and_password() -> None:
    with pytest.raises(ConfigError, match="must be set together"):
        load_settings({"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com"})


def test_an_empty_limit_switches_it_off() -> None:
    assert load_settings({})[0].rate_limit_tenant_per_minute == 600
    settings, _ = load_settings({"RATE_LIMIT_TENANT_PER_MINUTE": "", "MAX_RUNNING_PER_TENANT": ""})
    assert settings.rate_limit_tenant_per_minute is None
    assert settings.max_running_per_tenant is None


def test_auto_migrate_defaults_by_environment() -> None:
    assert load_settings({})[0].should_auto_migrate is True
    assert load_settings({"AUTO_MIGRATE": "false"})[0].should_auto_migrate is False


def test_seed_postgres_url_gets_the_async_driver() -> None:
    settings, _ = load_settings({"DATABASE_URL": "postgresql://user:pass@localhost/workflow_db"})
    url = settings.effective_database_url
    assert (url.drivername, url.username, url.host, url.database) == (
        "postgresql+asyncpg",
        "user",
        "localhost",
        "workflow_db",
    )
    assert not settings.is_sqlite


def test_effective_settings_mask_secrets() -> None:
    settings, _ = load_settings(
        {"JWT_SECRET": "s3cret-value", "DATABASE_URL": "postgresql://u:hunter2@db/app"}
    )
    shown = effective_settings(settings)
    assert "s3cret-value" not in str(shown)
    assert "hunter2" not in str(shown)
    assert shown["DATABASE_URL"] == "postgresql+asyncpg://u:***@db/app"


def test_development_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    first, created = development_jwt_secret(tmp_path)
    second, created_again = development_jwt_secret(tmp_path)
    assert created
    assert not created_again
    assert first.get_secret_value() == second.get_secret_value()
    assert len(first.get_secret_value()) >= 32
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o777 == 0o600


def test_configuration_doc_documents_every_variable_and_key() -> None:
    """docs/configuration.md has one table row per setting, naming its variable and its
    config.toml key, and no row for a setting that does not exist."""
    rows = re.findall(
        r"^\| `([A-Z_]+)` \| `\[([a-z_]+)\] ([a-z_]+)`", CONFIGURATION_DOC.read_text(), re.M
    )
    documented = {variable: (section, key) for variable, section, key in rows}
    assert len(documented) == len(rows), "a variable has two rows"
    expected = {field.upper(): section_key for section_key, field in TOML_KEYS.items()}
    assert documented == expected


def test_the_listener_connects_with_the_pools_ssl_mode_and_timeout() -> None:
    from workflow_engine.db.listener import connect_arguments

    url = "postgresql://u:pw@db.example.com:6543/app?sslmode=verify-full&connect_timeout=7"
    settings, _ = load_settings({"DATABASE_URL": url})
    arguments = connect_arguments(settings.effective_database_url)
    assert arguments["ssl"] == "verify-full"
    assert arguments["timeout"] == 7.0
    assert (arguments["host"], arguments["port"], arguments["database"]) == (
        "db.example.com", 6543, "app",
    )  # fmt: skip


def test_mcp_servers_resolve_paths_and_environment_secrets() -> None:
    settings, _ = load_settings({
        "NOTION_MCP_URL": "http://localhost:8002",
        "MCP_SERVERS": '{"crm": {"url": "https://crm.example.com/v2/mcp",'
                       ' "headers": {"Authorization": "Bearer ${CRM_TOKEN}"}}}',
    })  # fmt: skip
    configs = {c.name: c for c in mcp_server_configs(settings, {"CRM_TOKEN": "s3cret"})}

    assert configs["notion"].url == "http://localhost:8002/mcp"  # no path: the /mcp endpoint
    assert configs["crm"].url == "https://crm.example.com/v2/mcp"  # a path is kept
    assert dict(configs["crm"].headers) == {"Authorization": "Bearer s3cret"}
    assert "helpscout" not in configs  # unset, and no demo services to stand in
    with pytest.raises(ValueError, match="CRM_TOKEN"):
        mcp_server_configs(settings, {})


def test_the_demo_services_stand_in_for_unset_seed_servers() -> None:
    settings, _ = load_settings({"PORT": "9001"})
    assert settings.demo_services_enabled
    configs = {c.name: c.url for c in mcp_server_configs(settings, {}, settings.demo_base_url)}
    assert configs == {
        "helpscout": "http://127.0.0.1:9001/demo/mcp/helpscout/",
        "notion": "http://127.0.0.1:9001/demo/mcp/notion/",
        "slack": "http://127.0.0.1:9001/demo/mcp/slack/",
    }
    configured, _ = load_settings({"SLACK_MCP_URL": "http://slack.internal:8003"})
    assert not configured.demo_services_enabled  # a real server named: no demo by default


def test_an_mcp_server_without_a_target_is_refused() -> None:
    with pytest.raises(ConfigError, match="MCP_SERVERS"):
        load_settings({"MCP_SERVERS": '{"crm": {"transport": "stdio"}}'})
