#include "webhook/address_guard.hpp"
