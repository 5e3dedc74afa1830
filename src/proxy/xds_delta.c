/* Incremental xDS (DeltaAggregatedResources) for the ADS client: the requests and the decoding
 * of responses. Subscriptions, warming, ACK/NACK decisions and snapshots are the state of the
 * world's (xds_client.c): a Delta response only changes how the candidate set is made.
 *
 *   - The first request of a type on a stream subscribes to every name asked for (none for
 *     the wildcard CDS and LDS) and lists the resources held with their versions in
 *     initial_resource_versions, so a server answers a reconnect with what changed only.
 *   - Later changes of the EDS/RDS names send resource_names_subscribe / _unsubscribe with
 *     the difference from what this stream has subscribed.
 *   - A response's resources replace or add to the held ones (each with its own version);
 *     removed_resources (and removed_resource_names) are dropped; the set is kept sorted by
 *     name so the snapshot does not depend on the order changes came in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/stats.h"
#include "net/grpc.h"
#include "proxy/xds_internal.h"

typedef Envoy__Service__Discovery__V3__DeltaDiscoveryRequest DeltaRequest;
typedef Envoy__Service__Discovery__V3__DeltaDiscoveryRequest__InitialResourceVersionsEntry VersionEntry;
typedef Envoy__Service__Discovery__V3__DeltaDiscoveryResponse DeltaResponse;

static bool has_name(char *const *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], name) == 0)
            return true;
    return false;
}

/* Makes s->stream_names a copy of s->names (what this stream is subscribed to now). */
static void remember_stream_names(struct xds_sub *s)
{
    for (size_t i = 0; i < s->n_stream_names; i++)
        free(s->stream_names[i]);
    free(s->stream_names);
    s->stream_names = calloc(s->n_names + 1, sizeof *s->stream_names);
    s->n_stream_names = 0;
    for (size_t i = 0; s->stream_names && i < s->n_names; i++)
        if ((s->stream_names[s->n_stream_names] = strdup(s->names[i])))
            s->n_stream_names++;
}

void xds_delta_request(struct xds_client *x, enum xds_type t, enum xds_delta_kind k, const char *error)
{
    struct xds_sub *s = &x->sub[t];
    if (!x->stream_open)
        return; /* the next stream sends an INITIAL request for every subscription */
    DeltaRequest rq = ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    bool named = t == XDS_EDS || t == XDS_RDS;
    size_t cap = s->n_names + s->n_stream_names + s->set.n + 1;
    char **sub = calloc(cap, sizeof *sub), **unsub = calloc(cap, sizeof *unsub);
    VersionEntry *ents = calloc(cap, sizeof *ents);
    VersionEntry **eptr = calloc(cap, sizeof *eptr);
    if (!sub || !unsub || !ents || !eptr)
        goto out;
    rq.type_url = (char *)xds_type_url(t);
    rq.resource_names_subscribe = sub;
    rq.resource_names_unsubscribe = unsub;
    rq.initial_resource_versions = eptr;
    if (k == XDS_DELTA_INITIAL) {
        for (size_t i = 0; named && i < s->n_names; i++)
            sub[rq.n_resource_names_subscribe++] = s->names[i];
        for (size_t i = 0; i < s->set.n; i++) {
            envoy__service__discovery__v3__delta_discovery_request__initial_resource_versions_entry__init(&ents[i]);
            ents[i].key = s->set.r[i].name;
            ents[i].value = s->set.r[i].version;
            eptr[rq.n_initial_resource_versions++] = &ents[i];
        }
    } else if (k == XDS_DELTA_NAMES) {
        for (size_t i = 0; i < s->n_names; i++)
            if (!has_name(s->stream_names, s->n_stream_names, s->names[i]))
                sub[rq.n_resource_names_subscribe++] = s->names[i];
        for (size_t i = 0; i < s->n_stream_names; i++)
            if (!has_name(s->names, s->n_names, s->stream_names[i]))
                unsub[rq.n_resource_names_unsubscribe++] = s->stream_names[i];
        if (!rq.n_resource_names_subscribe && !rq.n_resource_names_unsubscribe && s->node_sent)
            goto out; /* the stream is subscribed to exactly these names already */
    } else {
        rq.response_nonce = s->nonce;
        if (error) {
            st.code = GRPC_STATUS_INVALID_ARGUMENT;
            st.message = (char *)error;
            rq.error_detail = &st;
        }
    }
    if (!s->node_sent) {
        rq.node = x->b->node;
        s->node_sent = true;
    }
    xds_send_msg(x, &rq.base, t);
    if (k != XDS_DELTA_ACK && named)
        remember_stream_names(s);
out:
    free(sub);
    free(unsub);
    free(ents);
    free(eptr);
}

static int cmp_resource(const void *a, const void *b)
{
    return strcmp(((const struct xds_resource *)a)->name, ((const struct xds_resource *)b)->name);
}

static bool removed(const DeltaResponse *r, const char *name)
{
    if (has_name(r->removed_resources, r->n_removed_resources, name))
        return true;
    for (size_t i = 0; i < r->n_removed_resource_names; i++)
        if (r->removed_resource_names[i]->name && strcmp(r->removed_resource_names[i]->name, name) == 0)
            return true;
    return false;
}

/* Decodes resources[i] into the next slot of cand. Returns 1 when added, 0 when skipped (no
 * body, or a name not asked for), -1 with err. */
static int take_resource(const struct xds_sub *s, enum xds_type t, const DeltaResponse *r, size_t i,
                         struct xds_set *cand, char *err, size_t errlen)
{
    const Envoy__Service__Discovery__V3__Resource *res = r->resources[i];
    if (!res->resource)
        return 0; /* a TTL refresh of a held resource: nothing changes */
    ProtobufCMessage *m;
    if (xds_decode_any(t, res->resource, i, &m, err, errlen) < 0)
        return -1;
    const char *inner = xds_resource_name(t, m);
    const char *name = res->name && res->name[0] ? res->name : inner;
    int rc = -1;
    if (!name || !name[0]) {
        snprintf(err, errlen, "resources[%zu]: the resource has no name", i);
    } else if (inner && inner[0] && strcmp(inner, name) != 0) {
        snprintf(err, errlen, "resources[%zu]: name '%s' but the resource is named '%s'", i, name, inner);
    } else if (removed(r, name)) {
        snprintf(err, errlen, "resources[%zu]: '%s' is also in removed_resources", i, name);
    } else if (!xds_wanted(s, t, name)) {
        rc = 0; /* not subscribed (any more): ignored, as Envoy does */
    } else {
        for (size_t j = 0; j < cand->n; j++)
            if (strcmp(cand->r[j].name, name) == 0) {
                snprintf(err, errlen, "resources[%zu]: duplicate resource name '%s'", i, name);
                goto done;
            }
        struct xds_resource *d = &cand->r[cand->n];
        d->name = strdup(name);
        d->version = strdup(res->version ? res->version : "");
        d->last_updated = time(NULL);
        d->msg = m;
        cand->n++;
        if (!d->name || !d->version) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 1;
    }
done:
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

int xds_delta_decode(struct xds_client *x, enum xds_type t, const DeltaResponse *r, struct xds_set *cand, char *err,
                     size_t errlen)
{
    const struct xds_sub *s = &x->sub[t];
    if (xds_cand_alloc(s, r->n_resources, cand, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < r->n_resources; i++)
        if (take_resource(s, t, r, i, cand, err, errlen) < 0)
            return -1;
    size_t nnew = cand->n;
    for (size_t i = 0; i < s->set.n; i++) {
        const struct xds_resource *old = &s->set.r[i];
        bool replaced = false;
        for (size_t j = 0; j < nnew && !replaced; j++)
            replaced = strcmp(cand->r[j].name, old->name) == 0;
        if (replaced || removed(r, old->name))
            continue;
        if (xds_set_copy_in(cand, old) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    if (cand->n > XDS_MAX_RESOURCES) {
        snprintf(err, errlen, "%zu resources held with this response: more than %u", cand->n, XDS_MAX_RESOURCES);
        return -1;
    }
    qsort(cand->r, cand->n, sizeof *cand->r, cmp_resource);
    return 0;
}
