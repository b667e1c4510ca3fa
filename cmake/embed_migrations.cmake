# Writes OUTPUT: a C++ file defining cogwheel::storage::embedded_migrations() from the SQL files
# in MIGRATIONS_DIR. Run at build time (cmake -P) whenever a migration changes.
file(GLOB files RELATIVE "${MIGRATIONS_DIR}" "${MIGRATIONS_DIR}/*.sql")
list(SORT files)
set(body "")
foreach(f IN LISTS files)
  file(READ "${MIGRATIONS_DIR}/${f}" sql)
  string(FIND "${sql}" ")cogwheel_sql\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${f} contains the raw-string delimiter )cogwheel_sql\"")
  endif()
  string(APPEND body "      make_migration(\"${f}\", R\"cogwheel_sql(${sql})cogwheel_sql\"),\n")
endforeach()
file(WRITE "${OUTPUT}.tmp" "// Generated from migrations/*.sql by cmake/embed_migrations.cmake. Do not edit.
#include \"storage/migrator.hpp\"

namespace cogwheel::storage {

const std::vector<migration>& embedded_migrations() {
  static const std::vector<migration> all = [] {
    std::vector<migration> v{
${body}    };
    validate_sequence(v);
    return v;
  }();
  return all;
}

}  // namespace cogwheel::storage
")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
