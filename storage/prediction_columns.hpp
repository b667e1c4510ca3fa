#pragma once
// Shared by the repositories of the predictions table (predictions.cpp, dispatch.cpp): the column
// list every SELECT/RETURNING of a whole prediction uses, and its parser. Not part of the API.
#include <pqxx/pqxx>

#include "storage/predictions.hpp"

namespace cogwheel::storage {

// The columns of a whole prediction, in the order prediction_from_row reads them.
extern const char* const prediction_columns;
prediction_row prediction_from_row(const pqxx::row& r);

}  // namespace cogwheel::storage
