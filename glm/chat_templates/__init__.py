"""Chat templates for models that ship none (Jinja, in the Hugging Face chat-template dialect)."""

from importlib.resources import files


def load(name: str) -> str:
    """Return the text of the template `name` (a file `name.jinja` beside this module)."""
    return files(__name__).joinpath(f"{name}.jinja").read_text(encoding="utf-8")
