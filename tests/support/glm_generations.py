"""Tiny random-weight folders in the layouts of the later GLM generations, built at test time.

GLM-4-0414 and GLM-Z1-0414 (`Glm4ForCausalLM`) and GLM-4.5 (`Glm4MoeForCausalLM`), each as a real
download looks: config.json, generation_config.json, safetensors weights, a byte-level BPE in
tokenizer.json with GLM's special tokens, and the family's own chat template, written from
../shared/chatglm-formats.md ("Later GLM generations"). GLM-4.5's tool-call and reasoning tags are
ordinary added tokens, not special ones, as in the original tokenizer: they are text that a grammar
may write. A Qwen-style folder (`<tool_call>{json}</tool_call>` calls, the same tags as ordinary
added tokens) stands for the other tokenizers whose tags are added tokens.
"""

from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    GenerationConfig,
    Glm4Config,
    Glm4ForCausalLM,
    Glm4MoeConfig,
    Glm4MoeForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from glm.models.bytelevel import byte_alphabet
from glm.models.chatglm.layout import GLM4
from glm.models.tiny import randomize

# GLM-4's own, in its order (the image and video tokens left out: these models have none).
SPECIAL_TOKENS = GLM4.special_tokens[:10]
GLM45_ADDED_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<arg_key>",
    "</arg_key>",
    "<arg_value>",
    "</arg_value>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
STOP_TOKENS = ("<|endoftext|>", "<|user|>", "<|observation|>")
SEED = 20250414
SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "num_hidden_layers": 2,
    "max_position_embeddings": 4096,
}
# vLLM's CPU attention takes heads of 64 only.
VLLM_SHAPE = {"hidden_size": 256, "intermediate_size": 512, "head_dim": 64}
# Layer 0 dense, layer 1 a mixture of two routed experts and one shared, as GLM-4.5's layers after
# its first dense ones.
MOE_SHAPE = {
    "first_k_dense_replace": 1,
    "n_routed_experts": 2,
    "num_experts_per_tok": 2,
    "n_shared_experts": 1,
    "moe_intermediate_size": 32,
    "n_group": 1,
    "topk_group": 1,
    "num_nextn_predict_layers": 0,
}

# The templates are written with every newline spelled out: transformers renders them with
# trim_blocks, which drops the newline after each block tag.

# GLM-4-0414: 9B-chat's role tokens and tools list, without its ChatGLM preamble; a call is the
# function's name on the assistant's first line, then its arguments as JSON.
GLM4_0414_TEMPLATE = r"""[gMASK]<sop>
{%- if tools %}{{ '<|system|>\n# 可用工具' }}
{%- for tool in tools %}
{%- set function = tool.function if tool.function is defined else tool %}
{{- '\n\n## ' + function.name + '\n\n' + function | tojson(indent=4, ensure_ascii=False) }}
{{- '\n在调用上述函数时，请使用 Json 格式表示调用的参数。' }}
{%- endfor %}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' %}{{ '<|system|>\n' + message.content }}
{%- elif message.role == 'user' %}{{ '<|user|>\n' + message.content }}
{%- elif message.role == 'assistant' %}
{%- set content = message.content or '' %}
{%- if content %}{{ '<|assistant|>\n' + content }}{% endif %}
{%- for call in message.tool_calls or [] %}
{%- set call = call.function if call.function is defined else call %}
{%- set arguments = call.arguments if call.arguments is string else call.arguments | tojson(ensure_ascii=False) %}
{{- '<|assistant|>' + call.name + '\n' + arguments }}
{%- endfor %}
{%- elif message.role == 'tool' or message.role == 'observation' %}{{ '<|observation|>\n' + message.content }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"""

# GLM-Z1-0414: 0414's template, but the reply opens inside its reasoning, and an earlier assistant
# turn keeps only what follows its `</think>`.
GLM_Z1_TEMPLATE = GLM4_0414_TEMPLATE.replace(
    "{%- set content = message.content or '' %}",
    "{%- set content = (message.content or '').split('</think>')[-1].strip() %}",
).replace("{{ '<|assistant|>' }}{% endif %}", "{{ '<|assistant|>\\n<think>' }}{% endif %}")

# GLM-4.5: tools as JSON lines in `<tools>`, calls as `<tool_call>` with `<arg_key>`/`<arg_value>`
# pairs (a string value raw, others as JSON), reasoning in `<think>` (kept only after the last user
# turn), `enable_thinking` false appending `/nothink` and opening the reply with an empty `<think>`.
GLM45_TEMPLATE = r"""[gMASK]<sop>
{%- if tools %}
{{- '<|system|>\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' }}
{{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n' }}
{%- for tool in tools %}{{ tool | tojson(ensure_ascii=False) + '\n' }}{% endfor %}
{{- '</tools>\n\nFor each function call, output the function name and arguments within the following XML format:\n' }}
{{- '<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>\n' }}
{{- '<arg_key>{arg-key-2}</arg_key>\n<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>' }}
{%- endif %}
{%- set ns = namespace(last_user=-1) %}
{%- for message in messages %}
{%- if message.role == 'user' %}{% set ns.last_user = loop.index0 %}{% endif %}
{%- endfor %}
{%- set thinking_off = enable_thinking is defined and not enable_thinking %}
{%- for message in messages %}
{%- if message.role == 'system' %}{{ '<|system|>\n' + message.content }}
{%- elif message.role == 'user' %}{{ '<|user|>\n' + message.content }}
{%- if thinking_off and not message.content.endswith('/nothink') %}{{ '/nothink' }}{% endif %}
{%- elif message.role == 'assistant' %}
{%- set content = message.content or '' %}
{%- set reasoning = '' %}
{%- if message.reasoning_content is string %}
{%- set reasoning = message.reasoning_content %}
{%- elif '</think>' in content %}
{%- set reasoning = content.split('</think>')[0].split('<think>')[-1] %}
{%- set content = content.split('</think>')[-1] %}
{%- endif %}
{{- '<|assistant|>' }}
{%- if loop.index0 > ns.last_user and reasoning.strip() %}{{ '\n<think>' + reasoning.strip() + '</think>' }}
{%- else %}{{ '\n<think></think>' }}
{%- endif %}
{%- if content.strip() %}{{ '\n' + content.strip() }}{% endif %}
{%- for call in message.tool_calls or [] %}
{%- set call = call.function if call.function is defined else call %}
{{- '\n<tool_call>' + call.name }}
{%- for key, value in call.arguments.items() %}
{{- '\n<arg_key>' + key + '</arg_key>\n<arg_value>' }}
{{- value if value is string else value | tojson(ensure_ascii=False) }}
{{- '</arg_value>' }}
{%- endfor %}
{{- '\n</tool_call>' }}
{%- endfor %}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{ '<|observation|>' }}{% endif %}
{{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|assistant|>' }}
{%- if thinking_off %}{{ '\n<think></think>' }}{% endif %}
{%- endif %}"""

# Qwen's shape: ChatML turns, tools in `<tools>`, a call as one JSON object in `<tool_call>` tags.
QWEN_STYLE_TEMPLATE = r"""
{%- if tools %}
{{- '<|im_start|>system\n# Tools\n\n' }}
{{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n' }}
{%- for tool in tools %}{{ tool | tojson + '\n' }}{% endfor %}
{{- '</tools>\n\nFor each function call, return a json object with function name and arguments within ' }}
{{- '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n' }}
{{- '</tool_call><|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'tool' %}
{{- '<|im_start|>user\n<tool_response>\n' + message.content + '\n</tool_response><|im_end|>\n' }}
{%- else %}
{{- '<|im_start|>' + message.role + '\n' + (message.content or '') }}
{%- for call in message.tool_calls or [] %}
{%- set call = call.function if call.function is defined else call %}
{%- set arguments = call.arguments if call.arguments is string else call.arguments | tojson %}
{{- '\n<tool_call>\n{"name": "' + call.name + '", "arguments": ' + arguments + '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"""
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN_ADDED_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")

FAMILIES = {
    "glm-4-0414": (GLM4_0414_TEMPLATE, ()),
    "glm-z1-0414": (GLM_Z1_TEMPLATE, ()),
    "glm-4.5": (GLM45_TEMPLATE, GLM45_ADDED_TOKENS),
}


def build_tokenizer(
    template: str,
    added: tuple[str, ...] = (),
    specials: tuple[str, ...] = SPECIAL_TOKENS,
    eos: str = "<|endoftext|>",
) -> PreTrainedTokenizerFast:
    """A byte-level BPE (one token per byte), then `specials` as special tokens and `added` as
    ordinary ones, numbered after the bytes in that order as the originals number them."""
    vocab = {char: byte for byte, char in enumerate(byte_alphabet())}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    backend.add_tokens([AddedToken(token, special=False, normalized=False) for token in added])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=eos, pad_token=eos, chat_template=template)


def build_model(family: str, vocab: int, stops: list[int], pad: int, wide: bool = False) -> PreTrainedModel:
    ids = {"vocab_size": vocab, "eos_token_id": stops, "pad_token_id": pad}
    shape = SHAPE | (VLLM_SHAPE if wide else {})
    if family == "glm-4.5":
        config = Glm4MoeConfig(**shape, **MOE_SHAPE, **ids, partial_rotary_factor=0.5)
        return randomize(Glm4MoeForCausalLM(config), SEED)
    return randomize(Glm4ForCausalLM(Glm4Config(**shape, **ids)), SEED)


def write_folder(folder: Path, tokenizer: PreTrainedTokenizerFast, model: PreTrainedModel) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    stops = model.config.eos_token_id
    GenerationConfig(eos_token_id=stops, pad_token_id=model.config.pad_token_id).save_pretrained(folder)
    return folder


def build_generation(folder: Path, family: str, wide: bool = False) -> Path:
    """A tiny `family` folder ("glm-4-0414", "glm-z1-0414" or "glm-4.5") in `folder`; `wide`: with
    heads of 64, which vLLM's CPU attention needs."""
    template, added = FAMILIES[family]
    tokenizer = build_tokenizer(template, added)
    stops = tokenizer.convert_tokens_to_ids(list(STOP_TOKENS))
    model = build_model(family, len(tokenizer), stops, tokenizer.pad_token_id, wide)
    return write_folder(folder, tokenizer, model)


def build_qwen_style(folder: Path) -> Path:
    """A folder whose template writes calls as `<tool_call>{json}</tool_call>`, with those tags as
    ordinary added tokens, as Qwen's tokenizer has them (on GLM-4-0414's architecture)."""
    tokenizer = build_tokenizer(QWEN_STYLE_TEMPLATE, QWEN_ADDED_TOKENS, QWEN_SPECIAL_TOKENS)
    stops = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    return write_folder(folder, tokenizer, build_model("qwen", len(tokenizer), stops, tokenizer.pad_token_id))
