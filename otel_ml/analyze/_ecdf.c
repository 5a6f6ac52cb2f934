/* The KS statistic and the Wasserstein-1 distance of two weighted samples, each sorted by value
 * (otel_ml/analyze/stats.py, ks_and_wasserstein): one merge of the two sorted runs, reading |F_ref - F_cur| after
 * each distinct value, as the numpy fallback does with a sort, two running sums and a dozen temporary arrays. Each
 * sample's running sum adds its weights in the same order as numpy's cumsum, so the CDFs and the KS statistic are
 * the fallback's to the bit; the Wasserstein sum is sequential where numpy's is pairwise (a few ulps apart).
 *
 * ks_and_wasserstein(ref_values, ref_weights, cur_values, cur_weights) -> (ks, wasserstein): float64 buffers,
 * values ascending (ValueError otherwise, or when a sample is empty or weighs nothing).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

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

static PyMethodDef methods[] = {
    {"ks_and_wasserstein", ks_and_wasserstein, METH_VARARGS,
     "(ks, wasserstein) of two weighted samples sorted by value (float64 buffers)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ecdf", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__ecdf(void) { return PyModule_Create(&module); }
