/* Cluster.circuit_breakers / outlier_detection / health_checks -> runtime settings, with
 * Envoy's defaults and its validation rules (see resilience_build.h). */
#include "common/hex.h"
#include "proxy/resilience_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/circuit_breaker.h"
#include "proxy/host_health.h"

typedef Envoy__Config__Cluster__V3__Cluster Cluster;
typedef Envoy__Config__Core__V3__HealthCheck HealthCheck;

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

static uint64_t dur_ms(const Google__Protobuf__Duration *d, uint64_t def)
{
    if (!d)
        return def;
    return (uint64_t)d->seconds * 1000u + (uint64_t)d->nanos / 1000000u;
}

static uint32_t u32(const Google__Protobuf__UInt32Value *v, uint32_t def) { return v ? v->value : def; }

static int build_cb(const Cluster *pc, struct circuit_breakers *cb, const char *stat_name, char *err, size_t errlen)
{
    cb_init(cb, stat_name);
    const Envoy__Config__Cluster__V3__CircuitBreakers *p = pc->circuit_breakers;
    bool seen[CB_PRIORITIES] = {false};
    for (size_t i = 0; p && i < p->n_thresholds; i++) {
        const Envoy__Config__Cluster__V3__CircuitBreakers__Thresholds *t = p->thresholds[i];
        if ((unsigned)t->priority >= CB_PRIORITIES)
            FAIL(".circuit_breakers.thresholds[%zu].priority: unknown value %d", i, (int)t->priority);
        if (seen[t->priority])
            continue; /* Envoy: the first entry of a priority wins */
        seen[t->priority] = true;
        struct cb_level *lv = &cb->level[t->priority];
        lv->max[CB_CX] = u32(t->max_connections, CB_DEFAULT_MAX);
        lv->max[CB_PENDING] = u32(t->max_pending_requests, CB_DEFAULT_MAX);
        lv->max[CB_RQ] = u32(t->max_requests, CB_DEFAULT_MAX);
        lv->max[CB_RETRY] = u32(t->max_retries, CB_DEFAULT_RETRIES);
        lv->max[CB_POOLS] = t->max_connection_pools ? t->max_connection_pools->value : CB_UNLIMITED;
        lv->track_remaining = t->track_remaining;
        if (t->retry_budget)
            FAIL(".circuit_breakers.thresholds[%zu].retry_budget: not supported", i);
    }
    if (p && p->n_per_host_thresholds)
        FAIL(".circuit_breakers.per_host_thresholds: not supported");
    cb_track_remaining(cb, stat_name);
    return 0;
}

static void build_od(const Envoy__Config__Cluster__V3__OutlierDetection *p, struct outlier_config *od)
{
    outlier_config_defaults(od);
    od->consecutive_5xx = u32(p->consecutive_5xx, od->consecutive_5xx);
    od->consecutive_gateway_failure = u32(p->consecutive_gateway_failure, od->consecutive_gateway_failure);
    od->consecutive_local_origin_failure = u32(p->consecutive_local_origin_failure, od->consecutive_local_origin_failure);
    od->interval_ms = dur_ms(p->interval, od->interval_ms);
    od->base_ejection_ms = dur_ms(p->base_ejection_time, od->base_ejection_ms);
    od->max_ejection_ms = dur_ms(p->max_ejection_time, od->max_ejection_ms);
    od->max_ejection_jitter_ms = dur_ms(p->max_ejection_time_jitter, 0);
    od->max_ejection_percent = u32(p->max_ejection_percent, od->max_ejection_percent);
    od->enforcing_consecutive_5xx = u32(p->enforcing_consecutive_5xx, od->enforcing_consecutive_5xx);
    od->enforcing_consecutive_gateway_failure =
        u32(p->enforcing_consecutive_gateway_failure, od->enforcing_consecutive_gateway_failure);
    od->enforcing_consecutive_local_origin_failure =
        u32(p->enforcing_consecutive_local_origin_failure, od->enforcing_consecutive_local_origin_failure);
    od->enforcing_success_rate = u32(p->enforcing_success_rate, od->enforcing_success_rate);
    od->enforcing_local_origin_success_rate =
        u32(p->enforcing_local_origin_success_rate, od->enforcing_local_origin_success_rate);
    od->enforcing_failure_percentage = u32(p->enforcing_failure_percentage, od->enforcing_failure_percentage);
    od->enforcing_failure_percentage_local_origin =
        u32(p->enforcing_failure_percentage_local_origin, od->enforcing_failure_percentage_local_origin);
    od->success_rate_minimum_hosts = u32(p->success_rate_minimum_hosts, od->success_rate_minimum_hosts);
    od->success_rate_request_volume = u32(p->success_rate_request_volume, od->success_rate_request_volume);
    od->success_rate_stdev_factor = u32(p->success_rate_stdev_factor, od->success_rate_stdev_factor);
    od->failure_percentage_threshold = u32(p->failure_percentage_threshold, od->failure_percentage_threshold);
    od->failure_percentage_minimum_hosts = u32(p->failure_percentage_minimum_hosts, od->failure_percentage_minimum_hosts);
    od->failure_percentage_request_volume =
        u32(p->failure_percentage_request_volume, od->failure_percentage_request_volume);
    od->split_external_local_origin_errors = p->split_external_local_origin_errors;
    if (p->successful_active_health_check_uneject_host)
        od->successful_active_health_check_uneject_host = p->successful_active_health_check_uneject_host->value;
    if (p->always_eject_one_host)
        od->always_eject_one_host = p->always_eject_one_host->value;
    if (od->max_ejection_percent > 100)
        od->max_ejection_percent = 100;
    for (uint32_t *e = &od->enforcing_consecutive_5xx; e <= &od->enforcing_failure_percentage_local_origin; e++)
        if (*e > 100)
            *e = 100;
}

/* Payload: text is hex ("01ab"), binary is raw. */
static int payload(const Envoy__Config__Core__V3__HealthCheck__Payload *p, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!p)
        return 0;
    if (p->payload_case == ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__PAYLOAD__PAYLOAD_BINARY) {
        *out = malloc(p->binary.len ? p->binary.len : 1);
        if (!*out)
            return -1;
        memcpy(*out, p->binary.data, p->binary.len);
        *len = p->binary.len;
        return 0;
    }
    if (p->payload_case != ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__PAYLOAD__PAYLOAD_TEXT)
        return -1;
    size_t n = strlen(p->text);
    if (n == 0 || n % 2)
        return -1;
    *out = malloc(n / 2);
    if (!*out)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int a = hex_digit(p->text[2 * i]), b = hex_digit(p->text[2 * i + 1]);
        if (a < 0 || b < 0) {
            free(*out);
            *out = NULL;
            return -1;
        }
        (*out)[i] = (uint8_t)(a * 16 + b);
    }
    *len = n / 2;
    return 0;
}

static int build_http_hc(const Envoy__Config__Core__V3__HealthCheck__HttpHealthCheck *h, struct hc_config *hc,
                         char *err, size_t errlen)
{
    hc->kind = HC_HTTP;
    if (!h->path || !*h->path)
        FAIL(".health_checks[0].http_health_check.path: is required");
    hc->path = strdup(h->path);
    hc->host = h->host && *h->host ? strdup(h->host) : NULL;
    if (h->send || h->receive)
        FAIL(".health_checks[0].http_health_check: send/receive payloads are not supported");
    if (h->codec_client_type != 0)
        FAIL(".health_checks[0].http_health_check.codec_client_type: only HTTP1 is supported");
    hc->headers = calloc(h->n_request_headers_to_add ? h->n_request_headers_to_add : 1, sizeof *hc->headers);
    for (size_t i = 0; i < h->n_request_headers_to_add; i++) {
        const Envoy__Config__Core__V3__HeaderValueOption *o = h->request_headers_to_add[i];
        if (!o->header || !o->header->key || !*o->header->key)
            FAIL(".health_checks[0].http_health_check.request_headers_to_add[%zu].header.key: is required", i);
        if (strpbrk(o->header->key, "\r\n:") || (o->header->value && strpbrk(o->header->value, "\r\n")))
            FAIL(".health_checks[0].http_health_check.request_headers_to_add[%zu]: invalid header", i);
        hc->headers[hc->n_headers++] = (struct hc_header){strdup(o->header->key),
                                                          strdup(o->header->value ? o->header->value : ""), true};
    }
    hc->expected = calloc(h->n_expected_statuses ? h->n_expected_statuses : 1, sizeof *hc->expected);
    for (size_t i = 0; i < h->n_expected_statuses; i++) {
        const Envoy__Type__V3__Int64Range *r = h->expected_statuses[i];
        if (r->start < 100 || r->end > 600 || r->start >= r->end)
            FAIL(".health_checks[0].http_health_check.expected_statuses[%zu]: must be within [100, 600)", i);
        hc->expected[hc->n_expected++] = (struct hc_range){r->start, r->end};
    }
    return 0;
}

static int build_hc(const HealthCheck *p, struct hc_config *hc, char *err, size_t errlen)
{
    if (!p->timeout || dur_ms(p->timeout, 0) == 0)
        FAIL(".health_checks[0].timeout: is required and must be above 0");
    if (!p->interval || dur_ms(p->interval, 0) == 0)
        FAIL(".health_checks[0].interval: is required and must be above 0");
    if (!p->unhealthy_threshold)
        FAIL(".health_checks[0].unhealthy_threshold: is required");
    if (!p->healthy_threshold)
        FAIL(".health_checks[0].healthy_threshold: is required");
    hc->timeout_ms = dur_ms(p->timeout, 0);
    hc->interval_ms = dur_ms(p->interval, 0);
    hc->interval_jitter_ms = dur_ms(p->interval_jitter, 0);
    hc->interval_jitter_percent = p->interval_jitter_percent;
    hc->initial_jitter_ms = dur_ms(p->initial_jitter, 0);
    hc->no_traffic_interval_ms = dur_ms(p->no_traffic_interval, 60000);
    hc->unhealthy_interval_ms = dur_ms(p->unhealthy_interval, hc->interval_ms);
    hc->unhealthy_edge_interval_ms = dur_ms(p->unhealthy_edge_interval, hc->unhealthy_interval_ms);
    hc->healthy_edge_interval_ms = dur_ms(p->healthy_edge_interval, hc->interval_ms);
    hc->unhealthy_threshold = p->unhealthy_threshold->value ? p->unhealthy_threshold->value : 1;
    hc->healthy_threshold = p->healthy_threshold->value ? p->healthy_threshold->value : 1;
    hc->alt_port = u32(p->alt_port, 0);
    if (hc->alt_port > 65535)
        FAIL(".health_checks[0].alt_port: over 65535");
    switch (p->health_checker_case) {
    case ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__HEALTH_CHECKER_HTTP_HEALTH_CHECK:
        return build_http_hc(p->http_health_check, hc, err, errlen);
    case ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__HEALTH_CHECKER_TCP_HEALTH_CHECK: {
        const Envoy__Config__Core__V3__HealthCheck__TcpHealthCheck *t = p->tcp_health_check;
        hc->kind = HC_TCP;
        if (t->send && payload(t->send, &hc->send, &hc->send_len) < 0)
            FAIL(".health_checks[0].tcp_health_check.send: text must be hex bytes");
        hc->receive = calloc(t->n_receive ? t->n_receive : 1, sizeof *hc->receive);
        hc->receive_len = calloc(t->n_receive ? t->n_receive : 1, sizeof *hc->receive_len);
        for (size_t i = 0; i < t->n_receive; i++) {
            if (payload(t->receive[i], &hc->receive[i], &hc->receive_len[i]) < 0)
                FAIL(".health_checks[0].tcp_health_check.receive[%zu]: text must be hex bytes", i);
            hc->n_receive = i + 1;
        }
        return 0;
    }
    case ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__HEALTH_CHECKER_GRPC_HEALTH_CHECK:
        FAIL(".health_checks[0].grpc_health_check: not supported");
    case ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__HEALTH_CHECKER_CUSTOM_HEALTH_CHECK:
        FAIL(".health_checks[0].custom_health_check: not supported");
    default:
        FAIL(".health_checks[0].health_checker: one of http_health_check, tcp_health_check is required");
    }
}

int resilience_build(const Cluster *pc, struct cluster *cl, const char *stat_name, char *err, size_t errlen)
{
    cl->cb = calloc(1, sizeof *cl->cb);
    if (!cl->cb)
        FAIL(": out of memory");
    if (build_cb(pc, cl->cb, stat_name, err, errlen) < 0)
        return -1;
    struct outlier_config od;
    if (pc->outlier_detection)
        build_od(pc->outlier_detection, &od);
    struct hc_config *hc = NULL;
    if (pc->n_health_checks > 1)
        FAIL(".health_checks: at most one health check per cluster is supported");
    if (pc->n_health_checks) {
        hc = calloc(1, sizeof *hc);
        if (!hc)
            FAIL(": out of memory");
        if (build_hc(pc->health_checks[0], hc, err, errlen) < 0) {
            hc_config_free(hc);
            return -1;
        }
    }
    cl->health = cluster_health_new(cl, stat_name, pc->outlier_detection ? &od : NULL, hc);
    return 0;
}

void resilience_free(struct cluster *cl)
{
    free(cl->cb);
    cluster_health_free(cl->health);
}
