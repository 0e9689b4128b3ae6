"""Wire formats: plain values in, JSON-ready dicts or SSE bytes out. Nothing here knows torch."""
