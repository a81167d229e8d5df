"""The seed's acceptance tests: a haiku that cannot be canned, and reproducible sampling."""
import datetime
import json
import os
import subprocess
import sys

import pytest

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty"}


def minute_word(minute: int) -> str:
    """0..59 spelled out: 'seven', 'thirty-seven'."""
    if minute < 20:
        return _ONES[minute]
    tens, ones = divmod(minute, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")


def test_minute_words():
    assert [minute_word(m) for m in (0, 7, 13, 20, 37, 59)] == [
        "zero", "seven", "thirteen", "twenty", "thirty-seven", "fifty-nine"]


def test_haiku_about_gpu_computing_with_the_current_minute(cpu_llm, default_model_path, record_property):
    word = minute_word(datetime.datetime.now().minute)
    messages = [{"role": "user", "content": f"Write a haiku about GPU computing. It must include the word "
                                            f"\"{word}\". Reply with the haiku only."}]
    out = cpu_llm.chat(messages, max_tokens=40, temperature=0)
    text = out.text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) >= 3 or len(text.split()) >= 10, text
    complied = word in text.lower().replace(" ", "-") or word.replace("-", " ") in text.lower()
    record_property("minute_word", word)
    record_property("minute_word_present", complied)
    print(f"\nhaiku (minute word {word!r} {'present' if complied else 'ABSENT'}):\n{text}")

    # Greedy tokens must be real model output: the numpy reference forward pass agrees on the first 16.
    reference_model = pytest.importorskip(
        "reference_model", reason="tests_py/reference_model.py (the numpy forward pass) is not in this tree")
    prompt_ids = cpu_llm.chat_prompt_ids(messages)
    expected = list(reference_model.ReferenceModel(default_model_path).greedy(prompt_ids, 16))
    # token_ids leaves out the end token: a haiku shorter than 16 tokens must end
    # where the reference's next greedy token is an end token.
    n = min(16, len(out.token_ids))
    assert out.token_ids[:n] == expected[:n]
    if n < 16:
        assert out.finish_reason == "stop" and expected[n] in cpu_llm.tokenizer.stop_ids, (out.finish_reason, expected)


SAMPLED = dict(max_tokens=12, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
PROMPT = "List some random words:"


def test_the_same_seed_reproduces_across_calls_sessions_and_processes(cpu_llm, default_model_path):
    first = cpu_llm.generate(PROMPT, seed=1234, **SAMPLED).token_ids
    assert cpu_llm.generate(PROMPT, seed=1234, **SAMPLED).token_ids == first
    held = cpu_llm.stream("other", max_tokens=30, temperature=0)  # holds the idle session: the next call opens another
    next(held)
    assert cpu_llm.generate(PROMPT, seed=1234, **SAMPLED).token_ids == first
    held.close()

    script = ("import json, sys, orcd; llm = orcd.LLM(sys.argv[1], device='cpu', max_context=512); "
              f"print(json.dumps(llm.generate({PROMPT!r}, seed=1234, **{SAMPLED!r}).token_ids))")
    result = subprocess.run([sys.executable, "-c", script, default_model_path], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == first


def test_another_seed_gives_another_sample(cpu_llm):
    a = cpu_llm.generate(PROMPT, seed=1, **SAMPLED).token_ids
    b = cpu_llm.generate(PROMPT, seed=2, **SAMPLED).token_ids
    assert a != b
