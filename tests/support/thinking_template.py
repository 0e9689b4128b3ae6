"""A GLM-4-shaped chat template with GLM-4.5's thinking switch and reasoning history, and a tiny
model folder that ships it: for the tests of `chat_template_kwargs`, `reasoning_effort` and
`reasoning_content`.

With none of those variables it renders a plain chat exactly as GLM-4's template does, so the
service takes the folder for GLM-4 and writes its tool prompts itself (not through the template).
"""

from pathlib import Path

from glm.models import tiny

# Expressions, not blocks, where a newline must stay: transformers trims the one after a block tag.
THINKING_TEMPLATE = (
    "[gMASK]<sop>"
    "{%- if persona is defined -%}<|system|>\npersona: {{ persona }}{%- endif -%}"
    "{%- set thinking_off = enable_thinking is defined and not enable_thinking -%}"
    "{%- for message in messages -%}"
    "<|{{ message['role'] }}|>\n"
    "{{ '<think>' + message.reasoning_content + '</think>' if message.reasoning_content is defined else '' }}"
    "{{ message['content'] }}"
    "{{ '/nothink' if message['role'] == 'user' and thinking_off else '' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{{ '<think></think>' if thinking_off else '' }}{%- endif -%}"
)


def thinking_folder(path: Path) -> Path:
    """The tiny model and its byte-level tokenizer, saved as a Hugging Face folder with THINKING_TEMPLATE."""
    tokenizer = tiny.build_tokenizer()
    tokenizer.chat_template = THINKING_TEMPLATE
    tiny.build_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
