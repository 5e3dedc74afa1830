/* Shared by the translate_*.c files; not an API. */
#ifndef WEFT_PILOT_TRANSLATE_INTERNAL_H
#define WEFT_PILOT_TRANSLATE_INTERNAL_H

#include <jansson.h>

#include "istio/networking/v1alpha3/destination_rule.pb-c.h"
#include "istio/networking/v1alpha3/gateway.pb-c.h"
#include "istio/networking/v1alpha3/sidecar.pb-c.h"
#include "istio/networking/v1alpha3/virtual_service.pb-c.h"
#include "pilot/translate.h"

typedef Istio__Networking__V1alpha3__VirtualService VirtualService;
typedef Istio__Networking__V1alpha3__DestinationRule DestinationRule;
typedef Istio__Networking__V1alpha3__TrafficPolicy TrafficPolicy;

#define T_TYPE_PREFIX "type.googleapis.com/"

/* One translation: the snapshot, the proxy and what is derived once per call. */
struct tctx {
    const struct pilot_model *m;
    const struct pilot_proxy *p;
    struct istio_errors *warn;
    const struct istio_object *sidecar;  /* the Sidecar that applies, or NULL */
    int allow_any;                       /* outbound traffic policy */
    const struct reg_service **visible;  /* services this proxy sees, in registry order */
    size_t n_visible;
};

/* Output of one generator: JSON resources (owned) in order. */
struct tout {
    json_t *arr; /* array of objects */
};

/* ---- translate.c ---- */
void t_warn(struct tctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 when the proxy's Sidecar lets it reach port of s: an egress listener whose port is
 * unset or equal, with a host covering s (always 1 without a Sidecar or egress). */
int t_port_visible(const struct tctx *c, const struct reg_service *s, uint32_t port);
/* "outbound|PORT|SUBSET|HOST" into a new string. */
char *t_cluster_name(const char *dir, uint32_t port, const char *subset, const char *host);
/* The DestinationRule for host as the proxy sees it (proxy namespace, then the service's,
 * then any), or NULL. */
const struct istio_object *t_find_dr(struct tctx *c, const char *host, const char *svc_ns);
/* The VirtualServices bound to gateway `gw` ("mesh" for sidecars) whose hosts cover host,
 * in (namespace, name) order: fills out (max n) and returns the count. */
size_t t_find_vs(struct tctx *c, const char *host, const char *gw_ns, const char *gw_name,
                 const struct istio_object **out, size_t n);
/* 1 when the VS is bound to gateway gw_ns/gw_name, or to the mesh when gw_name is NULL. */
int t_vs_bound(const struct istio_object *vs, char *const *gws, size_t n_gws,
               const char *gw_ns, const char *gw_name);
/* Istio host matching: pattern (maybe "*.x" or "*") covers host. */
int t_host_match(const char *pattern, const char *host);
json_t *t_ads_source(void);
json_t *t_any(const char *type, json_t *fields);   /* steals fields */
json_t *t_duration(int64_t s, int32_t ns);          /* "1.5s" string */
json_t *t_percent_fraction(double value);           /* {numerator, denominator: MILLION} */
json_t *t_metadata_config(const struct istio_object *o);

/* "/apis/GROUP/v1alpha3/namespaces/NS/KIND/NAME", Istio's config reference. */
void t_config_path(const struct istio_object *o, char *buf, size_t n);

/* A port the proxy serves itself (translate_cluster.c). */
struct inbound_port {
    uint32_t port;
    enum reg_protocol protocol;
    const struct reg_service *svc;
    const struct reg_port *sport;
};
int t_inbound_ports(struct tctx *c, struct inbound_port *out, size_t max);

/* "https.PORT.PORTNAME.GATEWAY.NAMESPACE": Istio's RDS name of a terminated HTTPS server. */
void t_gateway_https_rds(const struct istio_object *gw, const Istio__Networking__V1alpha3__Server *srv,
                         char *buf, size_t n);

/* ---- generators ---- */
int t_gen_clusters(struct tctx *c, json_t *out);
int t_gen_endpoints(struct tctx *c, json_t *out);
int t_gen_listeners(struct tctx *c, json_t *out);
int t_gen_routes(struct tctx *c, json_t *out);

/* Routes for a service port (translate_route.c), shared by RDS and gateway RDS: appends
 * Envoy routes for host:port to `routes`. gw_name NULL means the mesh. */
int t_service_routes(struct tctx *c, const struct reg_service *s, const struct reg_port *port,
                     const struct istio_object *vs, const char *gw_ns, const char *gw_name,
                     json_t *routes);
/* Resolves every destination of VirtualService vs (warning about unknown hosts and
 * subsets, as translation does). Returns 0 or -1. */
int t_check_vs(struct tctx *c, const struct istio_object *vs);
/* The retry policy Istio uses when a route sets none. */
json_t *t_default_retry(void);
/* HCM filter for RDS name rds (or an inline route config when inline_rc is set, stolen);
 * outbound (and gateway) connection managers get the cors and fault filters. */
json_t *t_hcm(const char *stat_prefix, const char *rds, json_t *inline_rc, int outbound);

#endif
