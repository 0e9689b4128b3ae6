"""Turning a validated request into a reply or a stream of wire chunks; no HTTP routing here."""
