"""What the tests share: the server process, SSE and HTTP helpers, checkpoints, references and strategies."""
