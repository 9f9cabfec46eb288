/* The per-tick feature update, compiled: streaming.py's StreamingFeatures.update calls it.
 *
 * It is the arithmetic of spec.py, operation for operation in the order the vectorised
 * batch path (batch.py) uses, in IEEE doubles as Python floats are, built with
 * -ffp-contract=off and without -ffast-math so the compiler neither fuses a multiply and
 * an add nor reorders a sum: the rows equal batch_features' to the last bit (tested tick
 * by tick in tests/test_features.py and tests/test_properties.py).
 *
 * State of one instrument (InstrumentState in streaming.py), newest value first:
 *   hist:   float64 (N_HIST, CAP); row H_MID holds up to CAP mids, the others MAX_LOOKBACK values
 *   stamps: int64 (CAP,) timestamps, MAX_LOOKBACK used
 *   count:  ticks seen before this one
 * step() shifts every history by one, writes the tick's values at index 0 and writes its
 * feature vector (FEATURE_NAMES order). Two entry points: update() for one tick given as
 * Python values (the streaming path), update_rows() for one instrument's rows of a frame of
 * numpy columns (the vectorised path: batch_features, big messages, TickColumns), so every
 * path computes features with this one function.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#define MAX_LOOKBACK 50
#define CAP (MAX_LOOKBACK + 1)
#define N_LOOKBACKS 4
#define N_BASE 14
#define N_WINDOW 13
#define N_FEATURES (N_BASE + N_LOOKBACKS * N_WINDOW)
#define NS_PER_S 1e9
#define MIN_SPAN_S 0.001
#define MAX_PER_DEPTH 1e9

enum { H_SPREAD, H_IMB, H_PV, H_VOLUME, H_MID, H_RET, H_DEPTH1, H_SV, H_TRADE, N_HIST };

static const long LOOKBACKS[N_LOOKBACKS] = {5, 10, 20, 50};

/* A price difference in ticks, snapped to 1e-6 tick (spec.py). */
static double snap(double ticks) { return floor(ticks * 1e6 + 0.5) / 1e6; }

/* flow / mean depth, 0 without depth, clamped to +-MAX_PER_DEPTH, as Python's
 * max(-M, min(M, x)) orders its comparisons. */
static double per_depth(double flow, double depth) {
    if (!(depth > 0)) return 0.0;
    double x = flow / depth;
    double r = (x < MAX_PER_DEPTH) ? x : MAX_PER_DEPTH;
    return (r > -MAX_PER_DEPTH) ? r : -MAX_PER_DEPTH;
}

/* The levels of one side as doubles; NULL (with an exception set) when not a sequence of numbers. */
static int side_values(PyObject *seq, const char *what, double *out, Py_ssize_t *n_out) {
    PyObject *fast = PySequence_Fast(seq, what);
    if (fast == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n < 1 || n > 64) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "%s: 1 to 64 levels expected, got %zd", what, n);
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        double v = PyFloat_AsDouble(items[i]);
        if (v == -1.0 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        out[i] = v;
    }
    Py_DECREF(fast);
    *n_out = n;
    return 0;
}

static int writable(PyObject *obj, Py_buffer *view, Py_ssize_t bytes, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len != bytes) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes expected, got %zd", what, bytes, view->len);
        return -1;
    }
    return 0;
}

typedef struct {
    const double *bid_price, *bid_size, *ask_price, *ask_size;
    Py_ssize_t n_bid, n_ask; /* levels present on each side (>= 1) */
    double last_price, size, session, since_open, to_close;
    long aggressor;
    long long ts;
} TickIn;

/* One tick of one instrument: the state moves on by one tick, out gets N_FEATURES values. */
static void step(double (*hist)[CAP], long long *stamps, long long count, double T, const TickIn *t, double *out) {
    const double *bid_size = t->bid_size, *ask_size = t->ask_size;
    Py_ssize_t nbs = t->n_bid, nas = t->n_ask;
    double last_price = t->last_price, size = t->size;
    long long ts = t->ts;
    double b1 = t->bid_price[0], a1 = t->ask_price[0], bs1 = bid_size[0], as1 = ask_size[0];
    double mid = (a1 + b1) * 0.5;
    double spread_ticks = snap((a1 - b1) / T);
    double spread = spread_ticks * T;
    double d1 = bs1 + as1;
    double imb1 = d1 > 0 ? (bs1 - as1) / d1 : 0.0;
    /* imbalance over the first 5 and 10 levels, summed level by level */
    double sb = 0.0, sa = 0.0;
    for (Py_ssize_t l = 0; l < (nbs < 5 ? nbs : 5); l++) sb += bid_size[l];
    for (Py_ssize_t l = 0; l < (nas < 5 ? nas : 5); l++) sa += ask_size[l];
    double d5 = sb + sa;
    double imb5 = d5 > 0 ? (sb - sa) / d5 : 0.0;
    for (Py_ssize_t l = 5; l < (nbs < 10 ? nbs : 10); l++) sb += bid_size[l];
    for (Py_ssize_t l = 5; l < (nas < 10 ? nas : 10); l++) sa += ask_size[l];
    double d10 = sb + sa;
    double imb10 = d10 > 0 ? (sb - sa) / d10 : 0.0;
    double micro = d1 > 0 ? (b1 * as1 + a1 * bs1) / d1 : mid;
    double last = last_price > 0 ? last_price : mid;
    double sv = 0.0;
    if (size > 0) {
        double side = t->aggressor ? (double)t->aggressor
                      : (last >= a1   ? 1.0
                         : last <= b1 ? -1.0
                         : last > mid ? 1.0
                         : last < mid ? -1.0
                                      : 0.0);
        sv = side * size;
    }
    double interval = count ? (double)(ts - stamps[0]) / NS_PER_S : 0.0;
    double ret1 = count ? mid / hist[H_MID][0] - 1.0 : 0.0;

    /* this tick enters the state, newest first */
    for (int h = 0; h < N_HIST; h++) memmove(&hist[h][1], &hist[h][0], sizeof(double) * (CAP - 1));
    memmove(&stamps[1], &stamps[0], sizeof(long long) * (CAP - 1));
    hist[H_SPREAD][0] = spread_ticks;
    hist[H_IMB][0] = imb1;
    hist[H_PV][0] = last * size;
    hist[H_VOLUME][0] = size;
    hist[H_MID][0] = mid;
    hist[H_RET][0] = ret1;
    hist[H_DEPTH1][0] = d1 * 0.5;
    hist[H_SV][0] = sv;
    hist[H_TRADE][0] = size > 0 ? 1.0 : 0.0;
    stamps[0] = ts;
    long long seen = count + 1;
    long n = seen < MAX_LOOKBACK ? (long)seen : MAX_LOOKBACK; /* values in each window history */
    long n_mid = seen < CAP ? (long)seen : CAP;

    double since_trade = (double)(ts - stamps[n - 1]) / NS_PER_S;
    for (long i = 0; i < n; i++) {
        if (hist[H_TRADE][i] != 0.0) {
            since_trade = (double)(ts - stamps[i]) / NS_PER_S;
            break;
        }
    }

    double *o = out;
    *o++ = spread;
    *o++ = spread / mid;
    *o++ = spread_ticks;
    *o++ = imb1;
    *o++ = imb5;
    *o++ = imb10;
    *o++ = micro;
    *o++ = (micro - mid) / T;
    *o++ = (micro - last) / T;
    *o++ = t->session;
    *o++ = t->since_open;
    *o++ = t->to_close;
    *o++ = interval;
    *o++ = since_trade;

    /* One pass from the newest tick to the oldest, recording each lookback when its window
     * is complete (or the history runs out); variances of values shifted by the newest one. */
    double s_sum = 0.0, s_sq = 0.0, i_sum = 0.0, pv_sum = 0.0, v_sum = 0.0, r_sum = 0.0, r_sq = 0.0;
    double d1_sum = 0.0, sv_sum = 0.0, t_sum = 0.0;
    double s_ref = spread_ticks, r_ref = ret1;
    double s_min = spread_ticks, s_max = spread_ticks, m_min = mid, m_max = mid;
    int li = 0;
    for (long k = 1; k <= n && li < N_LOOKBACKS; k++) {
        long i = k - 1;
        double st = hist[H_SPREAD][i];
        s_sum += st;
        double ds = st - s_ref;
        s_sq += ds * ds;
        if (st < s_min)
            s_min = st;
        else if (st > s_max)
            s_max = st;
        i_sum += hist[H_IMB][i];
        pv_sum += hist[H_PV][i];
        v_sum += hist[H_VOLUME][i];
        double m = hist[H_MID][i];
        if (m < m_min)
            m_min = m;
        else if (m > m_max)
            m_max = m;
        double dr = hist[H_RET][i] - r_ref;
        r_sum += dr;
        r_sq += dr * dr;
        d1_sum += hist[H_DEPTH1][i];
        sv_sum += hist[H_SV][i];
        t_sum += hist[H_TRADE][i];
        while (li < N_LOOKBACKS && (k == LOOKBACKS[li] || k == n)) {
            long target = LOOKBACKS[li];
            double c = (double)k;
            double s_mean = s_sum / c;
            double s_shift = s_mean - s_ref;
            double s_var = s_sq / c - s_shift * s_shift;
            double r_shift = r_sum / c;
            double r_var = r_sq / c - r_shift * r_shift;
            double vwap = v_sum > 0 ? pv_sum / v_sum : mid;
            double back = hist[H_MID][target < n_mid ? target : n_mid - 1];
            double m_range = snap((m_max - m_min) / T);
            double span = (double)(ts - stamps[k - 1]) / NS_PER_S;
            *o++ = s_mean;
            *o++ = s_var > 0 ? sqrt(s_var) : 0.0;
            *o++ = s_max > s_min ? (spread_ticks - s_min) / (s_max - s_min) : 0.5;
            *o++ = imb1 - i_sum / c;
            *o++ = vwap;
            *o++ = (last - vwap) / T;
            *o++ = mid / back - 1.0;
            *o++ = r_var > 0 ? sqrt(r_var) : 0.0;
            *o++ = m_range > 0 ? snap((mid - m_min) / T) / m_range : 0.5;
            *o++ = v_sum > 0 ? sv_sum / v_sum : 0.0;
            *o++ = per_depth(sv_sum, d1_sum / c);
            *o++ = k > 1 ? t_sum / (span > MIN_SPAN_S ? span : MIN_SPAN_S) : 0.0;
            *o++ = k > 1 ? span / (double)(k - 1) : 0.0;
            li++;
        }
    }
}

/* update(hist, stamps, count, tick_size, bid_price, bid_size, ask_price, ask_size,
 *        last_price, last_size, aggressor, timestamp_ns, session, since_open, to_close) -> list */
static PyObject *update(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 15) {
        PyErr_Format(PyExc_TypeError, "update() takes 15 arguments, got %zd", nargs);
        return NULL;
    }
    TickIn t;
    long long count = PyLong_AsLongLong(args[2]);
    double T = PyFloat_AsDouble(args[3]);
    t.last_price = PyFloat_AsDouble(args[8]);
    t.size = PyFloat_AsDouble(args[9]);
    t.aggressor = PyLong_AsLong(args[10]);
    t.ts = PyLong_AsLongLong(args[11]);
    t.session = PyFloat_AsDouble(args[12]);
    t.since_open = PyFloat_AsDouble(args[13]);
    t.to_close = PyFloat_AsDouble(args[14]);
    if (PyErr_Occurred()) return NULL;

    double bid_price[64], bid_size[64], ask_price[64], ask_size[64];
    Py_ssize_t nbp, nap;
    if (side_values(args[4], "bid_price", bid_price, &nbp) < 0 || side_values(args[5], "bid_size", bid_size, &t.n_bid) < 0 ||
        side_values(args[6], "ask_price", ask_price, &nap) < 0 || side_values(args[7], "ask_size", ask_size, &t.n_ask) < 0)
        return NULL;
    t.bid_price = bid_price;
    t.bid_size = bid_size;
    t.ask_price = ask_price;
    t.ask_size = ask_size;

    Py_buffer hbuf, sbuf;
    if (writable(args[0], &hbuf, (Py_ssize_t)sizeof(double) * N_HIST * CAP, "hist") < 0) return NULL;
    if (writable(args[1], &sbuf, (Py_ssize_t)sizeof(long long) * CAP, "stamps") < 0) {
        PyBuffer_Release(&hbuf);
        return NULL;
    }
    double out[N_FEATURES];
    step((double(*)[CAP])hbuf.buf, (long long *)sbuf.buf, count, T, &t, out);
    PyBuffer_Release(&hbuf);
    PyBuffer_Release(&sbuf);

    PyObject *row = PyList_New(N_FEATURES);
    if (row == NULL) return NULL;
    for (int j = 0; j < N_FEATURES; j++) {
        PyObject *v = PyFloat_FromDouble(out[j]);
        if (v == NULL) {
            Py_DECREF(row);
            return NULL;
        }
        PyList_SET_ITEM(row, j, v);
    }
    return row;
}

/* Levels present in one row of a NaN-padded book: those before the first level whose price and
 * size are both NaN (TickFrame's layout). */
static Py_ssize_t present(const double *price, const double *size, Py_ssize_t levels) {
    Py_ssize_t j = 0;
    while (j < levels && !(isnan(price[j]) && isnan(size[j]))) j++;
    return j;
}

static int readable(PyObject *obj, Py_buffer *view, Py_ssize_t bytes, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len != bytes) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes expected, got %zd", what, bytes, view->len);
        return -1;
    }
    return 0;
}

/* update_rows(hist, stamps, count, tick_size, levels, bid_price, bid_size, ask_price, ask_size,
 *             last_price, last_size, aggressor, timestamp_ns, session, since_open, to_close, rows, out)
 * Columns of n ticks (books (n, levels) float64 NaN-padded; aggressor, timestamp_ns int64; the
 * rest float64), `rows` (int64) the rows of one instrument in time order, `out` (n, N_FEATURES)
 * float64: out[rows[j]] gets row j's features, as update() would give them one by one. */
static PyObject *update_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 18) {
        PyErr_Format(PyExc_TypeError, "update_rows() takes 18 arguments, got %zd", nargs);
        return NULL;
    }
    long long count = PyLong_AsLongLong(args[2]);
    double T = PyFloat_AsDouble(args[3]);
    Py_ssize_t levels = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred()) return NULL;
    if (levels < 1 || levels > 64) {
        PyErr_Format(PyExc_ValueError, "levels: 1 to 64 expected, got %zd", levels);
        return NULL;
    }
    enum { B_HIST, B_STAMPS, B_BP, B_BS, B_AP, B_AS, B_LAST, B_SIZE, B_AGG, B_TS, B_SES, B_OPEN, B_CLOSE, B_ROWS, B_OUT, N_BUF };
    static const int arg_of[N_BUF] = {0, 1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
    static const char *names[N_BUF] = {"hist", "stamps", "bid_price", "bid_size", "ask_price", "ask_size", "last_price",
                                       "last_size", "aggressor", "timestamp_ns", "session", "since_open", "to_close",
                                       "rows", "out"};
    Py_buffer buf[N_BUF];
    int got = 0;
    PyObject *result = NULL;
    Py_buffer probe;
    if (PyObject_GetBuffer(args[9], &probe, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    Py_ssize_t n = probe.len / (Py_ssize_t)sizeof(double);
    PyBuffer_Release(&probe);
    Py_buffer rows_probe;
    if (PyObject_GetBuffer(args[16], &rows_probe, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    Py_ssize_t m = rows_probe.len / (Py_ssize_t)sizeof(long long);
    PyBuffer_Release(&rows_probe);
    Py_ssize_t bytes[N_BUF] = {
        (Py_ssize_t)sizeof(double) * N_HIST * CAP, (Py_ssize_t)sizeof(long long) * CAP,
        8 * n * levels, 8 * n * levels, 8 * n * levels, 8 * n * levels,
        8 * n, 8 * n, 8 * n, 8 * n, 8 * n, 8 * n, 8 * n, 8 * m, 8 * n * N_FEATURES,
    };
    for (; got < N_BUF; got++) {
        int write = got == B_HIST || got == B_STAMPS || got == B_OUT;
        int ok = write ? writable(args[arg_of[got]], &buf[got], bytes[got], names[got])
                       : readable(args[arg_of[got]], &buf[got], bytes[got], names[got]);
        if (ok < 0) goto done;
    }
    {
        double(*hist)[CAP] = (double(*)[CAP])buf[B_HIST].buf;
        long long *stamps = (long long *)buf[B_STAMPS].buf;
        const double *bp = buf[B_BP].buf, *bs = buf[B_BS].buf, *ap = buf[B_AP].buf, *as = buf[B_AS].buf;
        const double *lastp = buf[B_LAST].buf, *size = buf[B_SIZE].buf, *ses = buf[B_SES].buf;
        const double *open = buf[B_OPEN].buf, *close = buf[B_CLOSE].buf;
        const long long *agg = buf[B_AGG].buf, *tss = buf[B_TS].buf, *rows = buf[B_ROWS].buf;
        double *out = buf[B_OUT].buf;
        for (Py_ssize_t j = 0; j < m; j++) {
            long long r = rows[j];
            if (r < 0 || r >= n) {
                PyErr_Format(PyExc_IndexError, "rows[%zd]: %lld is not a row of %zd", j, r, n);
                goto done;
            }
            TickIn t;
            t.bid_price = bp + r * levels;
            t.bid_size = bs + r * levels;
            t.ask_price = ap + r * levels;
            t.ask_size = as + r * levels;
            t.n_bid = present(t.bid_price, t.bid_size, levels);
            t.n_ask = present(t.ask_price, t.ask_size, levels);
            if (t.n_bid < 1 || t.n_ask < 1) {
                PyErr_Format(PyExc_ValueError, "row %lld: a side without levels", r);
                goto done;
            }
            t.last_price = lastp[r];
            t.size = size[r];
            t.aggressor = (long)agg[r];
            t.ts = tss[r];
            t.session = ses[r];
            t.since_open = open[r];
            t.to_close = close[r];
            step(hist, stamps, count + j, T, &t, out + r * N_FEATURES);
        }
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    for (int k = 0; k < got; k++) PyBuffer_Release(&buf[k]);
    return result;
}

static PyMethodDef methods[] = {
    {"update", (PyCFunction)(void (*)(void))update, METH_FASTCALL,
     "update(hist, stamps, count, tick_size, bid_price, bid_size, ask_price, ask_size, last_price, last_size, "
     "aggressor, timestamp_ns, session, since_open, to_close) -> the feature row (list of floats)"},
    {"update_rows", (PyCFunction)(void (*)(void))update_rows, METH_FASTCALL,
     "update_rows(hist, stamps, count, tick_size, levels, bid_price, bid_size, ask_price, ask_size, last_price, "
     "last_size, aggressor, timestamp_ns, session, since_open, to_close, rows, out): one instrument's rows of a frame"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernel", "The compiled per-tick feature update (see streaming.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__kernel(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    /* the constants spec.py defines too: streaming.py checks they agree at import */
    PyObject *lookbacks = Py_BuildValue("(llll)", LOOKBACKS[0], LOOKBACKS[1], LOOKBACKS[2], LOOKBACKS[3]);
    if (lookbacks == NULL || PyModule_AddObject(m, "LOOKBACKS", lookbacks) < 0) {
        Py_XDECREF(lookbacks);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "N_HIST", N_HIST) < 0 || PyModule_AddIntConstant(m, "CAP", CAP) < 0 ||
        PyModule_AddIntConstant(m, "N_FEATURES", N_FEATURES) < 0 ||
        PyModule_AddObject(m, "MAX_PER_DEPTH", PyFloat_FromDouble(MAX_PER_DEPTH)) < 0 ||
        PyModule_AddObject(m, "MIN_SPAN_S", PyFloat_FromDouble(MIN_SPAN_S)) < 0 ||
        PyModule_AddObject(m, "NS_PER_S", PyFloat_FromDouble(NS_PER_S)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
