"""The rule for a request body's top-level fields: each is honoured, or is informational (it asks
nothing of the reply), or is refused with a 400 that names it. A field this server does not know is
refused as OpenAI refuses one, rather than ignored as vLLM and llama-server ignore one: a client
that sends a field means something by it, and a reply that silently ignored it would look right.
"""

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from glm.schemas.limits import MAX_MESSAGE_CHARS


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def refused(reason: str, allowed: tuple[Any, ...] = (None, False)) -> Any:
    """A field of OpenAI's API that this server cannot honour: only the values in `allowed`, which
    ask for nothing, pass; any other is a 400 giving `reason`."""

    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(reason)
        return value

    return Annotated[Any, AfterValidator(check)]


Informational = Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]


class OpenAIBody(Body):
    # Who the end user is, for OpenAI's abuse monitoring: it asks nothing of the reply.
    user: Informational | None = None
