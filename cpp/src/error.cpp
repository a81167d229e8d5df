#include "orcd/error.h"

namespace orcd {

const char* error_kind_name(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::InvalidFile: return "InvalidFileError";
        case ErrorKind::Unsupported: return "UnsupportedError";
        case ErrorKind::InvalidArgument: return "InvalidArgumentError";
        case ErrorKind::OutOfMemory: return "OutOfMemoryError";
        case ErrorKind::Closed: return "ClosedError";
    }
    return "OrcdError";
}

}  // namespace orcd
