#include "scheduler/health_api.hpp"

#include <nlohmann/json.hpp>

#include "http/problem.hpp"
#include "storage/migrator.hpp"

namespace cogwheel::scheduler {

namespace bhttp = boost::beast::http;

namespace {

http::response not_ready(std::string detail) {
  auto res = http::problem(bhttp::status::service_unavailable, std::move(detail));
  res.set(bhttp::field::retry_after, "1");
  return res;
}

}  // namespace

void add_health_routes(http::router& routes, service_state& state) {
  routes.add(bhttp::verb::get, "/health",
             [](http::request_context&) -> boost::asio::awaitable<http::response> {
               co_return http::json(bhttp::status::ok, {{"status", "ok"}});
             });
  routes.add(bhttp::verb::get, "/ready",
             [&state](http::request_context&) -> boost::asio::awaitable<http::response> {
               if (state.stopping) co_return not_ready("cogwheel is shutting down");
               storage::database* db = state.db.load();
               if (db == nullptr)
                 co_return not_ready("cogwheel is starting: database not ready yet");
               std::string unavailable;
               try {
                 auto s = co_await db->run([](pqxx::connection& c) {
                   return storage::check_schema(c, storage::embedded_migrations());
                 });
                 if (!s.current) co_return not_ready(s.problem);
                 co_return http::json(bhttp::status::ok,
                                      {{"status", "ready"}, {"schema_version", s.version}});
               } catch (const storage::unavailable& e) {
                 unavailable = e.what();
               }
               co_return not_ready(unavailable);
             });
}

}  // namespace cogwheel::scheduler
