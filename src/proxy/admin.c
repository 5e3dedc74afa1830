/* The admin server (bootstrap admin.address, normally 127.0.0.1:15000), on the main thread:
 * /ready, /stats (text, ?format=json, ?filter=), /stats/prometheus, /config_dump, /clusters,
 * /listeners, /server_info, POST /quitquitquit, POST /logging?level=. One request per
 * connection at a time; answers are built in memory and written as they drain. */
#include "proxy/admin.h"
#include "proxy/host_health.h"

#include <errno.h>
#include <jansson.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "net/http1.h"
#include "proxy/http_util.h"
#include "proxy/listener.h"
#include "proxy/version.h"

#define ADMIN_MAX_REQUEST 16384
#define ADMIN_MAX_CONNS 64

struct admin_conn {
    struct io io;
    struct admin *a;
    char in[ADMIN_MAX_REQUEST];
    size_t in_len;
    char *out;
    size_t out_len, out_off;
    bool close_after;
    struct deferred def;
    struct admin_conn *next, *prev;   /* every open connection, so admin_stop can close them */
};

struct admin {
    struct loop *loop;
    struct io listen_io;
    struct admin_hooks hooks;
    size_t nconns;
    struct admin_conn *conns;
};

/* A growable string for building answers (admin only: config time, not the request path). */
struct sbuf {
    char *p;
    size_t n, cap;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof tmp) {
        char *big = malloc((size_t)n + 1);
        if (!big)
            return;
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        sb_add(b, big, (size_t)n);
        free(big);
        return;
    }
    if (n > 0)
        sb_add(b, tmp, (size_t)n);
}

/* --- stats rendering --- */

struct stat_entry {
    char *name;
    enum stat_kind kind;
    int64_t value;
};

struct stat_list {
    struct stat_entry *e;
    size_t n, cap;
    pcre2_code *filter;
    pcre2_match_data *md;
};

static void collect(void *arg, const char *name, enum stat_kind kind, int64_t value)
{
    struct stat_list *l = arg;
    if (l->filter && pcre2_match(l->filter, (PCRE2_SPTR)name, strlen(name), 0, 0, l->md, NULL) < 0)
        return;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        struct stat_entry *ne = realloc(l->e, l->cap * sizeof *ne);
        if (!ne)
            return;
        l->e = ne;
    }
    l->e[l->n++] = (struct stat_entry){strdup(name), kind, value};
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct stat_entry *)a)->name, ((const struct stat_entry *)b)->name);
}

static void stat_list_free(struct stat_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->e[i].name);
    free(l->e);
    if (l->md)
        pcre2_match_data_free(l->md);
    if (l->filter)
        pcre2_code_free(l->filter);
}

/* Finds ?key=value in a query string; returns a malloc'd, %-decoded value or NULL. */
static char *query_param(struct h1_str path, const char *key)
{
    const char *q = memchr(path.p, '?', path.n);
    if (!q)
        return NULL;
    const char *p = q + 1, *end = path.p + path.n;
    size_t klen = strlen(key);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        if ((size_t)(pe - p) >= klen && memcmp(p, key, klen) == 0 && (p + klen == pe || p[klen] == '=')) {
            const char *v = p + klen + (p + klen < pe ? 1 : 0);
            char *out = malloc((size_t)(pe - v) + 1);
            size_t n = 0;
            for (const char *s = v; s < pe; s++) {
                if (*s == '%' && s + 2 < pe) {
                    char hex[3] = {s[1], s[2], 0};
                    out[n++] = (char)strtol(hex, NULL, 16);
                    s += 2;
                } else {
                    out[n++] = *s == '+' ? ' ' : *s;
                }
            }
            out[n] = '\0';
            return out;
        }
        p = pe + 1;
    }
    return NULL;
}

static int gather_stats(struct h1_str path, struct stat_list *l, struct sbuf *err)
{
    char *filter = query_param(path, "filter");
    if (filter && *filter) {
        int ec;
        PCRE2_SIZE off;
        l->filter = pcre2_compile((PCRE2_SPTR)filter, PCRE2_ZERO_TERMINATED, 0, &ec, &off, NULL);
        if (!l->filter) {
            sb_printf(err, "invalid regex in filter: %s\n", filter);
            free(filter);
            return -1;
        }
        l->md = pcre2_match_data_create_from_pattern(l->filter, NULL);
    }
    free(filter);
    stats_visit(collect, l);
    qsort(l->e, l->n, sizeof *l->e, cmp_entry);
    return 0;
}

static void render_stats_text(struct stat_list *l, struct sbuf *b)
{
    for (size_t i = 0; i < l->n; i++)
        sb_printf(b, "%s: %lld\n", l->e[i].name, (long long)l->e[i].value);
}

static void render_stats_json(struct stat_list *l, struct sbuf *b)
{
    json_t *root = json_object(), *arr = json_array();
    for (size_t i = 0; i < l->n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(l->e[i].name));
        json_object_set_new(o, "value", json_integer(l->e[i].value));
        json_array_append_new(arr, o);
    }
    json_object_set_new(root, "stats", arr);
    char *s = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    sb_add(b, s, strlen(s));
    sb_add(b, "\n", 1);
    free(s);
    json_decref(root);
}

/* Envoy's Prometheus names: the well-known prefixes become tags, '.' becomes '_', and status
 * codes become an envoy_response_code tag. */
static void prom_name(const char *name, struct sbuf *metric, struct sbuf *tags)
{
    static const struct { const char *prefix; const char *metric; const char *tag; } rules[] = {
        {"cluster.", "cluster.", "envoy_cluster_name"},
        {"http.", "http.", "envoy_http_conn_manager_prefix"},
        {"listener.", "listener.", "envoy_listener_address"},
        {"tcp.", "tcp.", "envoy_tcp_prefix"},
    };
    const char *rest = name;
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        size_t pl = strlen(rules[i].prefix);
        if (strncmp(name, rules[i].prefix, pl) != 0)
            continue;
        /* The tag value runs to the last '.' before the stat's own name. */
        const char *last = strrchr(name + pl, '.');
        if (!last)
            break;
        sb_printf(tags, "%s=\"%.*s\"", rules[i].tag, (int)(last - (name + pl)), name + pl);
        sb_add(metric, rules[i].metric, strlen(rules[i].metric));
        rest = last + 1;
        break;
    }
    /* upstream_rq_503 → upstream_rq{envoy_response_code="503"}; upstream_rq_5xx → _xx with a class. */
    size_t rl = strlen(rest);
    if (rl > 4 && rest[rl - 4] == '_' && rest[rl - 3] >= '1' && rest[rl - 3] <= '5') {
        bool code = rest[rl - 2] >= '0' && rest[rl - 2] <= '9' && rest[rl - 1] >= '0' && rest[rl - 1] <= '9';
        bool cls = rest[rl - 2] == 'x' && rest[rl - 1] == 'x';
        if (code || cls) {
            sb_add(metric, rest, rl - 4);
            if (cls)
                sb_add(metric, "_xx", 3);
            sb_printf(tags, "%s%s=\"%.*s\"", tags->n ? "," : "",
                      cls ? "envoy_response_code_class" : "envoy_response_code", cls ? 1 : 3, rest + rl - 3);
            return;
        }
    }
    sb_add(metric, rest, rl);
}

static void render_prometheus(struct stat_list *l, struct sbuf *b)
{
    char *last_type = NULL;
    for (size_t i = 0; i < l->n; i++) {
        struct sbuf metric = {0}, tags = {0};
        sb_add(&metric, "envoy_", 6);
        prom_name(l->e[i].name, &metric, &tags);
        for (char *p = metric.p; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
                *p = '_';
        if (!last_type || strcmp(last_type, metric.p) != 0) {
            sb_printf(b, "# TYPE %s %s\n", metric.p, l->e[i].kind == STAT_COUNTER ? "counter" : "gauge");
            free(last_type);
            last_type = strdup(metric.p);
        }
        sb_printf(b, "%s{%s} %lld\n", metric.p, tags.p ? tags.p : "", (long long)l->e[i].value);
        free(metric.p);
        free(tags.p);
    }
    free(last_type);
}

/* --- endpoints --- */


/* Envoy's per-host lines of /clusters that Weft keeps (host_health.h). */
static void render_host_counters(struct sbuf *b, const struct cluster *c, const struct host *h)
{
    const struct host_health *hh = h->hh;
    if (!hh)
        return;
    sb_printf(b, "%s::%s::cx_active::%lld\n", c->name, h->addr_str, (long long)atomic_load(&hh->cx_active));
    sb_printf(b, "%s::%s::rq_active::%lld\n", c->name, h->addr_str, (long long)atomic_load(&hh->rq_active));
    sb_printf(b, "%s::%s::rq_total::%llu\n", c->name, h->addr_str, (unsigned long long)atomic_load(&hh->rq_total));
    sb_printf(b, "%s::%s::rq_success::%llu\n", c->name, h->addr_str,
              (unsigned long long)atomic_load(&hh->rq_success));
    sb_printf(b, "%s::%s::rq_error::%llu\n", c->name, h->addr_str, (unsigned long long)atomic_load(&hh->rq_error));
    sb_printf(b, "%s::%s::rq_timeout::%llu\n", c->name, h->addr_str,
              (unsigned long long)atomic_load(&hh->rq_timeout));
    sb_printf(b, "%s::%s::success_rate::%.1f\n", c->name, h->addr_str, hh->success_rate);
    sb_printf(b, "%s::%s::local_origin_success_rate::%.1f\n", c->name, h->addr_str, hh->local_success_rate);
}

static void render_clusters(struct snapshot *s, struct sbuf *b)
{
    for (size_t i = 0; i < s->n_clusters; i++) {
        struct cluster *c = s->clusters[i];
        sb_printf(b, "%s::observability_name::%s\n", c->name, c->name);
        struct host_set *hs = cluster_hosts_acquire(c);
        for (size_t j = 0; j < hs->n; j++) {
            const struct host *h = &hs->hosts[j];
            sb_printf(b, "%s::%s::hostname::%s\n", c->name, h->addr_str, h->hostname ? h->hostname : "");
            char fb[128];
            sb_printf(b, "%s::%s::health_flags::%s\n", c->name, h->addr_str, host_health_flags(h, fb, sizeof fb));
            render_host_counters(b, c, h);
            sb_printf(b, "%s::%s::weight::%u\n", c->name, h->addr_str, h->weight);
            sb_printf(b, "%s::%s::priority::%u\n", c->name, h->addr_str, h->priority);
        }
        host_set_release(hs);
    }
}

static void render_listeners(struct snapshot *s, struct sbuf *b)
{
    for (size_t i = 0; i < s->n_listeners; i++)
        sb_printf(b, "%s::%s\n", s->listeners[i]->name, s->listeners[i]->addr_str);
}

static void render_server_info(struct admin *a, struct snapshot *s, struct sbuf *b)
{
    json_t *o = json_object();
    json_object_set_new(o, "version", json_string("weft/" WEFT_VERSION));
    json_object_set_new(o, "state", json_string(a->hooks.state ? a->hooks.state(a->hooks.arg) : "LIVE"));
    json_object_set_new(o, "hot_restart_version", json_string("disabled"));
    json_t *opts = json_object();
    json_object_set_new(opts, "concurrency", json_integer(a->hooks.concurrency));
    json_object_set_new(opts, "config_path", json_string(a->hooks.config_path ? a->hooks.config_path : ""));
    json_object_set_new(opts, "drain_time", json_sprintf("%us", a->hooks.drain_time_s));
    json_object_set_new(o, "command_line_options", opts);
    time_t up = time(NULL) - a->hooks.start_time;
    json_object_set_new(o, "uptime_current_epoch", json_sprintf("%llds", (long long)up));
    json_object_set_new(o, "uptime_all_epochs", json_sprintf("%llds", (long long)up));
    json_t *node = json_object();
    json_object_set_new(node, "id", json_string(s->node_id ? s->node_id : ""));
    json_object_set_new(node, "cluster", json_string(s->node_cluster ? s->node_cluster : ""));
    json_object_set_new(o, "node", node);
    char *txt = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    sb_add(b, txt, strlen(txt));
    sb_add(b, "\n", 1);
    free(txt);
    json_decref(o);
}

static bool path_is(struct h1_str path, const char *p)
{
    size_t n = strlen(p);
    return path.n >= n && memcmp(path.p, p, n) == 0 && (path.n == n || path.p[n] == '?');
}

/* Answers one request into body; returns the status code and sets the content type. */
static int handle(struct admin *a, const struct h1_request *rq, struct sbuf *body, const char **ctype, bool *quit)
{
    struct snapshot *s = a->hooks.snapshot(a->hooks.arg);
    struct h1_str p = rq->path;
    bool post = h1_str_eq_ci(rq->method, "POST");
    int status = 200;
    *ctype = "text/plain; charset=UTF-8";
    if (path_is(p, "/ready")) {
        const char *st = a->hooks.state ? a->hooks.state(a->hooks.arg) : "LIVE";
        sb_printf(body, "%s\n", st);
        status = strcmp(st, "LIVE") == 0 ? 200 : 503;
    } else if (path_is(p, "/stats/prometheus")) {
        struct stat_list l = {0};
        if (gather_stats(p, &l, body) < 0)
            status = 400;
        else
            render_prometheus(&l, body);
        stat_list_free(&l);
    } else if (path_is(p, "/stats")) {
        struct stat_list l = {0};
        char *fmt = query_param(p, "format");
        if (gather_stats(p, &l, body) < 0) {
            status = 400;
        } else if (fmt && strcmp(fmt, "json") == 0) {
            *ctype = "application/json";
            render_stats_json(&l, body);
        } else if (fmt && strcmp(fmt, "prometheus") == 0) {
            render_prometheus(&l, body);
        } else {
            render_stats_text(&l, body);
        }
        free(fmt);
        stat_list_free(&l);
    } else if (path_is(p, "/config_dump")) {
        *ctype = "application/json";
        sb_printf(body, "%s\n", s->config_json ? s->config_json : "{}");
    } else if (path_is(p, "/clusters")) {
        render_clusters(s, body);
    } else if (path_is(p, "/listeners")) {
        render_listeners(s, body);
    } else if (path_is(p, "/server_info")) {
        *ctype = "application/json";
        render_server_info(a, s, body);
    } else if (path_is(p, "/quitquitquit")) {
        if (!post) {
            status = 405;
            sb_printf(body, "This endpoint requires POST\n");
        } else {
            sb_printf(body, "OK\n");
            *quit = true;
        }
    } else if (path_is(p, "/logging")) {
        char *level = query_param(p, "level");
        if (level) {
            int lv = log_level_parse(level);
            if (!post) {
                status = 405;
                sb_printf(body, "This endpoint requires POST\n");
            } else if (lv < 0) {
                status = 404;
                sb_printf(body, "error: unknown logger level '%s'\n", level);
            } else {
                log_current_level = lv;
            }
        }
        free(level);
        if (status == 200)
            sb_printf(body, "active loggers:\n  weft: %s\n", log_level_name(log_current_level));
    } else if (path_is(p, "/") || path_is(p, "/help")) {
        sb_printf(body, "admin commands are:\n  /clusters\n  /config_dump\n  /listeners\n  /logging\n"
                        "  /quitquitquit\n  /ready\n  /server_info\n  /stats\n  /stats/prometheus\n");
    } else {
        status = 404;
        sb_printf(body, "invalid path. admin commands are: /clusters /config_dump /listeners /logging "
                        "/quitquitquit /ready /server_info /stats /stats/prometheus\n");
    }
    snapshot_unref(s);
    return status;
}

static void conn_free(struct deferred *d)
{
    struct admin_conn *c = (struct admin_conn *)((char *)d - offsetof(struct admin_conn, def));
    free(c->out);
    free(c);
}

static void conn_unlink(struct admin_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->a->nconns--;
}

static void conn_close(struct admin_conn *c)
{
    io_stop(c->a->loop, &c->io);
    close(c->io.fd);
    conn_unlink(c);
    loop_defer(c->a->loop, &c->def, conn_free);
}

static bool conn_flush(struct admin_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->io.fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0)
            return errno == EAGAIN;
        c->out_off += (size_t)n;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    return true;
}

static void on_conn(struct loop *l, struct io *io, uint32_t events)
{
    (void)l, (void)events;
    struct admin_conn *c = io->data;
    if (c->out && !conn_flush(c)) {
        conn_close(c);
        return;
    }
    if (c->out)
        return;
    if (c->close_after) {
        conn_close(c);
        return;
    }
    for (;;) {
        ssize_t n = read(c->io.fd, c->in + c->in_len, sizeof c->in - c->in_len);
        if (n > 0) {
            c->in_len += (size_t)n;
            if (c->in_len == sizeof c->in)
                break;
            continue;
        }
        if (n == 0 || errno != EAGAIN) {
            conn_close(c);
            return;
        }
        break;
    }
    struct h1_header hdrs[64];
    struct h1_request rq = {.headers = hdrs};
    struct h1_limits lim = {sizeof c->in, 64};
    int r = h1_parse_request(c->in, c->in_len, &lim, &rq);
    if (r == H1_INCOMPLETE && c->in_len < sizeof c->in)
        return;
    struct sbuf body = {0}, resp = {0};
    const char *ctype = "text/plain; charset=UTF-8";
    int status;
    bool quit = false;
    if (r < 0) {
        status = r == H1_TOO_LARGE || r == H1_INCOMPLETE ? 431 : 400;
        c->close_after = true;
    } else {
        status = handle(c->a, &rq, &body, &ctype, &quit);
        if (!rq.keep_alive)
            c->close_after = true;
        /* Request bodies are not used by any endpoint: skip a declared one if it is here. */
        size_t used = (size_t)r + (rq.content_length > 0 ? (size_t)rq.content_length : 0);
        if (rq.chunked || used > c->in_len) {
            c->close_after = true;
            used = c->in_len;
        }
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
    }
    char date[40];
    http_date_now(date, sizeof date);
    sb_printf(&resp, "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\ndate: %s\r\nserver: envoy\r\n"
                     "cache-control: no-cache, max-age=0\r\nx-content-type-options: nosniff\r\n%s\r\n",
              status, http_reason(status), ctype, body.n, date, c->close_after ? "connection: close\r\n" : "");
    if (body.n)
        sb_add(&resp, body.p, body.n);
    free(body.p);
    c->out = resp.p;
    c->out_len = resp.n;
    c->out_off = 0;
    if (!conn_flush(c) || (!c->out && c->close_after)) {
        conn_close(c);
    }
    if (quit && c->a->hooks.quit)
        c->a->hooks.quit(c->a->hooks.arg);
}

static void on_accept(struct loop *l, struct io *io, uint32_t events)
{
    (void)events;
    struct admin *a = io->data;
    for (;;) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (a->nconns >= ADMIN_MAX_CONNS) {
            close(fd);
            continue;
        }
        struct admin_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->a = a;
        a->nconns++;
        c->next = a->conns;
        if (a->conns)
            a->conns->prev = c;
        a->conns = c;
        io_start(l, &c->io, fd, EPOLLIN | EPOLLOUT, on_conn, c);
    }
}

struct admin *admin_start(struct loop *loop, const struct admin_config *cfg, const struct admin_hooks *hooks,
                          char *err, size_t errlen)
{
    struct admin *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->loop = loop;
    a->hooks = *hooks;
    int fd = listener_open(&cfg->addr, cfg->addrlen, false);
    if (fd < 0) {
        char addr[ADDR_STR_MAX];
        sockaddr_format(&cfg->addr, addr, sizeof addr);
        snprintf(err, errlen, "admin: cannot listen on %s: %s", addr, strerror(-fd));
        free(a);
        return NULL;
    }
    io_start(loop, &a->listen_io, fd, EPOLLIN, on_accept, a);
    return a;
}

void admin_stop(struct admin *a)
{
    if (!a)
        return;
    io_stop(a->loop, &a->listen_io);
    close(a->listen_io.fd);
    while (a->conns) { /* the loop has stopped: free directly, nothing else can see them */
        struct admin_conn *c = a->conns;
        io_stop(a->loop, &c->io);
        close(c->io.fd);
        conn_unlink(c);
        conn_free(&c->def);
    }
    free(a);
}
