# Every dependency comes from a Debian 12 package; scripts/setup.sh installs them.
find_package(Threads REQUIRED)
find_package(Boost 1.81 REQUIRED COMPONENTS url)
find_package(OpenSSL 3 REQUIRED)
find_package(nlohmann_json 3.11 REQUIRED)
find_package(spdlog 1.10 REQUIRED)
find_package(fmt REQUIRED)
find_package(CLI11 REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx>=6.4)
pkg_check_modules(PQ REQUIRED IMPORTED_TARGET libpq)
# The service allocates for every request (parsing, JSON, Beast's fields): jemalloc serves that
# with less contention between threads than glibc's malloc (bench/README.md, "Allocator"). The
# sanitizers bring their own allocator, so it is left out of sanitizer builds.
if(COGWHEEL_JEMALLOC AND NOT COGWHEEL_SANITIZE)
  pkg_check_modules(JEMALLOC REQUIRED IMPORTED_TARGET jemalloc)
endif()
if(COGWHEEL_TESTS)
  find_package(Catch2 2.13 REQUIRED)
endif()
