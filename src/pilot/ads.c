/* pilot/ads: the ADS server (see ads.h for the model). */
#include "pilot/ads.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "common/log.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "istio/networking/v1alpha3/workload_entry.pb-c.h"
#include "net/grpc_server.h"

static const enum pilot_type push_order[PILOT_TYPE_COUNT] = {PILOT_CDS, PILOT_EDS, PILOT_LDS, PILOT_RDS};
static const double conv_bounds[8] = {.1, .5, 1, 3, 5, 10, 20, 30};

/* What the client holds of one resource (Delta): name and our version hash. */
struct rver {
    char *name;
    uint64_t hash;
};

struct ads_watch {
    bool subscribed, wildcard;
    char **names;               /* sorted, unique */
    size_t n_names;
    bool sent_any;
    uint64_t sent_hash;         /* SotW: hash of the last response's resources */
    size_t n_resources;
    char sent_version[32], sent_nonce[32], acked_version[32], acked_nonce[32];
    char nacked_version[32], nacked_nonce[32];
    char *nack_error;
    uint64_t sent, acks, nacks;
    bool pending, pending_force, pending_conv;
    struct rver *known;         /* Delta: sorted by name */
    size_t n_known;
};

struct ads_conn {
    struct ads_server *s;
    struct ads_conn *next, *prev;
    bool delta, have_proxy, grpc, finished;
    bool proxyless;             /* node metadata GENERATOR: grpc (gRPC's own xDS client) */
    unsigned grpc_timeout_pad_ms; /* added to route timeouts for this client (translate_grpc.c) */
    ads_send_fn send;
    void *ctx;
    struct pilot_proxy proxy;
    struct ads_watch w[PILOT_TYPE_COUNT];
};

struct ads_server {
    struct loop *loop;
    struct pilot_model *model;
    struct ads_debounce deb;
    struct timer timer;
    uint64_t batch_start_ms;    /* first change of the batch being pushed */
    uint64_t nonce_seq;
    struct ads_conn *conns;
    struct ads_stats st;
    /* generation cache: results shared by streams with the same key, for one model version */
    struct packed *cache;
    size_t cache_bytes;
    uint64_t cache_version;
    bool cache_ready;
    const char **ep_addrs;
    size_t n_ep_addrs;
};

/* ---- debounce ---- */

void ads_debounce_event(struct ads_debounce *d, uint64_t now)
{
    if (!d->pending) {
        d->pending = true;
        d->first_ms = now;
    }
    d->last_ms = now;
}

uint64_t ads_debounce_deadline(const struct ads_debounce *d)
{
    if (!d->pending)
        return UINT64_MAX;
    uint64_t quiet = d->last_ms + d->quiet_ms, cap = d->first_ms + d->max_ms;
    return quiet < cap ? quiet : cap;
}

bool ads_debounce_due(const struct ads_debounce *d, uint64_t now)
{
    return d->pending && now >= ads_debounce_deadline(d);
}

void ads_debounce_reset(struct ads_debounce *d)
{
    d->pending = false;
}

/* ---- small helpers ---- */

static int type_of_url(const char *url)
{
    for (int t = 0; t < PILOT_TYPE_COUNT; t++)
        if (url && !strcmp(url, pilot_type_url((enum pilot_type)t)))
            return t;
    return -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_rver(const void *a, const void *b)
{
    return strcmp(((const struct rver *)a)->name, ((const struct rver *)b)->name);
}

static bool names_has(char *const *names, size_t n, const char *name)
{
    return n && bsearch(&name, names, n, sizeof *names, cmp_str);
}

static void names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static void known_free(struct rver *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(k[i].name);
    free(k);
}

static struct rver *known_find(struct ads_watch *w, const char *name)
{
    struct rver key = {.name = (char *)name};
    return w->n_known ? bsearch(&key, w->known, w->n_known, sizeof key, cmp_rver) : NULL;
}

/* Copies src[0..n) into a sorted, unique, owned array (the "*" wildcard name is left out and
 * reported in *star). Returns 0 or -ENOMEM. */
static int names_set(char *const *src, size_t n, char ***out, size_t *nout, bool *star)
{
    char **v = calloc(n ? n : 1, sizeof *v);
    size_t k = 0;
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(src[i], "*")) {
            *star = true;
            continue;
        }
        if (!(v[k] = strdup(src[i]))) {
            names_free(v, k);
            return -ENOMEM;
        }
        k++;
    }
    qsort(v, k, sizeof *v, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < k; i++) {
        if (u && !strcmp(v[u - 1], v[i]))
            free(v[i]);
        else
            v[u++] = v[i];
    }
    *out = v;
    *nout = u;
    return 0;
}

static void copy_field(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strnlen(src, cap - 1) : 0;
    memmove(dst, src ? src : "", n);
    dst[n] = '\0';
}

static uint64_t now_ms(struct ads_server *s)
{
    return loop_update_time(s->loop);
}

static void observe_convergence(struct ads_server *s)
{
    double secs = (double)(now_ms(s) - s->batch_start_ms) / 1000.0;
    size_t b = 0;
    while (b < 8 && secs > conv_bounds[b])
        b++;
    s->st.conv_buckets[b]++;
    s->st.conv_count++;
    s->st.conv_sum += secs;
}

/* ---- generating a response ---- */

/* The serialized resources of type t that stream c receives, filtered by its subscription.
 * Shared through the server's generation cache (see gen_key) while the model is current. */
struct packed {
    char **names;       /* owned */
    uint8_t **bytes;
    size_t *lens;
    uint64_t *hashes;
    size_t n, total;
    bool cached;
    uint64_t key;
    char *keymat;       /* what the key was made of (compared on a hit) */
    size_t keylen;
    struct packed *next;
};

static void packed_free(struct packed *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->bytes[i]);
        free(p->names[i]);
    }
    free(p->names);
    free(p->bytes);
    free(p->lens);
    free(p->hashes);
    free(p->keymat);
    free(p);
}

/* Releases a result of generate(): cached ones stay with the server. */
static void packed_put(struct packed *p)
{
    if (p && !p->cached)
        packed_free(p);
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void cache_clear(struct ads_server *s)
{
    while (s->cache) {
        struct packed *p = s->cache;
        s->cache = p->next;
        packed_free(p);
    }
    s->cache_bytes = 0;
    free(s->ep_addrs);
    s->ep_addrs = NULL;
    s->n_ep_addrs = 0;
}

/* Every endpoint and WorkloadEntry address of the model, sorted: a proxy whose IP is none of
 * them gets the same resources as any other proxy of its kind, namespace and labels. */
static void cache_prepare(struct ads_server *s)
{
    if (s->cache_version == s->model->version && s->cache_ready)
        return;
    cache_clear(s);
    s->cache_version = s->model->version;
    s->cache_ready = true;
    const struct registry *r = s->model->reg;
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        for (size_t k = 0; k < r->svcs[i].n_ports; k++)
            n += r->svcs[i].n_eps[k];
    size_t first, nwe = pilot_model_kind(s->model, ISTIO_WORKLOAD_ENTRY, &first);
    s->ep_addrs = calloc(n + nwe + 1, sizeof *s->ep_addrs);
    if (!s->ep_addrs)
        return;
    for (size_t i = 0; i < r->n; i++)
        for (size_t k = 0; k < r->svcs[i].n_ports; k++)
            for (size_t e = 0; e < r->svcs[i].n_eps[k]; e++)
                if (r->svcs[i].eps[k][e].address)
                    s->ep_addrs[s->n_ep_addrs++] = r->svcs[i].eps[k][e].address;
    for (size_t i = first; i < first + nwe; i++) {
        const Istio__Networking__V1alpha3__WorkloadEntry *we = (const void *)s->model->objs[i]->spec;
        if (we->address && *we->address)
            s->ep_addrs[s->n_ep_addrs++] = we->address;
    }
    qsort(s->ep_addrs, s->n_ep_addrs, sizeof *s->ep_addrs, cmp_cstr);
}

/* The key material of what generate() depends on: the type, the generator, the proxy's kind,
 * namespace, service account and labels, its IP only when it is some endpoint's address (the
 * translator reads the IP to find the proxy's own endpoints; tests/unit/test_pilot_ads.c checks
 * that two proxies differing only in a non-endpoint IP get identical bytes), and the
 * subscription. Returns a malloc'd buffer (length in *len), or NULL. */
static char *gen_key(struct ads_conn *c, enum pilot_type t, size_t *len)
{
    struct ads_server *s = c->s;
    const struct ads_watch *w = &c->w[t];
    const struct pilot_proxy *p = &c->proxy;
    const char *ip = p->ip;
    bool ip_rel = s->ep_addrs ? bsearch(&ip, s->ep_addrs, s->n_ep_addrs, sizeof ip, cmp_cstr) != NULL : true;
    size_t cap = 64 + strlen(p->ns) + strlen(p->service_account) + strlen(p->ip);
    for (size_t i = 0; i < p->n_labels; i++)
        cap += strlen(p->labels[i].key) + strlen(p->labels[i].value) + 2;
    if (!w->wildcard)
        for (size_t i = 0; i < w->n_names; i++)
            cap += strlen(w->names[i]) + 1;
    char *k = malloc(cap);
    if (!k)
        return NULL;
    size_t o = (size_t)snprintf(k, cap, "%d|%d|%u|%d|%d|%s|%s|%s|", (int)t, c->proxyless,
                                c->grpc_timeout_pad_ms, (int)p->type, w->wildcard, p->ns, p->service_account, ip_rel ? p->ip : "");
    for (size_t i = 0; i < p->n_labels; i++) {
        size_t kl = strlen(p->labels[i].key), vl = strlen(p->labels[i].value);
        memcpy(k + o, p->labels[i].key, kl);
        o += kl;
        k[o++] = '=';
        memcpy(k + o, p->labels[i].value, vl);
        o += vl;
        k[o++] = '\0';
    }
    k[o++] = '|';
    if (!w->wildcard)
        for (size_t i = 0; i < w->n_names; i++) {
            size_t nl = strlen(w->names[i]) + 1;
            memcpy(k + o, w->names[i], nl);
            o += nl;
        }
    *len = o;
    return k;
}

static struct packed *generate(struct ads_conn *c, enum pilot_type t)
{
    struct ads_server *s = c->s;
    struct ads_watch *w = &c->w[t];
    cache_prepare(s);
    size_t klen = 0;
    char *km = gen_key(c, t, &klen);
    uint64_t key = km ? XXH3_64bits(km, klen) : 0;
    for (struct packed *p = s->cache; km && p; p = p->next)
        if (p->key == key && p->keylen == klen && !memcmp(p->keymat, km, klen)) {
            free(km);
            s->st.cache_hits++;
            return p;
        }
    s->st.cache_misses++;
    struct pilot_resources res = {0};
    struct istio_errors warn = {0};
    int rc = c->proxyless ? pilot_translate_grpc(s->model, &c->proxy, t, w->names, w->n_names,
                                                 w->wildcard, c->grpc_timeout_pad_ms, &res, &warn)
                          : pilot_translate(s->model, &c->proxy, t, &res, &warn);
    if (rc < 0) {
        for (size_t i = 0; i < warn.n; i++)
            log_warn("ads: %s: %s: %s", c->proxy.id, pilot_type_name(t), warn.msgs[i]);
        istio_errors_free(&warn);
        s->st.internal_errors++;
        free(km);
        return NULL;
    }
    istio_errors_free(&warn);
    struct packed *p = calloc(1, sizeof *p);
    size_t n = res.n ? res.n : 1;
    if (!p)
        goto oom;
    p->keymat = km;
    p->keylen = klen;
    p->key = key;
    km = NULL;
    p->names = calloc(n, sizeof *p->names);
    p->bytes = calloc(n, sizeof *p->bytes);
    p->lens = calloc(n, sizeof *p->lens);
    p->hashes = calloc(n, sizeof *p->hashes);
    if (!p->names || !p->bytes || !p->lens || !p->hashes)
        goto oom;
    for (size_t i = 0; i < res.n; i++) {
        if (!w->wildcard && !names_has(w->names, w->n_names, res.names[i]))
            continue;
        size_t len = protobuf_c_message_get_packed_size(res.msgs[i]);
        uint8_t *b = malloc(len ? len : 1);
        if (!b)
            goto oom;
        protobuf_c_message_pack(res.msgs[i], b);
        p->names[p->n] = res.names[i];     /* taken over */
        res.names[i] = NULL;
        p->bytes[p->n] = b;
        p->lens[p->n] = len;
        p->hashes[p->n] = XXH3_64bits(b, len);
        p->total += len + strlen(p->names[p->n]) + 64;
        p->n++;
    }
    pilot_resources_free(&res);
    if (p->keymat && s->cache_bytes + p->total <= ADS_CACHE_MAX_BYTES) {
        p->cached = true;
        p->next = s->cache;
        s->cache = p;
        s->cache_bytes += p->total;
    }
    return p;
oom:
    free(km);
    pilot_resources_free(&res);
    packed_free(p);
    s->st.internal_errors++;
    return NULL;
}

static uint64_t packed_hash(const struct packed *p)
{
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    for (size_t i = 0; i < p->n; i++) {
        XXH3_64bits_update(&st, p->names[i], strlen(p->names[i]) + 1);
        XXH3_64bits_update(&st, &p->hashes[i], sizeof p->hashes[i]);
    }
    return XXH3_64bits_digest(&st);
}

static int send_packed(struct ads_conn *c, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(len ? len : 1);
    if (!b)
        return -ENOMEM;
    protobuf_c_message_pack(m, b);
    int rc = c->send(c->ctx, b, len);
    free(b);
    return rc;
}

/* Pushes type t to a state-of-the-world stream when what it would get differs from what it
 * was last sent (or always, with force). Returns 0 (sent, unchanged, or left pending),
 * -ENOBUFS when the transport is full (marked pending), or another negative errno. */
static int push_sotw(struct ads_conn *c, enum pilot_type t, bool force, bool conv)
{
    struct ads_watch *w = &c->w[t];
    struct packed *pp = generate(c, t);
    if (!pp)
        return -ENOMEM;
    const struct packed p = *pp;
    uint64_t h = packed_hash(&p);
    int rc = 0;
    if (!force && w->sent_any && h == w->sent_hash)
        goto out;
    Google__Protobuf__Any *anys = calloc(p.n ? p.n : 1, sizeof *anys);
    Google__Protobuf__Any **aptr = calloc(p.n ? p.n : 1, sizeof *aptr);
    if (!anys || !aptr) {
        free(anys);
        free(aptr);
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < p.n; i++) {
        google__protobuf__any__init(&anys[i]);
        anys[i].type_url = (char *)pilot_type_url(t);
        anys[i].value.data = p.bytes[i];
        anys[i].value.len = p.lens[i];
        aptr[i] = &anys[i];
    }
    char version[32], nonce[32];
    snprintf(version, sizeof version, "%llu", (unsigned long long)c->s->model->version);
    snprintf(nonce, sizeof nonce, "%llx", (unsigned long long)++c->s->nonce_seq);
    Envoy__Service__Discovery__V3__DiscoveryResponse resp = ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_RESPONSE__INIT;
    resp.version_info = version;
    resp.type_url = (char *)pilot_type_url(t);
    resp.nonce = nonce;
    resp.n_resources = p.n;
    resp.resources = aptr;
    rc = send_packed(c, &resp.base);
    free(anys);
    free(aptr);
    if (rc == 0) {
        w->sent_any = true;
        w->sent_hash = h;
        w->n_resources = p.n;
        copy_field(w->sent_version, sizeof w->sent_version, version);
        copy_field(w->sent_nonce, sizeof w->sent_nonce, nonce);
        w->sent++;
        c->s->st.pushes[t]++;
        if (conv)
            observe_convergence(c->s);
    }
out:
    packed_put(pp);
    return rc;
}

/* Delta: sends the resources whose version differs from what the client holds and the
 * names it holds that are gone. */
static int push_delta(struct ads_conn *c, enum pilot_type t, bool force, bool conv)
{
    struct ads_watch *w = &c->w[t];
    struct packed *pp = generate(c, t);
    if (!pp)
        return -ENOMEM;
    const struct packed p = *pp;
    int rc = 0;
    size_t cap = p.n + w->n_known + 1;
    Envoy__Service__Discovery__V3__Resource *rs = calloc(cap, sizeof *rs);
    Envoy__Service__Discovery__V3__Resource **rptr = calloc(cap, sizeof *rptr);
    Google__Protobuf__Any *anys = calloc(cap, sizeof *anys);
    char (*vers)[20] = calloc(cap, sizeof *vers);
    char **removed = calloc(cap, sizeof *removed);
    struct rver *nk = calloc(cap, sizeof *nk);
    size_t nr = 0, nrem = 0, nnk = 0;
    if (!rs || !rptr || !anys || !vers || !removed || !nk) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < p.n; i++) {
        struct rver *k = known_find(w, p.names[i]);
        nk[nnk].name = p.names[i];          /* borrowed until the send succeeds */
        nk[nnk++].hash = p.hashes[i];
        if (k && k->hash == p.hashes[i])
            continue;
        envoy__service__discovery__v3__resource__init(&rs[nr]);
        google__protobuf__any__init(&anys[nr]);
        anys[nr].type_url = (char *)pilot_type_url(t);
        anys[nr].value.data = p.bytes[i];
        anys[nr].value.len = p.lens[i];
        snprintf(vers[nr], sizeof vers[nr], "%016llx", (unsigned long long)p.hashes[i]);
        rs[nr].name = p.names[i];
        rs[nr].version = vers[nr];
        rs[nr].resource = &anys[nr];
        rptr[nr] = &rs[nr];
        nr++;
    }
    /* p.names is sorted (the translator sorts by name), so nk is too */
    for (size_t i = 0; i < w->n_known; i++) {
        struct rver key = {.name = w->known[i].name};
        if (!nnk || !bsearch(&key, nk, nnk, sizeof key, cmp_rver))
            removed[nrem++] = w->known[i].name;
    }
    if (!force && !nr && !nrem)
        goto out;
    char version[32], nonce[32];
    snprintf(version, sizeof version, "%llu", (unsigned long long)c->s->model->version);
    snprintf(nonce, sizeof nonce, "%llx", (unsigned long long)++c->s->nonce_seq);
    Envoy__Service__Discovery__V3__DeltaDiscoveryResponse resp =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_RESPONSE__INIT;
    resp.system_version_info = version;
    resp.type_url = (char *)pilot_type_url(t);
    resp.nonce = nonce;
    resp.n_resources = nr;
    resp.resources = rptr;
    resp.n_removed_resources = nrem;
    resp.removed_resources = removed;
    rc = send_packed(c, &resp.base);
    if (rc == 0) {
        for (size_t i = 0; i < nnk; i++)
            if (!(nk[i].name = strdup(nk[i].name))) {
                known_free(nk, i);
                nk = NULL;
                nnk = 0;
                break;
            }
        known_free(w->known, w->n_known);
        w->known = nk;
        w->n_known = nnk;
        nk = NULL;
        w->n_resources = nnk;
        copy_field(w->sent_version, sizeof w->sent_version, version);
        copy_field(w->sent_nonce, sizeof w->sent_nonce, nonce);
        w->sent++;
        c->s->st.pushes[t]++;
        if (conv)
            observe_convergence(c->s);
    }
out:
    free(rs);
    free(rptr);
    free(anys);
    free(vers);
    free(removed);
    free(nk);
    packed_put(pp);
    return rc;
}

/* Pushes one type, or marks it pending while the transport is full. */
static int push_type(struct ads_conn *c, enum pilot_type t, bool force, bool conv)
{
    struct ads_watch *w = &c->w[t];
    if (!w->subscribed || c->finished)
        return 0;
    if (w->pending) {
        w->pending_force |= force;
        w->pending_conv |= conv;
        return -ENOBUFS;
    }
    int rc = c->delta ? push_delta(c, t, force, conv) : push_sotw(c, t, force, conv);
    if (rc == -ENOBUFS) {
        w->pending = true;
        w->pending_force = force;
        w->pending_conv = conv;
        c->s->st.pending_pushes++;
    }
    return rc;
}

/* Every subscribed type in warming order; once one is blocked the later ones wait too. */
static void push_conn(struct ads_conn *c, bool conv)
{
    bool blocked = false;
    for (int i = 0; i < PILOT_TYPE_COUNT; i++) {
        enum pilot_type t = push_order[i];
        struct ads_watch *w = &c->w[t];
        if (!w->subscribed)
            continue;
        if (blocked) {
            if (!w->pending)
                c->s->st.pending_pushes++;
            w->pending = true;
            w->pending_conv |= conv;
            continue;
        }
        if (push_type(c, t, false, conv) == -ENOBUFS)
            blocked = true;
    }
}

void ads_conn_on_writable(struct ads_conn *c)
{
    for (int i = 0; i < PILOT_TYPE_COUNT; i++) {
        enum pilot_type t = push_order[i];
        struct ads_watch *w = &c->w[t];
        if (!w->pending)
            continue;
        w->pending = false;
        c->s->st.pending_pushes--;
        if (push_type(c, t, w->pending_force, w->pending_conv) == -ENOBUFS)
            return;
    }
}

/* ---- requests ---- */

static int take_node(struct ads_conn *c, const Envoy__Config__Core__V3__Node *node, const char **why)
{
    if (c->have_proxy)
        return 0;
    char err[256];
    if (!node) {
        *why = "the first request has no node";
        return -EINVAL;
    }
    if (pilot_proxy_from_node(node, &c->proxy, err, sizeof err) < 0) {
        log_warn("ads: bad node %s: %s", node->id ? node->id : "", err);
        pilot_proxy_free(&c->proxy);
        memset(&c->proxy, 0, sizeof c->proxy);
        *why = "bad node id (expected TYPE~IP~POD.NS~NS.svc.DOMAIN)";
        return -EINVAL;
    }
    pilot_proxy_complete(&c->proxy, c->s->model);
    c->have_proxy = true;
    const Google__Protobuf__Struct *md = node->metadata;
    for (size_t i = 0; md && i < md->n_fields; i++) {
        const Google__Protobuf__Value *v = md->fields[i]->value;
        if (!strcmp(md->fields[i]->key, "GENERATOR") && v &&
            v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE && !strcmp(v->string_value, "grpc"))
            c->proxyless = true;
    }
    if (c->proxyless)
        c->grpc_timeout_pad_ms = pilot_grpc_timeout_pad_ms(node->user_agent_name);
    log_info("ads: %s connected (%s%s)", c->proxy.id, c->delta ? "delta" : "sotw",
             c->proxyless ? ", proxyless gRPC" : "");
    return 0;
}

static void record_nack(struct ads_conn *c, enum pilot_type t, const char *version, const char *nonce,
                        const Google__Rpc__Status *err)
{
    struct ads_watch *w = &c->w[t];
    w->nacks++;
    c->s->st.rejects[t]++;
    copy_field(w->nacked_version, sizeof w->nacked_version, version);
    copy_field(w->nacked_nonce, sizeof w->nacked_nonce, nonce);
    const char *msg = err->message ? err->message : "";
    free(w->nack_error);
    w->nack_error = strndup(msg, ADS_ERROR_MAX);
    log_warn("ads: %s rejected %s version %s (nonce %s): %.*s", c->proxy.id, pilot_type_name(t),
             version, nonce, ADS_ERROR_MAX, msg);
}

static int on_sotw(struct ads_conn *c, const uint8_t *msg, size_t len, const char **why)
{
    Envoy__Service__Discovery__V3__DiscoveryRequest *req =
        envoy__service__discovery__v3__discovery_request__unpack(NULL, len, msg);
    if (!req) {
        *why = "undecodable DiscoveryRequest";
        return -EINVAL;
    }
    int rc = take_node(c, req->node, why);
    int t = type_of_url(req->type_url);
    if (rc < 0 || t < 0)
        goto out;
    struct ads_watch *w = &c->w[t];
    const char *nonce = req->response_nonce ? req->response_nonce : "";
    if (*nonce && strcmp(nonce, w->sent_nonce)) {
        c->s->st.stale_requests++;    /* answers an older response: ignore, as Envoy's protocol says */
        goto out;
    }
    if (req->error_detail) {
        if (*nonce)
            record_nack(c, (enum pilot_type)t, req->version_info, nonce, req->error_detail);
        goto out;
    }
    if (*nonce) {
        copy_field(w->acked_version, sizeof w->acked_version, req->version_info);
        copy_field(w->acked_nonce, sizeof w->acked_nonce, nonce);
        w->acks++;
    }
    char **names = NULL;
    size_t n = 0;
    bool star = false;
    if (req->n_resource_names > ADS_MAX_NAMES ||
        names_set(req->resource_names, req->n_resource_names, &names, &n, &star) < 0) {
        *why = "too many resource names";
        rc = -EINVAL;
        goto out;
    }
    bool wildcard = star || ((t == PILOT_CDS || t == PILOT_LDS) && !req->n_resource_names);
    bool changed = !w->subscribed || wildcard != w->wildcard || n != w->n_names;
    for (size_t i = 0; !changed && i < n; i++)
        changed = strcmp(names[i], w->names[i]) != 0;
    names_free(w->names, w->n_names);
    w->names = names;
    w->n_names = n;
    w->wildcard = wildcard;
    w->subscribed = true;
    if (!*nonce || changed)
        push_type(c, (enum pilot_type)t, true, false);
out:
    envoy__service__discovery__v3__discovery_request__free_unpacked(req, NULL);
    return rc;
}

static int on_delta(struct ads_conn *c, const uint8_t *msg, size_t len, const char **why)
{
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest *req =
        envoy__service__discovery__v3__delta_discovery_request__unpack(NULL, len, msg);
    if (!req) {
        *why = "undecodable DeltaDiscoveryRequest";
        return -EINVAL;
    }
    int rc = take_node(c, req->node, why);
    int t = type_of_url(req->type_url);
    if (rc < 0 || t < 0)
        goto out;
    struct ads_watch *w = &c->w[t];
    const char *nonce = req->response_nonce ? req->response_nonce : "";
    if (*nonce && strcmp(nonce, w->sent_nonce)) {
        c->s->st.stale_requests++;
    } else if (*nonce && req->error_detail) {
        record_nack(c, (enum pilot_type)t, w->sent_version, nonce, req->error_detail);
    } else if (*nonce) {
        copy_field(w->acked_version, sizeof w->acked_version, w->sent_version);
        copy_field(w->acked_nonce, sizeof w->acked_nonce, nonce);
        w->acks++;
    }
    if (req->n_resource_names_subscribe > ADS_MAX_NAMES ||
        req->n_initial_resource_versions > ADS_MAX_NAMES ||
        w->n_names + req->n_resource_names_subscribe > ADS_MAX_NAMES) {
        *why = "too many resource names";
        rc = -EINVAL;
        goto out;
    }
    bool force = false;
    if (!w->subscribed) {
        w->subscribed = true;
        force = true;
        w->wildcard = (t == PILOT_CDS || t == PILOT_LDS) && !req->n_resource_names_subscribe;
        /* what the client already holds (after a reconnect): our versions are hex hashes */
        struct rver *k = calloc(req->n_initial_resource_versions + 1, sizeof *k);
        size_t nk = 0;
        for (size_t i = 0; k && i < req->n_initial_resource_versions; i++) {
            const char *key = req->initial_resource_versions[i]->key;
            const char *val = req->initial_resource_versions[i]->value;
            if (!key || !(k[nk].name = strdup(key)))
                continue;
            k[nk++].hash = val ? strtoull(val, NULL, 16) : 0;
        }
        qsort(k, nk, sizeof *k, cmp_rver);
        for (size_t i = 1; i < nk; i++)      /* drop duplicate keys */
            if (!strcmp(k[i].name, k[i - 1].name)) {
                free(k[i].name);
                memmove(&k[i], &k[i + 1], (nk - i - 1) * sizeof *k);
                nk--, i--;
            }
        known_free(w->known, w->n_known);
        w->known = k;
        w->n_known = k ? nk : 0;
        if (w->n_known)
            log_info("ads: %s resumes %s with %zu resources held", c->proxy.id, pilot_type_name((enum pilot_type)t),
                     w->n_known);
    }
    /* subscribe: merge into the sorted name set */
    if (req->n_resource_names_subscribe) {
        char **add = NULL;
        size_t nadd = 0;
        bool star = false;
        if (names_set(req->resource_names_subscribe, req->n_resource_names_subscribe, &add, &nadd,
                      &star) < 0) {
            rc = -ENOMEM;
            *why = "out of memory";
            goto out;
        }
        if (star && !w->wildcard)
            w->wildcard = force = true;
        char **merged = realloc(w->names, (w->n_names + nadd + 1) * sizeof *merged);
        if (!merged) {
            names_free(add, nadd);
            rc = -ENOMEM;
            *why = "out of memory";
            goto out;
        }
        w->names = merged;
        for (size_t i = 0; i < nadd; i++) {
            if (names_has(w->names, w->n_names, add[i])) {
                free(add[i]);
                continue;
            }
            w->names[w->n_names++] = add[i];
            qsort(w->names, w->n_names, sizeof *w->names, cmp_str);
            force = true;
        }
        free(add);
    }
    for (size_t i = 0; i < req->n_resource_names_unsubscribe; i++) {
        const char *name = req->resource_names_unsubscribe[i];
        if (!strcmp(name, "*")) {
            w->wildcard = false;
            continue;
        }
        char **hit = w->n_names ? bsearch(&name, w->names, w->n_names, sizeof *w->names, cmp_str) : NULL;
        if (hit) {
            free(*hit);
            memmove(hit, hit + 1, (size_t)(w->names + w->n_names - hit - 1) * sizeof *hit);
            w->n_names--;
        }
        struct rver *k = known_find(w, name);
        if (k) {
            free(k->name);
            memmove(k, k + 1, (size_t)(w->known + w->n_known - k - 1) * sizeof *k);
            w->n_known--;
            w->n_resources = w->n_known;
        }
    }
    if (force)
        push_type(c, (enum pilot_type)t, true, false);
out:
    envoy__service__discovery__v3__delta_discovery_request__free_unpacked(req, NULL);
    return rc;
}

int ads_conn_on_message(struct ads_conn *c, const uint8_t *msg, size_t len, const char **why)
{
    *why = "";
    if (c->finished)
        return 0;
    return c->delta ? on_delta(c, msg, len, why) : on_sotw(c, msg, len, why);
}

/* ---- streams and server ---- */

struct ads_conn *ads_conn_new(struct ads_server *s, bool delta, ads_send_fn send, void *ctx)
{
    if (s->st.live_conns >= ADS_MAX_CONNS)
        return NULL;
    struct ads_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->s = s;
    c->delta = delta;
    c->send = send;
    c->ctx = ctx;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->st.conns++;
    s->st.live_conns++;
    return c;
}

void ads_conn_free(struct ads_conn *c)
{
    if (!c)
        return;
    struct ads_server *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    for (int t = 0; t < PILOT_TYPE_COUNT; t++) {
        struct ads_watch *w = &c->w[t];
        if (w->pending)
            s->st.pending_pushes--;
        names_free(w->names, w->n_names);
        known_free(w->known, w->n_known);
        free(w->nack_error);
    }
    if (c->have_proxy)
        log_info("ads: %s disconnected", c->proxy.id);
    pilot_proxy_free(&c->proxy);
    s->st.live_conns--;
    free(c);
}

static void on_timer(struct loop *l, struct timer *t)
{
    struct ads_server *s = t->data;
    uint64_t now = loop_now_ms(l);
    if (!ads_debounce_due(&s->deb, now)) {
        timer_start(l, t, ads_debounce_deadline(&s->deb) - now);
        return;
    }
    ads_server_push_all(s);
}

struct ads_server *ads_server_new(struct loop *l, struct pilot_model *m, const struct ads_config *cfg)
{
    struct ads_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->loop = l;
    s->model = pilot_model_ref(m);
    s->deb.quiet_ms = cfg && cfg->debounce_ms ? cfg->debounce_ms : 100;
    s->deb.max_ms = cfg && cfg->debounce_max_ms ? cfg->debounce_max_ms : 10000;
    timer_init(&s->timer, on_timer, s);
    return s;
}

void ads_server_free(struct ads_server *s)
{
    if (!s)
        return;
    while (s->conns)
        ads_conn_free(s->conns);
    timer_stop(s->loop, &s->timer);
    cache_clear(s);
    pilot_model_unref(s->model);
    free(s);
}

struct pilot_model *ads_server_model(const struct ads_server *s)
{
    return s->model;
}

void ads_server_set_model(struct ads_server *s, struct pilot_model *m)
{
    pilot_model_ref(m);
    pilot_model_unref(s->model);
    s->model = m;
    cache_clear(s);          /* results of the old model must not outlive it */
    s->cache_ready = false;
    uint64_t now = now_ms(s);
    ads_debounce_event(&s->deb, now);
    uint64_t due = ads_debounce_deadline(&s->deb);
    timer_start(s->loop, &s->timer, due > now ? due - now : 0);
}

void ads_server_push_all(struct ads_server *s)
{
    s->batch_start_ms = s->deb.pending ? s->deb.first_ms : now_ms(s);
    ads_debounce_reset(&s->deb);
    timer_stop(s->loop, &s->timer);
    uint64_t t0 = now_ms(s);
    size_t n = 0;
    for (struct ads_conn *c = s->conns; c; c = c->next)
        if (c->have_proxy) {
            push_conn(c, true);
            n++;
        }
    uint64_t t1 = now_ms(s);
    log_info("ads: pushed config version %llu to %zu streams in %llu ms (%llu ms after the first change)",
             (unsigned long long)s->model->version, n, (unsigned long long)(t1 - t0),
             (unsigned long long)(t1 - s->batch_start_ms));
}

void ads_server_get_stats(const struct ads_server *s, struct ads_stats *out)
{
    *out = s->st;
}

int ads_conn_type_state(const struct ads_conn *c, enum pilot_type t, struct ads_type_state *st)
{
    if ((int)t < 0 || t >= PILOT_TYPE_COUNT)
        return -1;
    const struct ads_watch *w = &c->w[t];
    memset(st, 0, sizeof *st);
    st->subscribed = w->subscribed;
    st->wildcard = w->wildcard;
    st->n_names = w->n_names;
    st->n_resources = w->n_resources;
    memcpy(st->sent_version, w->sent_version, sizeof st->sent_version);
    memcpy(st->sent_nonce, w->sent_nonce, sizeof st->sent_nonce);
    memcpy(st->acked_version, w->acked_version, sizeof st->acked_version);
    memcpy(st->acked_nonce, w->acked_nonce, sizeof st->acked_nonce);
    memcpy(st->nacked_version, w->nacked_version, sizeof st->nacked_version);
    memcpy(st->nacked_nonce, w->nacked_nonce, sizeof st->nacked_nonce);
    st->nack_error = w->nack_error ? w->nack_error : "";
    st->sent = w->sent;
    st->acks = w->acks;
    st->nacks = w->nacks;
    st->pending = w->pending;
    return 0;
}

const char *ads_conn_node_id(const struct ads_conn *c)
{
    return c->have_proxy ? c->proxy.id : "";
}

const struct pilot_proxy *ads_conn_proxy(const struct ads_conn *c)
{
    return c->have_proxy ? &c->proxy : NULL;
}

struct ads_conn *ads_server_find(const struct ads_server *s, const char *id)
{
    for (struct ads_conn *c = s->conns; c; c = c->next)
        if (c->have_proxy && !strcmp(c->proxy.id, id))
            return c;
    return NULL;
}

char *ads_server_syncz_json(const struct ads_server *s)
{
    json_t *arr = json_array();
    for (struct ads_conn *c = s->conns; arr && c; c = c->next) {
        json_t *o = json_object(), *types = json_object();
        json_object_set_new(o, "proxy", json_string(ads_conn_node_id(c)));
        json_object_set_new(o, "proxy_type", json_string(!c->have_proxy ? "" :
                            c->proxy.type == PILOT_PROXY_ROUTER ? "router" : "sidecar"));
        json_object_set_new(o, "namespace", json_string(c->have_proxy ? c->proxy.ns : ""));
        json_object_set_new(o, "delta", json_boolean(c->delta));
        json_object_set_new(o, "proxyless_grpc", json_boolean(c->proxyless));
        for (int t = 0; t < PILOT_TYPE_COUNT; t++) {
            struct ads_type_state st;
            ads_conn_type_state(c, (enum pilot_type)t, &st);
            if (!st.subscribed)
                continue;
            json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:b,s:b}",
                                  "type", pilot_type_name((enum pilot_type)t),
                                  "sent_version", st.sent_version, "sent_nonce", st.sent_nonce,
                                  "acked_version", st.acked_version, "acked_nonce", st.acked_nonce,
                                  "nacked_version", st.nacked_version, "nacked_nonce", st.nacked_nonce,
                                  "nack_error", st.nack_error,
                                  "resources", (json_int_t)st.n_resources, "names", (json_int_t)st.n_names,
                                  "sent", (json_int_t)st.sent, "acks", (json_int_t)st.acks,
                                  "nacks", (json_int_t)st.nacks, "wildcard", st.wildcard,
                                  "pending", st.pending);
            json_object_set_new(types, pilot_type_url((enum pilot_type)t), j);
        }
        json_object_set_new(o, "types", types);
        json_array_append_new(arr, o);
    }
    char *out = arr ? json_dumps(arr, JSON_INDENT(2)) : NULL;
    json_decref(arr);
    return out;
}

/* A growable string for the metrics page (config time, not the request path). */
struct mbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void mb_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mb_printf(struct mbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = b->oom ? -1 : vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->p && b->n + (size_t)n < b->cap) {
            b->n += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

char *ads_server_metrics(const struct ads_server *s)
{
    struct mbuf b = {0};
    const struct ads_stats *st = &s->st;
    mb_printf(&b, "# HELP pilot_xds Number of endpoints connected to this pilot using XDS.\n"
                  "# TYPE pilot_xds gauge\npilot_xds %llu\n", (unsigned long long)st->live_conns);
    mb_printf(&b, "# HELP pilot_xds_pushes Pilot build and send errors for lds, rds, cds and eds.\n"
                  "# TYPE pilot_xds_pushes counter\n");
    for (int t = 0; t < PILOT_TYPE_COUNT; t++)
        mb_printf(&b, "pilot_xds_pushes{type=\"%s\"} %llu\n", pilot_type_name((enum pilot_type)t),
                  (unsigned long long)st->pushes[t]);
    uint64_t rej = 0;
    mb_printf(&b, "# HELP pilot_xds_rejects Rejected xDS configs per type.\n# TYPE pilot_xds_rejects counter\n");
    for (int t = 0; t < PILOT_TYPE_COUNT; t++) {
        rej += st->rejects[t];
        mb_printf(&b, "pilot_xds_rejects{type=\"%s\"} %llu\n", pilot_type_name((enum pilot_type)t),
                  (unsigned long long)st->rejects[t]);
    }
    mb_printf(&b, "# HELP pilot_total_xds_rejects Total number of XDS responses from pilot rejected by proxy.\n"
                  "# TYPE pilot_total_xds_rejects counter\npilot_total_xds_rejects %llu\n",
              (unsigned long long)rej);
    mb_printf(&b, "# HELP pilot_total_xds_internal_errors Total number of internal XDS errors in pilot.\n"
                  "# TYPE pilot_total_xds_internal_errors counter\npilot_total_xds_internal_errors %llu\n",
              (unsigned long long)st->internal_errors);
    mb_printf(&b, "# HELP pilot_xds_expired_nonce Requests answering a nonce that is not the last sent.\n"
                  "# TYPE pilot_xds_expired_nonce counter\npilot_xds_expired_nonce %llu\n",
              (unsigned long long)st->stale_requests);
    mb_printf(&b, "# HELP pilot_proxy_convergence_time Delay in seconds between config change and a proxy receiving all required configuration.\n"
                  "# TYPE pilot_proxy_convergence_time histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < 8; i++) {
        cum += st->conv_buckets[i];
        mb_printf(&b, "pilot_proxy_convergence_time_bucket{le=\"%g\"} %llu\n", conv_bounds[i],
                  (unsigned long long)cum);
    }
    cum += st->conv_buckets[8];
    mb_printf(&b, "pilot_proxy_convergence_time_bucket{le=\"+Inf\"} %llu\n"
                  "pilot_proxy_convergence_time_sum %.6f\npilot_proxy_convergence_time_count %llu\n",
              (unsigned long long)cum, st->conv_sum, (unsigned long long)st->conv_count);
    const struct pilot_model *m = s->model;
    size_t first;
    mb_printf(&b, "# HELP pilot_services Total services known to pilot.\n# TYPE pilot_services gauge\n"
                  "pilot_services %zu\n", m->reg->n);
    mb_printf(&b, "# HELP pilot_virt_services Total virtual services known to pilot.\n"
                  "# TYPE pilot_virt_services gauge\npilot_virt_services %zu\n",
              pilot_model_kind(m, ISTIO_VIRTUAL_SERVICE, &first));
    mb_printf(&b, "# HELP weftd_config_errors Configuration errors in the current snapshot (see /debug/configz).\n"
                  "# TYPE weftd_config_errors gauge\nweftd_config_errors %zu\n", m->errors.n);
    mb_printf(&b, "# HELP weftd_config_version Version of the current config snapshot.\n"
                  "# TYPE weftd_config_version gauge\nweftd_config_version %llu\n",
              (unsigned long long)m->version);
    mb_printf(&b, "# HELP weftd_xds_pending_pushes Pushes waiting for a slow proxy to read.\n"
                  "# TYPE weftd_xds_pending_pushes gauge\nweftd_xds_pending_pushes %llu\n",
              (unsigned long long)st->pending_pushes);
    mb_printf(&b, "# HELP weftd_xds_cache_hits Generated resources shared between streams with the same inputs.\n"
                  "# TYPE weftd_xds_cache_hits counter\nweftd_xds_cache_hits %llu\n"
                  "# HELP weftd_xds_cache_misses Resources generated for a stream.\n"
                  "# TYPE weftd_xds_cache_misses counter\nweftd_xds_cache_misses %llu\n",
              (unsigned long long)st->cache_hits, (unsigned long long)st->cache_misses);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- gRPC glue ---- */

static int grpc_send_fn(void *ctx, const uint8_t *msg, size_t len)
{
    return grpc_call_send(ctx, msg, len);
}

static void g_start(struct grpc_call *call, void *arg)
{
    struct ads_server *s = arg;
    bool delta = !strcmp(grpc_call_path(call), ADS_PATH_DELTA);
    struct ads_conn *c = ads_conn_new(s, delta, grpc_send_fn, call);
    if (!c) {
        grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many ADS streams", NULL, 0);
        return;
    }
    c->grpc = true;
    grpc_call_set_data(call, c);
    grpc_call_send_headers(call, NULL, 0);
}

static void g_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
    struct ads_conn *c = grpc_call_data(call);
    const char *why;
    if (c && ads_conn_on_message(c, msg, len, &why) < 0 && !c->finished) {
        c->finished = true;
        grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, why, NULL, 0);
    }
}

static void g_half_close(struct grpc_call *call)
{
    struct ads_conn *c = grpc_call_data(call);
    if (c && !c->finished) {
        c->finished = true;
        grpc_call_finish(call, GRPC_STATUS_OK, NULL, NULL, 0);
    }
}

static void g_writable(struct grpc_call *call)
{
    struct ads_conn *c = grpc_call_data(call);
    if (c)
        ads_conn_on_writable(c);
}

static void g_done(struct grpc_call *call, enum grpc_call_end why)
{
    (void)why;
    ads_conn_free(grpc_call_data(call));
}

static const struct grpc_handler ads_handler = {
    .on_start = g_start,
    .on_message = g_message,
    .on_half_close = g_half_close,
    .on_writable = g_writable,
    .on_done = g_done,
};

int ads_server_register(struct ads_server *s, struct grpc_server *g)
{
    int rc = grpc_server_add_method(g, ADS_PATH_SOTW, &ads_handler, s);
    return rc < 0 ? rc : grpc_server_add_method(g, ADS_PATH_DELTA, &ads_handler, s);
}

void ads_server_finish_all(struct ads_server *s)
{
    for (struct ads_conn *c = s->conns; c; c = c->next)
        if (c->grpc && !c->finished) {
            c->finished = true;
            grpc_call_finish(c->ctx, GRPC_STATUS_UNAVAILABLE, "weftd is shutting down", NULL, 0);
        }
}
