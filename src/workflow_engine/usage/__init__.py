"""What LLM calls cost each tenant, and its daily budgets.

`meter.py` is what nodes see (no database); `budgets.py` the limits and when one is spent,
pure; `store.py` the SQL on `llm_usage`; `database_meter.py` the worker's meter; `service.py`
the API's reads.
"""
