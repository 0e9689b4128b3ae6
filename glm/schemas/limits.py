"""Bounds on a chat request's shape, so that one body cannot make the server tokenize without end.

The body size limit (1 MiB) caps the total; these give a clear error naming the field at fault.
"""

from typing import Annotated

from pydantic import StringConstraints

MAX_MESSAGES = 256  # messages (or history pairs) in one request
MAX_MESSAGE_CHARS = 65_536  # characters in one message

Text = Annotated[str, StringConstraints(max_length=MAX_MESSAGE_CHARS)]
