/* Temperature scaling of many rows of class probabilities: softmax(log(max(p, eps)) / T) per row.
 *
 * The same operations, in the same order, as calibration._temperature_row does in Python floats
 * for one row (libm's log and exp, the row's sum left to right), so a row gets the same bits on
 * either path; here without a Python call per value (about 1 us a row in Python, 0.05 in C).
 * Built by setup.py with -ffp-contract=off and no fast-math, like the feature kernel. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

/* apply(probs, out, classes, temperature, eps): probs and out C-contiguous float64 buffers of
 * n * classes values; out gets the scaled rows. */
static PyObject *apply(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "apply() takes 5 arguments, got %zd", nargs);
        return NULL;
    }
    Py_ssize_t classes = PyLong_AsSsize_t(args[2]);
    double temperature = PyFloat_AsDouble(args[3]);
    double eps = PyFloat_AsDouble(args[4]);
    if (PyErr_Occurred()) return NULL;
    if (classes < 1 || classes > 64) {
        PyErr_Format(PyExc_ValueError, "classes: 1 to 64 expected, got %zd", classes);
        return NULL;
    }
    Py_buffer in, out;
    if (PyObject_GetBuffer(args[0], &in, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&in);
        return NULL;
    }
    Py_ssize_t row_bytes = classes * (Py_ssize_t)sizeof(double);
    if (in.len != out.len || in.len % row_bytes != 0) {
        PyErr_Format(PyExc_ValueError, "probs and out: the same whole number of rows expected, got %zd and %zd bytes",
                     in.len, out.len);
        PyBuffer_Release(&in);
        PyBuffer_Release(&out);
        return NULL;
    }
    const double *p = (const double *)in.buf;
    double *e = (double *)out.buf;
    Py_ssize_t n = in.len / row_bytes;
    for (Py_ssize_t i = 0; i < n; i++, p += classes, e += classes) {
        double top = 0.0;
        for (Py_ssize_t k = 0; k < classes; k++) {
            double v = p[k] < eps ? eps : p[k]; /* as the Python row: NaN stays NaN */
            e[k] = log(v) / temperature;
            if (k == 0 || e[k] > top) top = e[k];
        }
        for (Py_ssize_t k = 0; k < classes; k++) e[k] = exp(e[k] - top);
        double total = e[0];
        for (Py_ssize_t k = 1; k < classes; k++) total += e[k];
        for (Py_ssize_t k = 0; k < classes; k++) e[k] /= total;
    }
    PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"apply", (PyCFunction)(void (*)(void))apply, METH_FASTCALL,
     "apply(probs, out, classes, temperature, eps): temperature scaling of rows of probabilities into out"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_temperature", "Temperature scaling of many rows (see calibration.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__temperature(void) { return PyModule_Create(&module); }
