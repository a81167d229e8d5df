"""Configuration objects: validation messages, environment variables, what the model file says."""
import pytest

from orcd import ConfigError, ModelConfig, RuntimeConfig, SamplingParams
from orcd.config import split_options


@pytest.mark.parametrize("field, value, allowed", [
    ("temperature", -0.5, "[0, 100]"),
    ("top_p", 0.0, "(0, 1]"),
    ("top_p", 1.5, "(0, 1]"),
    ("min_p", -0.1, "[0, 1]"),
    ("top_k", -1, ">= 0"),
    ("max_tokens", 0, ">= 1"),
    ("repetition_penalty", 0.0, "(0, 100]"),
    ("seed", -3, ">= 0"),
    ("logprobs", 21, "[0, 20]"),
    ("stop", ("",), "non-empty"),
])
def test_a_bad_sampling_value_names_field_value_and_range(field, value, allowed):
    with pytest.raises(ConfigError) as info:
        SamplingParams(**{field: value})
    message = str(info.value)
    assert field in message and repr(value) in message and allowed in message


def test_sampling_edges_that_are_allowed():
    SamplingParams(temperature=0, top_p=1.0, min_p=0.0, top_k=0, seed=0)
    assert SamplingParams(stop="END").stop == ("END",)
    assert SamplingParams(logit_bias={"5": -1}).logit_bias == {5: -1.0}
    assert SamplingParams().replace(temperature=0).greedy


def test_unknown_options_are_named():
    with pytest.raises(ConfigError, match="temprature"):
        SamplingParams().replace(temprature=1)
    with pytest.raises(ConfigError, match="colour"):
        split_options({"colour": 1, "max_tokens": 4})
    assert split_options({"n_threads": 2, "top_k": 5}) == ({"n_threads": 2}, {"top_k": 5})


def test_unknown_device_is_refused():
    with pytest.raises(ConfigError, match=r"device='gpu0'.*'cuda:N'"):
        RuntimeConfig(device="gpu0")
    for ok in ("auto", "cpu", "cuda", "cuda:1"):
        assert RuntimeConfig(device=ok).device == ok


def test_environment_variables_give_defaults_and_keywords_win(monkeypatch):
    monkeypatch.setenv("ORCD_DEVICE", "cpu")
    monkeypatch.setenv("ORCD_NUM_THREADS", "3")
    assert RuntimeConfig() == RuntimeConfig(device="cpu", n_threads=3)
    assert RuntimeConfig(device="cuda:0").device == "cuda:0"
    monkeypatch.setenv("ORCD_NUM_THREADS", "many")
    with pytest.raises(ConfigError, match="ORCD_NUM_THREADS"):
        RuntimeConfig()
    monkeypatch.setenv("ORCD_NUM_THREADS", "")
    monkeypatch.setenv("ORCD_DEVICE", "tpu")
    with pytest.raises(ConfigError, match="device='tpu'"):
        RuntimeConfig()


def test_orcd_cache_moves_the_model_cache(monkeypatch, tmp_path):
    import orcd.models

    monkeypatch.setenv("ORCD_CACHE", str(tmp_path))
    assert orcd.models.cache_dir() == tmp_path


def test_model_config_from_the_default_model(default_model_path):
    c = ModelConfig.from_gguf(default_model_path)
    assert (c.architecture, c.n_layers, c.n_embd, c.n_heads, c.n_kv_heads, c.head_dim) == ("qwen2", 24, 896, 14, 2, 64)
    assert c.n_vocab == 151_936 and c.context_length == 32_768 and c.rope_freq_base == 1_000_000.0
    assert c.eos_id == 151_645 and c.has_chat_template and c.tokenizer_model == "gpt2"


def test_max_context_above_the_model_needs_the_override(default_model_path):
    c = ModelConfig.from_gguf(default_model_path)
    assert RuntimeConfig().context_for(c) == 4096
    assert RuntimeConfig(max_context=32_768).context_for(c) == 32_768
    with pytest.raises(ConfigError, match=r"max_context=40000.*16\.\.32768.*allow_beyond_model_context"):
        RuntimeConfig(max_context=40_000).context_for(c)
    assert RuntimeConfig(max_context=40_000, allow_beyond_model_context=True).context_for(c) == 40_000
