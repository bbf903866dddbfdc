/*
 * audit._native: the verifier's hot loop in C (see audit/verify.py, `_Verifier.feed`).
 *
 * scan() walks a batch of JSONL lines and accepts a line only if it is, byte for byte, the
 * RFC 8785 (JCS) form of a plain audit record: exactly the eleven members of a record in
 * sorted order, the next seq, prev_hash equal to the current head, and a `hash` equal to
 * the hex SHA-256 of b"even-audit-v1:" + the line without its hash member. It stops at the
 * first line it does not accept and hands it back; Python's general path then decides that
 * line (and every failure) exactly as if this module did not exist. So this code only ever
 * says "valid, next" or "ask Python": a bug here can at worst accept a line the general path
 * would refuse, which tests/audit/test_audit_native.py checks for on generated and hostile
 * lines.
 *
 * Why a byte-exact recogniser is enough: JCS is a function, so a line that already is the
 * canonical form of what it parses to hashes exactly as the general path's
 * canonical(parse(line)) does, minus the `"hash":"<64 hex>",` member, which sorts between
 * `details` and `hostname`. What the recogniser admits is a subset of JCS output:
 * - strings: UTF-8 validated strictly (no overlongs, no surrogates, nothing past U+10FFFF),
 *   no raw control characters, escapes only where JCS writes them (\" \\ \b \t \n \f \r and
 *   lowercase \u00xx for the other characters below U+0020);
 * - numbers: integers only, no leading zeros, no "-0", magnitude at most 2^53-1 (the audit
 *   domain); anything with a fraction or exponent goes to Python;
 * - object keys: printable ASCII without escapes, strictly increasing bytewise (which is JCS's
 *   UTF-16 order for such keys and rules out repeats); other keys go to Python;
 * - no whitespace anywhere; nesting deeper than MAX_DEPTH goes to Python.
 * The hash is computed by the `sha256` constructor the caller passes in (hashlib's, backed by
 * OpenSSL), so this file holds no cryptography of its own.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 32
#define HASH_HEX 64
#define MAX_SAFE_INT 9007199254740991LL /* 2^53 - 1 */

typedef const unsigned char *cursor;

static cursor value(cursor p, cursor end, int depth);

/* A JCS string starting at the opening quote; returns the byte after the closing quote. */
static cursor string(cursor p, cursor end)
{
    if (p >= end || *p != '"')
        return NULL;
    p++;
    while (p < end) {
        unsigned char c = *p;
        if (c == '"')
            return p + 1;
        if (c == '\\') {
            if (p + 1 >= end)
                return NULL;
            switch (p[1]) {
            case '"': case '\\': case 'b': case 't': case 'n': case 'f': case 'r':
                p += 2;
                continue;
            case 'u': {
                /* JCS writes \u00xx, lowercase, only for controls without a short form. */
                if (end - p < 6 || p[2] != '0' || p[3] != '0')
                    return NULL;
                unsigned char hi = p[4], lo = p[5];
                int v;
                if (hi != '0' && hi != '1')
                    return NULL;
                if (lo >= '0' && lo <= '9')
                    v = lo - '0';
                else if (lo >= 'a' && lo <= 'f')
                    v = lo - 'a' + 10;
                else
                    return NULL;
                v += (hi - '0') * 16;
                if (v == 0x08 || v == 0x09 || v == 0x0a || v == 0x0c || v == 0x0d)
                    return NULL;
                p += 6;
                continue;
            }
            default:
                return NULL;
            }
        }
        if (c < 0x20)
            return NULL;
        if (c < 0x80) {
            p++;
            continue;
        }
        /* Strict UTF-8 (RFC 3629 table): what Python would decode, nothing else. */
        if (c >= 0xc2 && c <= 0xdf) {
            if (end - p < 2 || (p[1] & 0xc0) != 0x80)
                return NULL;
            p += 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            unsigned char lo = 0x80, hi = 0xbf;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f; /* no UTF-16 surrogates */
            if (end - p < 3 || p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80)
                return NULL;
            p += 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            unsigned char lo = 0x80, hi = 0xbf;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f; /* nothing past U+10FFFF */
            if (end - p < 4 || p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 ||
                (p[3] & 0xc0) != 0x80)
                return NULL;
            p += 4;
        } else {
            return NULL;
        }
    }
    return NULL;
}

/* An object key JCS orders bytewise: printable ASCII, no escapes. */
static cursor plain_key(cursor p, cursor end)
{
    if (p >= end || *p != '"')
        return NULL;
    for (p++; p < end; p++) {
        if (*p == '"')
            return p + 1;
        if (*p < 0x20 || *p > 0x7e || *p == '\\')
            return NULL;
    }
    return NULL;
}

/* A canonical integer within ±(2^53-1); stores it in *out when out is not NULL. */
static cursor integer(cursor p, cursor end, long long *out)
{
    int negative = 0;
    long long v = 0;
    cursor start;
    if (p < end && *p == '-') {
        negative = 1;
        p++;
    }
    start = p;
    if (p >= end || *p < '0' || *p > '9')
        return NULL;
    if (*p == '0') {
        p++;
        if (negative)
            return NULL; /* "-0" is not how JCS writes zero */
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (p - start >= 16)
                return NULL; /* 17 digits exceed 2^53-1: let Python say so */
            v = v * 10 + (*p - '0');
            p++;
        }
        if (v > MAX_SAFE_INT)
            return NULL;
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
        return NULL;
    if (out)
        *out = negative ? -v : v;
    return p;
}

static cursor literal(cursor p, cursor end, const char *word, size_t n)
{
    if ((size_t)(end - p) < n || memcmp(p, word, n) != 0)
        return NULL;
    return p + n;
}

static cursor object(cursor p, cursor end, int depth)
{
    cursor prev_key = NULL;
    size_t prev_len = 0;
    p++; /* '{' */
    if (p < end && *p == '}')
        return p + 1;
    for (;;) {
        cursor key = p + 1;
        cursor after = plain_key(p, end);
        size_t len;
        if (!after)
            return NULL;
        len = (size_t)(after - 1 - key);
        if (prev_key) {
            size_t shorter = len < prev_len ? len : prev_len;
            int order = memcmp(prev_key, key, shorter);
            if (order > 0 || (order == 0 && prev_len >= len))
                return NULL; /* not strictly increasing: unsorted or repeated */
        }
        prev_key = key;
        prev_len = len;
        if (after >= end || *after != ':')
            return NULL;
        p = value(after + 1, end, depth);
        if (!p || p >= end)
            return NULL;
        if (*p == '}')
            return p + 1;
        if (*p != ',')
            return NULL;
        p++;
    }
}

static cursor array(cursor p, cursor end, int depth)
{
    p++; /* '[' */
    if (p < end && *p == ']')
        return p + 1;
    for (;;) {
        p = value(p, end, depth);
        if (!p || p >= end)
            return NULL;
        if (*p == ']')
            return p + 1;
        if (*p != ',')
            return NULL;
        p++;
    }
}

static cursor value(cursor p, cursor end, int depth)
{
    if (p >= end)
        return NULL;
    switch (*p) {
    case '"':
        return string(p, end);
    case '{':
        return depth >= MAX_DEPTH ? NULL : object(p, end, depth + 1);
    case '[':
        return depth >= MAX_DEPTH ? NULL : array(p, end, depth + 1);
    case 't':
        return literal(p, end, "true", 4);
    case 'f':
        return literal(p, end, "false", 5);
    case 'n':
        return literal(p, end, "null", 4);
    default:
        return integer(p, end, NULL);
    }
}

/* `"name":` at p, exactly. */
static cursor member(cursor p, cursor end, const char *name)
{
    size_t n = strlen(name);
    if ((size_t)(end - p) < n + 3 || p[0] != '"' || memcmp(p + 1, name, n) != 0 ||
        p[n + 1] != '"' || p[n + 2] != ':')
        return NULL;
    return p + n + 3;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* uppercase too: hexdigest() never writes it */
}

/* Where the members of a plain record sit in an accepted line. */
struct record {
    cursor hash_member; /* `"hash":"` ... `",` : removed to get the hashed body */
    cursor claimed;     /* the 64 hex digits */
    long long seq;
};

/* Parse one line as the canonical form of a plain record, or return 0. */
static int recognise(cursor p, cursor end, const unsigned char *head, struct record *rec)
{
    static const char *const before_seq[] = {"hostname", "login"};
    static const char *const after_seq[] = {"time", "type", "username"};
    size_t i;

    if (p >= end || *p != '{')
        return 0;
    p++;
    if (!(p = member(p, end, "details")) || !(p = value(p, end, 0)) || p >= end || *p != ',')
        return 0;
    p++;
    rec->hash_member = p;
    if (!(p = member(p, end, "hash")) || end - p < HASH_HEX + 3 || *p != '"')
        return 0;
    rec->claimed = p + 1;
    for (i = 0; i < HASH_HEX; i++)
        if (hexval(rec->claimed[i]) < 0)
            return 0;
    p += HASH_HEX + 1;
    if (p[0] != '"' || p[1] != ',')
        return 0;
    p += 2;
    for (i = 0; i < 2; i++) {
        if (!(p = member(p, end, before_seq[i])) || !(p = value(p, end, 0)) || p >= end ||
            *p != ',')
            return 0;
        p++;
    }
    /* prev_hash: the current head, written as is (hex needs no escapes). */
    if (!(p = member(p, end, "prev_hash")) || end - p < HASH_HEX + 3 || p[0] != '"' ||
        memcmp(p + 1, head, HASH_HEX) != 0 || p[HASH_HEX + 1] != '"' || p[HASH_HEX + 2] != ',')
        return 0;
    p += HASH_HEX + 3;
    if (!(p = member(p, end, "reason")) || !(p = value(p, end, 0)) || p >= end || *p != ',')
        return 0;
    p++;
    if (!(p = member(p, end, "request_id")) || !(p = value(p, end, 0)) || p >= end ||
        *p != ',')
        return 0;
    p++;
    if (!(p = member(p, end, "seq")) || !(p = integer(p, end, &rec->seq)) || p >= end ||
        *p != ',')
        return 0;
    p++;
    for (i = 0; i < 3; i++) {
        if (!(p = member(p, end, after_seq[i])) || !(p = value(p, end, 0)) || p >= end)
            return 0;
        if (i < 2) {
            if (*p != ',')
                return 0;
            p++;
        }
    }
    return *p == '}' && p + 1 == end;
}

/* 1 if sha256(prefix + line without its hash member) is the claimed hash, 0 if not, -1 on
 * a Python error. */
static int hash_matches(PyObject *sha256, const char *prefix, Py_ssize_t prefix_len,
                        cursor line, Py_ssize_t len, const struct record *rec)
{
    Py_ssize_t cut = rec->hash_member - line;
    Py_ssize_t member_len = (Py_ssize_t)strlen("\"hash\":\"\",") + HASH_HEX;
    Py_ssize_t body_len = prefix_len + len - member_len;
    PyObject *body, *hasher, *digest;
    char *out;
    const unsigned char *d;
    int i, same = 1;

    body = PyBytes_FromStringAndSize(NULL, body_len);
    if (!body)
        return -1;
    out = PyBytes_AS_STRING(body);
    memcpy(out, prefix, (size_t)prefix_len);
    memcpy(out + prefix_len, line, (size_t)cut);
    memcpy(out + prefix_len + cut, line + cut + member_len, (size_t)(len - cut - member_len));
    hasher = PyObject_CallOneArg(sha256, body);
    Py_DECREF(body);
    if (!hasher)
        return -1;
    digest = PyObject_CallMethod(hasher, "digest", NULL);
    Py_DECREF(hasher);
    if (!digest)
        return -1;
    if (!PyBytes_Check(digest) || PyBytes_GET_SIZE(digest) != 32) {
        Py_DECREF(digest);
        PyErr_SetString(PyExc_TypeError, "sha256().digest() must give 32 bytes");
        return -1;
    }
    d = (const unsigned char *)PyBytes_AS_STRING(digest);
    for (i = 0; i < 32; i++) {
        if (d[i] != (hexval(rec->claimed[2 * i]) << 4 | hexval(rec->claimed[2 * i + 1]))) {
            same = 0;
            break;
        }
    }
    Py_DECREF(digest);
    return same;
}

PyDoc_STRVAR(scan_doc,
"scan(lines, start, seq, head, stop, prefix, sha256) -> (index, seq, head)\n\n"
"Accept lines[start:] while each is the canonical form of the plain record after `seq`\n"
"(last good seq) and `head` (its hash, 64 hex digits), whose seq is below `stop`. Returns\n"
"the index of the first line not accepted (len(lines) if none) and the new seq and head.\n"
"A line not accepted is not judged: the caller's general path decides it.");

static PyObject *scan(PyObject *self, PyObject *args)
{
    PyObject *lines, *head_obj, *sha256;
    Py_ssize_t start, n, i, prefix_len, head_len;
    long long seq, stop;
    const char *prefix, *head_str;
    unsigned char head[HASH_HEX];
    (void)self;

    if (!PyArg_ParseTuple(args, "O!nLULy#O", &PyList_Type, &lines, &start, &seq, &head_obj,
                          &stop, &prefix, &prefix_len, &sha256))
        return NULL;
    head_str = PyUnicode_AsUTF8AndSize(head_obj, &head_len);
    if (!head_str)
        return NULL;
    n = PyList_GET_SIZE(lines);
    if (start < 0 || start > n) {
        PyErr_SetString(PyExc_ValueError, "start out of range");
        return NULL;
    }
    if (head_len != HASH_HEX) /* not a hash this module could match: let Python decide */
        return Py_BuildValue("(nLO)", start, seq, head_obj);
    memcpy(head, head_str, HASH_HEX);

    /* The size is read again each time: hashing runs Python code, which could change it. */
    for (i = start; i < PyList_GET_SIZE(lines); i++) {
        PyObject *item = PyList_GET_ITEM(lines, i);
        struct record rec;
        cursor line;
        Py_ssize_t len;
        int ok;
        if (!PyBytes_Check(item))
            break;
        line = (cursor)PyBytes_AS_STRING(item);
        len = PyBytes_GET_SIZE(item);
        if (!recognise(line, line + len, head, &rec) || seq >= LLONG_MAX - 1 ||
            rec.seq != seq + 1 || rec.seq >= stop)
            break;
        /* Hashing runs Python code: keep the line alive until its hash is copied, whatever
         * happens to the list meanwhile. */
        Py_INCREF(item);
        ok = hash_matches(sha256, prefix, prefix_len, line, len, &rec);
        if (ok > 0) {
            seq = rec.seq;
            memcpy(head, rec.claimed, HASH_HEX);
        }
        Py_DECREF(item);
        if (ok < 0)
            return NULL;
        if (!ok)
            break;
    }
    return Py_BuildValue("(nLs#)", i, seq, (const char *)head, (Py_ssize_t)HASH_HEX);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "audit._native",
    "The audit verifier's hot loop in C; audit.verify falls back to Python without it.",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__native(void)
{
    return PyModule_Create(&module);
}
