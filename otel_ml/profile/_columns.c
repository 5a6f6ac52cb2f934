/* One column of a request, in one pass (otel_ml/profile/sketch.py): what the profiles' update methods did in several
 * numpy calls, each of whose overhead was most of its cost on the few hundred values of a request.
 *
 * summarize(values, center, scale, bins[, slot_of_bin, last]) -> (finite, mean, m2)     (NumericProfile.update)
 *   values: float64, contiguous; NaN and +-inf are skipped (the caller counts them as missing).
 *   center, scale: the feature's grid (sketch.Grid); bins: None, or the dense counts (uint16, int32 or int64,
 *   NUMERIC_GRID_BINS long), which must hold the added counts (the caller sizes the type for the total).
 *   slot_of_bin (int8, NUMERIC_GRID_BINS long), last (int32) and last_value (float64, as long as last): each finite
 *   value's index and value are written to last[k] and last_value[k], k = slot_of_bin[its bin], so slot k ends with
 *   the last value that fell in it (profile/exemplars.py; last[k] = -1 stays where none did). All three or none.
 *   mean and m2 by the corrected two-pass algorithm (Chan, Golub and LeVeque 1983): the mean, then the squared
 *   deviations less the square of their sum's rounding error, as accurate as numpy's two-pass form.
 *
 * bins(values, center, scale, out): out (int32, len(values)) receives each value's bin, as sketch.grid_bins.
 *
 * A bin is floor((asinh((x - center) / scale) + 16) * 512 / 32) clamped to [0, 511] (sketch.grid_bins, whose numpy
 * form is the fallback and the reference: the same operations in the same order). A grid whose center or scale is
 * not finite and positive (overflowed quartiles) sends a non-finite quotient to the edge bin of its sign.
 *
 * cell_sums(ids, weights, ids_out, sums_out) -> k                                        (SegmentCounts._add)
 *   ids: int64 cells (>= 0), weights: float64 of the same length. The first k entries of ids_out (int64) and
 *   sums_out (float64), both as long as ids, receive the distinct cells in first-seen order and their weights'
 *   sums (cells summing to 0 left out): bincount and flatnonzero without their scan of every possible cell (segments x 512 bins, or x 2048
 *   buckets). A scratch table of the largest cell seen is kept between calls (the GIL is held throughout).
 *
 * keep_exemplars(at, last, last_value, time_ns, span, ids, store_time, store_value, store_ids)  (Exemplars)
 *   For each feature f and band k with a row r = last[f, k] >= 0 (``summarize``'s), unless the store's slot
 *   (at[f], k) holds a later row: store_time = time_ns[r], store_value = last_value[f, k], store_ids = the 24 ids
 *   bytes of r's span (span[r], or r itself when span is None). at: int64 [F]; last int32 and last_value float64
 *   [F x 8]; time_ns int64 and span int64 [rows]; ids uint8 [spans x 24]; the stores [capacity x 8] (ids x 24).
 *   Every index is checked: a wrong one is a ValueError, not a write elsewhere.
 *
 * count_categories(values, width) -> (distinct, counts, missing, first)            (CategoricalProfile.update)
 *   values: a numpy str array's buffer (UCS-4, ``width`` code points a cell, NUL-padded); "" is missing.
 *   distinct: the distinct non-empty strings in first-seen order, counts: how often each occurs, first: the index
 *   of each one's first cell (lists).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define GRID_BINS 512
#define ASINH_SPAN 16.0

static int32_t formula_bin(double z) {
    z = asinh(z);
    z += ASINH_SPAN;
    z *= GRID_BINS / (2 * ASINH_SPAN);
    z = floor(z);
    if (z > GRID_BINS - 1) return GRID_BINS - 1;
    if (!(z > 0)) return 0; /* also NaN, which a finite x and a sane grid never give */
    return (int32_t)z;
}

/* asinh is ~25 ns a value here, more than everything else in the pass: a value's bin comes instead from where its
 * quotient z falls among the bins' lower edges in z, threshold[k] = the least double whose formula_bin is k (found
 * once, by bisection over the doubles with formula_bin itself, so the bin is the formula's exactly: asinh is
 * monotone). Between -TABLE_SPAN and TABLE_SPAN a table of cells 1/32 wide, narrower than any bin (>= 1/16 in z),
 * gives the bin of each cell's lower end, and at most one edge lies in a cell; beyond, a binary search. */
#define TABLE_SPAN 64
#define CELLS_PER_UNIT 32
#define CELLS (2 * TABLE_SPAN * CELLS_PER_UNIT)
static double threshold[GRID_BINS + 1]; /* threshold[0] = -inf, threshold[GRID_BINS] = +inf: sentinels */
static int16_t cell_bin[CELLS];

static int32_t search_bin(double z) {
    int32_t lo = 0, hi = GRID_BINS; /* threshold[lo] <= z < threshold[hi] */
    while (hi - lo > 1) {
        int32_t mid = (lo + hi) / 2;
        if (z >= threshold[mid]) lo = mid; else hi = mid;
    }
    return lo;
}

static void build_tables(void) {
    threshold[0] = -INFINITY;
    threshold[GRID_BINS] = INFINITY;
    for (int32_t k = 1; k < GRID_BINS; k++) {
        double guess = sinh(k / (GRID_BINS / (2 * ASINH_SPAN)) - ASINH_SPAN), width = fabs(guess) * 1e-6 + 1e-9;
        double lo = guess - width, hi = guess + width; /* formula_bin(lo) < k <= formula_bin(hi) */
        while (formula_bin(lo) >= k) lo -= (width *= 2);
        while (formula_bin(hi) < k) hi += (width *= 2);
        while (nextafter(lo, hi) != hi) {
            double mid = lo + (hi - lo) / 2;
            if (mid <= lo || mid >= hi) mid = nextafter(lo, hi);
            if (formula_bin(mid) >= k) hi = mid; else lo = mid;
        }
        threshold[k] = hi;
    }
    for (int32_t c = 0; c < CELLS; c++)
        cell_bin[c] = (int16_t)search_bin(-TABLE_SPAN + (double)c / CELLS_PER_UNIT);
}

static inline int32_t bin_of(double x, double center, double scale, int grid_ok) {
    double z = (x - center) / scale;
    if (!grid_ok && !isfinite(z))
        z = x > center ? INFINITY : -INFINITY;
    if (!(z > -TABLE_SPAN && z < TABLE_SPAN))
        return isnan(z) ? 0 : search_bin(z);
    int32_t b = cell_bin[(int32_t)((z + TABLE_SPAN) * CELLS_PER_UNIT)];
    /* the cell's index rounds: correct by the neighbouring edges (at most one step either way) */
    while (z >= threshold[b + 1]) b++;
    while (z < threshold[b]) b--;
    return b;
}

static int grid_is_sane(double center, double scale) {
    return isfinite(center) && scale > 0 && scale < INFINITY;
}

/* A float64 array's buffer, or an error naming what it is not (numpy's native double: format "d", "<d" or "=d"). */
static int doubles(PyObject *obj, Py_buffer *view) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (view->itemsize != (Py_ssize_t)sizeof(double) || f[strlen(f) - 1] != 'd' || f[0] == '>' || f[0] == '!') {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "values must be a contiguous float64 array");
        return -1;
    }
    return 0;
}

static PyObject *summarize(PyObject *self, PyObject *args) {
    Py_buffer values, bins = {0}, slot_of = {0}, last = {0}, last_value = {0};
    double center, scale;
    PyObject *values_obj, *bins_obj, *slot_obj = Py_None, *last_obj = Py_None, *last_value_obj = Py_None;
    if (!PyArg_ParseTuple(args, "OddO|OOO", &values_obj, &center, &scale, &bins_obj, &slot_obj, &last_obj,
                          &last_value_obj) || doubles(values_obj, &values) < 0)
        return NULL;
    PyObject *result = NULL;
    int with_bins = bins_obj != Py_None, with_slots = slot_obj != Py_None;
    if (with_bins && PyObject_GetBuffer(bins_obj, &bins, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        goto done;
    if (with_slots && (PyObject_GetBuffer(slot_obj, &slot_of, PyBUF_C_CONTIGUOUS) < 0 ||
                       PyObject_GetBuffer(last_obj, &last, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0 ||
                       PyObject_GetBuffer(last_value_obj, &last_value, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0))
        goto done;
    if (with_slots && (slot_of.len != GRID_BINS || last.len % 4 || !last.len || last_value.len != 2 * last.len)) {
        PyErr_SetString(PyExc_ValueError, "slot_of_bin must be int8 of NUMERIC_GRID_BINS, last int32 and last_value "
                                          "float64 of the same length");
        goto done;
    }
    if (with_slots && values.len / (Py_ssize_t)sizeof(double) > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "too many values for one update");
        goto done;
    }
    int32_t n_slots = (int32_t)(last.len / 4);
    for (Py_ssize_t k = 0; with_slots && k < GRID_BINS; k++) {
        int8_t slot = ((const int8_t *)slot_of.buf)[k];
        if (slot < 0 || slot >= n_slots) {
            PyErr_SetString(PyExc_ValueError, "slot_of_bin names a slot last does not have");
            goto done;
        }
    }
    if (values.len % (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "values must be float64");
        goto done;
    }
    if (with_bins && (bins.itemsize != 2 && bins.itemsize != 4 && bins.itemsize != 8)) {
        PyErr_SetString(PyExc_ValueError, "bins must be uint16, int32 or int64");
        goto done;
    }
    if (with_bins && bins.len != GRID_BINS * bins.itemsize) {
        PyErr_SetString(PyExc_ValueError, "bins must hold NUMERIC_GRID_BINS counts");
        goto done;
    }
    const double *xs = values.buf;
    Py_ssize_t n = values.len / (Py_ssize_t)sizeof(double), finite = 0;
    double sum = 0.0, mean = 0.0, m2 = 0.0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (isfinite(xs[i])) {
            sum += xs[i];
            finite++;
        }
    }
    if (finite) {
        mean = sum / (double)finite;
        if (!isfinite(mean)) { /* the sum overflowed (values near +-1.7e308); a sum of x / n cannot */
            mean = 0.0;
            for (Py_ssize_t i = 0; i < n; i++)
                if (isfinite(xs[i])) mean += xs[i] / (double)finite;
        }
        double squares = 0.0, deviations = 0.0;
        int grid_ok = grid_is_sane(center, scale);
        for (Py_ssize_t i = 0; i < n; i++) {
            double x = xs[i];
            if (!isfinite(x)) continue;
            double d = x - mean;
            squares += d * d;
            deviations += d;
            if (with_bins || with_slots) {
                int32_t b = bin_of(x, center, scale, grid_ok);
                if (!with_bins) {}
                else if (bins.itemsize == 2) ((uint16_t *)bins.buf)[b]++;
                else if (bins.itemsize == 4) ((int32_t *)bins.buf)[b]++;
                else ((int64_t *)bins.buf)[b]++;
                if (with_slots) {
                    int8_t k = ((const int8_t *)slot_of.buf)[b];
                    ((int32_t *)last.buf)[k] = (int32_t)i;
                    ((double *)last_value.buf)[k] = x;
                }
            }
        }
        m2 = squares - deviations * deviations / (double)finite;
        if (m2 < 0) m2 = 0.0;
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("ndd", finite, mean, m2);
done:
    PyBuffer_Release(&values);
    if (with_bins && bins.obj) PyBuffer_Release(&bins);
    if (slot_of.obj) PyBuffer_Release(&slot_of);
    if (last.obj) PyBuffer_Release(&last);
    if (last_value.obj) PyBuffer_Release(&last_value);
    return result;
}

static PyObject *bins(PyObject *self, PyObject *args) {
    Py_buffer values, out;
    double center, scale;
    PyObject *values_obj;
    if (!PyArg_ParseTuple(args, "Oddw*", &values_obj, &center, &scale, &out))
        return NULL;
    if (doubles(values_obj, &values) < 0) {
        PyBuffer_Release(&out);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t n = values.len / (Py_ssize_t)sizeof(double);
    if (values.len % (Py_ssize_t)sizeof(double) || out.len != n * (Py_ssize_t)sizeof(int32_t)) {
        PyErr_SetString(PyExc_ValueError, "values must be float64 and out int32 of the same length");
        goto done;
    }
    const double *xs = values.buf;
    int32_t *ids = out.buf;
    int grid_ok = grid_is_sane(center, scale);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        ids[i] = bin_of(xs[i], center, scale, grid_ok);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&values);
    PyBuffer_Release(&out);
    return result;
}

/* FNV-1a over a cell's code points */
static inline uint64_t cell_hash(const uint32_t *cell, Py_ssize_t width) {
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < width; i++) {
        h ^= cell[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static PyObject *count_categories(PyObject *self, PyObject *args) {
    Py_buffer values;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*n", &values, &width))
        return NULL;
    PyObject *result = NULL, *distinct = NULL, *counts = NULL, *firsts = NULL;
    int32_t *slots = NULL;   /* open addressing: index of a distinct value's first cell, -1 empty */
    Py_ssize_t *tally = NULL; /* per slot */
    Py_ssize_t cell_bytes = width * 4;
    if (width <= 0 || values.len % cell_bytes) {
        PyErr_SetString(PyExc_ValueError, "values must be a str array of the given width");
        goto done;
    }
    Py_ssize_t n = values.len / cell_bytes, capacity = 16, missing = 0, used = 0;
    while (capacity < 2 * n) capacity *= 2;
    if (n > INT32_MAX / 2) {
        PyErr_SetString(PyExc_ValueError, "too many values for one update");
        goto done;
    }
    slots = PyMem_Malloc(capacity * sizeof(int32_t));
    tally = PyMem_Calloc(capacity, sizeof(Py_ssize_t));
    int32_t *order = PyMem_Malloc((n ? n : 1) * sizeof(int32_t)); /* slots in first-seen order */
    if (!slots || !tally || !order) {
        PyMem_Free(order);
        PyErr_NoMemory();
        goto done;
    }
    memset(slots, 0xff, capacity * sizeof(int32_t));
    const uint32_t *cells = values.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint32_t *cell = cells + i * width;
        if (!cell[0]) { /* "" is all NULs; "\0a" is not missing */
            Py_ssize_t k = 1;
            while (k < width && !cell[k]) k++;
            if (k == width) {
                missing++;
                continue;
            }
        }
        Py_ssize_t at = (Py_ssize_t)(cell_hash(cell, width) & (uint64_t)(capacity - 1));
        while (slots[at] >= 0 && memcmp(cells + (Py_ssize_t)slots[at] * width, cell, cell_bytes))
            at = (at + 1) & (capacity - 1);
        if (slots[at] < 0) {
            slots[at] = (int32_t)i;
            order[used++] = (int32_t)at;
        }
        tally[at]++;
    }
    distinct = PyList_New(used);
    counts = PyList_New(used);
    firsts = PyList_New(used);
    if (!distinct || !counts || !firsts) {
        PyMem_Free(order);
        goto done;
    }
    for (Py_ssize_t k = 0; k < used; k++) {
        const uint32_t *cell = cells + (Py_ssize_t)slots[order[k]] * width;
        Py_ssize_t length = width;
        while (length && !cell[length - 1]) length--;
        PyObject *text = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, cell, length);
        PyObject *count = text ? PyLong_FromSsize_t(tally[order[k]]) : NULL;
        PyObject *first = count ? PyLong_FromLong(slots[order[k]]) : NULL;
        if (!first) {
            Py_XDECREF(text);
            Py_XDECREF(count);
            PyMem_Free(order);
            goto done;
        }
        PyList_SET_ITEM(distinct, k, text);
        PyList_SET_ITEM(counts, k, count);
        PyList_SET_ITEM(firsts, k, first);
    }
    PyMem_Free(order);
    result = Py_BuildValue("OOnO", distinct, counts, missing, firsts);
done:
    Py_XDECREF(distinct);
    Py_XDECREF(counts);
    Py_XDECREF(firsts);
    PyMem_Free(slots);
    PyMem_Free(tally);
    PyBuffer_Release(&values);
    return result;
}

static double *cell_scratch;   /* per cell: its sum in the current call */
static uint8_t *cell_touched;  /* per cell: seen in the current call */
static Py_ssize_t cell_capacity;

static PyObject *cell_sums(PyObject *self, PyObject *args) {
    PyObject *ids_obj, *weights_obj, *ids_out_obj, *sums_out_obj;
    if (!PyArg_ParseTuple(args, "OOOO", &ids_obj, &weights_obj, &ids_out_obj, &sums_out_obj))
        return NULL;
    Py_buffer ids = {0}, weights = {0}, ids_out = {0}, sums_out = {0};
    PyObject *result = NULL;
    if (PyObject_GetBuffer(ids_obj, &ids, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0 || doubles(weights_obj, &weights) < 0 ||
        PyObject_GetBuffer(ids_out_obj, &ids_out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0 ||
        PyObject_GetBuffer(sums_out_obj, &sums_out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        goto done;
    Py_ssize_t n = weights.len / (Py_ssize_t)sizeof(double);
    if (ids.itemsize != 8 || ids.len != n * 8 || ids_out.len != n * 8 || sums_out.len != n * 8 ||
        (ids.format && strchr("qlQL", ids.format[strlen(ids.format) - 1]) == NULL)) {
        PyErr_SetString(PyExc_ValueError, "ids and the outputs must be int64, weights float64, all of one length");
        goto done;
    }
    const int64_t *cells = ids.buf;
    const double *w = weights.buf;
    int64_t largest = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (cells[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "cells must be >= 0");
            goto done;
        }
        if (cells[i] > largest) largest = cells[i];
    }
    if (largest >= cell_capacity) {
        Py_ssize_t grown = cell_capacity ? cell_capacity : 4096;
        while (grown <= largest) grown *= 2;
        double *scratch = PyMem_Realloc(cell_scratch, grown * sizeof(double));
        if (scratch) cell_scratch = scratch;
        uint8_t *touched = scratch ? PyMem_Realloc(cell_touched, grown) : NULL;
        if (touched) cell_touched = touched;
        if (!scratch || !touched) {
            PyErr_NoMemory();
            goto done;
        }
        memset(cell_touched + cell_capacity, 0, grown - cell_capacity);
        cell_capacity = grown;
    }
    int64_t *out_ids = ids_out.buf;
    double *out_sums = sums_out.buf;
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t c = cells[i];
        if (!cell_touched[c]) {
            cell_touched[c] = 1;
            cell_scratch[c] = 0.0;
            out_ids[k++] = c;
        }
        cell_scratch[c] += w[i];
    }
    Py_ssize_t kept = 0; /* cells whose weights sum to 0 are left out, as flatnonzero leaves them */
    for (Py_ssize_t j = 0; j < k; j++) {
        int64_t c = out_ids[j];
        cell_touched[c] = 0;
        if (cell_scratch[c] != 0.0) {
            out_ids[kept] = c;
            out_sums[kept++] = cell_scratch[c];
        }
    }
    result = PyLong_FromSsize_t(kept);
done:
    if (ids.obj) PyBuffer_Release(&ids);
    if (weights.obj) PyBuffer_Release(&weights);
    if (ids_out.obj) PyBuffer_Release(&ids_out);
    if (sums_out.obj) PyBuffer_Release(&sums_out);
    return result;
}

static PyObject *formula_bins(PyObject *self, PyObject *args) {
    Py_buffer zs, out;
    if (!PyArg_ParseTuple(args, "y*w*", &zs, &out))
        return NULL;
    Py_ssize_t n = zs.len / (Py_ssize_t)sizeof(double);
    if (out.len == n * (Py_ssize_t)sizeof(int32_t))
        for (Py_ssize_t i = 0; i < n; i++)
            ((int32_t *)out.buf)[i] = formula_bin(((const double *)zs.buf)[i]);
    PyBuffer_Release(&zs);
    PyBuffer_Release(&out);
    return Py_NewRef(Py_None);
}

static int buffer_of(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, int writable) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0) return -1;
    if (view->len % itemsize) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "a buffer's length is not a whole number of its items");
        return -1;
    }
    return 0;
}

#define EXEMPLAR_SLOTS 8
#define IDS_BYTES 24

static PyObject *keep_exemplars(PyObject *self, PyObject *args) {
    PyObject *objs[9];
    Py_buffer b[9];
    static const Py_ssize_t size[9] = {8, 4, 8, 8, 8, 1, 8, 8, 1};
    static const int writable[9] = {0, 0, 0, 0, 0, 0, 1, 1, 1};
    int got = 0;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "OOOOOOOOO", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5], &objs[6],
                          &objs[7], &objs[8]))
        return NULL;
    for (; got < 9; got++) {
        if (got == 4 && objs[4] == Py_None) { b[4].obj = NULL; b[4].len = 0; b[4].buf = NULL; continue; }
        if (buffer_of(objs[got], &b[got], size[got], writable[got]) < 0) goto done;
    }
    Py_ssize_t features = b[0].len / 8, rows = b[3].len / 8, spans = b[5].len / IDS_BYTES;
    Py_ssize_t capacity = b[6].len / 8 / EXEMPLAR_SLOTS;
    if (b[1].len / 4 != features * EXEMPLAR_SLOTS || b[2].len / 8 != features * EXEMPLAR_SLOTS ||
        (b[4].buf && b[4].len / 8 != rows) || b[5].len % IDS_BYTES || b[7].len != b[6].len ||
        b[8].len != capacity * EXEMPLAR_SLOTS * IDS_BYTES || b[6].len != capacity * EXEMPLAR_SLOTS * 8) {
        PyErr_SetString(PyExc_ValueError, "keep_exemplars: buffers of inconsistent lengths");
        goto done;
    }
    const int64_t *at = b[0].buf, *time_ns = b[3].buf, *span = b[4].buf;
    const int32_t *last = b[1].buf;
    const double *last_value = b[2].buf;
    const uint8_t *ids = b[5].buf;
    int64_t *store_time = b[6].buf;
    double *store_value = b[7].buf;
    uint8_t *store_ids = b[8].buf;
    for (Py_ssize_t f = 0; f < features; f++) {
        if (at[f] < 0 || at[f] >= capacity) {
            PyErr_SetString(PyExc_ValueError, "keep_exemplars: a store row out of range");
            goto done;
        }
        for (Py_ssize_t k = 0; k < EXEMPLAR_SLOTS; k++) {
            int32_t r = last[f * EXEMPLAR_SLOTS + k];
            if (r < 0) continue;
            int64_t s = span ? (r < rows ? span[r] : -1) : r;
            if (r >= rows || s < 0 || s >= spans) {
                PyErr_SetString(PyExc_ValueError, "keep_exemplars: a row or span out of range");
                goto done;
            }
            Py_ssize_t slot = (Py_ssize_t)at[f] * EXEMPLAR_SLOTS + k;
            if (time_ns[r] < store_time[slot]) continue;
            store_time[slot] = time_ns[r];
            store_value[slot] = last_value[f * EXEMPLAR_SLOTS + k];
            memcpy(store_ids + slot * IDS_BYTES, ids + s * IDS_BYTES, IDS_BYTES);
        }
    }
    result = Py_NewRef(Py_None);
done:
    for (int i = 0; i < got; i++)
        if (b[i].obj) PyBuffer_Release(&b[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"keep_exemplars", keep_exemplars, METH_VARARGS, "Each band's last row kept where it is later (Exemplars)."},
    {"summarize", summarize, METH_VARARGS, "Finite count, mean and m2 of a column, its values counted into bins."},
    {"bins", bins, METH_VARARGS, "Each value's grid bin."},
    {"cell_sums", cell_sums, METH_VARARGS, "Distinct cells of an int64 array and their weights' sums."},
    {"count_categories", count_categories, METH_VARARGS, "Distinct non-empty strings of a str array, counted."},
    {"formula_bins", formula_bins, METH_VARARGS, "Each z's bin by the formula itself (the tables' reference)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_columns", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__columns(void) {
    build_tables();
    return PyModule_Create(&module);
}
