/* ctl/vips: Service VIPs for the traffic no sidecar captures (pods without a sidecar, excluded
 * outbound ports): kube-proxy's job. Each pod's own nat OUTPUT jumps to a WEFT-SERVICES chain
 * that DNATs VIP:port to one ready endpoint (equal odds, as kube-proxy's iptables mode), so the
 * client's own conntrack undoes it on the replies (no host forwarding, no masquerade: the server
 * sees the client's address). The jump is appended after weft-init's ISTIO_OUTPUT, so a sidecar
 * still captures what it captures and sees the VIP as the original destination. */
#include <stdlib.h>
#include <string.h>

#include "ctl/sup.h"
#include "pilot/registry.h"

static void take_objs(struct mesh_registry *out, size_t *n, const struct ctl_doc *docs, size_t nd)
{
    for (size_t i = 0; i < nd; i++)
        for (size_t k = 0; k < docs[i].objs.n; k++)
            if (!docs[i].objs.items[k]->invalid) {
                out->objs = realloc(out->objs, (*n + 1) * sizeof *out->objs);
                out->objs[(*n)++] = docs[i].objs.items[k];
            }
}

void mesh_registry_build(struct mesh *m, int with_pods, struct mesh_registry *out)
{
    memset(out, 0, sizeof *out);
    size_t n = 0;
    take_objs(out, &n, m->docs, m->n_docs);
    if (with_pods) {
        struct istio_errors errs = {0};
        out->wes = calloc(m->n_pods + 1, sizeof *out->wes);
        for (size_t i = 0; i < m->n_pods; i++) {
            struct ctl_manifest *we = &out->wes[out->n_wes];
            if (m->pods[i]->ready && !m->pods[i]->failed && ctl_manifest_read(m->pods[i]->we_path, we, &errs) == 0) {
                take_objs(out, &n, we->docs, we->n);
                out->n_wes++;
            }
        }
        istio_errors_free(&errs);
    }
    out->r = registry_build(out->objs, n, m->o->domain, NULL);
}

void mesh_registry_free(struct mesh_registry *mr)
{
    registry_free(mr->r);
    free(mr->objs);
    for (size_t i = 0; i < mr->n_wes; i++)
        ctl_manifest_free(&mr->wes[i]);
    free(mr->wes);
}

/* The WEFT-SERVICES chain's rules, as iptables-restore input lines. */
static void service_rules(const struct registry *r, FILE *f)
{
    for (size_t s = 0; r && s < r->n; s++) {
        const struct reg_service *sv = &r->svcs[s];
        if (!sv->vip[0] || strchr(sv->vip, ':') || sv->from_service_entry)
            continue;
        for (size_t p = 0; p < sv->n_ports; p++) {
            size_t n = sv->n_eps[p];
            for (size_t e = 0; e < n; e++) {
                const struct reg_endpoint *ep = &sv->eps[p][e];
                fprintf(f, "-A WEFT-SERVICES -d %s/32 -p tcp -m tcp --dport %u", sv->vip, sv->ports[p].port);
                if (e + 1 < n) /* 1/n, then 1/(n-1) of the rest, ...: equal odds */
                    fprintf(f, " -m statistic --mode random --probability %.5f", 1.0 / (double)(n - e));
                fprintf(f, " -j DNAT --to-destination %s:%u\n", ep->address, ep->port);
            }
        }
    }
}

void mesh_write_vips(struct mesh *m)
{
    struct mesh_registry mr;
    mesh_registry_build(m, 1, &mr);
    char *rules = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&rules, &len);
    service_rules(mr.r, f);
    fclose(f);
    mesh_registry_free(&mr);
    for (size_t i = 0; i < m->n_pods; i++) {
        struct pod *p = m->pods[i];
        if (!p->ready || p->failed)
            continue;
        char *text = ctl_sprintf("*nat\n:WEFT-SERVICES - [0:0]\n-F WEFT-SERVICES\n%s%sCOMMIT\n", rules,
                                 p->vip_chain ? "" : "-A OUTPUT -p tcp -j WEFT-SERVICES\n");
        char *path = ctl_sprintf("%s/services.rules", p->dir), err[256] = "cannot write the rules";
        if (ctl_write_atomic(path, text) == 0 &&
            CTL_RUN(err, sizeof err, "ip", "netns", "exec", p->netns, "iptables-restore", "-w", "--noflush", path) == 0)
            p->vip_chain = 1;
        else
            fprintf(stderr, "weftctl: pod %s: service VIP rules: %s\n", p->name, err);
        free(path), free(text);
    }
    free(rules);
}
