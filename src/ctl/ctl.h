/* weftctl: the mesh CLI. `weftctl mesh up|apply|delete|status|exec|logs|down`.
 *
 * One supervisor process per mesh owns every process it starts (weftd, and per pod weft-proxy
 * and the workload's commands); the other verbs talk to it over a unix socket in the state dir
 * (docs/design.md "weftctl mesh"). Config-time code everywhere: allocates freely. */
#ifndef WEFT_CTL_CTL_H
#define WEFT_CTL_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "istio/config.h"

#define CTL_MAX_CONTAINERS 8
#define CTL_MAX_PORTS 16

struct ctl_kv {
    char *k, *v;
};

struct ctl_container {
    char *name;
    char **argv;        /* command + args, NULL-terminated; argv[0] resolved to a path */
    size_t argc;
    struct ctl_kv *env;
    size_t n_env;
    uint32_t ports[CTL_MAX_PORTS];
    char *port_names[CTL_MAX_PORTS]; /* may be NULL */
    size_t n_ports;
    long run_as_user;   /* securityContext.runAsUser, -1 when unset */
};

/* A Deployment as weftctl runs it (apps/v1; image ignored). */
struct ctl_deployment {
    char *name, *ns, *file;
    int line;
    int replicas;
    struct ctl_kv *labels;      /* pod template labels */
    size_t n_labels;
    struct ctl_kv *annotations; /* pod template annotations */
    size_t n_annotations;
    char *service_account;
    struct ctl_container containers[CTL_MAX_CONTAINERS];
    size_t n_containers;
    uint32_t hash;              /* of the pod template: a change replaces the pods */
};

/* One document of a manifest file, kept as its own text so that objects are applied and
 * deleted one by one (by kind/namespace/name), as kubectl does. */
struct ctl_doc {
    char *key;                       /* "Kind/namespace/name" */
    char *text;                      /* the document as written */
    int line;                        /* of its first line in the file */
    struct ctl_deployment *dep;      /* a Deployment, else NULL */
    struct istio_object_list objs;   /* what weftd serves (Namespace, Service, Istio kinds) */
};

/* Everything read from one manifest file. */
struct ctl_manifest {
    char *path;
    struct ctl_doc *docs;
    size_t n;
};

/* ---- k8s.c: reading Kubernetes-style YAML ---- */
/* Reads one file. Problems are appended to errs as "FILE:LINE: path: problem"; returns 0 when
 * there were none (then *out is filled; free with ctl_manifest_free). */
int ctl_manifest_read(const char *path, struct ctl_manifest *out, struct istio_errors *errs);
void ctl_manifest_free(struct ctl_manifest *m);
void ctl_doc_free(struct ctl_doc *d);
void ctl_deployment_free(struct ctl_deployment *d);
const char *ctl_kv_get(const struct ctl_kv *kv, size_t n, const char *k);

/* ---- util.c ---- */
/* Runs argv (NULL-terminated) and waits. Output goes to /dev/null unless `quiet` is 0 (then
 * stderr is kept in err, errlen bytes). Returns the exit status (or -1 when it could not run). */
int ctl_run(char *const argv[], char *err, size_t errlen);
#define CTL_RUN(err, errlen, ...) ctl_run((char *const[]){__VA_ARGS__, NULL}, err, errlen)
/* Resolves a program name as execvp would, with weftctl's own directory first. */
char *ctl_which(const char *prog);
char *ctl_read_file(const char *path, size_t *len);
int ctl_write_file(const char *path, const char *text);  /* in place (keeps the inode) */
int ctl_write_atomic(const char *path, const char *text); /* rename over */
int ctl_mkdirs(const char *path);
void ctl_rmtree(const char *path);
char *ctl_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
double ctl_now(void);
void ctl_sleep_ms(int ms);
/* The directory weftctl's binary is in (build/bin): weftd, weft-proxy, weft-init live there. */
const char *ctl_bindir(void);

/* ---- netns.c: namespaces, veths, the bridge ---- */
int ctl_netns_add(const char *ns, char *err, size_t errlen);
void ctl_netns_del(const char *ns);
/* Creates veth host<->eth0 into ns, attaches host to bridge, addresses eth0 with ip/prefix,
 * brings lo up and routes default via gw. */
int ctl_netns_wire(const char *ns, const char *host_if, const char *bridge, const char *ip,
                   int prefix, const char *gw, char *err, size_t errlen);
/* Kills (SIGKILL) every process whose network namespace is ns. Returns how many. */
int ctl_netns_kill_all(const char *ns);
/* Opens a TCP connection from inside ns (the caller's own namespace is restored). -1 on error. */
int ctl_netns_connect(const char *ns, const char *ip, int port, int timeout_ms);
/* GET path from ip:port inside ns (ns NULL: here); body into buf. Returns the status or -1. */
int ctl_http_get(const char *ns, const char *ip, int port, const char *path, char *buf, size_t cap);
/* Enters ns for this process: network namespace, and a private mount namespace where the pod's
 * /etc/netns/NS/hosts is bound over /etc/hosts (what `ip netns exec` does). */
int ctl_netns_enter(const char *ns);
/* Forks a process inside ns (setsid; uid/gid when uid >= 0; env extra entries; output to log
 * appended). Returns the pid or -1. */
pid_t ctl_spawn_in(const char *ns, char *const argv[], char *const env[], long uid,
                   const char *log);

/* ---- state.c: the state dir and leftovers ---- */
struct ctl_opts {
    char state_dir[256];
    char name[16];      /* namespace/interface prefix, contains "wm" */
    char bridge[16];
    uint32_t net;       /* subnet base, host order */
    int prefix;
    int foreground;
    const char *domain;
};
void ctl_opts_default(struct ctl_opts *o);
/* Parses --state-dir, --name, --bridge, --subnet out of argv (removing them). -1 on error. */
int ctl_opts_parse(struct ctl_opts *o, int *argc, char **argv);
void ctl_ip_str(uint32_t net, uint32_t host, char out[16]);
char *ctl_state_path(const struct ctl_opts *o, const char *rel);
/* The pid of a live supervisor of this state dir, or 0. */
pid_t ctl_supervisor_pid(const struct ctl_opts *o);
/* Removes what a dead mesh of these options left: processes, namespaces, veths, the bridge,
 * iptables rules, the state dir. Returns the number of things removed. */
int ctl_clean_leftovers(const struct ctl_opts *o);
int ctl_iptables_forward(const struct ctl_opts *o, int add);
/* 0 when no interface has an address in the mesh's subnet (or the subnet in its network);
 * else prints one line naming the interface and returns -1. */
int ctl_subnet_check(const struct ctl_opts *o);

/* ---- client.c: talking to the supervisor ---- */
/* Sends one request (words joined by tabs) and copies the answer to stdout. Returns the
 * supervisor's exit code, or -1 when no mesh is running. */
int ctl_request(const struct ctl_opts *o, const char *const *words, size_t n);
int ctl_preflight(void);

/* ---- supervisor ---- */
int ctl_supervise(const struct ctl_opts *o, char **files, size_t n, int report_fd);

/* ---- verbs ---- */
int ctl_cmd_up(int argc, char **argv);
int ctl_cmd_down(int argc, char **argv);
int ctl_cmd_apply(int argc, char **argv, int del);
int ctl_cmd_status(int argc, char **argv);
int ctl_cmd_exec(int argc, char **argv);
int ctl_cmd_logs(int argc, char **argv);

#endif
