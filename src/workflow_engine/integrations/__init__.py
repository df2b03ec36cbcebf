"""Clients of the outside services steps use: LLM providers and (soon) MCP servers."""
