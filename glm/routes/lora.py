"""vLLM's routes that load and unload LoRA adapters while the server runs (--allow-runtime-lora)."""

from flask import Blueprint, Response

from glm.http.context import caller, current
from glm.routes import parse_body
from glm.schemas.lora import LoadLoraAdapterRequest, UnloadLoraAdapterRequest
from glm.serving import lora

bp = Blueprint("lora", __name__, url_prefix="/v1")


@bp.post("/load_lora_adapter")
def load_lora_adapter() -> Response:
    """Serve the PEFT adapter in folder `lora_path` as model `lora_name`."""
    return Response(lora.load(current(), caller(), parse_body(LoadLoraAdapterRequest)), mimetype="text/plain")


@bp.post("/unload_lora_adapter")
def unload_lora_adapter() -> Response:
    """Serve adapter `lora_name` to no new request; those running on it finish."""
    return Response(lora.unload(current(), caller(), parse_body(UnloadLoraAdapterRequest)), mimetype="text/plain")
