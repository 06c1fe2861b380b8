// An owned, uninitialised array for the sweeps' workspaces, with its memory recycled between
// calls.
//
// Workspaces are written before they are read, so they are never zero-filled. And they are
// recycled: a training loop calls the sweeps thousands of times with the same sizes, and a
// fresh allocation of several MiB (the discrete gradient's tape) is served by mmap, so the
// kernel would page-fault and zero it again on every call (measured: 28% of the time of a
// D = 64 ResNet step). Released blocks go to a process-wide pool (workspaces are allocated
// by worker threads and released by the calling thread, so a per-thread cache would not
// meet them again); an allocation takes the smallest pooled block that is large enough.
// The pool keeps at most pool_blocks blocks and pool_bytes bytes; anything beyond is freed.
#pragma once
#include <cstddef>
#include <mutex>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "config.hpp"

namespace resode {

namespace detail {

class WorkspacePool {
 public:
#if defined(__SANITIZE_ADDRESS__)
  static constexpr std::size_t pool_blocks = 0;  // AddressSanitizer sees every block freed
#else
  static constexpr std::size_t pool_blocks = 16;
#endif
  static constexpr std::size_t pool_bytes = std::size_t(128) << 20;  // 128 MiB
  // Every block starts on a cache line, so rows of whole 64-byte vectors (sweep.hpp pads
  // blocks so) never straddle two lines; plain operator new gives 16 bytes (mmap'd blocks
  // start 16 bytes into a page), and split loads made W1 up to 13% slower, varying with
  // where the allocator happened to place the tape.
  static constexpr std::align_val_t alignment{64};

  static WorkspacePool& instance() {
    // Never destroyed: a thread still inside a sweep at interpreter exit may release its
    // workspaces after static destructors have run. The pooled blocks go with the process.
    static WorkspacePool* pool = new WorkspacePool;
    return *pool;
  }

  // A block of at least `bytes` bytes (its true size in `bytes` on return).
  void* take(std::size_t& bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      std::size_t best = blocks_.size();
      for (std::size_t i = 0; i < blocks_.size(); ++i)
        if (blocks_[i].second >= bytes &&
            (best == blocks_.size() || blocks_[i].second < blocks_[best].second))
          best = i;
      if (best < blocks_.size()) {
        auto block = blocks_[best];
        blocks_.erase(blocks_.begin() + std::ptrdiff_t(best));
        held_ -= block.second;
        bytes = block.second;
        return block.first;
      }
    }
    return ::operator new(bytes, alignment);
  }

  // Returns a block from take(): pooled if it fits within the limits, freed otherwise.
  void give(void* p, std::size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (blocks_.size() < pool_blocks && held_ + bytes <= pool_bytes) {
        blocks_.emplace_back(p, bytes);
        held_ += bytes;
        return;
      }
    }
    ::operator delete(p, alignment);
  }

  // give() runs in destructors: its emplace_back must never need to allocate.
  WorkspacePool() { blocks_.reserve(pool_blocks); }

 private:
  std::mutex mutex_;
  std::vector<std::pair<void*, std::size_t>> blocks_;
  std::size_t held_ = 0;
};

}  // namespace detail

template <class T>
class Buffer {
  static_assert(std::is_trivial_v<T>, "workspaces hold plain numbers, never constructed");

 public:
  Buffer() = default;
  explicit Buffer(index_t size) : bytes_(std::size_t(size > 0 ? size : 1) * sizeof(T)) {
    data_ = static_cast<T*>(detail::WorkspacePool::instance().take(bytes_));
  }
  Buffer(Buffer&& other) noexcept { swap(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    Buffer(std::move(other)).swap(*this);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    if (data_) detail::WorkspacePool::instance().give(data_, bytes_);
  }
  T* data() { return data_; }

 private:
  void swap(Buffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
  }
  T* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace resode
