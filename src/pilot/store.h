/* pilot/store: the config store. Loads every *.yaml, *.yml and *.json file under a
 * directory (recursively, in path order), keeps the objects of each file, watches the
 * directory tree with inotify from an event loop, re-reads files that changed and
 * publishes a new immutable model snapshot (pilot/model.h) with a higher version after
 * each change.
 *
 * Last good config: when a file stops parsing (YAML syntax error), every object it had
 * stays; when one object of a file becomes invalid, its previous valid version (same kind,
 * namespace and name) stays. Either way the errors are in the snapshot.
 *
 * Single-threaded: call everything from the loop's thread. Snapshots themselves may be
 * handed to other threads (they are immutable and refcounted). */
#ifndef WEFT_PILOT_STORE_H
#define WEFT_PILOT_STORE_H

#include <stdint.h>

#include "common/loop.h"
#include "pilot/model.h"

#define PILOT_STORE_MAX_FILE (16u * 1024 * 1024) /* bytes per config file */
#define PILOT_STORE_MAX_FILES 10000               /* files under the directory */

struct pilot_store;

/* Called after a new snapshot was published (m is borrowed: take a reference to keep it).
 * weftd debounces pushes on it. */
typedef void (*pilot_store_cb)(struct pilot_store *s, struct pilot_model *m, void *arg);

/* Creates a store for dir (copied) with the given DNS domain suffix (NULL: cluster.local)
 * and loads it once. A directory that cannot be read still gives a store (with the error in
 * its snapshot). Returns NULL only when out of memory. */
struct pilot_store *pilot_store_new(const char *dir, const char *domain_suffix);
void pilot_store_free(struct pilot_store *s);

/* The current snapshot, with a new reference for the caller (pilot_model_unref). */
struct pilot_model *pilot_store_snapshot(struct pilot_store *s);

/* Re-reads the directory: files whose content changed are parsed again, removed files
 * drop their objects. Publishes a new snapshot (and calls the callback) only when
 * something changed. Returns 1 when a new snapshot was published, 0 when nothing changed,
 * -1 when out of memory. */
int pilot_store_rescan(struct pilot_store *s);

/* Watches the directory tree with inotify on loop l: once events stop for 50 ms (a save is
 * several events), one pilot_store_rescan. cb (may be NULL) is called for every new snapshot. Returns 0 or
 * -errno. */
int pilot_store_watch(struct pilot_store *s, struct loop *l, pilot_store_cb cb, void *arg);

#endif
