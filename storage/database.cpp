#include "storage/database.hpp"

namespace cogwheel::storage {

database::database(pool_options opts) : pool_(std::move(opts)), threads_(pool_.options().size) {}

database::~database() {
  threads_.join();
}

}  // namespace cogwheel::storage
