/*
 * _canonical.c -- a C accelerator for p2pchain's canonical msgpack (p2pchain/encoding.py).
 *
 * The pure-Python functions in encoding.py are the reference; this module is a fast path
 * that must give exactly their bytes and values, or step aside.  Its two functions only
 * ever do one of three things:
 *
 *   - succeed with the very result the pure path would give;
 *   - raise `Refused` (no message, no path): the wrapper in encoding.py then runs the pure
 *     path, which either raises the EncodingError with the offending path or, for the few
 *     odd inputs the pure path tolerates (a str *subclass* as a map key), succeeds;
 *   - raise MemoryError.
 *
 * So the C side may refuse more than the pure path, never less.  It accepts exact types
 * only (None, bool, int, str, bytes, list, tuple, dict with exact-str keys): every subclass
 * goes to the pure path, which decides as it always has.  It calls no code of the caller's
 * (no comparisons, hashes or conversions of user types), and encode allocates no object the
 * garbage collector could run finalizers for, so a value cannot change under its feet.
 *
 * The canonical form (encoding.py's docstring): msgpack, map keys sorted by code point
 * (the order of their UTF-8 bytes, which memcmp gives), integers in -2**63 .. 2**64-1 in
 * msgpack's shortest form, str as fixstr/str8/16/32, bytes as bin8/16/32, list and tuple as
 * array.  Header choice below is byte for byte msgpack-c's pack_template.h, which the pure
 * path's msgpack.Packer uses: e.g. a positive int always takes the unsigned forms.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Must equal encoding.py's MAX_DEPTH and MAX_ITEMS; encoding.py checks before using us. */
#define MAX_DEPTH 32     /* containers nest at depths 0 .. MAX_DEPTH - 1 */
#define MAX_ITEMS 65536  /* entries in one list or map */

static PyObject *Refused;  /* canonical form not proven here: ask the pure path */

static int
refuse(void)
{
    PyErr_SetNone(Refused);
    return -1;
}

/* ------------------------------------------------------------------ encode: output buffer */

typedef struct {
    char *data;           /* `small` until the output outgrows it, then PyMem */
    Py_ssize_t len, cap;
    char small[1024];     /* a transaction or a block header fits without a heap call */
} Buffer;

static int
buffer_grow(Buffer *b, Py_ssize_t need)
{
    if (need > PY_SSIZE_T_MAX / 2 - b->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t cap = b->cap * 2 > b->len + need ? b->cap * 2 : b->len + need;
    char *data = PyMem_Malloc(cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(data, b->data, b->len);
    if (b->data != b->small)
        PyMem_Free(b->data);
    b->data = data;
    b->cap = cap;
    return 0;
}

#define RESERVE(b, n) \
    do { if ((b)->cap - (b)->len < (Py_ssize_t)(n) && buffer_grow((b), (n)) < 0) return -1; } while (0)

static inline void
put_byte(Buffer *b, unsigned char byte)
{
    b->data[b->len++] = (char)byte;
}

static inline void
put_be(Buffer *b, uint64_t value, int size)  /* big-endian, `size` bytes; reserved by caller */
{
    for (int shift = 8 * (size - 1); shift >= 0; shift -= 8)
        put_byte(b, (unsigned char)(value >> shift));
}

/* A header for a length `n`: the fix form when `n` fits under `fix_limit` (0 when the type
 * has none), else the first of the 8/16/32-bit forms that holds it (`code8` 0 when the type
 * has no 8-bit form).  msgpack's own choice for str, bin, array and map. */
static int
put_header(Buffer *b, Py_ssize_t n, unsigned char fix, Py_ssize_t fix_limit,
           unsigned char code8, unsigned char code16, unsigned char code32)
{
    RESERVE(b, 5);
    if (n < fix_limit)
        put_byte(b, fix | (unsigned char)n);
    else if (code8 && n < 0x100) {
        put_byte(b, code8);
        put_be(b, (uint64_t)n, 1);
    }
    else if (n < 0x10000) {
        put_byte(b, code16);
        put_be(b, (uint64_t)n, 2);
    }
    else if ((uint64_t)n <= 0xffffffffu) {
        put_byte(b, code32);
        put_be(b, (uint64_t)n, 4);
    }
    else
        return refuse();  /* msgpack cannot hold it; the pure path says so */
    return 0;
}

static int
put_raw(Buffer *b, const char *data, Py_ssize_t n)
{
    RESERVE(b, n);
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

static int
put_str(Buffer *b, const char *utf8, Py_ssize_t n)
{
    if (put_header(b, n, 0xa0, 32, 0xd9, 0xda, 0xdb) < 0)
        return -1;
    return put_raw(b, utf8, n);
}

/* An int in the 64-bit range, shortest form (pack_template.h, msgpack_pack_real_int64). */
static int
put_int(Buffer *b, PyObject *obj)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    RESERVE(b, 9);
    if (overflow > 0) {  /* 2**63 .. 2**64 - 1 only, as uint64 */
        unsigned long long u = PyLong_AsUnsignedLongLong(obj);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return refuse();
        }
        put_byte(b, 0xcf);
        put_be(b, u, 8);
    }
    else if (overflow < 0)
        return refuse();
    else if (v >= 0) {
        if (v < 0x80)
            put_byte(b, (unsigned char)v);
        else if (v < 0x100) { put_byte(b, 0xcc); put_be(b, (uint64_t)v, 1); }
        else if (v < 0x10000) { put_byte(b, 0xcd); put_be(b, (uint64_t)v, 2); }
        else if (v < 0x100000000LL) { put_byte(b, 0xce); put_be(b, (uint64_t)v, 4); }
        else { put_byte(b, 0xcf); put_be(b, (uint64_t)v, 8); }
    }
    else {
        if (v >= -32)
            put_byte(b, (unsigned char)(0xe0 | (v & 0x1f)));
        else if (v >= -128) { put_byte(b, 0xd0); put_be(b, (uint64_t)v, 1); }
        else if (v >= -32768) { put_byte(b, 0xd1); put_be(b, (uint64_t)v, 2); }
        else if (v >= -2147483648LL) { put_byte(b, 0xd2); put_be(b, (uint64_t)v, 4); }
        else { put_byte(b, 0xd3); put_be(b, (uint64_t)v, 8); }
    }
    return 0;
}

/* ------------------------------------------------------------------ encode: maps */

typedef struct {
    const char *key;   /* UTF-8, owned by the str object (cached by CPython) */
    Py_ssize_t size;
    PyObject *value;   /* borrowed from the dict */
} Entry;

/* Code point order of two str keys = byte order of their UTF-8 (a prefix sorts first). */
static int
compare_keys(const char *a, Py_ssize_t na, const char *b, Py_ssize_t nb)
{
    int order = memcmp(a, b, (size_t)(na < nb ? na : nb));
    return order ? order : (na > nb) - (na < nb);
}

static int
compare_entries(const void *a, const void *b)
{
    const Entry *x = a, *y = b;
    return compare_keys(x->key, x->size, y->key, y->size);
}

static int put_value(Buffer *b, PyObject *obj, int depth);

static int
put_map(Buffer *b, PyObject *dict, int depth)
{
    Py_ssize_t n = PyDict_GET_SIZE(dict), pos = 0, i = 0;
    Entry stack[32], *entries = stack;
    PyObject *key, *value;
    int status = -1;

    if (n > MAX_ITEMS)
        return refuse();
    if (n > (Py_ssize_t)(sizeof stack / sizeof stack[0])) {
        entries = PyMem_Malloc(n * sizeof(Entry));
        if (entries == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    while (PyDict_Next(dict, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) {  /* int, bytes, a str subclass: the pure path decides */
            refuse();
            goto done;
        }
        entries[i].key = PyUnicode_AsUTF8AndSize(key, &entries[i].size);
        if (entries[i].key == NULL) {  /* a lone surrogate has no UTF-8 */
            PyErr_Clear();
            refuse();
            goto done;
        }
        entries[i++].value = value;
    }
    /* Exact str keys of one dict are distinct, so no two compare equal. Insertion sort
     * for the usual handful of fields; qsort past that. */
    if (n <= 16) {
        for (Py_ssize_t j = 1; j < n; j++) {
            Entry entry = entries[j];
            Py_ssize_t k = j;
            for (; k > 0 && compare_entries(&entries[k - 1], &entry) > 0; k--)
                entries[k] = entries[k - 1];
            entries[k] = entry;
        }
    }
    else
        qsort(entries, (size_t)n, sizeof(Entry), compare_entries);

    if (put_header(b, n, 0x80, 16, 0, 0xde, 0xdf) < 0)
        goto done;
    for (i = 0; i < n; i++) {
        if (put_str(b, entries[i].key, entries[i].size) < 0 ||
            put_value(b, entries[i].value, depth + 1) < 0)
            goto done;
    }
    status = 0;
done:
    if (entries != stack)
        PyMem_Free(entries);
    return status;
}

/* ------------------------------------------------------------------ encode: any value */

static int
put_value(Buffer *b, PyObject *obj, int depth)
{
    PyTypeObject *type = Py_TYPE(obj);

    if (type == &PyUnicode_Type) {
        Py_ssize_t n;
        const char *utf8 = PyUnicode_AsUTF8AndSize(obj, &n);
        if (utf8 == NULL) {
            PyErr_Clear();
            return refuse();
        }
        return put_str(b, utf8, n);
    }
    /* bool is a subclass of int: the exact-type tests keep True from encoding as 1. */
    if (type == &PyLong_Type)
        return put_int(b, obj);
    if (obj == Py_None || type == &PyBool_Type) {
        RESERVE(b, 1);
        put_byte(b, obj == Py_None ? 0xc0 : obj == Py_True ? 0xc3 : 0xc2);
        return 0;
    }
    if (type == &PyBytes_Type) {
        Py_ssize_t n = PyBytes_GET_SIZE(obj);
        if (put_header(b, n, 0, 0, 0xc4, 0xc5, 0xc6) < 0)
            return -1;
        return put_raw(b, PyBytes_AS_STRING(obj), n);
    }
    if (type == &PyDict_Type || type == &PyList_Type || type == &PyTuple_Type) {
        if (depth >= MAX_DEPTH)
            return refuse();
        if (type == &PyDict_Type)
            return put_map(b, obj, depth);
        Py_ssize_t n = PySequence_Fast_GET_SIZE(obj);  /* the list or tuple's own array */
        PyObject **items = PySequence_Fast_ITEMS(obj);
        if (n > MAX_ITEMS)
            return refuse();
        if (put_header(b, n, 0x90, 16, 0, 0xdc, 0xdd) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < n; i++)
            if (put_value(b, items[i], depth + 1) < 0)
                return -1;
        return 0;
    }
    return refuse();  /* float, set, subclasses, anything else */
}

static PyObject *
canonical_encode(PyObject *module, PyObject *value)
{
    Buffer b;
    b.data = b.small;
    b.len = 0;
    b.cap = sizeof b.small;
    PyObject *out = put_value(&b, value, 0) < 0 ? NULL : PyBytes_FromStringAndSize(b.data, b.len);
    if (b.data != b.small)
        PyMem_Free(b.data);
    return out;
}

/* ------------------------------------------------------------------ decode */

typedef struct {
    const unsigned char *p, *end;  /* every read checks `end - p` first: no over-read */
} Reader;

static PyObject *
refused(void)
{
    refuse();
    return NULL;
}

/* Read a `size`-byte big-endian unsigned integer, or refuse when the input ends first. */
static int
take_be(Reader *r, int size, uint64_t *out)
{
    if (r->end - r->p < size)
        return refuse();
    uint64_t v = 0;
    for (int i = 0; i < size; i++)
        v = v << 8 | r->p[i];
    r->p += size;
    *out = v;
    return 0;
}

/* The length after a str/bin/array/map code: refused unless the input holds at least
 * `n * min_item_size` more bytes (a declared length never allocates before that check)
 * and unless `n` needed this header (`n >= shortest`: the shorter form was not used). */
static int
take_length(Reader *r, int size, uint64_t shortest, uint64_t min_item_size, Py_ssize_t *n)
{
    uint64_t v;
    if (take_be(r, size, &v) < 0)
        return -1;
    if (v < shortest || v > (uint64_t)(r->end - r->p) / min_item_size)
        return refuse();
    *n = (Py_ssize_t)v;
    return 0;
}

static PyObject *
take_str(Reader *r, Py_ssize_t n)
{
    if (r->end - r->p < n)
        return refused();
    PyObject *s = PyUnicode_DecodeUTF8((const char *)r->p, n, NULL);  /* strict: refuses surrogates */
    if (s == NULL) {
        PyErr_Clear();
        return refused();
    }
    r->p += n;
    return s;
}

static PyObject *read_value(Reader *r, int depth);

static PyObject *
read_array(Reader *r, Py_ssize_t n, int depth)
{
    if (depth >= MAX_DEPTH || n > MAX_ITEMS || n > r->end - r->p)
        return refused();
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = read_value(r, depth + 1);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

/* A map: str keys only, each strictly after the one before in byte order (so neither
 * unsorted nor duplicate keys pass), compared in the input where they lie. */
static PyObject *
read_map(Reader *r, Py_ssize_t n, int depth)
{
    if (depth >= MAX_DEPTH || n > MAX_ITEMS || n > (r->end - r->p) / 2)
        return refused();
    PyObject *dict = _PyDict_NewPresized(n);
    if (dict == NULL)
        return NULL;
    const unsigned char *previous = NULL;
    Py_ssize_t previous_size = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t size;
        if (r->p >= r->end)
            goto refuse;
        unsigned char code = *r->p++;
        if ((code & 0xe0) == 0xa0)
            size = code & 0x1f;
        else if (code == 0xd9) { if (take_length(r, 1, 32, 1, &size) < 0) goto fail; }
        else if (code == 0xda) { if (take_length(r, 2, 0x100, 1, &size) < 0) goto fail; }
        else if (code == 0xdb) { if (take_length(r, 4, 0x10000, 1, &size) < 0) goto fail; }
        else
            goto refuse;  /* a key that is not a str */
        if (r->end - r->p < size)
            goto refuse;
        if (previous != NULL &&
            compare_keys((const char *)previous, previous_size, (const char *)r->p, size) >= 0)
            goto refuse;
        previous = r->p;
        previous_size = size;
        PyObject *key = take_str(r, size);
        if (key == NULL)
            goto fail;
        PyUnicode_InternInPlace(&key);  /* as msgpack does: field names repeat in every message */
        PyObject *value = read_value(r, depth + 1);
        if (value == NULL) {
            Py_DECREF(key);
            goto fail;
        }
        int status = PyDict_SetItem(dict, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (status < 0)
            goto fail;
    }
    return dict;
refuse:
    refuse();
fail:
    Py_DECREF(dict);
    return NULL;
}

/* One value at `depth`, in canonical form only: every fixed-size header must be the shortest
 * that holds its number, as msgpack's packer would have written it. */
static PyObject *
read_value(Reader *r, int depth)
{
    uint64_t u;
    Py_ssize_t n;

    if (r->p >= r->end)
        return refused();
    unsigned char code = *r->p++;

    if (code <= 0x7f)
        return PyLong_FromLong(code);
    if (code >= 0xe0)
        return PyLong_FromLong((long)code - 0x100);
    if ((code & 0xe0) == 0xa0)
        return take_str(r, code & 0x1f);
    if ((code & 0xf0) == 0x90)
        return read_array(r, code & 0x0f, depth);
    if ((code & 0xf0) == 0x80)
        return read_map(r, code & 0x0f, depth);

    switch (code) {
    case 0xc0: Py_RETURN_NONE;
    case 0xc2: Py_RETURN_FALSE;
    case 0xc3: Py_RETURN_TRUE;
    /* unsigned ints: each must be too big for the form before it */
    case 0xcc:
        if (take_be(r, 1, &u) < 0) return NULL;
        return u < 0x80 ? refused() : PyLong_FromUnsignedLongLong(u);
    case 0xcd:
        if (take_be(r, 2, &u) < 0) return NULL;
        return u < 0x100 ? refused() : PyLong_FromUnsignedLongLong(u);
    case 0xce:
        if (take_be(r, 4, &u) < 0) return NULL;
        return u < 0x10000 ? refused() : PyLong_FromUnsignedLongLong(u);
    case 0xcf:
        if (take_be(r, 8, &u) < 0) return NULL;
        return u < 0x100000000ULL ? refused() : PyLong_FromUnsignedLongLong(u);
    /* signed ints: only negatives (msgpack writes non-negatives unsigned), each too small
     * for the form before it */
    case 0xd0:
        if (take_be(r, 1, &u) < 0) return NULL;
        return (int8_t)u >= -32 ? refused() : PyLong_FromLong((int8_t)u);
    case 0xd1:
        if (take_be(r, 2, &u) < 0) return NULL;
        return (int16_t)u >= -128 ? refused() : PyLong_FromLong((int16_t)u);
    case 0xd2:
        if (take_be(r, 4, &u) < 0) return NULL;
        return (int32_t)u >= -32768 ? refused() : PyLong_FromLongLong((int32_t)u);
    case 0xd3:
        if (take_be(r, 8, &u) < 0) return NULL;
        return (int64_t)u >= -2147483648LL ? refused() : PyLong_FromLongLong((int64_t)u);
    /* str: str8 from 32 bytes, str16 from 256, str32 from 65536 */
    case 0xd9:
        return take_length(r, 1, 32, 1, &n) < 0 ? NULL : take_str(r, n);
    case 0xda:
        return take_length(r, 2, 0x100, 1, &n) < 0 ? NULL : take_str(r, n);
    case 0xdb:
        return take_length(r, 4, 0x10000, 1, &n) < 0 ? NULL : take_str(r, n);
    /* bin: bin8 for any length under 256 (there is no fix form), then 16 and 32 bits */
    case 0xc4: case 0xc5: case 0xc6: {
        int size = code == 0xc4 ? 1 : code == 0xc5 ? 2 : 4;
        uint64_t shortest = code == 0xc4 ? 0 : code == 0xc5 ? 0x100 : 0x10000;
        if (take_length(r, size, shortest, 1, &n) < 0)
            return NULL;
        PyObject *bytes = PyBytes_FromStringAndSize((const char *)r->p, n);
        if (bytes != NULL)
            r->p += n;
        return bytes;
    }
    /* arrays and maps: 16-bit from 16 entries, 32-bit from 65536 */
    case 0xdc:
        return take_length(r, 2, 16, 1, &n) < 0 ? NULL : read_array(r, n, depth);
    case 0xdd:
        return take_length(r, 4, 0x10000, 1, &n) < 0 ? NULL : read_array(r, n, depth);
    case 0xde:
        return take_length(r, 2, 16, 2, &n) < 0 ? NULL : read_map(r, n, depth);
    case 0xdf:
        return take_length(r, 4, 0x10000, 2, &n) < 0 ? NULL : read_map(r, n, depth);
    default:  /* 0xc1 (never used), floats 0xca/0xcb, ext 0xc7-0xc9 and 0xd4-0xd8 */
        return refused();
    }
}

/* decode(data, max_size): exact bytes, bytearray or memoryview only (the pure path copies
 * anything else with bytes(), which may call a subclass's __bytes__).  A bytearray or
 * memoryview is copied first, as the pure path does: building lists and dicts can run the
 * garbage collector, whose finalizers could otherwise write into the buffer mid-parse. */
static PyObject *
canonical_decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decode(data, max_size) takes two arguments");
        return NULL;
    }
    Py_ssize_t max_size = PyLong_AsSsize_t(args[1]);
    if (max_size == -1 && PyErr_Occurred()) {  /* not an int, or past Py_ssize_t: the pure path's call */
        PyErr_Clear();
        return refused();
    }
    PyObject *data = args[0];
    PyTypeObject *type = Py_TYPE(data);
    if (type == &PyBytes_Type)
        Py_INCREF(data);
    else if (type == &PyByteArray_Type || type == &PyMemoryView_Type) {
        Py_buffer view;
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {  /* e.g. not C-contiguous */
            PyErr_Clear();
            return refused();
        }
        data = view.len > max_size ? NULL : PyBytes_FromStringAndSize(view.buf, view.len);
        PyBuffer_Release(&view);
        if (data == NULL)
            return PyErr_Occurred() ? NULL : refused();
    }
    else
        return refused();

    PyObject *value = NULL;
    const unsigned char *start = (const unsigned char *)PyBytes_AS_STRING(data);
    Reader r = {start, start + PyBytes_GET_SIZE(data)};
    if (PyBytes_GET_SIZE(data) > max_size)
        refuse();
    else {
        value = read_value(&r, 0);
        if (value != NULL && r.p != r.end) {  /* trailing bytes */
            Py_CLEAR(value);
            refuse();
        }
    }
    Py_DECREF(data);
    return value;
}

/* ------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"encode", canonical_encode, METH_O,
     "encode(value) -> bytes: the canonical msgpack of value, or raise Refused."},
    {"decode", (PyCFunction)(void (*)(void))canonical_decode, METH_FASTCALL,
     "decode(data, max_size) -> value: the value of canonical bytes, or raise Refused."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_canonical",
    "C fast path for p2pchain.encoding (use that module, not this one).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__canonical(void)
{
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    Refused = PyErr_NewException("p2pchain._canonical.Refused", NULL, NULL);
    if (Refused == NULL ||
        PyModule_AddObjectRef(module, "Refused", Refused) < 0 ||
        PyModule_AddIntConstant(module, "MAX_DEPTH", MAX_DEPTH) < 0 ||
        PyModule_AddIntConstant(module, "MAX_ITEMS", MAX_ITEMS) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
