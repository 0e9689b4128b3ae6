"""The OpenAPI 3.1 document of the API, served at /openapi.json.

Request bodies come from the pydantic schemas the routes validate with, so the document cannot
drift from what the server accepts; tests/resilience/test_openapi_fuzz.py checks its paths against the app's routes.
"""

from typing import Any

from pydantic import BaseModel

from glm.schemas.anthropic import CountTokensRequest, MessagesRequest
from glm.schemas.completions import CompletionRequest
from glm.schemas.embeddings import EmbeddingRequest, OpenAIEmbeddingRequest
from glm.schemas.legacy import QUERY_JSON_FIELDS, LegacyChatRequest, TokenizeRequest
from glm.schemas.lora import LoadLoraAdapterRequest, UnloadLoraAdapterRequest
from glm.schemas.openai import ChatCompletionRequest
from glm.schemas.responses import ResponsesRequest

REF = "#/components/schemas/{model}"
ERRORS = {
    "400": "invalid request: the message names the field at fault",
    "401": "missing or invalid API key (only when the server has keys)",
    "413": "request body too large",
    "429": "too many requests waiting; see Retry-After",
    "503": "shutting down, or the feature is turned off",
    "504": "the request ran past the server's time limit",
}
ERROR_SCHEMAS = {"openai": "OpenAIError", "anthropic": "AnthropicError"}
JSON_BODY = {"application/json": {"schema": {"type": "object"}}}
EVENT_STREAM = {"text/event-stream": {"schema": {"type": "string"}}}


def model_operation() -> dict[str, Any]:
    """/v1/models/{model}: the served model by its id, or a 404 for any other."""
    op = operation(
        "The model served, by its id",
        "openai",
        parameters=[{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
    )
    op["responses"]["404"] = {
        "description": "no model of that id is served here",
        "content": {"application/json": {"schema": {"$ref": REF.format(model="OpenAIError")}}},
    }
    return op


def body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}}


def query(model: type[BaseModel], json_fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """The model's fields as query parameters; JSON-carrying ones (a history list) as JSON text."""
    schema = model.model_json_schema(ref_template=REF)
    parameters = []
    for name, prop in schema["properties"].items():
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": False}
        if name in json_fields:
            parameter["content"] = {"application/json": {"schema": prop}}
        else:
            parameter["schema"] = prop
        parameters.append(parameter)
    return parameters


def operation(
    summary: str,
    tag: str,
    request: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    content: dict[str, Any] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    error = {"$ref": REF.format(model=ERROR_SCHEMAS.get(tag, "Error"))}
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {
            "200": {"description": "success", "content": content or JSON_BODY},
            **{
                status: {"description": text, "content": {"application/json": {"schema": error}}}
                for status, text in ERRORS.items()
            },
        },
    }
    if request is not None:
        op["requestBody"] = request
    if parameters:
        op["parameters"] = parameters
    if not secured:
        op["security"] = []
    return op


def error_schemas() -> dict[str, Any]:
    text = {"type": "string"}
    nullable = {"type": ["string", "null"]}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type"],
                    "properties": {"message": text, "type": text},
                }
            },
        },
        "OpenAIError": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "param", "code"],
                    "properties": {"message": text, "type": text, "param": nullable, "code": nullable},
                }
            },
        },
        "AnthropicError": {
            "type": "object",
            "required": ["type", "error"],
            "properties": {
                "type": {"const": "error"},
                "error": {
                    "type": "object",
                    "required": ["type", "message"],
                    "properties": {"type": text, "message": text},
                },
            },
        },
    }


def components() -> dict[str, Any]:
    schemas: dict[str, Any] = error_schemas()
    for model in (
        LegacyChatRequest,
        TokenizeRequest,
        EmbeddingRequest,
        ChatCompletionRequest,
        CompletionRequest,
        OpenAIEmbeddingRequest,
        MessagesRequest,
        CountTokensRequest,
        ResponsesRequest,
        LoadLoraAdapterRequest,
        UnloadLoraAdapterRequest,
    ):
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def document(title: str, version: str) -> dict[str, Any]:
    legacy_stream = {
        "get": operation(
            "The reply as Server-Sent Events; the body's fields as query parameters (for EventSource)",
            "legacy",
            parameters=query(LegacyChatRequest, QUERY_JSON_FIELDS),
            content=EVENT_STREAM,
        ),
        "post": operation(
            "The reply as Server-Sent Events, `event: delta` each",
            "legacy",
            body(LegacyChatRequest),
            content=EVENT_STREAM,
        ),
    }
    clear = operation("Return cached accelerator memory to the driver", "legacy")
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": {
            "/": {"get": operation("The chat page", "page", content={"text/html": {}}, secured=False)},
            "/health": {"get": operation("Liveness and the engine's counters", "health", secured=False)},
            "/metrics": {"get": operation("Prometheus metrics", "health", content={"text/plain": {}})},
            "/openapi.json": {"get": operation("This document", "health", secured=False)},
            "/chat": {"post": operation("The whole reply as one JSON object", "legacy", body(LegacyChatRequest))},
            "/stream": legacy_stream,
            "/chat-stream": legacy_stream,
            "/clear": {"get": clear, "post": clear},
            "/tokenize": {"post": operation("Token ids and pieces for a text", "legacy", body(TokenizeRequest))},
            "/embedding": {"post": operation("One vector per text", "legacy", body(EmbeddingRequest))},
            "/v1/chat/completions": {
                "post": operation(
                    "A chat completion; with `stream: true`, its chunks as Server-Sent Events ending in [DONE]",
                    "openai",
                    body(ChatCompletionRequest),
                    content={**JSON_BODY, **EVENT_STREAM},
                )
            },
            "/v1/completions": {
                "post": operation(
                    "A completion of raw prompts (OpenAI's legacy API); with `stream: true`, chunks ending in [DONE]",
                    "openai",
                    body(CompletionRequest),
                    content={**JSON_BODY, **EVENT_STREAM},
                )
            },
            "/v1/messages": {
                "post": operation(
                    "Anthropic's Messages API; with `stream: true`, Anthropic's events (message_start to message_stop)",
                    "anthropic",
                    body(MessagesRequest),
                    content={**JSON_BODY, **EVENT_STREAM},
                )
            },
            "/v1/messages/count_tokens": {
                "post": operation(
                    "The prompt tokens a /v1/messages request would read", "anthropic", body(CountTokensRequest)
                )
            },
            "/v1/responses": {
                "post": operation(
                    "A response (OpenAI's Responses API, stateless); with `stream: true`, its events as SSE",
                    "openai",
                    body(ResponsesRequest),
                    content={**JSON_BODY, **EVENT_STREAM},
                )
            },
            "/v1/models": {"get": operation("The one model served", "openai")},
            "/v1/load_lora_adapter": {
                "post": operation(
                    "Serve a PEFT LoRA adapter folder as a model (vLLM's; needs --allow-runtime-lora)",
                    "openai",
                    body(LoadLoraAdapterRequest),
                    content={"text/plain": {}},
                )
            },
            "/v1/unload_lora_adapter": {
                "post": operation(
                    "Serve a LoRA adapter to no new request (vLLM's; needs --allow-runtime-lora)",
                    "openai",
                    body(UnloadLoraAdapterRequest),
                    content={"text/plain": {}},
                )
            },
            "/v1/models/{model}": {"get": model_operation()},
            "/v1/embeddings": {
                "post": operation("OpenAI's embeddings endpoint", "openai", body(OpenAIEmbeddingRequest))
            },
        },
        "components": {
            "schemas": components(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
        # Keys are optional on a server: a client sends one when it has one, either way.
        "security": [{"bearer": []}, {"apiKey": []}, {}],
    }
