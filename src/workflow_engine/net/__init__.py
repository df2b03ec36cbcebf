"""Outbound connections made on a client's behalf, and the rules they obey."""
