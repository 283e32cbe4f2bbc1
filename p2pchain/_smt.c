/*
 * _smt.c -- a C accelerator for the state tree's update (p2pchain/ledger/smt.py).
 *
 * smt.py's pure-Python `_PureCore` is the reference; `update` here walks the same compact
 * sparse Merkle tree the same way and must leave exactly the same nodes in `pending` and
 * return the same root node (tests/p2pchain/ledger/test_smt_core.py compares the two on
 * generated change sets, and the tree's tests run on whichever is active).
 *
 * What it does not do: it reads no storage.  A node it has not got in `pending` or
 * `young` comes from `load_slow(pos)` (smt.py: the older cache generation, then SQLite).
 * So the tree's meaning stays in smt.py, and this file is only the walk -- the bisections,
 * the compaction rules, the row keys and the inner nodes' hashes (BLAKE2b-256, below) --
 * without the interpreter's cost per node.
 *
 * Nodes are Python tuples, as in smt.py: (hash, path) for a leaf, (hash, None) for an
 * inner node, None for an empty subtree; hashes and paths are 32-byte bytes.  A node's row
 * key ("pos") is its prefix bits left-aligned in ceil(depth / 8) bytes, then the depth as
 * two big-endian bytes (smt.py's `_position`).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PATH_BYTES 32
#define PATH_BITS 256
#define ABI_VERSION 2   /* smt.py checks it: a stale build of an older file is not used */

/* -- BLAKE2b-256 of one inner node's 65 bytes (RFC 7693) ------------------------------
 * smt.py hashes with encoding.digest_bytes (hashlib's BLAKE2b, 32-byte digest, no key);
 * calling it from here cost more than the whole walk, so the one case the walk needs -- a
 * message of 65 bytes, one block -- is done here.  smt.py uses this module only if
 * `blake2b_256` gives digest_bytes' bytes on its self-check, and the tests compare them
 * on generated inputs. */

static const uint64_t IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

static const uint8_t SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

#define ROTR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#define G(a, b, c, d, x, y)                 \
    do {                                    \
        a = a + b + (x);                    \
        d = ROTR64(d ^ a, 32);              \
        c = c + d;                          \
        b = ROTR64(b ^ c, 24);              \
        a = a + b + (y);                    \
        d = ROTR64(d ^ a, 16);              \
        c = c + d;                          \
        b = ROTR64(b ^ c, 63);              \
    } while (0)

/* BLAKE2b with a 32-byte digest of `len` <= 128 bytes: one block, the last. */
static void
blake2b_256_short(const unsigned char *data, size_t len, unsigned char out[32])
{
    unsigned char block[128] = {0};
    uint64_t h[8], v[16], m[16];
    memcpy(block, data, len);
    for (int i = 0; i < 16; i++) {
        uint64_t word = 0;
        for (int k = 7; k >= 0; k--)
            word = (word << 8) | block[8 * i + k];
        m[i] = word;
    }
    for (int i = 0; i < 8; i++)
        h[i] = IV[i];
    h[0] ^= 0x01010000ULL ^ 32;  /* digest length 32, no key, fanout 1, depth 1 */
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = IV[i];
    }
    v[12] ^= (uint64_t)len;  /* the byte counter's low word; its high word stays 0 */
    v[14] = ~v[14];          /* the last block */
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = SIGMA[r];
        G(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
        G(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
        G(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
        G(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
        G(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
        G(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
        G(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
        G(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 4; i++) {
        uint64_t word = h[i] ^ v[i] ^ v[i + 8];
        for (int k = 0; k < 8; k++)
            out[8 * i + k] = (unsigned char)(word >> (8 * k));
    }
}

typedef struct {
    const unsigned char *path;  /* PATH_BYTES, inside path_obj */
    PyObject *path_obj;         /* borrowed: bytes */
    PyObject *lh;               /* borrowed: the leaf hash (bytes), or None to delete */
} Entry;

typedef struct {
    PyObject *pending;    /* dict pos -> node or None: what this update writes */
    PyObject *young;      /* dict pos -> node or None: the newer cache generation */
    PyObject *load_slow;  /* callable(pos) -> node or None */
} Walk;

static inline int
bit_at(const unsigned char *path, int depth)
{
    return (path[depth >> 3] >> (7 - (depth & 7))) & 1;
}

/* The row key of the node at `depth` whose prefix is the first `depth` bits of `prefix`. */
static PyObject *
make_key(int depth, const unsigned char *prefix)
{
    unsigned char buf[PATH_BYTES + 2];
    int n = (depth + 7) / 8;
    memcpy(buf, prefix, n);
    if (depth & 7)
        buf[n - 1] &= (unsigned char)(0xFF << (8 - (depth & 7)));
    buf[n] = (unsigned char)(depth >> 8);
    buf[n + 1] = (unsigned char)(depth & 0xFF);
    return PyBytes_FromStringAndSize((const char *)buf, n + 2);
}

/* 0: None; 1: a leaf; 2: an inner node; -1: not a node (error set). */
static int
node_kind(PyObject *node)
{
    if (node == Py_None)
        return 0;
    if (!PyTuple_CheckExact(node) || PyTuple_GET_SIZE(node) != 2)
        goto bad;
    PyObject *hash = PyTuple_GET_ITEM(node, 0), *leaf = PyTuple_GET_ITEM(node, 1);
    if (!PyBytes_CheckExact(hash) || PyBytes_GET_SIZE(hash) != PATH_BYTES)
        goto bad;
    if (leaf == Py_None)
        return 2;
    if (PyBytes_CheckExact(leaf) && PyBytes_GET_SIZE(leaf) == PATH_BYTES)
        return 1;
bad:
    PyErr_SetString(PyExc_ValueError, "state tree: a stored node is not (hash, path or None)");
    return -1;
}

static int
put(Walk *w, PyObject *key, PyObject *node)
{
    return PyDict_SetItem(w->pending, key, node);
}

/* New reference to the node at `key` (None if empty), or NULL with an error set. */
static PyObject *
load(Walk *w, PyObject *key)
{
    /* Every node is checked before the walk reads it, wherever it came from: the cache
     * holds what the table held, and a damaged table must give an error, not a bad read. */
    PyObject *node = PyDict_GetItemWithError(w->pending, key);
    if (node == NULL && !PyErr_Occurred())
        node = PyDict_GetItemWithError(w->young, key);
    if (node != NULL)
        Py_INCREF(node);
    else if (!PyErr_Occurred())
        node = PyObject_CallOneArg(w->load_slow, key);
    if (node != NULL && node_kind(node) < 0)
        Py_CLEAR(node);
    return node;
}

static PyObject *
inner_node(PyObject *left, PyObject *right)
{
    static const unsigned char empty[PATH_BYTES] = {0};
    unsigned char buf[1 + 2 * PATH_BYTES], hash[PATH_BYTES];
    buf[0] = 0x01;
    memcpy(buf + 1, left == Py_None ? empty : (const unsigned char *)PyBytes_AS_STRING(PyTuple_GET_ITEM(left, 0)), PATH_BYTES);
    memcpy(buf + 1 + PATH_BYTES, right == Py_None ? empty : (const unsigned char *)PyBytes_AS_STRING(PyTuple_GET_ITEM(right, 0)), PATH_BYTES);
    blake2b_256_short(buf, sizeof buf, hash);
    PyObject *hash_obj = PyBytes_FromStringAndSize((const char *)hash, PATH_BYTES);
    if (hash_obj == NULL)
        return NULL;
    PyObject *node = PyTuple_Pack(2, hash_obj, Py_None);
    Py_DECREF(hash_obj);
    return node;
}

/* The first index in [lo, hi) whose path has bit `depth` set (all share the bits above). */
static Py_ssize_t
first_right(const Entry *entries, Py_ssize_t lo, Py_ssize_t hi, int depth)
{
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (bit_at(entries[mid].path, depth))
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static void
child_prefixes(const unsigned char *prefix, int depth, unsigned char *left, unsigned char *right)
{
    memcpy(left, prefix, PATH_BYTES);
    memcpy(right, prefix, PATH_BYTES);
    right[depth >> 3] |= (unsigned char)(0x80 >> (depth & 7));
}

/* smt.py's _build: the subtree of `leaves[lo:hi]` (>= 1, sorted, all with a leaf hash) at a
 * position with nothing stored below it. New reference, or NULL. */
static PyObject *
build(Walk *w, int depth, const unsigned char *prefix, const Entry *leaves, Py_ssize_t lo, Py_ssize_t hi)
{
    PyObject *key = make_key(depth, prefix), *node = NULL;
    if (key == NULL)
        return NULL;
    if (hi - lo == 1) {
        node = PyTuple_Pack(2, leaves[lo].lh, leaves[lo].path_obj);
    } else if (depth >= PATH_BITS) {
        PyErr_SetString(PyExc_ValueError, "state tree: two leaves with one path");
    } else {
        unsigned char lp[PATH_BYTES], rp[PATH_BYTES];
        child_prefixes(prefix, depth, lp, rp);
        Py_ssize_t split = first_right(leaves, lo, hi, depth);
        PyObject *left = split > lo ? build(w, depth + 1, lp, leaves, lo, split) : Py_NewRef(Py_None);
        PyObject *right = NULL;
        if (left != NULL)
            right = split < hi ? build(w, depth + 1, rp, leaves, split, hi) : Py_NewRef(Py_None);
        if (right != NULL)
            node = inner_node(left, right);
        Py_XDECREF(left);
        Py_XDECREF(right);
    }
    if (node && put(w, key, node) < 0)
        Py_CLEAR(node);
    Py_DECREF(key);
    return node;
}

/* The subtree at a position holding `node` (None or a leaf), rebuilt from that leaf (unless
 * a change replaces it) and the changes[lo:hi]. New reference, or NULL. */
static PyObject *
rebuild(Walk *w, int depth, const unsigned char *prefix, PyObject *node, const Entry *changes,
        Py_ssize_t lo, Py_ssize_t hi)
{
    Entry *leaves = PyMem_New(Entry, hi - lo + 1);
    if (leaves == NULL)
        return PyErr_NoMemory();
    Py_ssize_t n = 0;
    int placed = node == Py_None;
    Entry here = {NULL, NULL, NULL};  /* the leaf stored here, as a change that keeps it */
    if (!placed) {
        here.path_obj = PyTuple_GET_ITEM(node, 1);
        here.path = (const unsigned char *)PyBytes_AS_STRING(here.path_obj);
        here.lh = PyTuple_GET_ITEM(node, 0);
    }
    for (Py_ssize_t i = lo; i < hi; i++) {
        if (!placed) {
            int order = memcmp(here.path, changes[i].path, PATH_BYTES);
            if (order <= 0) {
                placed = 1;
                if (order < 0)
                    leaves[n++] = here;
                /* order == 0: the change replaces (or deletes) the leaf */
            }
        }
        if (changes[i].lh != Py_None)
            leaves[n++] = changes[i];
    }
    if (!placed)
        leaves[n++] = here;
    PyObject *result;
    if (n > 0) {
        result = build(w, depth, prefix, leaves, 0, n);
    } else {
        result = Py_NewRef(Py_None);
        if (node != Py_None) {
            PyObject *key = make_key(depth, prefix);
            if (key == NULL || put(w, key, Py_None) < 0)
                Py_CLEAR(result);
            Py_XDECREF(key);
        }
    }
    PyMem_Free(leaves);
    return result;
}

/* smt.py's _update: the new node at (depth, prefix), now `node`, after changes[lo:hi]
 * (sorted, all below it). New reference, or NULL. */
static PyObject *
update(Walk *w, int depth, const unsigned char *prefix, PyObject *node, const Entry *changes,
       Py_ssize_t lo, Py_ssize_t hi)
{
    int kind = node_kind(node);
    if (kind < 0)
        return NULL;
    if (kind < 2)
        return rebuild(w, depth, prefix, node, changes, lo, hi);
    if (depth >= PATH_BITS) {
        PyErr_SetString(PyExc_ValueError, "state tree: an inner node below the last bit");
        return NULL;
    }
    unsigned char lp[PATH_BYTES], rp[PATH_BYTES];
    child_prefixes(prefix, depth, lp, rp);
    PyObject *lkey = make_key(depth + 1, lp), *rkey = NULL, *key = NULL;
    PyObject *left = NULL, *right = NULL, *result = NULL;
    if (lkey == NULL || (rkey = make_key(depth + 1, rp)) == NULL || (key = make_key(depth, prefix)) == NULL)
        goto done;
    Py_ssize_t split = first_right(changes, lo, hi, depth);
    if ((left = load(w, lkey)) == NULL || (right = load(w, rkey)) == NULL)
        goto done;
    if (split > lo) {
        PyObject *next = update(w, depth + 1, lp, left, changes, lo, split);
        if (next == NULL)
            goto done;
        Py_SETREF(left, next);
    }
    if (split < hi) {
        PyObject *next = update(w, depth + 1, rp, right, changes, split, hi);
        if (next == NULL)
            goto done;
        Py_SETREF(right, next);
    }
    if (left == Py_None && right == Py_None) {
        if (put(w, key, Py_None) == 0)
            result = Py_NewRef(Py_None);
    } else if (left == Py_None && PyTuple_GET_ITEM(right, 1) != Py_None) {
        /* compaction: a lone leaf moves up */
        if (put(w, rkey, Py_None) == 0 && put(w, key, right) == 0)
            result = Py_NewRef(right);
    } else if (right == Py_None && PyTuple_GET_ITEM(left, 1) != Py_None) {
        if (put(w, lkey, Py_None) == 0 && put(w, key, left) == 0)
            result = Py_NewRef(left);
    } else {
        result = inner_node(left, right);
        if (result && put(w, key, result) < 0)
            Py_CLEAR(result);
    }
done:
    Py_XDECREF(lkey);
    Py_XDECREF(rkey);
    Py_XDECREF(key);
    Py_XDECREF(left);
    Py_XDECREF(right);
    return result;
}

PyDoc_STRVAR(update_doc,
"update(root, changes, pending, young, load_slow) -> the new root node\n\n"
"Apply `changes` -- a list of (path, leaf hash or None), paths 32 bytes, strictly\n"
"increasing -- to the tree whose root node is `root`; every node written goes into\n"
"`pending` (pos -> node or None). See smt.py's _PureCore.update, which this mirrors.");

static PyObject *
smt_update(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "update takes 5 arguments");
        return NULL;
    }
    Walk w = {args[2], args[3], args[4]};
    PyObject *root = args[0], *changes = args[1];
    if (!PyList_CheckExact(changes) || !PyDict_CheckExact(w.pending) || !PyDict_CheckExact(w.young)) {
        PyErr_SetString(PyExc_TypeError, "update: changes must be a list, pending and young dicts");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(changes);
    if (n == 0)
        return Py_NewRef(root);
    /* the list is ours for the call (smt.py builds it): its items stay alive */
    Entry *entries = PyMem_New(Entry, n);
    if (entries == NULL)
        return PyErr_NoMemory();
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(changes, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2)
            goto bad;
        PyObject *path = PyTuple_GET_ITEM(item, 0), *lh = PyTuple_GET_ITEM(item, 1);
        if (!PyBytes_CheckExact(path) || PyBytes_GET_SIZE(path) != PATH_BYTES)
            goto bad;
        if (lh != Py_None && (!PyBytes_CheckExact(lh) || PyBytes_GET_SIZE(lh) != PATH_BYTES))
            goto bad;
        entries[i].path = (const unsigned char *)PyBytes_AS_STRING(path);
        entries[i].path_obj = path;
        entries[i].lh = lh;
        if (i > 0 && memcmp(entries[i - 1].path, entries[i].path, PATH_BYTES) >= 0) {
            PyErr_SetString(PyExc_ValueError, "update: change paths must be strictly increasing");
            goto done;
        }
    }
    unsigned char prefix[PATH_BYTES] = {0};
    result = update(&w, 0, prefix, root, entries, 0, n);
    goto done;
bad:
    PyErr_SetString(PyExc_TypeError, "update: each change must be (32-byte path, 32-byte leaf hash or None)");
done:
    PyMem_Free(entries);
    return result;
}

static PyObject *
smt_blake2b_256(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (view.len > 128) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "blake2b_256 here hashes at most 128 bytes");
        return NULL;
    }
    unsigned char out[32];
    blake2b_256_short(view.buf, (size_t)view.len, out);
    PyBuffer_Release(&view);
    return PyBytes_FromStringAndSize((const char *)out, 32);
}

static PyMethodDef methods[] = {
    {"update", (PyCFunction)(void (*)(void))smt_update, METH_FASTCALL, update_doc},
    {"blake2b_256", smt_blake2b_256, METH_O,
     "blake2b_256(data) -> BLAKE2b with a 32-byte digest of at most 128 bytes (the walk's hash)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_smt",
    "C walk of the state tree's update (see p2pchain/ledger/smt.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__smt(void)
{
    PyObject *module = PyModule_Create(&module_def);
    if (module && PyModule_AddIntConstant(module, "ABI_VERSION", ABI_VERSION) < 0)
        Py_CLEAR(module);
    return module;
}
