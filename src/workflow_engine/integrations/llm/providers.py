"""Which provider a step gets: the configured default (`LLM_PROVIDER`), or the one it names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workflow_engine.integrations.llm import anthropic
from workflow_engine.integrations.llm.anthropic import AnthropicProvider
from workflow_engine.integrations.llm.offline import MODEL as OFFLINE_MODEL
from workflow_engine.integrations.llm.offline import OfflineProvider
from workflow_engine.integrations.llm.openai_compatible import OpenAICompatible
from workflow_engine.integrations.llm.pricing import DEFAULT_PRICES, Price
from workflow_engine.integrations.llm.types import LLMError, Provider

if TYPE_CHECKING:
    from workflow_engine.config import Settings

PROVIDERS = ("offline", "openai", "anthropic")
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class LLMSettings:
    """The LLM part of the server's settings (see `config.Settings`)."""

    provider: str = "offline"
    model: str | None = None  # the default provider's; None: its own default
    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = None
    anthropic_base_url: str = anthropic.DEFAULT_BASE_URL
    anthropic_api_key: str | None = None
    timeout: float = 60.0
    max_retries: int = 2
    # Pairs, not a dict: the settings are hashable (providers are cached per settings).
    price_list: tuple[tuple[str, Price], ...] = tuple(DEFAULT_PRICES.items())

    @property
    def prices(self) -> Mapping[str, Price]:
        return dict(self.price_list)


def llm_settings(settings: Settings) -> LLMSettings:
    """The server's LLM settings; with no provider named, `openai` once a key or a base URL
    says where one is, else `anthropic` once its key is set, `offline` otherwise (a fresh
    install works with no network)."""
    api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    anthropic_key = (
        settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None
    )
    provider = settings.llm_provider or (
        "openai"
        if api_key or settings.llm_base_url
        else "anthropic"
        if anthropic_key
        else "offline"
    )
    return LLMSettings(
        provider=provider,
        model=settings.llm_model,
        base_url=settings.llm_base_url or DEFAULT_BASE_URL,
        api_key=api_key,
        anthropic_base_url=settings.anthropic_base_url or anthropic.DEFAULT_BASE_URL,
        anthropic_api_key=anthropic_key,
        timeout=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
        price_list=tuple(
            {
                **DEFAULT_PRICES,
                **{
                    model: Price(price.input_per_million, price.output_per_million)
                    for model, price in settings.llm_prices.items()
                },
            }.items()
        ),
    )


class LLMProviders:
    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self._offline = OfflineProvider(OFFLINE_MODEL)  # its one model, whatever LLM_MODEL says
        self._openai: OpenAICompatible | None = None
        self._anthropic: AnthropicProvider | None = None

    @property
    def default(self) -> str:
        return self.settings.provider

    def get(self, name: str | None) -> Provider:
        """The provider called `name` (None: the default). `openai` needs a base URL that is
        set up; asking for it when it is not is the step's error, not a crash."""
        chosen = name or self.settings.provider
        if chosen == "offline":
            return self._offline
        if chosen == "openai":
            if self._openai is None:
                self._openai = OpenAICompatible(
                    base_url=self.settings.base_url,
                    api_key=self.settings.api_key,
                    model=self._model_of("openai", DEFAULT_OPENAI_MODEL),
                    timeout=self.settings.timeout,
                    max_retries=self.settings.max_retries,
                )
            return self._openai
        if chosen == "anthropic":
            if self._anthropic is None:
                self._anthropic = AnthropicProvider(
                    base_url=self.settings.anthropic_base_url,
                    api_key=self.settings.anthropic_api_key,
                    model=self._model_of("anthropic", anthropic.DEFAULT_MODEL),
                    timeout=self.settings.timeout,
                    max_retries=self.settings.max_retries,
                )
            return self._anthropic
        raise LLMError(
            f"unknown LLM provider {chosen!r}; known: {', '.join(PROVIDERS)}",
            retryable=False, error_class="llm_request",
        )  # fmt: skip

    def _model_of(self, provider: str, default: str) -> str:
        """`LLM_MODEL` names the default provider's model (`openai`'s while `offline` is the
        default, as before there were two); another provider a step names gets its own
        default (a `gpt-*` model means nothing to Anthropic)."""
        owner = "openai" if self.settings.provider == "offline" else self.settings.provider
        if provider == owner and self.settings.model:
            return self.settings.model
        return default
