"""Pure pieces, in-process and quick: no server starts here (conftest.py); `make test-fast` runs this folder."""
