"""The LLM facade: generation against the low-level API, streaming, stop conditions, errors.

The generation loop's text handling (UTF-8, stop strings, greedy on device) is
also checked with a scripted model whose logits force a chosen token sequence.
"""
import copy
import time
import types

import numpy as np
import pytest

import orcd

GREEDY = dict(temperature=0)


# ----------------------------------------------------------------------------- a model that says what it is told


class ScriptedSession:
    """Logits that make token script[i] the clear winner at generation step i."""

    def __init__(self, script, n_vocab, max_context):
        self.script, self.n_vocab, self.max_context = script, n_vocab, max_context
        self.n_past = self.step = self.greedy_calls = 0

    def _logits(self):
        logits = np.zeros(self.n_vocab, dtype=np.float32)
        logits[self.script[min(self.step, len(self.script) - 1)]] = 30.0
        return logits

    def prefill(self, ids):
        self.n_past, self.step = self.n_past + len(ids), 0
        return self._logits()

    def decode(self, token):
        self.n_past, self.step = self.n_past + 1, self.step + 1
        return self._logits()

    def reset(self):
        self.n_past = 0


class GreedyScriptedSession(ScriptedSession):
    def decode_greedy(self, token):
        self.greedy_calls += 1
        return int(np.argmax(self.decode(token)))


def scripted(llm, script, session_class=ScriptedSession):
    fake = copy.copy(llm)
    fake._idle_sessions = []
    n_vocab = llm.model.config.n_vocab
    fake.model = types.SimpleNamespace(config=llm.model.config,
                                       session=lambda n, allow: session_class(script, n_vocab, n))
    return fake


def im_end(llm):
    return llm.tokenizer.token_to_id("<|im_end|>")


def test_streamed_text_never_splits_a_utf8_character(cpu_llm):
    # "é" is bytes C3 A9: in byte-level BPE, the tokens "Ã" and "©".
    tok = cpu_llm.tokenizer
    script = [tok.token_to_id("a"), tok.token_to_id("Ã"), tok.token_to_id("©"), tok.token_to_id("b"), im_end(cpu_llm)]
    stream = scripted(cpu_llm, script).stream("x", **GREEDY)
    deltas = list(stream)
    assert "".join(deltas) == "aéb" == stream.completion.text
    assert all("\ufffd" not in d and "Ã" not in d for d in deltas)
    assert stream.completion.finish_reason == "stop" and stream.completion.token_ids == script[:-1]


def test_stop_strings_match_across_tokens_and_are_not_output(cpu_llm):
    script = cpu_llm.tokenize("Hello world. The END is near") + [im_end(cpu_llm)]
    llm = scripted(cpu_llm, script)
    stream = llm.stream("x", stop=["d. The E", "never"], **GREEDY)
    deltas = list(stream)
    assert stream.completion.text == "".join(deltas) == "Hello worl"
    assert stream.completion.finish_reason == "stop"
    # A partial match at the end is held back while it might grow, then released.
    out = llm.generate("x", stop=["near!"], **GREEDY)
    assert out.text == "Hello world. The END is near" and out.finish_reason == "stop"
    out = llm.generate("x", stop=["Hello world. The X"], max_tokens=4, **GREEDY)
    assert out.text == llm.detokenize(script[:4]) and out.finish_reason == "length"


def test_greedy_uses_the_backends_argmax_when_offered(cpu_llm):
    script = cpu_llm.tokenize(" one two three four") + [im_end(cpu_llm)]
    llm = scripted(cpu_llm, script, GreedyScriptedSession)
    out = llm.generate("x", **GREEDY)
    assert out.token_ids == script[:-1]
    session = llm._idle_sessions[0]
    assert session.greedy_calls == len(script) - 1
    llm.generate("x", temperature=0.5, seed=1)  # sampling needs the logits: no device argmax
    assert session.greedy_calls == len(script) - 1


# ----------------------------------------------------------------------------- the real model


def test_greedy_generation_equals_an_argmax_loop_on_the_session(cpu_llm, default_model_path):
    prompt = "def fibonacci(n):"
    out = cpu_llm.generate(prompt, max_tokens=6, **GREEDY)
    ids = cpu_llm.tokenize(prompt, add_special=True)
    session = cpu_llm.model.session(64)
    logits, expected = session.prefill(ids), []
    for _ in range(6):
        expected.append(int(np.argmax(logits)))
        logits = session.decode(expected[-1])
    assert out.token_ids == expected
    assert out.text == cpu_llm.detokenize(expected, skip_special=True)
    assert out.finish_reason == "length"
    assert out.usage.prompt_tokens == len(ids) and out.usage.completion_tokens == 6
    assert out.timings.prefill_s > 0 and out.timings.decode_s > 0 and out.timings.tokens_per_s > 0


def test_stream_gives_the_same_text_and_releases_its_session_when_closed(cpu_llm):
    prompt = "The capital of France is"
    whole = cpu_llm.generate(prompt, max_tokens=5, **GREEDY)
    stream = cpu_llm.stream(prompt, max_tokens=5, **GREEDY)
    assert "".join(stream) == whole.text and stream.completion.token_ids == whole.token_ids

    stream = cpu_llm.stream(prompt, max_tokens=50, **GREEDY)
    next(stream)
    assert not cpu_llm._idle_sessions  # the open stream holds the session
    stream.close()
    assert len(cpu_llm._idle_sessions) == 1 and cpu_llm._idle_sessions[0].n_past == 0
    assert stream.completion is None


def test_a_list_of_prompts_gives_a_list(cpu_llm):
    outs = cpu_llm.generate(["Hello", "import numpy"], max_tokens=2, **GREEDY)
    assert [len(o.token_ids) for o in outs] == [2, 2]
    assert outs[1].token_ids == cpu_llm.generate("import numpy", max_tokens=2, **GREEDY).token_ids


def test_end_of_sequence_stops_unless_ignored(cpu_llm):
    force_end = {im_end(cpu_llm): 100.0}
    out = cpu_llm.generate("Hi", max_tokens=3, logit_bias=force_end, **GREEDY)
    assert (out.finish_reason, out.token_ids, out.text, out.usage.completion_tokens) == ("stop", [], "", 1)
    out = cpu_llm.generate("Hi", max_tokens=3, logit_bias=force_end, ignore_eos=True, **GREEDY)
    assert out.finish_reason == "length" and out.token_ids == [im_end(cpu_llm)] * 3


def test_stop_token_ids(cpu_llm):
    free = cpu_llm.generate("for i in range(", max_tokens=4, **GREEDY).token_ids
    j = next(i for i, t in enumerate(free) if t not in free[:i] and i > 0)
    out = cpu_llm.generate("for i in range(", max_tokens=4, stop_token_ids=[free[j]], **GREEDY)
    assert out.token_ids == free[:j] and out.finish_reason == "stop"


def test_logprobs_of_chosen_tokens(cpu_llm):
    out = cpu_llm.generate("1, 2, 3,", max_tokens=2, logprobs=3, **GREEDY)
    assert len(out.logprobs) == 2
    for token, lp in zip(out.token_ids, out.logprobs):
        assert lp.token_id == token and lp.top[0][0] == token  # greedy picks the most probable
        assert lp.logprob <= 0 and len(lp.top) == 3 and lp.top[0][1] >= lp.top[1][1] >= lp.top[2][1]


def test_a_prompt_longer_than_the_context_fails_before_any_compute(cpu_llm):
    long_prompt = "word " * 600
    start = time.perf_counter()
    with pytest.raises(orcd.InvalidArgumentError, match=r"prompt is \d+ tokens but the context holds 512.*truncate"):
        cpu_llm.generate(long_prompt, max_tokens=2)
    assert time.perf_counter() - start < 1.0  # encoding only; a CPU prefill of 600 tokens takes far longer
    # Truncation keeps the prompt's end and room for the answer (scripted: no 510-token CPU prefill).
    out = scripted(cpu_llm, [cpu_llm.tokenizer.token_to_id("a")]).generate(
        "start " + "word " * 520, max_tokens=2, truncate=True, **GREEDY)
    assert out.usage.prompt_tokens == 510 and len(out.token_ids) == 2


def test_bad_options_raise_config_errors(cpu_llm):
    with pytest.raises(orcd.ConfigError, match="temperature"):
        cpu_llm.generate("x", temperature=-1)
    with pytest.raises(orcd.ConfigError, match="colour"):
        cpu_llm.generate("x", colour="red")
    with pytest.raises(orcd.ConfigError, match="device"):
        orcd.LLM(cpu_llm.path, device="tpu")
    with pytest.raises(orcd.InvalidArgumentError, match="no model file"):
        orcd.LLM("/nonexistent/model.gguf")


def test_chat_goes_through_the_template(cpu_llm):
    messages = [{"role": "user", "content": "Say OK."}]
    ids = cpu_llm.chat_prompt_ids(messages)
    assert ids[0] == cpu_llm.tokenizer.token_to_id("<|im_start|>")
    assert cpu_llm.detokenize(ids).endswith("<|im_start|>assistant\n")
    out = cpu_llm.chat(messages, max_tokens=3, **GREEDY)
    assert out.usage.prompt_tokens == len(ids) and out.text.strip()
    assert "".join(cpu_llm.chat_stream(messages, max_tokens=3, **GREEDY)) == out.text


def test_tokenize_and_detokenize(cpu_llm):
    ids = cpu_llm.tokenize("héllo <|im_end|>")
    assert cpu_llm.detokenize(ids) == "héllo <|im_end|>"
    assert ids[-1] == im_end(cpu_llm)
