"""The real service, with one fault it cannot be made to have for real: a request that asks for
exactly FATAL_MAX_TOKENS tokens makes the engine's batch join raise an out-of-memory error, outside
any one request's guard, as running out of memory while copying the KV cache would. The engine
thread dies of it; everything else is the real code path.

`python -m tests.support.faulty_server ARGS` takes the service's own flags.
"""

import sys

import torch

from glm.cli import main
from glm.engine.batch import DecodeBatch

FATAL_MAX_TOKENS = 777
real_join = DecodeBatch.join


def join(self, slots, cache, mask):
    if any(slot.request.max_new_tokens == FATAL_MAX_TOKENS for slot in slots):
        raise torch.OutOfMemoryError("out of memory while joining the batch (injected)")
    return real_join(self, slots, cache, mask)


if __name__ == "__main__":
    # Only in the server's own process: tests import FATAL_MAX_TOKENS from here, and their
    # in-process batches must stay real.
    DecodeBatch.join = join
    sys.exit(main())
