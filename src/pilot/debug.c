/* pilot/debug: weftd's debug HTTP server (see debug.h). */
#include "common/hex.h"
#include "pilot/debug.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pbmap.h"
#include "common/sock.h"
#include "net/http1.h"

struct dconn {
    struct io io;
    struct pilot_debug *d;
    char in[PILOT_DEBUG_MAX_REQUEST];
    size_t in_len;
    char *out;
    size_t out_len, out_off;
    struct deferred def;
    struct dconn *next, *prev;
};

struct pilot_debug {
    struct loop *loop;
    struct io lio;
    struct ads_server *ads;
    struct dconn *conns;
    size_t nconns;
};

/* ---- answers ---- */

static char *configz(const struct pilot_model *m)
{
    json_t *root = json_object(), *objs = json_array(), *errs = json_array();
    for (size_t i = 0; i < m->n_objs; i++) {
        const struct istio_object *o = m->objs[i];
        json_t *j = json_pack("{s:s,s:s,s:{s:s,s:s},s:s,s:i}", "kind", istio_kind_name(o->kind),
                              "apiVersion", o->api_version ? o->api_version : "", "metadata",
                              "name", o->name, "namespace", o->ns, "file", o->file ? o->file : "",
                              "line", o->line);
        json_t *spec = o->spec ? pbmap_to_json(o->spec) : NULL;
        if (j && spec)
            json_object_set_new(j, "spec", spec);
        json_array_append_new(objs, j);
    }
    for (size_t i = 0; i < m->errors.n; i++)
        json_array_append_new(errs, json_string(m->errors.msgs[i]));
    json_object_set_new(root, "version", json_integer((json_int_t)m->version));
    json_object_set_new(root, "objects", objs);
    json_object_set_new(root, "errors", errs);
    char *out = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    return out;
}

/* The percent-decoded value of key in a query string, into out (cap bytes). Returns 0 or -1. */
static int query_get(const char *q, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    while (q && *q) {
        const char *end = strchr(q, '&');
        size_t n = end ? (size_t)(end - q) : strlen(q);
        if (n > kl && !strncmp(q, key, kl) && q[kl] == '=') {
            size_t o = 0;
            for (size_t i = kl + 1; i < n && o + 1 < cap; i++) {
                int hi, lo;
                if (q[i] == '%' && i + 2 < n + 1 && (hi = hex_digit(q[i + 1])) >= 0 &&
                    (lo = hex_digit(q[i + 2])) >= 0) {
                    out[o++] = (char)(hi * 16 + lo);
                    i += 2;
                } else {
                    out[o++] = q[i] == '+' ? ' ' : q[i];
                }
            }
            out[o] = '\0';
            return 0;
        }
        q = end ? end + 1 : NULL;
    }
    return -1;
}

static char *config_dump(struct ads_server *ads, const char *query, int *status)
{
    char id[512], err[256];
    if (query_get(query, "proxyID", id, sizeof id) < 0 || !*id) {
        *status = 400;
        return strdup("{\"error\": \"proxyID is required\"}\n");
    }
    struct pilot_model *m = ads_server_model(ads);
    struct ads_conn *c = ads_server_find(ads, id);
    struct pilot_proxy own = {0};
    const struct pilot_proxy *p = c ? ads_conn_proxy(c) : NULL;
    if (!p) {
        if (pilot_proxy_parse(id, &own, err, sizeof err) < 0) {
            pilot_proxy_free(&own);
            *status = 404;
            json_t *j = json_pack("{s:s}", "error", err);
            char *out = json_dumps(j, 0);
            json_decref(j);
            return out;
        }
        pilot_proxy_complete(&own, m);
        p = &own;
    }
    struct istio_errors warn = {0};
    char *out = pilot_dump_json(m, p, -1, &warn);
    if (!out) {
        *status = 500;
        out = strdup("{\"error\": \"translation failed\"}\n");
    }
    istio_errors_free(&warn);
    pilot_proxy_free(&own);
    return out;
}

char *pilot_debug_answer(struct ads_server *ads, const char *path, const char *query, int *status,
                         const char **ctype)
{
    *status = 200;
    *ctype = "application/json";
    if (!strcmp(path, "/debug/configz"))
        return configz(ads_server_model(ads));
    if (!strcmp(path, "/debug/syncz"))
        return ads_server_syncz_json(ads);
    if (!strcmp(path, "/debug/config_dump"))
        return config_dump(ads, query, status);
    *ctype = "text/plain; charset=utf-8";
    if (!strcmp(path, "/metrics") || !strcmp(path, "/stats/prometheus")) {
        *ctype = "text/plain; version=0.0.4";
        return ads_server_metrics(ads);
    }
    if (!strcmp(path, "/ready"))
        return strdup("ready\n");
    if (!strcmp(path, "/debug") || !strcmp(path, "/debug/"))
        return strdup("/debug/configz\n/debug/syncz\n/debug/config_dump?proxyID=ID\n/metrics\n/ready\n");
    *status = 404;
    return strdup("not found\n");
}

/* ---- connections ---- */

static void dconn_release(struct deferred *df)
{
    struct dconn *c = (struct dconn *)((char *)df - offsetof(struct dconn, def));
    free(c->out);
    free(c);
}

static void dconn_close(struct dconn *c)
{
    struct pilot_debug *d = c->d;
    io_stop(d->loop, &c->io);
    close(c->io.fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        d->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    d->nconns--;
    loop_defer(d->loop, &c->def, dconn_release);
}

static void dconn_flush(struct dconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = sock_send(c->io.fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0 && errno == EAGAIN) {
            io_want_write(c->d->loop, &c->io, true);
            return;
        }
        if (n <= 0) {
            dconn_close(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    shutdown(c->io.fd, SHUT_WR);
    dconn_close(c);
}

static void dconn_respond(struct dconn *c, int status, const char *ctype, const char *body)
{
    const char *reason = status == 200 ? "OK" : status == 400 ? "Bad Request" :
                         status == 404 ? "Not Found" : status == 405 ? "Method Not Allowed" :
                         status == 431 ? "Request Header Fields Too Large" : "Internal Server Error";
    size_t bl = strlen(body);
    size_t cap = bl + 256;
    c->out = malloc(cap);
    if (!c->out) {
        dconn_close(c);
        return;
    }
    int hl = snprintf(c->out, cap,
                      "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
                      "connection: close\r\n\r\n", status, reason, ctype, bl);
    memcpy(c->out + hl, body, bl);
    c->out_len = (size_t)hl + bl;
    io_modify(c->d->loop, &c->io, 0);
    dconn_flush(c);
}

static void dconn_request(struct dconn *c)
{
    struct h1_header hdrs[H1_DEFAULT_MAX_HEADERS_COUNT];
    struct h1_request req = {.headers = hdrs};
    struct h1_limits lim = {.max_head_bytes = PILOT_DEBUG_MAX_REQUEST};
    int rc = h1_parse_request(c->in, c->in_len, &lim, &req);
    if (rc == H1_INCOMPLETE) {
        if (c->in_len == sizeof c->in)
            dconn_respond(c, 431, "text/plain", "request too large\n");
        return;
    }
    if (rc < 0) {
        int code = h1_status_http_code(rc);
        dconn_respond(c, code == 431 ? 431 : 400, "text/plain", "bad request\n");
        return;
    }
    if (!(req.method.n == 3 && !memcmp(req.method.p, "GET", 3)) &&
        !(req.method.n == 4 && !memcmp(req.method.p, "HEAD", 4))) {
        dconn_respond(c, 405, "text/plain", "only GET\n");
        return;
    }
    char path[2048];
    size_t n = req.path.n < sizeof path - 1 ? req.path.n : sizeof path - 1;
    memcpy(path, req.path.p ? req.path.p : "/", req.path.p ? n : 1);
    path[req.path.p ? n : 1] = '\0';
    char *q = strchr(path, '?');
    if (q)
        *q++ = '\0';
    int status;
    const char *ctype;
    char *body = pilot_debug_answer(c->d->ads, path, q, &status, &ctype);
    if (!body) {
        dconn_respond(c, 500, "text/plain", "out of memory\n");
        return;
    }
    dconn_respond(c, status, ctype, body);
    free(body);
}

static void on_conn(struct loop *l, struct io *io, uint32_t events)
{
    struct dconn *c = io->data;
    (void)l;
    if (c->out) {
        if (events & EPOLLOUT)
            dconn_flush(c);
        return;
    }
    for (;;) {
        if (c->in_len == sizeof c->in) {
            dconn_request(c);
            return;
        }
        ssize_t n = sock_recv(io->fd, c->in + c->in_len, sizeof c->in - c->in_len);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            dconn_close(c);
            return;
        }
        c->in_len += (size_t)n;
        dconn_request(c);
        if (c->out || !c->d)
            return;
    }
}

static void on_accept(struct loop *l, struct io *io, uint32_t events)
{
    struct pilot_debug *d = io->data;
    (void)events;
    for (;;) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct dconn *c = d->nconns < PILOT_DEBUG_MAX_CONNS ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            close(fd);
            continue;
        }
        c->d = d;
        if (io_start(l, &c->io, fd, EPOLLIN, on_conn, c) < 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = d->conns;
        if (d->conns)
            d->conns->prev = c;
        d->conns = c;
        d->nconns++;
    }
}

struct pilot_debug *pilot_debug_new(struct loop *l, const char *addr, uint16_t port,
                                    struct ads_server *ads, int *bound, int *err)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        len = sizeof *in4;
    } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        len = sizeof *in6;
    } else {
        *err = -EINVAL;
        return NULL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0) {
        *err = -errno;
        return NULL;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 128) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        *err = -errno;
        close(fd);
        return NULL;
    }
    struct pilot_debug *d = calloc(1, sizeof *d);
    if (!d || io_start(l, &d->lio, fd, EPOLLIN, on_accept, d) < 0) {
        free(d);
        close(fd);
        *err = -ENOMEM;
        return NULL;
    }
    d->loop = l;
    d->ads = ads;
    *bound = ntohs(ss.ss_family == AF_INET ? in4->sin_port : in6->sin6_port);
    return d;
}

void pilot_debug_free(struct pilot_debug *d)
{
    if (!d)
        return;
    while (d->conns)
        dconn_close(d->conns);
    io_stop(d->loop, &d->lio);
    close(d->lio.fd);
    free(d);
}
