/* istio/config: Istio's configuration objects as weftd and weftctl read them from YAML.
 *
 * A file holds one or more YAML documents; each is an object with the Kubernetes envelope
 * (apiVersion, kind, metadata{name, namespace, labels, annotations}, spec). The spec is
 * mapped by pbmap onto the istio/api protos under api/istio (Istio's camelCase field names,
 * Go-style durations such as "100ms") and then validated with Istio's rules
 * (src/istio/validate.c). Kubernetes Namespace and Service objects are read too (their spec
 * into api/weft/k8s/v1).
 *
 * Objects are immutable once parsed and reference counted (atomically), so config
 * snapshots can share them. Config-time code: allocates freely. */
#ifndef WEFT_ISTIO_CONFIG_H
#define WEFT_ISTIO_CONFIG_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "common/yamltree.h"

#define ISTIO_MAX_ERRORS_PER_OBJECT 32 /* validation stops reporting after this many */
#define ISTIO_ERROR_MAX 640            /* bytes of one error line */

enum istio_kind {
    ISTIO_VIRTUAL_SERVICE,
    ISTIO_DESTINATION_RULE,
    ISTIO_GATEWAY,
    ISTIO_SERVICE_ENTRY,
    ISTIO_WORKLOAD_ENTRY,
    ISTIO_SIDECAR,
    ISTIO_PEER_AUTHENTICATION,
    ISTIO_AUTHORIZATION_POLICY,
    ISTIO_REQUEST_AUTHENTICATION,
    ISTIO_K8S_NAMESPACE,
    ISTIO_K8S_SERVICE,
    ISTIO_KIND_COUNT,
};

struct istio_kv {
    char *key;
    char *value;
};

/* One parsed object. spec is NULL when the object was rejected (then `invalid` is 1 and
 * only kind, name and namespace are meaningful: the store uses them to keep the last good
 * version). */
struct istio_object {
    int refs;                 /* atomic; istio_object_ref / istio_object_unref */
    enum istio_kind kind;
    int invalid;
    char *api_version;        /* as written, e.g. "networking.istio.io/v1beta1" */
    char *name;
    char *ns;                 /* "default" when metadata.namespace is absent */
    struct istio_kv *labels;  /* sorted by key */
    size_t n_labels;
    struct istio_kv *annotations;
    size_t n_annotations;
    char *file;               /* where it was read from */
    int line;                 /* line of the document's first key */
    ProtobufCMessage *spec;   /* the kind's spec message (istio_kind_descriptor) */
};

/* A growing list of error lines "FILE:LINE: field.path: problem". */
struct istio_errors {
    char **msgs;
    size_t n, cap;
};

/* Objects parsed from one text, in document order. */
struct istio_object_list {
    struct istio_object **items;
    size_t n, cap;
    int syntax_error; /* set by istio_parse when the text was not YAML at all */
};

/* Kind name ("VirtualService"), its API group ("networking.istio.io", "" for core
 * Kubernetes) and its spec descriptor. */
const char *istio_kind_name(enum istio_kind k);
const char *istio_kind_group(enum istio_kind k);
const ProtobufCMessageDescriptor *istio_kind_descriptor(enum istio_kind k);

/* Parses every document of text (len bytes, borrowed; file names it in messages).
 * Valid objects and rejected ones (invalid = 1, when their identity could be read) are
 * appended to out; every problem is appended to errs as a line. Unknown kinds are reported
 * and skipped. `domain_suffix` ("cluster.local") is used for short host names in
 * validation. Returns the number of errors added (0 when everything was valid), or -1
 * when out of memory. The caller owns the objects (istio_object_unref each) and the lists
 * (istio_object_list_free / istio_errors_free). */
int istio_parse(const char *text, size_t len, const char *file, const char *domain_suffix,
                struct istio_object_list *out, struct istio_errors *errs);

struct istio_object *istio_object_ref(struct istio_object *o);
void istio_object_unref(struct istio_object *o);

/* Unrefs every object and frees the array. The list is empty and reusable afterwards. */
void istio_object_list_free(struct istio_object_list *l);
int istio_object_list_push(struct istio_object_list *l, struct istio_object *o);

/* Appends a formatted line. Returns 0 or -1 (out of memory: the line is dropped). */
int istio_errors_add(struct istio_errors *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends copies of every line of src. */
int istio_errors_append(struct istio_errors *dst, const struct istio_errors *src);
void istio_errors_free(struct istio_errors *e);

/* Value of a label (or NULL). */
const char *istio_label(const struct istio_object *o, const char *key);

/* ---- helpers shared with the registry and the translator ---- */

/* Returns 1 when every (key, value) of sel (n pairs) is in labels (m pairs). An empty
 * selector selects everything. */
int istio_labels_match(const struct istio_kv *sel, size_t n, const struct istio_kv *labels,
                       size_t m);

/* A protobuf map<string,string> field (repeated *Entry with key/value char*) as a sorted
 * kv array of borrowed strings: *out (malloc'd, caller frees the array only). Returns the
 * count or -1. */
int istio_map_to_kv(ProtobufCMessage *const *entries, size_t n, struct istio_kv **out);

/* Resolves a host as Istio does for an object in namespace ns: a name without a dot
 * becomes "name.ns.svc.SUFFIX"; anything else (FQDN, wildcard, "*") is kept. Returns a
 * malloc'd string or NULL. */
char *istio_resolve_host(const char *host, const char *ns, const char *domain_suffix);

/* Validates the spec of o (kind, spec and namespace set) against Istio's rules. tree is the
 * document (for lines), file its name. Appends problems to errs and returns their count. */
int istio_validate(const struct istio_object *o, const struct ytree *doc, const char *file,
                   const char *domain_suffix, struct istio_errors *errs);

#endif
