"""Reading the settings: `config.toml` (with the seed's key names) under the environment."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from workflow_engine.config.database_url import mask_url
from workflow_engine.config.settings import Settings

# (section, key) in config.toml -> Settings field (whose upper-cased name is the variable).
TOML_KEYS: dict[tuple[str, str], str] = {
    ("server", "host"): "host",
    ("server", "port"): "port",
    ("server", "environment"): "environment",
    ("server", "data_dir"): "data_dir",
    ("server", "shutdown_timeout"): "shutdown_timeout",
    ("server", "cors_origins"): "cors_origins",
    ("server", "max_body_bytes"): "max_body_bytes",
    ("database", "url"): "database_url",
    ("database", "max_connections"): "db_max_connections",
    ("database", "connection_timeout"): "db_connection_timeout",
    ("database", "auto_migrate"): "auto_migrate",
    ("auth", "jwt_secret"): "jwt_secret",
    ("auth", "jwt_expiration"): "jwt_expiration",
    ("auth", "refresh_expiration"): "jwt_refresh_expiration",
    ("auth", "algorithm"): "jwt_algorithm",
    ("auth", "private_key_file"): "jwt_private_key_file",
    ("auth", "issuer"): "jwt_issuer",
    ("auth", "audience"): "jwt_audience",
    ("auth", "leeway"): "jwt_leeway",
    ("auth", "bootstrap_admin_email"): "bootstrap_admin_email",
    ("auth", "bootstrap_admin_password"): "bootstrap_admin_password",
    ("auth", "password_hash_time_cost"): "password_hash_time_cost",
    ("auth", "password_hash_memory_kib"): "password_hash_memory_kib",
    ("auth", "password_hash_parallelism"): "password_hash_parallelism",
    ("auth", "login_backoff_after"): "login_backoff_after",
    ("auth", "login_backoff_base_seconds"): "login_backoff_base_seconds",
    ("auth", "login_backoff_max_seconds"): "login_backoff_max_seconds",
    ("auth", "login_account_failure_limit"): "login_account_failure_limit",
    ("auth", "login_account_window_seconds"): "login_account_window_seconds",
    ("auth", "login_account_lock_seconds"): "login_account_lock_seconds",
    ("rate_limiting", "requests_per_minute"): "rate_limit_per_minute",
    ("rate_limiting", "burst_size"): "rate_limit_burst",
    ("rate_limiting", "tenant_requests_per_minute"): "rate_limit_tenant_per_minute",
    ("rate_limiting", "tenant_burst_size"): "rate_limit_tenant_burst",
    ("rate_limiting", "endpoints"): "rate_limit_endpoints",
    ("rate_limiting", "storage_url"): "rate_limit_storage_url",
    ("rate_limiting", "fail_open"): "rate_limit_fail_open",
    ("server", "trusted_proxies"): "trusted_proxies",
    ("events", "snapshot_every"): "snapshot_every",
    ("events", "seal_interval"): "event_seal_interval",
    ("events", "partitions"): "event_partitions",
    ("workflows", "dir"): "workflows_dir",
    ("workflows", "node_modules"): "node_modules",
    ("workflows", "trigger_wait_max_seconds"): "trigger_wait_max_seconds",
    ("worker", "enabled"): "worker_enabled",
    ("worker", "concurrency"): "worker_concurrency",
    ("worker", "lease_seconds"): "worker_lease_seconds",
    ("worker", "max_claims"): "worker_max_claims",
    ("worker", "max_running_per_tenant"): "max_running_per_tenant",
    ("worker", "tenant_weights"): "tenant_weights",
    ("workflows", "env"): "workflow_env",
    ("http", "allowed_hosts"): "http_allowed_hosts",
    ("http", "max_response_bytes"): "http_max_response_bytes",
    ("monitoring", "metrics_enabled"): "metrics_enabled",
    ("monitoring", "metrics_token"): "metrics_token",
    ("worker", "metrics_port"): "worker_metrics_port",
    ("monitoring", "tracing_enabled"): "tracing_enabled",
    ("monitoring", "log_level"): "log_level",
    ("monitoring", "log_format"): "log_format",
    ("services", "notion_mcp_url"): "notion_mcp_url",
    ("services", "slack_mcp_url"): "slack_mcp_url",
    ("services", "helpscout_mcp_url"): "helpscout_mcp_url",
    ("mcp", "servers"): "mcp_servers",
    ("mcp", "server_enabled"): "mcp_server_enabled",
    ("mcp", "tool_wait_seconds"): "mcp_tool_wait_seconds",
    ("services", "demo"): "demo_services",
    ("registry", "allowed_networks"): "registry_allowed_networks",
    ("registry", "check_interval_seconds"): "registry_check_interval_seconds",
    ("registry", "check_timeout_seconds"): "registry_check_timeout_seconds",
    ("registry", "healthy_threshold"): "registry_healthy_threshold",
    ("registry", "unhealthy_threshold"): "registry_unhealthy_threshold",
    ("registry", "expired_grace_seconds"): "registry_expired_grace_seconds",
    ("registry", "check_history"): "registry_check_history",
    ("ui", "enabled"): "ui_enabled",
    ("llm", "provider"): "llm_provider",
    ("llm", "model"): "llm_model",
    ("llm", "base_url"): "llm_base_url",
    ("llm", "api_key"): "llm_api_key",
    ("llm", "anthropic_api_key"): "anthropic_api_key",
    ("llm", "anthropic_base_url"): "anthropic_base_url",
    ("llm", "timeout_seconds"): "llm_timeout_seconds",
    ("llm", "max_retries"): "llm_max_retries",
    ("llm", "prices"): "llm_prices",
    ("llm", "token_budget_per_day"): "llm_token_budget_per_day",
    ("llm", "cost_budget_per_day"): "llm_cost_budget_per_day",
    ("llm", "tenant_budgets"): "llm_tenant_budgets",
}
FIELD_TO_TOML = {field: f"[{section}] {key}" for (section, key), field in TOML_KEYS.items()}


class ConfigError(Exception):
    """Settings that cannot start a server: one human-readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ConfigSource:
    """Where the settings came from, for error messages and `config show`."""

    config_file: Path | None
    from_file: frozenset[str]
    from_env: frozenset[str]


def find_config_file(environ: Mapping[str, str]) -> Path | None:
    """`CONFIG_FILE` if set (it must exist), else `./config.toml` when present."""
    explicit = environ.get("CONFIG_FILE")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError([f"CONFIG_FILE={explicit}: no such file"])
        return path
    default = Path("config.toml")
    return default if default.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse `config.toml` into Settings field values, refusing unknown sections and keys."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot be read: {exc}"]) from None
    values: dict[str, Any] = {}
    problems: list[str] = []
    known_sections = {section for section, _ in TOML_KEYS}
    for section, table in document.items():
        if section not in known_sections:
            problems.append(
                f"{path}: unknown section [{section}]; known: {', '.join(sorted(known_sections))}"
            )
            continue
        if not isinstance(table, dict):
            problems.append(f"{path}: [{section}] must be a table")
            continue
        for key, value in table.items():
            field = TOML_KEYS.get((section, key))
            if field is None:
                known = sorted(k for s, k in TOML_KEYS if s == section)
                problems.append(f"{path}: unknown key [{section}] {key}; known: {', '.join(known)}")
                continue
            values[field] = value
    if problems:
        raise ConfigError(problems)
    return values


def load_settings(environ: Mapping[str, str] | None = None) -> tuple[Settings, ConfigSource]:
    """Build the settings with precedence environment > config file > default.

    Raises `ConfigError` naming every bad key (variable or file key, value given, what is
    allowed) so that the CLI can print one line per problem and exit 2.
    """
    environ = os.environ if environ is None else environ
    config_file = find_config_file(environ)
    file_values = read_config_file(config_file) if config_file else {}
    env_values = {
        key.lower(): value for key, value in environ.items() if key.lower() in Settings.model_fields
    }
    # A file value is used only where no variable is set, so the environment always wins.
    from_file = {field: value for field, value in file_values.items() if field not in env_values}
    source = ConfigSource(config_file, frozenset(from_file), frozenset(env_values))
    try:
        # model_validate reads nothing from the process environment: `environ` is the only input.
        settings = Settings.model_validate({**from_file, **env_values})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, from_file, environ)) from None
    return settings, source


def _describe(
    exc: ValidationError, source: ConfigSource, init: dict[str, Any], environ: Mapping[str, str]
) -> list[str]:
    env_upper = {key.upper(): value for key, value in environ.items()}
    problems = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        message = error["msg"].removeprefix("Value error, ")
        if not field:  # a check across fields; its message names the variable itself
            problems.append(message)
            continue
        if field in source.from_env:
            where, given = field.upper(), env_upper.get(field.upper())
        elif field in source.from_file:
            where, given = f"{source.config_file} {FIELD_TO_TOML[field]}", init.get(field)
        else:
            where, given = field.upper(), error.get("input")
        if field in ("jwt_secret", "bootstrap_admin_password"):
            given = "<hidden>"
        elif field.endswith("_url") and isinstance(given, str):
            given = mask_url(given)
        problems.append(f"{where}={given!r}: {message}")
    return problems


def effective_settings(settings: Settings) -> dict[str, Any]:
    """Settings as the server uses them, JSON-ready, secrets masked: what `config show` prints."""
    # SecretStr fields dump as "**********" in JSON mode; URLs get their passwords hidden.
    shown = {name.upper(): value for name, value in settings.model_dump(mode="json").items()}
    shown["DATABASE_URL"] = settings.effective_database_url.render_as_string(hide_password=True)
    shown["RATE_LIMIT_STORAGE_URL"] = mask_url(settings.rate_limit_storage_url)
    shown["AUTO_MIGRATE"] = settings.should_auto_migrate
    shown["LOG_FORMAT"] = settings.effective_log_format
    return shown
