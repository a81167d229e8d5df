// orcd/error.h — the one exception type of the C++ API.
// Every error orcd throws on purpose is an orcd::Error; kind() tells what went
// wrong, what() says where and what would fix it. Python sees each kind as the
// class of the same name (all subclasses of orcd.OrcdError).
#pragma once

#include <stdexcept>
#include <string>

namespace orcd {

enum class ErrorKind {
    InvalidFile,      // a model file is malformed, truncated or inconsistent
    Unsupported,      // well-formed but not handled: architecture, tensor type, ...
    InvalidArgument,  // a caller's value is out of range (token id, context, ...)
    OutOfMemory,      // host or device memory does not suffice
    Closed,           // an object was used after close()
};

/// Name of the kind as Python knows it, e.g. "InvalidFileError" (static
/// storage, never freed). Never throws.
const char* error_kind_name(ErrorKind kind);

/// What orcd throws; what() is the message for the user.
class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    /// Which kind of failure this is, for callers that branch on it.
    ErrorKind kind() const noexcept { return kind_; }

private:
    ErrorKind kind_;
};

}  // namespace orcd
