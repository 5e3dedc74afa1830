#include <arpa/inet.h>
#include <stdlib.h>

#include "proxy/access_log.h"
#include "test.h"

static struct h1_header hdrs[] = {
    {{"User-Agent", 10}, {"curl/8.0", 8}},
    {{"X-Multi", 7}, {"a", 1}},
    {{"x-multi", 7}, {"b", 1}},
};

static void fill(struct stream_info *si, struct h1_request *rq, struct sockaddr_in *peer)
{
    memset(rq, 0, sizeof *rq);
    rq->method = (struct h1_str){"GET", 3};
    rq->path = (struct h1_str){"/p?q=1", 6};
    rq->host = (struct h1_str){"example.com", 11};
    rq->headers = hdrs;
    rq->nheaders = 3;
    memset(peer, 0, sizeof *peer);
    peer->sin_family = AF_INET;
    peer->sin_port = htons(4242);
    inet_pton(AF_INET, "10.1.2.3", &peer->sin_addr);
    memset(si, 0, sizeof *si);
    si->start_wall_us = 1700000000123456ull; /* 2023-11-14T22:13:20.123Z */
    si->start_us = 1000000;
    si->end_us = 1012000;
    si->upstream_start_us = 1001000;
    si->upstream_headers_us = 1004000;
    si->bytes_received = 5;
    si->bytes_sent = 42;
    si->status = 200;
    si->protocol = "HTTP/1.1";
    si->rq = rq;
    si->request_id = "0e2f7b0c-1111-4222-8333-444455556666";
    si->upstream_host = "127.0.0.1:8080";
    si->upstream_cluster = "backend";
    si->downstream_remote = (const struct sockaddr *)peer;
}

static void default_format(void)
{
    char err[128], out[1024];
    struct access_log *log = access_log_new("/dev/null", NULL, err, sizeof err);
    CHECK(log != NULL);
    struct stream_info si;
    struct h1_request rq;
    struct sockaddr_in peer;
    fill(&si, &rq, &peer);
    access_log_format(log, &si, out, sizeof out);
    CHECK_EQ_STR(out, "[2023-11-14T22:13:20.123Z] \"GET /p?q=1 HTTP/1.1\" 200 - 5 42 12 3 \"-\" \"curl/8.0\" "
                      "\"0e2f7b0c-1111-4222-8333-444455556666\" \"example.com\" \"127.0.0.1:8080\"\n");
    access_log_free(log);
}

static void custom_format(void)
{
    char err[128], out[1024];
    struct access_log *log = access_log_new(
        "/dev/null", "%RESPONSE_FLAGS% %REQ(X-MULTI)% %REQ(USER-AGENT):4% %UPSTREAM_CLUSTER% "
                     "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% 100%%\n",
        err, sizeof err);
    CHECK(log != NULL);
    struct stream_info si;
    struct h1_request rq;
    struct sockaddr_in peer;
    fill(&si, &rq, &peer);
    si.flags = (1u << RF_UPSTREAM_CONNECTION_FAILURE) | (1u << RF_UPSTREAM_RETRY_LIMIT_EXCEEDED);
    access_log_format(log, &si, out, sizeof out);
    CHECK_EQ_STR(out, "UF,URX a,b curl backend 10.1.2.3:4242 10.1.2.3 100%\n");
    access_log_free(log);
}

static void bad_formats(void)
{
    char err[128];
    CHECK(access_log_new("/dev/null", "%NOPE%", err, sizeof err) == NULL);
    CHECK(strstr(err, "NOPE") != NULL);
    CHECK(access_log_new("/dev/null", "%REQ(X", err, sizeof err) == NULL);
    CHECK(access_log_new("/dev/null", "%REQ(X):abc%", err, sizeof err) == NULL);
    CHECK(access_log_new("/nonexistent/dir/log", NULL, err, sizeof err) == NULL);
}

static void flags_format(void)
{
    char out[64];
    response_flags_format(0, out, sizeof out);
    CHECK_EQ_STR(out, "-");
    response_flags_format(1u << RF_NO_ROUTE_FOUND, out, sizeof out);
    CHECK_EQ_STR(out, "NR");
    CHECK_EQ_INT(response_flag_parse("UT", 2), RF_UPSTREAM_REQUEST_TIMEOUT);
    CHECK_EQ_INT(response_flag_parse("ZZ", 2), -1);
}

static void truncation_keeps_newline(void)
{
    char err[128], out[32];
    struct access_log *log = access_log_new("/dev/null", "%REQ(X-LONG)%\n", err, sizeof err);
    struct h1_header big[] = {{{"x-long", 6}, {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 56}}};
    struct h1_request rq = {.headers = big, .nheaders = 1};
    struct stream_info si = {.rq = &rq};
    size_t n = access_log_format(log, &si, out, sizeof out);
    CHECK_EQ_INT(n, 31);
    CHECK(out[30] == '\n');
    access_log_free(log);
}

TEST_MAIN(TEST(default_format), TEST(custom_format), TEST(bad_formats), TEST(flags_format),
          TEST(truncation_keeps_newline))
