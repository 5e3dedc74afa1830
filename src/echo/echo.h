/* weft-echo: Weft's sample and test workload (Istio's echo app / httpbin role).
 * This header is the command-line model shared by main.c and the flag fuzzer. */
#ifndef WEFT_ECHO_ECHO_H
#define WEFT_ECHO_ECHO_H

#include <stdbool.h>
#include <stdint.h>

#define ECHO_MAX_PORTS 8        /* --port may be given this many times */
#define ECHO_MAX_CALLS 8        /* --call may be given this many times */
#define ECHO_URL_MAX 1024       /* longest --call URL */
#define ECHO_NAME_MAX 128       /* longest --name / --version / --pod / --bind */
#define ECHO_ERR_MAX 256

/* One --call target: http://host[:port]/path, split. */
struct echo_call_url {
    char url[ECHO_URL_MAX];
    char host[ECHO_NAME_MAX];
    uint16_t port;
    char path[ECHO_URL_MAX];
};

struct echo_config {
    uint16_t ports[ECHO_MAX_PORTS];
    int nports;
    uint16_t grpc_port;                 /* 0: no gRPC listener */
    char name[ECHO_NAME_MAX], version[ECHO_NAME_MAX], pod[ECHO_NAME_MAX], bind[ECHO_NAME_MAX];
    struct echo_call_url calls[ECHO_MAX_CALLS];
    int ncalls;
    bool call_optional;
    double fail_rate;                   /* 0..1 */
    int fail_status;                    /* 200..599 [503] */
    uint32_t delay_ms;                  /* added to every response [0] */
    char fail_file[ECHO_URL_MAX];       /* while this file exists every answer (/healthz too)
                                         * is fail_status: a test flips a running backend */
    bool help;
};

/* Parses argv into c (all fields reset first). On error writes a one-line reason into
 * err[ECHO_ERR_MAX] and returns -1; returns 0 on success (also for --help, with c->help). */
int echo_parse_args(int argc, char **argv, struct echo_config *c, char *err);

/* Splits an http:// URL into u (u->url keeps the original). Returns 0 or -1 with err set. */
int echo_parse_url(const char *url, struct echo_call_url *u, char *err);

#endif
