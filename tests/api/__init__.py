"""The API over a socket against the real server process: routes, streaming, the CLI, models served end to end."""
