/* weft-echo: answers every HTTP/1.1, HTTP/2 (h2c prior knowledge) and gRPC request with a JSON
 * description of itself and of the request, optionally after calling other services (--call),
 * and misbehaves on request (delay, status, reset, body size, close) for resilience tests.
 * One thread, one event loop. Unlike weft-proxy this is a test workload: it allocates per
 * request (jansson objects, response strings) and says so in docs/design.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/loop.h"
#include "common/sock.h"
#include "echo/echo.h"
#include "net/grpc_server.h"
#include "net/http1.h"

#define ECHO_MAX_CONNS 4096            /* open downstream connections; more are closed at accept */
#define ECHO_IN_BUF (64 * 1024)        /* HTTP/1.1 read buffer: the largest request head */
#define ECHO_MAX_BODY_SIZE (64u << 20) /* largest x-echo-body-size */
#define ECHO_MAX_DELAY_MS 60000u
#define ECHO_CALL_TIMEOUT_MS 10000u
#define ECHO_CALL_MAX_RESP (1u << 20)  /* largest response a --call reads */
#define ECHO_DRAIN_MS 10000u           /* SIGTERM: in-flight requests get this long */
#define ECHO_HDR_MAX 100

static const char *const trace_headers[] = {
    "x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled",
    "x-b3-flags", "x-ot-span-context", "traceparent", "tracestate", "b3", "end-user", NULL};

struct conn;
struct req;

struct call {
    struct req *r;
    int idx;
    struct io io;
    struct timer timer;
    char *out;
    size_t out_len, out_off;
    char *in;
    size_t in_len, in_cap;
    bool done;
};

struct req {
    struct conn *c;            /* NULL once the connection is gone */
    struct req *next;          /* conn's list */
    int32_t stream_id;         /* HTTP/2 stream, 0 for HTTP/1.1 */
    json_t *headers;           /* lower-case name -> value */
    char *method, *path, *authority;
    uint64_t body_bytes;
    bool complete, responding, dead;
    /* misbehaviour */
    int status;
    uint32_t delay_ms;
    int64_t body_size;         /* -1: JSON answer */
    bool reset, close_after;
    bool fail_forced;          /* --fail-file exists: fail_status, /healthz included */
    /* --call */
    struct call calls[ECHO_MAX_CALLS];
    int calls_pending;
    json_t *call_results;
    bool call_failed;
    struct timer delay;
    /* h2 response body */
    char *resp;
    size_t resp_len, resp_off;
    uint64_t filler_left;
};

struct conn {
    struct io io;
    struct deferred dfr;
    struct conn *prev, *next;        /* every open connection, for SIGTERM */
    bool h2, closed, close_after_write, want_write, in_process, in_recv, goaway_sent, lingering;
    struct timer linger;
    char local_ip[INET6_ADDRSTRLEN];
    /* HTTP/1.1 */
    char *in;
    size_t in_len;
    size_t head_len;                 /* parsed head waiting for its body, 0 when none */
    enum h1_body_kind body_kind;
    uint64_t body_left;
    struct h1_chunked chunked;
    struct h1_header hdrs[ECHO_HDR_MAX];
    char *out;
    size_t out_len, out_off;
    uint64_t out_filler;
    /* HTTP/2 */
    nghttp2_session *ng;
    struct req *reqs;
};

struct listener { struct io io; };

static struct {
    struct echo_config cfg;
    struct addrinfo *call_addr[ECHO_MAX_CALLS];
    struct loop *loop;
    struct listener listeners[ECHO_MAX_PORTS];
    int nlisteners;
    struct grpc_server *grpc;
    bool grpc_down;
    int sfd;
    struct io sig_io;
    bool draining;
    int nconns;
    struct conn *conns;
    struct timer drain_timer;
    unsigned seed;
} E;

static char filler[16384];

static void conn_close(struct conn *c);
static void conn_flush(struct conn *c);
static void conn_io(struct loop *l, struct io *io, uint32_t ev);
static void h1_process(struct conn *c);
static void req_respond(struct req *r);

/* ---------- requests ---------- */

static struct req *req_new(struct conn *c, int32_t stream_id)
{
    struct req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->c = c;
    r->stream_id = stream_id;
    r->headers = json_object();
    r->call_results = json_array();
    r->body_size = -1;
    timer_init(&r->delay, NULL, r);
    r->next = c->reqs;
    c->reqs = r;
    return r;
}

static void req_free(struct req *r)
{
    if (r->c) {
        struct req **pp = &r->c->reqs;
        while (*pp && *pp != r)
            pp = &(*pp)->next;
        if (*pp)
            *pp = r->next;
    }
    timer_stop(E.loop, &r->delay);
    for (int i = 0; i < E.cfg.ncalls; i++) {
        struct call *k = &r->calls[i];
        if (k->io.fd > 0 && !k->done) {
            io_stop(E.loop, &k->io);
            close(k->io.fd);
            timer_stop(E.loop, &k->timer);
        }
        free(k->out);
        free(k->in);
    }
    json_decref(r->headers);
    json_decref(r->call_results);
    free(r->method);
    free(r->path);
    free(r->authority);
    free(r->resp);
    free(r);
}

/* A request whose connection or stream died is freed once nothing async points at it. */
static void req_release_dead(struct req *r)
{
    r->dead = true;
    timer_stop(E.loop, &r->delay);
    if (r->calls_pending == 0)
        req_free(r);
}

static char *dupn(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

/* Adds a header; a repeated name gets its values joined with ", " (RFC 9110 5.3). */
static void req_add_header(struct req *r, const char *name, size_t nl, const char *val, size_t vl)
{
    char key[256];
    if (nl >= sizeof key)
        nl = sizeof key - 1;
    for (size_t i = 0; i < nl; i++)
        key[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    key[nl] = 0;
    json_t *old = json_object_get(r->headers, key);
    if (old) {
        const char *ov = json_string_value(old);
        size_t on = json_string_length(old);
        char *j = malloc(on + 2 + vl + 1);
        if (!j)
            return;
        memcpy(j, ov, on);
        memcpy(j + on, ", ", 2);
        memcpy(j + on + 2, val, vl);
        json_object_set_new(r->headers, key, json_stringn(j, on + 2 + vl));
        free(j);
    } else {
        json_object_set_new(r->headers, key, json_stringn(val, vl));
    }
}

static const char *hdr(const struct req *r, const char *name)
{
    return json_string_value(json_object_get(r->headers, name));
}

/* The value of query parameter name in path, copied into out, or NULL. */
static const char *query_param(const char *path, const char *name, char *out, size_t cap)
{
    const char *q = path ? strchr(path, '?') : NULL;
    size_t nl = strlen(name);
    while (q && *q) {
        q++;
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        if (len > nl && !strncmp(q, name, nl) && q[nl] == '=') {
            size_t vl = len - nl - 1;
            if (vl >= cap)
                vl = cap - 1;
            memcpy(out, q + nl + 1, vl);
            out[vl] = 0;
            return out;
        }
        q = end;
    }
    return NULL;
}

static bool parse_num(const char *s, unsigned long max, unsigned long *out)
{
    if (!s || !*s || strlen(s) > 10)
        return false;
    unsigned long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (unsigned long)(*s - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

static bool truthy(const char *s)
{
    return s && strcmp(s, "0") && strcasecmp(s, "false");
}

/* Reads the misbehaviour asked for by headers, query parameters and process flags. */
static void req_plan(struct req *r)
{
    char qb[32];
    unsigned long v;
    r->status = 200;
    r->delay_ms = E.cfg.delay_ms;
    const char *s = hdr(r, "x-echo-delay-ms");
    if (!s)
        s = query_param(r->path, "delay", qb, sizeof qb);
    if (parse_num(s, ECHO_MAX_DELAY_MS, &v))
        r->delay_ms = (uint32_t)v;
    s = hdr(r, "x-echo-status");
    if (!s)
        s = query_param(r->path, "status", qb, sizeof qb);
    if (parse_num(s, 599, &v) && v >= 200)
        r->status = (int)v;
    s = hdr(r, "x-echo-body-size");
    if (!s)
        s = query_param(r->path, "body_size", qb, sizeof qb);
    if (parse_num(s, ECHO_MAX_BODY_SIZE, &v))
        r->body_size = (int64_t)v;
    s = hdr(r, "x-echo-reset");
    r->reset = truthy(s ? s : query_param(r->path, "reset", qb, sizeof qb));
    s = hdr(r, "x-echo-close");
    r->close_after = truthy(s ? s : query_param(r->path, "close", qb, sizeof qb));
    if (E.cfg.fail_rate > 0 && (double)rand_r(&E.seed) / ((double)RAND_MAX + 1.0) < E.cfg.fail_rate)
        r->status = E.cfg.fail_status;
    r->fail_forced = E.cfg.fail_file[0] && access(E.cfg.fail_file, F_OK) == 0;
    if (r->fail_forced)
        r->status = E.cfg.fail_status;
}

static json_t *describe(const char *method, const char *path, const char *authority,
                        const char *ip, const char *protocol, json_t *headers, uint64_t body_bytes)
{
    json_t *o = json_object();
    json_object_set_new(o, "service", json_string(E.cfg.name));
    json_object_set_new(o, "version", json_string(E.cfg.version));
    json_object_set_new(o, "pod", json_string(E.cfg.pod));
    json_object_set_new(o, "ip", json_string(ip));
    json_object_set_new(o, "method", json_string(method ? method : ""));
    json_object_set_new(o, "path", json_string(path ? path : ""));
    json_object_set_new(o, "host", json_string(authority ? authority : ""));
    json_object_set_new(o, "protocol", json_string(protocol));
    json_object_set(o, "headers", headers);
    json_object_set_new(o, "body_bytes", json_integer((json_int_t)body_bytes));
    return o;
}

/* ---------- outgoing calls (--call), HTTP/1.1 with Connection: close ---------- */

static void call_finish(struct call *k, const char *error)
{
    if (k->done)
        return;
    k->done = true;
    io_stop(E.loop, &k->io);
    close(k->io.fd);
    timer_stop(E.loop, &k->timer);
    struct req *r = k->r;
    json_t *res = json_object();
    json_object_set_new(res, "url", json_string(E.cfg.calls[k->idx].url));
    if (!error) {
        struct h1_header h[ECHO_HDR_MAX];
        struct h1_response resp = {.headers = h};
        struct h1_limits lim = {.max_headers = ECHO_HDR_MAX};
        int hl = h1_parse_response(k->in, k->in_len, &lim, &resp);
        if (hl <= 0) {
            error = hl == H1_INCOMPLETE ? "truncated response" : "bad response";
        } else {
            const char *body = k->in + hl;
            size_t blen = k->in_len - (size_t)hl;
            if (resp.content_length >= 0 && (uint64_t)resp.content_length < blen)
                blen = (size_t)resp.content_length;
            else if (resp.content_length >= 0 && (uint64_t)resp.content_length > blen)
                error = "truncated body";
            if (!error && resp.chunked) {
                /* decode in place: data spans only move backwards */
                struct h1_chunked ch;
                h1_chunked_init(&ch, 0);
                char *w = k->in + hl;
                size_t off = 0, outn = 0;
                int cr = H1_CHUNK_NEED_MORE;
                while (off < blen) {
                    size_t used;
                    const char *d;
                    size_t dl;
                    cr = h1_chunked_feed(&ch, body + off, blen - off, &used, &d, &dl);
                    off += used;
                    if (cr == H1_CHUNK_DATA) {
                        memmove(w + outn, d, dl);
                        outn += dl;
                    } else {
                        break;
                    }
                }
                if (cr != H1_CHUNK_DONE)
                    error = "bad chunked body";
                blen = outn;
            }
            if (!error) {
                json_object_set_new(res, "status", json_integer(resp.status));
                json_t *j = json_loadb(body, blen, 0, NULL);
                json_object_set_new(res, "body", j ? j : json_stringn_nocheck(body, blen));
                if (resp.status >= 500)
                    r->call_failed = true;
            }
        }
    }
    if (error) {
        json_object_set_new(res, "error", json_string(error));
        r->call_failed = true;
    }
    json_array_set_new(r->call_results, (size_t)k->idx, res);
    r->calls_pending--;
    if (r->dead) {
        if (r->calls_pending == 0)
            req_free(r);
        return;
    }
    if (r->calls_pending == 0)
        req_respond(r);
}

static void call_timeout(struct loop *l, struct timer *t)
{
    (void)l;
    call_finish(t->data, "timeout");
}

static void call_io(struct loop *l, struct io *io, uint32_t ev)
{
    struct call *k = io->data;
    (void)ev;
    while (k->out_off < k->out_len) {
        ssize_t n = sock_send(io->fd, k->out + k->out_off, k->out_len - k->out_off);
        if (n < 0 && errno == EAGAIN) {
            io_want_write(l, io, true);
            return;
        }
        if (n < 0) {
            call_finish(k, strerror(errno));
            return;
        }
        k->out_off += (size_t)n;
        if (k->out_off == k->out_len)
            io_want_write(l, io, false);
    }
    for (;;) {
        if (k->in_cap - k->in_len < 4096) {
            if (k->in_cap >= ECHO_CALL_MAX_RESP) {
                call_finish(k, "response too large");
                return;
            }
            size_t nc = k->in_cap ? k->in_cap * 2 : 16384;
            char *p = realloc(k->in, nc);
            if (!p) {
                call_finish(k, "out of memory");
                return;
            }
            k->in = p;
            k->in_cap = nc;
        }
        ssize_t n = sock_recv(io->fd, k->in + k->in_len, k->in_cap - k->in_len);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) {
            call_finish(k, strerror(errno));
            return;
        }
        if (n == 0) {
            call_finish(k, k->in_len ? NULL : "connection closed without a response");
            return;
        }
        k->in_len += (size_t)n;
    }
}

static void append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = (*cap ? *cap : 512);
        while (nc < *len + n + 1)
            nc *= 2;
        char *q = realloc(*buf, nc);
        if (!q)
            return;
        *buf = q;
        *cap = nc;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = 0;
}

static void appends(char **buf, size_t *len, size_t *cap, const char *s)
{
    append(buf, len, cap, s, strlen(s));
}

static void call_start(struct req *r, int i)
{
    struct call *k = &r->calls[i];
    const struct echo_call_url *u = &E.cfg.calls[i];
    k->r = r;
    k->idx = i;
    timer_init(&k->timer, call_timeout, k);
    r->calls_pending++;
    struct addrinfo *ai = E.call_addr[i];
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    k->io.fd = fd;
    if (fd < 0) {
        k->done = true;    /* nothing registered: report directly */
        k->io.fd = -1;
        r->calls_pending--;
        json_t *res = json_object();
        json_object_set_new(res, "url", json_string(u->url));
        json_object_set_new(res, "error", json_string(strerror(errno)));
        json_array_set_new(r->call_results, (size_t)i, res);
        r->call_failed = true;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    size_t cap = 0;
    k->out_len = 0;
    appends(&k->out, &k->out_len, &cap, "GET ");
    appends(&k->out, &k->out_len, &cap, u->path);
    appends(&k->out, &k->out_len, &cap, " HTTP/1.1\r\nHost: ");
    appends(&k->out, &k->out_len, &cap, u->host);
    char pb[16];
    snprintf(pb, sizeof pb, ":%u", u->port);
    appends(&k->out, &k->out_len, &cap, pb);
    appends(&k->out, &k->out_len, &cap, "\r\nUser-Agent: weft-echo\r\nConnection: close\r\n");
    for (int t = 0; trace_headers[t]; t++) {
        const char *v = hdr(r, trace_headers[t]);
        if (!v || strpbrk(v, "\r\n"))
            continue;
        appends(&k->out, &k->out_len, &cap, trace_headers[t]);
        appends(&k->out, &k->out_len, &cap, ": ");
        appends(&k->out, &k->out_len, &cap, v);
        appends(&k->out, &k->out_len, &cap, "\r\n");
    }
    appends(&k->out, &k->out_len, &cap, "\r\n");
    timer_start(E.loop, &k->timer, ECHO_CALL_TIMEOUT_MS);
    if (io_start(E.loop, &k->io, fd, EPOLLIN | EPOLLOUT, call_io, k) < 0 ||
        (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)) {
        const char *e = strerror(errno);
        call_finish(k, e);
    }
}

/* ---------- answering ---------- */

static void req_send(struct req *r);

static void on_delay(struct loop *l, struct timer *t)
{
    (void)l;
    req_send(t->data);
}

/* All calls are back: wait for the delay, then send. */
static void req_respond(struct req *r)
{
    if (r->delay_ms) {
        r->delay.cb = on_delay;
        timer_start(E.loop, &r->delay, r->delay_ms);
        return;
    }
    req_send(r);
}

/* The request is complete: plan it, start its calls or answer it. */
static void req_complete(struct req *r)
{
    r->complete = true;
    r->responding = true;
    req_plan(r);
    if (r->reset) {
        struct conn *c = r->c;
        if (c->h2) {
            nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_INTERNAL_ERROR);
            conn_flush(c);
        } else {
            struct linger lg = {1, 0};   /* RST, not FIN: a client sees an error */
            setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            conn_close(c);
        }
        return;
    }
    bool health = r->path && (!strcmp(r->path, "/healthz") || !strncmp(r->path, "/healthz?", 9));
    if (!health && E.cfg.ncalls) {
        for (int i = 0; i < E.cfg.ncalls; i++)
            json_array_append_new(r->call_results, json_null());
        /* hold one count while starting: a call that fails at once must not answer (and
         * free r) before the others are started */
        r->calls_pending++;
        for (int i = 0; i < E.cfg.ncalls; i++)
            call_start(r, i);
        if (--r->calls_pending == 0)
            req_respond(r);
        return;
    }
    req_respond(r);
}

/* Builds the JSON answer (or the filler size) into r->resp / r->filler_left; returns status. */
static int req_body(struct req *r, const char **ctype)
{
    int status = r->status;
    bool health = r->path && (!strcmp(r->path, "/healthz") || !strncmp(r->path, "/healthz?", 9));
    if (health) {
        r->resp = strdup("{\"status\":\"ok\"}\n");
        r->resp_len = r->resp ? strlen(r->resp) : 0;
        *ctype = "application/json";
        return r->fail_forced ? E.cfg.fail_status : 200;
    }
    if (r->call_failed && !E.cfg.call_optional && status < 300)
        status = 502;
    if (r->body_size >= 0) {
        r->filler_left = (uint64_t)r->body_size;
        *ctype = "text/plain";
        return status;
    }
    json_t *o = describe(r->method, r->path, r->authority, r->c->local_ip,
                         r->c->h2 ? "HTTP/2" : "HTTP/1.1", r->headers, r->body_bytes);
    json_object_set_new(o, "status", json_integer(status));
    if (E.cfg.ncalls)
        json_object_set(o, "calls", r->call_results);
    r->resp = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (r->resp) {
        size_t n = strlen(r->resp);
        char *p = realloc(r->resp, n + 2);
        if (p) {
            p[n] = '\n';
            p[n + 1] = 0;
            r->resp = p;
            n++;
        }
        r->resp_len = n;
    }
    *ctype = "application/json";
    return status;
}

static ssize_t h2_read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)s; (void)sid; (void)ud;
    struct req *r = src->ptr;
    size_t n = 0;
    if (r->resp_off < r->resp_len) {
        n = r->resp_len - r->resp_off;
        if (n > len)
            n = len;
        memcpy(buf, r->resp + r->resp_off, n);
        r->resp_off += n;
    } else if (r->filler_left) {
        n = r->filler_left < len ? (size_t)r->filler_left : len;
        memset(buf, 'x', n);
        r->filler_left -= n;
    }
    if (r->resp_off >= r->resp_len && r->filler_left == 0)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Echo";
    }
}

static void req_send(struct req *r)
{
    if (r->dead)
        return;
    struct conn *c = r->c;
    const char *ctype;
    int status = req_body(r, &ctype);
    bool head = r->method && !strcmp(r->method, "HEAD");
    uint64_t blen = r->resp_len + r->filler_left;
    char sb[8], lb[24];
    snprintf(sb, sizeof sb, "%d", status);
    snprintf(lb, sizeof lb, "%llu", (unsigned long long)blen);
    if (c->h2) {
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
        nghttp2_nv nv[] = {NV(":status", sb), NV("content-type", ctype), NV("content-length", lb),
                           NV("x-echo-service", E.cfg.name), NV("x-echo-version", E.cfg.version)};
        nghttp2_data_provider dp = {.source.ptr = r, .read_callback = h2_read_body};
        if (head) {
            r->resp_len = 0;
            r->filler_left = 0;
        }
        nghttp2_submit_response(c->ng, r->stream_id, nv, sizeof nv / sizeof nv[0],
                                head || blen == 0 ? NULL : &dp);
        if (r->close_after)   /* GOAWAY goes after the answer (conn_flush), not ahead of its DATA */
            c->close_after_write = true;
        conn_flush(c);
        return;
    }
    /* HTTP/1.1: the head and JSON go into c->out, filler is streamed from a static buffer */
    char *out = NULL;
    size_t len = 0, cap = 0;
    char line[1024];
    bool close_after = r->close_after || E.draining || c->close_after_write;
    snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %s\r\n"
             "x-echo-service: %s\r\nx-echo-version: %s\r\n%s\r\n", status,
             reason(status), ctype, lb, E.cfg.name, E.cfg.version,
             close_after ? "connection: close\r\n" : "");
    appends(&out, &len, &cap, line);
    if (!head)
        append(&out, &len, &cap, r->resp ? r->resp : "", r->resp_len);
    free(c->out);
    c->out = out;
    c->out_len = out ? len : 0;
    c->out_off = 0;
    c->out_filler = head ? 0 : r->filler_left;
    c->close_after_write = close_after;
    req_free(r);
    conn_flush(c);
}

/* ---------- connections ---------- */

static void conn_free_deferred(struct deferred *d)
{
    struct conn *c = (struct conn *)((char *)d - offsetof(struct conn, dfr));
    free(c);
}

static void conn_close(struct conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    while (c->reqs) {
        struct req *r = c->reqs;
        c->reqs = r->next;
        r->c = NULL;
        req_release_dead(r);
    }
    if (c->lingering)
        timer_stop(E.loop, &c->linger);
    io_stop(E.loop, &c->io);
    close(c->io.fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        E.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->ng)
        nghttp2_session_del(c->ng);
    free(c->in);
    free(c->out);
    E.nconns--;
    loop_defer(E.loop, &c->dfr, conn_free_deferred);
    if (E.draining && E.nconns == 0 && (E.grpc_down || !E.grpc))
        loop_stop(E.loop);
}

static void on_linger_timeout(struct loop *l, struct timer *t)
{
    (void)l;
    conn_close(t->data);
}

/* Closes after the answer without losing it: close() with unread input (a client's
 * WINDOW_UPDATEs, a pipelined request) would send RST and the kernel would drop the unsent
 * tail of the answer. So: FIN now, read and drop until the client closes, 2 s at most. */
static void conn_linger(struct conn *c)
{
    if (c->lingering)
        return;
    c->lingering = true;
    shutdown(c->io.fd, SHUT_WR);
    timer_init(&c->linger, on_linger_timeout, c);
    timer_start(E.loop, &c->linger, 2000);
    conn_io(E.loop, &c->io, EPOLLIN);
}

/* Writes what is pending. For HTTP/1.1 it goes on parsing pipelined input once done. */
static void conn_flush(struct conn *c)
{
    if (c->closed)
        return;
    if (c->h2) {
        if (c->in_recv)
            return;   /* nghttp2 must not be re-entered; conn_io flushes after mem_recv */
        int rv = nghttp2_session_send(c->ng);
        if (rv != 0) {
            conn_close(c);
            return;
        }
        if (c->closed)
            return;
        if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng)) {
            conn_close(c);
            return;
        }
        if (c->close_after_write && !c->reqs && !nghttp2_session_want_write(c->ng) && !c->want_write) {
            if (!c->goaway_sent) {
                c->goaway_sent = true;
                nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE,
                                      nghttp2_session_get_last_proc_stream_id(c->ng), NGHTTP2_NO_ERROR, NULL, 0);
                nghttp2_session_send(c->ng);
            }
            conn_linger(c);
            return;
        }
        if (E.draining && !c->reqs && !nghttp2_session_want_write(c->ng) && !c->want_write)
            conn_close(c);
        return;
    }
    for (;;) {
        struct iovec iov[1];
        if (c->out_off < c->out_len) {
            iov[0].iov_base = c->out + c->out_off;
            iov[0].iov_len = c->out_len - c->out_off;
        } else if (c->out_filler) {
            iov[0].iov_base = filler;
            iov[0].iov_len = c->out_filler < sizeof filler ? (size_t)c->out_filler : sizeof filler;
        } else {
            break;
        }
        ssize_t n = sock_sendv(c->io.fd, iov, 1);
        if (n < 0 && errno == EAGAIN) {
            c->want_write = true;
            io_want_write(E.loop, &c->io, true);
            return;
        }
        if (n < 0) {
            conn_close(c);
            return;
        }
        if (c->out_off < c->out_len)
            c->out_off += (size_t)n;
        else
            c->out_filler -= (uint64_t)n;
    }
    if (c->want_write) {
        c->want_write = false;
        io_want_write(E.loop, &c->io, false);
    }
    if (c->out) {
        free(c->out);
        c->out = NULL;
        c->out_len = c->out_off = 0;
        if (c->close_after_write) {
            conn_linger(c);
            return;
        }
        if (!c->in_process)
            conn_io(E.loop, &c->io, EPOLLIN);   /* answered late: parse what waits, read on */
    }
}

static void h1_error(struct conn *c, int code, const char *why)
{
    char line[256];
    int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\n"
                     "content-length: %zu\r\nconnection: close\r\n\r\n%s\n", code, reason(code),
                     strlen(why) + 1, why);
    free(c->out);
    c->out = dupn(line, (size_t)n);
    c->out_len = c->out ? (size_t)n : 0;
    c->out_off = 0;
    c->close_after_write = true;
    c->in_len = 0;
    conn_flush(c);
}

/* Parses as much HTTP/1.1 input as there is while no request is being answered. */
static void h1_process_loop(struct conn *c);

/* Not re-entrant: an answer sent synchronously from inside the loop returns here. */
static void h1_process(struct conn *c)
{
    if (c->in_process)
        return;
    c->in_process = true;
    h1_process_loop(c);
    c->in_process = false;
}

static void h1_process_loop(struct conn *c)
{
    while (!c->closed && !c->out && (c->head_len || !c->reqs)) {
        if (c->head_len == 0) {
            if (c->in_len == 0)
                return;
            if (E.draining) {
                conn_close(c);
                return;
            }
            struct h1_request q = {.headers = c->hdrs};
            struct h1_limits lim = {.max_head_bytes = ECHO_IN_BUF, .max_headers = ECHO_HDR_MAX};
            int hl = h1_parse_request(c->in, c->in_len, &lim, &q);
            if (hl == H1_INCOMPLETE) {
                if (c->in_len >= ECHO_IN_BUF)
                    h1_error(c, 431, "request head too large");
                return;
            }
            if (hl < 0) {
                h1_error(c, h1_status_http_code(hl), q.error ? q.error : "bad request");
                return;
            }
            /* Upgrade (h2c, websocket) is ignored, as RFC 9110 7.8 allows: the answer is HTTP/1.1 */
            if (q.connect) {
                h1_error(c, 501, "CONNECT is not supported");
                return;
            }
            struct req *r = req_new(c, 0);
            if (!r) {
                conn_close(c);
                return;
            }
            r->method = dupn(q.method.p, q.method.n);
            r->path = dupn(q.path.p, q.path.n);
            r->authority = dupn(q.host.p ? q.host.p : "", q.host.n);
            for (size_t i = 0; i < q.nheaders; i++)
                req_add_header(r, q.headers[i].name.p, q.headers[i].name.n,
                               q.headers[i].value.p, q.headers[i].value.n);
            if (!q.keep_alive)
                c->close_after_write = true;
            c->body_kind = h1_request_body_kind(&q);
            c->body_left = c->body_kind == H1_BODY_LENGTH ? (uint64_t)q.content_length : 0;
            if (c->body_kind == H1_BODY_CHUNKED)
                h1_chunked_init(&c->chunked, 0);
            if (q.expect_continue && c->body_kind != H1_BODY_NONE) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                (void)!sock_send(c->io.fd, cont, sizeof cont - 1);
            }
            memmove(c->in, c->in + hl, c->in_len - (size_t)hl);
            c->in_len -= (size_t)hl;
            c->head_len = (size_t)hl;
        }
        struct req *r = c->reqs;
        /* body: counted and dropped */
        size_t off = 0;
        bool done = false;
        if (c->body_kind == H1_BODY_NONE) {
            done = true;
        } else if (c->body_kind == H1_BODY_LENGTH) {
            size_t n = c->in_len < c->body_left ? c->in_len : (size_t)c->body_left;
            off = n;
            c->body_left -= n;
            r->body_bytes += n;
            done = c->body_left == 0;
        } else {
            while (off < c->in_len) {
                size_t used, dl;
                const char *d;
                int cr = h1_chunked_feed(&c->chunked, c->in + off, c->in_len - off, &used, &d, &dl);
                off += used;
                if (cr == H1_CHUNK_DATA) {
                    r->body_bytes += dl;
                } else if (cr == H1_CHUNK_DONE) {
                    done = true;
                    break;
                } else if (cr == H1_CHUNK_BAD) {
                    req_free(r);
                    h1_error(c, 400, c->chunked.error ? c->chunked.error : "bad chunked body");
                    return;
                } else {
                    break;
                }
            }
        }
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
        if (!done)
            return;
        c->head_len = 0;
        req_complete(r);   /* may answer synchronously; then the loop goes on */
    }
}

static ssize_t h2_send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    struct conn *c = ud;
    (void)s; (void)flags;
    ssize_t n = sock_send(c->io.fd, data, len);
    if (n < 0 && errno == EAGAIN) {
        if (!c->want_write) {
            c->want_write = true;
            io_want_write(E.loop, &c->io, true);
        }
        return NGHTTP2_ERR_WOULDBLOCK;
    }
    if (n < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return n;
}

static int h2_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct conn *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct req *r = req_new(c, f->hd.stream_id);
    if (!r)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, r);
    return 0;
}

static int h2_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)flags; (void)ud;
    struct req *r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!r || r->complete)
        return 0;
    if (nl && name[0] == ':') {
        char **dst = nl == 7 && !memcmp(name, ":method", 7) ? &r->method
                   : nl == 5 && !memcmp(name, ":path", 5) ? &r->path
                   : nl == 10 && !memcmp(name, ":authority", 10) ? &r->authority : NULL;
        if (dst && !*dst)
            *dst = dupn((const char *)value, vl);
        return 0;
    }
    req_add_header(r, (const char *)name, nl, (const char *)value, vl);
    return 0;
}

static int h2_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *d, size_t len, void *ud)
{
    (void)flags; (void)d; (void)ud;
    struct req *r = nghttp2_session_get_stream_user_data(s, sid);
    if (r)
        r->body_bytes += len;
    /* the body is dropped; nghttp2's automatic WINDOW_UPDATE gives the window back */
    return 0;
}

static int h2_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct req *r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (r && !r->complete)
        req_complete(r);
    return 0;
}

static int h2_stream_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
    (void)code; (void)ud;
    struct req *r = nghttp2_session_get_stream_user_data(s, sid);
    if (!r)
        return 0;
    nghttp2_session_set_stream_user_data(s, sid, NULL);
    struct conn *c = r->c;
    struct req **pp = &c->reqs;
    while (*pp && *pp != r)
        pp = &(*pp)->next;
    if (*pp)
        *pp = r->next;
    r->c = NULL;
    req_release_dead(r);
    return 0;
}

static int conn_start_h2(struct conn *c)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return -1;
    nghttp2_session_callbacks_set_send_callback(cb, h2_send_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, h2_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, h2_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_stream_close);
    int rv = nghttp2_session_server_new(&c->ng, cb, c);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0)
        return -1;
    nghttp2_settings_entry st[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
                                   {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, ECHO_IN_BUF}};
    nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, st, 2);
    c->h2 = true;
    return 0;
}

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static void conn_io(struct loop *l, struct io *io, uint32_t ev)
{
    struct conn *c = io->data;
    (void)l;
    if (c->closed)
        return;
    if (c->lingering) {
        char b[4096];
        for (;;) {
            ssize_t n = sock_recv(io->fd, b, sizeof b);
            if (n < 0 && errno == EAGAIN)
                return;
            if (n <= 0) {
                conn_close(c);
                return;
            }
        }
    }
    if ((ev & EPOLLOUT) && c->want_write) {
        if (c->h2) {
            c->want_write = false;
            io_want_write(E.loop, &c->io, false);
        }
        conn_flush(c);
        if (c->closed)
            return;
    }
    for (;;) {
        if (c->h2) {
            uint8_t b[16384];
            ssize_t n = sock_recv(io->fd, b, sizeof b);
            if (n < 0 && errno == EAGAIN)
                break;
            if (n <= 0) {
                conn_close(c);
                return;
            }
            c->in_recv = true;
            ssize_t rv = nghttp2_session_mem_recv(c->ng, b, (size_t)n);
            c->in_recv = false;
            if (rv < 0) {
                conn_close(c);
                return;
            }
            conn_flush(c);
            if (c->closed)
                return;
            continue;
        }
        if (c->in_len == ECHO_IN_BUF) {
            if (c->out || (c->reqs && !c->head_len))
                break;   /* answering: stop reading until the answer is out (h1_process reads on) */
            h1_process(c);
            if (c->closed || c->in_len == ECHO_IN_BUF)
                return;
        }
        ssize_t n = sock_recv(io->fd, c->in + c->in_len, ECHO_IN_BUF - c->in_len);
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->in_len += (size_t)n;
        if (c->in_len <= sizeof h2_preface - 1 + 0 && !memcmp(c->in, h2_preface, c->in_len) &&
            c->in_len < sizeof h2_preface - 1)
            continue;   /* maybe a preface: wait for more */
        if (!c->h2 && c->head_len == 0 && !c->reqs && !c->out && c->in_len >= sizeof h2_preface - 1 &&
            !memcmp(c->in, h2_preface, sizeof h2_preface - 1)) {
            if (conn_start_h2(c) < 0) {
                conn_close(c);
                return;
            }
            c->in_recv = true;
            ssize_t rv = nghttp2_session_mem_recv(c->ng, (uint8_t *)c->in, c->in_len);
            c->in_recv = false;
            if (rv < 0) {
                conn_close(c);
                return;
            }
            free(c->in);
            c->in = NULL;
            c->in_len = 0;
            conn_flush(c);
            if (c->closed)
                return;
            continue;
        }
        h1_process(c);
        if (c->closed)
            return;
    }
}

static void on_accept(struct loop *l, struct io *io, uint32_t ev)
{
    (void)ev;
    for (;;) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (E.draining || E.nconns >= ECHO_MAX_CONNS) {
            close(fd);
            continue;
        }
        struct conn *c = calloc(1, sizeof *c);
        char *in = malloc(ECHO_IN_BUF);
        if (!c || !in) {
            free(c);
            free(in);
            close(fd);
            continue;
        }
        c->in = in;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
            if (ss.ss_family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->local_ip, sizeof c->local_ip);
            else if (ss.ss_family == AF_INET6)
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->local_ip, sizeof c->local_ip);
        }
        if (io_start(l, &c->io, fd, EPOLLIN, conn_io, c) < 0) {
            free(in);
            free(c);
            close(fd);
            continue;
        }
        E.nconns++;
        c->next = E.conns;
        if (E.conns)
            E.conns->prev = c;
        E.conns = c;
        conn_io(l, &c->io, EPOLLIN);
    }
}

static int listen_on(const char *addr, uint16_t port)
{
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        sl = sizeof *a4;
    } else if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        sl = sizeof *a6;
    } else {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* ---------- gRPC: weft.echo.Echo/{Echo,EchoStream}, messages are the JSON bytes ---------- */

struct gcall {
    struct grpc_call *gc;
    struct timer delay;
    uint64_t body_bytes;
    bool stream;
    char *text;             /* the JSON answer, kept while the delay runs */
    unsigned long status, count;
};

static void g_start(struct grpc_call *gc, void *arg)
{
    struct gcall *g = calloc(1, sizeof *g);
    if (g) {
        g->gc = gc;
        g->stream = arg != NULL;
        timer_init(&g->delay, NULL, g);
    }
    grpc_call_set_data(gc, g);
}

static void g_message(struct grpc_call *gc, const uint8_t *msg, size_t len)
{
    (void)msg;
    struct gcall *g = grpc_call_data(gc);
    if (g)
        g->body_bytes += len;
}

static void g_answer(struct gcall *g)
{
    if (g->status == 0 && g->text) {
        for (unsigned long i = 0; i < g->count; i++)
            if (grpc_call_send(g->gc, g->text, strlen(g->text)) < 0)
                break;
    }
    grpc_call_finish(g->gc, (int)g->status,
                     g->status ? "weft-echo: status requested by x-echo-grpc-status" : NULL, NULL, 0);
}

static void g_on_delay(struct loop *l, struct timer *t)
{
    (void)l;
    g_answer(t->data);
}

/* Answers once the client half-closes: count messages (EchoStream), after the delay. */
static void g_half_close(struct grpc_call *gc)
{
    struct gcall *g = grpc_call_data(gc);
    if (!g) {
        grpc_call_finish(gc, 8, "out of memory", NULL, 0);
        return;
    }
    const struct grpc_md *md;
    size_t n = grpc_call_metadata(gc, &md);
    json_t *h = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(h, md[i].name, json_stringn(md[i].value, md[i].value_len));
    json_t *o = describe("POST", grpc_call_path(gc), NULL, "", "gRPC", h, g->body_bytes);
    json_decref(h);
    json_object_del(o, "ip");
    json_object_del(o, "host");
    size_t vl;
    unsigned long delay = E.cfg.delay_ms;
    g->status = 0;
    g->count = 3;
    const char *s = grpc_call_metadata_get(gc, "x-echo-grpc-status", &vl);
    if (s && !parse_num(s, 16, &g->status))
        g->status = 0;
    s = grpc_call_metadata_get(gc, "x-echo-stream-count", &vl);
    if (s && !parse_num(s, 1000, &g->count))
        g->count = 3;
    s = grpc_call_metadata_get(gc, "x-echo-delay-ms", &vl);
    if (s && !parse_num(s, ECHO_MAX_DELAY_MS, &delay))
        delay = E.cfg.delay_ms;
    if (!g->stream)
        g->count = 1;
    g->text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (delay) {
        g->delay.cb = g_on_delay;
        timer_start(E.loop, &g->delay, delay);
        return;
    }
    g_answer(g);
}

static void g_done(struct grpc_call *gc, enum grpc_call_end why)
{
    (void)why;
    struct gcall *g = grpc_call_data(gc);
    if (g) {
        timer_stop(E.loop, &g->delay);
        free(g->text);
        free(g);
    }
}

static const struct grpc_handler g_handler = {
    .on_start = g_start, .on_message = g_message, .on_half_close = g_half_close, .on_done = g_done};

static void on_grpc_down(struct grpc_server *s, void *arg)
{
    (void)s; (void)arg;
    E.grpc_down = true;
    if (E.nconns == 0)
        loop_stop(E.loop);
}

/* ---------- shutdown ---------- */

static void on_drain_timeout(struct loop *l, struct timer *t)
{
    (void)t;
    loop_stop(l);
}

static void on_signal(struct loop *l, struct io *io, uint32_t ev)
{
    struct signalfd_siginfo si;
    (void)ev;
    while (read(io->fd, &si, sizeof si) == sizeof si) {
        if (E.draining)
            continue;
        E.draining = true;
        for (int i = 0; i < E.nlisteners; i++) {
            io_stop(l, &E.listeners[i].io);
            close(E.listeners[i].io.fd);
        }
        if (E.grpc)
            grpc_server_shutdown(E.grpc, ECHO_DRAIN_MS, on_grpc_down, NULL);
        timer_init(&E.drain_timer, on_drain_timeout, NULL);
        timer_start(l, &E.drain_timer, ECHO_DRAIN_MS + 1000);
        /* idle connections go now; busy ones after their answer */
        for (struct conn *c = E.conns, *nx; c; c = nx) {
            nx = c->next;
            if (c->h2) {
                nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE,
                                      nghttp2_session_get_last_proc_stream_id(c->ng), NGHTTP2_NO_ERROR, NULL, 0);
                conn_flush(c);
            } else if (!c->reqs && !c->out && c->head_len == 0) {
                conn_close(c);
            }
        }
    }
    if (E.nconns == 0 && (E.grpc_down || !E.grpc))
        loop_stop(l);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: weft-echo --port P [--port P2 ...] [--grpc-port G] [--name N] [--version V]\n"
               "         [--pod POD] [--bind ADDR] [--call http://host:port/path]... [--call-optional]\n"
               "         [--fail-rate 0..1] [--fail-status S] [--delay-ms D] [--fail-file PATH]\n");
}

int main(int argc, char **argv)
{
    char err[ECHO_ERR_MAX];
    if (echo_parse_args(argc, argv, &E.cfg, err) < 0) {
        fprintf(stderr, "weft-echo: %s\n", err);
        return 2;
    }
    if (E.cfg.help) {
        usage(stdout);
        return 0;
    }
    /* --call names are resolved once, here, before the loop runs: a blocking lookup can
     * never stall request handling (docs/design.md). */
    for (int i = 0; i < E.cfg.ncalls; i++) {
        char port[8];
        snprintf(port, sizeof port, "%u", E.cfg.calls[i].port);
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
        int rc = getaddrinfo(E.cfg.calls[i].host, port, &hints, &E.call_addr[i]);
        if (rc != 0) {
            fprintf(stderr, "weft-echo: --call %s: cannot resolve %s: %s\n", E.cfg.calls[i].url,
                    E.cfg.calls[i].host, gai_strerror(rc));
            return 2;
        }
    }
    memset(filler, 'x', sizeof filler);
    E.seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    E.sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    E.loop = loop_new(NULL, NULL);
    if (E.sfd < 0 || !E.loop) {
        fprintf(stderr, "weft-echo: cannot start the event loop\n");
        return 1;
    }
    io_start(E.loop, &E.sig_io, E.sfd, EPOLLIN, on_signal, NULL);
    for (int i = 0; i < E.cfg.nports; i++) {
        int fd = listen_on(E.cfg.bind, E.cfg.ports[i]);
        if (fd < 0) {
            fprintf(stderr, "weft-echo: listen on %s:%u: %s\n", E.cfg.bind, E.cfg.ports[i],
                    fd == -EINVAL ? "--bind is not a numeric IP address" : strerror(-fd));
            return fd == -EINVAL ? 2 : 1;
        }
        io_start(E.loop, &E.listeners[i].io, fd, EPOLLIN, on_accept, NULL);
        E.nlisteners++;
    }
    if (E.cfg.grpc_port) {
        E.grpc = grpc_server_new(E.loop, NULL);
        if (!E.grpc || grpc_server_add_method(E.grpc, "/weft.echo.Echo/Echo", &g_handler, NULL) < 0 ||
            grpc_server_add_method(E.grpc, "/weft.echo.Echo/EchoStream", &g_handler, (void *)1) < 0) {
            fprintf(stderr, "weft-echo: cannot start the gRPC server\n");
            return 1;
        }
        int rc = grpc_server_listen(E.grpc, E.cfg.bind, E.cfg.grpc_port);
        if (rc < 0) {
            fprintf(stderr, "weft-echo: gRPC listen on %s:%u: %s\n", E.cfg.bind, E.cfg.grpc_port,
                    strerror(-rc));
            return 1;
        }
    }
    fprintf(stderr, "weft-echo: %s %s serving\n", E.cfg.name, E.cfg.version);
    loop_run(E.loop);
    while (E.conns)
        conn_close(E.conns);
    if (E.grpc)
        grpc_server_free(E.grpc);
    for (int i = 0; i < E.cfg.ncalls; i++)
        freeaddrinfo(E.call_addr[i]);
    loop_free(E.loop);
    close(E.sfd);
    return 0;
}
