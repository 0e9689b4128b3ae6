"""The shipped clients (Python examples and the Java client, java/) against the real server."""
