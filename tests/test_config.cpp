// Config::parse / to_string / from_env (DESIGN.md section 2, "Config strings").
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "thinwire/config.hpp"
#include "thinwire/error.hpp"

namespace thinwire {
namespace {

// The Error that parse(spec) throws; fails the test when it throws nothing or something else.
Error parse_error(const std::string& spec) {
  try {
    const Config c = Config::parse(spec);
    ADD_FAILURE() << "parse('" << spec << "') should throw, gave '" << c.to_string() << "'";
  } catch (const Error& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "parse('" << spec << "') threw a non-thinwire exception: " << e.what();
  }
  return Error(ErrorCode::internal, "no error");
}

void expect_invalid(const std::string& spec, const std::vector<std::string>& mentions = {}) {
  const Error e = parse_error(spec);
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << spec << ": " << e.what();
  const std::string what = e.what();
  for (const std::string& m : mentions)
    EXPECT_NE(what.find(m), std::string::npos)
        << "error for '" << spec << "' should mention '" << m << "': " << what;
}

const std::vector<std::string> kAllKeys = {"ef",   "eta",      "min_numel", "warmup", "select",
                                           "dgc",  "momentum", "clip",      "period", "bucket",
                                           "seed", "nan",      "dgc_warmup"};

// ---- methods and parameters ---------------------------------------------------------------

TEST(ConfigParse, DefaultsMatchDesign) {
  const Config c;
  EXPECT_EQ(c.method, Method::none);
  EXPECT_EQ(c.ef, ErrorFeedback::ef);
  EXPECT_EQ(c.eta, 0.1);
  EXPECT_EQ(c.min_numel, 1024u);
  EXPECT_EQ(c.warmup, 0u);
  EXPECT_EQ(c.select, Selection::exact);
  EXPECT_FALSE(c.dgc);
  EXPECT_EQ(c.momentum, 0.0);
  EXPECT_EQ(c.clip, 0.0);
  EXPECT_EQ(c.bucket, 512u);
  EXPECT_EQ(c.seed, 0u);
  EXPECT_EQ(Config::parse("none"), c);
}

TEST(ConfigParse, EveryMethod) {
  const Config none = Config::parse("none");
  EXPECT_EQ(none.method, Method::none);

  const Config topk = Config::parse("topk:0.01");
  EXPECT_EQ(topk.method, Method::topk);
  EXPECT_EQ(topk.density, 0.01);
  EXPECT_EQ(Config::parse("topk:1").density, 1.0);
  EXPECT_EQ(Config::parse("topk:1e-6").density, 1e-6);
  EXPECT_EQ(Config::parse("topk:.5").density, 0.5);

  EXPECT_EQ(Config::parse("onebit").method, Method::onebit);

  for (int b = 2; b <= 8; ++b) {
    const Config q = Config::parse("qsgd:" + std::to_string(b));
    EXPECT_EQ(q.method, Method::qsgd);
    EXPECT_EQ(q.bits, b);
    EXPECT_EQ(q.bucket, 512u);
  }

  for (int r : {1, 2, 4, 32, 1024}) {
    const Config p = Config::parse("powersgd:" + std::to_string(r));
    EXPECT_EQ(p.method, Method::powersgd);
    EXPECT_EQ(p.rank, r);
  }

  EXPECT_EQ(Config::parse("adaptive:topk").family, Method::topk);
  EXPECT_EQ(Config::parse("adaptive:powersgd").family, Method::powersgd);
  EXPECT_EQ(Config::parse("adaptive:qsgd").family, Method::qsgd);
  EXPECT_EQ(Config::parse("adaptive:qsgd").method, Method::adaptive);
}

TEST(ConfigParse, EveryKey) {
  EXPECT_EQ(Config::parse("topk:0.1,ef=none").ef, ErrorFeedback::none);
  EXPECT_EQ(Config::parse("topk:0.1,ef=ef").ef, ErrorFeedback::ef);
  EXPECT_EQ(Config::parse("topk:0.1,ef=econtrol").ef, ErrorFeedback::econtrol);

  const Config ec = Config::parse("powersgd:2,ef=econtrol,eta=0.25");
  EXPECT_EQ(ec.ef, ErrorFeedback::econtrol);
  EXPECT_EQ(ec.eta, 0.25);
  EXPECT_EQ(Config::parse("onebit,ef=econtrol,eta=1").eta, 1.0);

  EXPECT_EQ(Config::parse("onebit,min_numel=0").min_numel, 0u);
  EXPECT_EQ(Config::parse("onebit,min_numel=123456789").min_numel, 123456789u);
  EXPECT_EQ(Config::parse("qsgd:4,warmup=17").warmup, 17u);

  EXPECT_EQ(Config::parse("topk:0.1,select=sampled").select, Selection::sampled);
  EXPECT_EQ(Config::parse("topk:0.1,select=exact").select, Selection::exact);
  EXPECT_EQ(Config::parse("adaptive:topk,select=sampled").select, Selection::sampled);

  EXPECT_TRUE(Config::parse("topk:0.1,dgc=on").dgc);
  EXPECT_FALSE(Config::parse("topk:0.1,dgc=off").dgc);
  const Config dgc = Config::parse("topk:0.1,dgc=on,momentum=0.9");
  EXPECT_TRUE(dgc.dgc);
  EXPECT_EQ(dgc.momentum, 0.9);
  EXPECT_EQ(Config::parse("topk:0.1,dgc=on,momentum=0").momentum, 0.0);

  EXPECT_EQ(Config::parse("topk:0.1,clip=2.5").clip, 2.5);
  EXPECT_EQ(Config::parse("none,clip=0").clip, 0.0);

  EXPECT_EQ(Config::parse("adaptive:powersgd,period=7").period, 7u);
  EXPECT_EQ(Config::parse("qsgd:4,bucket=1").bucket, 1u);
  EXPECT_EQ(Config::parse("qsgd:4,bucket=16777216").bucket, 16777216u);
  EXPECT_EQ(Config::parse("adaptive:qsgd,bucket=128").bucket, 128u);

  EXPECT_EQ(Config::parse("qsgd:4,seed=42").seed, 42u);
  EXPECT_EQ(Config::parse("qsgd:4,seed=18446744073709551615").seed,
            std::numeric_limits<std::uint64_t>::max());
}

TEST(ConfigParse, KeyOrderDoesNotMatter) {
  // eta before ef=econtrol and momentum before dgc=on are fine: the checks see the whole spec.
  EXPECT_EQ(Config::parse("topk:0.1,eta=0.5,ef=econtrol"),
            Config::parse("topk:0.1,ef=econtrol,eta=0.5"));
  EXPECT_EQ(Config::parse("topk:0.1,momentum=0.5,dgc=on"),
            Config::parse("topk:0.1,dgc=on,momentum=0.5"));
  EXPECT_EQ(Config::parse("qsgd:3,seed=9,bucket=64,warmup=2"),
            Config::parse("qsgd:3,warmup=2,bucket=64,seed=9"));
}

TEST(ConfigParse, WhitespaceTolerance) {
  const Config want = Config::parse("topk:0.01,ef=econtrol,eta=0.5,select=sampled");
  EXPECT_EQ(Config::parse("  topk:0.01,ef=econtrol,eta=0.5,select=sampled  "), want);
  EXPECT_EQ(Config::parse("topk : 0.01 , ef = econtrol , eta = 0.5 , select = sampled"), want);
  EXPECT_EQ(Config::parse("\ttopk:\t0.01,\tef=econtrol\t,eta =0.5,select= sampled\t"), want);
  EXPECT_EQ(Config::parse(" onebit "), Config::parse("onebit"));
  EXPECT_EQ(Config::parse("qsgd: 4 ,bucket= 64"), Config::parse("qsgd:4,bucket=64"));
}

// ---- to_string ------------------------------------------------------------------------------

TEST(ConfigToString, EnumNames) {
  EXPECT_STREQ(to_string(Method::none), "none");
  EXPECT_STREQ(to_string(Method::topk), "topk");
  EXPECT_STREQ(to_string(Method::onebit), "onebit");
  EXPECT_STREQ(to_string(Method::qsgd), "qsgd");
  EXPECT_STREQ(to_string(Method::powersgd), "powersgd");
  EXPECT_STREQ(to_string(Method::adaptive), "adaptive");
  EXPECT_STREQ(to_string(ErrorFeedback::none), "none");
  EXPECT_STREQ(to_string(ErrorFeedback::ef), "ef");
  EXPECT_STREQ(to_string(ErrorFeedback::econtrol), "econtrol");
  EXPECT_STREQ(to_string(Selection::exact), "exact");
  EXPECT_STREQ(to_string(Selection::sampled), "sampled");
}

TEST(ConfigToString, Canonical) {
  // Only keys that differ from their defaults, in one fixed order, no whitespace.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"none", "none"},
      {"none,ef=ef,min_numel=1024,warmup=0", "none"},
      {"topk:0.01,ef=ef", "topk:0.01"},
      {"topk:1.0", "topk:1"},
      {"topk:1e-2", "topk:0.01"},
      {"topk:0.010", "topk:0.01"},
      {" topk : 0.5 , select = exact ", "topk:0.5"},
      {"qsgd:4,bucket=512", "qsgd:4"},
      {"qsgd:04", "qsgd:4"},
      {"qsgd:4,seed=7,bucket=256", "qsgd:4,bucket=256,seed=7"},
      {"topk:0.5,momentum=0.9,select=sampled,dgc=on",
       "topk:0.5,select=sampled,dgc=on,momentum=0.9"},
      {"topk:0.5,dgc=off", "topk:0.5"},
      {"topk:0.5,dgc=on,momentum=0", "topk:0.5,dgc=on"},
      {"adaptive:topk,period=50", "adaptive:topk,period=50"},
      {"adaptive:topk,period=100", "adaptive:topk"},
      {"adaptive:topk,density=0.02,period=10", "adaptive:topk,period=10,density=0.02"},
      {"adaptive:powersgd,rank=8", "adaptive:powersgd,rank=8"},
      {"adaptive:qsgd,bits=3", "adaptive:qsgd,bits=3"},
      {"topk:0.001,dgc_warmup=500,dgc=on,momentum=0.9",
       "topk:0.001,dgc=on,momentum=0.9,dgc_warmup=500"},
      {"topk:0.001,dgc_warmup=0", "topk:0.001"},
      {"powersgd:4,eta=0.25,ef=econtrol", "powersgd:4,ef=econtrol,eta=0.25"},
      {"powersgd:4,ef=econtrol,eta=0.1", "powersgd:4,ef=econtrol"},
      {"onebit,seed=3,clip=1.5,warmup=10,min_numel=0,ef=none",
       "onebit,ef=none,min_numel=0,warmup=10,clip=1.5,seed=3"},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(Config::parse(in).to_string(), want) << in;
  EXPECT_EQ(Config().to_string(), "none");
}

TEST(ConfigToString, RoundTripListed) {
  const std::vector<std::string> specs = {
      "none",
      "none,ef=none",
      "topk:0.001",
      "topk:1",
      "topk:0.30000000000000004",
      "topk:1e-300",
      "topk:0.1,select=sampled,dgc=on,momentum=0.999,clip=10,warmup=5",
      "topk:0.1,ef=econtrol,eta=0.05",
      "onebit,ef=econtrol,eta=1,min_numel=1,seed=1",
      "qsgd:2,bucket=1",
      "qsgd:8,bucket=16777216,seed=18446744073709551615",
      "powersgd:1",
      "powersgd:1024,warmup=1000000",
      "adaptive:topk,period=1,select=sampled,dgc=on",
      "adaptive:powersgd,period=1000",
      "adaptive:qsgd,bucket=2048,ef=none",
  };
  for (const std::string& s : specs) {
    const Config c = Config::parse(s);
    EXPECT_EQ(Config::parse(c.to_string()), c) << s << " -> " << c.to_string();
    EXPECT_EQ(Config::parse(c.to_string()).to_string(), c.to_string()) << s;
  }
  // Densities that need all 17 significant digits survive the round trip bit for bit.
  for (double d : {0.1 + 0.2, std::nextafter(1.0, 0.0), std::nextafter(0.01, 1.0),
                   std::numeric_limits<double>::min(), std::numeric_limits<double>::denorm_min()}) {
    Config c;
    c.method = Method::topk;
    c.density = d;
    EXPECT_EQ(Config::parse(c.to_string()).density, d) << c.to_string();
  }
}

// A random valid Config, built field by field under the rules of which keys apply.
Config random_config(std::mt19937_64& rng) {
  auto coin = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<std::uint64_t>(n)); };
  auto fraction = [&]() {  // in (0, 1], sometimes with all 53 bits, sometimes short
    switch (pick(4)) {
      case 0:
        return 1.0;
      case 1:
        return (pick(1000) + 1) / 1000.0;
      case 2:
        return std::ldexp(static_cast<double>((rng() >> 11) | 1), -53);
      default:
        return std::pow(10.0, -pick(12)) * (1 + pick(9)) / 10.0;
    }
  };
  Config c;
  c.method = static_cast<Method>(pick(6));
  switch (c.method) {
    case Method::topk:
      c.density = fraction();
      break;
    case Method::qsgd:
      c.bits = 2 + pick(7);
      break;
    case Method::powersgd:
      c.rank = 1 + pick(1024);
      break;
    case Method::adaptive: {
      const Method fams[] = {Method::topk, Method::powersgd, Method::qsgd};
      c.family = fams[pick(3)];
      break;
    }
    default:
      break;
  }
  const bool topk = c.method == Method::topk || c.family == Method::topk;
  const bool qsgd = c.method == Method::qsgd || c.family == Method::qsgd;
  if (coin(0.5)) c.ef = static_cast<ErrorFeedback>(pick(3));
  if (c.ef == ErrorFeedback::econtrol && coin(0.5)) c.eta = fraction();
  if (coin(0.3)) c.min_numel = rng() >> pick(64);
  if (coin(0.3)) c.warmup = rng() >> pick(64);
  if (topk && coin(0.5)) c.select = coin(0.5) ? Selection::sampled : Selection::exact;
  if (topk && c.ef == ErrorFeedback::ef && coin(0.5)) c.dgc = true;
  if (topk && coin(0.3)) c.dgc_warmup = rng() >> pick(64);
  if (c.method == Method::adaptive && coin(0.5)) {
    if (c.family == Method::topk) c.density = fraction();
    if (c.family == Method::powersgd) c.rank = 1 + pick(1024);
    if (c.family == Method::qsgd) c.bits = 2 + pick(7);
  }
  if (c.dgc && coin(0.7)) c.momentum = 1.0 - fraction() * (coin(0.5) ? 1.0 : 0.5);
  if (c.momentum >= 1.0) c.momentum = 0.0;
  if (coin(0.3)) c.clip = coin(0.2) ? 0.0 : std::ldexp(fraction(), pick(40) - 20);
  if (c.method == Method::adaptive && coin(0.5)) c.period = 1 + (rng() >> pick(64));
  if (c.period == 0) c.period = 1;
  if (qsgd && coin(0.5)) c.bucket = 1 + rng() % (std::size_t{1} << 24);
  if (coin(0.3)) c.seed = rng() >> pick(64);
  return c;
}

TEST(ConfigToString, RoundTripRandomised) {
  std::mt19937_64 rng(20240611);
  for (int i = 0; i < 3000; ++i) {
    const Config c = random_config(rng);
    const std::string s = c.to_string();
    Config back;
    ASSERT_NO_THROW(back = Config::parse(s)) << s;
    EXPECT_EQ(back, c) << s;
    EXPECT_EQ(back.to_string(), s);
    // The same spec with whitespace sprinkled around every token parses to the same config.
    std::string spaced;
    for (char ch : s) {
      if (ch == ',' || ch == '=' || ch == ':')
        spaced += std::string(" ") + ch + "\t";
      else
        spaced += ch;
    }
    EXPECT_EQ(Config::parse("  " + spaced + " "), c) << spaced;
  }
}

TEST(ConfigToString, EqualityLooksAtEveryField) {
  const Config base = Config::parse("topk:0.5");
  std::vector<Config> variants(17, base);
  variants[0].method = Method::onebit;
  variants[1].density = 0.25;
  variants[2].bits = 3;
  variants[3].rank = 2;
  variants[4].family = Method::qsgd;
  variants[5].ef = ErrorFeedback::none;
  variants[6].eta = 0.5;
  variants[7].min_numel = 1;
  variants[8].warmup = 1;
  variants[9].select = Selection::sampled;
  variants[10].dgc = true;
  variants[11].momentum = 0.5;
  variants[12].clip = 1.0;
  variants[13].period = 3;
  variants[14].bucket = 3;
  variants[15].seed = 3;
  variants[16].dgc_warmup = 3;
  for (std::size_t i = 0; i < variants.size(); ++i) {
    EXPECT_NE(variants[i], base) << "field " << i;
    EXPECT_FALSE(variants[i] == base) << "field " << i;
  }
  EXPECT_EQ(base, Config::parse("topk:0.5"));
}

// ---- errors -----------------------------------------------------------------------------------

TEST(ConfigErrors, UnknownMethodListsMethods) {
  for (const std::string s :
       {"bogus", "TopK:0.1", "top-k:0.1", "randk:0.1", "qsgd4", "", "   ", ",ef=ef", "powersgd4"}) {
    expect_invalid(s, {"none", "topk", "onebit", "qsgd", "powersgd", "adaptive"});
  }
  expect_invalid("bogus:3", {"bogus"});
}

TEST(ConfigErrors, UnknownKeyListsValidKeys) {
  for (const std::string s : {"topk:0.1,bogus=1", "topk:0.1,EF=ef", "qsgd:4,bits=4",
                              "onebit,density=0.1", "topk:0.1,=5"}) {
    std::vector<std::string> mentions = kAllKeys;
    mentions.push_back("key");
    expect_invalid(s, mentions);
  }
  expect_invalid("topk:0.1,frobnicate=1", {"frobnicate"});
}

TEST(ConfigErrors, OutOfRangeValues) {
  expect_invalid("topk:0", {"density", "(0, 1]"});
  expect_invalid("topk:1.5", {"density", "1.5"});
  expect_invalid("topk:-0.1", {"density"});
  expect_invalid("topk:-0", {"density"});
  expect_invalid("topk:1.0000000000000002", {"density"});
  expect_invalid("qsgd:1", {"bits", "2..8"});
  expect_invalid("qsgd:9", {"bits", "2..8"});
  expect_invalid("qsgd:0", {"bits"});
  expect_invalid("qsgd:-4", {"bits"});
  expect_invalid("qsgd:99999999999999999999999", {"bits"});
  expect_invalid("powersgd:0", {"rank"});
  expect_invalid("powersgd:-1", {"rank"});
  expect_invalid("topk:0.1,ef=econtrol,eta=0", {"eta", "(0, 1]"});
  expect_invalid("topk:0.1,ef=econtrol,eta=1.5", {"eta"});
  expect_invalid("topk:0.1,ef=econtrol,eta=-0.1", {"eta"});
  expect_invalid("topk:0.1,dgc=on,momentum=1", {"momentum", "[0, 1)"});
  expect_invalid("topk:0.1,dgc=on,momentum=-0.5", {"momentum"});
  expect_invalid("topk:0.1,dgc=on,momentum=2", {"momentum"});
  expect_invalid("topk:0.1,clip=-1", {"clip", ">= 0"});
  expect_invalid("topk:0.1,clip=-0.001", {"clip"});
  expect_invalid("qsgd:4,bucket=0", {"bucket"});
  expect_invalid("qsgd:4,bucket=16777217", {"bucket"});
  expect_invalid("adaptive:topk,period=0", {"period"});
  expect_invalid("topk:0.1,ef=maybe", {"ef", "none", "econtrol"});
  expect_invalid("topk:0.1,select=random", {"select", "exact", "sampled"});
  expect_invalid("topk:0.1,dgc=yes", {"dgc", "on", "off"});
}

TEST(ConfigErrors, NotANumber) {
  for (const std::string s : {"topk:abc",
                              "topk:0.1x",
                              "topk:",
                              "topk:nan",
                              "topk:inf",
                              "topk:0x0.1p0",
                              "topk:1/2",
                              "qsgd:4.0",
                              "qsgd:four",
                              "qsgd:",
                              "qsgd:+4",
                              "powersgd:2.5",
                              "powersgd:",
                              "onebit,seed=-1",
                              "onebit,seed=abc",
                              "onebit,seed=18446744073709551616",
                              "onebit,seed=",
                              "onebit,min_numel=1.5",
                              "onebit,warmup=1e3",
                              "onebit,clip=inf",
                              "onebit,clip=nan",
                              "onebit,clip=",
                              "onebit,ef=econtrol,eta=nan",
                              "qsgd:4,bucket=abc",
                              "adaptive:topk,period=1.5",
                              "topk:0.1,dgc=on,momentum=half"}) {
    expect_invalid(s, {s.substr(0, s.find(','))});
  }
}

TEST(ConfigErrors, MissingOrExtraParameter) {
  expect_invalid("topk", {"density"});
  expect_invalid("qsgd", {"bit"});
  expect_invalid("powersgd", {"rank"});
  expect_invalid("adaptive", {"family"});
  expect_invalid("topk,ef=ef", {"density"});
  expect_invalid("none:1", {"parameter"});
  expect_invalid("onebit:1", {"parameter"});
  expect_invalid("onebit:", {"parameter"});
  expect_invalid("adaptive:onebit", {"family"});
  expect_invalid("adaptive:none", {"family"});
  expect_invalid("adaptive:adaptive", {"family"});
  expect_invalid("adaptive:frob", {"frob"});
}

TEST(ConfigErrors, MalformedKeyValue) {
  expect_invalid("topk:0.1,", {"key=value"});
  expect_invalid("topk:0.1,,ef=ef", {"key=value"});
  expect_invalid("topk:0.1,ef", {"key=value", "ef"});
  expect_invalid("topk:0.1, ,seed=1", {"key=value"});
}

TEST(ConfigErrors, DuplicateKeys) {
  expect_invalid("topk:0.1,ef=ef,ef=none", {"ef", "twice"});
  expect_invalid("topk:0.1,seed=1,seed=1", {"seed", "twice"});
  expect_invalid("topk:0.1,seed=1,warmup=2, seed = 3", {"seed", "twice"});
  expect_invalid("qsgd:4,bucket=64,bucket=64", {"bucket", "twice"});
}

TEST(ConfigErrors, KeysThatDoNotApply) {
  expect_invalid("qsgd:4,select=sampled", {"select", "topk"});
  expect_invalid("onebit,select=exact", {"select"});
  expect_invalid("adaptive:powersgd,select=sampled", {"select"});
  expect_invalid("powersgd:2,dgc=on", {"dgc", "topk"});
  expect_invalid("none,dgc=off", {"dgc"});
  expect_invalid("topk:0.1,momentum=0.9", {"momentum", "dgc=on"});
  expect_invalid("topk:0.1,dgc=off,momentum=0.9", {"momentum"});
  expect_invalid("topk:0.1,bucket=64", {"bucket", "qsgd"});
  expect_invalid("onebit,bucket=64", {"bucket"});
  expect_invalid("adaptive:topk,bucket=64", {"bucket"});
  expect_invalid("topk:0.1,period=10", {"period", "adaptive"});
  expect_invalid("qsgd:4,period=10", {"period"});
  expect_invalid("topk:0.1,eta=0.5", {"eta", "econtrol"});
  expect_invalid("topk:0.1,ef=ef,eta=0.5", {"eta"});
  expect_invalid("topk:0.1,ef=none,eta=0.5", {"eta"});
  // DGC accumulates its velocity by classic error feedback.
  expect_invalid("topk:0.1,dgc=on,ef=none", {"dgc", "ef=ef"});
  expect_invalid("topk:0.1,dgc=on,ef=econtrol", {"dgc", "ef=ef"});
  expect_invalid("onebit,dgc_warmup=10", {"dgc_warmup", "topk"});
  expect_invalid("adaptive:qsgd,dgc_warmup=10", {"dgc_warmup"});
  // The adaptive family's default parameter: the key of that family only.
  expect_invalid("adaptive:topk,rank=4", {"rank", "powersgd"});
  expect_invalid("adaptive:powersgd,density=0.1", {"density", "topk"});
  expect_invalid("adaptive:topk,bits=4", {"bits", "qsgd"});
  expect_invalid("topk:0.1,density=0.2", {"density", "key"});
  expect_invalid("adaptive:topk,density=0", {"density", "(0, 1]"});
  expect_invalid("adaptive:topk,density=1.5", {"density"});
  expect_invalid("adaptive:powersgd,rank=0", {"rank", "1..1024"});
  expect_invalid("adaptive:qsgd,bits=9", {"bits", "2..8"});
}

TEST(ConfigErrors, MessageNamesTheSpec) {
  const Error e = parse_error("qsgd:4,bucket=0");
  EXPECT_NE(std::string(e.what()).find("qsgd:4,bucket=0"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("config"), std::string::npos) << e.what();
}

// ---- THINWIRE_COMPRESSION -------------------------------------------------------------------

// Sets (or unsets) THINWIRE_COMPRESSION for the scope and restores the previous value.
class ScopedCompressionEnv : public test::ScopedEnv {
 public:
  explicit ScopedCompressionEnv(const char* value) : ScopedEnv("THINWIRE_COMPRESSION", value) {}
};

TEST(ConfigFromEnv, UnsetOrEmptyGivesNothing) {
  {
    ScopedCompressionEnv env(nullptr);
    EXPECT_FALSE(Config::from_env().has_value());
  }
  {
    ScopedCompressionEnv env("");
    EXPECT_FALSE(Config::from_env().has_value());
  }
}

TEST(ConfigFromEnv, SetGivesTheParsedSpec) {
  for (const char* spec : {"topk:0.01,ef=econtrol", "qsgd:4,bucket=128", "  onebit  ",
                           "adaptive:powersgd,period=20"}) {
    ScopedCompressionEnv env(spec);
    const std::optional<Config> c = Config::from_env();
    ASSERT_TRUE(c.has_value()) << spec;
    EXPECT_EQ(*c, Config::parse(spec));
  }
}

TEST(ConfigFromEnv, BadValueNamesTheVariable) {
  ScopedCompressionEnv env("topk:2");
  try {
    (void)Config::from_env();
    ADD_FAILURE() << "from_env should throw for topk:2";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("THINWIRE_COMPRESSION"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("density"), std::string::npos) << e.what();
  }
}

TEST(ConfigFromEnv, RestoresTheEnvironment) {
  const char* before = std::getenv("THINWIRE_COMPRESSION");
  const std::optional<std::string> saved =
      before ? std::optional<std::string>(before) : std::nullopt;
  { ScopedCompressionEnv env("qsgd:3"); }
  const char* after = std::getenv("THINWIRE_COMPRESSION");
  EXPECT_EQ(saved.has_value(), after != nullptr);
  if (saved && after) {
    EXPECT_EQ(*saved, std::string(after));
  }
}

}  // namespace
}  // namespace thinwire
