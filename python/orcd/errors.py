"""The exception hierarchy shared by the C++ core and the Python layer.

The C++ core throws orcd::Error with a kind; the bindings translate each kind
into the class of the same name here, so `except orcd.OrcdError` catches all.
"""


class OrcdError(Exception):
    """Base class of every error orcd raises on purpose."""


class InvalidFileError(OrcdError):
    """A model file is malformed, truncated or inconsistent."""


class UnsupportedError(OrcdError):
    """A well-formed input that orcd does not handle (architecture, tensor type...)."""


class InvalidArgumentError(OrcdError, ValueError):
    """A caller passed a value outside what the call accepts."""


class OutOfMemoryError(OrcdError, MemoryError):
    """Not enough (device) memory; the message says how much was needed and free."""


class ConfigError(OrcdError, ValueError):
    """A configuration field holds a value outside its allowed range."""


class ClosedError(OrcdError):
    """An object was used after it was closed."""


class ChatTemplateError(OrcdError, ValueError):
    """A chat template failed to compile or to render (the message says where and why)."""
