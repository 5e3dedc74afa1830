#include "proxy/http_util.h"
#include "test.h"

static void uuid_shape(void)
{
    char id[37];
    uuid4_format(0x0123456789abcdefull, 0xfedcba9876543210ull, id);
    CHECK_EQ_STR(id, "01234567-89ab-4def-bedc-ba9876543210");
    uuid4_format(0, 0, id);
    CHECK_EQ_STR(id, "00000000-0000-4000-8000-000000000000");
}

static void decimal(void)
{
    char out[24];
    out[u64_to_dec(0, out)] = '\0';
    CHECK_EQ_STR(out, "0");
    out[u64_to_dec(15000, out)] = '\0';
    CHECK_EQ_STR(out, "15000");
    out[u64_to_dec(18446744073709551615ull, out)] = '\0';
    CHECK_EQ_STR(out, "18446744073709551615");
}

static void reasons_and_date(void)
{
    CHECK_EQ_STR(http_reason(503), "Service Unavailable");
    CHECK_EQ_STR(http_reason(299), "Unknown");
    char d[40];
    http_date_now(d, sizeof d);
    CHECK_EQ_INT(strlen(d), 29);
    CHECK(strcmp(d + 25, " GMT") == 0);
}

TEST_MAIN(TEST(uuid_shape), TEST(decimal), TEST(reasons_and_date))
