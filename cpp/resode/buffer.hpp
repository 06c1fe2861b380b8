// An owned, uninitialised array: the sweeps' workspaces are written before they are read, so
// zero-filling them (as std::vector does) would only cost time on every call.
#pragma once
#include <cstddef>
#include <memory>

#include "config.hpp"

namespace resode {

template <class T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(index_t size) : data_(new T[std::size_t(size > 0 ? size : 1)]) {}
  T* data() { return data_.get(); }

 private:
  std::unique_ptr<T[]> data_;
};

}  // namespace resode
