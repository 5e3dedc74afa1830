/* yamltree: YAML (and JSON, which is YAML flow style) parsed into a small tree of nodes that
 * remember where they came from, so later stages can say "FILE:LINE: path: problem".
 *
 * Built on libyaml's event parser. What it adds on top:
 *  - aliases (`*a`) become deep copies of the anchored node (`&a`), so every node has exactly
 *    one owner; merge keys (`<<: *a`, `<<: [*a, *b]`) copy in the keys the map does not set
 *    itself (earlier merge sources win over later ones);
 *  - a key tagged `!ignore` (Envoy's convention for holding anchors) is dropped with its value;
 *  - duplicate keys in one map are an error naming the second occurrence;
 *  - `!!str` makes a scalar a quoted (string) scalar; plain `~`, `null`, `Null`, `NULL` and
 *    empty plain scalars are YT_NULL.
 * Limits (every one is an error, never a truncation): input at most YTREE_MAX_INPUT bytes,
 * nesting at most YTREE_MAX_DEPTH levels (aliases included), at most YTREE_MAX_NODES nodes in
 * all documents together (the "billion laughs" guard: aliases count every copied node).
 * libyaml itself (YAML 1.1) rejects implicit keys longer than 1024 characters, in JSON too.
 * Config-time code: allocates freely, not for the request path. */
#ifndef WEFT_COMMON_YAMLTREE_H
#define WEFT_COMMON_YAMLTREE_H

#include <stddef.h>

#define YTREE_MAX_INPUT (64u * 1024 * 1024) /* bytes of text */
#define YTREE_MAX_DEPTH 256                  /* nested sequences/maps */
#define YTREE_MAX_NODES 1000000              /* nodes, counting alias and merge copies */

enum ytree_kind { YT_NULL, YT_SCALAR, YT_SEQ, YT_MAP };

struct ytree {
    enum ytree_kind kind;
    int line;                /* 1-based position of the node's first character */
    int col;                 /* 1-based */
    unsigned quoted : 1;     /* scalar was quoted, a block literal, or tagged !!str */
    char *str;               /* YT_SCALAR and YT_NULL: text as written, NUL-terminated */
    size_t len;              /* bytes in str (str may hold NULs from "\0" escapes) */
    struct ytree **items;    /* YT_SEQ: n items; YT_MAP: keys at 2i, values at 2i+1 */
    size_t n;                /* YT_SEQ: item count; YT_MAP: 2 x pair count */
};

/* Parses every document of `text` (len bytes, need not be NUL-terminated; borrowed) and
 * returns the first one; an empty input gives a YT_NULL node. `filename` (borrowed, may be
 * NULL) only names the input in messages. On error returns NULL and writes
 * "FILE:LINE:COL: reason" into err (errlen bytes, always NUL-terminated when errlen > 0).
 * The caller owns the result and frees it with ytree_free. */
struct ytree *ytree_parse(const char *text, size_t len, const char *filename, char *err,
                          size_t errlen);

/* As ytree_parse, but keeps every document: returns the number of documents (0 for an empty
 * input, *docs then NULL) and stores a malloc'd array of them in *docs; or returns -1 with err
 * filled and *docs NULL. The caller owns the array and the trees: ytree_free_all(docs, n). */
int ytree_parse_all(const char *text, size_t len, const char *filename, struct ytree ***docs,
                    char *err, size_t errlen);

/* Frees a tree (NULL is fine). */
void ytree_free(struct ytree *t);
/* Frees n trees and the array holding them (as returned by ytree_parse_all). */
void ytree_free_all(struct ytree **docs, int n);

/* Returns the value stored under `key` in a YT_MAP (borrowed from the map), or NULL when
 * map is not a map or has no such key. Linear in the map's size. */
const struct ytree *ytree_get(const struct ytree *map, const char *key);

/* The line of the deepest node that a config field path ("a.b[2].c_d", proto field names,
 * matched as written or in lowerCamelCase) reaches from root; 0 when not even the first step is
 * found. For naming the line of a problem found after parsing. */
int ytree_path_line(const struct ytree *root, const char *path);

/* A short name for a node's kind in messages: "null", "a scalar", "a list", "a map". */
const char *ytree_kind_name(enum ytree_kind kind);

#endif
