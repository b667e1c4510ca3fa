#pragma once
// Errors the storage library returns. Callers decide what to log and which HTTP status to map to.
#include <stdexcept>
#include <string>

namespace cogwheel::storage {

// Any storage failure, with a one-line message fit for a user.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The database cannot be reached right now (connect failed, connection lost, pool exhausted).
// Transient: the same call may succeed later.
class unavailable : public error {
 public:
  using error::error;
};

// The database holds a schema this binary cannot work with (unknown or edited migrations).
class schema_mismatch : public error {
 public:
  using error::error;
};

}  // namespace cogwheel::storage
