"""The chaos suite: workers SIGKILLed under load and a database restart mid-load, on a private
PostgreSQL; `python -m tests.chaos` (`make chaos`) runs it in full, `test_chaos.py` a bounded
slice in CI. See docs/reliability.md."""
