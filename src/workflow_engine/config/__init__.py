"""Settings: environment variables, then `config.toml`, then defaults — validated once at start.

The variable names and defaults are those of the `workflow-engine-api` crate this server
re-creates (the seed). `config.toml` uses the seed's section/key names, which differ from the
variables (`[auth] refresh_expiration` is `JWT_REFRESH_EXPIRATION`); `loading.TOML_KEYS` is the
single table that maps one onto the other, and the table in docs/configuration.md is checked
against it by a test.
"""

from workflow_engine.config.database_url import mask_url, to_async_url
from workflow_engine.config.dev_secret import development_jwt_secret
from workflow_engine.config.loading import (
    FIELD_TO_TOML,
    TOML_KEYS,
    ConfigError,
    ConfigSource,
    effective_settings,
    load_settings,
)
from workflow_engine.config.settings import Settings

__all__ = [
    "FIELD_TO_TOML",
    "TOML_KEYS",
    "ConfigError",
    "ConfigSource",
    "Settings",
    "development_jwt_secret",
    "effective_settings",
    "load_settings",
    "mask_url",
    "to_async_url",
]
