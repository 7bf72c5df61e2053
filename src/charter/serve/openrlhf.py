"""OpenRLHF's remote reward protocol: split each templated `query` into its prompt and response."""

from __future__ import annotations

import re

from charter.errors import ConfigError

#: Assistant headers of common chat templates (ChatML/Qwen, Llama 3, Zephyr/Phi, Gemma, Mistral), stripped from the
#: start of a response when the prompt did not end with them.
_HEADERS = re.compile(
    r"^\s*(<\|im_start\|>assistant\n|<\|start_header_id\|>assistant<\|end_header_id\|>\n*|<\|assistant\|>\n?"
    r"|<start_of_turn>model\n|\[/INST\]\s*)"
)
#: End-of-turn tokens a response may end with.
_ENDS = re.compile(r"(<\|im_end\|>|<\|eot_id\|>|<\|end\|>|<end_of_turn>|</s>|<\|endoftext\|>)\s*$")
#: The user turn of ChatML and Llama 3 prompts, for the judge to read the question without the template.
_USER = re.compile(
    r"(?:<\|im_start\|>user\n|<\|start_header_id\|>user<\|end_header_id\|>\n*)(.*?)(?:<\|im_end\|>|<\|eot_id\|>)", re.S
)


def response_of(query: str, prompt: str, index: int) -> str:
    """The response in `query`: what follows its prompt, less an assistant header and end-of-turn tokens."""
    if not query.startswith(prompt):
        raise ConfigError(f"query[{index}] does not start with prompts[{index}] (the query is prompt + response)")
    text = _HEADERS.sub("", query[len(prompt) :], count=1)
    while _ENDS.search(text):
        text = _ENDS.sub("", text)
    return text.strip()


def question_of(prompt: str) -> str:
    """The prompt as the judge reads it: the last user turn of a ChatML or Llama 3 template, else the prompt."""
    turns = _USER.findall(prompt)
    return turns[-1].strip() if turns else prompt
