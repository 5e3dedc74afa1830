#include "common/log.h"
#include "test.h"

static void level_names(void)
{
    CHECK_EQ_INT(log_level_parse("debug"), LOG_DEBUG);
    CHECK_EQ_INT(log_level_parse("warn"), LOG_WARN);
    CHECK_EQ_INT(log_level_parse("warning"), LOG_WARN);
    CHECK_EQ_INT(log_level_parse("nope"), -1);
    CHECK_EQ_STR(log_level_name(LOG_ERROR), "error");
}

TEST_MAIN(TEST(level_names))
