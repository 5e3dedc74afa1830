/* HTTP/2 upstream connections (see upstream_h2.h). */
#include "proxy/upstream_h2.h"

#include <errno.h>

#include "proxy/hstream.h"

int uh2_stream_start(struct hstream *s, const struct host *h)
{
    (void)s;
    (void)h;
    return -ENOTSUP;
}

bool uh2_stream_pump(struct hstream *s)
{
    (void)s;
    return false;
}

void uh2_stream_consumed(struct hstream *s, size_t n)
{
    (void)s;
    (void)n;
}

void uh2_stream_detach(struct uh2_stream *us, bool reset)
{
    (void)us;
    (void)reset;
}

void uh2_close_idle(struct wcluster *wc)
{
    (void)wc;
}
