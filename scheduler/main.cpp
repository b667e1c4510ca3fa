// cogwheel: parses the command line and hands over to the app. Nothing else lives here.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "scheduler/app.hpp"
#include "scheduler/settings.hpp"
#include "scheduler/token_command.hpp"

int main(int argc, char** argv) {
  using namespace cogwheel::scheduler;
  CLI::App app{"cogwheel: a self-hosted scheduler for model predictions", "cogwheel"};
  app.set_version_flag("--version", "cogwheel 0.1.0");
  app.require_subcommand(1);
  settings s;

  auto* serve = app.add_subcommand("serve", "Run the API and the scheduler (migrates first)");
  add_options(*serve, s, for_serve);
  auto* migrate = app.add_subcommand("migrate", "Apply database migrations and exit");
  add_options(*migrate, s, for_migrate);
  auto* token = app.add_subcommand("token", "Manage API tokens");
  token->require_subcommand(1);
  auto* token_create = token->add_subcommand("create", "Create an API token and print it once");
  std::string token_name;
  token_create->add_option("--name", token_name, "Who or what the token is for")->required();
  add_options(*token_create, s, for_token);
  auto* options = app.add_subcommand("options", "Print every option as a Markdown table");

  try {
    app.parse(argc, argv);
    validate(s);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*serve) return run_serve(s);
    if (*migrate) return run_migrate(s);
    if (*token_create) return run_token_create(s, token_name);
    if (*options) {
      std::fputs(options_markdown().c_str(), stdout);
      return 0;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cogwheel: error: %s\n", e.what());
    return 1;
  }
  return 2;
}
