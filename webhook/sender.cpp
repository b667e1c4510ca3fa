#include "webhook/sender.hpp"
