/* A tiny unit-test harness: CHECK(expr) records a failure and goes on; TEST_MAIN runs the
 * listed functions and prints "N passed, N failed". A non-zero exit fails the ctest entry. */
#ifndef WEFT_TEST_H
#define WEFT_TEST_H
#include <stdio.h>
#include <string.h>

static int test_failures;
static int test_checks;

#define CHECK(expr) do { test_checks++; if (!(expr)) { test_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); } } while (0)
#define CHECK_EQ_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); test_checks++; \
    if (a_ != b_) { test_failures++; fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", \
    __FILE__, __LINE__, #a, a_, b_); } } while (0)
#define CHECK_EQ_STR(a, b) do { const char *a_ = (a), *b_ = (b); test_checks++; \
    if (!a_ || !b_ || strcmp(a_, b_) != 0) { test_failures++; fprintf(stderr, \
    "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, a_ ? a_ : "(null)", \
    b_ ? b_ : "(null)"); } } while (0)

typedef void (*test_fn)(void);
struct test_case { const char *name; test_fn fn; };
#define TEST(fn) { #fn, fn }

static inline int test_run(const struct test_case *cases, size_t n)
{
    int failed_cases = 0;
    for (size_t i = 0; i < n; i++) {
        int before = test_failures;
        cases[i].fn();
        int bad = test_failures != before;
        failed_cases += bad;
        printf("%s %s\n", bad ? "FAIL" : "ok  ", cases[i].name);
    }
    printf("%zu passed, %d failed\n", n - (size_t)failed_cases, failed_cases);
    return failed_cases ? 1 : 0;
}
#define TEST_MAIN(...) int main(void) { static const struct test_case cases_[] = { __VA_ARGS__ }; \
    return test_run(cases_, sizeof cases_ / sizeof cases_[0]); }
#endif
