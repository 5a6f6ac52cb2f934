/* The KS statistic and the Wasserstein-1 distance of two weighted samples, each sorted by value
 * (otel_ml/analyze/stats.py, ks_and_wasserstein): one merge of the two sorted runs, reading |F_ref - F_cur| after
 * each distinct value, as the numpy fallback does with a sort, two running sums and a dozen temporary arrays. Each
 * sample's running sum adds its weights in the same order as numpy's cumsum, so the CDFs and the KS statistic are
 * the fallback's to the bit; the Wasserstein sum is sequential where numpy's is pairwise (a few ulps apart).
 *
 * ks_and_wasserstein(ref_values, ref_weights, cur_values, cur_weights) -> (ks, wasserstein): float64 buffers,
 * values ascending (ValueError otherwise, or when a sample is empty or weighs nothing).
 *
 * The rest reads what a numeric feature's evaluation reads besides (stats.py's functions of the same names): the
 * current sample's shares in the reference's bins, its quantiles and its share outside the reference's range, the
 * distances between two bin shares, the KS statistic of two binned counts. Each is a few numpy calls on arrays of
 * ten to a thousand items, where numpy's cost per call, not the arithmetic, was most of an evaluation (issue 48).
 * They take C-contiguous float64 arrays (the binned counts: any integer or float64 array) and raise TypeError on
 * anything else, so that the caller converts or falls back to numpy; each keeps the numpy version's order of
 * operations where that fixes the result to the bit (running sums as cumsum's), and says where it does not.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static int sorted_ascending(const double *v, Py_ssize_t n) {
    for (Py_ssize_t i = 1; i < n; i++)
        if (!(v[i - 1] <= v[i])) return 0; /* NaN fails too */
    return n == 0 || v[0] == v[0];
}

static PyObject *ks_and_wasserstein(PyObject *self, PyObject *args) {
    Py_buffer rv, rw, cv, cw;
    if (!PyArg_ParseTuple(args, "y*y*y*y*", &rv, &rw, &cv, &cw)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = rv.len / (Py_ssize_t)sizeof(double), m = cv.len / (Py_ssize_t)sizeof(double);
    const double *a = rv.buf, *aw = rw.buf, *b = cv.buf, *bw = cw.buf;
    if (rw.len != rv.len || cw.len != cv.len || rv.len % sizeof(double) || cv.len % sizeof(double) || n == 0 ||
        m == 0) {
        PyErr_SetString(PyExc_ValueError, "two non-empty samples of float64 values and weights, one weight each");
        goto done;
    }
    if (!sorted_ascending(a, n) || !sorted_ascending(b, m)) {
        PyErr_SetString(PyExc_ValueError, "values must be sorted ascending (and not NaN)");
        goto done;
    }
    double total_a = 0.0, total_b = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) total_a += aw[i];
    for (Py_ssize_t j = 0; j < m; j++) total_b += bw[j];
    if (!(total_a > 0.0) || !(total_b > 0.0)) {
        PyErr_SetString(PyExc_ValueError, "a sample weighs nothing");
        goto done;
    }
    double ks = 0.0, w = 0.0, fa = 0.0, fb = 0.0, prev_gap = 0.0, prev_x = 0.0;
    int first = 1;
    Py_ssize_t i = 0, j = 0;
    while (i < n || j < m) {
        /* The next distinct value of the union, and every weight at it from both samples. */
        double x = (j >= m || (i < n && a[i] <= b[j])) ? a[i] : b[j];
        while (i < n && a[i] == x) fa += aw[i++];
        while (j < m && b[j] == x) fb += bw[j++];
        double gap = fabs(fa / total_a - fb / total_b);
        if (!first) w += prev_gap * (x - prev_x);
        if (gap > ks) ks = gap;
        prev_gap = gap;
        prev_x = x;
        first = 0;
    }
    result = Py_BuildValue("(dd)", ks, w);
done:
    PyBuffer_Release(&rv);
    PyBuffer_Release(&rw);
    PyBuffer_Release(&cv);
    PyBuffer_Release(&cw);
    return result;
}

/* A C-contiguous one-dimensional array of float64 (TypeError otherwise: the caller converts or uses numpy). */
static int get_doubles(PyObject *obj, Py_buffer *view, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    const char *f = view->format;
    if (f != NULL && (*f == '<' || *f == '=' || *f == '@')) f++;
    if (view->itemsize != (Py_ssize_t)sizeof(double) || view->ndim > 1 || f == NULL || strcmp(f, "d") != 0) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s: a contiguous float64 array", what);
        return -1;
    }
    return 0;
}

static Py_ssize_t count_of(const Py_buffer *view) { return view->len / (Py_ssize_t)sizeof(double); }

/* The first index i in [0, n) with v[i] > x (numpy's searchsorted side="right"), searched from ``from``. */
static Py_ssize_t right_of(const double *v, Py_ssize_t n, Py_ssize_t from, double x) {
    Py_ssize_t lo = from, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (v[mid] <= x) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* binned_shares(values, weights, edges, out): out[k] = the share of the weight in bin k of (-inf, e1], (e1, e2],
 * ..., (e_last, +inf), len(out) = len(edges) + 1; values and edges ascending (ValueError for edges that are not). As stats._cdf_at: the running sum
 * (cumsum's order) up to the last value <= each edge, over the total, then differences. */
static PyObject *binned_shares(PyObject *self, PyObject *args) {
    PyObject *ov, *ow, *oe, *oo;
    if (!PyArg_ParseTuple(args, "OOOO", &ov, &ow, &oe, &oo)) return NULL;
    Py_buffer v, w, e, out;
    if (get_doubles(ov, &v, "values") < 0) return NULL;
    if (get_doubles(ow, &w, "weights") < 0) { PyBuffer_Release(&v); return NULL; }
    if (get_doubles(oe, &e, "edges") < 0) { PyBuffer_Release(&v); PyBuffer_Release(&w); return NULL; }
    if (PyObject_GetBuffer(oo, &out, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&v); PyBuffer_Release(&w); PyBuffer_Release(&e);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t n = count_of(&v), k = count_of(&e);
    const double *x = v.buf, *wt = w.buf, *edge = e.buf;
    double *share = out.buf;
    if (count_of(&w) != n || out.itemsize != (Py_ssize_t)sizeof(double) || out.len != (k + 1) * (Py_ssize_t)sizeof(double)
        || n == 0) {
        PyErr_SetString(PyExc_ValueError, "a non-empty sample, one weight a value, and len(edges) + 1 shares");
        goto done;
    }
    for (Py_ssize_t b = 1; b < k; b++)
        if (!(edge[b - 1] <= edge[b])) {
            PyErr_SetString(PyExc_ValueError, "edges must be sorted ascending (and not NaN)");
            goto done;
        }
    double total = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) total += wt[i];
    double cum = 0.0, before = 0.0;
    Py_ssize_t at = 0;
    for (Py_ssize_t b = 0; b < k; b++) {
        Py_ssize_t upto = right_of(x, n, at, edge[b]);
        for (; at < upto; at++) cum += wt[at];
        double cdf = cum / total;
        share[b] = cdf - before;
        before = cdf;
    }
    share[k] = 1.0 - before;
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&v); PyBuffer_Release(&w); PyBuffer_Release(&e); PyBuffer_Release(&out);
    return result;
}

/* weighted_quantiles(values, weights, q0, q1, ...) -> (x0, x1, ...): for each q the first value whose running weight
 * (cumsum's order) passes q times the total (KLL's exclusive quantile, as drift.current_distribution reads it). */
static PyObject *weighted_quantiles(PyObject *self, PyObject *args) {
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError, "weighted_quantiles(values, weights, *quantiles)");
        return NULL;
    }
    Py_buffer v, w;
    if (get_doubles(PyTuple_GET_ITEM(args, 0), &v, "values") < 0) return NULL;
    if (get_doubles(PyTuple_GET_ITEM(args, 1), &w, "weights") < 0) { PyBuffer_Release(&v); return NULL; }
    PyObject *result = NULL;
    Py_ssize_t n = count_of(&v);
    const double *x = v.buf, *wt = w.buf;
    if (count_of(&w) != n || n == 0) {
        PyErr_SetString(PyExc_ValueError, "a non-empty sample, one weight a value");
        goto done;
    }
    double total = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) total += wt[i];
    result = PyTuple_New(nargs - 2);
    if (result == NULL) goto done;
    for (Py_ssize_t a = 2; a < nargs; a++) {
        double q = PyFloat_AsDouble(PyTuple_GET_ITEM(args, a));
        if (q == -1.0 && PyErr_Occurred()) { Py_CLEAR(result); goto done; }
        double target = q * total, cum = 0.0;
        Py_ssize_t i = 0;
        for (; i < n; i++) { /* searchsorted(cumsum, target, "right"): the first running sum above it */
            cum += wt[i];
            if (cum > target) break;
        }
        PyTuple_SET_ITEM(result, a - 2, PyFloat_FromDouble(x[i < n ? i : n - 1]));
    }
done:
    PyBuffer_Release(&v); PyBuffer_Release(&w);
    return result;
}

/* outside_share(values, weights, lo, hi) -> the share of the weight below lo or above hi. The sums are sequential
 * where numpy's are pairwise: a few ulps apart. */
static PyObject *outside_share(PyObject *self, PyObject *args) {
    PyObject *ov, *ow;
    double lo, hi;
    if (!PyArg_ParseTuple(args, "OOdd", &ov, &ow, &lo, &hi)) return NULL;
    Py_buffer v, w;
    if (get_doubles(ov, &v, "values") < 0) return NULL;
    if (get_doubles(ow, &w, "weights") < 0) { PyBuffer_Release(&v); return NULL; }
    PyObject *result = NULL;
    Py_ssize_t n = count_of(&v);
    const double *x = v.buf, *wt = w.buf;
    if (count_of(&w) != n) {
        PyErr_SetString(PyExc_ValueError, "one weight a value");
        goto done;
    }
    double total = 0.0, outside = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        total += wt[i];
        if (x[i] < lo || x[i] > hi) outside += wt[i];
    }
    result = PyFloat_FromDouble(n ? outside / total : 0.0);
done:
    PyBuffer_Release(&v); PyBuffer_Release(&w);
    return result;
}

/* scipy.special.rel_entr: x ln(x / y); 0 where x = 0 and y >= 0; +inf elsewhere (a negative share); NaN stays NaN. */
static double rel_entr(double x, double y) {
    if (x != x || y != y) return x + y;
    if (x > 0.0 && y > 0.0) return x * log(x / y);
    return x == 0.0 && y >= 0.0 ? 0.0 : HUGE_VAL;
}

/* share_distances(ref_shares, cur_shares, epsilon) -> (psi, js, hellinger), as stats.psi, stats.js_distance (base 2)
 * and stats.hellinger compute them; sequential sums where numpy's are pairwise (a few ulps apart). */
static PyObject *share_distances(PyObject *self, PyObject *args) {
    PyObject *orr, *occ;
    double eps;
    if (!PyArg_ParseTuple(args, "OOd", &orr, &occ, &eps)) return NULL;
    Py_buffer rb, cb;
    if (get_doubles(orr, &rb, "ref_shares") < 0) return NULL;
    if (get_doubles(occ, &cb, "cur_shares") < 0) { PyBuffer_Release(&rb); return NULL; }
    PyObject *result = NULL;
    Py_ssize_t n = count_of(&rb);
    const double *r = rb.buf, *c = cb.buf;
    if (count_of(&cb) != n) {
        PyErr_SetString(PyExc_ValueError, "two share arrays of one length");
        goto done;
    }
    double psi = 0.0, sum_r = 0.0, sum_c = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double rr = r[i] > eps ? r[i] : eps, cc = c[i] > eps ? c[i] : eps; /* np.maximum: NaN stays NaN */
        if (r[i] != r[i]) rr = r[i];
        if (c[i] != c[i]) cc = c[i];
        psi += (cc - rr) * log(cc / rr);
        sum_r += r[i];
        sum_c += c[i];
    }
    double kl = 0.0, bc = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double rn = r[i] / sum_r, cn = c[i] / sum_c, mid = (rn + cn) / 2;
        kl += rel_entr(rn, mid) + rel_entr(cn, mid);
        bc += sqrt(rn * cn);
    }
    double js = kl / log(2.0) / 2;
    double hel = 1.0 - bc;
    result = Py_BuildValue("(ddd)", psi, sqrt(js > 0.0 ? js : 0.0), sqrt(hel > 0.0 ? hel : 0.0));
done:
    PyBuffer_Release(&rb); PyBuffer_Release(&cb);
    return result;
}

/* One item of a buffer of counts as a double: unsigned or signed integers of 1 to 8 bytes, or float64. */
static int count_reader(const Py_buffer *view, char *kind) {
    const char *f = view->format;
    if (f != NULL && (*f == '<' || *f == '=' || *f == '@')) f++;
    if (f == NULL || f[0] == 0 || f[1] != 0 || view->ndim > 1) return -1;
    switch (f[0]) {
    case 'B': case 'H': case 'I': case 'L': case 'Q': *kind = 'u'; break;
    case 'b': case 'h': case 'i': case 'l': case 'q': *kind = 's'; break;
    case 'd': *kind = 'f'; break;
    default: return -1;
    }
    return 0;
}

static double count_at(const Py_buffer *view, char kind, Py_ssize_t i) {
    const char *p = (const char *)view->buf + i * view->itemsize;
    if (kind == 'f') { double d; memcpy(&d, p, 8); return d; }
    unsigned long long u = 0;
    long long s = 0;
    switch (view->itemsize) {
    case 1: u = *(const uint8_t *)p; s = *(const int8_t *)p; break;
    case 2: { uint16_t a; memcpy(&a, p, 2); u = a; s = (int16_t)a; break; }
    case 4: { uint32_t a; memcpy(&a, p, 4); u = a; s = (int32_t)a; break; }
    default: { uint64_t a; memcpy(&a, p, 8); u = a; s = (int64_t)a; break; }
    }
    return kind == 'u' ? (double)u : (double)s;
}

/* binned_ks(ref_counts, cur_counts) -> the largest |F_ref - F_cur| at the bins' upper edges, as stats.binned_ks:
 * running sums (exact in float64 below 2^53) over each total. */
static PyObject *binned_ks(PyObject *self, PyObject *args) {
    PyObject *orr, *occ;
    if (!PyArg_ParseTuple(args, "OO", &orr, &occ)) return NULL;
    Py_buffer rb, cb;
    if (PyObject_GetBuffer(orr, &rb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(occ, &cb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) { PyBuffer_Release(&rb); return NULL; }
    PyObject *result = NULL;
    char rk, ck;
    if (count_reader(&rb, &rk) < 0 || count_reader(&cb, &ck) < 0) {
        PyErr_SetString(PyExc_TypeError, "counts: a contiguous array of integers or float64");
        goto done;
    }
    Py_ssize_t n = rb.len / rb.itemsize;
    if (cb.len / cb.itemsize != n) {
        PyErr_SetString(PyExc_ValueError, "two count arrays of one length");
        goto done;
    }
    double total_r = 0.0, total_c = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        total_r += count_at(&rb, rk, i);
        total_c += count_at(&cb, ck, i);
    }
    double cum_r = 0.0, cum_c = 0.0, d = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        cum_r += count_at(&rb, rk, i);
        cum_c += count_at(&cb, ck, i);
        double gap = fabs(cum_r / total_r - cum_c / total_c);
        if (gap > d || gap != gap) d = gap; /* np.max: a NaN (a total of 0) is the maximum */
        if (d != d) break;
    }
    result = PyFloat_FromDouble(d);
done:
    PyBuffer_Release(&rb); PyBuffer_Release(&cb);
    return result;
}

static PyMethodDef methods[] = {
    {"ks_and_wasserstein", ks_and_wasserstein, METH_VARARGS,
     "(ks, wasserstein) of two weighted samples sorted by value (float64 buffers)."},
    {"binned_shares", binned_shares, METH_VARARGS,
     "binned_shares(values, weights, edges, out): a sorted weighted sample's shares in the bins edges make."},
    {"weighted_quantiles", weighted_quantiles, METH_VARARGS,
     "weighted_quantiles(values, weights, *q): a sorted weighted sample's exclusive quantiles."},
    {"outside_share", outside_share, METH_VARARGS,
     "outside_share(values, weights, lo, hi): the share of the weight outside [lo, hi]."},
    {"share_distances", share_distances, METH_VARARGS,
     "share_distances(ref_shares, cur_shares, epsilon) -> (psi, js, hellinger)."},
    {"binned_ks", binned_ks, METH_VARARGS, "binned_ks(ref_counts, cur_counts): KS statistic of binned counts."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ecdf", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__ecdf(void) { return PyModule_Create(&module); }
