"""The LLM facade: text in, text out, with the tokenizer, chat template, sampler and stop conditions.

    llm = orcd.LLM()                                   # the default model, pulled on first use
    out = llm.generate("def fib(n):", max_tokens=64, temperature=0)
    for delta in llm.stream("Once upon", max_tokens=64): print(delta, end="")
    llm.chat([{"role": "user", "content": "hi"}]).text
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

from . import models
from .config import ModelConfig, RuntimeConfig, SamplingParams, split_options
from .errors import InvalidArgumentError
from .model import Model
from .sampling import Sampler, TokenLogprob, model_logprobs


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int  # tokens the model produced, a final end-of-sequence token included

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Timings:
    prefill_s: float        # prompt in, first token chosen (time to first token)
    decode_s: float         # every later token
    tokens_per_s: float     # decode steps per second (0 when there was none)


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: list[int]    # the generated tokens, without a final end-of-sequence token
    finish_reason: str      # "stop" (end token, stop token or stop string) or "length" (max_tokens or context full)
    usage: Usage
    timings: Timings
    logprobs: list[TokenLogprob] | None = field(default=None)


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of text that could still grow into a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


class CompletionStream:
    """An iterator of text deltas. After it is exhausted, .completion holds the whole result.

    close() (or leaving a `with` block, or dropping it) ends generation early and
    gives the session back; .completion then stays None.
    """

    def __init__(self, llm: "LLM", prompt_ids: list[int], params: SamplingParams):
        self.completion: Completion | None = None
        self._steps = llm._run(prompt_ids, params, self)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        return next(self._steps)

    def close(self) -> None:
        self._steps.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self._steps.close()


class LLM:
    """A model ready to generate text.

    model: a GGUF path or a known model name; None is the default model, pulled on first use.
    device: "auto" (CUDA when a usable GPU is present, else the CPU), "cpu", "cuda" or "cuda:N";
    None takes $ORCD_DEVICE, else "auto".
    Other keywords are RuntimeConfig fields (n_threads, max_context, allow_beyond_model_context)
    or SamplingParams fields, which become this LLM's sampling defaults.
    """

    def __init__(self, model=None, device: str | None = None, *, chat_template: str | None = None,
                 show_progress: bool = False, **options):
        runtime_options, sampling_options = split_options(options)
        if device is not None:
            runtime_options["device"] = device
        self.runtime = RuntimeConfig(**runtime_options)
        self.sampling = SamplingParams(**sampling_options)
        self.path = models.resolve(model)

        from . import GGUFFile
        from .chat_template import ChatTemplate
        from .tokenizer import Tokenizer

        with GGUFFile(str(self.path)) as f:
            self.model_config = ModelConfig.from_metadata(f.metadata)
            self.tokenizer = Tokenizer.from_metadata(f.metadata)
            # Compiled on first chat, so a broken template never stops plain generation.
            self.chat_template = ChatTemplate.from_metadata(f.metadata, template=chat_template)
        self.max_context = self.runtime.context_for(self.model_config)

        start = time.perf_counter()
        self.model = _load_with_progress(
            lambda: Model(self.path, device=self.runtime.device, n_threads=self.runtime.n_threads), show_progress)
        self.load_s = time.perf_counter() - start
        self.device = self.model.device
        self._idle_sessions: list = []

    # ------------------------------------------------------------------ tokens

    def tokenize(self, text: str, add_special: bool = False, parse_special: bool = True) -> list[int]:
        """Token ids of text (add_special adds the BOS token when the model asks for one)."""
        return self.tokenizer.encode(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, ids, skip_special: bool = False) -> str:
        return self.tokenizer.decode(ids, skip_special=skip_special)

    # ------------------------------------------------------------------ generation

    def generate(self, prompt, *, truncate: bool = False, **sampling):
        """Complete a prompt (or each of a list of prompts) -> Completion (or a list of them)."""
        if isinstance(prompt, (list, tuple)):
            return [self.generate(p, truncate=truncate, **sampling) for p in prompt]
        params = self._params(sampling)
        stream = CompletionStream(self, self._prompt_ids(prompt, params, truncate, add_special=True), params)
        for _ in stream:
            pass
        return stream.completion

    def stream(self, prompt: str, *, truncate: bool = False, **sampling) -> CompletionStream:
        """Text deltas of the completion as it is generated; UTF-8 characters are never split."""
        params = self._params(sampling)
        return CompletionStream(self, self._prompt_ids(prompt, params, truncate, add_special=True), params)

    def chat(self, messages, *, truncate: bool = False, **sampling) -> Completion:
        """The assistant's reply to messages ([{"role": ..., "content": ...}]) through the model's chat template."""
        stream = self.chat_stream(messages, truncate=truncate, **sampling)
        for _ in stream:
            pass
        return stream.completion

    def chat_stream(self, messages, *, truncate: bool = False, **sampling) -> CompletionStream:
        params = self._params(sampling)
        return CompletionStream(self, self.chat_prompt_ids(messages, params, truncate), params)

    def chat_prompt_ids(self, messages, params: SamplingParams | None = None, truncate: bool = False) -> list[int]:
        """The prompt token ids of a conversation, ending with the assistant's turn opened."""
        text = self.chat_template.render(messages, add_generation_prompt=True)
        # The template writes the special tokens (BOS included) itself.
        return self._prompt_ids(text, params or self.sampling, truncate, add_special=False)

    # ------------------------------------------------------------------ internals

    def _params(self, overrides) -> SamplingParams:
        return self.sampling.replace(**overrides) if overrides else self.sampling

    def _prompt_ids(self, prompt: str, params: SamplingParams, truncate: bool, add_special: bool) -> list[int]:
        if not isinstance(prompt, str):
            raise InvalidArgumentError(f"a prompt is a str, got {type(prompt).__name__}")
        ids = self.tokenizer.encode(prompt, add_special=add_special, parse_special=True)
        if not ids:
            if self.tokenizer.bos_id is None:
                raise InvalidArgumentError("the prompt is empty and the model has no BOS token to start from")
            ids = [self.tokenizer.bos_id]
        if len(ids) > self.max_context:
            if not truncate:
                raise InvalidArgumentError(
                    f"the prompt is {len(ids)} tokens but the context holds {self.max_context}: shorten it, "
                    f"raise max_context (the model supports {self.model_config.context_length}), "
                    "or pass truncate=True to keep the prompt's end")
            # Keep the end of the prompt and leave room for the answer (at most half the context).
            keep = self.max_context - min(params.max_tokens, self.max_context // 2)
            ids = ids[-keep:]
        return ids

    def _acquire_session(self):
        if self._idle_sessions:
            return self._idle_sessions.pop()
        return self.model.session(self.max_context, self.runtime.allow_beyond_model_context)

    def _release_session(self, session) -> None:
        session.reset()
        if not self._idle_sessions:  # keep one for the next call; more would only hold memory
            self._idle_sessions.append(session)

    def _run(self, prompt_ids: list[int], params: SamplingParams, sink: CompletionStream):
        """The generation loop, as a generator of text deltas; the result goes to sink.completion."""
        tokenizer = self.tokenizer
        sampler = Sampler(params, self.model.config.n_vocab)
        stop_ids = set(params.stop_token_ids)
        if not params.ignore_eos:
            stop_ids |= tokenizer.stop_ids
        stops = params.stop
        longest_stop = max((len(s) for s in stops), default=0)
        decoder = tokenizer.stream_decoder(skip_special=True)
        history = list(prompt_ids)
        generated: list[int] = []
        logprobs = [] if params.logprobs is not None else None
        text, emitted = "", 0
        finish, stopped_by_string = None, False

        session = self._acquire_session()
        try:
            # Greedy argmax on the device, when the backend offers it and nothing needs the logits.
            decode_greedy = getattr(session, "decode_greedy", None)
            if not (params.greedy and logprobs is None and not params.logit_bias and not sampler.penalised):
                decode_greedy = None

            start = time.perf_counter()
            logits = session.prefill(prompt_ids)
            token = sampler(logits, history)
            first_token_at = time.perf_counter()
            n_sampled = 1
            while True:
                if logprobs is not None:
                    logprobs.append(model_logprobs(logits, token, params.logprobs))
                if token in stop_ids:
                    finish = "stop"
                    break
                generated.append(token)
                history.append(token)
                searched_from = max(0, len(text) - longest_stop + 1)
                text += decoder.push(token)
                if stops:
                    hits = [i for i in (text.find(s, searched_from) for s in stops) if i >= 0]
                    if hits:
                        text, finish, stopped_by_string = text[:min(hits)], "stop", True
                        break
                    ready = len(text) - _held_back(text, stops)
                else:
                    ready = len(text)
                if ready > emitted:
                    yield text[emitted:ready]
                    emitted = ready
                if len(generated) >= params.max_tokens or session.n_past >= self.max_context:
                    finish = "length"
                    break
                if decode_greedy is not None:
                    token = int(decode_greedy(token))
                else:
                    logits = session.decode(token)
                    token = sampler(logits, history)
                n_sampled += 1
            if not stopped_by_string:
                text += decoder.flush()
                if stops:  # the flushed bytes may complete a stop string
                    hits = [i for i in (text.find(s, emitted) for s in stops) if i >= 0]
                    if hits:
                        text, finish = text[:min(hits)], "stop"
            end = time.perf_counter()
        finally:
            self._release_session(session)

        if len(text) > emitted:
            yield text[emitted:]
        decode_s = end - first_token_at
        sink.completion = Completion(
            text=text,
            token_ids=generated,
            finish_reason=finish,
            usage=Usage(len(prompt_ids), n_sampled),
            timings=Timings(first_token_at - start, decode_s, (n_sampled - 1) / decode_s if decode_s > 0 else 0.0),
            logprobs=logprobs,
        )

    def close(self) -> None:
        self._idle_sessions.clear()
        self.model.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"LLM({str(self.path)!r}, device={self.device!r}, max_context={self.max_context})"


def _load_with_progress(load, show: bool):
    """Run load(); when show is set and it takes more than a second, draw an elapsed-time bar on stderr."""
    if not show:
        return load()
    result, error = [], []

    def target():
        try:
            result.append(load())
        except BaseException as e:  # re-raised in the caller's thread
            error.append(e)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(1.0)
    if worker.is_alive():
        from tqdm import tqdm

        with tqdm(desc="loading model", bar_format="{desc}: {elapsed}", file=sys.stderr, leave=False) as bar:
            while worker.is_alive():
                worker.join(0.1)
                bar.update(0)
    worker.join()
    if error:
        raise error[0]
    return result[0]


__all__ = ["LLM", "Completion", "CompletionStream", "Usage", "Timings"]
