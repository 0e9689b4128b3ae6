"""Loading and unloading LoRA adapters at run time (--allow-runtime-lora), as vLLM's
/v1/load_lora_adapter and /v1/unload_lora_adapter do.

Off unless the server was started with the flag: a load reads whatever folder the request names
on the server's disk, with the server's rights, so it is for whoever runs the server (behind
the API keys, where there are some), never for every client. The folder is read and checked off
the hub, on the adapter pool's thread; the engine then takes the adapter between two of its steps.
"""

import time
from pathlib import Path

from glm.errors import AdapterNameTaken, ApiError, ModelNotFound, RuntimeLoraOff
from glm.schemas.lora import LoadLoraAdapterRequest, UnloadLoraAdapterRequest
from glm.service import Service
from glm.serving.common import engine_reply
from glm.startup import StartupError
from glm.stream.lifecycle import Caller


def load(service: Service, caller: Caller, body: LoadLoraAdapterRequest) -> str:
    """vLLM's reply to a load: a sentence saying so."""
    allowed(service)
    name = body.lora_name
    if name == service.loaded.name or name in service.loaded.adapters:
        raise AdapterNameTaken(name)
    path = Path(body.lora_path).expanduser()
    with service.admission.admit(caller, streaming=False) as life:
        try:
            prepared = service.adapters.run(
                service.engine.read_adapter,
                name,
                path,
                timeout=life.deadline - time.monotonic(),
                client_gone=caller.client_gone,
            )
        except StartupError as error:  # the same checks as at start-up, said of this request's field
            raise ApiError(f"lora_path: {str(error).removeprefix('--lora ')}", "lora_path") from None
        service.engine.add_adapter(name, path, prepared, life.deliver)
        engine_reply(life)  # an ApiError (the name taken meanwhile, too little memory) is raised
    return f"Success: LoRA adapter '{name}' added successfully."


def unload(service: Service, caller: Caller, body: UnloadLoraAdapterRequest) -> str:
    allowed(service)
    if body.lora_name not in service.loaded.adapters:
        raise ModelNotFound(body.lora_name, "lora_name")
    with service.admission.admit(caller, streaming=False) as life:
        service.engine.remove_adapter(body.lora_name, life.deliver)
        engine_reply(life)
    return f"Success: LoRA adapter '{body.lora_name}' removed successfully."


def allowed(service: Service) -> None:
    if not service.settings.runtime_lora:
        raise RuntimeLoraOff()
