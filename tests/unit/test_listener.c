#include <arpa/inet.h>

#include "proxy/listener.h"
#include "test.h"

static struct sockaddr_storage addr(const char *ip, int port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &in->sin_addr);
    return ss;
}

static struct cidr cidr(const char *ip, uint32_t len)
{
    struct cidr c = {.addr = addr(ip, 0), .prefix_len = len};
    return c;
}

static void cidr_matching(void)
{
    struct cidr c = cidr("10.1.0.0", 16);
    struct sockaddr_storage a = addr("10.1.200.3", 1), b = addr("10.2.0.1", 1);
    CHECK(cidr_contains(&c, &a));
    CHECK(!cidr_contains(&c, &b));
    struct cidr all = cidr("0.0.0.0", 0);
    CHECK(cidr_contains(&all, &b));
    struct cidr host = cidr("10.2.0.1", 32);
    CHECK(cidr_contains(&host, &b));
    struct cidr odd = cidr("10.1.128.0", 17);
    CHECK(cidr_contains(&odd, &a));
}

static void chain_selection(void)
{
    struct cidr narrow = cidr("10.1.2.0", 24), wide = cidr("10.1.0.0", 16), src = cidr("192.168.0.0", 16);
    struct filter_chain any = {.name = "any"};
    struct filter_chain port80 = {.name = "port80", .match = {.destination_port = 80}};
    struct filter_chain port80_wide = {.name = "port80-wide", .match = {.destination_port = 80, .prefix_ranges = &wide, .n_prefix_ranges = 1}};
    struct filter_chain port80_narrow = {.name = "port80-narrow", .match = {.destination_port = 80, .prefix_ranges = &narrow, .n_prefix_ranges = 1}};
    struct filter_chain tls = {.name = "tls", .match = {.destination_port = 443, .transport_protocol = "tls"}};
    struct filter_chain from_src = {.name = "src", .match = {.destination_port = 9000, .source_prefix_ranges = &src, .n_source_prefix_ranges = 1}};
    struct filter_chain *chains[] = {&any, &port80, &port80_wide, &port80_narrow, &tls, &from_src};
    struct listener_config lc = {.chains = chains, .n_chains = 6};
    struct sockaddr_storage peer = addr("192.168.1.1", 5555), other = addr("172.16.0.1", 5555);
    struct sockaddr_storage d;
    d = addr("10.1.2.3", 80);
    CHECK_EQ_STR(listener_match_chain(&lc, &d, &peer, "raw_buffer")->name, "port80-narrow");
    d = addr("10.1.9.9", 80);
    CHECK_EQ_STR(listener_match_chain(&lc, &d, &peer, "raw_buffer")->name, "port80-wide");
    d = addr("10.9.9.9", 80);
    CHECK_EQ_STR(listener_match_chain(&lc, &d, &peer, "raw_buffer")->name, "port80");
    d = addr("10.9.9.9", 81);
    CHECK_EQ_STR(listener_match_chain(&lc, &d, &peer, "raw_buffer")->name, "any");
    d = addr("10.9.9.9", 443);
    /* plaintext to a TLS-only port: nothing else names port 443, so no chain and no default */
    CHECK(listener_match_chain(&lc, &d, &peer, "raw_buffer") == NULL);
    CHECK_EQ_STR(listener_match_chain(&lc, &d, &peer, "tls")->name, "tls");
    d = addr("10.9.9.9", 9000);
    CHECK_EQ_STR(listener_match_chain(&lc, &d, &peer, "raw_buffer")->name, "src");
    CHECK(listener_match_chain(&lc, &d, &other, "raw_buffer") == NULL);
    struct filter_chain def = {.name = "default"};
    lc.default_chain = &def;
    CHECK_EQ_STR(listener_match_chain(&lc, &d, &other, "raw_buffer")->name, "default");
}

static void formats_addresses(void)
{
    char out[64];
    struct sockaddr_storage a = addr("127.0.0.1", 8080);
    sockaddr_format(&a, out, sizeof out);
    CHECK_EQ_STR(out, "127.0.0.1:8080");
}

TEST_MAIN(TEST(cidr_matching), TEST(chain_selection), TEST(formats_addresses))
