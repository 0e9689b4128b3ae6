"""A tiny model folder that thinks as GLM-Z1 does: its template ends the prompt with `<think>`, and
its weights make it close the block, so that a reply has reasoning, `</think>` and an answer.

`tiny`'s design (byte-level tokenizer, GLM-4 special tokens, seeded random weights) with `<think>`
and `</think>` as ordinary added tokens, as GLM-4.5's are. The random model never writes a tag on
its own, so `</think>` is made a twin of a byte it writes greedily a few tokens in: the same input
embedding (so what follows is what would have followed the byte) and a slightly larger output row
(so that wherever greedy decoding would pick the byte, it picks `</think>`). The reply is then the
model's own text with that byte's places taken by the tag, and the real code path splits it.
"""

from pathlib import Path

import torch

from glm import chat_templates
from glm.models import tiny

OPEN, CLOSE = "<think>", "</think>"
# GLM-Z1's way: the reply starts inside the reasoning.
TEMPLATE = chat_templates.load("glm4").replace("<|assistant|>{%- endif -%}", "<|assistant|>\n<think>{%- endif -%}")
# The greedy token that `</think>` stands in for: far enough in that there is reasoning before it.
CLOSE_AT = 4


def build_thinking_folder(folder: Path, messages: list[dict[str, str]]) -> Path:
    """The folder, with `</think>` placed where the greedy reply to `messages` has its CLOSE_AT-th
    token, or the first token not seen before it."""
    tokenizer = tiny.build_tokenizer()
    tokenizer.add_tokens([OPEN, CLOSE])
    tokenizer.chat_template = TEMPLATE
    model = tiny.build_model(tokenizer)
    close = tokenizer.convert_tokens_to_ids(CLOSE)
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    with torch.no_grad():
        model.get_output_embeddings().weight[close] = 0.0
        reply = model.generate(torch.tensor([list(prompt)]), max_new_tokens=32, do_sample=False)[0, len(prompt) :]
        ids = reply.tolist()
        byte = next(t for i, t in enumerate(ids) if i >= CLOSE_AT and t < 256 and t not in ids[:i])
        model.get_input_embeddings().weight[close] = model.get_input_embeddings().weight[byte]
        model.get_output_embeddings().weight[close] = model.get_output_embeddings().weight[byte] * 1.001
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
