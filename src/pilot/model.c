/* pilot/model: immutable config snapshots. */
#include "pilot/model.h"

#include "istio/networking/v1alpha3/destination_rule.pb-c.h"
#include "istio/networking/v1alpha3/virtual_service.pb-c.h"

#include <stdlib.h>
#include <string.h>

static int obj_cmp(const void *a, const void *b)
{
    const struct istio_object *x = *(const struct istio_object *const *)a;
    const struct istio_object *y = *(const struct istio_object *const *)b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    int c = strcmp(x->ns, y->ns);
    if (!c)
        c = strcmp(x->name, y->name);
    if (!c)
        c = strcmp(x->file, y->file);
    if (!c)
        c = x->line - y->line;
    return c;
}

struct pilot_model *pilot_model_new(struct istio_object *const *objs, size_t n,
                                    const struct istio_errors *errs, const char *domain_suffix,
                                    uint64_t version)
{
    struct pilot_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->refs = 1;
    m->version = version;
    m->domain_suffix = strdup(domain_suffix ? domain_suffix : "cluster.local");
    m->objs = calloc(n ? n : 1, sizeof *m->objs);
    if (!m->domain_suffix || !m->objs || (errs && istio_errors_append(&m->errors, errs) < 0))
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (!objs[i]->invalid && objs[i]->spec)
            m->objs[m->n_objs++] = istio_object_ref(objs[i]);
    qsort(m->objs, m->n_objs, sizeof *m->objs, obj_cmp);
    size_t w = 0;
    for (size_t i = 0; i < m->n_objs; i++) {
        struct istio_object *o = m->objs[i];
        if (w && m->objs[w - 1]->kind == o->kind && !strcmp(m->objs[w - 1]->ns, o->ns) &&
            !strcmp(m->objs[w - 1]->name, o->name)) {
            istio_errors_add(&m->errors, "%s:%d: %s %s/%s is also defined at %s:%d; ignored",
                             o->file, o->line, istio_kind_name(o->kind), o->ns, o->name,
                             m->objs[w - 1]->file, m->objs[w - 1]->line);
            istio_object_unref(o);
            continue;
        }
        m->objs[w++] = o;
    }
    m->n_objs = w;
    m->hosts = calloc(w ? w : 1, sizeof *m->hosts);
    m->n_hosts = calloc(w ? w : 1, sizeof *m->n_hosts);
    if (!m->hosts || !m->n_hosts)
        goto fail;
    for (size_t i = 0; i < w; i++) {
        const struct istio_object *o = m->objs[i];
        char *const *hs = NULL;
        size_t nh = 0;
        char *one[1];
        if (o->kind == ISTIO_VIRTUAL_SERVICE) {
            const Istio__Networking__V1alpha3__VirtualService *vs = (const void *)o->spec;
            hs = vs->hosts;
            nh = vs->n_hosts;
        } else if (o->kind == ISTIO_DESTINATION_RULE) {
            one[0] = ((const Istio__Networking__V1alpha3__DestinationRule *)o->spec)->host;
            hs = one;
            nh = 1;
        }
        if (!nh)
            continue;
        if (!(m->hosts[i] = calloc(nh, sizeof *m->hosts[i])))
            goto fail;
        for (size_t h = 0; h < nh; h++) {
            if (!(m->hosts[i][h] = istio_resolve_host(hs[h], o->ns, m->domain_suffix)))
                goto fail;
            m->n_hosts[i] = h + 1;
        }
    }
    if (!(m->reg = registry_build(m->objs, m->n_objs, m->domain_suffix, &m->errors)))
        goto fail;
    return m;
fail:
    pilot_model_unref(m);
    return NULL;
}

struct pilot_model *pilot_model_ref(struct pilot_model *m)
{
    if (m)
        __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
    return m;
}

void pilot_model_unref(struct pilot_model *m)
{
    if (!m || __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    registry_free(m->reg);
    for (size_t i = 0; m->hosts && i < m->n_objs; i++) {
        for (size_t h = 0; h < m->n_hosts[i]; h++)
            free(m->hosts[i][h]);
        free(m->hosts[i]);
    }
    free(m->hosts);
    free(m->n_hosts);
    for (size_t i = 0; i < m->n_objs; i++)
        istio_object_unref(m->objs[i]);
    free(m->objs);
    istio_errors_free(&m->errors);
    free(m->domain_suffix);
    free(m);
}

size_t pilot_model_kind(const struct pilot_model *m, enum istio_kind k, size_t *first)
{
    size_t i = 0;
    while (i < m->n_objs && m->objs[i]->kind < k)
        i++;
    *first = i;
    size_t j = i;
    while (j < m->n_objs && m->objs[j]->kind == k)
        j++;
    return j - i;
}

const struct istio_object *pilot_model_find(const struct pilot_model *m, enum istio_kind k,
                                            const char *ns, const char *name)
{
    size_t first, n = pilot_model_kind(m, k, &first);
    for (size_t i = first; i < first + n; i++)
        if (!strcmp(m->objs[i]->ns, ns) && !strcmp(m->objs[i]->name, name))
            return m->objs[i];
    return NULL;
}
