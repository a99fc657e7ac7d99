#include "bench_common.hpp"

#include "build_info.hpp"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>

namespace thinwire::bench {

namespace {

std::string run(const std::string& cmd) {
  std::array<char, 256> buf{};
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    while (fgets(buf.data(), buf.size(), p)) out += buf.data();
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

}  // namespace

nlohmann::json provenance(int argc, char** argv) {
  const std::string src = THINWIRE_SOURCE_DIR;
  std::string commit = run("git -C '" + src + "' rev-parse HEAD 2>/dev/null");
  const bool dirty =
      !run("git -C '" + src + "' status --porcelain --untracked-files=no 2>/dev/null").empty();
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  char date[64] = {};
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return {{"commit", commit.empty() ? "unknown" : commit},
          {"dirty", dirty},
          {"build", {{"commit", kBuildCommit}, {"dirty", kBuildDirty}}},
          {"host", host},
          {"cpu", cpu_model()},
          {"cores", std::thread::hardware_concurrency()},
          {"command", command},
          {"date_utc", date},
          {"compiler", __VERSION__}};
}

}  // namespace thinwire::bench
