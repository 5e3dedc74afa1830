/* The admin HTTP server on the main thread's loop. */
#ifndef WEFT_PROXY_ADMIN_H
#define WEFT_PROXY_ADMIN_H

#include <stddef.h>
#include <time.h>

#include "common/loop.h"
#include "proxy/config.h"

struct admin;

/* What the admin server needs from the process, without knowing its internals. */
struct admin_hooks {
    void *arg;
    struct snapshot *(*snapshot)(void *arg);   /* current snapshot, one reference for the caller */
    const char *(*state)(void *arg);           /* "LIVE", "DRAINING", "PRE_INITIALIZING" */
    void (*quit)(void *arg);                   /* POST /quitquitquit */
    unsigned concurrency;
    unsigned drain_time_s;
    const char *config_path;
    time_t start_time;
};

/* Listens on cfg->addr. Returns NULL with err set when the address cannot be bound. */
struct admin *admin_start(struct loop *loop, const struct admin_config *cfg, const struct admin_hooks *hooks,
                          char *err, size_t errlen);
void admin_stop(struct admin *a);

#endif
