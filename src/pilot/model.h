/* pilot/model: one immutable, reference-counted snapshot of the mesh configuration: the
 * valid Istio/Kubernetes objects, the registry built from them, and every configuration
 * error known when it was made (for /debug/configz and --validate).
 *
 * A snapshot never changes after pilot_model_new returns, so any thread may read it while
 * it holds a reference; the config store publishes a new one on each change. */
#ifndef WEFT_PILOT_MODEL_H
#define WEFT_PILOT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "istio/config.h"
#include "pilot/registry.h"

struct pilot_model {
    int refs;                     /* atomic */
    uint64_t version;             /* increases with every published change */
    struct istio_object **objs;   /* valid objects, sorted by kind, namespace, name */
    size_t n_objs;
    struct registry *reg;
    struct istio_errors errors;   /* load and validation errors, then registry warnings */
    char *domain_suffix;
    /* Per object (same index as objs): the hosts of a VirtualService or the host of a
     * DestinationRule resolved in its namespace (istio_resolve_host), computed once so
     * lookups during translation do not format strings. NULL for other kinds. */
    char ***hosts;
    size_t *n_hosts;
};

/* Builds a snapshot from objs (n objects, each referenced again, so the caller keeps its
 * own references; invalid ones are skipped) and a copy of errs (may be NULL). Objects with
 * the same kind, namespace and name keep the first in (file, line) order; the others are
 * reported in errors. Returns the model with one reference, or NULL (out of memory). */
struct pilot_model *pilot_model_new(struct istio_object *const *objs, size_t n,
                                    const struct istio_errors *errs, const char *domain_suffix,
                                    uint64_t version);

struct pilot_model *pilot_model_ref(struct pilot_model *m);
void pilot_model_unref(struct pilot_model *m);

/* The objects of one kind: *first set to the first index; returns the count. */
size_t pilot_model_kind(const struct pilot_model *m, enum istio_kind k, size_t *first);

/* Finds an object by kind, namespace and name, or NULL. */
const struct istio_object *pilot_model_find(const struct pilot_model *m, enum istio_kind k,
                                            const char *ns, const char *name);

#endif
