/* ExportTraceServiceRequest bytes -> per-(model, version) columns, in C.
 *
 * The compiled twin of otel_ml/decode/otlp.py. Its contract (see that module): for every request it
 * either returns exactly what the pure-Python decoder returns, or *declines* and the caller runs the
 * pure-Python decoder. It declines on anything where being exactly equal would need a second
 * implementation of subtle rules:
 *   - bytes that are not a well-formed, canonical message of the installed trace schema: truncation,
 *     bad varints, invalid UTF-8 in any string field, wire-type mismatches, unknown fields, groups,
 *     a singular field given twice (protobuf merges or overwrites), two members of a oneof, deep nesting;
 *   - a float ml.model.version (its text would be Python's repr of the float).
 * A span that names a column twice (ml.feature.x twice, or ml.feature.prediction beside ml.prediction) is
 * rejected in both decoders (duplicate_attribute, reserved_feature_name), so no row of a column is written twice.
 * Spans the Python decoder would reject are skipped and returned as byte ranges: the Python decoder
 * states their reasons (its messages are defined once, there).
 * What it accepts it validates as strictly as upb does (the schema table below is checked against the
 * installed protobuf descriptors at import and in tests), so "accepted here" implies "parsed there".
 *
 * Phase 1 (parse, validate, fill C arrays) runs without the GIL, so two gRPC worker threads decode two
 * requests on two cores; phase 2 turns the arrays into Python objects.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* DEC_REJECT: a span the Python decoder rejects; it is skipped here and its bytes are handed back so the
 * Python decoder states the reason and message (it re-checks: if it would not reject, the request is
 * declined). DEC_DECLINE_*: the whole request goes to the Python decoder. */
enum { GENAI_OFF = 0, GENAI_DECLINE = 1, GENAI_DECODE = 2 };
enum { DEC_OK = 0, DEC_DECLINE_WIRE = 1, DEC_DECLINE_SPAN = 2, DEC_NOMEM = 3, DEC_REJECT = 4, DEC_DECLINE_DIMENSION = 5,
       DEC_DECLINE_GENAI = 6 };

/* ---------------------------------------------------------------- schema ---- */
enum { F_NONE = 0, F_VARINT, F_FIXED64, F_FIXED32, F_STRING, F_BYTES, F_MESSAGE };
enum {
    M_REQUEST, M_RESOURCE_SPANS, M_RESOURCE, M_ENTITY_REF, M_SCOPE_SPANS, M_SCOPE, M_SPAN, M_EVENT,
    M_LINK, M_STATUS, M_KEY_VALUE, M_ANY_VALUE, M_ARRAY_VALUE, M_KEY_VALUE_LIST, M_COUNT
};
#define MAX_FIELD 16
#define MAX_DEPTH 32 /* upb allows 100; deeper input is declined, not rejected */
#define NUMBER_LIMIT 1e100 /* otlp.py NUMBER_LIMIT: beyond it a number is invalid, like +-inf */
#define ID_INT_LIMIT 9007199254740992LL /* otlp.py ID_INT_LIMIT: 2^53 */

typedef struct {
    uint8_t kind;
    uint8_t sub; /* message type of F_MESSAGE fields */
    uint8_t repeated;
    uint8_t oneof; /* member of AnyValue.value */
} FieldSpec;

static const char *const MESSAGE_NAMES[M_COUNT] = {
    "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
    "opentelemetry.proto.trace.v1.ResourceSpans",
    "opentelemetry.proto.resource.v1.Resource",
    "opentelemetry.proto.common.v1.EntityRef",
    "opentelemetry.proto.trace.v1.ScopeSpans",
    "opentelemetry.proto.common.v1.InstrumentationScope",
    "opentelemetry.proto.trace.v1.Span",
    "opentelemetry.proto.trace.v1.Span.Event",
    "opentelemetry.proto.trace.v1.Span.Link",
    "opentelemetry.proto.trace.v1.Status",
    "opentelemetry.proto.common.v1.KeyValue",
    "opentelemetry.proto.common.v1.AnyValue",
    "opentelemetry.proto.common.v1.ArrayValue",
    "opentelemetry.proto.common.v1.KeyValueList",
};

#define MSG(t) {F_MESSAGE, t, 0, 0}
#define REP(t) {F_MESSAGE, t, 1, 0}
#define VARINT {F_VARINT, 0, 0, 0}
#define FIX64 {F_FIXED64, 0, 0, 0}
#define FIX32 {F_FIXED32, 0, 0, 0}
#define STR {F_STRING, 0, 0, 0}
#define REPSTR {F_STRING, 0, 1, 0}
#define BYTES {F_BYTES, 0, 0, 0}

static const FieldSpec SCHEMA[M_COUNT][MAX_FIELD + 1] = {
    [M_REQUEST] = {[1] = REP(M_RESOURCE_SPANS)},
    [M_RESOURCE_SPANS] = {[1] = MSG(M_RESOURCE), [2] = REP(M_SCOPE_SPANS), [3] = STR},
    [M_RESOURCE] = {[1] = REP(M_KEY_VALUE), [2] = VARINT, [3] = REP(M_ENTITY_REF)},
    [M_ENTITY_REF] = {[1] = STR, [2] = STR, [3] = REPSTR, [4] = REPSTR},
    [M_SCOPE_SPANS] = {[1] = MSG(M_SCOPE), [2] = REP(M_SPAN), [3] = STR},
    [M_SCOPE] = {[1] = STR, [2] = STR, [3] = REP(M_KEY_VALUE), [4] = VARINT},
    [M_SPAN] = {[1] = BYTES, [2] = BYTES, [3] = STR, [4] = BYTES, [5] = STR, [6] = VARINT, [7] = FIX64,
                [8] = FIX64, [9] = REP(M_KEY_VALUE), [10] = VARINT, [11] = REP(M_EVENT), [12] = VARINT,
                [13] = REP(M_LINK), [14] = VARINT, [15] = MSG(M_STATUS), [16] = FIX32},
    [M_EVENT] = {[1] = FIX64, [2] = STR, [3] = REP(M_KEY_VALUE), [4] = VARINT},
    [M_LINK] = {[1] = BYTES, [2] = BYTES, [3] = STR, [4] = REP(M_KEY_VALUE), [5] = VARINT, [6] = FIX32},
    [M_STATUS] = {[2] = STR, [3] = VARINT},
    [M_KEY_VALUE] = {[1] = STR, [2] = MSG(M_ANY_VALUE), [3] = VARINT},
    [M_ANY_VALUE] = {[1] = {F_STRING, 0, 0, 1}, [2] = {F_VARINT, 0, 0, 1}, [3] = {F_VARINT, 0, 0, 1},
                     [4] = {F_FIXED64, 0, 0, 1}, [5] = {F_MESSAGE, M_ARRAY_VALUE, 0, 1},
                     [6] = {F_MESSAGE, M_KEY_VALUE_LIST, 0, 1}, [7] = {F_BYTES, 0, 0, 1},
                     [8] = {F_VARINT, 0, 0, 1}},
    [M_ARRAY_VALUE] = {[1] = REP(M_ANY_VALUE)},
    [M_KEY_VALUE_LIST] = {[1] = REP(M_KEY_VALUE)},
};

/* ------------------------------------------------------------ wire format ---- */
static inline int read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out) {
    const uint8_t *p = *pp;
    if (p < end && *p < 0x80) { /* one byte: every tag and most lengths here, so it is worth its own branch */
        *out = *p;
        *pp = p + 1;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (p >= end) return -1;
        uint8_t b = *p++;
        if (i == 9 && b > 1) return -1; /* more than 64 bits */
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *pp = p;
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF); returns the number of code points or -1. */
static Py_ssize_t utf8_chars(const uint8_t *s, size_t n) {
    Py_ssize_t chars = 0;
    size_t i = 0;
    /* ASCII eight bytes at a time (names and most values are ASCII): a word with no high bit is 8 code points */
    while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ULL) break;
        i += 8;
        chars += 8;
    }
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
        } else if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return -1;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return -1;
            if (c == 0xE0 && s[i + 1] < 0xA0) return -1; /* overlong */
            if (c == 0xED && s[i + 1] >= 0xA0) return -1; /* surrogate */
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 ||
                (s[i + 3] & 0xC0) != 0x80)
                return -1;
            if (c == 0xF0 && s[i + 1] < 0x90) return -1;
            if (c == 0xF4 && s[i + 1] >= 0x90) return -1;
            i += 4;
        } else {
            return -1;
        }
        chars++;
    }
    return chars;
}

/* Byte length of the first ``chars`` code points of valid UTF-8. */
static size_t utf8_prefix(const uint8_t *s, size_t n, Py_ssize_t chars) {
    size_t i = 0;
    while (i < n && chars > 0) {
        uint8_t c = s[i];
        i += c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        chars--;
    }
    return i;
}

typedef struct {
    uint32_t num;
    uint8_t kind;
    uint8_t sub;
    uint64_t u;          /* varint / fixed value */
    const uint8_t *ptr;  /* length-delimited payload */
    size_t len;
    Py_ssize_t chars;    /* code points of a string */
} Field;

typedef struct {
    uint32_t seen;   /* singular fields seen in this message */
    int oneof_seen;
} MsgState;

/* Read and validate one field of message type ``mt``; sub-messages are returned as payloads. */
static int next_field(int mt, const uint8_t **pp, const uint8_t *end, MsgState *st, Field *f) {
    uint64_t tag;
    if (read_varint(pp, end, &tag) || tag > UINT32_MAX) return -1;
    uint32_t num = (uint32_t)(tag >> 3), wt = (uint32_t)(tag & 7);
    if (num == 0 || num > MAX_FIELD) return -1;
    const FieldSpec *spec = &SCHEMA[mt][num];
    if (spec->kind == F_NONE) return -1; /* unknown field: upb would keep it; we decline */
    if (!spec->repeated) {
        if (st->seen & (1u << num)) return -1;
        st->seen |= 1u << num;
    }
    if (spec->oneof) {
        if (st->oneof_seen) return -1;
        st->oneof_seen = 1;
    }
    f->num = num;
    f->kind = spec->kind;
    f->sub = spec->sub;
    const uint8_t *p = *pp;
    switch (spec->kind) {
    case F_VARINT:
        if (wt != 0 || read_varint(&p, end, &f->u)) return -1;
        break;
    case F_FIXED64:
        if (wt != 1 || end - p < 8) return -1;
        memcpy(&f->u, p, 8); /* little-endian hosts (x86-64, arm64) */
        p += 8;
        break;
    case F_FIXED32: {
        uint32_t v;
        if (wt != 5 || end - p < 4) return -1;
        memcpy(&v, p, 4);
        f->u = v;
        p += 4;
        break;
    }
    default: { /* string, bytes, message */
        uint64_t len;
        if (wt != 2 || read_varint(&p, end, &len) || len > (uint64_t)(end - p)) return -1;
        f->ptr = p;
        f->len = (size_t)len;
        if (spec->kind == F_STRING && (f->chars = utf8_chars(p, f->len)) < 0) return -1;
        p += len;
    }
    }
    *pp = p;
    return 0;
}

/* Validate a whole message we do not read. */
static int skim(int mt, const uint8_t *p, const uint8_t *end, int depth) {
    if (depth > MAX_DEPTH) return -1;
    MsgState st = {0, 0};
    Field f;
    while (p < end) {
        if (next_field(mt, &p, end, &st, &f)) return -1;
        if (f.kind == F_MESSAGE && skim(f.sub, f.ptr, f.ptr + f.len, depth + 1)) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ values ---- */
/* Value kinds are AnyValue's field numbers; 0 = no value set. */
enum { V_NONE = 0, V_STRING = 1, V_BOOL = 2, V_INT = 3, V_DOUBLE = 4, V_ARRAY = 5 };

typedef struct {
    int kind;
    int64_t i;
    double d;
    const uint8_t *s; /* string, or array payload */
    size_t slen;
    Py_ssize_t schars;
} Val;

static int parse_any_value(const uint8_t *p, const uint8_t *end, int depth, Val *v) {
    MsgState st = {0, 0};
    Field f;
    v->kind = V_NONE;
    if (depth > MAX_DEPTH) return -1;
    while (p < end) {
        if (next_field(M_ANY_VALUE, &p, end, &st, &f)) return -1;
        v->kind = (int)f.num;
        switch (f.num) {
        case 1: v->s = f.ptr; v->slen = f.len; v->schars = f.chars; break;
        case 2: v->i = f.u != 0; break;
        case 3: v->i = (int64_t)f.u; break;
        case 4: memcpy(&v->d, &f.u, 8); break;
        case 5: v->s = f.ptr; v->slen = f.len; break;
        }
        if (f.kind == F_MESSAGE && skim(f.sub, f.ptr, f.ptr + f.len, depth + 1)) return -1;
    }
    return 0;
}

typedef struct {
    const uint8_t *key;
    size_t klen;
    Py_ssize_t kchars;
    Val v;
} Attr;

/* The layout every SDK writes for a scalar attribute: the key (field 1), then the value (field 2) holding one
 * double, string, integer or bool, each length under 128. Read straight, with the same checks next_field makes
 * (UTF-8, varint bounds); 1 when ``p`` is not in that layout (next_field reads it), -1 when invalid. */
static int scalar_key_value(const uint8_t *p, const uint8_t *end, Attr *a) {
    if (end - p < 4 || p[0] != 0x0A || p[1] >= 0x80 || end - p < 4 + p[1]) return 1;
    const uint8_t *key = p + 2, *q = p + 2 + p[1];
    if (q[0] != 0x12 || q[1] >= 0x80 || q + 2 + q[1] != end) return 1;
    const uint8_t *v = q + 2;
    Val *val = &a->v;
    if (end - v == 9 && v[0] == 0x21) { /* double */
        val->kind = V_DOUBLE;
        memcpy(&val->d, v + 1, 8);
    } else if (end - v >= 2 && v[0] == 0x0A && v[1] < 0x80 && v + 2 + v[1] == end) { /* string */
        val->kind = V_STRING;
        val->s = v + 2;
        val->slen = v[1];
        if ((val->schars = utf8_chars(val->s, val->slen)) < 0) return -1;
    } else if (end - v >= 2 && (v[0] == 0x18 || v[0] == 0x10)) { /* int, bool: one varint filling the value */
        const uint8_t *r = v + 1;
        uint64_t u;
        if (read_varint(&r, end, &u)) return -1;
        if (r != end) return 1;
        val->kind = v[0] == 0x18 ? V_INT : V_BOOL;
        val->i = v[0] == 0x18 ? (int64_t)u : u != 0;
    } else {
        return 1;
    }
    a->key = key;
    a->klen = p[1];
    if ((a->kchars = utf8_chars(key, a->klen)) < 0) return -1;
    return 0;
}

static int parse_key_value(const uint8_t *p, const uint8_t *end, int depth, Attr *a) {
    int scalar = scalar_key_value(p, end, a);
    if (scalar <= 0) return scalar;
    MsgState st = {0, 0};
    Field f;
    a->key = (const uint8_t *)"";
    a->klen = 0;
    a->kchars = 0;
    a->v.kind = V_NONE;
    while (p < end) {
        if (next_field(M_KEY_VALUE, &p, end, &st, &f)) return -1;
        if (f.num == 1) {
            a->key = f.ptr;
            a->klen = f.len;
            a->kchars = f.chars;
        } else if (f.num == 2) {
            if (parse_any_value(f.ptr, f.ptr + f.len, depth + 1, &a->v)) return -1;
        }
    }
    return 0;
}

#define STARTS(k, n, lit) ((n) >= sizeof(lit) - 1 && memcmp((k), lit, sizeof(lit) - 1) == 0)
#define EQUALS(k, n, lit) ((n) == sizeof(lit) - 1 && memcmp((k), lit, sizeof(lit) - 1) == 0)

/* ------------------------------------------------------------- containers ---- */
#define VEC(T, name) typedef struct { T *a; size_t n, cap; } name
VEC(int64_t, I64Vec);
VEC(double, F64Vec);
VEC(uint8_t, U8Vec);
typedef struct {
    int64_t row;
    const uint8_t *s;
    size_t len;
    Py_ssize_t chars; /* code points, after truncation to max_category_length */
} CatEntry;
VEC(CatEntry, CatVec);
VEC(Attr, AttrVec);
VEC(Val, ValVec);

static int grow(void **a, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *b = PyMem_RawRealloc(*a, c * size);
    if (!b) return -1;
    *a = b;
    *cap = c;
    return 0;
}
#define PUSH(vec, x) (grow((void **)&(vec).a, &(vec).cap, (vec).n + 1, sizeof(*(vec).a)) ? -1 : ((vec).a[(vec).n++] = (x), 0))

static inline uint64_t hash_bytes(const uint8_t *s, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

/* Open-addressing index: slot holds position + 1 (0 = empty). The caller compares keys. */
typedef struct {
    uint32_t *slots;
    size_t mask;
} Index;

typedef struct {
    const uint8_t *name;
    size_t nlen;
    uint64_t hash;
    int has_num, has_cat;
    F64Vec num; /* dense by row up to the last row written, NaN where no number was written */
    CatVec cat;
    int64_t invalid;
    int whole; /* ml.prediction.id: strings are kept whole (longer ones were rejected), never truncated */
} Column;
VEC(Column, ColumnVec);

typedef struct Group {
    const uint8_t *model;
    size_t mlen;
    const uint8_t *version;
    size_t vlen;
    char vbuf[24]; /* an integer version's text */
    uint64_t hash;
    int64_t n_rows;
    I64Vec row_time;
    F64Vec row_weight;
    I64Vec span_end;
    F64Vec span_dur;
    U8Vec span_err;
    U8Vec span_ids;     /* per span: its trace id (16 bytes) then its span id (8), zeros where absent */
    I64Vec span_stream; /* ml.sequence.stream, 0: none */
    I64Vec span_seq;    /* ml.sequence, -1: none */
    I64Vec span_rows;
    ColumnVec cols;
    Index index;
    /* ml.embedding: the vectors of rows 0..emb_rows-1, emb_dim numbers each (NaN: a row without one); otlp.py
       projects them (decode/embedding.py), as it does the reference decoder's */
    F64Vec emb;
    int64_t emb_dim, emb_rows;
    uint8_t *mown; /* a GenAI call's model name, composed from its attributes: the group's own copy */
} Group;
VEC(Group *, GroupVec);

/* Make room for ``count`` entries (at most half full). Returns 1 when the table was re-allocated empty
 * (the caller re-inserts every entry), 0 when it had room, -1 when out of memory. */
static int index_reserve(Index *ix, size_t count) {
    if (ix->slots && count * 2 <= ix->mask + 1) return 0;
    size_t size = 64;
    while (size < count * 2) size *= 2;
    uint32_t *slots = PyMem_RawCalloc(size, sizeof(uint32_t));
    if (!slots) return -1;
    PyMem_RawFree(ix->slots);
    ix->slots = slots;
    ix->mask = size - 1;
    return 1;
}

static void index_put(Index *ix, uint64_t hash, uint32_t pos) {
    size_t i = hash & ix->mask;
    while (ix->slots[i]) i = (i + 1) & ix->mask;
    ix->slots[i] = pos;
}

typedef struct {
    /* limits */
    Py_ssize_t max_batch_size, max_features_per_span, max_category_length, max_name_length, max_id_length;
    Py_ssize_t max_embedding_dimension;
    uint64_t now_ns, future_limit_ns;
    int genai; /* GENAI_OFF, GENAI_DECLINE (a request with a GenAI span goes to Python), GENAI_DECODE */
    int genai_keys; /* GenAI calls get gen_ai.call.id (genai.evaluations) */
    int span_genai; /* per span: a gen_ai.* attribute was seen */
    AttrVec gattrs; /* per span, with GENAI_DECODE: its gen_ai.*, error.type and llm.request.type attributes */
    U8Vec mscratch; /* per span: a GenAI call's model name, <provider>/<request model>/<operation> */
    int64_t span_key; /* per span: its span id's low 53 bits (0: none), a GenAI call's gen_ai.call.id */
    uint8_t span_ids[24]; /* per span: its trace id and span id (profile/exemplars.py), zeros where absent */
    Val key_val; /* the gen_ai.call.id column's value */
    Val response_val; /* the gen_ai.call.response_id column's value */
    /* results */
    int64_t received, accepted, ignored;
    GroupVec groups;
    Index group_index;
    /* per span scratch */
    AttrVec attrs;
    ValVec elems;
    F64Vec emb; /* the span's ml.embedding, validated before any column is written */
    /* resource-level model name / version */
    int res_model_set, res_version_set;
    Val res_model, res_version;
    /* spans the Python decoder is to explain: (span offset, length, resource offset, length or -1) */
    const uint8_t *base;
    const uint8_t *resource;
    size_t resource_len;
    I64Vec rejected;
    /* per span scratch: the duplicate-column check's open-addressing table (ColumnRef position + 1) */
    uint32_t *seen;
    size_t seen_cap;
    /* The columns of the last span written, by position: the spans of one request mostly name the same columns
       in the same order, so a span whose names equal these needs no duplicate check and no column lookup. */
    struct Group *last_group;
    struct LastColumn *last;
    size_t last_n, last_cap;
} Ctx;

#define NAME_HASH(name, nlen) hash_bytes((name), (nlen), 14695981039346656037ULL)

/* The column ``name`` of group ``g`` (created when new); ``h`` is NAME_HASH(name, nlen). */
static Column *column_in(Group *g, const uint8_t *name, size_t nlen, uint64_t h) {
    if (g->index.slots) {
        for (size_t i = h & g->index.mask;; i = (i + 1) & g->index.mask) {
            uint32_t s = g->index.slots[i];
            if (!s) break;
            Column *c = &g->cols.a[s - 1];
            if (c->hash == h && c->nlen == nlen && memcmp(c->name, name, nlen) == 0) return c;
        }
    }
    Column c = {name, nlen, h, 0, 0, {0}, {0}, 0, EQUALS(name, nlen, "prediction.id")};
    if (PUSH(g->cols, c)) return NULL;
    int r = index_reserve(&g->index, g->cols.n);
    if (r < 0) return NULL;
    if (r == 0) index_put(&g->index, h, (uint32_t)g->cols.n);
    else
        for (size_t k = 0; k < g->cols.n; k++) index_put(&g->index, g->cols.a[k].hash, (uint32_t)(k + 1));
    return &g->cols.a[g->cols.n - 1];
}

static Group *group_in(Ctx *c, const uint8_t *model, size_t mlen, const uint8_t *version, size_t vlen) {
    uint64_t h = hash_bytes(version, vlen, hash_bytes(model, mlen, 14695981039346656037ULL) ^ 0xff);
    if (c->group_index.slots) {
        for (size_t i = h & c->group_index.mask;; i = (i + 1) & c->group_index.mask) {
            uint32_t s = c->group_index.slots[i];
            if (!s) break;
            Group *g = c->groups.a[s - 1];
            if (g->hash == h && g->mlen == mlen && g->vlen == vlen && memcmp(g->model, model, mlen) == 0 &&
                memcmp(g->version, version, vlen) == 0)
                return g;
        }
    }
    Group *g = PyMem_RawCalloc(1, sizeof(Group));
    if (!g) return NULL;
    g->model = model;
    g->mlen = mlen;
    g->hash = h;
    g->vlen = vlen;
    g->version = version;
    if (PUSH(c->groups, g)) {
        PyMem_RawFree(g);
        return NULL;
    }
    int r = index_reserve(&c->group_index, c->groups.n);
    if (r < 0) return NULL;
    if (r == 0) index_put(&c->group_index, h, (uint32_t)c->groups.n);
    else
        for (size_t k = 0; k < c->groups.n; k++)
            index_put(&c->group_index, c->groups.a[k]->hash, (uint32_t)(k + 1));
    return g;
}

static void free_group(Group *g) {
    for (size_t k = 0; k < g->cols.n; k++) {
        PyMem_RawFree(g->cols.a[k].num.a);
        PyMem_RawFree(g->cols.a[k].cat.a);
    }
    PyMem_RawFree(g->cols.a);
    PyMem_RawFree(g->index.slots);
    PyMem_RawFree(g->row_time.a);
    PyMem_RawFree(g->row_weight.a);
    PyMem_RawFree(g->span_end.a);
    PyMem_RawFree(g->span_dur.a);
    PyMem_RawFree(g->span_err.a);
    PyMem_RawFree(g->span_ids.a);
    PyMem_RawFree(g->span_stream.a);
    PyMem_RawFree(g->span_seq.a);
    PyMem_RawFree(g->span_rows.a);
    PyMem_RawFree(g->emb.a);
    PyMem_RawFree(g->mown);
    PyMem_RawFree(g);
}

static void free_ctx(Ctx *c) {
    for (size_t k = 0; k < c->groups.n; k++) free_group(c->groups.a[k]);
    PyMem_RawFree(c->groups.a);
    PyMem_RawFree(c->group_index.slots);
    PyMem_RawFree(c->attrs.a);
    PyMem_RawFree(c->gattrs.a);
    PyMem_RawFree(c->mscratch.a);
    PyMem_RawFree(c->elems.a);
    PyMem_RawFree(c->emb.a);
    PyMem_RawFree(c->rejected.a);
    PyMem_RawFree(c->seen);
    PyMem_RawFree(c->last);
}

/* ------------------------------------------------------------ writing rows ---- */
static int set_num(Column *col, int64_t row, double x) {
    col->has_num = 1;
    size_t need = (size_t)row + 1;
    if (grow((void **)&col->num.a, &col->num.cap, need, sizeof(double))) return -1;
    while (col->num.n < (size_t)row) col->num.a[col->num.n++] = NAN;
    col->num.a[row] = x;
    if (col->num.n < need) col->num.n = need; /* never shrink: rows after ``row`` may hold numbers already */
    return 0;
}

static int add_cat(Ctx *c, Column *col, int64_t row, const Val *v) {
    CatEntry e;
    e.row = row;
    col->has_cat = 1;
    if (v->kind == V_BOOL) {
        e.s = (const uint8_t *)(v->i ? "true" : "false");
        e.len = e.chars = v->i ? 4 : 5;
    } else if (v->schars <= c->max_category_length || col->whole) {
        e.s = v->s;
        e.len = v->slen;
        e.chars = v->schars;
    } else {
        e.s = v->s;
        e.len = utf8_prefix(v->s, v->slen, c->max_category_length);
        e.chars = c->max_category_length;
    }
    return PUSH(col->cat, e);
}

/* One attribute value of a single-row span (otlp.py: _ColumnBuilder.add_scalars). */
static int write_scalar(Ctx *c, Column *col, int64_t row, const Val *v) {
    switch (v->kind) {
    case V_DOUBLE:
        if (fabs(v->d) > NUMBER_LIMIT) { /* +-inf too; NaN stays a missing value */
            col->invalid++;
            return set_num(col, row, NAN);
        }
        return set_num(col, row, v->d);
    case V_INT: return set_num(col, row, (double)v->i);
    case V_STRING:
    case V_BOOL: return add_cat(c, col, row, v);
    case V_NONE: return 0;
    default: col->invalid++; return 0; /* bytes, maps, string table refs */
    }
}

/* The elements of a batch span's array (otlp.py: _split_values then _ColumnBuilder.add). */
static int write_elements(Ctx *c, Column *col, int64_t row, const Val *e, size_t n) {
    int first = e[0].kind;
    int same = first != V_NONE;
    for (size_t i = 1; same && i < n; i++) same = e[i].kind == first;
    if (same && (first == V_DOUBLE || first == V_INT || first == V_STRING || first == V_BOOL)) {
        for (size_t i = 0; i < n; i++)
            if (write_scalar(c, col, row + (int64_t)i, &e[i])) return -1;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const Val *v = &e[i];
        int rc = 0;
        if ((v->kind == V_DOUBLE && !(fabs(v->d) > NUMBER_LIMIT)) || v->kind == V_INT)
            rc = write_scalar(c, col, row + (int64_t)i, v);
        else if (v->kind == V_STRING || v->kind == V_BOOL) rc = add_cat(c, col, row + (int64_t)i, v);
        else if (v->kind != V_NONE) col->invalid++;
        if (rc) return -1;
    }
    return 0;
}

static int array_elements(Ctx *c, const Val *arr) {
    const uint8_t *p = arr->s, *end = arr->s + arr->slen;
    MsgState st = {0, 0};
    Field f;
    c->elems.n = 0;
    while (p < end) {
        if (next_field(M_ARRAY_VALUE, &p, end, &st, &f)) return -1;
        Val v;
        if (parse_any_value(f.ptr, f.ptr + f.len, 0, &v) || PUSH(c->elems, v)) return -1;
    }
    return 0;
}

/* An ml.embedding's numbers into c->emb: 0, 1 when one is not a usable number (the span is rejected), 2 when the
 * array is malformed (declined), 3 when out of memory. Most vectors are doubles, each element then exactly
 * 0A 09 21 <8 bytes> (field 1 of ArrayValue holding an AnyValue whose only field is double_value): read so without
 * parsing, which makes a 384-number vector 4x cheaper; anything else takes the general parser. */
static int embedding_numbers(Ctx *c, const Val *arr) {
    const uint8_t *p = arr->s, *end = arr->s + arr->slen;
    MsgState st = {0, 0};
    Field f;
    int bad = 0; /* the rest is still parsed: a malformed array is declined whatever its numbers */
    c->emb.n = 0;
    while (p < end) {
        if (c->emb.n == c->emb.cap && grow((void **)&c->emb.a, &c->emb.cap, c->emb.n + 1, sizeof(double))) return 3;
        double x;
        if (end - p >= 11 && p[0] == 0x0A && p[1] == 9 && p[2] == 0x21) {
            memcpy(&x, p + 3, 8); /* little-endian hosts (x86-64, arm64) */
            p += 11;
            if (fabs(x) > NUMBER_LIMIT) bad = 1;
        } else {
            Val v;
            if (next_field(M_ARRAY_VALUE, &p, end, &st, &f) || parse_any_value(f.ptr, f.ptr + f.len, 0, &v)) return 2;
            if (v.kind == V_DOUBLE && !(fabs(v.d) > NUMBER_LIMIT)) x = v.d;
            else if (v.kind == V_INT) x = (double)v.i;
            else { bad = 1; x = NAN; }
        }
        c->emb.a[c->emb.n++] = x;
    }
    return bad;
}

static int64_t count_elements(const Val *arr) {
    const uint8_t *p = arr->s, *end = arr->s + arr->slen;
    MsgState st = {0, 0};
    Field f;
    int64_t n = 0;
    while (p < end && !next_field(M_ARRAY_VALUE, &p, end, &st, &f)) n++; /* validated when parsed */
    return n;
}

/* otlp.py id_problem / truth_problem: 1 when the Python decoder rejects this ml.prediction.id value
 * (invalid_prediction_id, prediction_id_too_long) or this ml.ground_truth value (invalid_ground_truth). */
static int bad_id(const Ctx *c, const Val *v) {
    if (v->kind == V_STRING) return v->schars > c->max_id_length;
    if (v->kind == V_INT) return v->i > ID_INT_LIMIT || v->i < -ID_INT_LIMIT;
    return v->kind != V_NONE;
}

static int bad_truth(const Val *v) {
    if (v->kind == V_DOUBLE) return !(fabs(v->d) <= NUMBER_LIMIT);
    if (v->kind == V_STRING) return v->slen == 0;
    return v->kind != V_INT && v->kind != V_BOOL;
}

/* limits.py probability_problem: 1 when a number of ml.prediction.probability(.<class>) lies outside [0, 1]
 * (invalid_probability); NaN is a missing value, other kinds a type mismatch counted elsewhere. */
static int bad_probability(const Val *v) {
    if (v->kind == V_DOUBLE) return !(isnan(v->d) || (v->d >= 0.0 && v->d <= 1.0));
    if (v->kind == V_INT) return v->i < 0 || v->i > 1;
    return 0;
}

enum { OUTCOME_TRUTH = 0, OUTCOME_ID = 1, OUTCOME_PROBABILITY = 2 };

static int bad_value(const Ctx *c, const Val *v, int what) {
    return what == OUTCOME_ID ? bad_id(c, v) : what == OUTCOME_TRUTH ? bad_truth(v) : bad_probability(v);
}

/* 1: reject the span, 0: usable, -1: malformed array (declined). Batch spans: every element. */
static int bad_outcome(Ctx *c, const Val *v, int what, int batch) {
    if (!batch) return bad_value(c, v, what);
    if (array_elements(c, v)) return -1;
    for (size_t i = 0; i < c->elems.n; i++)
        if (bad_value(c, &c->elems.a[i], what)) return 1;
    return 0;
}

/* --------------------------------------------------------------- one span ---- */
typedef struct {
    const uint8_t *name;
    size_t nlen;
    Py_ssize_t nchars;
    const Val *v;
    uint64_t hash; /* NAME_HASH of name, set by has_duplicate */
    size_t col;    /* its column's position in the span's group, once written */
} ColumnRef;

typedef struct LastColumn {
    const uint8_t *name; /* in the request's bytes or a static string, never in per-span scratch */
    size_t nlen;
    uint64_t hash;
    size_t col; /* its position in last_group->cols */
} LastColumn;

/* 1 when ``refs`` name the columns of the last span written, in the same order. */
static int same_columns(const Ctx *c, const ColumnRef *refs, size_t n) {
    if (n != c->last_n || n == 0) return 0;
    for (size_t k = 0; k < n; k++)
        if (refs[k].nlen != c->last[k].nlen || memcmp(refs[k].name, c->last[k].name, refs[k].nlen) != 0) return 0;
    return 1;
}

/* 1 when two of the span's columns share a name (otlp.py rejects the span: duplicate_attribute), 0 when
 * not, -1 when out of memory. Hashes every name into refs[k].hash for column_in. */
static int has_duplicate(Ctx *c, ColumnRef *refs, size_t n) {
    for (size_t k = 0; k < n; k++) refs[k].hash = NAME_HASH(refs[k].name, refs[k].nlen);
    if (n < 2) return 0;
    if (n <= 8) { /* the common narrow span: pairwise is cheaper than clearing a table */
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (refs[i].hash == refs[j].hash && refs[i].nlen == refs[j].nlen &&
                    memcmp(refs[i].name, refs[j].name, refs[i].nlen) == 0)
                    return 1;
        return 0;
    }
    size_t size = 16;
    while (size < n * 2) size *= 2;
    if (grow((void **)&c->seen, &c->seen_cap, size, sizeof(uint32_t))) return -1;
    memset(c->seen, 0, size * sizeof(uint32_t));
    size_t mask = size - 1;
    for (size_t k = 0; k < n; k++) {
        size_t i = refs[k].hash & mask;
        for (; c->seen[i]; i = (i + 1) & mask) {
            const ColumnRef *o = &refs[c->seen[i] - 1];
            if (o->hash == refs[k].hash && o->nlen == refs[k].nlen && memcmp(o->name, refs[k].name, o->nlen) == 0)
                return 1;
        }
        c->seen[i] = (uint32_t)(k + 1);
    }
    return 0;
}

/* ------------------------------------------------------------ GenAI calls ---- */
/* otel_ml/decode/genai.py's default mapping (NUMERIC, CATEGORICAL), checked against it by test_genai.py through
 * genai_names(). */
typedef struct {
    const char *key, *feature;
    int categorical;
    size_t klen, flen; /* their lengths, so matching a span's attributes against the table calls no strlen */
} GenAiName;
#define GENAI_NAME(key, feature, categorical) {key, feature, categorical, sizeof key - 1, sizeof feature - 1}
static const GenAiName GENAI_NAMES[] = {
    GENAI_NAME("gen_ai.usage.input_tokens", "gen_ai.usage.input_tokens", 0),
    GENAI_NAME("gen_ai.usage.prompt_tokens", "gen_ai.usage.input_tokens", 0),
    GENAI_NAME("gen_ai.usage.output_tokens", "gen_ai.usage.output_tokens", 0),
    GENAI_NAME("gen_ai.usage.completion_tokens", "gen_ai.usage.output_tokens", 0),
    GENAI_NAME("gen_ai.request.temperature", "gen_ai.request.temperature", 0),
    GENAI_NAME("gen_ai.request.max_tokens", "gen_ai.request.max_tokens", 0),
    GENAI_NAME("gen_ai.request.top_p", "gen_ai.request.top_p", 0),
    GENAI_NAME("gen_ai.request.top_k", "gen_ai.request.top_k", 0),
    GENAI_NAME("gen_ai.request.frequency_penalty", "gen_ai.request.frequency_penalty", 0),
    GENAI_NAME("gen_ai.request.presence_penalty", "gen_ai.request.presence_penalty", 0),
    GENAI_NAME("gen_ai.request.choice.count", "gen_ai.request.choice.count", 0),
    GENAI_NAME("gen_ai.response.time_to_first_chunk", "gen_ai.response.time_to_first_chunk", 0),
    GENAI_NAME("gen_ai.embeddings.dimension.count", "gen_ai.embeddings.dimension.count", 0),
    GENAI_NAME("gen_ai.response.finish_reasons", "gen_ai.response.finish_reason", 1),
    GENAI_NAME("error.type", "error.type", 1),
    GENAI_NAME("gen_ai.tool.name", "gen_ai.tool.name", 1),
    GENAI_NAME("gen_ai.output.type", "gen_ai.output.type", 1),
};
#define GENAI_DURATION "gen_ai.client.operation.duration"
#define GENAI_CALL_ID "gen_ai.call.id"
#define GENAI_CALL_RESPONSE "gen_ai.call.response_id"
#define GENAI_EVALUATION_EVENT "gen_ai.evaluation.result"
enum { GENAI_NOT_A_CALL = -1 };

#define GENAI_ATTR(c, key) genai_attr((c), key, sizeof key - 1) /* key: a string literal */
static const Attr *genai_attr(const Ctx *c, const char *key, size_t n) {
    for (size_t k = 0; k < c->gattrs.n; k++)
        if (c->gattrs.a[k].klen == n && memcmp(c->gattrs.a[k].key, key, n) == 0) return &c->gattrs.a[k];
    return NULL;
}

/* Append a part of a GenAI call's model name: its text, "unknown" for none (not a string, or empty); lower-cased
   when ``lower`` (ASCII only: another text declines, Python's str.lower would differ). Returns the code points
   added, or -1 (out of memory) or -2 (declined). */
static Py_ssize_t model_part(Ctx *c, const Val *v, int lower, const char *(*mapped)(const uint8_t *, size_t)) {
    const uint8_t *s = (const uint8_t *)"unknown";
    size_t n = 7;
    Py_ssize_t chars = 7;
    if (v && v->kind == V_STRING && v->slen) {
        s = v->s;
        n = v->slen;
        chars = v->schars;
        if (mapped) {
            const char *m = mapped(s, n);
            if (m) {
                s = (const uint8_t *)m;
                n = strlen(m);
                chars = (Py_ssize_t)n;
            }
        }
    }
    if (grow((void **)&c->mscratch.a, &c->mscratch.cap, c->mscratch.n + n + 1, 1)) return -1;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = s[i];
        if (lower && b >= 0x80) return -2;
        c->mscratch.a[c->mscratch.n++] = lower && b >= 'A' && b <= 'Z' ? (uint8_t)(b + 32) : b;
    }
    return chars;
}

static const char *former_operation(const uint8_t *s, size_t n) {
    if (EQUALS(s, n, "completion")) return "text_completion";
    if (EQUALS(s, n, "embedding")) return "embeddings";
    return NULL;
}

/* A GenAI span as genai.py's genai_call reads it with the default mapping: its model (``model``, the name composed
   in c->mscratch), version (``version_v``: gen_ai.response.model when a string, else none) and columns (``refs``;
   ``dur`` holds the duration's value). GENAI_NOT_A_CALL: not a model call (ignored). Declined (the Python decoder
   reads the request): captured content (JSON messages, the former indexed attributes), an attribute given twice
   (Python keeps the last), a finish-reasons array other than one text, a provider with non-ASCII text. */
static int genai_call(Ctx *c, uint64_t start_ns, uint64_t end_ns, ColumnRef *refs, size_t *nrefs, Val *model,
                      const Val **version_v, Val *dur) {
    for (size_t k = 0; k < c->gattrs.n; k++) {
        const Attr *a = &c->gattrs.a[k];
        if (EQUALS(a->key, a->klen, "gen_ai.input.messages") || EQUALS(a->key, a->klen, "gen_ai.output.messages") ||
            STARTS(a->key, a->klen, "gen_ai.prompt.") || STARTS(a->key, a->klen, "gen_ai.completion."))
            return DEC_DECLINE_GENAI;
        for (size_t j = 0; j < k; j++)
            if (c->gattrs.a[j].klen == a->klen && memcmp(c->gattrs.a[j].key, a->key, a->klen) == 0)
                return DEC_DECLINE_GENAI;
    }
    const Attr *operation = GENAI_ATTR(c, "gen_ai.operation.name"), *provider = GENAI_ATTR(c, "gen_ai.provider.name");
    const Attr *former_provider = GENAI_ATTR(c, "gen_ai.system"), *request_model = GENAI_ATTR(c, "gen_ai.request.model");
    if (!operation && !(request_model && (provider || former_provider))) return GENAI_NOT_A_CALL;
    const Attr *former_op = operation ? NULL : GENAI_ATTR(c, "llm.request.type");
    c->mscratch.n = 0;
    Py_ssize_t chars = 2, part;
    if ((part = model_part(c, provider ? &provider->v : former_provider ? &former_provider->v : NULL, 1, NULL)) < 0)
        return part == -1 ? DEC_NOMEM : DEC_DECLINE_GENAI;
    chars += part;
    c->mscratch.a[c->mscratch.n++] = '/';
    if ((part = model_part(c, request_model ? &request_model->v : NULL, 0, NULL)) < 0) return DEC_NOMEM;
    chars += part;
    c->mscratch.a[c->mscratch.n++] = '/';
    if ((part = operation ? model_part(c, &operation->v, 0, NULL)
                          : model_part(c, former_op ? &former_op->v : NULL, 0, former_operation)) < 0)
        return DEC_NOMEM;
    chars += part;
    model->kind = V_STRING;
    model->s = c->mscratch.a;
    model->slen = c->mscratch.n;
    model->schars = chars;
    const Attr *response_model = GENAI_ATTR(c, "gen_ai.response.model");
    *version_v = response_model && response_model->v.kind == V_STRING ? &response_model->v : NULL;
    size_t n = 0;
    for (size_t k = 0; k < c->gattrs.n; k++) {
        const Attr *a = &c->gattrs.a[k];
        const GenAiName *name = NULL;
        for (size_t m = 0; m < sizeof GENAI_NAMES / sizeof *GENAI_NAMES && !name; m++)
            if (a->klen == GENAI_NAMES[m].klen && memcmp(a->key, GENAI_NAMES[m].key, a->klen) == 0)
                name = &GENAI_NAMES[m];
        if (!name) continue;
        size_t flen = name->flen;
        int seen = 0; /* a current name and its former one on one span: the first counts */
        for (size_t j = 0; j < n && !seen; j++) seen = refs[j].nlen == flen && memcmp(refs[j].name, name->feature, flen) == 0;
        if (seen) continue;
        const Val *v = &a->v;
        if (name->categorical && v->kind == V_ARRAY) { /* one text per choice, joined: only one here */
            if (array_elements(c, v)) return DEC_DECLINE_WIRE;
            if (c->elems.n != 1 || c->elems.a[0].kind != V_STRING) return DEC_DECLINE_GENAI;
            v = &c->elems.a[0]; /* until the next array_elements: this span writes no other array */
        }
        ColumnRef r = {(const uint8_t *)name->feature, flen, (Py_ssize_t)flen, v, 0, 0};
        refs[n++] = r;
    }
    if (start_ns && end_ns > start_ns) {
        dur->kind = V_DOUBLE;
        dur->d = (double)(end_ns - start_ns) / 1e9;
        ColumnRef r = {(const uint8_t *)GENAI_DURATION, sizeof GENAI_DURATION - 1, sizeof GENAI_DURATION - 1, dur,
                       0, 0};
        refs[n++] = r;
    }
    if (c->span_key && c->genai_keys) { /* what its evaluation results join it by (evaluations.py call_key) */
        c->key_val.kind = V_INT;
        c->key_val.i = c->span_key;
        ColumnRef r = {(const uint8_t *)GENAI_CALL_ID, sizeof GENAI_CALL_ID - 1, sizeof GENAI_CALL_ID - 1, &c->key_val,
                       0, 0};
        refs[n++] = r;
        const Attr *response = GENAI_ATTR(c, "gen_ai.response.id"); /* its second key: evaluations.py response_key */
        if (response && response->v.kind == V_STRING && response->v.slen) {
            uint64_t h = NAME_HASH(response->v.s, response->v.slen) & ((1ULL << 53) - 1);
            c->response_val.kind = V_INT;
            c->response_val.i = h ? (int64_t)h : 1;
            ColumnRef rr = {(const uint8_t *)GENAI_CALL_RESPONSE, sizeof GENAI_CALL_RESPONSE - 1,
                            sizeof GENAI_CALL_RESPONSE - 1, &c->response_val, 0, 0};
            refs[n++] = rr;
        }
    }
    *nrefs = n;
    return DEC_OK;
}

static int process_span(Ctx *c, uint64_t start_ns, uint64_t end_ns, int status_code) {
    const Val *model_v = c->res_model_set ? &c->res_model : NULL;
    const Val *version_v = c->res_version_set ? &c->res_version : NULL;
    const Val *batch_v = NULL, *ratio_v = NULL, *seq_v = NULL, *stream_v = NULL, *emb_v = NULL, *dim_v = NULL;
    int64_t emb_dim = 0;
    ColumnRef refs_local[64];
    ColumnRef *refs = refs_local;
    size_t nrefs = 0, cap_refs = 64;
    int rc = DEC_OK, reserved = 0, genai_span = 0;
    c->received++;
    for (size_t k = 0; k < c->attrs.n; k++) {
        const Attr *a = &c->attrs.a[k];
        ColumnRef r = {NULL, 0, 0, &a->v, 0, 0};
        if (STARTS(a->key, a->klen, "ml.feature.")) {
            r.name = a->key + 11;
            r.nlen = a->klen - 11;
            r.nchars = a->kchars - 11;
            /* semconv.RESERVED_FEATURE_NAMES: the names the model output is profiled under */
            if (EQUALS(r.name, r.nlen, "prediction") || EQUALS(r.name, r.nlen, "prediction.score") ||
                EQUALS(r.name, r.nlen, "prediction.probability") || EQUALS(r.name, r.nlen, "prediction.id") ||
                EQUALS(r.name, r.nlen, "ground_truth") || EQUALS(r.name, r.nlen, "(multivariate)") ||
                EQUALS(r.name, r.nlen, "(correlation)") || EQUALS(r.name, r.nlen, "(segment)") ||
                EQUALS(r.name, r.nlen, "(attribution)") || STARTS(r.name, r.nlen, "attribution.") ||
                EQUALS(r.name, r.nlen, GENAI_CALL_ID) || EQUALS(r.name, r.nlen, GENAI_CALL_RESPONSE) ||
                STARTS(r.name, r.nlen, "(embedding).") || STARTS(r.name, r.nlen, "segment.") ||
                STARTS(r.name, r.nlen, "prediction.probability."))
                reserved = 1;
        } else if (STARTS(a->key, a->klen, "ml.segment.")) {
            /* the prediction's segment by <key>: the column segment.<key> (semconv.SEGMENT_PREFIX) */
            r.name = a->key + 3;
            r.nlen = a->klen - 3;
            r.nchars = a->kchars - 3;
        } else if (STARTS(a->key, a->klen, "ml.attribution.")) {
            /* the prediction's attribution to <feature>: the column attribution.<feature> (semconv.ATTRIBUTION_PREFIX) */
            r.name = a->key + 3;
            r.nlen = a->klen - 3;
            r.nchars = a->kchars - 3;
        } else if (STARTS(a->key, a->klen, "ml.prediction.probability.")) {
            /* a class's probability: the column prediction.probability.<class> */
            r.name = a->key + 3;
            r.nlen = a->klen - 3;
            r.nchars = a->kchars - 3;
        } else if (EQUALS(a->key, a->klen, "ml.prediction")) {
            r.name = (const uint8_t *)"prediction";
            r.nlen = r.nchars = 10;
        } else if (EQUALS(a->key, a->klen, "ml.prediction.score")) {
            r.name = (const uint8_t *)"prediction.score";
            r.nlen = r.nchars = 16;
        } else if (EQUALS(a->key, a->klen, "ml.prediction.probability")) {
            r.name = (const uint8_t *)"prediction.probability";
            r.nlen = r.nchars = 22;
        } else if (EQUALS(a->key, a->klen, "ml.prediction.id")) {
            r.name = (const uint8_t *)"prediction.id";
            r.nlen = r.nchars = 13;
        } else if (EQUALS(a->key, a->klen, "ml.ground_truth")) {
            r.name = (const uint8_t *)"ground_truth";
            r.nlen = r.nchars = 12;
        } else if (EQUALS(a->key, a->klen, "ml.model.name")) {
            model_v = &a->v;
        } else if (EQUALS(a->key, a->klen, "ml.model.version")) {
            version_v = &a->v;
        } else if (EQUALS(a->key, a->klen, "ml.batch.size")) {
            batch_v = &a->v;
        } else if (EQUALS(a->key, a->klen, "ml.sampling.ratio")) {
            ratio_v = &a->v;
        } else if (EQUALS(a->key, a->klen, "ml.sequence")) {
            seq_v = &a->v;
        } else if (EQUALS(a->key, a->klen, "ml.sequence.stream")) {
            stream_v = &a->v;
        } else if (EQUALS(a->key, a->klen, "ml.embedding")) {
            emb_v = &a->v;
        } else if (EQUALS(a->key, a->klen, "ml.embedding.dimension")) {
            dim_v = &a->v;
        }
        if (r.name) {
            if (nrefs == cap_refs) {
                ColumnRef *bigger = PyMem_RawMalloc(cap_refs * 2 * sizeof(ColumnRef));
                if (!bigger) { rc = DEC_NOMEM; goto done; }
                memcpy(bigger, refs, nrefs * sizeof(ColumnRef));
                if (refs != refs_local) PyMem_RawFree(refs);
                refs = bigger;
                cap_refs *= 2;
            }
            refs[nrefs++] = r;
        }
    }
    Val genai_model, genai_dur;
    if (!model_v) {
        /* ML attributes without a model (an SDK attribute limit evicted it, say): rejected, so the sender hears
           why (model_name_missing); a span with none is ordinary traffic, or a GenAI model call. */
        if (nrefs || emb_v) rc = DEC_REJECT;
        else if (c->genai == GENAI_DECLINE && c->span_genai) rc = DEC_DECLINE_GENAI; /* genai.py reads it */
        else if (c->genai == GENAI_DECODE && c->span_genai) {
            rc = genai_call(c, start_ns, end_ns, refs, &nrefs, &genai_model, &version_v, &genai_dur);
            if (rc == DEC_OK) {
                model_v = &genai_model; /* then as any prediction span */
                genai_span = 1;
                goto genai;
            }
            if (rc == GENAI_NOT_A_CALL) {
                rc = DEC_OK;
                c->ignored++;
            }
        } else c->ignored++;
        goto done;
    }
genai:
    /* The Python decoder's rejections, in its order (DEC_REJECT). */
    if (model_v->kind != V_STRING || model_v->slen == 0) { rc = DEC_REJECT; goto done; }
    const uint8_t *version = (const uint8_t *)"";
    size_t vlen = 0;
    Py_ssize_t vchars = 0;
    char vbuf[24];
    if (version_v) {
        if (version_v->kind == V_STRING) {
            version = version_v->s;
            vlen = version_v->slen;
            vchars = version_v->schars;
        } else if (version_v->kind == V_INT) {
            vlen = (size_t)snprintf(vbuf, sizeof vbuf, "%lld", (long long)version_v->i);
            version = (const uint8_t *)vbuf;
            vchars = (Py_ssize_t)vlen;
        } else {
            rc = version_v->kind == V_DOUBLE ? DEC_DECLINE_SPAN : DEC_REJECT; /* a float's text is Python's repr */
            goto done;
        }
    }
    Py_ssize_t longest = 0;
    for (size_t k = 0; k < nrefs; k++)
        if (refs[k].nchars > longest) longest = refs[k].nchars;
    if (model_v->schars > c->max_name_length || vchars > c->max_name_length || longest > c->max_name_length ||
        (Py_ssize_t)nrefs > c->max_features_per_span || reserved) {
        rc = DEC_REJECT;
        goto done;
    }
    /* A GenAI call's refs may name per-span scratch, so only other spans use (and set) the last span's columns. */
    int same = !genai_span && same_columns(c, refs, nrefs);
    int dup = 0;
    if (same) /* the last span's names had no duplicate: these are the same names */
        for (size_t k = 0; k < nrefs; k++) refs[k].hash = c->last[k].hash;
    else
        dup = has_duplicate(c, refs, nrefs);
    if (dup) {
        rc = dup < 0 ? DEC_NOMEM : DEC_REJECT;
        goto done;
    }
    double weight = 1.0;
    if (ratio_v) {
        double ratio = ratio_v->kind == V_DOUBLE ? ratio_v->d : ratio_v->kind == V_INT ? (double)ratio_v->i : NAN;
        if (!(0.0 < ratio && ratio <= 1.0)) { rc = DEC_REJECT; goto done; }
        weight = 1.0 / ratio;
    }
    int64_t n = 1;
    if (batch_v) {
        if (batch_v->kind != V_INT || batch_v->i < 1 || batch_v->i > c->max_batch_size) {
            rc = DEC_REJECT;
            goto done;
        }
        n = batch_v->i;
    }
    int64_t seq = -1, stream = 0;
    if (seq_v || stream_v) { /* invalid_sequence */
        if (!seq_v || !stream_v || seq_v->kind != V_INT || stream_v->kind != V_INT || seq_v->i < 0 ||
            stream_v->i == 0) {
            rc = DEC_REJECT;
            goto done;
        }
        seq = seq_v->i;
        stream = stream_v->i;
    }
    if (emb_v) { /* otlp.py _embedding: n·d finite numbers (NaN allowed: a missing vector) */
        if (emb_v->kind != V_ARRAY) { rc = DEC_REJECT; goto done; }
        int bad = embedding_numbers(c, emb_v);
        if (bad) { rc = bad == 1 ? DEC_REJECT : bad == 2 ? DEC_DECLINE_WIRE : DEC_NOMEM; goto done; }
        size_t len = c->emb.n;
        if (len == 0) { rc = DEC_REJECT; goto done; }
        if (dim_v) {
            emb_dim = dim_v->kind == V_INT ? dim_v->i : 0;
            if (emb_dim < 1 || (int64_t)len / n != emb_dim || (int64_t)len % n) { rc = DEC_REJECT; goto done; }
        } else {
            if ((int64_t)len % n) { rc = DEC_REJECT; goto done; }
            emb_dim = (int64_t)len / n;
        }
        if (emb_dim > c->max_embedding_dimension) { rc = DEC_REJECT; goto done; }
    }
    for (size_t k = 0; k < nrefs; k++) { /* every column before any is written: a rejection leaves no trace */
        int is_array = refs[k].v->kind == V_ARRAY;
        if (is_array != (batch_v != NULL)) { rc = DEC_REJECT; goto done; }
        if (batch_v && count_elements(refs[k].v) != n) { rc = DEC_REJECT; goto done; }
    }
    for (size_t k = 0; k < nrefs; k++) { /* the Python decoder's order: ids and labels, probabilities */
        int what = EQUALS(refs[k].name, refs[k].nlen, "prediction.id") ? OUTCOME_ID
                 : EQUALS(refs[k].name, refs[k].nlen, "ground_truth") ? OUTCOME_TRUTH
                 : (EQUALS(refs[k].name, refs[k].nlen, "prediction.probability")
                    || STARTS(refs[k].name, refs[k].nlen, "prediction.probability.")) ? OUTCOME_PROBABILITY : -1;
        if (what < 0) continue;
        int bad = bad_outcome(c, refs[k].v, what, batch_v != NULL);
        if (bad) { rc = bad < 0 ? DEC_DECLINE_WIRE : DEC_REJECT; goto done; }
    }
    uint64_t end = end_ns ? end_ns : start_ns ? start_ns : c->now_ns;
    if (end > c->future_limit_ns) { rc = DEC_REJECT; goto done; }
    double dur = (start_ns && end_ns > start_ns) ? (double)(end_ns - start_ns) / 1e9 : NAN; /* 0 ns: no latency */

    Group *g = group_in(c, model_v->s, model_v->slen, version, vlen);
    if (!g) { rc = DEC_NOMEM; goto done; }
    if (g->model == c->mscratch.a) { /* a new group of a GenAI call: its own copy of the composed name */
        if (!(g->mown = PyMem_RawMalloc(g->mlen))) { rc = DEC_NOMEM; goto done; }
        memcpy(g->mown, g->model, g->mlen);
        g->model = g->mown;
    }
    if (g->version == (const uint8_t *)vbuf) { /* a new group keeps its own copy of an integer version */
        memcpy(g->vbuf, vbuf, vlen);
        g->version = (const uint8_t *)g->vbuf;
    }
    int64_t row = g->n_rows;
    if (emb_v) {
        /* a second dimension for one model in one request: the reference rejects it (embedding_dimension_mismatch)
           because of earlier spans, which its re-decoding of this span alone cannot see: it decodes the request */
        if (g->emb_dim && g->emb_dim != emb_dim) { rc = DEC_DECLINE_DIMENSION; goto done; }
        g->emb_dim = emb_dim;
        size_t need = (size_t)(row + n) * (size_t)emb_dim;
        if (grow((void **)&g->emb.a, &g->emb.cap, need, sizeof(double))) { rc = DEC_NOMEM; goto done; }
        for (size_t i = (size_t)g->emb_rows * (size_t)emb_dim; i < (size_t)row * (size_t)emb_dim; i++) g->emb.a[i] = NAN;
        memcpy(g->emb.a + (size_t)row * (size_t)emb_dim, c->emb.a, c->emb.n * sizeof(double));
        g->emb_rows = row + n;
    }
    int known = same && g == c->last_group;
    for (size_t k = 0; k < nrefs; k++) {
        Column *col = known ? &g->cols.a[c->last[k].col] : column_in(g, refs[k].name, refs[k].nlen, refs[k].hash);
        if (!col) { rc = DEC_NOMEM; goto done; }
        refs[k].col = (size_t)(col - g->cols.a);
        if (!batch_v) {
            if (write_scalar(c, col, row, refs[k].v)) { rc = DEC_NOMEM; goto done; }
            continue;
        }
        if (array_elements(c, refs[k].v)) { rc = DEC_DECLINE_WIRE; goto done; }
        if (write_elements(c, col, row, c->elems.a, c->elems.n)) { rc = DEC_NOMEM; goto done; }
    }
    if (grow((void **)&g->row_time.a, &g->row_time.cap, g->row_time.n + (size_t)n, sizeof(int64_t)) ||
        grow((void **)&g->row_weight.a, &g->row_weight.cap, g->row_weight.n + (size_t)n, sizeof(double))) {
        rc = DEC_NOMEM;
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        g->row_time.a[g->row_time.n++] = (int64_t)end;
        g->row_weight.a[g->row_weight.n++] = weight;
    }
    g->n_rows += n;
    if (PUSH(g->span_end, (int64_t)end) || PUSH(g->span_dur, dur) || PUSH(g->span_err, (uint8_t)(status_code == 2)) ||
        PUSH(g->span_stream, stream) || PUSH(g->span_seq, seq) || PUSH(g->span_rows, n) ||
        grow((void **)&g->span_ids.a, &g->span_ids.cap, g->span_ids.n + 24, 1)) {
        rc = DEC_NOMEM;
        goto done;
    }
    memcpy(g->span_ids.a + g->span_ids.n, c->span_ids, 24);
    g->span_ids.n += 24;
    c->accepted++;
    if (!genai_span && !known) {
        if (grow((void **)&c->last, &c->last_cap, nrefs, sizeof(LastColumn))) { rc = DEC_NOMEM; goto done; }
        for (size_t k = 0; k < nrefs; k++)
            c->last[k] = (LastColumn){refs[k].name, refs[k].nlen, refs[k].hash, refs[k].col};
        c->last_group = g;
        c->last_n = nrefs;
    }
done:
    if (refs != refs_local) PyMem_RawFree(refs);
    return rc;
}

/* ------------------------------------------------------------ the message tree ---- */
static int parse_status(const uint8_t *p, const uint8_t *end, int *code) {
    MsgState st = {0, 0};
    Field f;
    while (p < end) {
        if (next_field(M_STATUS, &p, end, &st, &f)) return -1;
        if (f.num == 3) *code = (int32_t)(uint32_t)f.u;
    }
    return 0;
}

/* 1 when a span event is a GenAI evaluation result (otlp.py reads those: the request is declined). */
static int is_evaluation_event(const uint8_t *p, const uint8_t *end) {
    MsgState st = {0, 0};
    Field f;
    while (p < end) {
        if (next_field(M_EVENT, &p, end, &st, &f)) return 0; /* skim() declines it */
        if (f.num == 2) return EQUALS(f.ptr, f.len, GENAI_EVALUATION_EVENT);
    }
    return 0;
}

static int parse_span(Ctx *c, const uint8_t *p, const uint8_t *end) {
    const uint8_t *span = p;
    MsgState st = {0, 0};
    Field f;
    uint64_t start_ns = 0, end_ns = 0;
    int status = 0, evaluation = 0;
    c->attrs.n = 0;
    c->span_genai = 0;
    c->gattrs.n = 0;
    c->span_key = 0;
    memset(c->span_ids, 0, sizeof c->span_ids);
    while (p < end) {
        if (next_field(M_SPAN, &p, end, &st, &f)) return DEC_DECLINE_WIRE;
        switch (f.num) {
        case 1:
            if (f.len == 16) memcpy(c->span_ids, f.ptr, 16);
            break;
        case 2:
            if (f.len == 8) {
                memcpy(c->span_ids + 16, f.ptr, 8);
                uint64_t k = 0;
                for (int i = 0; i < 8; i++) k = (k << 8) | f.ptr[i];
                c->span_key = (int64_t)(k & ((1ULL << 53) - 1));
            }
            break;
        case 11:
            if (skim(f.sub, f.ptr, f.ptr + f.len, 5)) return DEC_DECLINE_WIRE;
            if (c->genai_keys && is_evaluation_event(f.ptr, f.ptr + f.len)) evaluation = 1;
            break;
        case 7: start_ns = f.u; break;
        case 8: end_ns = f.u; break;
        case 9: {
            /* parsed in place, where an ml.* attribute is kept: copying the struct in just after writing it stalls
               on store forwarding (~4% of decoding) */
            if (grow((void **)&c->attrs.a, &c->attrs.cap, c->attrs.n + 1, sizeof(Attr))) return DEC_NOMEM;
            Attr *a = &c->attrs.a[c->attrs.n];
            if (parse_key_value(f.ptr, f.ptr + f.len, 5, a)) return DEC_DECLINE_WIRE;
            if (STARTS(a->key, a->klen, "ml.")) {
                c->attrs.n++;
            } else if (c->genai && (STARTS(a->key, a->klen, "gen_ai.") || EQUALS(a->key, a->klen, "error.type") ||
                                    EQUALS(a->key, a->klen, "llm.request.type"))) {
                if (a->key[0] == 'g') c->span_genai = 1;
                if (c->genai == GENAI_DECODE && PUSH(c->gattrs, *a)) return DEC_NOMEM;
            }
            break;
        }
        case 15:
            if (parse_status(f.ptr, f.ptr + f.len, &status)) return DEC_DECLINE_WIRE;
            break;
        default:
            if (f.kind == F_MESSAGE && skim(f.sub, f.ptr, f.ptr + f.len, 5)) return DEC_DECLINE_WIRE;
        }
    }
    if (evaluation) return DEC_DECLINE_GENAI;
    int rc = process_span(c, start_ns, end_ns, status);
    if (rc == DEC_REJECT) {
        if (PUSH(c->rejected, (int64_t)(span - c->base)) || PUSH(c->rejected, (int64_t)(end - span)) ||
            PUSH(c->rejected, c->resource ? (int64_t)(c->resource - c->base) : -1) ||
            PUSH(c->rejected, (int64_t)c->resource_len))
            return DEC_NOMEM;
        return DEC_OK;
    }
    return rc;
}

static int parse_scope_spans(Ctx *c, const uint8_t *p, const uint8_t *end) {
    MsgState st = {0, 0};
    Field f;
    while (p < end) {
        if (next_field(M_SCOPE_SPANS, &p, end, &st, &f)) return DEC_DECLINE_WIRE;
        int rc = f.num == 2 ? parse_span(c, f.ptr, f.ptr + f.len)
                 : f.kind == F_MESSAGE && skim(f.sub, f.ptr, f.ptr + f.len, 4) ? DEC_DECLINE_WIRE : DEC_OK;
        if (rc) return rc;
    }
    return DEC_OK;
}

static int parse_resource(Ctx *c, const uint8_t *p, const uint8_t *end) {
    MsgState st = {0, 0};
    Field f;
    while (p < end) {
        if (next_field(M_RESOURCE, &p, end, &st, &f)) return DEC_DECLINE_WIRE;
        if (f.num == 1) {
            Attr a;
            if (parse_key_value(f.ptr, f.ptr + f.len, 4, &a)) return DEC_DECLINE_WIRE;
            if (EQUALS(a.key, a.klen, "ml.model.name")) {
                c->res_model = a.v;
                c->res_model_set = 1;
            } else if (EQUALS(a.key, a.klen, "ml.model.version")) {
                c->res_version = a.v;
                c->res_version_set = 1;
            }
        } else if (f.kind == F_MESSAGE && skim(f.sub, f.ptr, f.ptr + f.len, 4)) {
            return DEC_DECLINE_WIRE;
        }
    }
    return DEC_OK;
}

/* A ResourceSpans: the resource comes first on the wire from every SDK, but protobuf allows it anywhere,
 * and its attributes apply to all scope_spans; so find it first, then walk the spans. */
static int parse_resource_spans(Ctx *c, const uint8_t *p, const uint8_t *end) {
    MsgState st = {0, 0};
    Field f;
    const uint8_t *q = p;
    c->res_model_set = c->res_version_set = 0;
    c->resource = NULL;
    c->resource_len = 0;
    while (q < end) {
        if (next_field(M_RESOURCE_SPANS, &q, end, &st, &f)) return DEC_DECLINE_WIRE;
        if (f.num == 1) {
            c->resource = f.ptr;
            c->resource_len = f.len;
            int rc = parse_resource(c, f.ptr, f.ptr + f.len);
            if (rc) return rc;
        }
    }
    MsgState st2 = {0, 0};
    while (p < end) {
        next_field(M_RESOURCE_SPANS, &p, end, &st2, &f); /* validated above */
        if (f.num == 2) {
            int rc = parse_scope_spans(c, f.ptr, f.ptr + f.len);
            if (rc) return rc;
        }
    }
    return DEC_OK;
}

static int parse_request(Ctx *c, const uint8_t *p, const uint8_t *end) {
    MsgState st = {0, 0};
    Field f;
    while (p < end) {
        if (next_field(M_REQUEST, &p, end, &st, &f)) return DEC_DECLINE_WIRE;
        int rc = parse_resource_spans(c, f.ptr, f.ptr + f.len);
        if (rc) return rc;
    }
    return DEC_OK;
}

/* ------------------------------------------------------------- Python side ---- */
static PyObject *bytearray_of(const void *data, size_t n) {
    return PyByteArray_FromStringAndSize((const char *)data, (Py_ssize_t)n);
}

static PyObject *text(const uint8_t *s, size_t n) { return PyUnicode_DecodeUTF8((const char *)s, (Py_ssize_t)n, "strict"); }

/* Decode valid UTF-8 into UCS-4 code points (numpy's str storage). */
static void utf8_to_ucs4(const uint8_t *s, size_t n, uint32_t *out) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            *out++ = c;
            i += 1;
        } else if (c < 0xE0) {
            *out++ = (uint32_t)(c & 0x1F) << 6 | (s[i + 1] & 0x3F);
            i += 2;
        } else if (c < 0xF0) {
            *out++ = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[i + 1] & 0x3F) << 6 | (s[i + 2] & 0x3F);
            i += 3;
        } else {
            *out++ = (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[i + 1] & 0x3F) << 12 |
                     (uint32_t)(s[i + 2] & 0x3F) << 6 | (s[i + 3] & 0x3F);
            i += 4;
        }
    }
}

/* A categorical column as numpy stores str arrays, so no Python object is made per row: (buffer of n rows
 * x width UCS-4 code points, little-endian, zero-padded; width), where width is the longest value's length
 * (at least 1), as numpy.asarray(values, dtype=str) would choose. Rows without a value stay "". */
static PyObject *categorical_column(const Column *col, size_t n) {
    Py_ssize_t width = 1;
    for (size_t i = 0; i < col->cat.n; i++)
        if (col->cat.a[i].chars > width) width = col->cat.a[i].chars;
    PyObject *buf = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(n * (size_t)width * 4));
    if (!buf) return NULL;
    uint32_t *cells = (uint32_t *)PyByteArray_AS_STRING(buf);
    memset(cells, 0, n * (size_t)width * 4);
    for (size_t i = 0; i < col->cat.n; i++) {
        const CatEntry *e = &col->cat.a[i];
        uint32_t *cell = cells + (size_t)e->row * (size_t)width;
        utf8_to_ucs4(e->s, e->len, cell);
    }
    return Py_BuildValue("(Nn)", buf, width);
}

static PyObject *build_group(Group *g) {
    PyObject *numeric = PyDict_New(), *categorical = PyDict_New(), *invalid = PyDict_New();
    PyObject *out = NULL;
    if (!numeric || !categorical || !invalid) goto fail;
    size_t n = (size_t)g->n_rows;
    for (size_t k = 0; k < g->cols.n; k++) {
        Column *col = &g->cols.a[k];
        PyObject *name = text(col->name, col->nlen);
        if (!name) goto fail;
        int err = 0;
        if (col->has_num) {
            if (grow((void **)&col->num.a, &col->num.cap, n, sizeof(double))) {
                PyErr_NoMemory();
                err = 1;
            } else {
                while (col->num.n < n) col->num.a[col->num.n++] = NAN;
                PyObject *arr = bytearray_of(col->num.a, n * sizeof(double));
                err = !arr || PyDict_SetItem(numeric, name, arr);
                Py_XDECREF(arr);
            }
        }
        if (!err && col->has_cat) {
            PyObject *pair = categorical_column(col, n);
            err = !pair || PyDict_SetItem(categorical, name, pair);
            Py_XDECREF(pair);
        }
        if (!err && col->invalid) {
            PyObject *count = PyLong_FromLongLong(col->invalid);
            err = !count || PyDict_SetItem(invalid, name, count);
            Py_XDECREF(count);
        }
        Py_DECREF(name);
        if (err) goto fail;
    }
    PyObject *emb = Py_None;
    Py_INCREF(emb);
    if (g->emb_dim) {
        size_t need = n * (size_t)g->emb_dim;
        if (grow((void **)&g->emb.a, &g->emb.cap, need, sizeof(double))) {
            PyErr_NoMemory();
            Py_DECREF(emb);
            goto fail;
        }
        for (size_t i = (size_t)g->emb_rows * (size_t)g->emb_dim; i < need; i++) g->emb.a[i] = NAN;
        Py_DECREF(emb);
        emb = bytearray_of(g->emb.a, need * sizeof(double));
        if (!emb) goto fail;
    }
    out = Py_BuildValue("(NNLNNNNNNNNOOOLNN)", text(g->model, g->mlen), text(g->version, g->vlen),
                        (long long)g->n_rows,
                        bytearray_of(g->row_time.a, g->row_time.n * sizeof(int64_t)),
                        bytearray_of(g->row_weight.a, g->row_weight.n * sizeof(double)),
                        bytearray_of(g->span_end.a, g->span_end.n * sizeof(int64_t)),
                        bytearray_of(g->span_dur.a, g->span_dur.n * sizeof(double)),
                        bytearray_of(g->span_err.a, g->span_err.n),
                        bytearray_of(g->span_stream.a, g->span_stream.n * sizeof(int64_t)),
                        bytearray_of(g->span_seq.a, g->span_seq.n * sizeof(int64_t)),
                        bytearray_of(g->span_rows.a, g->span_rows.n * sizeof(int64_t)), numeric, categorical,
                        invalid, (long long)g->emb_dim, emb, bytearray_of(g->span_ids.a, g->span_ids.n));
fail:
    Py_XDECREF(numeric);
    Py_XDECREF(categorical);
    Py_XDECREF(invalid);
    return out;
}

static PyObject *genai_names(PyObject *self, PyObject *unused) {
    size_t n = sizeof GENAI_NAMES / sizeof *GENAI_NAMES;
    PyObject *out = PyList_New((Py_ssize_t)n);
    for (size_t k = 0; out && k < n; k++) {
        PyObject *t = Py_BuildValue("(ssO)", GENAI_NAMES[k].key, GENAI_NAMES[k].feature,
                                    GENAI_NAMES[k].categorical ? Py_True : Py_False);
        if (!t) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)k, t);
    }
    return out;
}

static PyObject *decode(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Ctx c;
    memset(&c, 0, sizeof c);
    unsigned long long now_ns, future_limit_ns;
    if (!PyArg_ParseTuple(args, "y*nnnnnnKKi", &buf, &c.max_batch_size, &c.max_features_per_span,
                          &c.max_category_length, &c.max_name_length, &c.max_id_length, &c.max_embedding_dimension,
                          &now_ns, &future_limit_ns, &c.genai))
        return NULL;
    c.now_ns = now_ns;
    c.future_limit_ns = future_limit_ns;
    c.genai_keys = c.genai >> 2; /* otlp.py _genai_mode: bit 2 keys the calls for their evaluation results */
    c.genai &= 3;
    int rc;
    c.base = (const uint8_t *)buf.buf;
    Py_BEGIN_ALLOW_THREADS
    rc = parse_request(&c, (const uint8_t *)buf.buf, (const uint8_t *)buf.buf + buf.len);
    Py_END_ALLOW_THREADS
    PyObject *out = NULL;
    if (rc == DEC_NOMEM) {
        PyErr_NoMemory();
    } else if (rc != DEC_OK) {
        out = PyLong_FromLong(rc);
    } else {
        PyObject *groups = PyList_New((Py_ssize_t)c.groups.n);
        int err = !groups;
        for (size_t k = 0; !err && k < c.groups.n; k++) {
            PyObject *g = build_group(c.groups.a[k]);
            if (!g) err = 1;
            else PyList_SET_ITEM(groups, (Py_ssize_t)k, g);
        }
        PyObject *rejected = err ? NULL : bytearray_of(c.rejected.a, c.rejected.n * sizeof(int64_t));
        if (!err && rejected) out = Py_BuildValue("(LLLNN)", (long long)c.received, (long long)c.accepted,
                                                  (long long)c.ignored, groups, rejected);
        else {
            Py_XDECREF(groups);
            Py_XDECREF(rejected);
        }
    }
    free_ctx(&c);
    PyBuffer_Release(&buf);
    return out;
}

static PyObject *schema(PyObject *self, PyObject *unused) {
    static const char *const kinds[] = {"", "varint", "fixed64", "fixed32", "string", "bytes", "message"};
    PyObject *out = PyDict_New();
    if (!out) return NULL;
    for (int m = 0; m < M_COUNT; m++) {
        PyObject *fields = PyDict_New();
        if (!fields) goto fail;
        for (int n = 1; n <= MAX_FIELD; n++) {
            const FieldSpec *f = &SCHEMA[m][n];
            if (f->kind == F_NONE) continue;
            PyObject *v = Py_BuildValue("(ssOO)", kinds[f->kind], f->kind == F_MESSAGE ? MESSAGE_NAMES[f->sub] : "",
                                        f->repeated ? Py_True : Py_False, f->oneof ? Py_True : Py_False);
            PyObject *key = PyLong_FromLong(n);
            int err = !v || !key || PyDict_SetItem(fields, key, v);
            Py_XDECREF(v);
            Py_XDECREF(key);
            if (err) { Py_DECREF(fields); goto fail; }
        }
        int err = PyDict_SetItemString(out, MESSAGE_NAMES[m], fields);
        Py_DECREF(fields);
        if (err) goto fail;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS,
     "decode(data, max_batch_size, max_features_per_span, max_category_length, max_name_length, max_id_length, "
     "max_embedding_dimension, now_ns, future_limit_ns, genai) -> (received, accepted, ignored, groups, rejected span "
     "ranges as int64 quadruples) or an int: 1 = declined (wire format), 2 = declined (a span only the Python decoder "
     "can decode), 5 = declined (embedding dimensions differ), 6 = declined (a GenAI span the Python decoder reads: "
     "genai 1, or captured content); genai: 0 GenAI spans are ordinary traffic, 1 declined, 2 decoded"},
    {"genai_names", genai_names, METH_NOARGS,
     "The GenAI mapping this decoder applies: [(span attribute, feature, categorical)] (genai.py's defaults)."},
    {"schema", schema, METH_NOARGS, "The message schema this decoder validates against: {message: {field: "
                                    "(kind, message type, repeated, in a oneof)}}."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_otlp_columns",
                                    "Compiled OTLP trace decoder (see otel_ml/decode/otlp.py).", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__otlp_columns(void) { return PyModule_Create(&module); }
