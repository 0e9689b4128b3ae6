"""Bounds on a chat request's shape, so that one body cannot make the server tokenize without end.

The body size limit (1 MiB) caps the total; these give a clear error naming the field at fault.
"""

from typing import Annotated

from pydantic import Field, StringConstraints

MAX_MESSAGES = 256  # messages (or history pairs) in one request
MAX_MESSAGE_CHARS = 65_536  # characters in one message
MAX_CHOICES = 8  # OpenAI's `n`: choices of one prompt, each an engine request of its own
MAX_TOP_LOGPROBS = 20  # alternatives reported per token, as OpenAI allows
# Prompt tokens one request may give the engine to read (its prompts times `n`), where the model's
# context is shorter: prompts are read in turns by request, so more would only delay its own reply.
MAX_QUEUED_PROMPT_TOKENS = 1 << 16
# Characters of the tools as a tool prompt lists them, indented: nesting multiplies a body's size there.
MAX_TOOLS_CHARS = 1 << 20
# JSON a reply that is not streamed may take, as its log-probabilities could make it at most (every
# choice its whole max_tokens, every echoed prompt token scored). A reply is made whole before it
# is sent, so a larger one is refused before generation; a stream sends each token's as it comes.
MAX_REPLY_BYTES = 16 << 20

Text = Annotated[str, StringConstraints(max_length=MAX_MESSAGE_CHARS)]
# What torch.Generator.manual_seed takes: 64 bits, a negative seed read as two's complement.
Seed = Annotated[int, Field(ge=-(2**63), le=2**64 - 1)]
Choices = Annotated[int, Field(ge=1, le=MAX_CHOICES)]
TopLogprobs = Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)]
