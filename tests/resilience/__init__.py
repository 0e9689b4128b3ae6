"""Tests that attack the server: limits, faults, a dying engine, chaos, slow clients, fuzzing, load."""
