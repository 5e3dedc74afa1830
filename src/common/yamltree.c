/* yamltree: libyaml events -> struct ytree (see yamltree.h for the rules and limits). */
#include "common/yamltree.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ---- a string-keyed open-addressing table (anchors, duplicate keys, merges) ---- */

struct yt_slot {
    const char *key; /* NULL: empty slot */
    size_t klen;
    void *val;
};

struct yt_table {
    struct yt_slot *slots;
    size_t cap; /* power of two, or 0 before first use */
    size_t n;
};

static uint64_t yt_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The slot holding key, or the empty slot where it would go. The table is never full. */
static struct yt_slot *yt_table_slot(const struct yt_table *t, const char *k, size_t n)
{
    size_t mask = t->cap - 1, i = (size_t)yt_hash(k, n) & mask;
    for (;;) {
        struct yt_slot *s = &t->slots[i];
        if (!s->key || (s->klen == n && memcmp(s->key, k, n) == 0))
            return s;
        i = (i + 1) & mask;
    }
}

static void *yt_table_get(const struct yt_table *t, const char *k, size_t n)
{
    if (!t->cap)
        return NULL;
    struct yt_slot *s = yt_table_slot(t, k, n);
    return s->key ? s->val : NULL;
}

/* Keeps the load under one half so probes stay short. */
static int yt_table_grow(struct yt_table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 16;
    struct yt_slot *old = t->slots;
    size_t oldcap = t->cap;
    t->slots = calloc(cap, sizeof *t->slots);
    if (!t->slots) {
        t->slots = old;
        return -1;
    }
    t->cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].key)
            *yt_table_slot(t, old[i].key, old[i].klen) = old[i];
    free(old);
    return 0;
}

/* Inserts key -> val, or replaces the value of an existing key. The key pointer is stored
 * (borrowed) only when inserted. Returns 0 inserted, 1 replaced, -1 out of memory. */
static int yt_table_put(struct yt_table *t, const char *k, size_t n, void *val)
{
    if ((t->n + 1) * 2 > t->cap && yt_table_grow(t) < 0)
        return -1;
    struct yt_slot *s = yt_table_slot(t, k, n);
    if (s->key) {
        s->val = val;
        return 1;
    }
    s->key = k;
    s->klen = n;
    s->val = val;
    t->n++;
    return 0;
}

/* Frees the table; with free_keys, the keys too (they were malloc'd by the caller). */
static void yt_table_clear(struct yt_table *t, int free_keys)
{
    if (free_keys)
        for (size_t i = 0; i < t->cap; i++)
            free((char *)t->slots[i].key);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* ---- nodes ---- */

void ytree_free(struct ytree *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        ytree_free(t->items[i]);
    free(t->items);
    free(t->str);
    free(t);
}

void ytree_free_all(struct ytree **docs, int n)
{
    for (int i = 0; i < n; i++)
        ytree_free(docs[i]);
    free(docs);
}

const char *ytree_kind_name(enum ytree_kind kind)
{
    switch (kind) {
    case YT_NULL: return "null";
    case YT_SCALAR: return "a scalar";
    case YT_SEQ: return "a list";
    case YT_MAP: return "a map";
    }
    return "?";
}

const struct ytree *ytree_get(const struct ytree *map, const char *key)
{
    if (!map || map->kind != YT_MAP || !key)
        return NULL;
    size_t klen = strlen(key);
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct ytree *k = map->items[i];
        if (k->str && k->len == klen && memcmp(k->str, key, klen) == 0)
            return map->items[i + 1];
    }
    return NULL;
}

/* A map's value under a proto field name, written either way proto3 JSON allows: as is
 * (snake_case) or lowerCamelCase. */
static const struct ytree *get_field(const struct ytree *map, const char *name, size_t n)
{
    char snake[128], camel[128];
    if (n >= sizeof snake)
        return NULL;
    memcpy(snake, name, n);
    snake[n] = '\0';
    const struct ytree *v = ytree_get(map, snake);
    if (v)
        return v;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (name[i] == '_' && i + 1 < n && name[i + 1] >= 'a' && name[i + 1] <= 'z')
            camel[k++] = (char)(name[++i] - 32);
        else
            camel[k++] = name[i];
    }
    camel[k] = '\0';
    return ytree_get(map, camel);
}

int ytree_path_line(const struct ytree *root, const char *path)
{
    const struct ytree *t = root;
    int line = 0;
    const char *p = path;
    while (t && *p) {
        size_t n = strcspn(p, ".[");
        if (n) {
            t = get_field(t, p, n);
            if (!t)
                break;
            line = t->line;
            p += n;
        }
        while (*p == '[') {
            char *end;
            unsigned long i = strtoul(p + 1, &end, 10);
            if (*end != ']' || !t || t->kind != YT_SEQ || i >= t->n)
                return line;
            t = t->items[i];
            line = t->line;
            p = end + 1;
        }
        if (*p == '.')
            p++;
        else if (*p)
            break;
    }
    return line;
}

/* ---- the builder: a stack of open containers fed by libyaml events ---- */

struct yt_frame {
    struct ytree *node;     /* the open YT_SEQ or YT_MAP (owned until attached) */
    size_t cap;             /* slots allocated in node->items */
    char *anchor;           /* registered when the node ends (owned) */
    struct ytree *key;      /* YT_MAP: key waiting for its value (owned) */
    int ignore_value;       /* the pending key was tagged !ignore */
    int merge_value;        /* the pending key was a plain << */
    struct ytree **merges;  /* YT_MAP: merge sources, in order (owned) */
    size_t nmerges, capmerges;
};

struct yt_builder {
    yaml_parser_t parser;
    const char *file;
    char *err;
    size_t errlen;
    int failed;
    struct yt_frame stack[YTREE_MAX_DEPTH];
    int depth;                  /* open frames */
    size_t nodes;               /* nodes allocated so far, all documents */
    struct yt_table anchors;    /* name (owned) -> node (in the document or the graveyard) */
    struct ytree **grave;       /* dropped nodes that anchors may still point into */
    size_t ngrave, capgrave;
    struct ytree *doc;          /* root of the current document */
    struct ytree **docs;
    size_t ndocs, capdocs;
};

/* Records the first error only: later ones are usually consequences of it. */
static int yt_fail(struct yt_builder *b, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int yt_fail(struct yt_builder *b, int line, int col, const char *fmt, ...)
{
    if (!b->failed && b->errlen) {
        int n = snprintf(b->err, b->errlen, "%s:%d:%d: ", b->file, line, col);
        if (n >= 0 && (size_t)n < b->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(b->err + n, b->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    b->failed = 1;
    return -1;
}

static struct ytree *yt_node_new(struct yt_builder *b, enum ytree_kind kind, int line, int col)
{
    if (b->nodes >= YTREE_MAX_NODES) {
        yt_fail(b, line, col, "document expands beyond %d nodes (alias bomb?)", YTREE_MAX_NODES);
        return NULL;
    }
    struct ytree *t = calloc(1, sizeof *t);
    if (!t) {
        yt_fail(b, line, col, "out of memory");
        return NULL;
    }
    b->nodes++;
    t->kind = kind;
    t->line = line;
    t->col = col;
    return t;
}

static int yt_set_str(struct yt_builder *b, struct ytree *t, const char *s, size_t len)
{
    t->str = malloc(len + 1);
    if (!t->str)
        return yt_fail(b, t->line, t->col, "out of memory");
    if (len)
        memcpy(t->str, s, len);
    t->str[len] = '\0';
    t->len = len;
    return 0;
}

/* Appends to an array that doubles as needed; *cap tracks its allocated slots. */
static int yt_push(struct ytree ***arr, size_t *n, size_t *cap, struct ytree *item)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        struct ytree **p = realloc(*arr, ncap * sizeof *p);
        if (!p)
            return -1;
        *arr = p;
        *cap = ncap;
    }
    (*arr)[(*n)++] = item;
    return 0;
}

/* Keeps a dropped node alive until the document ends, since anchors may point into it. */
static int yt_bury(struct yt_builder *b, struct ytree *t)
{
    if (yt_push(&b->grave, &b->ngrave, &b->capgrave, t) < 0) {
        ytree_free(t);
        return yt_fail(b, 0, 0, "out of memory");
    }
    return 0;
}

/* Deep copy for aliases and merges; `level` is the nesting level the copy will sit at, so
 * the depth limit holds for expanded trees too. Counts every node against the node limit. */
static struct ytree *yt_copy(struct yt_builder *b, const struct ytree *src, int level)
{
    if (src->kind >= YT_SEQ && level > YTREE_MAX_DEPTH) {
        yt_fail(b, src->line, src->col, "nesting deeper than %d levels", YTREE_MAX_DEPTH);
        return NULL;
    }
    struct ytree *t = yt_node_new(b, src->kind, src->line, src->col);
    if (!t)
        return NULL;
    t->quoted = src->quoted;
    if (src->str && yt_set_str(b, t, src->str, src->len) < 0)
        goto fail;
    if (src->n) {
        t->items = calloc(src->n, sizeof *t->items);
        if (!t->items) {
            yt_fail(b, src->line, src->col, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < src->n; i++) {
            t->items[i] = yt_copy(b, src->items[i], level + 1);
            if (!t->items[i])
                goto fail;
            t->n = i + 1;
        }
    }
    return t;
fail:
    ytree_free(t);
    return NULL;
}

static int yt_is_null_text(const char *s, size_t len)
{
    return len == 0 || (len == 1 && s[0] == '~') ||
           (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

/* Returns 1 when the map already holds the key (keys at items[2i]). */
static int yt_map_has(const struct ytree *map, size_t npairs, const struct ytree *key)
{
    for (size_t i = 0; i < npairs; i++) {
        const struct ytree *k = map->items[2 * i];
        if (k->len == key->len && memcmp(k->str, key->str, key->len) == 0)
            return 1;
    }
    return 0;
}

/* Called when a map ends: rejects duplicate keys, then copies in merged keys the map does
 * not set itself. Small maps are checked pairwise; larger ones through a hash table, so a
 * map of 10k keys stays linear. `level` is the map's own nesting level. */
static int yt_finish_map(struct yt_builder *b, struct yt_frame *f, int level)
{
    struct ytree *map = f->node;
    size_t npairs = map->n / 2;
    struct yt_table seen = {0};
    int use_table = npairs > 8 || f->nmerges;
    int rc = 0;

    for (size_t i = 0; i < npairs && rc == 0; i++) {
        struct ytree *k = map->items[2 * i];
        int dup;
        if (use_table) {
            dup = yt_table_put(&seen, k->str, k->len, k);
            if (dup < 0)
                rc = yt_fail(b, k->line, k->col, "out of memory");
        } else {
            dup = yt_map_has(map, i, k);
        }
        if (dup > 0)
            rc = yt_fail(b, k->line, k->col, "duplicate key '%.100s'", k->str);
    }
    for (size_t m = 0; m < f->nmerges && rc == 0; m++) {
        struct ytree *src = f->merges[m];
        size_t nmaps = src->kind == YT_MAP ? 1 : src->n;
        for (size_t j = 0; j < nmaps && rc == 0; j++) {
            const struct ytree *from = src->kind == YT_MAP ? src : src->items[j];
            for (size_t i = 0; i + 1 < from->n && rc == 0; i += 2) {
                const struct ytree *k = from->items[i];
                if (yt_table_get(&seen, k->str, k->len))
                    continue;
                struct ytree *kc = yt_copy(b, k, level + 1);
                struct ytree *vc = kc ? yt_copy(b, from->items[i + 1], level + 1) : NULL;
                if (!vc || yt_push(&map->items, &map->n, &f->cap, kc) < 0) {
                    ytree_free(kc);
                    ytree_free(vc);
                    rc = yt_fail(b, k->line, k->col, "out of memory");
                    break;
                }
                if (yt_push(&map->items, &map->n, &f->cap, vc) < 0) {
                    ytree_free(vc);
                    rc = yt_fail(b, k->line, k->col, "out of memory");
                    break;
                }
                if (yt_table_put(&seen, kc->str, kc->len, kc) < 0)
                    rc = yt_fail(b, k->line, k->col, "out of memory");
            }
        }
    }
    yt_table_clear(&seen, 0);
    /* Merge sources may hold anchors used later in the document: keep them until its end. */
    for (size_t m = 0; m < f->nmerges; m++)
        if (yt_bury(b, f->merges[m]) < 0)
            rc = -1;
    free(f->merges);
    f->merges = NULL;
    f->nmerges = f->capmerges = 0;
    return rc;
}

/* Attaches a finished node to the open container (or makes it the document root).
 * Takes ownership of t in every case. `ignore` says the node is a key tagged !ignore. */
static int yt_attach(struct yt_builder *b, struct ytree *t, int ignore)
{
    if (b->depth == 0) {
        if (b->doc) { /* libyaml never sends two roots; be safe anyway */
            ytree_free(t);
            return yt_fail(b, 0, 0, "more than one root node");
        }
        b->doc = t;
        return 0;
    }
    struct yt_frame *f = &b->stack[b->depth - 1];
    struct ytree *c = f->node;
    if (c->kind == YT_SEQ) {
        if (yt_push(&c->items, &c->n, &f->cap, t) < 0) {
            ytree_free(t);
            return yt_fail(b, c->line, c->col, "out of memory");
        }
        return 0;
    }
    if (!f->key) { /* t is a key */
        if (t->kind != YT_SCALAR && t->kind != YT_NULL) {
            int line = t->line, col = t->col;
            ytree_free(t);
            return yt_fail(b, line, col, "map keys must be scalars");
        }
        f->key = t;
        f->ignore_value = ignore;
        f->merge_value = !t->quoted && t->len == 2 && memcmp(t->str, "<<", 2) == 0;
        return 0;
    }
    struct ytree *key = f->key;
    f->key = NULL;
    /* Keys of dropped pairs are buried, not freed: an anchor may sit on them. */
    if (f->ignore_value) {
        if (yt_bury(b, key) < 0) {
            ytree_free(t);
            return -1;
        }
        return yt_bury(b, t);
    }
    if (f->merge_value) {
        int ok = t->kind == YT_MAP;
        if (t->kind == YT_SEQ) {
            ok = 1;
            for (size_t i = 0; i < t->n; i++)
                ok &= t->items[i]->kind == YT_MAP;
        }
        if (!ok) {
            int line = t->line, col = t->col;
            ytree_free(key);
            ytree_free(t);
            return yt_fail(b, line, col, "'<<' merges a map or a list of maps");
        }
        if (yt_bury(b, key) < 0) {
            ytree_free(t);
            return -1;
        }
        if (yt_push(&f->merges, &f->nmerges, &f->capmerges, t) < 0) {
            ytree_free(t);
            return yt_fail(b, c->line, c->col, "out of memory");
        }
        return 0;
    }
    if (yt_push(&c->items, &c->n, &f->cap, key) < 0) {
        ytree_free(key);
        ytree_free(t);
        return yt_fail(b, c->line, c->col, "out of memory");
    }
    if (yt_push(&c->items, &c->n, &f->cap, t) < 0) {
        ytree_free(t);
        return yt_fail(b, c->line, c->col, "out of memory");
    }
    return 0;
}

static int yt_anchor(struct yt_builder *b, const yaml_char_t *name, struct ytree *t)
{
    if (!name)
        return 0;
    char *k = strdup((const char *)name);
    int rc = k ? yt_table_put(&b->anchors, k, strlen(k), t) : -1;
    if (rc != 0)
        free(k); /* replaced (the table keeps its first copy of the name) or failed */
    return rc < 0 ? yt_fail(b, t->line, t->col, "out of memory") : 0;
}

static int yt_on_scalar(struct yt_builder *b, const yaml_event_t *ev, int line, int col)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    enum ytree_kind kind = YT_SCALAR;
    int quoted = !plain;

    if (tag && !strcmp(tag, YAML_NULL_TAG))
        kind = YT_NULL;
    else if (tag && !strcmp(tag, YAML_STR_TAG))
        quoted = 1;
    else if (plain && yt_is_null_text(s, len))
        kind = YT_NULL;
    struct ytree *t = yt_node_new(b, kind, line, col);
    if (!t)
        return -1;
    t->quoted = quoted && kind == YT_SCALAR;
    if (yt_set_str(b, t, s, len) < 0 || yt_anchor(b, ev->data.scalar.anchor, t) < 0) {
        ytree_free(t);
        return -1;
    }
    return yt_attach(b, t, tag && !strcmp(tag, "!ignore"));
}

static int yt_on_alias(struct yt_builder *b, const yaml_event_t *ev, int line, int col)
{
    const char *name = (const char *)ev->data.alias.anchor;
    const struct ytree *src = yt_table_get(&b->anchors, name, strlen(name));
    if (!src)
        return yt_fail(b, line, col, "unknown anchor '%.100s'", name);
    struct ytree *t = yt_copy(b, src, b->depth + 1);
    if (!t)
        return -1;
    t->line = line; /* the alias's own position; its insides keep the anchor's */
    t->col = col;
    return yt_attach(b, t, 0);
}

static int yt_on_start(struct yt_builder *b, enum ytree_kind kind, const yaml_char_t *anchor,
                       int line, int col)
{
    if (b->depth >= YTREE_MAX_DEPTH)
        return yt_fail(b, line, col, "nesting deeper than %d levels", YTREE_MAX_DEPTH);
    struct ytree *t = yt_node_new(b, kind, line, col);
    if (!t)
        return -1;
    struct yt_frame *f = &b->stack[b->depth];
    memset(f, 0, sizeof *f);
    f->node = t;
    if (anchor && !(f->anchor = strdup((const char *)anchor))) {
        ytree_free(t);
        f->node = NULL;
        return yt_fail(b, line, col, "out of memory");
    }
    b->depth++;
    return 0;
}

static int yt_on_end(struct yt_builder *b)
{
    struct yt_frame *f = &b->stack[b->depth - 1];
    struct ytree *t = f->node;
    if (t->kind == YT_MAP && yt_finish_map(b, f, b->depth) < 0)
        return -1;
    char *anchor = f->anchor;
    f->anchor = NULL;
    f->node = NULL;
    b->depth--;
    int rc = 0;
    if (anchor) {
        rc = yt_anchor(b, (const yaml_char_t *)anchor, t);
        free(anchor);
    }
    if (rc < 0) {
        ytree_free(t);
        return -1;
    }
    return yt_attach(b, t, 0);
}

/* Ends a document: anchors do not cross documents, and buried nodes can now go. */
static int yt_on_document_end(struct yt_builder *b)
{
    struct ytree *doc = b->doc;
    b->doc = NULL;
    if (!doc) {
        if (!(doc = yt_node_new(b, YT_NULL, 1, 1)))
            return -1;
        if (yt_set_str(b, doc, "", 0) < 0) {
            ytree_free(doc);
            return -1;
        }
    }
    size_t cap = b->capdocs;
    if (yt_push(&b->docs, &b->ndocs, &cap, doc) < 0) {
        ytree_free(doc);
        return yt_fail(b, 0, 0, "out of memory");
    }
    b->capdocs = cap;
    yt_table_clear(&b->anchors, 1);
    for (size_t i = 0; i < b->ngrave; i++)
        ytree_free(b->grave[i]);
    b->ngrave = 0;
    return 0;
}

static void yt_parser_error(struct yt_builder *b)
{
    const yaml_parser_t *p = &b->parser;
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        yt_fail(b, (int)p->mark.line + 1, (int)p->mark.column + 1, "out of memory");
        break;
    case YAML_READER_ERROR:
        yt_fail(b, (int)p->mark.line + 1, (int)p->mark.column + 1, "%s (byte offset %zu)",
                p->problem ? p->problem : "invalid input", p->problem_offset);
        break;
    default:
        if (p->context)
            yt_fail(b, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1,
                    "%s (%s started at line %d)", p->problem ? p->problem : "syntax error",
                    p->context, (int)p->context_mark.line + 1);
        else
            yt_fail(b, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1, "%s",
                    p->problem ? p->problem : "syntax error");
        break;
    }
}

static int yt_on_event(struct yt_builder *b, const yaml_event_t *ev)
{
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return yt_on_scalar(b, ev, line, col);
    case YAML_ALIAS_EVENT:
        return yt_on_alias(b, ev, line, col);
    case YAML_SEQUENCE_START_EVENT:
        return yt_on_start(b, YT_SEQ, ev->data.sequence_start.anchor, line, col);
    case YAML_MAPPING_START_EVENT:
        return yt_on_start(b, YT_MAP, ev->data.mapping_start.anchor, line, col);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return b->depth > 0 ? yt_on_end(b) : yt_fail(b, line, col, "unbalanced end");
    case YAML_DOCUMENT_END_EVENT:
        return yt_on_document_end(b);
    default:
        return 0;
    }
}

/* Frees everything the builder still owns after an error. */
static void yt_builder_cleanup(struct yt_builder *b)
{
    for (int i = 0; i < b->depth; i++) {
        struct yt_frame *f = &b->stack[i];
        ytree_free(f->node);
        ytree_free(f->key);
        free(f->anchor);
        for (size_t m = 0; m < f->nmerges; m++)
            ytree_free(f->merges[m]);
        free(f->merges);
    }
    b->depth = 0;
    ytree_free(b->doc);
    b->doc = NULL;
    yt_table_clear(&b->anchors, 1);
    for (size_t i = 0; i < b->ngrave; i++)
        ytree_free(b->grave[i]);
    free(b->grave);
    b->grave = NULL;
    b->ngrave = b->capgrave = 0;
}

int ytree_parse_all(const char *text, size_t len, const char *filename, struct ytree ***docs,
                    char *err, size_t errlen)
{
    *docs = NULL;
    if (errlen)
        err[0] = '\0';
    struct yt_builder *b = calloc(1, sizeof *b);
    if (!b) {
        if (errlen)
            snprintf(err, errlen, "%s:1:1: out of memory", filename ? filename : "<input>");
        return -1;
    }
    b->file = filename ? filename : "<input>";
    b->err = err;
    b->errlen = errlen;
    if (len > YTREE_MAX_INPUT) {
        yt_fail(b, 1, 1, "input larger than %u bytes", YTREE_MAX_INPUT);
        free(b);
        return -1;
    }
    if (!yaml_parser_initialize(&b->parser)) {
        yt_fail(b, 1, 1, "out of memory");
        free(b);
        return -1;
    }
    yaml_parser_set_input_string(&b->parser, (const unsigned char *)(text ? text : ""), len);
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&b->parser, &ev)) {
            yt_parser_error(b);
            break;
        }
        int done = ev.type == YAML_STREAM_END_EVENT;
        int rc = yt_on_event(b, &ev);
        yaml_event_delete(&ev);
        if (rc < 0 || done)
            break;
    }
    yaml_parser_delete(&b->parser);
    yt_builder_cleanup(b);
    int n = (int)b->ndocs;
    if (b->failed) {
        ytree_free_all(b->docs, n);
        free(b);
        return -1;
    }
    *docs = b->docs;
    free(b);
    return n;
}

struct ytree *ytree_parse(const char *text, size_t len, const char *filename, char *err,
                          size_t errlen)
{
    struct ytree **docs;
    int n = ytree_parse_all(text, len, filename, &docs, err, errlen);
    if (n < 0)
        return NULL;
    struct ytree *first = NULL;
    if (n > 0) {
        first = docs[0];
        docs[0] = NULL;
    } else {
        first = calloc(1, sizeof *first);
        if (first && !(first->str = calloc(1, 1))) {
            free(first);
            first = NULL;
        }
        if (!first) {
            if (errlen)
                snprintf(err, errlen, "%s:1:1: out of memory", filename ? filename : "<input>");
            return NULL;
        }
        first->kind = YT_NULL;
        first->line = first->col = 1;
    }
    ytree_free_all(docs, n);
    return first;
}
