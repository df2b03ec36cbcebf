"""LLM providers: an OpenAI-compatible HTTP API, and the offline provider for demos and tests.

providers = LLMProviders(LLMSettings(provider="openai", base_url=..., api_key=...))
completion = await providers.get(None).chat(ChatRequest(messages=[...]))
"""

from workflow_engine.integrations.llm.providers import LLMProviders, LLMSettings
from workflow_engine.integrations.llm.types import (
    ChatRequest,
    Classification,
    Completion,
    Extraction,
    LLMError,
    Message,
    Provider,
    Usage,
)

__all__ = [
    "ChatRequest",
    "Classification",
    "Completion",
    "Extraction",
    "LLMError",
    "LLMProviders",
    "LLMSettings",
    "Message",
    "Provider",
    "Usage",
]
