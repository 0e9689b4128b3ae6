"""Bodies of the routes that load and unload LoRA adapters at run time, as vLLM's."""

from typing import Annotated

from pydantic import Field

from glm.schemas.body import Body

# As --lora's NAME: what requests then send as their `model`.
AdapterName = Annotated[str, Field(min_length=1, max_length=256)]


class LoadLoraAdapterRequest(Body):
    lora_name: AdapterName
    # A PEFT adapter folder on the server's own disk.
    lora_path: Annotated[str, Field(min_length=1, max_length=4096)]


class UnloadLoraAdapterRequest(Body):
    lora_name: AdapterName
    # vLLM's own number for the adapter: accepted, and unused (the name says which).
    lora_int_id: int | None = None
