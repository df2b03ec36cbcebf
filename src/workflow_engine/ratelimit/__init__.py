"""Rate limiting: token buckets (GCRA) per principal, per endpoint and per tenant."""
