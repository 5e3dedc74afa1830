/* pilot/registry: the service registry weftd derives from a config snapshot.
 *
 * Services come from Kubernetes Service objects (which select WorkloadEntry objects by
 * labels in their namespace, as Istio lets them) and from ServiceEntry objects (inline
 * endpoints, or a workloadSelector over WorkloadEntries). Hostnames are
 * NAME.NAMESPACE.svc.SUFFIX for Services and the ServiceEntry's hosts otherwise.
 * A service without an address gets a virtual IP from 240.240.0.0/16, allocated from a hash
 * of its hostname with linear probing in hostname order (docs/design.md).
 *
 * Immutable once built; it borrows strings from the objects it was built from, so it must
 * not outlive them (the model snapshot owns both). */
#ifndef WEFT_PILOT_REGISTRY_H
#define WEFT_PILOT_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "istio/config.h"

enum reg_protocol {
    REG_PROTO_TCP,
    REG_PROTO_HTTP,
    REG_PROTO_HTTP2,
    REG_PROTO_GRPC,
    REG_PROTO_GRPC_WEB,
    REG_PROTO_HTTPS,
    REG_PROTO_TLS,
    REG_PROTO_MONGO,
    REG_PROTO_REDIS,
    REG_PROTO_MYSQL,
    REG_PROTO_UDP,
    REG_PROTO_UNSUPPORTED, /* name without a known prefix: treated as TCP (limits.md) */
};

enum reg_resolution {
    REG_RES_STATIC, /* endpoints known: EDS */
    REG_RES_DNS,    /* endpoints are host names: STRICT_DNS */
    REG_RES_DNS_RR, /* DNS_ROUND_ROBIN: LOGICAL_DNS (one connection target at a time) */
    REG_RES_NONE,   /* passthrough to the original destination */
};

struct reg_port {
    const char *name;         /* may be "" */
    uint32_t port;            /* the service port */
    uint32_t target_port;     /* numeric target port (0: same as port or named) */
    const char *target_name;  /* named target port, or NULL */
    enum reg_protocol protocol;
};

struct reg_endpoint {
    const char *address;
    uint32_t port;
    const struct istio_kv *labels;
    size_t n_labels;
    const char *service_account; /* "" when unset */
    const char *locality;        /* "region/zone/subzone" or "" */
    const char *network;
    uint32_t weight;             /* 0: unset */
    const struct istio_object *workload; /* the WorkloadEntry, or NULL for inline endpoints */
};

struct reg_service {
    char *hostname;           /* owned */
    const char *name;         /* metadata.name of the object */
    const char *ns;
    char vip[48];             /* "" when headless / none */
    int vip_auto;             /* allocated by weftd */
    enum reg_resolution resolution;
    int mesh_external;
    int from_service_entry;
    const struct istio_object *obj;
    struct reg_port *ports;   /* owned */
    size_t n_ports;
    struct reg_endpoint **eps; /* per port: owned arrays */
    size_t *n_eps;
    char **export_to;         /* borrowed; n_export_to == 0 means everywhere */
    size_t n_export_to;
};

struct registry {
    struct reg_service *svcs; /* sorted by hostname, then namespace */
    size_t n;
    char *domain_suffix;
};

/* Builds the registry from objs (n valid objects, borrowed: they must outlive the
 * registry). Problems that do not reject an object (e.g. an endpoint with no port for a
 * service port) are appended to warnings (may be NULL). Returns NULL when out of memory. */
struct registry *registry_build(struct istio_object *const *objs, size_t n,
                                const char *domain_suffix, struct istio_errors *warnings);
void registry_free(struct registry *r);

/* The service with this hostname (the first by namespace when several), or NULL. */
const struct reg_service *registry_find(const struct registry *r, const char *hostname);

/* Istio's protocol of a port: appProtocol when set, else the port name's prefix before the
 * first '-' (http, http2, https, grpc, grpc-web, tcp, tls, mongo, redis, mysql, udp;
 * case-insensitive). For ServiceEntry and Gateway ports the `protocol` field. */
enum reg_protocol reg_protocol_from(const char *name, const char *app_protocol);
const char *reg_protocol_name(enum reg_protocol p);
/* HTTP-family (HTTP, HTTP2, GRPC, GRPC-WEB): served by the HTTP connection manager. */
int reg_protocol_is_http(enum reg_protocol p);

/* The first address of 240.240.0.0/16 and the count weftd allocates from. */
#define REG_AUTO_VIP_BASE 0xF0F00000u
#define REG_AUTO_VIP_COUNT 65534u

#endif
