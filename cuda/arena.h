// VRAM arenas: one device allocation holds many buffers placed at 256-byte
// alignment, so nothing is allocated per tensor or per step.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <vector>

namespace orcd::cuda {

constexpr size_t kArenaAlignment = 256;

inline size_t align_up(size_t n, size_t a = kArenaAlignment) { return (n + a - 1) / a * a; }

// Offsets of buffers laid out one after the other; total() is the allocation size.
class ArenaLayout {
public:
    size_t add(size_t bytes) {
        const size_t offset = total_;
        total_ = align_up(total_ + bytes);
        return offset;
    }
    size_t total() const { return total_; }

private:
    size_t total_ = 0;
};

// Owns one cudaMalloc'ed block on one device.
class DeviceArena {
public:
    DeviceArena() = default;
    // Checks the size against the device's free memory first; throws OutOfMemory
    // ("needs X GiB, Y GiB free on <device>") leaving nothing allocated.
    DeviceArena(int device, size_t bytes, const std::string& what);
    ~DeviceArena();
    DeviceArena(DeviceArena&& other) noexcept { *this = std::move(other); }
    DeviceArena& operator=(DeviceArena&& other) noexcept;
    DeviceArena(const DeviceArena&) = delete;
    DeviceArena& operator=(const DeviceArena&) = delete;

    char* base() const { return base_; }
    size_t size() const { return size_; }

private:
    int device_ = 0;
    char* base_ = nullptr;
    size_t size_ = 0;
};

// Throws OutOfMemory unless `bytes` fit in the device's free memory.
void check_fits(int device, size_t bytes, const std::string& what);

}  // namespace orcd::cuda
