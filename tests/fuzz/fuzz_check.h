// What the fuzz targets share: a property check that stops the run.
#ifndef BANTAY_TESTS_FUZZ_FUZZ_CHECK_H_
#define BANTAY_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

// libFuzzer (and the replay main) treat an abort as a finding and keep the
// input that caused it.
#define FUZZ_CHECK(condition, ...)                                        \
  do {                                                                    \
    if (!(condition)) {                                                   \
      std::fprintf(stderr, "fuzz property broken: %s: ", #condition);    \
      std::fprintf(stderr, __VA_ARGS__);                                  \
      std::fprintf(stderr, "\n");                                         \
      std::abort();                                                       \
    }                                                                     \
  } while (false)

#endif  // BANTAY_TESTS_FUZZ_FUZZ_CHECK_H_
