"""Chat templates: the Jinja template of tokenizer.chat_template, rendered in a sandbox.

A template inside a model file is untrusted input, so it runs in jinja2's
ImmutableSandboxedEnvironment (no attribute access to internals, no mutation of
the values passed in). It is compiled on first use: a broken template raises
ChatTemplateError when a chat is rendered, and never stops the model from loading
or from plain text generation.

Models without a template get CHATML_TEMPLATE; any template can be given explicitly.
"""
from __future__ import annotations

import datetime
import json
import os
from typing import Any, Mapping, Sequence

from .errors import ChatTemplateError, InvalidArgumentError

__all__ = ["ChatTemplate", "ChatTemplateError", "CHATML_TEMPLATE"]

# The fallback for models whose file holds no template: ChatML, as Qwen and many others use.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


class _TemplateRaised(Exception):
    """raise_exception() called by the template itself."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


def _tojson(value: Any, indent: int | None = None, separators=None, sort_keys: bool = False,
            ensure_ascii: bool = False) -> str:
    # Templates expect plain JSON (as Python's json.dumps gives it), not jinja2's
    # HTML-escaped variant, which would turn '<' into '\u003c'.
    return json.dumps(value, indent=indent, separators=separators, sort_keys=sort_keys,
                      ensure_ascii=ensure_ascii)


class ChatTemplate:
    """A chat template: render(messages, add_generation_prompt=..., tools=...) -> prompt text."""

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "", name: str = "chat template"):
        if not isinstance(source, str):
            raise InvalidArgumentError(f"a chat template is a str, got {type(source).__name__}")
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.name = name
        self._compiled = None

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], template: str | None = None) -> "ChatTemplate":
        """The model's template (tokenizer.chat_template), `template` if given, else ChatML.

        bos_token / eos_token are the texts of the model's BOS and EOS tokens.
        """
        tokens = metadata.get("tokenizer.ggml.tokens")

        def token_text(key: str) -> str:
            value = metadata.get(key)
            if value is None or tokens is None:
                return ""
            value = int(value)
            return str(tokens[value]) if 0 <= value < len(tokens) else ""

        bos, eos = token_text("tokenizer.ggml.bos_token_id"), token_text("tokenizer.ggml.eos_token_id")
        if template is not None:
            return cls(template, bos, eos, name="given chat template")
        source = metadata.get("tokenizer.chat_template")
        if isinstance(source, str) and source.strip():
            return cls(source, bos, eos, name="tokenizer.chat_template")
        return cls(CHATML_TEMPLATE, bos, eos, name="ChatML fallback template")

    @classmethod
    def from_gguf(cls, source: Any, template: str | None = None) -> "ChatTemplate":
        """From a GGUF path or any object with a `.metadata` dict (orcd.GGUFFile)."""
        if isinstance(source, (str, os.PathLike)):
            import orcd

            source = orcd.GGUFFile(os.fspath(source))
        metadata = getattr(source, "metadata", None)
        if not isinstance(metadata, Mapping):
            raise InvalidArgumentError(
                f"ChatTemplate.from_gguf takes a path or an object with a .metadata dict, got {type(source).__name__}"
            )
        return cls.from_metadata(metadata, template)

    # ---------------------------------------------------------------- compiling and rendering

    def _compile(self):
        if self._compiled is None:
            import jinja2
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(
                trim_blocks=True,
                lstrip_blocks=True,
                extensions=["jinja2.ext.loopcontrols"],
                undefined=jinja2.Undefined,
            )
            env.filters["tojson"] = _tojson
            env.globals["raise_exception"] = _raise_exception
            env.globals["strftime_now"] = _strftime_now
            try:
                self._compiled = env.from_string(self.source)
            except jinja2.TemplateSyntaxError as exc:
                raise ChatTemplateError(
                    f"the {self.name} does not compile: {exc.message} (template line {exc.lineno}); "
                    "pass a working template explicitly (ChatTemplate(source) or template=...)"
                ) from None
        return self._compiled

    def check(self) -> None:
        """Compile now; raises ChatTemplateError if the template is broken."""
        self._compile()

    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False,
               tools: Sequence[Mapping[str, Any]] | None = None, **variables: Any) -> str:
        """The prompt text for messages ([{"role": ..., "content": ...}, ...]).

        Extra keyword arguments become template variables (e.g. documents, date_string).
        """
        if isinstance(messages, (str, bytes)) or not all(isinstance(m, Mapping) for m in messages):
            raise InvalidArgumentError("messages is a list of dicts with 'role' and 'content'")
        import jinja2

        compiled = self._compile()
        context = {
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            **variables,
            "messages": [dict(m) for m in messages],
            "add_generation_prompt": add_generation_prompt,
            "tools": [dict(t) for t in tools] if tools else None,
        }
        try:
            return compiled.render(**context)
        except _TemplateRaised as exc:
            raise ChatTemplateError(f"the {self.name} refused the conversation: {exc}") from None
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"the {self.name} failed to render: {exc}") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise ChatTemplateError(
                f"the {self.name} failed to render: {type(exc).__name__}: {exc}"
            ) from None

    def __repr__(self) -> str:
        return f"ChatTemplate({self.name}, {len(self.source)} chars)"
