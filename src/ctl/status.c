/* ctl/status: `weftctl mesh status`: pods, addresses, readiness, and each sidecar's xDS state
 * from its own stats (connected, CDS/LDS accepted or rejected). */
#include <stdlib.h>
#include <string.h>

#include "ctl/sup.h"

static long stat_of(const char *stats, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "%s: ", name);
    const char *s = strstr(stats, key);
    return s ? atol(s + strlen(key)) : -1;
}

void mesh_status(struct mesh *m, FILE *out)
{
    static char buf[1 << 20];
    mesh_reap(m);
    fprintf(out, "%-36s %-10s %-14s %-6s %-8s %s\n", "POD", "NAMESPACE", "IP", "READY", "SIDECAR", "PROXY SYNC");
    for (size_t i = 0; i < m->n_pods; i++) {
        struct pod *p = m->pods[i];
        size_t total = p->dep->n_containers + (p->injected ? 1 : 0), up = 0;
        for (size_t c = 0; c < p->dep->n_containers; c++)
            up += p->app[c] > 0 && p->ready;
        const char *sync = "-";
        if (p->injected && p->proxy > 0) {
            up++;
            if (ctl_http_get(p->netns, "127.0.0.1", 15000, "/stats", buf, sizeof buf) != 200)
                sync = "NO ADMIN";
            else if (stat_of(buf, "cluster_manager.cds.update_rejected") > 0 ||
                     stat_of(buf, "listener_manager.lds.update_rejected") > 0)
                sync = "NACKED";
            else if (stat_of(buf, "control_plane.connected_state") != 1)
                sync = "DISCONNECTED";
            else if (stat_of(buf, "cluster_manager.cds.update_success") > 0 &&
                     stat_of(buf, "listener_manager.lds.update_success") > 0)
                sync = "SYNCED";
            else
                sync = "PENDING";
        }
        char ready[16];
        snprintf(ready, sizeof ready, "%zu/%zu", up, total);
        fprintf(out, "%-36s %-10s %-14s %-6s %-8s %s%s\n", p->name, p->ns, p->ip, ready,
                p->injected ? "yes" : "no", sync, p->failed ? "  (failed)" : "");
    }
    fprintf(out, "weftd %s:15010 (debug :15014) %s\n", m->weftd_ip, m->weftd > 0 ? "running" : "EXITED");
}
