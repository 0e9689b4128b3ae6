"""The original ChatGLM chat formats as prompt encoders (messages -> ids).

These cannot be chat templates: ChatGLM3 and GLM-4 encode each piece of a message on its own
(SentencePiece adds its dummy prefix to every piece), which a template rendered to one string and
then tokenized does not reproduce.
"""

from collections.abc import Callable

from transformers import PreTrainedTokenizerBase

from glm.errors import ApiError
from glm.models.chatglm.layout import CHATGLM2, Family

Messages = list[dict[str, str]]
PromptEncoder = Callable[[Messages], list[int]]
ROLES = ("system", "user", "assistant", "observation")


def text_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Plain text, special-looking strings included (the tokenizers are built to split them)."""
    return tokenizer.encode(text, add_special_tokens=False)


def role_prompt_encoder(family: Family, tokenizer: PreTrainedTokenizerBase) -> PromptEncoder:
    """ChatGLM3 / GLM-4: prefix, then per message `<|role|>` + ids("{metadata}\\n") + ids(content)."""
    prefix = tokenizer.convert_tokens_to_ids(list(family.prefix))
    role_ids = {role: tokenizer.convert_tokens_to_ids(f"<|{role}|>") for role in ROLES}
    newline = text_ids(tokenizer, "\n")  # the metadata line; we never send metadata

    def encode(messages: Messages) -> list[int]:
        ids = list(prefix)
        for message in messages:
            role = message["role"]
            if role not in role_ids:
                raise ApiError(f"messages: role {role!r} is not one of {', '.join(ROLES)}", "messages")
            ids += [role_ids[role], *newline, *text_ids(tokenizer, message["content"])]
        return [*ids, role_ids["assistant"]]

    return encode


def require_alternating(messages: Messages, model: str) -> None:
    """The round formats pair each user message with the assistant's reply and end on a question."""
    roles = [m["role"] for m in messages]
    if len(roles) % 2 == 0 or roles != ["user", "assistant"] * (len(roles) // 2) + ["user"]:
        raise ApiError(
            f"messages: {model}'s format takes user and assistant messages alternating, ending with a user message",
            "messages",
        )


def chatglm2_prompt(messages: Messages) -> str:
    """ChatGLM2's "[Round N]" question-and-answer text, rounds numbered from 1, blank lines apart.

    ChatGLM2 has no system role; leading system messages go first, followed by a blank line (the
    convention of FastChat's chatglm2 template).
    """
    system = []
    while messages and messages[0]["role"] == "system":
        system.append(messages[0]["content"])
        messages = messages[1:]
    require_alternating(messages, "ChatGLM2")
    prompt = "\n".join(system) + "\n\n" if system else ""
    for number, index in enumerate(range(0, len(messages) - 1, 2), start=1):
        query, response = messages[index]["content"], messages[index + 1]["content"]
        prompt += f"[Round {number}]\n\n问：{query}\n\n答：{response}\n\n"
    return prompt + f"[Round {len(messages) // 2 + 1}]\n\n问：{messages[-1]['content']}\n\n答："


def chatglm2_prompt_encoder(tokenizer: PreTrainedTokenizerBase) -> PromptEncoder:
    """The whole prompt text encoded at once, after the prefix tokens."""
    return lambda messages: tokenizer.encode(chatglm2_prompt(messages), add_special_tokens=True)


def prompt_encoder(family: Family, tokenizer: PreTrainedTokenizerBase) -> PromptEncoder:
    if family is CHATGLM2:
        return chatglm2_prompt_encoder(tokenizer)
    return role_prompt_encoder(family, tokenizer)
