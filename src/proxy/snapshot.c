/* Builds the runtime snapshot from an Envoy v3 Bootstrap: listeners, filter chains, the HTTP
 * connection manager with its compiled routes, tcp_proxy, clusters with their hosts and
 * load-balancing tables, access logs. Every problem is reported as "field.path: problem". */
/* Envoy still honours the fields its protos mark deprecated (access_log_path, text_format,
 * max_requests_per_connection...), and so do we: reading them is not an error here. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "common/pbmap.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb-c.h"
#include "envoy/extensions/access_loggers/file/v3/file.pb-c.h"
#include "envoy/extensions/access_loggers/stream/v3/stream.pb-c.h"
#include "envoy/extensions/filters/http/router/v3/router.pb-c.h"
#include "envoy/extensions/filters/listener/original_dst/v3/original_dst.pb-c.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb-c.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb-c.h"
#include "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.pb-c.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb-c.h"
#include "net/tls.h"
#include "net/xfcc.h"
#include "envoy/extensions/filters/http/fault/v3/fault.pb-c.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb-c.h"
#include "proxy/access_log.h"
#include "proxy/config.h"
#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/hfilter.h"
#include "proxy/netrl.h"
#include "proxy/route.h"
#include "proxy/host_health.h"
#include "proxy/resilience_build.h"

typedef Envoy__Config__Bootstrap__V3__Bootstrap Bootstrap;
typedef Envoy__Config__Listener__V3__Listener Listener;
typedef Envoy__Config__Listener__V3__FilterChain FilterChain;
typedef Envoy__Config__Listener__V3__FilterChainMatch FilterChainMatch;
typedef Envoy__Config__Cluster__V3__Cluster Cluster;
typedef Envoy__Config__Core__V3__Address Address;
typedef Envoy__Config__Core__V3__CidrRange CidrRange;
typedef Envoy__Config__Accesslog__V3__AccessLog AccessLog;
typedef Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager Hcm;
typedef Envoy__Extensions__Filters__Network__TcpProxy__V3__TcpProxy TcpProxy;

const struct stat_def cluster_stat_defs[CS_COUNT] = {
    [CS_UPSTREAM_CX_TOTAL] = {"upstream_cx_total", STAT_COUNTER},
    [CS_UPSTREAM_CX_ACTIVE] = {"upstream_cx_active", STAT_GAUGE},
    [CS_UPSTREAM_CX_CONNECT_FAIL] = {"upstream_cx_connect_fail", STAT_COUNTER},
    [CS_UPSTREAM_CX_CONNECT_TIMEOUT] = {"upstream_cx_connect_timeout", STAT_COUNTER},
    [CS_UPSTREAM_CX_DESTROY] = {"upstream_cx_destroy", STAT_COUNTER},
    [CS_UPSTREAM_CX_RX_BYTES_TOTAL] = {"upstream_cx_rx_bytes_total", STAT_COUNTER},
    [CS_UPSTREAM_CX_TX_BYTES_TOTAL] = {"upstream_cx_tx_bytes_total", STAT_COUNTER},
    [CS_UPSTREAM_CX_NONE_HEALTHY] = {"upstream_cx_none_healthy", STAT_COUNTER},
    [CS_UPSTREAM_RQ_TOTAL] = {"upstream_rq_total", STAT_COUNTER},
    [CS_UPSTREAM_RQ_ACTIVE] = {"upstream_rq_active", STAT_GAUGE},
    [CS_UPSTREAM_RQ_TIMEOUT] = {"upstream_rq_timeout", STAT_COUNTER},
    [CS_UPSTREAM_RQ_1XX] = {"upstream_rq_1xx", STAT_COUNTER},
    [CS_UPSTREAM_RQ_2XX] = {"upstream_rq_2xx", STAT_COUNTER},
    [CS_UPSTREAM_RQ_3XX] = {"upstream_rq_3xx", STAT_COUNTER},
    [CS_UPSTREAM_RQ_4XX] = {"upstream_rq_4xx", STAT_COUNTER},
    [CS_UPSTREAM_RQ_5XX] = {"upstream_rq_5xx", STAT_COUNTER},
    [CS_UPSTREAM_RQ_COMPLETED] = {"upstream_rq_completed", STAT_COUNTER},
    [CS_UPSTREAM_CX_DESTROY_LOCAL] = {"upstream_cx_destroy_local", STAT_COUNTER},
    [CS_UPSTREAM_CX_DESTROY_REMOTE] = {"upstream_cx_destroy_remote", STAT_COUNTER},
    [CS_UPSTREAM_RQ_PENDING_TOTAL] = {"upstream_rq_pending_total", STAT_COUNTER},
    [CS_MEMBERSHIP_HEALTHY] = {"membership_healthy", STAT_GAUGE},
    [CS_MEMBERSHIP_TOTAL] = {"membership_total", STAT_GAUGE},
    [CS_UPSTREAM_CX_HTTP1_TOTAL] = {"upstream_cx_http1_total", STAT_COUNTER},
    [CS_UPSTREAM_CX_HTTP2_TOTAL] = {"upstream_cx_http2_total", STAT_COUNTER},
    [CS_UPSTREAM_RQ_RX_RESET] = {"upstream_rq_rx_reset", STAT_COUNTER},
    [CS_UPSTREAM_RQ_TX_RESET] = {"upstream_rq_tx_reset", STAT_COUNTER},
    [CS_UPSTREAM_RQ_RETRY] = {"upstream_rq_retry", STAT_COUNTER},
    [CS_UPSTREAM_RQ_RETRY_SUCCESS] = {"upstream_rq_retry_success", STAT_COUNTER},
    [CS_UPSTREAM_RQ_RETRY_LIMIT_EXCEEDED] = {"upstream_rq_retry_limit_exceeded", STAT_COUNTER},
    [CS_UPSTREAM_RQ_RETRY_BACKOFF_EXPONENTIAL] = {"upstream_rq_retry_backoff_exponential", STAT_COUNTER},
    [CS_UPSTREAM_RQ_PER_TRY_TIMEOUT] = {"upstream_rq_per_try_timeout", STAT_COUNTER},
    [CS_UPSTREAM_CX_MAX_DURATION_REACHED] = {"upstream_cx_max_duration_reached", STAT_COUNTER},
    [CS_UPSTREAM_CX_MAX_REQUESTS] = {"upstream_cx_max_requests", STAT_COUNTER},
};
const struct stat_schema cluster_stat_schema = {"cluster", cluster_stat_defs, CS_COUNT, "upstream_rq_"};

static const struct stat_def listener_stat_defs[LS_COUNT] = {
    [LS_DOWNSTREAM_CX_TOTAL] = {"downstream_cx_total", STAT_COUNTER},
    [LS_DOWNSTREAM_CX_ACTIVE] = {"downstream_cx_active", STAT_GAUGE},
    [LS_DOWNSTREAM_CX_DESTROY] = {"downstream_cx_destroy", STAT_COUNTER},
    [LS_NO_FILTER_CHAIN_MATCH] = {"no_filter_chain_match", STAT_COUNTER},
    [LS_DOWNSTREAM_CX_OVERFLOW] = {"downstream_cx_overflow", STAT_COUNTER},
    [LS_DOWNSTREAM_PRE_CX_TIMEOUT] = {"downstream_pre_cx_timeout", STAT_COUNTER},
    [LS_DOWNSTREAM_PRE_CX_ACTIVE] = {"downstream_pre_cx_active", STAT_GAUGE},
};
static const struct stat_def tls_inspector_stat_defs[TI_COUNT] = {
    [TI_TLS_FOUND] = {"tls_found", STAT_COUNTER},
    [TI_TLS_NOT_FOUND] = {"tls_not_found", STAT_COUNTER},
    [TI_SNI_FOUND] = {"sni_found", STAT_COUNTER},
    [TI_SNI_NOT_FOUND] = {"sni_not_found", STAT_COUNTER},
    [TI_ALPN_FOUND] = {"alpn_found", STAT_COUNTER},
    [TI_ALPN_NOT_FOUND] = {"alpn_not_found", STAT_COUNTER},
    [TI_CLIENT_HELLO_TOO_LARGE] = {"client_hello_too_large", STAT_COUNTER},
};
const struct stat_schema tls_inspector_stat_schema = {"tls_inspector", tls_inspector_stat_defs, TI_COUNT, NULL};
static const struct stat_def http_inspector_stat_defs[HI_COUNT] = {
    [HI_HTTP10_FOUND] = {"http10_found", STAT_COUNTER},
    [HI_HTTP11_FOUND] = {"http11_found", STAT_COUNTER},
    [HI_HTTP2_FOUND] = {"http2_found", STAT_COUNTER},
    [HI_HTTP_NOT_FOUND] = {"http_not_found", STAT_COUNTER},
};
const struct stat_schema http_inspector_stat_schema = {"http_inspector", http_inspector_stat_defs, HI_COUNT, NULL};
const struct stat_schema listener_stat_schema = {"listener", listener_stat_defs, LS_COUNT, NULL};

static const struct stat_def http_stat_defs[HS_COUNT] = {
    [HS_DOWNSTREAM_CX_TOTAL] = {"downstream_cx_total", STAT_COUNTER},
    [HS_DOWNSTREAM_CX_ACTIVE] = {"downstream_cx_active", STAT_GAUGE},
    [HS_DOWNSTREAM_CX_HTTP1_TOTAL] = {"downstream_cx_http1_total", STAT_COUNTER},
    [HS_DOWNSTREAM_CX_HTTP1_ACTIVE] = {"downstream_cx_http1_active", STAT_GAUGE},
    [HS_DOWNSTREAM_CX_DESTROY] = {"downstream_cx_destroy", STAT_COUNTER},
    [HS_DOWNSTREAM_CX_PROTOCOL_ERROR] = {"downstream_cx_protocol_error", STAT_COUNTER},
    [HS_DOWNSTREAM_CX_RX_BYTES_TOTAL] = {"downstream_cx_rx_bytes_total", STAT_COUNTER},
    [HS_DOWNSTREAM_CX_TX_BYTES_TOTAL] = {"downstream_cx_tx_bytes_total", STAT_COUNTER},
    [HS_DOWNSTREAM_CX_UPGRADES_TOTAL] = {"downstream_cx_upgrades_total", STAT_COUNTER},
    [HS_DOWNSTREAM_CX_UPGRADES_ACTIVE] = {"downstream_cx_upgrades_active", STAT_GAUGE},
    [HS_DOWNSTREAM_CX_IDLE_TIMEOUT] = {"downstream_cx_idle_timeout", STAT_COUNTER},
    [HS_DOWNSTREAM_CX_DRAIN_CLOSE] = {"downstream_cx_drain_close", STAT_COUNTER},
    [HS_DOWNSTREAM_CX_MAX_DURATION_REACHED] = {"downstream_cx_max_duration_reached", STAT_COUNTER},
    [HS_DOWNSTREAM_CX_MAX_REQUESTS_REACHED] = {"downstream_cx_max_requests_reached", STAT_COUNTER},
    [HS_DOWNSTREAM_RQ_TOTAL] = {"downstream_rq_total", STAT_COUNTER},
    [HS_DOWNSTREAM_RQ_HTTP1_TOTAL] = {"downstream_rq_http1_total", STAT_COUNTER},
    [HS_DOWNSTREAM_RQ_ACTIVE] = {"downstream_rq_active", STAT_GAUGE},
    [HS_DOWNSTREAM_RQ_1XX] = {"downstream_rq_1xx", STAT_COUNTER},
    [HS_DOWNSTREAM_RQ_2XX] = {"downstream_rq_2xx", STAT_COUNTER},
    [HS_DOWNSTREAM_RQ_3XX] = {"downstream_rq_3xx", STAT_COUNTER},
    [HS_DOWNSTREAM_RQ_4XX] = {"downstream_rq_4xx", STAT_COUNTER},
    [HS_DOWNSTREAM_RQ_5XX] = {"downstream_rq_5xx", STAT_COUNTER},
    [HS_DOWNSTREAM_RQ_COMPLETED] = {"downstream_rq_completed", STAT_COUNTER},
    [HS_DOWNSTREAM_RQ_TIMEOUT] = {"downstream_rq_timeout", STAT_COUNTER},
    [HS_DOWNSTREAM_RQ_HEADER_TIMEOUT] = {"downstream_rq_header_timeout", STAT_COUNTER},
    [HS_DOWNSTREAM_RQ_IDLE_TIMEOUT] = {"downstream_rq_idle_timeout", STAT_COUNTER},
    [HS_DOWNSTREAM_RQ_RX_RESET] = {"downstream_rq_rx_reset", STAT_COUNTER},
    [HS_DOWNSTREAM_RQ_TX_RESET] = {"downstream_rq_tx_reset", STAT_COUNTER},
    [HS_DOWNSTREAM_RQ_TOO_LARGE] = {"downstream_rq_too_large", STAT_COUNTER},
    [HS_RQ_DIRECT_RESPONSE] = {"rq_direct_response", STAT_COUNTER},
    [HS_RQ_REDIRECT] = {"rq_redirect", STAT_COUNTER},
    [HS_NO_ROUTE] = {"no_route", STAT_COUNTER},
    [HS_NO_CLUSTER] = {"no_cluster", STAT_COUNTER},
    [HS_RQ_TOTAL] = {"rq_total", STAT_COUNTER},
    [HS_DOWNSTREAM_CX_HTTP2_TOTAL] = {"downstream_cx_http2_total", STAT_COUNTER},
    [HS_DOWNSTREAM_CX_HTTP2_ACTIVE] = {"downstream_cx_http2_active", STAT_GAUGE},
    [HS_DOWNSTREAM_RQ_HTTP2_TOTAL] = {"downstream_rq_http2_total", STAT_COUNTER},
};

static const struct stat_def http2_stat_defs[H2S_COUNT] = {
    [H2S_RX_RESET] = {"rx_reset", STAT_COUNTER},
    [H2S_TX_RESET] = {"tx_reset", STAT_COUNTER},
    [H2S_HEADER_OVERFLOW] = {"header_overflow", STAT_COUNTER},
    [H2S_TRAILERS] = {"trailers", STAT_COUNTER},
    [H2S_GOAWAY_SENT] = {"goaway_sent", STAT_COUNTER},
    [H2S_STREAMS_ACTIVE] = {"streams_active", STAT_GAUGE},
    [H2S_OUTBOUND_FLOOD] = {"outbound_flood", STAT_COUNTER},
    [H2S_OUTBOUND_CONTROL_FLOOD] = {"outbound_control_flood", STAT_COUNTER},
    [H2S_INBOUND_EMPTY_FRAMES_FLOOD] = {"inbound_empty_frames_flood", STAT_COUNTER},
    [H2S_INBOUND_PRIORITY_FRAMES_FLOOD] = {"inbound_priority_frames_flood", STAT_COUNTER},
    [H2S_INBOUND_WINDOW_UPDATE_FRAMES_FLOOD] = {"inbound_window_update_frames_flood", STAT_COUNTER},
    [H2S_RX_MESSAGING_ERROR] = {"rx_messaging_error", STAT_COUNTER},
    [H2S_TOO_MANY_HEADER_FRAMES] = {"too_many_header_frames", STAT_COUNTER},
    [H2S_STREAM_REFUSED_ERRORS] = {"stream_refused_errors", STAT_COUNTER},
    [H2S_DROPPED_HEADERS_WITH_UNDERSCORES] = {"dropped_headers_with_underscores", STAT_COUNTER},
    [H2S_PENDING_SEND_BYTES] = {"pending_send_bytes", STAT_GAUGE},
    [H2S_TX_FLUSH_TIMEOUT] = {"tx_flush_timeout", STAT_COUNTER},
    [H2S_KEEPALIVE_TIMEOUT] = {"keepalive_timeout", STAT_COUNTER},
};
const struct stat_schema http2_stat_schema = {"http2", http2_stat_defs, H2S_COUNT, NULL};

void h2_options_defaults(struct h2_options *o)
{
    *o = (struct h2_options){
        .hpack_table_size = 4096,
        .max_concurrent_streams = 2147483647u,
        .initial_stream_window_size = 268435456u,
        .initial_connection_window_size = 268435456u,
        .max_outbound_frames = 10000,
        .max_outbound_control_frames = 1000,
        .max_consecutive_inbound_frames_with_empty_payload = 1,
        .max_inbound_priority_frames_per_stream = 100,
        .max_inbound_window_update_frames_per_data_frame_sent = 10,
    };
}
const struct stat_schema http_stat_schema = {"http", http_stat_defs, HS_COUNT, NULL};

static const struct stat_def tcp_stat_defs[TS_COUNT] = {
    [TS_DOWNSTREAM_CX_TOTAL] = {"downstream_cx_total", STAT_COUNTER},
    [TS_DOWNSTREAM_CX_RX_BYTES_TOTAL] = {"downstream_cx_rx_bytes_total", STAT_COUNTER},
    [TS_DOWNSTREAM_CX_TX_BYTES_TOTAL] = {"downstream_cx_tx_bytes_total", STAT_COUNTER},
    [TS_UPSTREAM_FLUSH_TOTAL] = {"upstream_flush_total", STAT_COUNTER},
    [TS_IDLE_TIMEOUT] = {"idle_timeout", STAT_COUNTER},
    [TS_DOWNSTREAM_CX_NO_ROUTE] = {"downstream_cx_no_route", STAT_COUNTER},
};
const struct stat_schema tcp_stat_schema = {"tcp", tcp_stat_defs, TS_COUNT, NULL};

/* --- error reporting with a field path --- */

struct ctx {
    char path[512];
    char *err;
    size_t errlen;
    struct snapshot *snap;
    const Envoy__Config__Bootstrap__V3__Bootstrap__StaticResources *sr;  /* for secrets by name */
    const struct ProtobufCMessage *const *sds;  /* Secrets received over ADS (snapshot_build_sds) */
    size_t n_sds;
    bool sds_on;                   /* an ADS stream can deliver secrets: missing ones are awaited */
};

static int fail(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct ctx *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s: %s", c->path, msg);
    return -1;
}

/* Appends a path element; returns the old length so the caller can pop it. */
static size_t push(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t push(struct ctx *c, const char *fmt, ...)
{
    size_t old = strlen(c->path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->path + old, sizeof c->path - old, fmt, ap);
    va_end(ap);
    return old;
}
static void pop(struct ctx *c, size_t old) { c->path[old] = '\0'; }

static uint64_t duration_ms(const Google__Protobuf__Duration *d, uint64_t def)
{
    if (!d)
        return def;
    return (uint64_t)d->seconds * 1000u + (uint64_t)d->nanos / 1000000u;
}

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

/* --- addresses --- */

static int parse_ip_port(struct ctx *c, const char *ip, uint32_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (port > 65535)
        return fail(c, "port %u out of range", port);
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        *len = sizeof *in;
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
        return 0;
    }
    return fail(c, "'%s' is not an IP address", ip);
}

static int socket_address(struct ctx *c, const Address *a, struct sockaddr_storage *ss, socklen_t *len)
{
    if (!a || a->address_case != ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS)
        return fail(c, "a socket_address is required");
    const Envoy__Config__Core__V3__SocketAddress *sa = a->socket_address;
    size_t old = push(c, ".socket_address");
    int r = parse_ip_port(c, sa->address ? sa->address : "", sa->port_value, ss, len);
    pop(c, old);
    return r;
}

static int cidr_list(struct ctx *c, const char *field, CidrRange **in, size_t n, struct cidr **out, size_t *nout)
{
    *out = calloc(n ? n : 1, sizeof **out);
    *nout = n;
    for (size_t i = 0; i < n; i++) {
        size_t old = push(c, ".%s[%zu]", field, i);
        socklen_t len;
        if (parse_ip_port(c, in[i]->address_prefix ? in[i]->address_prefix : "", 0, &(*out)[i].addr, &len) < 0)
            return -1;
        uint32_t max = (*out)[i].addr.ss_family == AF_INET ? 32 : 128;
        (*out)[i].prefix_len = in[i]->prefix_len ? in[i]->prefix_len->value : 0;
        if ((*out)[i].prefix_len > max)
            return fail(c, "prefix_len %u is longer than %u", (*out)[i].prefix_len, max);
        pop(c, old);
    }
    return 0;
}

/* --- access logs --- */

static int build_access_logs(struct ctx *c, AccessLog **logs, size_t n, struct access_log ***out, size_t *nout)
{
    *out = calloc(n ? n : 1, sizeof **out);
    *nout = 0;
    for (size_t i = 0; i < n; i++) {
        size_t old = push(c, ".access_log[%zu]", i);
        const AccessLog *al = logs[i];
        if (!al->typed_config)
            return fail(c, "typed_config is required");
        struct pbmap_error pe;
        const char *type = al->typed_config->type_url ? strrchr(al->typed_config->type_url, '/') : NULL;
        type = type ? type + 1 : (al->typed_config->type_url ? al->typed_config->type_url : "");
        const char *path = NULL, *format = NULL;
        ProtobufCMessage *m = NULL;
        const Envoy__Config__Core__V3__SubstitutionFormatString *sfs = NULL;
        if (strcmp(type, "envoy.extensions.access_loggers.file.v3.FileAccessLog") == 0) {
            m = pbmap_unpack_any(&al->typed_config->base, &envoy__extensions__access_loggers__file__v3__file_access_log__descriptor, &pe);
            if (!m)
                return fail(c, "typed_config: %s", pe.msg);
            Envoy__Extensions__AccessLoggers__File__V3__FileAccessLog *f = (void *)m;
            path = f->path;
            if (f->access_log_format_case == ENVOY__EXTENSIONS__ACCESS_LOGGERS__FILE__V3__FILE_ACCESS_LOG__ACCESS_LOG_FORMAT_FORMAT)
                format = f->format;
            else if (f->access_log_format_case == ENVOY__EXTENSIONS__ACCESS_LOGGERS__FILE__V3__FILE_ACCESS_LOG__ACCESS_LOG_FORMAT_LOG_FORMAT)
                sfs = f->log_format;
            if (!path || !*path) {
                protobuf_c_message_free_unpacked(m, NULL);
                return fail(c, "typed_config.path: a path is required");
            }
        } else if (strcmp(type, "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog") == 0 ||
                   strcmp(type, "envoy.extensions.access_loggers.stream.v3.StderrAccessLog") == 0) {
            bool out = type[strlen(type) - 12] == 'o'; /* "StdoutAccessLog" vs "StderrAccessLog" */
            m = pbmap_unpack_any(&al->typed_config->base, out ? &envoy__extensions__access_loggers__stream__v3__stdout_access_log__descriptor
                                                               : &envoy__extensions__access_loggers__stream__v3__stderr_access_log__descriptor, &pe);
            if (!m)
                return fail(c, "typed_config: %s", pe.msg);
            path = out ? "/dev/stdout" : "/dev/stderr";
            Envoy__Extensions__AccessLoggers__Stream__V3__StdoutAccessLog *so = (void *)m;
            if (out && so->access_log_format_case == ENVOY__EXTENSIONS__ACCESS_LOGGERS__STREAM__V3__STDOUT_ACCESS_LOG__ACCESS_LOG_FORMAT_LOG_FORMAT)
                sfs = so->log_format;
        } else {
            return fail(c, "unsupported access logger type '%s'", type);
        }
        if (sfs) {
            if (sfs->format_case == ENVOY__CONFIG__CORE__V3__SUBSTITUTION_FORMAT_STRING__FORMAT_TEXT_FORMAT)
                format = sfs->text_format;
            else if (sfs->format_case == ENVOY__CONFIG__CORE__V3__SUBSTITUTION_FORMAT_STRING__FORMAT_TEXT_FORMAT_SOURCE &&
                     sfs->text_format_source &&
                     sfs->text_format_source->specifier_case == ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_STRING)
                format = sfs->text_format_source->inline_string;
            else if (sfs->format_case != ENVOY__CONFIG__CORE__V3__SUBSTITUTION_FORMAT_STRING__FORMAT__NOT_SET) {
                protobuf_c_message_free_unpacked(m, NULL);
                return fail(c, "typed_config.log_format: only text_format and text_format_source.inline_string are supported");
            }
        }
        char aerr[256];
        struct access_log *log = access_log_new(path, format && *format ? format : NULL, aerr, sizeof aerr);
        protobuf_c_message_free_unpacked(m, NULL);
        if (!log)
            return fail(c, "%s", aerr);
        (*out)[(*nout)++] = log;
        pop(c, old);
    }
    return 0;
}

/* --- clusters --- */

static int lookup_cluster(void *arg, const char *name)
{
    return snapshot_cluster_index(arg, name);
}

static int add_host(struct ctx *c, struct host **hosts, size_t *n, size_t *cap, const struct sockaddr_storage *ss,
                    socklen_t len, uint32_t weight, uint32_t priority, bool healthy, const char *hostname)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 4;
        struct host *nh = realloc(*hosts, *cap * sizeof *nh);
        if (!nh)
            return fail(c, "out of memory");
        *hosts = nh;
    }
    struct host *h = &(*hosts)[(*n)++];
    memset(h, 0, sizeof *h);
    h->addr = *ss;
    h->addrlen = len;
    sockaddr_format(ss, h->addr_str, sizeof h->addr_str);
    h->weight = weight ? weight : 1;
    h->priority = priority;
    h->healthy = healthy;
    h->hostname = xstrdup(hostname);
    return 0;
}

/* Frees a host array still being built (an error path of build_cluster), hostnames included. */
static void free_hosts(struct host *hosts, size_t n)
{
    for (size_t i = 0; hosts && i < n; i++)
        free(hosts[i].hostname);
    free(hosts);
}

/* The load-balancing table for hosts[0..n): health is EDS health plus the hosts' active health
 * check and outlier state (host_healthy_for_lb). *panic: some level is in panic mode. */
static struct lb_table *host_set_lb_build(const struct host *hosts, size_t n, const struct lb_config *lbc, bool *panic,
                                          char *err, size_t errlen)
{
    struct lb_host_info *info = calloc(n ? n : 1, sizeof *info);
    if (!info)
        return NULL;
    for (size_t i = 0; i < n; i++)
        info[i] = (struct lb_host_info){hosts[i].addr_str, strlen(hosts[i].addr_str), hosts[i].weight,
                                        hosts[i].priority, host_healthy_for_lb(&hosts[i]),
                                        hosts[i].hh ? hosts[i].hh->healthy_since_ms : 0};
    struct lb_table *t = lb_table_build(lbc, info, n, err, errlen);
    free(info);
    *panic = false;
    struct lb_level_info li;
    for (size_t i = 0; t && i < lb_table_levels(t); i++)
        if (lb_table_level(t, i, &li) == 0 && li.panic)
            *panic = true;
    return t;
}

/* Main thread: attaches hs's hosts to their health records and, when one of them is
 * unhealthy by its record or slow start needs the records' times, rebuilds the table (hs is
 * not published yet). */
static void host_set_attach_health(struct cluster *c, struct host_set *hs)
{
    bool unhealthy = cluster_health_attach(c, hs);
    if (!hs->n || !(unhealthy || (c->lbc && c->lbc->slow_start_window_ms)))
        return;
    char err[256];
    bool panic;
    struct lb_table *t = host_set_lb_build(hs->hosts, hs->n, c->lbc, &panic, err, sizeof err);
    if (!t)
        return; /* out of memory: keep the table that ignores health */
    lb_table_free(hs->lb);
    hs->lb = t;
    hs->panic = panic;
}

static size_t count_lb_healthy(const struct host_set *hs)
{
    size_t healthy = 0;
    for (size_t i = 0; i < hs->n; i++)
        healthy += host_healthy_for_lb(&hs->hosts[i]);
    return healthy;
}

struct host_set *host_set_new(struct host *hosts, size_t n, const struct lb_config *lbc, char *err, size_t errlen)
{
    struct host_set *hs = calloc(1, sizeof *hs);
    if (!hs)
        return NULL;
    atomic_init(&hs->refs, 1);
    hs->hosts = hosts;
    hs->n = n;
    if (n) {
        hs->lb = host_set_lb_build(hosts, n, lbc, &hs->panic, err, errlen);
        if (!hs->lb) {
            free(hs);
            return NULL;
        }
    }
    return hs;
}

/* A DNS cluster's endpoint given as an IP literal becomes a host at once (no lookup happens).
 * Names are never resolved here: building a snapshot must not block (an unreachable resolver
 * stalls for seconds), so src/proxy/dns.c resolves them with c-ares after the snapshot is
 * published, or carries the previous snapshot's answers over. Returns 1 when name was a
 * literal, 0 when it is a name to resolve, -1 (error set) when out of memory. */
static int literal_host(struct ctx *c, const char *name, uint32_t port, int family, struct host **hosts, size_t *n,
                        size_t *cap, uint32_t weight, uint32_t priority)
{
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    if (getaddrinfo(name, portstr, &hints, &res) != 0 || !res)
        return 0;
    struct sockaddr_storage ss;
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    int r = add_host(c, hosts, n, cap, &ss, res->ai_addrlen, weight, priority, true, name);
    freeaddrinfo(res);
    return r < 0 ? -1 : 1;
}

/* --- transport sockets --- */

/* A reference with sds_config takes the secret received over ADS (else a static one of that
 * name); without an ADS stream it must be static. */
static const struct ProtobufCMessage *find_secret(void *arg, const char *name, bool sds, bool *pending)
{
    const struct ctx *c = arg;
    for (size_t i = 0; sds && i < c->n_sds; i++) {
        const Envoy__Extensions__TransportSockets__Tls__V3__Secret *sec = (const void *)c->sds[i];
        if (sec->name && strcmp(sec->name, name) == 0)
            return c->sds[i];
    }
    *pending = sds && c->sds_on;
    for (size_t i = 0; c->sr && i < c->sr->n_secrets; i++)
        if (c->sr->secrets[i]->name && strcmp(c->sr->secrets[i]->name, name) == 0)
            return &c->sr->secrets[i]->base;
    return NULL;
}

/* A transport_socket: NULL *out for raw_buffer (plaintext), a TLS provider for
 * envoy.transport_sockets.tls with a Downstream/UpstreamTlsContext. */
static int build_transport_socket(struct ctx *c, const Envoy__Config__Core__V3__TransportSocket *ts, bool server,
                                  struct tls_provider **out)
{
    *out = NULL;
    if (!ts)
        return 0;
    size_t old = push(c, ".transport_socket");
    const char *name = ts->name ? ts->name : "";
    const char *t = ts->config_type_case == ENVOY__CONFIG__CORE__V3__TRANSPORT_SOCKET__CONFIG_TYPE_TYPED_CONFIG
                        ? (ts->typed_config && ts->typed_config->type_url ? strrchr(ts->typed_config->type_url, '/') : NULL)
                        : NULL;
    t = t ? t + 1 : "";
    const char *want = server ? "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
                              : "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
    if (strcmp(t, want) != 0) {
        if (strcmp(name, "envoy.transport_sockets.raw_buffer") == 0 || strcmp(name, "raw_buffer") == 0 ||
            strcmp(t, "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer") == 0) {
            pop(c, old);
            return 0;
        }
        return fail(c, "unsupported transport socket '%s' (%s); expected typed_config %s", name, *t ? t : "no typed_config", want);
    }
    struct pbmap_error pe;
    ProtobufCMessage *m = pbmap_unpack_any(&ts->typed_config->base, server
        ? &envoy__extensions__transport_sockets__tls__v3__downstream_tls_context__descriptor
        : &envoy__extensions__transport_sockets__tls__v3__upstream_tls_context__descriptor, &pe);
    if (!m)
        return fail(c, "typed_config: %s", pe.msg);
    push(c, ".typed_config");
    char terr[600];
    *out = tls_provider_new(m, server, find_secret, c, terr, sizeof terr);
    protobuf_c_message_free_unpacked(m, NULL);
    if (!*out)
        return fail(c, "%s", terr);
    pop(c, old);
    return 0;
}

static const char *type_name(const Google__Protobuf__Any *any);
typedef Envoy__Config__Core__V3__Http2ProtocolOptions H2Opts;

/* Maps Http2ProtocolOptions onto o (defaults first), checking Envoy's ranges. */
static int build_h2_options(struct ctx *c, const H2Opts *p, struct h2_options *o)
{
    h2_options_defaults(o);
    if (!p)
        return 0;
#define H2_U32(field, lo, hi)                                                                     \
    if (p->field) {                                                                               \
        if ((uint64_t)p->field->value + 1 < (uint64_t)(lo) + 1 || p->field->value > (hi)) {       \
            push(c, "." #field);                                                                  \
            return fail(c, "must be between %u and %u", (unsigned)(lo), (unsigned)(hi));          \
        }                                                                                         \
        o->field = p->field->value;                                                               \
    }
    H2_U32(hpack_table_size, 0, UINT32_MAX)
    H2_U32(max_concurrent_streams, 1, 2147483647u)
    H2_U32(initial_stream_window_size, 65535, 2147483647u)
    H2_U32(initial_connection_window_size, 65535, 2147483647u)
    H2_U32(max_outbound_frames, 1, UINT32_MAX)
    H2_U32(max_outbound_control_frames, 1, UINT32_MAX)
    H2_U32(max_consecutive_inbound_frames_with_empty_payload, 0, UINT32_MAX)
    H2_U32(max_inbound_priority_frames_per_stream, 0, UINT32_MAX)
    H2_U32(max_inbound_window_update_frames_per_data_frame_sent, 1, UINT32_MAX)
#undef H2_U32
    o->allow_connect = p->allow_connect;
    o->override_stream_error_on_invalid_http_message =
        p->override_stream_error_on_invalid_http_message ? p->override_stream_error_on_invalid_http_message->value
                                                         : p->stream_error_on_invalid_http_messaging;
    return 0;
}

typedef Envoy__Extensions__Upstreams__Http__V3__HttpProtocolOptions UpHpo;

/* The protocol a cluster speaks: typed_extension_protocol_options
 * "envoy.extensions.upstreams.http.v3.HttpProtocolOptions", else the deprecated
 * http2_protocol_options, else HTTP/1.1. auto_config is UPSTREAM_AUTO: ALPN decides per
 * connection; without TLS it becomes HTTP/1.1 once the transport socket is known. */
static int build_upstream_protocol(struct ctx *c, const Cluster *pc, struct cluster *cl)
{
    cl->protocol = UPSTREAM_HTTP1;
    h2_options_defaults(&cl->h2);
    if (pc->http2_protocol_options) {
        size_t old = push(c, ".http2_protocol_options");
        if (build_h2_options(c, pc->http2_protocol_options, &cl->h2) < 0)
            return -1;
        pop(c, old);
        cl->protocol = UPSTREAM_HTTP2;
    }
    for (size_t i = 0; i < pc->n_typed_extension_protocol_options; i++) {
        const Envoy__Config__Cluster__V3__Cluster__TypedExtensionProtocolOptionsEntry *e =
            pc->typed_extension_protocol_options[i];
        size_t old = push(c, ".typed_extension_protocol_options[\"%s\"]", e->key ? e->key : "");
        const char *t = type_name(e->value);
        if (strcmp(t, "envoy.extensions.upstreams.http.v3.HttpProtocolOptions") != 0)
            return fail(c, "unsupported protocol options type '%s'", *t ? t : "(none)");
        struct pbmap_error pe;
        UpHpo *h = (UpHpo *)pbmap_unpack_any(&e->value->base,
                                              &envoy__extensions__upstreams__http__v3__http_protocol_options__descriptor, &pe);
        if (!h)
            return fail(c, "%s", pe.msg);
        int r = 0;
        if (h->common_http_protocol_options && h->common_http_protocol_options->max_requests_per_connection)
            cl->max_requests_per_connection = h->common_http_protocol_options->max_requests_per_connection->value;
        if (h->common_http_protocol_options && h->common_http_protocol_options->idle_timeout)
            cl->idle_timeout_ms = duration_ms(h->common_http_protocol_options->idle_timeout, cl->idle_timeout_ms);
        if (h->common_http_protocol_options)
            cl->max_connection_duration_ms = duration_ms(h->common_http_protocol_options->max_connection_duration, 0);
        switch (h->upstream_protocol_options_case) {
        case ENVOY__EXTENSIONS__UPSTREAMS__HTTP__V3__HTTP_PROTOCOL_OPTIONS__UPSTREAM_PROTOCOL_OPTIONS_EXPLICIT_HTTP_CONFIG:
            if (h->explicit_http_config->protocol_config_case ==
                ENVOY__EXTENSIONS__UPSTREAMS__HTTP__V3__HTTP_PROTOCOL_OPTIONS__EXPLICIT_HTTP_CONFIG__PROTOCOL_CONFIG_HTTP2_PROTOCOL_OPTIONS) {
                push(c, ".explicit_http_config.http2_protocol_options");
                r = build_h2_options(c, h->explicit_http_config->http2_protocol_options, &cl->h2);
                cl->protocol = UPSTREAM_HTTP2;
            } else {
                cl->protocol = UPSTREAM_HTTP1;
            }
            break;
        case ENVOY__EXTENSIONS__UPSTREAMS__HTTP__V3__HTTP_PROTOCOL_OPTIONS__UPSTREAM_PROTOCOL_OPTIONS_USE_DOWNSTREAM_PROTOCOL_CONFIG:
            push(c, ".use_downstream_protocol_config.http2_protocol_options");
            r = build_h2_options(c, h->use_downstream_protocol_config->http2_protocol_options, &cl->h2);
            cl->protocol = UPSTREAM_DOWNSTREAM;
            break;
        case ENVOY__EXTENSIONS__UPSTREAMS__HTTP__V3__HTTP_PROTOCOL_OPTIONS__UPSTREAM_PROTOCOL_OPTIONS_AUTO_CONFIG:
            push(c, ".auto_config.http2_protocol_options");
            r = build_h2_options(c, h->auto_config->http2_protocol_options, &cl->h2);
            cl->protocol = UPSTREAM_AUTO; /* ALPN decides; without TLS HTTP/1.1 (see below) */
            break;
        default:
            r = fail(c, "one of explicit_http_config, use_downstream_protocol_config, auto_config is required");
            break;
        }
        protobuf_c_message_free_unpacked(&h->base, NULL);
        if (r < 0)
            return -1;
        pop(c, old);
    }
    char prefix[600];
    snprintf(prefix, sizeof prefix, "cluster.%s.http2.", pc->alt_stat_name && *pc->alt_stat_name ? pc->alt_stat_name : cl->name);
    cl->h2_stats = stats_block(prefix, &http2_stat_schema);
    return 0;
}

static int build_cluster(struct ctx *c, const Cluster *pc, struct cluster *cl)
{
    cl->name = xstrdup(pc->name);
    if (!cl->name || !*cl->name)
        return fail(c, "name is required");
    cl->connect_timeout_ms = duration_ms(pc->connect_timeout, 5000);
    /* Istio's inbound clusters bind 127.0.0.6, the source weft-init's rules let through. */
    if (pc->upstream_bind_config && pc->upstream_bind_config->source_address) {
        const Envoy__Config__Core__V3__SocketAddress *sa = pc->upstream_bind_config->source_address;
        size_t old = push(c, ".upstream_bind_config.source_address");
        if (parse_ip_port(c, sa->address ? sa->address : "", sa->port_value, &cl->bind_addr, &cl->bind_len) < 0)
            return -1;
        pop(c, old);
        cl->bind_freebind = pc->upstream_bind_config->freebind && pc->upstream_bind_config->freebind->value;
    }
    cl->max_requests_per_connection = pc->max_requests_per_connection ? pc->max_requests_per_connection->value : 0;
    cl->idle_timeout_ms = 3600 * 1000;
    if (build_upstream_protocol(c, pc, cl) < 0)
        return -1;
    switch (pc->type) {
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__STATIC: cl->type = CLUSTER_STATIC; break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__STRICT_DNS: cl->type = CLUSTER_STRICT_DNS; break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__LOGICAL_DNS: cl->type = CLUSTER_LOGICAL_DNS; break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__ORIGINAL_DST: cl->type = CLUSTER_ORIGINAL_DST; break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__EDS: cl->type = CLUSTER_EDS; break;
    default: return fail(c, "type: unsupported discovery type %d", pc->type);
    }
    /* EDS: the xDS client puts the ClusterLoadAssignment in load_assignment (xds_compose.c);
     * its hosts are then built as a STATIC cluster's. */

    struct lb_config lbc;
    lb_config_defaults(&lbc, LB_ROUND_ROBIN);
    switch (pc->lb_policy) {
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__ROUND_ROBIN: lbc.policy = LB_ROUND_ROBIN; break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__LEAST_REQUEST: lbc.policy = LB_LEAST_REQUEST; break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__RANDOM: lbc.policy = LB_RANDOM; break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__RING_HASH: lbc.policy = LB_RING_HASH; break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__MAGLEV: lbc.policy = LB_MAGLEV; break;
    case ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__CLUSTER_PROVIDED:
        if (cl->type != CLUSTER_ORIGINAL_DST)
            return fail(c, "lb_policy: CLUSTER_PROVIDED is only for ORIGINAL_DST clusters");
        break;
    default: return fail(c, "lb_policy: unsupported policy %d", pc->lb_policy);
    }
    enum lb_policy policy = lbc.policy;
    lb_config_defaults(&lbc, policy);
    if (cl->type == CLUSTER_ORIGINAL_DST && pc->load_assignment && pc->load_assignment->n_endpoints)
        return fail(c, "load_assignment: ORIGINAL_DST clusters take no endpoints");
    if (pc->lb_config_case == ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_CONFIG_RING_HASH_LB_CONFIG && pc->ring_hash_lb_config) {
        if (pc->ring_hash_lb_config->minimum_ring_size)
            lbc.ring_min_size = pc->ring_hash_lb_config->minimum_ring_size->value;
        if (pc->ring_hash_lb_config->maximum_ring_size)
            lbc.ring_max_size = pc->ring_hash_lb_config->maximum_ring_size->value;
    }
    if (pc->lb_config_case == ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_CONFIG_MAGLEV_LB_CONFIG && pc->maglev_lb_config &&
        pc->maglev_lb_config->table_size)
        lbc.maglev_table_size = pc->maglev_lb_config->table_size->value;
    if (pc->lb_config_case == ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_CONFIG_LEAST_REQUEST_LB_CONFIG &&
        pc->least_request_lb_config && pc->least_request_lb_config->choice_count)
        lbc.choice_count = pc->least_request_lb_config->choice_count->value;
    const Envoy__Config__Cluster__V3__Cluster__SlowStartConfig *ss = NULL;
    if (pc->lb_config_case == ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_CONFIG_ROUND_ROBIN_LB_CONFIG &&
        pc->round_robin_lb_config)
        ss = pc->round_robin_lb_config->slow_start_config;
    if (pc->lb_config_case == ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_CONFIG_LEAST_REQUEST_LB_CONFIG &&
        pc->least_request_lb_config)
        ss = pc->least_request_lb_config->slow_start_config;
    if (ss) {
        lbc.slow_start_window_ms = duration_ms(ss->slow_start_window, 0);
        if (ss->aggression)
            lbc.slow_start_aggression = ss->aggression->default_value;
        if (ss->min_weight_percent)
            lbc.slow_start_min_weight = ss->min_weight_percent->value / 100.0;
    }
    if (pc->common_lb_config && pc->common_lb_config->healthy_panic_threshold)
        lbc.healthy_panic_threshold_pct = (uint32_t)pc->common_lb_config->healthy_panic_threshold->value;

    struct host *hosts = NULL;
    size_t n = 0, cap = 0;
    const Envoy__Config__Endpoint__V3__ClusterLoadAssignment *la = pc->load_assignment;
    if (la && la->policy && la->policy->overprovisioning_factor)
        lbc.overprovisioning_factor = la->policy->overprovisioning_factor->value / 100.0;
    int family = AF_UNSPEC;
    if (pc->dns_lookup_family == ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DNS_LOOKUP_FAMILY__V4_ONLY)
        family = AF_INET;
    else if (pc->dns_lookup_family == ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DNS_LOOKUP_FAMILY__V6_ONLY)
        family = AF_INET6;
    else if (pc->dns_lookup_family == ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DNS_LOOKUP_FAMILY__AUTO ||
             pc->dns_lookup_family == ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DNS_LOOKUP_FAMILY__V4_PREFERRED)
        family = AF_UNSPEC;
    for (size_t i = 0; la && i < la->n_endpoints; i++) {
        const Envoy__Config__Endpoint__V3__LocalityLbEndpoints *lle = la->endpoints[i];
        for (size_t j = 0; j < lle->n_lb_endpoints; j++) {
            const Envoy__Config__Endpoint__V3__LbEndpoint *le = lle->lb_endpoints[j];
            size_t old = push(c, ".load_assignment.endpoints[%zu].lb_endpoints[%zu]", i, j);
            if (le->host_identifier_case != ENVOY__CONFIG__ENDPOINT__V3__LB_ENDPOINT__HOST_IDENTIFIER_ENDPOINT || !le->endpoint)
                return free_hosts(hosts, n), fail(c, "endpoint is required");
            const Address *a = le->endpoint->address;
            if (!a || a->address_case != ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS)
                return free_hosts(hosts, n), fail(c, "endpoint.address.socket_address is required");
            uint32_t weight = le->load_balancing_weight ? le->load_balancing_weight->value : 1;
            if (weight == 0)
                return free_hosts(hosts, n), fail(c, "load_balancing_weight must be at least 1");
            /* Envoy: UNKNOWN and HEALTHY count as healthy; UNHEALTHY, DRAINING, TIMEOUT do not. */
            int hsv = le->health_status;
            bool healthy = hsv == 0 || hsv == 1 || hsv == 5;
            const char *ip = a->socket_address->address ? a->socket_address->address : "";
            uint32_t port = a->socket_address->port_value;
            if (cl->type == CLUSTER_STATIC || cl->type == CLUSTER_EDS) {
                struct sockaddr_storage ss;
                socklen_t len;
                push(c, ".endpoint.address");
                if (socket_address(c, a, &ss, &len) < 0)
                    return free_hosts(hosts, n), -1;
                if (add_host(c, &hosts, &n, &cap, &ss, len, weight, lle->priority, healthy, le->endpoint->hostname) < 0)
                    return free_hosts(hosts, n), -1;
            } else {
                struct dns_target *nd = realloc(cl->dns, (cl->n_dns + 1) * sizeof *nd);
                if (!nd)
                    return free_hosts(hosts, n), fail(c, "out of memory");
                cl->dns = nd;
                cl->dns[cl->n_dns++] = (struct dns_target){xstrdup(ip), (uint16_t)port, weight, lle->priority};
                if (!(cl->type == CLUSTER_LOGICAL_DNS && n > 0) &&
                    literal_host(c, ip, port, family, &hosts, &n, &cap, weight, lle->priority) < 0)
                    return free_hosts(hosts, n), -1;
            }
            pop(c, old);
        }
    }
    cl->dns_family = family;
    cl->dns_refresh_ms = duration_ms(pc->dns_refresh_rate, 5000);
    cl->lbc = malloc(sizeof *cl->lbc);
    if (!cl->lbc)
        return free_hosts(hosts, n), fail(c, "out of memory");
    *cl->lbc = lbc;
    char lerr[256];
    struct host_set *hs = host_set_new(hosts, n, &lbc, lerr, sizeof lerr);
    if (!hs) {
        for (size_t i = 0; i < n; i++)
            free(hosts[i].hostname);
        free(hosts);
        return fail(c, "%s", lerr);
    }
    atomic_init(&cl->hosts, hs);
    char prefix[600];
    snprintf(prefix, sizeof prefix, "cluster.%s.", pc->alt_stat_name && *pc->alt_stat_name ? pc->alt_stat_name : cl->name);
    cl->stats = stats_block(prefix, &cluster_stat_schema);
    if (pc->n_transport_socket_matches) {
        push(c, ".transport_socket_matches");
        return fail(c, "transport_socket_matches is not supported yet; use transport_socket");
    }
    if (build_transport_socket(c, pc->transport_socket, false, &cl->tls) < 0)
        return -1;
    if (cl->protocol == UPSTREAM_AUTO && !cl->tls)
        cl->protocol = UPSTREAM_HTTP1; /* auto_config without TLS: no ALPN, HTTP/1.1 (as Envoy) */
    if (cl->tls) {
        snprintf(prefix, sizeof prefix, "cluster.%s.ssl.", pc->alt_stat_name && *pc->alt_stat_name ? pc->alt_stat_name : cl->name);
        cl->ssl_stats = stats_block(prefix, &ssl_stat_schema);
    }
    const char *stat_name = pc->alt_stat_name && *pc->alt_stat_name ? pc->alt_stat_name : cl->name;
    if (resilience_build(pc, cl, stat_name, lerr, sizeof lerr) < 0)
        return fail(c, "%s", lerr);
    host_set_attach_health(cl, hs);
    size_t healthy = count_lb_healthy(hs);
    /* Membership gauges belong to the main thread's slot: reset then set. */
    unsigned main_slot = stats_slots() - 1;
    stats_add(cl->stats, main_slot, CS_MEMBERSHIP_TOTAL, (int64_t)n - stats_value(cl->stats, CS_MEMBERSHIP_TOTAL));
    stats_add(cl->stats, main_slot, CS_MEMBERSHIP_HEALTHY, (int64_t)healthy - stats_value(cl->stats, CS_MEMBERSHIP_HEALTHY));
    return 0;
}

/* --- network filters --- */

static const char *type_name(const Google__Protobuf__Any *any)
{
    if (!any || !any->type_url)
        return "";
    const char *slash = strrchr(any->type_url, '/');
    return slash ? slash + 1 : any->type_url;
}

/* The CORS filter every Istio sidecar lists is accepted while it does nothing (it acts only on
 * per-route CORS policies, which the route builder refuses until they are implemented).
 * Returns 0 for it, 1 for anything else. */
static int inert_http_filter(const char *t)
{
    return strcmp(t, "envoy.extensions.filters.http.cors.v3.Cors") == 0 ? 0 : 1;
}

static int build_hcm(struct ctx *c, const Hcm *h, struct hcm_config *hc)
{
    hc->stat_prefix = xstrdup(h->stat_prefix);
    if (!hc->stat_prefix || !*hc->stat_prefix)
        return fail(c, "stat_prefix is required");
    char prefix[600];
    snprintf(prefix, sizeof prefix, "http.%s.", hc->stat_prefix);
    hc->stats = stats_block(prefix, &http_stat_schema);
    hc->max_request_headers_bytes = (h->max_request_headers_kb ? h->max_request_headers_kb->value : 60) * 1024;
    if (hc->max_request_headers_bytes == 0 || hc->max_request_headers_bytes > 64 * 1024) {
        push(c, ".max_request_headers_kb");
        return fail(c, "must be between 1 and 64 (Weft's limit, see docs/limits.md)");
    }
    hc->max_headers_count = 100;
    hc->idle_timeout_ms = 3600 * 1000;
    if (h->common_http_protocol_options) {
        const Envoy__Config__Core__V3__HttpProtocolOptions *po = h->common_http_protocol_options;
        if (po->max_headers_count)
            hc->max_headers_count = po->max_headers_count->value;
        if (po->idle_timeout)
            hc->idle_timeout_ms = duration_ms(po->idle_timeout, 0);
        hc->max_connection_duration_ms = duration_ms(po->max_connection_duration, 0);
        if (po->max_requests_per_connection)
            hc->max_requests_per_connection = po->max_requests_per_connection->value;
        if (hc->max_headers_count == 0 || hc->max_headers_count > 10000) {
            push(c, ".common_http_protocol_options.max_headers_count");
            return fail(c, "must be between 1 and 10000");
        }
    }
    if (hc->idle_timeout_ms == 0)
        hc->idle_timeout_ms = UINT64_MAX / 4; /* 0 disables it */
    hc->stream_idle_timeout_ms = duration_ms(h->stream_idle_timeout, 300000);
    hc->request_timeout_ms = duration_ms(h->request_timeout, 0);
    hc->drain_timeout_ms = duration_ms(h->drain_timeout, 5000);
    hc->use_remote_address = h->use_remote_address && h->use_remote_address->value;
    hc->xff_num_trusted_hops = h->xff_num_trusted_hops;
    hc->skip_xff_append = h->skip_xff_append;
    hc->generate_request_id = !h->generate_request_id || h->generate_request_id->value;
    hc->preserve_external_request_id = h->preserve_external_request_id;
    hc->always_set_request_id_in_response = h->always_set_request_id_in_response;
    hc->proxy_100_continue = h->proxy_100_continue;
    hc->forward_client_cert = h->forward_client_cert_details;
    if (hc->forward_client_cert < XFCC_SANITIZE || hc->forward_client_cert > XFCC_ALWAYS_FORWARD_ONLY) {
        push(c, ".forward_client_cert_details");
        return fail(c, "unknown value");
    }
    if (h->set_current_client_cert_details) {
        const Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager__SetCurrentClientCertDetails
            *cd = h->set_current_client_cert_details;
        hc->xfcc_details = (cd->cert ? XFCC_CERT : 0) | (cd->chain ? XFCC_CHAIN : 0) |
                           (cd->subject && cd->subject->value ? XFCC_SUBJECT : 0) | (cd->uri ? XFCC_URI : 0) |
                           (cd->dns ? XFCC_DNS : 0);
    }
    hc->server_name = xstrdup(h->server_name && *h->server_name ? h->server_name : "envoy");
    hc->server_header_transformation = h->server_header_transformation;
    for (size_t i = 0; i < h->n_upgrade_configs; i++) {
        const char *t = h->upgrade_configs[i]->upgrade_type;
        bool enabled = !h->upgrade_configs[i]->enabled || h->upgrade_configs[i]->enabled->value;
        if (t && strcasecmp(t, "websocket") == 0 && enabled)
            hc->websocket_upgrade = true;
    }
    hc->codec_type = h->codec_type;
    if (hc->codec_type == 3) {
        push(c, ".codec_type");
        return fail(c, "HTTP3 is not supported");
    }
    {
        size_t old = push(c, ".http2_protocol_options");
        if (build_h2_options(c, h->http2_protocol_options, &hc->h2) < 0)
            return -1;
        pop(c, old);
    }
    hc->h2_stats = stats_block("http2.", &http2_stat_schema);
    struct hf_spec specs[HF_MAX];
    size_t nspecs = 0;
    for (size_t i = 0; i < h->n_http_filters; i++) {
        const Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpFilter *f = h->http_filters[i];
        const char *t = f->config_type_case ==
                                ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_FILTER__CONFIG_TYPE_TYPED_CONFIG
                            ? type_name(f->typed_config)
                            : "";
        bool router = strcmp(t, "envoy.extensions.filters.http.router.v3.Router") == 0 ||
                      (!*t && f->name && strcmp(f->name, "envoy.filters.http.router") == 0);
        if (router) {
            if (i != h->n_http_filters - 1) {
                push(c, ".http_filters[%zu]", i);
                return fail(c, "the router must be the last HTTP filter");
            }
            continue;
        }
        if (f->is_optional || f->disabled)
            continue;
        size_t old_f = push(c, ".http_filters[%zu]", i);
        if (inert_http_filter(t) == 0) {
            pop(c, old_f);
            continue;
        }
        if (hf_known_type(t)) { /* fault, local_ratelimit: compiled with the routes (hfilter.h) */
            if (nspecs == HF_MAX)
                return fail(c, "at most %d HTTP filters besides the router", HF_MAX);
            specs[nspecs++] = (struct hf_spec){f->name ? f->name : "", f->typed_config};
            pop(c, old_f);
            continue;
        }
        return fail(c, "unsupported HTTP filter '%s' (%s)", f->name ? f->name : "", *t ? t : "no typed_config");
    }
    if (h->n_http_filters == 0)
        return fail(c, "http_filters: the router filter is required");
    if (h->route_specifier_case ==
        ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__ROUTE_SPECIFIER_RDS)
        return fail(c, "rds: dynamic routes need xDS, which is not supported yet");
    if (h->route_specifier_case !=
        ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__ROUTE_SPECIFIER_ROUTE_CONFIG)
        return fail(c, "route_config is required");
    char rerr[512];
    hc->routes = route_table_build_hcm(h->route_config, lookup_cluster, c->snap, hc->stat_prefix, specs, nspecs, rerr,
                                       sizeof rerr);
    if (!hc->routes) { /* rerr is "field.path: problem" inside the HCM or its route_config */
        snprintf(c->err, c->errlen, "%s%s%s", c->path, strncmp(rerr, "http_filters", 12) == 0 ? "." : ".route_config.",
                 rerr);
        return -1;
    }
    return build_access_logs(c, h->access_log, h->n_access_log, &hc->access_logs, &hc->n_access_logs);
}

static int build_tcp_proxy(struct ctx *c, const TcpProxy *t, struct tcp_proxy_config *tc)
{
    tc->stat_prefix = xstrdup(t->stat_prefix);
    if (!tc->stat_prefix || !*tc->stat_prefix)
        return fail(c, "stat_prefix is required");
    char prefix[600];
    snprintf(prefix, sizeof prefix, "tcp.%s.", tc->stat_prefix);
    tc->stats = stats_block(prefix, &tcp_stat_schema);
    tc->idle_timeout_ms = duration_ms(t->idle_timeout, 3600 * 1000);
    tc->max_connect_attempts = t->max_connect_attempts ? t->max_connect_attempts->value : 1;
    tc->cluster = -1;
    if (t->cluster_specifier_case == ENVOY__EXTENSIONS__FILTERS__NETWORK__TCP_PROXY__V3__TCP_PROXY__CLUSTER_SPECIFIER_CLUSTER) {
        tc->cluster = snapshot_cluster_index(c->snap, t->cluster);
        if (tc->cluster < 0)
            return push(c, ".cluster"), fail(c, "unknown cluster '%s'", t->cluster);
    } else if (t->cluster_specifier_case ==
               ENVOY__EXTENSIONS__FILTERS__NETWORK__TCP_PROXY__V3__TCP_PROXY__CLUSTER_SPECIFIER_WEIGHTED_CLUSTERS) {
        const Envoy__Extensions__Filters__Network__TcpProxy__V3__TcpProxy__WeightedCluster *wcl = t->weighted_clusters;
        size_t n = wcl ? wcl->n_clusters : 0;
        tc->weighted_clusters = calloc(n ? n : 1, sizeof *tc->weighted_clusters);
        tc->weights = calloc(n ? n : 1, sizeof *tc->weights);
        for (size_t i = 0; i < n; i++) {
            size_t old = push(c, ".weighted_clusters.clusters[%zu]", i);
            int idx = snapshot_cluster_index(c->snap, wcl->clusters[i]->name);
            if (idx < 0)
                return fail(c, "unknown cluster '%s'", wcl->clusters[i]->name ? wcl->clusters[i]->name : "");
            tc->weighted_clusters[i] = idx;
            tc->weights[i] = wcl->clusters[i]->weight;
            tc->total_weight += wcl->clusters[i]->weight;
            pop(c, old);
        }
        tc->n_weighted = n;
        if (n == 0 || tc->total_weight == 0)
            return fail(c, "weighted_clusters: at least one cluster with a weight is required");
    } else {
        return fail(c, "cluster or weighted_clusters is required");
    }
    return build_access_logs(c, t->access_log, t->n_access_log, &tc->access_logs, &tc->n_access_logs);
}

static int build_filter_chain(struct ctx *c, const FilterChain *pf, struct filter_chain *fc)
{
    fc->name = xstrdup(pf->name);
    const FilterChainMatch *m = pf->filter_chain_match;
    if (m) {
        size_t old = push(c, ".filter_chain_match");
        fc->match.destination_port = m->destination_port ? m->destination_port->value : 0;
        if (cidr_list(c, "prefix_ranges", m->prefix_ranges, m->n_prefix_ranges, &fc->match.prefix_ranges,
                      &fc->match.n_prefix_ranges) < 0 ||
            cidr_list(c, "source_prefix_ranges", m->source_prefix_ranges, m->n_source_prefix_ranges,
                      &fc->match.source_prefix_ranges, &fc->match.n_source_prefix_ranges) < 0)
            return -1;
        fc->match.source_ports = calloc(m->n_source_ports ? m->n_source_ports : 1, sizeof(uint32_t));
        if (m->n_source_ports)
            memcpy(fc->match.source_ports, m->source_ports, m->n_source_ports * sizeof(uint32_t));
        fc->match.n_source_ports = m->n_source_ports;
        fc->match.source_type = m->source_type;
        fc->match.transport_protocol = m->transport_protocol && *m->transport_protocol ? xstrdup(m->transport_protocol) : NULL;
        if (m->n_server_names) {
            fc->match.server_names = calloc(m->n_server_names, sizeof(char *));
            for (size_t i = 0; i < m->n_server_names; i++) {
                const char *sn = m->server_names[i] ? m->server_names[i] : "";
                if (!*sn || (strchr(sn, '*') && (sn[0] != '*' || sn[1] != '.' || strchr(sn + 1, '*')))) {
                    push(c, ".server_names[%zu]", i);
                    return fail(c, "'%s': a host name, or a wildcard '*.suffix'", sn);
                }
                char *lc = strdup(sn);
                for (char *q = lc; *q; q++)
                    *q = (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);
                fc->match.server_names[fc->match.n_server_names++] = lc;
            }
        }
        if (m->n_application_protocols) {
            fc->match.application_protocols = calloc(m->n_application_protocols, sizeof(char *));
            for (size_t i = 0; i < m->n_application_protocols; i++)
                fc->match.application_protocols[fc->match.n_application_protocols++] = xstrdup(m->application_protocols[i]);
        }
        pop(c, old);
    }
    if (build_transport_socket(c, pf->transport_socket, true, &fc->tls) < 0)
        return -1;
    fc->handshake_timeout_ms = duration_ms(pf->transport_socket_connect_timeout, 10000);
    if (pf->n_filters == 0)
        return fail(c, "filters: at least one network filter is required");
    for (size_t i = 0; i < pf->n_filters; i++) {
        const Envoy__Config__Listener__V3__Filter *f = pf->filters[i];
        size_t old = push(c, ".filters[%zu]", i);
        const char *t = type_name(f->typed_config);
        struct pbmap_error pe;
        if (strcmp(t, "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager") == 0) {
            Hcm *h = (Hcm *)pbmap_unpack_any(&f->typed_config->base,
                &envoy__extensions__filters__network__http_connection_manager__v3__http_connection_manager__descriptor, &pe);
            if (!h)
                return fail(c, "typed_config: %s", pe.msg);
            fc->kind = NF_HTTP;
            fc->hcm = calloc(1, sizeof *fc->hcm);
            push(c, ".typed_config");
            int r = build_hcm(c, h, fc->hcm);
            protobuf_c_message_free_unpacked(&h->base, NULL);
            if (r < 0)
                return -1;
        } else if (strcmp(t, "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy") == 0) {
            TcpProxy *tp = (TcpProxy *)pbmap_unpack_any(&f->typed_config->base,
                &envoy__extensions__filters__network__tcp_proxy__v3__tcp_proxy__descriptor, &pe);
            if (!tp)
                return fail(c, "typed_config: %s", pe.msg);
            fc->kind = NF_TCP_PROXY;
            fc->tcp = calloc(1, sizeof *fc->tcp);
            push(c, ".typed_config");
            int r = build_tcp_proxy(c, tp, fc->tcp);
            protobuf_c_message_free_unpacked(&tp->base, NULL);
            if (r < 0)
                return -1;
        } else if (strcmp(t, "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit") == 0 &&
                   i != pf->n_filters - 1) {
            char err[512];
            if (fc->n_netrl == NETRL_MAX)
                return fail(c, "at most %d local_ratelimit network filters", NETRL_MAX);
            if (!(fc->netrl[fc->n_netrl] = netrl_build(f->typed_config, err, sizeof err)))
                return fail(c, "%s", err);
            fc->n_netrl++;
            pop(c, old);
            continue;
        } else {
            return fail(c, "unsupported network filter '%s' (%s)", f->name ? f->name : "", *t ? t : "no typed_config");
        }
        if (i != pf->n_filters - 1)
            return fail(c, "%s must be the last network filter", fc->kind == NF_HTTP ? "http_connection_manager" : "tcp_proxy");
        pop(c, old);
    }
    if (fc->tls && fc->kind == NF_HTTP) {
        /* ALPN may only pick what the connection manager's codec_type speaks: AUTO both HTTP/2
         * and HTTP/1.x, HTTP1 only HTTP/1.x, HTTP2 only h2. */
        static const char *const any[] = {"h2", "http/1.1", "http/1.0"};
        static const char *const h2[] = {"h2"};
        if (fc->hcm->codec_type == 2)
            tls_provider_restrict_alpn(fc->tls, h2, 1);
        else if (fc->hcm->codec_type == 1)
            tls_provider_restrict_alpn(fc->tls, any + 1, 2);
        else
            tls_provider_restrict_alpn(fc->tls, any, 3);
    }
    return 0;
}

static int build_listener(struct ctx *c, const Listener *pl, struct listener_config *lc)
{
    lc->name = xstrdup(pl->name && *pl->name ? pl->name : "");
    push(c, ".address");
    size_t base = strlen(c->path) - strlen(".address");
    if (socket_address(c, pl->address, &lc->addr, &lc->addrlen) < 0)
        return -1;
    pop(c, base);
    sockaddr_format(&lc->addr, lc->addr_str, sizeof lc->addr_str);
    if (!*lc->name) {
        free(lc->name);
        lc->name = xstrdup(lc->addr_str);
    }
    lc->bind_to_port = !pl->bind_to_port || pl->bind_to_port->value;
    /* Envoy hands a connection to another listener only for Listener.use_original_dst; the
     * original_dst listener filter alone (Istio's virtualInbound) only restores the address
     * that filter_chain_match sees. */
    lc->use_original_dst = pl->use_original_dst && pl->use_original_dst->value;
    lc->restore_original_dst = lc->use_original_dst;
    for (size_t i = 0; i < pl->n_listener_filters; i++) {
        const Envoy__Config__Listener__V3__ListenerFilter *lf = pl->listener_filters[i];
        const char *t = lf->config_type_case == ENVOY__CONFIG__LISTENER__V3__LISTENER_FILTER__CONFIG_TYPE_TYPED_CONFIG
                            ? type_name(lf->typed_config) : "";
        if (strcmp(t, "envoy.extensions.filters.listener.original_dst.v3.OriginalDst") == 0 ||
            (lf->name && strcmp(lf->name, "envoy.filters.listener.original_dst") == 0)) {
            lc->restore_original_dst = true;
        } else if (strcmp(t, "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector") == 0 ||
                   (!*t && lf->name && strcmp(lf->name, "envoy.filters.listener.tls_inspector") == 0)) {
            if (lf->filter_disabled) {
                push(c, ".listener_filters[%zu].filter_disabled", i);
                return fail(c, "not supported yet");
            }
            lc->tls_inspector = true;
        } else if (strcmp(t, "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector") == 0 ||
                   (!*t && lf->name && strcmp(lf->name, "envoy.filters.listener.http_inspector") == 0)) {
            if (lf->filter_disabled) {
                push(c, ".listener_filters[%zu].filter_disabled", i);
                return fail(c, "not supported yet");
            }
            lc->http_inspector = true;
        } else {
            push(c, ".listener_filters[%zu]", i);
            return fail(c, "unsupported listener filter '%s'", lf->name ? lf->name : t);
        }
    }
    char prefix[600];
    /* Envoy names listener stats by address with ':' kept: listener.0.0.0.0_8080. */
    char addr[ADDR_STR_MAX];
    snprintf(addr, sizeof addr, "%s", lc->addr_str);
    char *colon = strrchr(addr, ':');
    if (colon)
        *colon = '_';
    snprintf(prefix, sizeof prefix, "listener.%s.", addr);
    lc->stats = stats_block(prefix, &listener_stat_schema);
    snprintf(prefix, sizeof prefix, "listener.%s.ssl.", addr);
    lc->ssl_stats = stats_block(prefix, &ssl_stat_schema);
    if (lc->tls_inspector)
        lc->tls_inspector_stats = stats_block("tls_inspector.", &tls_inspector_stat_schema);
    if (lc->http_inspector)
        lc->http_inspector_stats = stats_block("http_inspector.", &http_inspector_stat_schema);
    lc->listener_filters_timeout_ms = duration_ms(pl->listener_filters_timeout, 15000);
    lc->continue_on_listener_filters_timeout = pl->continue_on_listener_filters_timeout;
    if (pl->n_access_log) {
        size_t old = push(c, ".access_log");
        if (build_access_logs(c, pl->access_log, pl->n_access_log, &lc->access_logs, &lc->n_access_logs) < 0)
            return -1;
        pop(c, old);
    }
    lc->chains = calloc(pl->n_filter_chains ? pl->n_filter_chains : 1, sizeof *lc->chains);
    for (size_t i = 0; i < pl->n_filter_chains; i++) {
        size_t old = push(c, ".filter_chains[%zu]", i);
        lc->chains[i] = calloc(1, sizeof **lc->chains);
        lc->n_chains = i + 1;
        if (build_filter_chain(c, pl->filter_chains[i], lc->chains[i]) < 0)
            return -1;
        pop(c, old);
    }
    if (pl->default_filter_chain) {
        size_t old = push(c, ".default_filter_chain");
        lc->default_chain = calloc(1, sizeof *lc->default_chain);
        if (build_filter_chain(c, pl->default_filter_chain, lc->default_chain) < 0)
            return -1;
        pop(c, old);
    }
    if (lc->n_chains == 0 && !lc->default_chain)
        return fail(c, "filter_chains: at least one filter chain is required");
    for (size_t i = 0; i < lc->n_chains; i++)
        lc->any_tls |= lc->chains[i]->tls != NULL;
    if (lc->default_chain)
        lc->any_tls |= lc->default_chain->tls != NULL;
    return 0;
}

/* --- the snapshot --- */

int snapshot_cluster_index(const struct snapshot *s, const char *name)
{
    if (!name)
        return -1;
    for (size_t i = 0; i < s->n_clusters; i++)
        if (strcmp(s->clusters[i]->name, name) == 0)
            return (int)i;
    return -1;
}

struct host_set *cluster_hosts_acquire(struct cluster *c)
{
    struct host_set *hs = atomic_load_explicit(&c->hosts, memory_order_acquire);
    atomic_fetch_add(&hs->refs, 1);
    return hs;
}

void host_set_release(struct host_set *hs)
{
    if (!hs || atomic_fetch_sub(&hs->refs, 1) != 1)
        return;
    for (size_t i = 0; i < hs->n; i++)
        free(hs->hosts[i].hostname);
    free(hs->hosts);
    lb_table_free(hs->lb);
    free(hs);
}

/* Host sets replaced by DNS, kept until no worker can still be about to take a reference. */
#define HOST_SET_GRACE_MS 10000
struct retired_hs {
    struct host_set *hs;
    uint64_t at_ms;
    struct retired_hs *next;
};
static struct retired_hs *retired;

void cluster_set_hosts(struct cluster *c, struct host_set *hs, uint64_t now_ms)
{
    host_set_attach_health(c, hs);
    struct host_set *old = atomic_exchange_explicit(&c->hosts, hs, memory_order_acq_rel);
    struct retired_hs *r = malloc(sizeof *r);
    if (!r) {
        host_set_release(old); /* leaks nothing, risks a race only when out of memory */
        return;
    }
    *r = (struct retired_hs){old, now_ms, retired};
    retired = r;
    unsigned main_slot = stats_slots() - 1;
    size_t healthy = count_lb_healthy(hs);
    stats_add(c->stats, main_slot, CS_MEMBERSHIP_TOTAL, (int64_t)hs->n - stats_value(c->stats, CS_MEMBERSHIP_TOTAL));
    stats_add(c->stats, main_slot, CS_MEMBERSHIP_HEALTHY, (int64_t)healthy - stats_value(c->stats, CS_MEMBERSHIP_HEALTHY));
}

void host_sets_reap(uint64_t now_ms, bool force)
{
    for (struct retired_hs **pp = &retired; *pp;) {
        struct retired_hs *r = *pp;
        if (force || now_ms - r->at_ms >= HOST_SET_GRACE_MS) {
            *pp = r->next;
            host_set_release(r->hs);
            free(r);
        } else {
            pp = &r->next;
        }
    }
}

static void free_access_logs(struct access_log **logs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        access_log_free(logs[i]);
    free(logs);
}

static void free_chain(struct filter_chain *fc)
{
    if (!fc)
        return;
    for (size_t i = 0; i < fc->n_netrl; i++)
        netrl_free(fc->netrl[i]);
    free(fc->name);
    free(fc->match.prefix_ranges);
    free(fc->match.source_prefix_ranges);
    free(fc->match.source_ports);
    free(fc->match.transport_protocol);
    for (size_t i = 0; i < fc->match.n_server_names; i++)
        free(fc->match.server_names[i]);
    free(fc->match.server_names);
    for (size_t i = 0; i < fc->match.n_application_protocols; i++)
        free(fc->match.application_protocols[i]);
    free(fc->match.application_protocols);
    tls_provider_free(fc->tls);
    if (fc->hcm) {
        free(fc->hcm->stat_prefix);
        free(fc->hcm->server_name);
        route_table_free(fc->hcm->routes);
        free_access_logs(fc->hcm->access_logs, fc->hcm->n_access_logs);
        free(fc->hcm);
    }
    if (fc->tcp) {
        free(fc->tcp->stat_prefix);
        free(fc->tcp->weighted_clusters);
        free(fc->tcp->weights);
        free_access_logs(fc->tcp->access_logs, fc->tcp->n_access_logs);
        free(fc->tcp);
    }
    free(fc);
}

static void snapshot_free(struct snapshot *s)
{
    for (size_t i = 0; i < s->n_listeners; i++) {
        struct listener_config *lc = s->listeners[i];
        if (!lc)
            continue;
        for (size_t j = 0; j < lc->n_chains; j++)
            free_chain(lc->chains[j]);
        free_chain(lc->default_chain);
        free(lc->chains);
        free_access_logs(lc->access_logs, lc->n_access_logs);
        free(lc->name);
        free(lc);
    }
    for (size_t i = 0; i < s->n_clusters; i++) {
        struct cluster *cl = s->clusters[i];
        if (!cl)
            continue;
        host_set_release(atomic_load(&cl->hosts));
        free(cl->name);
        for (size_t j = 0; j < cl->n_dns; j++)
            free(cl->dns[j].name);
        free(cl->dns);
        free(cl->lbc);
        resilience_free(cl);
        tls_provider_free(cl->tls);
        free(cl);
    }
    free(s->listeners);
    free(s->clusters);
    free(s->admin.access_log_path);
    free(s->node_id);
    free(s->node_cluster);
    free(s->config_json);
    free(s);
}

struct snapshot *snapshot_ref(struct snapshot *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void snapshot_unref(struct snapshot *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        snapshot_free(s);
}

/* Secrets given inline (private keys, key passwords, session ticket keys) never leave the
 * process: /config_dump shows "[redacted]" in their place, as Envoy does. */
static void redact_inline(json_t *ds)
{
    if (!json_is_object(ds))
        return;
    static const char *const inl[] = {"inline_string", "inline_bytes", "inlineString", "inlineBytes"};
    for (size_t i = 0; i < sizeof inl / sizeof inl[0]; i++)
        if (json_object_get(ds, inl[i]))
            json_object_set_new(ds, inl[i], json_string("[redacted]"));
}

void config_dump_redact(json_t *j)
{
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
            config_dump_redact(v);
        return;
    }
    if (!json_is_object(j))
        return;
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        if (!strcmp(k, "private_key") || !strcmp(k, "privateKey") || !strcmp(k, "password")) {
            redact_inline(v);
        } else if (!strcmp(k, "session_ticket_keys") || !strcmp(k, "sessionTicketKeys")) {
            json_t *keys = json_object_get(v, "keys");
            size_t i;
            json_t *e;
            json_array_foreach(keys, i, e)
                redact_inline(e);
        } else {
            config_dump_redact(v);
        }
    }
}

/* The /config_dump body: Envoy's ConfigDump shape with the bootstrap, static clusters and
 * static listeners as given. */
static char *render_config_dump(const Bootstrap *b)
{
    json_t *root = json_object(), *configs = json_array();
    json_t *bd = json_object();
    json_object_set_new(bd, "@type", json_string("type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"));
    json_object_set_new(bd, "bootstrap", pbmap_to_json(&b->base));
    json_array_append_new(configs, bd);
    json_t *cd = json_object(), *sc = json_array();
    json_object_set_new(cd, "@type", json_string("type.googleapis.com/envoy.admin.v3.ClustersConfigDump"));
    json_t *ld = json_object(), *sl = json_array();
    json_object_set_new(ld, "@type", json_string("type.googleapis.com/envoy.admin.v3.ListenersConfigDump"));
    const Envoy__Config__Bootstrap__V3__Bootstrap__StaticResources *sr = b->static_resources;
    for (size_t i = 0; sr && i < sr->n_clusters; i++) {
        json_t *e = json_object();
        json_t *cl = pbmap_to_json(&sr->clusters[i]->base);
        json_object_set_new(cl, "@type", json_string("type.googleapis.com/envoy.config.cluster.v3.Cluster"));
        json_object_set_new(e, "cluster", cl);
        json_array_append_new(sc, e);
    }
    for (size_t i = 0; sr && i < sr->n_listeners; i++) {
        json_t *e = json_object();
        json_t *l = pbmap_to_json(&sr->listeners[i]->base);
        json_object_set_new(l, "@type", json_string("type.googleapis.com/envoy.config.listener.v3.Listener"));
        json_object_set_new(e, "listener", l);
        json_array_append_new(sl, e);
    }
    json_object_set_new(cd, "static_clusters", sc);
    json_object_set_new(ld, "static_listeners", sl);
    json_array_append_new(configs, cd);
    json_array_append_new(configs, ld);
    json_object_set_new(root, "configs", configs);
    config_dump_redact(root);
    char *s = pbmap_json_dumps(root, 1);
    json_decref(root);
    return s;
}

struct snapshot *snapshot_build(const struct ProtobufCMessage *msg, char *err, size_t errlen)
{
    return snapshot_build_sds(msg, NULL, 0, false, err, errlen);
}

struct snapshot *snapshot_build_sds(const struct ProtobufCMessage *msg, const struct ProtobufCMessage *const *secrets,
                                    size_t n_secrets, bool sds_on, char *err, size_t errlen)
{
    const Bootstrap *b = (const Bootstrap *)msg;
    struct snapshot *s = calloc(1, sizeof *s);
    struct ctx c = {.err = err, .errlen = errlen, .snap = s, .sr = b->static_resources, .sds = secrets,
                    .n_sds = n_secrets, .sds_on = sds_on};
    err[0] = '\0';
    atomic_init(&s->refs, 1);
    if (b->node) {
        s->node_id = xstrdup(b->node->id);
        s->node_cluster = xstrdup(b->node->cluster);
    }
    if (b->admin && b->admin->address) {
        strcpy(c.path, "admin.address");
        if (socket_address(&c, b->admin->address, &s->admin.addr, &s->admin.addrlen) < 0)
            goto fail;
        s->admin.enabled = true;
        s->admin.access_log_path = xstrdup(b->admin->access_log_path);
    }
    const Envoy__Config__Bootstrap__V3__Bootstrap__StaticResources *sr = b->static_resources;
    size_t nc = sr ? sr->n_clusters : 0, nl = sr ? sr->n_listeners : 0;
    s->clusters = calloc(nc ? nc : 1, sizeof *s->clusters);
    s->listeners = calloc(nl ? nl : 1, sizeof *s->listeners);
    for (size_t i = 0; i < nc; i++) {
        snprintf(c.path, sizeof c.path, "static_resources.clusters[%zu]", i);
        if (sr->clusters[i]->name && snapshot_cluster_index(s, sr->clusters[i]->name) >= 0) {
            push(&c, ".name");
            fail(&c, "duplicate cluster name '%s'", sr->clusters[i]->name);
            goto fail;
        }
        struct cluster *cl = calloc(1, sizeof *cl);
        cl->index = (int)i;
        s->clusters[i] = cl;
        s->n_clusters = i + 1;
        if (build_cluster(&c, sr->clusters[i], cl) < 0)
            goto fail;
    }
    for (size_t i = 0; i < nl; i++) {
        snprintf(c.path, sizeof c.path, "static_resources.listeners[%zu]", i);
        s->listeners[i] = calloc(1, sizeof **s->listeners);
        s->n_listeners = i + 1;
        if (build_listener(&c, sr->listeners[i], s->listeners[i]) < 0)
            goto fail;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(s->listeners[j]->name, s->listeners[i]->name) == 0) {
                push(&c, ".name");
                fail(&c, "duplicate listener name '%s'", s->listeners[i]->name);
                goto fail;
            }
        }
    }
    for (size_t i = 0; i < s->n_listeners; i++) {
        struct listener_config *lc = s->listeners[i];
        for (size_t j = 0; j <= lc->n_chains; j++) {
            struct filter_chain *fc = j < lc->n_chains ? lc->chains[j] : lc->default_chain;
            if (fc && fc->hcm)
                fc->hcm->snap = s; /* a stream finds its own snapshot's clusters (worker_cluster_in) */
        }
    }
    s->config_json = render_config_dump(b);
    return s;
fail:
    if (!err[0])
        snprintf(err, errlen, "%s: invalid", c.path);
    snapshot_free(s);
    return NULL;
}
