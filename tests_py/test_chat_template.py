"""Chat templates: the default model's own template, the ChatML fallback, the sandbox."""
from __future__ import annotations

import datetime
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from gguf_metadata import read_metadata  # noqa: E402

from orcd.chat_template import CHATML_TEMPLATE, ChatTemplate, ChatTemplateError  # noqa: E402

QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


@pytest.fixture(scope="module")
def metadata(default_model_path):
    return read_metadata(default_model_path)


@pytest.fixture(scope="module")
def template(metadata):
    return ChatTemplate.from_metadata(metadata)


def test_uses_the_model_template(template, metadata):
    assert template.source == metadata["tokenizer.chat_template"]
    assert template.bos_token == "<|endoftext|>" and template.eos_token == "<|im_end|>"


def test_no_system_prompt_gets_the_default_one(template):
    out = template.render([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert out == (
        f"<|im_start|>system\n{QWEN_DEFAULT_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_system_prompt_and_multi_turn(template):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ]
    assert template.render(messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4<|im_end|>\n"
        "<|im_start|>user\nAnd 3+3?<|im_end|>\n"
    )
    assert template.render(messages, add_generation_prompt=True).endswith(
        "And 3+3?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_tools_and_tool_calls(template):
    tools = [{"type": "function", "function": {"name": "add", "description": "a <b> & c",
                                                "parameters": {"type": "object"}}}]
    messages = [
        {"role": "user", "content": "add 1 and 2"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}]},
        {"role": "tool", "content": "3"},
    ]
    out = template.render(messages, tools=tools, add_generation_prompt=True)
    # tojson gives plain JSON, not HTML-escaped JSON
    assert '{"type": "function", "function": {"name": "add", "description": "a <b> & c", ' in out
    assert "<|im_start|>assistant\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call><|im_end|>\n" in out
    assert "<|im_start|>user\n<tool_response>\n3\n</tool_response><|im_end|>\n" in out
    assert out.startswith(f"<|im_start|>system\n{QWEN_DEFAULT_SYSTEM}\n\n# Tools\n")


def test_chatml_fallback_without_a_template(metadata):
    bare = {k: v for k, v in metadata.items() if k != "tokenizer.chat_template"}
    t = ChatTemplate.from_metadata(bare)
    assert t.source == CHATML_TEMPLATE
    assert t.render([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
                    add_generation_prompt=True) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    )


def test_explicit_template_wins(metadata):
    t = ChatTemplate.from_metadata(metadata, template="{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}")
    assert t.render([{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]) == "<|endoftext|>[x][y]"


def test_what_real_templates_use():
    source = (
        "{% set ns = namespace(n=0) %}"
        "{% for m in messages %}"
        "{% if m.role == 'skip' %}{% continue %}{% endif %}"
        "{% if m.role == 'stop' %}{% break %}{% endif %}"
        "{% set ns.n = ns.n + 1 %}{{ m.content | tojson }};"
        "{% endfor %}"
        "n={{ ns.n }} {{ strftime_now('%Y') }}"
    )
    out = ChatTemplate(source).render([
        {"role": "user", "content": "a\"<"}, {"role": "skip", "content": "s"},
        {"role": "user", "content": "é"}, {"role": "stop", "content": "t"}, {"role": "user", "content": "z"},
    ])
    assert out == f'"a\\"<";"é";n=2 {datetime.datetime.now().year}'


def test_raise_exception_is_reported():
    t = ChatTemplate("{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok")
    assert t.render([{"role": "user", "content": ""}]) == "ok"
    with pytest.raises(ChatTemplateError, match="first must be user"):
        t.render([{"role": "assistant", "content": ""}])


def test_broken_template_fails_only_when_rendered():
    t = ChatTemplate("{% for m in messages %}{{ m.content }", name="tokenizer.chat_template")
    with pytest.raises(ChatTemplateError, match="does not compile"):
        t.render([{"role": "user", "content": "x"}])
    with pytest.raises(ChatTemplateError):
        t.check()


def test_sandbox_blocks_internals_and_mutation():
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}").render([])
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{% set _ = messages.append({'role': 'x'}) %}").render([{"role": "user", "content": "a"}])
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{{ cycler.__init__.__globals__ }}").render([])


def test_messages_must_be_dicts(template):
    from orcd.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        template.render("hello")
    with pytest.raises(InvalidArgumentError):
        template.render(["hello"])
