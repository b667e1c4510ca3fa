#include "tests/support/predictions.hpp"

#include <catch2/catch.hpp>
#include <thread>

#include "tests/support/cogwheel.hpp"

namespace cogwheel::test {

using json = nlohmann::json;

bool is_terminal(const json& p) {
  const auto s = p.at("status").get<std::string>();
  return s == "succeeded" || s == "failed" || s == "canceled" || s == "aborted";
}

prediction_client::prediction_client(std::string conninfo, std::string token, unsigned short port,
                                     std::function<std::string()> diagnostics)
    : conninfo_(std::move(conninfo)),
      token_(std::move(token)),
      client_("127.0.0.1", port),
      diagnostics_(std::move(diagnostics)) {}

header_list prediction_client::auth(header_list more) const {
  more.emplace_back("Authorization", "Bearer " + token_);
  return more;
}

json prediction_client::create(const json& input, header_list headers, const std::string& version) {
  const json body = {{"version", version.empty() ? std::string(echo_version) : version},
                     {"input", input}};
  auto r = client_.post("/v1/predictions", body.dump(), auth(std::move(headers)));
  INFO(r.body);
  REQUIRE((r.status == 201 || r.status == 202));
  return r.json();
}

json prediction_client::get(const std::string& id) {
  auto r = client_.get("/v1/predictions/" + id, auth());
  INFO(r.body);
  REQUIRE(r.status == 200);
  return r.json();
}

json prediction_client::wait_for(const std::string& id,
                                 const std::function<bool(const json&)>& done,
                                 std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  json p;
  do {
    p = get(id);
    if (done(p)) return p;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  } while (std::chrono::steady_clock::now() < until);
  FAIL("prediction " << id << " did not reach the expected state: " << p.dump() << "\n"
                     << (diagnostics_ ? diagnostics_() : std::string()));
  return p;
}

json prediction_client::wait_status(const std::string& id, const std::string& status,
                                    std::chrono::milliseconds timeout) {
  return wait_for(
      id, [&](const json& p) { return p["status"] == status; }, timeout);
}

json prediction_client::wait_terminal(const std::string& id, std::chrono::milliseconds timeout) {
  return wait_for(
      id, [](const json& p) { return is_terminal(p); }, timeout);
}

pqxx::row prediction_client::stored(const std::string& id, const std::string& columns) {
  pqxx::connection c(conninfo_);
  pqxx::read_transaction tx(c);
  return tx.exec_params1("SELECT " + columns + " FROM predictions WHERE id = $1", id);
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace cogwheel::test
