"""`response_format`, OpenAI's structured-output field, which the legacy routes take too."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TextFormat(BaseModel):
    type: Literal["text"]

    def reply_schema(self) -> dict[str, Any] | None:
        """The JSON schema the reply must be valid against; None: any text."""
        return None


class JsonObjectFormat(BaseModel):
    type: Literal["json_object"]

    def reply_schema(self) -> dict[str, Any] | None:
        return {"type": "object"}


class JsonSchema(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(max_length=64)
    description: str | None = None
    # `schema` would shadow a BaseModel method.
    schema_: dict[str, Any] = Field(alias="schema")
    # Accepted and not needed: every schema is enforced, strict or not.
    strict: bool | None = None


class JsonSchemaFormat(BaseModel):
    type: Literal["json_schema"]
    json_schema: JsonSchema

    def reply_schema(self) -> dict[str, Any] | None:
        return self.json_schema.schema_


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]
