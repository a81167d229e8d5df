"""orcd: a GGUF inference runtime for NVIDIA GPUs, driven from Python."""
from . import _core
from .errors import (
    ChatTemplateError,
    ClosedError,
    ConfigError,
    InvalidArgumentError,
    InvalidFileError,
    OrcdError,
    OutOfMemoryError,
    UnsupportedError,
)

__version__ = _core.build_info()["version"]

GGUFFile = _core.GGUFFile

from . import models  # noqa: E402
from .model import HyperParams, Model, Session  # noqa: E402
from .tokenizer import StreamDecoder, Tokenizer, TokenType  # noqa: E402
from .chat_template import CHATML_TEMPLATE, ChatTemplate  # noqa: E402
from .config import ModelConfig, RuntimeConfig, SamplingParams  # noqa: E402
from .sampling import Sampler, TokenLogprob  # noqa: E402
from .llm import LLM, Completion, CompletionStream, Timings, Usage  # noqa: E402


def build_info() -> dict:
    """How this copy of orcd was built: version, compiler, CUDA on/off, CUDA architectures, build type."""
    return _core.build_info()


def cuda_devices() -> list:
    """The CUDA devices orcd can use, as dicts (name, total_memory, compute_capability); [] without a GPU."""
    return _core.cuda_devices()


__all__ = [
    "CHATML_TEMPLATE", "ChatTemplate", "ChatTemplateError", "StreamDecoder", "Tokenizer", "TokenType",
    "LLM", "Completion", "CompletionStream", "Timings", "Usage", "ModelConfig", "RuntimeConfig", "SamplingParams",
    "Sampler", "TokenLogprob",
    "ClosedError", "ConfigError", "GGUFFile", "HyperParams", "Model", "Session", "models", "InvalidArgumentError", "InvalidFileError", "OrcdError",
    "OutOfMemoryError", "UnsupportedError", "build_info", "cuda_devices", "__version__",
]
