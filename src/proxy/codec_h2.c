/* The downstream HTTP/2 codec (RFC 9113) on nghttp2: one server session per connection,
 * streams from a bounded per-connection pool, each a codec-neutral struct hstream handed to
 * the router.
 *
 * Bytes come and go only through the connection manager's read/write pair (hconn_input /
 * hconn_output / hconn_flush in http_conn.c), so a TLS transport replaces them in one place.
 * nghttp2 parses what was read (nghttp2_session_mem_recv) and writes frames into the
 * connection's output buffer (send callback); when that buffer is full it stops and resumes
 * after a flush, so output is bounded too.
 *
 * Flow control never buffers without limit: automatic WINDOW_UPDATEs are off, we advertise
 * the configured initial_stream_window_size / initial_connection_window_size, and a stream's
 * window (and the connection's) is reopened (nghttp2_session_consume) only when its body bytes
 * have moved on to the upstream, so a stream holds at most its window (rqbody + rqq) and a
 * connection at most its connection window. Response bytes are pulled from the upstream's
 * buffer only as the client's window allows; a full buffer stops reading the upstream (or,
 * for an HTTP/2 upstream, stops reopening its window). */
#include "proxy/codec_h2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>

#include "common/log.h"
#include "proxy/config.h"
#include "proxy/h2_mem.h"
#include "proxy/hstream.h"
#include "proxy/worker.h"

/* Rapid reset (CVE-2023-44487): once a connection has opened this many streams, if at least
 * half were reset by the client before their response completed, it is closed with GOAWAY
 * ENHANCE_YOUR_CALM (Envoy's premature-reset rule). */
#define H2_PREMATURE_RESET_MIN_STREAMS 100
/* Slots for request headers per stream (they share one I/O buffer with the strings). */
#define H2_HEADER_SLOTS_MAX 1024

struct h2s {
    struct hstream hs;
    struct h2c *c;
    struct h2s *next_free;
    struct timer idle;             /* stream_idle_timeout */
    bool deferred;                 /* the DATA provider said "deferred" */
    bool response_submitted;
    bool end_sent;                 /* END_STREAM went out */
    bool rst_sent;
    bool rx_reset;                 /* the client reset it */
    bool started;                  /* router_start ran */
    bool trailers_submitted;
    bool dirty;                    /* something happened to it: service_streams looks at it */
    size_t nslots;
    struct snapshot *hold;         /* the snapshot of hs.hcm when the connection moved on (h2c_rebind) */
};

struct h2c {
    const struct h2c_io *io;
    void *d;                       /* the connection (io context) */
    struct worker *w;
    struct hcm_config *hcm;
    const struct sockaddr_storage *peer, *local;
    const struct transport *tp;
    nghttp2_session *ng;
    struct h2s *streams;
    struct h2s *free;
    uint32_t nstreams, active;
    uint64_t opened, premature_resets;
    uint64_t data_frames_sent, window_updates_recv, priority_frames_recv, empty_frames_in_a_row;
    bool fatal;                    /* close the connection after flushing */
    bool goaway_sent;
    bool draining;
    bool in_run;
    bool woken;                    /* h2c_run was called while running */
    bool shut;
    bool run_pending;              /* run_later is queued on the loop */
    bool all_dirty;                /* a connection-wide change: look at every stream */
    struct deferred run_later;
    uint64_t idle_since_ms;
    uint32_t requests;             /* max_requests_per_connection */
};

static inline void h2stat(struct h2c *c, size_t field, int64_t delta)
{
    stats_add(c->hcm->h2_stats, c->w->id, field, delta);
}
static inline void hstat(struct h2c *c, size_t field, int64_t delta)
{
    stats_add(c->hcm->stats, c->w->id, field, delta);
}

static struct h2s *stream_of(struct h2c *c, int32_t id)
{
    return nghttp2_session_get_stream_user_data(c->ng, id);
}

/* Ends the connection with GOAWAY(code) after what is queued. */
static void go_away(struct h2c *c, uint32_t code, size_t flood_stat)
{
    if (flood_stat != (size_t)-1)
        h2stat(c, flood_stat, 1);
    if (!c->goaway_sent) {
        nghttp2_session_terminate_session(c->ng, code);
        c->goaway_sent = true;
    }
    c->fatal = true;
}

/* --- hstream ops --- */

static void run_later(struct deferred *d)
{
    struct h2c *c = (struct h2c *)((char *)d - offsetof(struct h2c, run_later));
    c->run_pending = false;
    h2c_run(c);
}

/* A stream has news (its upstream answered, a timer fired). The connection runs once after the
 * current event batch rather than now: the answers of all its streams that came in the same
 * batch then leave in one write, not one write each. */
static void wake(struct hstream *hs)
{
    struct h2c *c = ((struct h2s *)hs)->c;
    ((struct h2s *)hs)->dirty = true;
    if (c->in_run) {
        c->woken = true; /* woken from inside a run (an upstream read): it takes one more round */
        return;
    }
    if (c->run_pending)
        return; /* a run is queued: it will see this stream */
    c->run_pending = true;
    loop_defer(c->w->loop, &c->run_later, run_later);
}

static void request_consumed(struct hstream *hs, size_t n)
{
    struct h2s *st = (struct h2s *)hs;
    nghttp2_session_consume(st->c->ng, hs->id, n);
}

static const struct hstream_ops ops = {wake, request_consumed};

static void on_stream_idle(struct loop *l, struct timer *t)
{
    (void)l;
    struct h2s *st = t->data;
    struct h2c *c = st->c;
    hstat(c, HS_DOWNSTREAM_RQ_IDLE_TIMEOUT, 1);
    st->hs.si.flags |= 1u << RF_STREAM_IDLE_TIMEOUT;
    if (!st->hs.rs_head_taken && !st->hs.rs_head) {
        router_local_reply(&st->hs, 408, 1u << RF_STREAM_IDLE_TIMEOUT, "stream_idle_timeout", "stream timeout");
    } else if (!st->rst_sent) {
        st->rst_sent = true;
        nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, st->hs.id, NGHTTP2_CANCEL);
    }
    st->dirty = true;
    h2c_run(c);
}

static void touch(struct h2s *st)
{
    timer_start(st->c->w->loop, &st->idle, st->c->hcm->stream_idle_timeout_ms);
}

/* --- the stream pool --- */

static struct h2s *stream_new(struct h2c *c, int32_t id)
{
    struct h2s *st = c->free;
    if (!st)
        return NULL;
    struct buf *hb = buf_get(&c->w->bufs);
    if (!hb)
        return NULL;
    c->free = st->next_free;
    memset(&st->hs, 0, sizeof st->hs);
    struct hstream *s = &st->hs;
    s->ops = &ops;
    s->codec = c;
    s->w = c->w;
    s->hcm = c->hcm;
    s->peer = c->peer;
    s->local = c->local;
    s->tp = c->tp;
    s->id = id;
    s->in_use = true;
    s->protocol = "HTTP/2";
    s->hbuf = hb;
    size_t slots = c->hcm->max_headers_count < H2_HEADER_SLOTS_MAX ? c->hcm->max_headers_count : H2_HEADER_SLOTS_MAX;
    st->nslots = slots;
    s->rq.headers = (struct h1_header *)hb->data;
    s->rq_trailers = s->rq.headers + slots;
    hb->head = hb->tail = (slots + HSTREAM_MAX_TRAILERS) * sizeof(struct h1_header);
    s->rq.content_length = -1;
    s->rq.minor = 1;
    st->c = c;
    st->deferred = st->response_submitted = st->end_sent = st->rst_sent = st->rx_reset = false;
    st->started = st->trailers_submitted = false;
    timer_init(&st->idle, on_stream_idle, st);
    c->active++;
    c->opened++;
    h2stat(c, H2S_STREAMS_ACTIVE, 1);
    touch(st);
    return st;
}

static void stream_free(struct h2c *c, struct h2s *st)
{
    struct hstream *s = &st->hs;
    timer_stop(c->w->loop, &st->idle);
    size_t held = (s->rqbody ? buf_len(s->rqbody) : 0) + s->rqq.len;
    if (held)
        nghttp2_session_consume_connection(c->ng, held); /* the other streams may use it */
    bufq_clear(&s->rqq, &c->w->bufs);
    buf_put(&c->w->bufs, s->hbuf);
    buf_put(&c->w->bufs, s->rqbody);
    s->hbuf = s->rqbody = NULL;
    s->in_use = false;
    st->next_free = c->free;
    c->free = st;
    c->active--;
    if (c->active == 0)
        c->idle_since_ms = loop_now_ms(c->w->loop);
    stats_add(s->hcm->h2_stats, c->w->id, H2S_STREAMS_ACTIVE, -1); /* the block it was counted in */
    if (st->hold) {
        snapshot_unref(st->hold);
        st->hold = NULL;
    }
}

void h2c_rebind(struct h2c *c, struct hcm_config *hcm, struct snapshot *old)
{
    for (uint32_t i = 0; i < c->nstreams; i++) {
        struct h2s *st = &c->streams[i];
        if (st->hs.in_use && !st->hold)
            st->hold = snapshot_ref(old); /* in-flight streams keep their routes and clusters */
    }
    c->hcm = hcm;
    c->all_dirty = true;
}

/* --- nghttp2 callbacks --- */

static ssize_t on_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)ng;
    (void)flags;
    struct h2c *c = ud;
    struct buf *o = c->io->output(c->d);
    if (!o)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    size_t room = buf_room(o);
    if (room == 0)
        return NGHTTP2_ERR_WOULDBLOCK;
    size_t n = len < room ? len : room;
    buf_append(o, data, n);
    return (ssize_t)n;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2c *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (c->draining) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    struct h2s *st = stream_new(c, f->hd.stream_id);
    if (!st) {
        h2stat(c, H2S_STREAM_REFUSED_ERRORS, 1);
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    nghttp2_session_set_stream_user_data(ng, f->hd.stream_id, st);
    hstat(c, HS_DOWNSTREAM_RQ_TOTAL, 1);
    hstat(c, HS_DOWNSTREAM_RQ_HTTP2_TOTAL, 1);
    hstat(c, HS_DOWNSTREAM_RQ_ACTIVE, 1);
    c->requests++;
    return 0;
}

/* Copies a string into the stream's header buffer. */
static int save(struct hstream *s, const uint8_t *p, size_t n, struct h1_str *out)
{
    if (buf_append(s->hbuf, p, n) < 0)
        return -1;
    out->p = s->hbuf->data + s->hbuf->tail - n;
    out->n = n;
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags;
    struct h2c *c = ud;
    struct h2s *st = stream_of(c, f->hd.stream_id);
    if (!st || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct hstream *s = &st->hs;
    /* The decoded header list counts against max_request_headers_kb (an HPACK bomb expands
     * a few bytes on the wire into this). */
    s->header_bytes += namelen + valuelen;
    if (s->header_bytes > c->hcm->max_request_headers_bytes) {
        h2stat(c, H2S_HEADER_OVERFLOW, 1);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    bool trailers = s->rq_headers_done;
    if (!trailers && namelen && name[0] == ':') {
        struct h1_str v;
        if (save(s, value, valuelen, &v) < 0)
            goto overflow;
        if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
            s->rq.method = v;
            s->rq.connect = valuelen == 7 && memcmp(value, "CONNECT", 7) == 0;
        } else if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
            s->rq.path = s->rq.target = v;
        } else if (namelen == 10 && memcmp(name, ":authority", 10) == 0) {
            s->rq.host = v;
        } else if (namelen == 7 && memcmp(name, ":scheme", 7) == 0) {
            s->scheme = v;
        }
        return 0;
    }
    struct h1_header *arr = trailers ? s->rq_trailers : s->rq.headers;
    size_t *n = trailers ? &s->n_rq_trailers : &s->rq.nheaders;
    size_t cap = trailers ? HSTREAM_MAX_TRAILERS : st->nslots;
    if (*n >= cap)
        goto overflow;
    struct h1_header h;
    if (save(s, name, namelen, &h.name) < 0 || save(s, value, valuelen, &h.value) < 0)
        goto overflow;
    arr[(*n)++] = h;
    if (!trailers) {
        if (namelen == 4 && memcmp(name, "host", 4) == 0 && !s->rq.host.n)
            s->rq.host = h.value;
        else if (namelen == 14 && memcmp(name, "content-length", 14) == 0) {
            int64_t v = 0;
            for (size_t i = 0; i < valuelen && v < INT64_MAX / 10; i++)
                v = v * 10 + (value[i] - '0');
            s->rq.content_length = v;
        } else if (namelen == 6 && memcmp(name, "expect", 6) == 0 && valuelen == 12 &&
                   strncasecmp((const char *)value, "100-continue", 12) == 0) {
            s->rq.expect_continue = 1;
        }
    }
    return 0;
overflow:
    h2stat(c, H2S_HEADER_OVERFLOW, 1);
    (void)ng;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static void start_request(struct h2c *c, struct h2s *st)
{
    struct hstream *s = &st->hs;
    st->started = true;
    if (!s->rq.host.n) {
        /* RFC 9113 8.3.1: a request needs :authority or Host for us to route it. */
        s->si.start_us = 0;
    }
    if (s->rq.expect_continue && !s->rq_end && !c->hcm->proxy_100_continue) {
        nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE};
        nghttp2_submit_headers(c->ng, NGHTTP2_FLAG_NONE, s->id, NULL, &nv, 1, NULL);
    }
    router_start(s);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ng;
    struct h2c *c = ud;
    struct h2s *st = f->hd.stream_id ? stream_of(c, f->hd.stream_id) : NULL;
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (st)
        st->dirty = true;
    switch (f->hd.type) {
    case NGHTTP2_DATA:
        if (f->hd.length == 0 && !end) {
            /* Empty DATA frames cost us work and carry nothing (Envoy's
             * max_consecutive_inbound_frames_with_empty_payload). */
            if (++c->empty_frames_in_a_row > c->hcm->h2.max_consecutive_inbound_frames_with_empty_payload)
                go_away(c, NGHTTP2_ENHANCE_YOUR_CALM, H2S_INBOUND_EMPTY_FRAMES_FLOOD);
        } else {
            c->empty_frames_in_a_row = 0;
        }
        if (st && end)
            st->hs.rq_end = true;
        if (st)
            touch(st);
        break;
    case NGHTTP2_HEADERS:
        if (!st)
            break;
        touch(st);
        if (!st->hs.rq_headers_done) {
            st->hs.rq_headers_done = true;
            if (end)
                st->hs.rq_end = true;
            start_request(c, st);
            /* max_requests_per_connection reached: GOAWAY after this stream (Envoy). */
            if (c->hcm->max_requests_per_connection && c->requests == c->hcm->max_requests_per_connection) {
                hstat(c, HS_DOWNSTREAM_CX_MAX_REQUESTS_REACHED, 1);
                h2c_drain(c);
            }
        } else {
            h2stat(c, H2S_TRAILERS, 1);
            if (end)
                st->hs.rq_end = true;
        }
        break;
    case NGHTTP2_RST_STREAM:
        h2stat(c, H2S_RX_RESET, 1);
        if (st) {
            st->rx_reset = true;
            hstat(c, HS_DOWNSTREAM_RQ_RX_RESET, 1);
            if (!st->end_sent)
                c->premature_resets++;
        }
        if (c->opened >= H2_PREMATURE_RESET_MIN_STREAMS && c->premature_resets * 2 >= c->opened) {
            log_info("http2: closing a connection that reset %llu of %llu streams early",
                     (unsigned long long)c->premature_resets, (unsigned long long)c->opened);
            go_away(c, NGHTTP2_ENHANCE_YOUR_CALM, (size_t)-1);
        }
        break;
    case NGHTTP2_PRIORITY:
        if (++c->priority_frames_recv >
            5 + (uint64_t)c->hcm->h2.max_inbound_priority_frames_per_stream * (1 + c->opened))
            go_away(c, NGHTTP2_ENHANCE_YOUR_CALM, H2S_INBOUND_PRIORITY_FRAMES_FLOOD);
        break;
    case NGHTTP2_WINDOW_UPDATE:
        if (++c->window_updates_recv >
            5 + (uint64_t)c->hcm->h2.max_inbound_window_update_frames_per_data_frame_sent * (1 + c->data_frames_sent))
            go_away(c, NGHTTP2_ENHANCE_YOUR_CALM, H2S_INBOUND_WINDOW_UPDATE_FRAMES_FLOOD);
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    (void)flags;
    struct h2c *c = ud;
    struct h2s *st = stream_of(c, id);
    if (!st || st->hs.finished || st->hs.local_reply) {
        /* Nobody wants these bytes: give the window back at once. */
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    struct hstream *s = &st->hs;
    st->dirty = true;
    /* At most the stream window we advertised is ever held here: it reopens only as the
     * bytes go upstream (request_consumed). */
    if (bufq_append(&s->rqbody, &s->rqq, &c->w->bufs, data, len) < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2c *c = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        h2stat(c, H2S_GOAWAY_SENT, 1);
        return 0;
    }
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        h2stat(c, H2S_TX_RESET, 1);
        hstat(c, HS_DOWNSTREAM_RQ_TX_RESET, 1);
        return 0;
    }
    if (f->hd.type == NGHTTP2_DATA)
        c->data_frames_sent++;
    struct h2s *st = f->hd.stream_id ? stream_of(c, f->hd.stream_id) : NULL;
    if (st && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        (f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS)) {
        st->end_sent = true;
        if (!st->hs.rq_end && !st->rst_sent) {
            /* The response is complete but the client is still sending: we no longer need
             * its body (RFC 9113 8.1). */
            st->rst_sent = true;
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
        }
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    (void)code;
    struct h2c *c = ud;
    struct h2s *st = stream_of(c, id);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    struct hstream *s = &st->hs;
    bool complete = st->end_sent;
    if (!st->started) {
        /* Reset before its headers were complete: nothing was routed. */
        s->si.start_us = s->si.end_us = 0;
        hstat(c, HS_DOWNSTREAM_RQ_ACTIVE, -1);
        hstat(c, HS_DOWNSTREAM_RQ_COMPLETED, 1);
    } else {
        router_finish(s, !complete);
    }
    stream_free(c, st);
    return 0;
}

/* An invalid HTTP message (a bad pseudo-header, a connection-specific header, content-length
 * against DATA...): as in Envoy, the whole connection ends (GOAWAY PROTOCOL_ERROR) unless
 * override_stream_error_on_invalid_http_message asks for a stream reset only. */
static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *f, int err, void *ud)
{
    (void)f;
    struct h2c *c = ud;
    if (err == NGHTTP2_ERR_HTTP_HEADER || err == NGHTTP2_ERR_HTTP_MESSAGING) {
        h2stat(c, H2S_RX_MESSAGING_ERROR, 1);
        if (!c->hcm->h2.override_stream_error_on_invalid_http_message && !c->goaway_sent) {
            hstat(c, HS_DOWNSTREAM_CX_PROTOCOL_ERROR, 1);
            nghttp2_session_terminate_session(ng, NGHTTP2_PROTOCOL_ERROR);
            c->goaway_sent = true;
            c->fatal = true;
        }
    }
    return 0;
}

/* --- responses --- */

static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *out, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)ng;
    (void)id;
    (void)ud;
    struct h2s *st = src->ptr;
    struct hstream *s = &st->hs;
    const char *p;
    size_t n;
    router_response_body(s, &p, &n);
    if (n) {
        if (n > len)
            n = len;
        memcpy(out, p, n);
        router_response_consumed(s, n);
        st->dirty = true; /* room again: the router may read on from the upstream */
        touch(st);
        router_response_body(s, &p, &len);
        if (len == 0 && s->rs_end) {
            *flags |= NGHTTP2_DATA_FLAG_EOF; /* END_STREAM on the last DATA frame, not an empty one */
            if (s->n_rs_trailers)
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        }
        return (ssize_t)n;
    }
    if (s->rs_end) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (s->n_rs_trailers)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        return 0;
    }
    st->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
}

/* Lower-cases header names in place (they are ours: the router built them) and fills nva. */
static size_t make_nva(const struct h1_header *h, size_t n, nghttp2_nv *nva, size_t cap, size_t at)
{
    for (size_t i = 0; i < n && at < cap; i++) {
        char *name = (char *)h[i].name.p;
        for (size_t k = 0; k < h[i].name.n; k++)
            if (name[k] >= 'A' && name[k] <= 'Z')
                name[k] = (char)(name[k] + 32);
        nva[at++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)h[i].value.p, h[i].name.n, h[i].value.n,
                                 NGHTTP2_NV_FLAG_NONE};
    }
    return at;
}

static void submit_response(struct h2c *c, struct h2s *st)
{
    struct hstream *s = &st->hs;
    nghttp2_nv nva[600];
    char status[4];
    int code = s->rs.status;
    status[0] = (char)('0' + code / 100);
    status[1] = (char)('0' + code / 10 % 10);
    status[2] = (char)('0' + code % 10);
    nva[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    size_t n = make_nva(s->rs.headers, s->rs.nheaders, nva, sizeof nva / sizeof nva[0], 1);
    const char *p;
    size_t blen;
    router_response_body(s, &p, &blen);
    bool no_body = s->head_request || code == 204 || code == 304 || (s->rs_end && blen == 0 && !s->n_rs_trailers);
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    st->response_submitted = true;
    s->rs_head_taken = true;
    if (nghttp2_submit_response(c->ng, s->id, nva, n, no_body ? NULL : &prd) != 0 && !st->rst_sent) {
        st->rst_sent = true;
        nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    }
    if (no_body && s->head_request) {
        /* HEAD: drop whatever body the upstream framing still yields. */
    }
}

/* Streams with something new for the client: response heads, resumed bodies, trailers, resets.
 * Only streams marked dirty (an event named them) are looked at, unless a connection-wide change
 * asks for all; one that moved is looked at again in the next round. */
static bool service_streams(struct h2c *c)
{
    bool progress = false, all = c->all_dirty;
    c->all_dirty = false;
    for (uint32_t i = 0; i < c->nstreams; i++) {
        struct h2s *st = &c->streams[i];
        struct hstream *s = &st->hs;
        if (!s->in_use || !st->started || !(st->dirty || all))
            continue;
        st->dirty = false;
        bool moved = router_pump(s);
        if (s->reset && !st->rst_sent) {
            st->rst_sent = true;
            nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, s->id, s->reset_code ? s->reset_code : NGHTTP2_INTERNAL_ERROR);
            progress = st->dirty = true;
            continue;
        }
        if (s->rs_head && !st->response_submitted) {
            submit_response(c, st);
            moved = true;
        } else if (st->deferred) {
            const char *p;
            size_t n;
            router_response_body(s, &p, &n);
            if (n || s->rs_end) {
                st->deferred = false;
                nghttp2_session_resume_data(c->ng, s->id);
                moved = true;
            }
        }
        if (s->rs_end && s->n_rs_trailers && st->response_submitted && !st->trailers_submitted) {
            const char *p;
            size_t n;
            router_response_body(s, &p, &n);
            if (n == 0) {
                nghttp2_nv nva[HSTREAM_MAX_TRAILERS];
                size_t k = make_nva(s->rs_trailers, s->n_rs_trailers, nva, HSTREAM_MAX_TRAILERS, 0);
                st->trailers_submitted = true;
                nghttp2_submit_trailer(c->ng, s->id, nva, k);
                moved = true;
            }
        }
        if (moved)
            progress = st->dirty = true;
    }
    return progress;
}

/* --- the connection --- */

struct h2c *h2c_new(const struct h2c_io *io, void *d, struct worker *w, struct hcm_config *hcm,
                    const struct sockaddr_storage *peer, const struct sockaddr_storage *local,
                    const struct transport *tp)
{
    struct h2c *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->io = io;
    c->d = d;
    c->w = w;
    c->hcm = hcm;
    c->peer = peer;
    c->local = local;
    c->tp = tp;
    uint32_t maxs = hcm->h2.max_concurrent_streams;
    if (maxs > H2_DEFAULT_MAX_STREAMS && maxs == 2147483647u)
        maxs = H2_DEFAULT_MAX_STREAMS; /* Envoy's "unlimited" default: Weft's bounded pool instead */
    if (maxs > H2_MAX_STREAMS)
        maxs = H2_MAX_STREAMS;
    c->nstreams = maxs;
    c->streams = calloc(maxs, sizeof *c->streams);
    if (!c->streams) {
        free(c);
        return NULL;
    }
    for (uint32_t i = maxs; i-- > 0;) {
        c->streams[i].next_free = c->free;
        c->free = &c->streams[i];
    }
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, hcm->h2.max_outbound_control_frames);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, hcm->h2.hpack_table_size);
    int r = nghttp2_session_server_new3(&c->ng, cb, c, opt, h2_mem_get(&w->h2mem));
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (r != 0) {
        free(c->streams);
        free(c);
        return NULL;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, maxs},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, hcm->h2.initial_stream_window_size},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, hcm->h2.hpack_table_size},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, hcm->max_request_headers_bytes},
    };
    nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    uint32_t cwin = hcm->h2.initial_connection_window_size;
    if (cwin > 65535)
        nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, (int32_t)cwin);
    hstat(c, HS_DOWNSTREAM_CX_HTTP2_TOTAL, 1);
    hstat(c, HS_DOWNSTREAM_CX_HTTP2_ACTIVE, 1);
    return c;
}

int h2c_run(struct h2c *c)
{
    if (c->shut)
        return 1;
    if (c->in_run) {
        c->woken = true; /* woken from inside this run (an upstream read): one more round */
        return 0;
    }
    c->in_run = true;
    int result = 0;
    for (int rounds = 0; rounds < 64; rounds++) {
        bool progress = false;
        if (!c->fatal) {
            struct buf *in = c->io->input(c->d);
            if (in && buf_len(in)) {
                ssize_t r = nghttp2_session_mem_recv(c->ng, (const uint8_t *)buf_rpos(in), buf_len(in));
                c->io->input_done(c->d);
                progress = true;
                if (r < 0) {
                    log_debug("http2: %s", nghttp2_strerror((int)r));
                    hstat(c, HS_DOWNSTREAM_CX_PROTOCOL_ERROR, 1);
                    if (r == NGHTTP2_ERR_FLOODED)
                        h2stat(c, H2S_OUTBOUND_CONTROL_FLOOD, 1);
                    c->fatal = true;
                    c->goaway_sent = true; /* nghttp2 queued the GOAWAY itself */
                }
            }
        }
        if (service_streams(c))
            progress = true;
        /* A client that does not read while frames pile up for it (Envoy's
         * max_outbound_frames): drop the connection, GOAWAY could not get through anyway. */
        if (nghttp2_session_get_outbound_queue_size(c->ng) > c->hcm->h2.max_outbound_frames) {
            h2stat(c, H2S_OUTBOUND_FLOOD, 1);
            log_debug("http2: outbound frame flood, closing");
            result = 1;
            goto out;
        }
        for (;;) {
            int r = nghttp2_session_send(c->ng);
            long f = c->io->flush(c->d);
            if (r != 0 || f < 0) {
                if (r != NGHTTP2_ERR_WOULDBLOCK && r != 0)
                    c->fatal = true;
                if (f < 0) {
                    result = 1;
                    goto out;
                }
            }
            if (f > 0)
                progress = true;
            if (f <= 0 || r == 0)
                break;
        }
        if (c->woken) {
            c->woken = false;
            progress = true;
        }
        if (!progress)
            break;
    }
    if (c->io->peer_closed(c->d))
        result = 1;
    else if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng) && !c->io->output_pending(c->d))
        result = 1;
    else if (c->fatal && !nghttp2_session_want_write(c->ng) && !c->io->output_pending(c->d))
        result = 1;
out:
    c->in_run = false;
    if (result)
        c->io->close(c->d);
    return result;
}

bool h2c_busy(const struct h2c *c, uint64_t *idle_since_ms)
{
    *idle_since_ms = c->idle_since_ms;
    return c->active > 0;
}

void h2c_drain(struct h2c *c)
{
    if (c->draining)
        return;
    c->draining = true;
    c->all_dirty = true;
    /* Graceful: GOAWAY with the last stream we will serve, then close when they are done. */
    nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    c->goaway_sent = true;
}

void h2c_shutdown(struct h2c *c)
{
    if (!c || c->shut)
        return;
    c->shut = true;
    for (uint32_t i = 0; i < c->nstreams; i++) {
        struct h2s *st = &c->streams[i];
        if (st->hs.in_use) {
            if (st->started)
                router_finish(&st->hs, true);
            else {
                hstat(c, HS_DOWNSTREAM_RQ_ACTIVE, -1);
            }
            stream_free(c, st);
        }
    }
    hstat(c, HS_DOWNSTREAM_CX_HTTP2_ACTIVE, -1);
}

void h2c_free(struct h2c *c)
{
    if (!c)
        return;
    if (c->run_pending)
        loop_undefer(c->w->loop, &c->run_later);
    h2c_shutdown(c);
    nghttp2_session_del(c->ng);
    free(c->streams);
    free(c);
}
