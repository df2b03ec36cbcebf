"""Local servers that speak third-party protocols for tests (never mocks of our own code)."""
