/* The gRPC client (src/net/grpc_client.c) against Weft's own gRPC server on one loop: a
 * bidirectional echo stream, status and message from trailers, UNIMPLEMENTED for an unknown
 * method, the bounded send queue, cancel, a refused connection and a server that goes away. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/grpc_client.h"
#include "net/grpc_server.h"
#include "test.h"

static struct loop *L;
static struct timer stop_t;
static int got_msgs, done_count, last_status, headers_seen;
static char last_msg[256], last_body[64];

static void on_stop(struct loop *l, struct timer *t)
{
    (void)t;
    loop_stop(l);
}

/* Runs the loop until cond() or ms pass. */
static void run(int (*cond)(void), int ms)
{
    for (int i = 0; i < ms / 5 && !cond(); i++) {
        timer_start(L, &stop_t, 5);
        loop_run(L);
    }
}

/* Server: echoes each message; "finish" ends with DATA_LOSS and a message. */
static void s_on_message(struct grpc_call *c, const uint8_t *msg, size_t len)
{
    if (len == 6 && !memcmp(msg, "finish", 6)) {
        grpc_call_finish(c, GRPC_STATUS_DATA_LOSS, "bye now", NULL, 0);
        return;
    }
    grpc_call_send(c, msg, len);
}
static void s_on_half_close(struct grpc_call *c) { grpc_call_finish(c, GRPC_STATUS_OK, NULL, NULL, 0); }
static void s_on_done(struct grpc_call *c, enum grpc_call_end why) { (void)c, (void)why; }
static const struct grpc_handler echo = {.on_message = s_on_message, .on_half_close = s_on_half_close,
                                         .on_done = s_on_done};

static void c_on_headers(struct grpc_ccall *k, void *arg) { (void)k, (void)arg; headers_seen++; }
static void c_on_message(struct grpc_ccall *k, void *arg, const uint8_t *msg, size_t len)
{
    (void)k, (void)arg;
    got_msgs++;
    snprintf(last_body, sizeof last_body, "%.*s", (int)len, (const char *)msg);
}
static void c_on_done(struct grpc_ccall *k, void *arg, int status, const char *message)
{
    (void)k, (void)arg;
    done_count++;
    last_status = status;
    snprintf(last_msg, sizeof last_msg, "%s", message);
}
static const struct grpc_ccall_handler ch = {.on_headers = c_on_headers, .on_message = c_on_message,
                                             .on_done = c_on_done};

static struct grpc_client *dead_client;
static int client_dead(void) { return !grpc_client_alive(dead_client); }
static int two_msgs(void) { return got_msgs >= 2; }
static int one_done(void) { return done_count >= 1; }

static struct sockaddr_in addr_of(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    return a;
}

static void reset(void)
{
    got_msgs = done_count = headers_seen = 0;
    last_status = -1;
    last_msg[0] = last_body[0] = '\0';
}

static void test_stream_and_status(void)
{
    struct grpc_server *s = grpc_server_new(L, NULL);
    CHECK(grpc_server_add_method(s, "/t.Echo/Chat", &echo, NULL) == 0);
    int port = grpc_server_listen(s, "127.0.0.1", 0);
    CHECK(port > 0);
    struct sockaddr_in a = addr_of(port);
    struct grpc_client *c = grpc_client_new(L, (struct sockaddr *)&a, sizeof a, "xds-grpc", NULL);
    CHECK(c != NULL);
    reset();
    struct grpc_ccall *k = grpc_client_call(c, "/t.Echo/Chat", &ch, NULL);
    CHECK(k != NULL);
    CHECK_EQ_INT(grpc_ccall_send(k, (const uint8_t *)"one", 3), 0); /* before the connection is up */
    CHECK_EQ_INT(grpc_ccall_send(k, (const uint8_t *)"two", 3), 0);
    run(two_msgs, 3000);
    CHECK_EQ_INT(got_msgs, 2);
    CHECK_EQ_STR(last_body, "two");
    CHECK_EQ_INT(headers_seen, 1);
    CHECK(grpc_client_connected(c));
    CHECK_EQ_INT(grpc_ccall_send(k, (const uint8_t *)"finish", 6), 0);
    run(one_done, 3000);
    CHECK_EQ_INT(done_count, 1);
    CHECK_EQ_INT(last_status, GRPC_STATUS_DATA_LOSS);
    CHECK_EQ_STR(last_msg, "bye now");

    /* Half-close: the server answers OK. */
    reset();
    k = grpc_client_call(c, "/t.Echo/Chat", &ch, NULL);
    grpc_ccall_send(k, (const uint8_t *)"x", 1);
    grpc_ccall_close_send(k);
    CHECK_EQ_INT(grpc_ccall_send(k, (const uint8_t *)"y", 1), -EPIPE);
    run(one_done, 3000);
    CHECK_EQ_INT(last_status, GRPC_STATUS_OK);
    CHECK_EQ_INT(got_msgs, 1);

    /* Unknown method. */
    reset();
    grpc_client_call(c, "/t.Echo/Nope", &ch, NULL);
    run(one_done, 3000);
    CHECK_EQ_INT(last_status, GRPC_STATUS_UNIMPLEMENTED);

    /* The send queue is bounded. */
    reset();
    k = grpc_client_call(c, "/t.Echo/Chat", &ch, NULL);
    static uint8_t big[1024 * 1024];
    int r = 0, n = 0;
    while ((r = grpc_ccall_send(k, big, sizeof big)) == 0 && n < 100)
        n++;
    CHECK_EQ_INT(r, -ENOBUFS);
    CHECK(n >= 3 && n <= 4);
    grpc_ccall_cancel(k);
    run(one_done, 3000);
    CHECK_EQ_INT(last_status, GRPC_STATUS_CANCELLED);

    /* The server goes away: live calls end UNAVAILABLE and the client is dead. */
    reset();
    k = grpc_client_call(c, "/t.Echo/Chat", &ch, NULL);
    grpc_ccall_send(k, (const uint8_t *)"a", 1);
    run(one_done, 200); /* let it start */
    grpc_server_free(s);
    run(one_done, 3000);
    CHECK_EQ_INT(done_count, 1);
    CHECK_EQ_INT(last_status, GRPC_STATUS_UNAVAILABLE);
    dead_client = c;
    run(client_dead, 3000); /* the call may end from the server's last frames before the close is read */
    CHECK(!grpc_client_alive(c));
    CHECK(grpc_client_call(c, "/t.Echo/Chat", &ch, NULL) == NULL);
    grpc_client_free(c);
}

static void test_refused(void)
{
    /* A port nobody listens on (bind and close). */
    struct grpc_server *s = grpc_server_new(L, NULL);
    int port = grpc_server_listen(s, "127.0.0.1", 0);
    grpc_server_free(s);
    struct sockaddr_in a = addr_of(port);
    struct grpc_client *c = grpc_client_new(L, (struct sockaddr *)&a, sizeof a, "x", NULL);
    reset();
    grpc_client_call(c, "/t.Echo/Chat", &ch, NULL);
    run(one_done, 3000);
    CHECK_EQ_INT(done_count, 1);
    CHECK_EQ_INT(last_status, GRPC_STATUS_UNAVAILABLE);
    CHECK(strstr(last_msg, "connect") != NULL);
    grpc_client_free(c);
}

static void test_free_ends_calls(void)
{
    struct sockaddr_in a = addr_of(9); /* never answered before the free */
    struct grpc_client *c = grpc_client_new(L, (struct sockaddr *)&a, sizeof a, "x", NULL);
    reset();
    grpc_client_call(c, "/t.Echo/Chat", &ch, NULL);
    grpc_client_free(c);
    CHECK_EQ_INT(done_count, 1);
    CHECK_EQ_INT(last_status, GRPC_STATUS_CANCELLED);
}

static void setup(void)
{
    L = loop_new(NULL, NULL);
    timer_init(&stop_t, on_stop, NULL);
}

static void teardown(void)
{
    timer_stop(L, &stop_t);
    loop_free(L);
}

TEST_MAIN(TEST(setup), TEST(test_stream_and_status), TEST(test_refused), TEST(test_free_ends_calls), TEST(teardown))
