/* Fuzz target: arbitrary bytes as a file of Istio YAML through the parser and validator
 * (src/istio), then, for whatever is valid, the registry and the translator for a sidecar
 * and a router (src/pilot). Never crash, never leak; every generated resource must map
 * onto the Envoy protos (pilot_translate fails otherwise, and that is a bug). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pilot/translate.h"

#define FUZZ_MAX_INPUT (64 * 1024)

static void translate_for(struct pilot_model *m, const char *id, const char *label)
{
    struct pilot_proxy p = {0};
    char err[128];
    if (pilot_proxy_parse(id, &p, err, sizeof err) == 0) {
        if (label)
            pilot_proxy_set_label(&p, "istio", label);
        pilot_proxy_complete(&p, m);
        for (int t = 0; t < PILOT_TYPE_COUNT; t++) {
            struct pilot_resources r;
            struct istio_errors warn = {0};
            int rc = pilot_translate(m, &p, (enum pilot_type)t, &r, &warn);
            for (size_t i = 0; rc < 0 && i < warn.n; i++)
                if (!strncmp(warn.msgs[i], "internal:", 9))
                    abort(); /* the translator built a resource the Envoy protos reject */
            if (rc == 0)
                pilot_resources_free(&r);
            istio_errors_free(&warn);
        }
    }
    pilot_proxy_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    struct istio_object_list l = {0};
    struct istio_errors e = {0};
    if (istio_parse((const char *)data, size, "fuzz.yaml", NULL, &l, &e) >= 0) {
        struct pilot_model *m = pilot_model_new(l.items, l.n, &e, NULL, 1);
        if (m) {
            translate_for(m, "sidecar~10.1.0.10~pp.default~default.svc.cluster.local", NULL);
            translate_for(m, "router~10.1.0.100~gw.istio-system~istio-system.svc.cluster.local",
                          "ingressgateway");
            pilot_model_unref(m);
        }
    }
    istio_object_list_free(&l);
    istio_errors_free(&e);
    return 0;
}
