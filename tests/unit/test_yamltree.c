#include <stdlib.h>

#include "common/yamltree.h"
#include "test.h"

static char err[512];

static struct ytree *parse(const char *s)
{
    err[0] = '\0';
    return ytree_parse(s, strlen(s), "t.yaml", err, sizeof err);
}

static const char *str_at(const struct ytree *map, const char *key)
{
    const struct ytree *v = ytree_get(map, key);
    return v && v->kind == YT_SCALAR ? v->str : NULL;
}

static void scalars_and_positions(void)
{
    struct ytree *t = parse("a: 1\nb: 'x'\nc: ~\nd:\ne: [1, two, \"3\"]\nf: {g: null, h: Null}\n"
                            "i: !!str 12\nj: |\n  block\n");
    CHECK(t && t->kind == YT_MAP);
    if (!t)
        return;
    CHECK_EQ_INT(t->n, 16);
    const struct ytree *a = ytree_get(t, "a");
    CHECK(a && a->kind == YT_SCALAR && !a->quoted && a->line == 1 && a->col == 4);
    const struct ytree *b = ytree_get(t, "b");
    CHECK(b && b->quoted && b->line == 2);
    CHECK_EQ_STR(str_at(t, "b"), "x");
    CHECK(ytree_get(t, "c")->kind == YT_NULL);
    CHECK(ytree_get(t, "d")->kind == YT_NULL);
    const struct ytree *e = ytree_get(t, "e");
    CHECK(e->kind == YT_SEQ && e->n == 3 && e->line == 5);
    CHECK(e->items[2]->quoted && !e->items[1]->quoted);
    CHECK_EQ_STR(e->items[1]->str, "two");
    const struct ytree *f = ytree_get(t, "f");
    CHECK(f->kind == YT_MAP && ytree_get(f, "g")->kind == YT_NULL &&
          ytree_get(f, "h")->kind == YT_NULL);
    CHECK(ytree_get(t, "i")->quoted);
    CHECK_EQ_STR(str_at(t, "j"), "block\n");
    CHECK(ytree_get(t, "j")->quoted);
    CHECK(ytree_get(t, "zz") == NULL);
    CHECK(ytree_get(e, "a") == NULL);
    ytree_free(t);
}

static void json_is_yaml(void)
{
    struct ytree *t = parse("{\n  \"name\": \"a\\/b\\u00e9\",\n  \"n\": -1.5e3,\n"
                            "  \"list\": [true, null, {}],\n  \"x\":1}\n");
    CHECK(t && t->kind == YT_MAP);
    if (!t)
        return;
    CHECK_EQ_STR(str_at(t, "name"), "a/b\xc3\xa9");
    const struct ytree *n = ytree_get(t, "n");
    CHECK(n && !n->quoted && n->line == 3);
    CHECK_EQ_STR(n->str, "-1.5e3");
    const struct ytree *l = ytree_get(t, "list");
    CHECK(l && l->n == 3 && l->items[1]->kind == YT_NULL && l->items[2]->kind == YT_MAP &&
          l->line == 4);
    CHECK_EQ_STR(str_at(t, "x"), "1");
    ytree_free(t);
}

static void anchors_aliases_merges(void)
{
    struct ytree *t = parse("base: &b {x: 1, y: 2}\n"
                            "other: &o {y: 20, z: 30}\n"
                            "copy: *b\n"
                            "m1: {<<: *b, y: 5}\n"
                            "m2:\n  <<: [*o, *b]\n  w: 0\n"
                            "s: &s hello\nt: *s\n");
    CHECK(t != NULL);
    if (!t) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    const struct ytree *copy = ytree_get(t, "copy");
    CHECK(copy && copy->kind == YT_MAP && copy != ytree_get(t, "base"));
    CHECK_EQ_STR(str_at(copy, "y"), "2");
    const struct ytree *m1 = ytree_get(t, "m1");
    CHECK_EQ_INT(m1->n, 4);
    CHECK_EQ_STR(str_at(m1, "x"), "1");
    CHECK_EQ_STR(str_at(m1, "y"), "5"); /* own keys win */
    const struct ytree *m2 = ytree_get(t, "m2");
    CHECK_EQ_INT(m2->n, 8);
    CHECK_EQ_STR(str_at(m2, "y"), "20"); /* earlier merge source wins */
    CHECK_EQ_STR(str_at(m2, "x"), "1");
    CHECK_EQ_STR(str_at(m2, "z"), "30");
    CHECK_EQ_STR(str_at(m2, "w"), "0");
    CHECK_EQ_STR(str_at(t, "t"), "hello");
    ytree_free(t);
}

static void ignore_tag(void)
{
    struct ytree *t = parse("!ignore defs: &d {a: 1}\nreal: *d\n");
    CHECK(t && t->n == 2);
    if (t) {
        CHECK(ytree_get(t, "defs") == NULL);
        CHECK_EQ_STR(str_at(ytree_get(t, "real"), "a"), "1");
    }
    ytree_free(t);
}

static void errors(void)
{
    CHECK(parse("a: 1\nb: 2\na: 3\n") == NULL);
    CHECK_EQ_STR(err, "t.yaml:3:1: duplicate key 'a'");

    /* big maps check duplicates through a table */
    char big[400] = "";
    for (int i = 0; i < 20; i++)
        snprintf(big + strlen(big), sizeof big - strlen(big), "k%d: %d\n", i, i);
    strcat(big, "k7: x\n");
    CHECK(parse(big) == NULL);
    CHECK_EQ_STR(err, "t.yaml:21:1: duplicate key 'k7'");

    CHECK(parse("a: *nope\n") == NULL);
    CHECK_EQ_STR(err, "t.yaml:1:4: unknown anchor 'nope'");

    CHECK(parse("a: [1, 2\nb: 3\n") == NULL);
    CHECK(strncmp(err, "t.yaml:", 7) == 0 && strstr(err, "while parsing") != NULL);

    CHECK(parse("a:\n  b: 1\n c: 2\n") == NULL);
    CHECK(strncmp(err, "t.yaml:3:", 9) == 0);

    CHECK(parse("? [1]\n: 2\n") == NULL);
    CHECK(strstr(err, "map keys must be scalars") != NULL);

    CHECK(parse("a: {<<: 1}\n") == NULL);
    CHECK(strstr(err, "'<<' merges a map") != NULL);

    err[0] = '\0';
    CHECK(ytree_parse("x", YTREE_MAX_INPUT + 1ul, NULL, err, sizeof err) == NULL);
    CHECK(strncmp(err, "<input>:1:1: input larger", 25) == 0);
}

static void limits(void)
{
    /* billion laughs: 9 levels of 9 aliases = 9^9 nodes */
    char bomb[2048] = "a: &a [x, x, x, x, x, x, x, x, x]\n";
    for (char c = 'b'; c <= 'j'; c++) {
        char line[128];
        snprintf(line, sizeof line, "%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n", c,
                 c, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
        strcat(bomb, line);
    }
    CHECK(parse(bomb) == NULL);
    CHECK(strstr(err, "expands beyond 1000000 nodes") != NULL);

    char deep[1200];
    memset(deep, '[', 300);
    memset(deep + 300, ']', 300);
    deep[600] = '\0';
    CHECK(parse(deep) == NULL);
    CHECK(strstr(err, "nesting deeper than 256") != NULL);

    /* an alias of a deep node placed deep again goes over the limit too */
    char d2[1200];
    size_t o = 0;
    o += (size_t)sprintf(d2 + o, "a: &a ");
    memset(d2 + o, '[', 200), o += 200;
    memset(d2 + o, ']', 200), o += 200;
    o += (size_t)sprintf(d2 + o, "\nb: ");
    memset(d2 + o, '[', 100), o += 100;
    o += (size_t)sprintf(d2 + o, "*a");
    memset(d2 + o, ']', 100), o += 100;
    d2[o] = '\0';
    CHECK(parse(d2) == NULL);
    CHECK(strstr(err, "nesting deeper than 256") != NULL);
}

static void documents(void)
{
    struct ytree **docs;
    const char *s = "a: &x 1\n---\nb: 2\n---\n- 3\n";
    int n = ytree_parse_all(s, strlen(s), "m.yaml", &docs, err, sizeof err);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_STR(str_at(docs[1], "b"), "2");
        CHECK(docs[1]->line == 3);
        CHECK(docs[2]->kind == YT_SEQ);
    }
    ytree_free_all(docs, n);

    const char *s2 = "a: &x 1\n---\nb: *x\n"; /* anchors end with their document */
    CHECK_EQ_INT(ytree_parse_all(s2, strlen(s2), "m.yaml", &docs, err, sizeof err), -1);
    CHECK(docs == NULL);

    CHECK_EQ_INT(ytree_parse_all("", 0, "e.yaml", &docs, err, sizeof err), 0);
    CHECK(docs == NULL);
    struct ytree *t = parse("");
    CHECK(t && t->kind == YT_NULL);
    ytree_free(t);
    t = parse("# only a comment\n");
    CHECK(t && t->kind == YT_NULL);
    ytree_free(t);
    t = parse("first: 1\n---\nsecond: 2\n");
    CHECK(t && ytree_get(t, "first") && !ytree_get(t, "second"));
    ytree_free(t);
}

static void big_map_is_linear(void)
{
    size_t cap = 20000 * 24, o = 0;
    char *s = malloc(cap);
    for (int i = 0; i < 20000; i++)
        o += (size_t)snprintf(s + o, cap - o, "key%d: {v: %d}\n", i, i);
    struct ytree *t = ytree_parse(s, o, "big.yaml", err, sizeof err);
    CHECK(t && t->n == 40000);
    CHECK_EQ_STR(str_at(ytree_get(t, "key19999"), "v"), "19999");
    ytree_free(t);
    free(s);
}

TEST_MAIN(TEST(scalars_and_positions), TEST(json_is_yaml), TEST(anchors_aliases_merges),
          TEST(ignore_tag), TEST(errors), TEST(limits), TEST(documents), TEST(big_map_is_linear))
