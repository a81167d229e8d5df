"""The `orcd` command line: help, one-line user errors, run, chat and bench on the CPU."""
import json
import os
import subprocess
import sys

import pytest

from orcd.cli import main


def orcd_cli(*args, stdin=None, timeout=300):
    env = {**os.environ, "ORCD_DEVICE": "cpu"}
    return subprocess.run([sys.executable, "-m", "orcd", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("command", [[], ["run"], ["chat"], ["bench"], ["pull"], ["inspect"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main(command + ["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: orcd" in text
    if command in (["run"], ["chat"]):
        for flag in ("--max-tokens", "--temperature", "--top-k", "--top-p", "--min-p", "--repetition-penalty",
                     "--seed", "--stop", "-m MODEL", "--device"):
            assert flag in text


@pytest.mark.parametrize("args, words", [
    (["run", "hi", "--temperature", "-1"], ["temperature=-1.0", "[0, 100]"]),
    (["run", "hi", "--top-p", "2"], ["top_p=2.0", "(0, 1]"]),
    (["run", "hi", "-m", "/nonexistent.gguf"], ["no model file"]),
    (["run", "hi", "--device", "tpu"], ["device='tpu'"]),
    (["run", "hi", "--logit-bias", "abc"], ["--logit-bias"]),
    (["bench", "-p", "x"], ["comma-separated integers"]),
    (["frobnicate"], ["invalid choice"]),
])
def test_a_user_error_is_one_line_on_stderr_and_a_failing_status(args, words):
    result = orcd_cli(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0]


def test_run_streams_the_chat_answer(cpu_llm, default_model_path):
    expected = cpu_llm.chat([{"role": "user", "content": "Name a colour."}], max_tokens=4, temperature=0).text
    result = orcd_cli("run", "Name a colour.", "-m", default_model_path, "--max-tokens", "4", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected + "\n"


def test_run_reads_the_prompt_from_stdin_and_raw_skips_the_template(cpu_llm, default_model_path):
    expected = cpu_llm.generate("def add(a, b):", max_tokens=4, temperature=0).text
    result = orcd_cli("run", "--raw", "-m", default_model_path, "--max-tokens", "4", "--temperature", "0", "-v",
                      stdin="def add(a, b):")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected + "\n"
    assert "prompt tokens" in result.stderr and "tokens/s" in result.stderr


def test_chat_keeps_history_and_obeys_reset_and_exit(default_model_path):
    result = orcd_cli("chat", "-m", default_model_path, "--max-tokens", "3", "--temperature", "0",
                      stdin="Hello\n/reset\nHi again\n/exit\nnever read\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count(">>> ") == 4 and "(history cleared)" in out and "never read" not in out
    assert out.index("Hello") < out.index("(history cleared)") < out.index("Hi again")


def test_bench_reports_prefill_and_decode_as_json(default_model_path):
    result = orcd_cli("bench", "-m", default_model_path, "-p", "8", "-n", "3", "-d", "0,8", "-r", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == "CPU" and report["device"] and report["model"].endswith(".gguf")
    assert report["load_s"] > 0 and "version" in report["build"]
    tests = {r["test"]: r for r in report["results"]}
    assert set(tests) == {"pp8", "tg3", "pp8 @ d8", "tg3 @ d8"}
    assert all(r["tokens_per_s"] > 0 and r["repetitions"] == 2 for r in tests.values())
    assert tests["pp8"]["ttft_ms"] > 0 and tests["tg3"]["weight_gb_per_s"] > 0
