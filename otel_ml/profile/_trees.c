/* A tree ensemble's sum over trees for each row (otel_ml/profile/loss_model.py, LossModel.predict): the same
 * walk as its numpy fallback, one row and one tree at a time, which visits only the nodes on each path (the
 * numpy walk moves every (row, tree) pair one level per step, to the deepest leaf).
 *
 * predict(x, feature, threshold, flags, left, right, value, out): x is rows x inputs (float64, C order); the node
 * arrays are trees x nodes (feature, left, right int32; threshold, value float64; flags uint8: 1 missing goes
 * left, 2 zero is missing, 4 missing reads as zero, 8 leaf); out (float64, rows) receives the sums. Inputs are
 * checked by the caller (LossModel.from_dict bounds every index); shapes are checked here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#define MISSING_LEFT 1
#define ZERO_MISSING 2
#define NAN_AS_ZERO 4
#define LEAF 8

static PyObject *predict(PyObject *self, PyObject *args) {
    Py_buffer x, feature, threshold, flags, left, right, value, out;
    Py_ssize_t rows, inputs, trees, nodes;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*w*nnnn", &x, &feature, &threshold, &flags, &left, &right, &value,
                          &out, &rows, &inputs, &trees, &nodes))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t cells = trees * nodes;
    if (x.len != rows * inputs * (Py_ssize_t)sizeof(double) || feature.len != cells * 4 || left.len != cells * 4 ||
        right.len != cells * 4 || threshold.len != cells * 8 || value.len != cells * 8 || flags.len != cells ||
        out.len != rows * (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "tree arrays of inconsistent sizes");
        goto done;
    }
    const double *xs = x.buf, *thr = threshold.buf, *val = value.buf;
    const int32_t *feat = feature.buf, *lft = left.buf, *rgt = right.buf;
    const uint8_t *flg = flags.buf;
    double *sums = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < rows; r++) {
        const double *row = xs + r * inputs;
        double total = 0.0;
        for (Py_ssize_t t = 0; t < trees; t++) {
            Py_ssize_t base = t * nodes, at = 0;
            for (Py_ssize_t steps = 0; steps < nodes; steps++) { /* a path is never longer than the tree */
                uint8_t f = flg[base + at];
                if (f & LEAF) break;
                Py_ssize_t k = feat[base + at];
                double v = (k >= 0 && k < inputs) ? row[k] : NAN;
                int nan = isnan(v);
                if (nan && (f & NAN_AS_ZERO)) { v = 0.0; nan = 0; }
                int missing = (f & ZERO_MISSING) ? (nan || fabs(v) <= 1e-35) : nan;
                int go_left = missing ? (f & MISSING_LEFT) != 0 : v <= thr[base + at];
                Py_ssize_t next = go_left ? lft[base + at] : rgt[base + at];
                if (next < 0 || next >= nodes) break;
                at = next;
            }
            total += val[base + at];
        }
        sums[r] = total;
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&x); PyBuffer_Release(&feature); PyBuffer_Release(&threshold); PyBuffer_Release(&flags);
    PyBuffer_Release(&left); PyBuffer_Release(&right); PyBuffer_Release(&value); PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"predict", predict, METH_VARARGS, "Sum of a tree ensemble's leaf values for each row."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_trees", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__trees(void) { return PyModule_Create(&module); }
