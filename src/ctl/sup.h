/* ctl/sup: the supervisor's model of a running mesh (internal to src/ctl). */
#ifndef WEFT_CTL_SUP_H
#define WEFT_CTL_SUP_H

#include <stdio.h>

#include "ctl/ctl.h"

struct pod {
    char name[128], ns[64], netns[160], veth[16], ip[16];
    uint32_t host;                  /* address = subnet + host */
    const struct ctl_deployment *dep; /* borrowed from mesh.keep */
    int injected;
    pid_t proxy;                    /* 0 when none or exited */
    int proxy_exit;                 /* -1 while running */
    pid_t app[CTL_MAX_CONTAINERS];
    int app_exit[CTL_MAX_CONTAINERS];
    int ready, failed;
    int vip_chain;                  /* WEFT-SERVICES jump installed (vips.c) */
    char *dir;                      /* STATE/pods/NAME: bootstrap, logs */
    char *we_path;                  /* the WorkloadEntry file in weftd's config dir */
};

struct mesh {
    const struct ctl_opts *o;
    struct ctl_doc *docs;           /* the applied objects, one per kind/namespace/name */
    size_t n_docs;
    struct ctl_deployment **keep;   /* every Deployment version a pod may point at */
    size_t n_keep;
    struct pod **pods;
    size_t n_pods;
    unsigned char *used;            /* host numbers taken */
    uint32_t n_hosts;
    unsigned seq;
    pid_t weftd;
    char gw[16], weftd_ip[16];
    char *objs_dir, *pods_cfg_dir;
};

/* pods.c */
/* Brings the pods to what the Deployments in m->docs ask for: new pods are started (all in
 * phases: plumbing + sidecars, sidecars ready, apps, apps ready, registration), then the pods
 * no longer wanted are stopped. Progress and problems are written to out. Returns the number
 * of pods that failed. */
int mesh_reconcile(struct mesh *m, FILE *out);
/* Stops pods (deregistered first, then apps, then sidecars drain) and frees them. */
void mesh_stop_pods(struct mesh *m, struct pod **pods, size_t n);
/* Rewrites every pod's /etc/hosts from the Services of m->docs. */
void mesh_write_hosts(struct mesh *m);
/* Collects exits of children (nonblocking). */
void mesh_reap(struct mesh *m);
/* STATE/pods.txt: one line per pod for exec/logs. */
void mesh_write_pod_list(struct mesh *m);
/* Waits until weftd has pushed config at least as new as `after` and every proxy ACKed it. */
void mesh_wait_converged(struct mesh *m, long after, double timeout_s);
long mesh_config_version(struct mesh *m);

/* vips.c */
/* The registry of the applied objects and, with_pods, of the ready pods' WorkloadEntries (read
 * back from weftd's config dir): what weftd itself would build. */
struct mesh_registry {
    struct registry *r;
    struct istio_object **objs;
    struct ctl_manifest *wes;
    size_t n_wes;
};
void mesh_registry_build(struct mesh *m, int with_pods, struct mesh_registry *out);
void mesh_registry_free(struct mesh_registry *mr);
/* Rewrites every ready pod's WEFT-SERVICES chain (Service VIP:port -> ready endpoints). */
void mesh_write_vips(struct mesh *m);

/* status.c */
void mesh_status(struct mesh *m, FILE *out);

#endif
