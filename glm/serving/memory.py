"""/clear: the compiled grammars are dropped, and the engine returns cached memory between two of its
steps, never while a greenlet waits on a lock; the request is admitted and bounded like any other."""

from glm.service import Service
from glm.serving.common import engine_reply
from glm.stream.lifecycle import Caller


def clear(service: Service, caller: Caller) -> dict[str, int]:
    """What stays allocated on the accelerator once the engine has let go of what it can."""
    with service.admission.admit(caller, streaming=False) as life:
        service.loaded.grammars.clear()
        service.engine.clear_memory(life.deliver)
        return engine_reply(life)
