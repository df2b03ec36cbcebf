"""Logging, correlation ids and request statistics."""
