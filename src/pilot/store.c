/* pilot/store: files -> objects -> snapshots, with inotify. */
#include "pilot/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

struct store_file {
    char *path;
    uint64_t hash;
    int seen;                         /* found by the current scan */
    struct istio_object_list objs;    /* the objects in use (valid; maybe last good) */
    struct istio_errors errs;         /* problems of the last read */
};

struct pilot_store {
    char *dir;
    char *suffix;
    struct store_file *files;
    size_t n_files, cap_files;
    struct istio_errors scan_errs;    /* directory-level problems of the last scan */
    struct pilot_model *model;
    uint64_t version;
    struct loop *loop;
    struct io io;
    int ifd;
    struct timer settle;              /* rescan once the directory is quiet (STORE_SETTLE_MS) */
    pilot_store_cb cb;
    void *cb_arg;
};

/* A write is often several events (truncate, write, close; or an editor's rename dance), and
 * reading between them sees a half-written file. Events restart this timer; the directory is
 * read once nothing has happened for this long. */
#define STORE_SETTLE_MS 50

static int has_config_ext(const char *name)
{
    size_t n = strlen(name);
    return (n > 5 && !strcmp(name + n - 5, ".yaml")) || (n > 4 && !strcmp(name + n - 4, ".yml")) ||
           (n > 5 && !strcmp(name + n - 5, ".json"));
}

/* Collects config file paths under dir (sorted), adding inotify watches for directories. */
static int collect(struct pilot_store *s, const char *dir, char ***paths, size_t *n, size_t *cap,
                   int depth)
{
    if (depth > 32)
        return 0;
    if (s->ifd >= 0)
        inotify_add_watch(s->ifd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
                                           IN_DELETE | IN_DELETE_SELF | IN_MODIFY);
    struct dirent **ents;
    int ne = scandir(dir, &ents, NULL, alphasort);
    if (ne < 0) {
        istio_errors_add(&s->scan_errs, "%s: cannot read directory: %s", dir, strerror(errno));
        return 0;
    }
    int rc = 0;
    for (int i = 0; i < ne; i++) {
        const char *name = ents[i]->d_name;
        if (rc == 0 && name[0] != '.') {
            size_t len = strlen(dir) + strlen(name) + 2;
            char *p = malloc(len);
            if (!p) {
                rc = -1;
            } else {
                snprintf(p, len, "%s/%s", dir, name);
                struct stat st;
                if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
                    rc = collect(s, p, paths, n, cap, depth + 1);
                    free(p);
                } else if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && has_config_ext(name)) {
                    if (*n >= PILOT_STORE_MAX_FILES) {
                        istio_errors_add(&s->scan_errs, "%s: more than %u config files; ignored", p,
                                         PILOT_STORE_MAX_FILES);
                        free(p);
                    } else {
                        if (*n == *cap) {
                            size_t c = *cap ? *cap * 2 : 16;
                            char **a = realloc(*paths, c * sizeof *a);
                            if (!a) {
                                free(p);
                                rc = -1;
                                free(ents[i]);
                                continue;
                            }
                            *paths = a;
                            *cap = c;
                        }
                        (*paths)[(*n)++] = p;
                    }
                } else {
                    free(p);
                }
            }
        }
        free(ents[i]);
    }
    free(ents);
    return rc;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size > (off_t)PILOT_STORE_MAX_FILE) {
        snprintf(err, errlen, "file larger than %u bytes", PILOT_STORE_MAX_FILE);
        close(fd);
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap) {
            if (cap > PILOT_STORE_MAX_FILE) {
                free(buf);
                buf = NULL;
                snprintf(err, errlen, "file larger than %u bytes", PILOT_STORE_MAX_FILE);
                break;
            }
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
    }
    close(fd);
    if (buf)
        *len = n;
    else if (!*err)
        snprintf(err, errlen, "out of memory");
    return buf;
}

static int same_identity(const struct istio_object *a, const struct istio_object *b)
{
    return a->kind == b->kind && a->name && b->name && !strcmp(a->name, b->name) &&
           !strcmp(a->ns, b->ns);
}

/* Parses a changed file into f, keeping last good objects as the header comment says. */
static int reparse(struct pilot_store *s, struct store_file *f, const char *text, size_t len)
{
    struct istio_object_list fresh = {0}, use = {0};
    struct istio_errors errs = {0};
    int rc = istio_parse(text, len, f->path, s->suffix, &fresh, &errs);
    if (rc < 0)
        goto oom;
    if (fresh.syntax_error) {
        /* nothing could be read: keep every object as it was */
        for (size_t i = 0; i < f->objs.n; i++)
            istio_errors_add(&errs, "%s: keeping the last good version of %s %s/%s", f->path,
                             istio_kind_name(f->objs.items[i]->kind), f->objs.items[i]->ns,
                             f->objs.items[i]->name);
        istio_object_list_free(&fresh);
        istio_errors_free(&f->errs);
        f->errs = errs;
        return 0;
    }
    for (size_t i = 0; i < fresh.n; i++) {
        struct istio_object *o = fresh.items[i];
        if (!o->invalid) {
            if (istio_object_list_push(&use, istio_object_ref(o)) < 0)
                goto oom;
            continue;
        }
        for (size_t j = 0; j < f->objs.n; j++)
            if (same_identity(f->objs.items[j], o)) {
                if (istio_object_list_push(&use, istio_object_ref(f->objs.items[j])) < 0)
                    goto oom;
                istio_errors_add(&errs, "%s: keeping the last good version of %s %s/%s", f->path,
                                 istio_kind_name(o->kind), o->ns, o->name);
                break;
            }
    }
    istio_object_list_free(&fresh);
    istio_object_list_free(&f->objs);
    istio_errors_free(&f->errs);
    f->objs = use;
    f->errs = errs;
    return 0;
oom:
    istio_object_list_free(&fresh);
    istio_object_list_free(&use);
    istio_errors_free(&errs);
    return -1;
}

static struct store_file *find_file(struct pilot_store *s, const char *path)
{
    for (size_t i = 0; i < s->n_files; i++)
        if (!strcmp(s->files[i].path, path))
            return &s->files[i];
    return NULL;
}

static int file_cmp(const void *a, const void *b)
{
    return strcmp(((const struct store_file *)a)->path, ((const struct store_file *)b)->path);
}

static int publish(struct pilot_store *s)
{
    struct istio_object_list all = {0};
    struct istio_errors errs = {0};
    int rc = -1;
    if (istio_errors_append(&errs, &s->scan_errs) < 0)
        goto out;
    for (size_t i = 0; i < s->n_files; i++) {
        for (size_t j = 0; j < s->files[i].objs.n; j++)
            if (istio_object_list_push(&all, istio_object_ref(s->files[i].objs.items[j])) < 0)
                goto out;
        if (istio_errors_append(&errs, &s->files[i].errs) < 0)
            goto out;
    }
    struct pilot_model *m = pilot_model_new(all.items, all.n, &errs, s->suffix, ++s->version);
    if (!m)
        goto out;
    pilot_model_unref(s->model);
    s->model = m;
    rc = 0;
out:
    istio_object_list_free(&all);
    istio_errors_free(&errs);
    return rc;
}

int pilot_store_rescan(struct pilot_store *s)
{
    char **paths = NULL;
    size_t n = 0, cap = 0;
    int changed = 0;
    struct istio_errors old_scan = s->scan_errs;
    memset(&s->scan_errs, 0, sizeof s->scan_errs);
    if (collect(s, s->dir, &paths, &n, &cap, 0) < 0)
        goto oom;
    if (old_scan.n != s->scan_errs.n)
        changed = 1;
    istio_errors_free(&old_scan);
    for (size_t i = 0; i < s->n_files; i++)
        s->files[i].seen = 0;
    for (size_t i = 0; i < n; i++) {
        struct store_file *f = find_file(s, paths[i]);
        if (!f) {
            if (s->n_files == s->cap_files) {
                size_t c = s->cap_files ? s->cap_files * 2 : 16;
                struct store_file *a = realloc(s->files, c * sizeof *a);
                if (!a)
                    goto oom;
                s->files = a;
                s->cap_files = c;
            }
            f = &s->files[s->n_files++];
            memset(f, 0, sizeof *f);
            f->path = paths[i];
            paths[i] = NULL;
            f->hash = 0;
            f->seen = 2; /* new */
        } else {
            f->seen = 1;
        }
        char err[256] = "";
        size_t len = 0;
        char *text = read_file(f->path, &len, err, sizeof err);
        if (!text) {
            istio_errors_free(&f->errs);
            istio_errors_add(&f->errs, "%s: cannot read: %s", f->path, err);
            changed = 1;
            continue;
        }
        uint64_t h = XXH3_64bits(text, len) | 1; /* never 0, which means "not read yet" */
        if (f->seen == 2 || h != f->hash) {
            f->hash = h;
            if (reparse(s, f, text, len) < 0) {
                free(text);
                goto oom;
            }
            changed = 1;
        }
        free(text);
    }
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    paths = NULL;
    /* drop files that are gone */
    size_t w = 0;
    for (size_t i = 0; i < s->n_files; i++) {
        if (!s->files[i].seen) {
            istio_object_list_free(&s->files[i].objs);
            istio_errors_free(&s->files[i].errs);
            free(s->files[i].path);
            changed = 1;
            continue;
        }
        s->files[w++] = s->files[i];
    }
    s->n_files = w;
    if (s->n_files)
        qsort(s->files, s->n_files, sizeof *s->files, file_cmp);
    if (!changed && s->model)
        return 0;
    if (publish(s) < 0)
        return -1;
    if (s->cb)
        s->cb(s, s->model, s->cb_arg);
    return 1;
oom:
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    return -1;
}

struct pilot_store *pilot_store_new(const char *dir, const char *domain_suffix)
{
    struct pilot_store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->ifd = -1;
    s->dir = strdup(dir);
    s->suffix = strdup(domain_suffix ? domain_suffix : "cluster.local");
    if (!s->dir || !s->suffix || pilot_store_rescan(s) < 0 || !s->model) {
        pilot_store_free(s);
        return NULL;
    }
    return s;
}

void pilot_store_free(struct pilot_store *s)
{
    if (!s)
        return;
    if (s->loop) {
        io_stop(s->loop, &s->io);
        timer_stop(s->loop, &s->settle);
    }
    if (s->ifd >= 0)
        close(s->ifd);
    for (size_t i = 0; i < s->n_files; i++) {
        istio_object_list_free(&s->files[i].objs);
        istio_errors_free(&s->files[i].errs);
        free(s->files[i].path);
    }
    free(s->files);
    istio_errors_free(&s->scan_errs);
    pilot_model_unref(s->model);
    free(s->dir);
    free(s->suffix);
    free(s);
}

struct pilot_model *pilot_store_snapshot(struct pilot_store *s)
{
    return pilot_model_ref(s->model);
}

static void on_inotify(struct loop *l, struct io *io, uint32_t events)
{
    struct pilot_store *s = io->data;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    int any = 0;
    (void)l;
    (void)events;
    for (;;) {
        ssize_t r = read(s->ifd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* EAGAIN: drained (edge-triggered) */
        any = 1;
    }
    if (any)
        timer_start(s->loop, &s->settle, STORE_SETTLE_MS);
}

static void on_settled(struct loop *l, struct timer *t)
{
    (void)l;
    pilot_store_rescan(t->data);
}

int pilot_store_watch(struct pilot_store *s, struct loop *l, pilot_store_cb cb, void *arg)
{
    s->cb = cb;
    s->cb_arg = arg;
    if (s->ifd < 0) {
        s->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (s->ifd < 0)
            return -errno;
        /* add the watches by scanning again (nothing changed: no new snapshot) */
        if (pilot_store_rescan(s) < 0)
            return -ENOMEM;
    }
    s->loop = l;
    timer_init(&s->settle, on_settled, s);
    return io_start(l, &s->io, s->ifd, EPOLLIN, on_inotify, s);
}
