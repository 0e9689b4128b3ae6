"""Request bodies, validated with pydantic: a bad body becomes a 400 naming the field at fault."""
