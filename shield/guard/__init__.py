"""Who may ask: signatures, referers and rate limits."""
