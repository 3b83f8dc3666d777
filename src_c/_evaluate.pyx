# The loss evaluator: the total loss (data loss + penalties, as a plan's step reports it)
# of one net, loss, regularizer and data set at many parameter vectors, and the full
# numerical gradient of that loss, in parallel without the GIL.
#
# fastnn.evaluate builds it from the op specs fastnn.plan builds for a compiled plan
# (fastnn.plan.op_specs and friends), so both run the same ops through the same nogil
# cores (the *_core.pxd files).  Every evaluation runs on one thread (cores called with
# n_threads = 1) in that thread's own workspace: its activation buffers, batch-norm
# statistics, loss buffers, penalty scratch and, for the numerical gradient, its own copy
# of the parameters.  The shared parameters are only read, so a result does not depend on
# which thread computed it, nor on how many there are.
#
# Semantics: training-mode forward for batch norm (batch statistics; the running
# statistics are written only into per-thread scratch, never into the layer's), dropout
# switched off (the layer's evaluation-mode function: identity for inverted dropout,
# times p for vanilla), as the notes ask of gradient checks.
#
# The numerical gradient perturbs element i of the thread's copy, and re-runs the net
# from the op that owns element i on, reading that op's input from the thread's cached
# unperturbed forward pass (the ops before it are unchanged, so their outputs would be
# the same bits; an affine op with at most 8 outputs re-runs only the perturbed column,
# see COLS_ONE); the penalty of the perturbed array is re-summed with only the touched
# reduction block recomputed (the other blocks' sums are cached, and added in the same
# order as penalty_core does).  So each difference uses exactly the numbers a full
# re-run of the forward pass at the perturbed parameters would give.
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.string cimport memcpy
from cpython.mem cimport PyMem_Free, PyMem_Malloc
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
import numpy as np

from _common cimport (FNN_SMALL_TINY_K, FNN_SMALL_TINY_N, GEMM_SPLIT_MIN_WORK,
                      bias_act_rows, dgemm, fnn_blas_serial_begin, fnn_blas_serial_end,
                      sgemm, small_gemm, small_tiny_k_column, small_tiny_n_lanes, transpose)
from _loops cimport fnn_small_gemm_case
from _activation_core cimport act_forward_core, prelu_forward_core
from _affine_core cimport affine_forward_core
from _batchnorm_core cimport batchnorm_forward_core
from _loss_core cimport (elementwise_loss_core, hs_forward_core, row_loss_mean,
                         softmax_loss_core, svm_core)
from _maxout_core cimport maxout_forward_core
from _regularization_core cimport PEN_BLOCK, PEN_ELASTIC, PEN_L1, PEN_L2, _pen_block

cnp.import_array()

from _plan_codes cimport (LOSS_ELEMENTWISE, LOSS_HIERARCHICAL, LOSS_SOFTMAX, LOSS_SVM,
                         OP_ACT, OP_AFFINE, OP_BATCHNORM, OP_DROPOUT, OP_MAXOUT, OP_PRELU,
                         OP_SCALE)
from _common cimport ACT_LEAKY_RELU, ACT_RELU
from _loss_core cimport EW_ATTR_HINGE, EW_L1

OP_KINDS = {"affine": OP_AFFINE, "maxout": OP_MAXOUT, "act": OP_ACT, "prelu": OP_PRELU,
            "dropout": OP_DROPOUT, "batchnorm": OP_BATCHNORM, "scale": OP_SCALE}
LOSS_KINDS = {"softmax": LOSS_SOFTMAX, "svm": LOSS_SVM, "elementwise": LOSS_ELEMENTWISE,
              "hierarchical": LOSS_HIERARCHICAL}
PEN_KINDS = {"l2": PEN_L2, "l1": PEN_L1, "elastic": PEN_ELASTIC}


cdef struct EOp:
    int kind
    int act
    double alpha
    Py_ssize_t n_in, n_out, k
    Py_ssize_t p0, p1
    double scale            # SCALE: p
    double momentum, eps    # BATCHNORM
    int cols                # AFFINE: how a perturbation re-runs it (COLS_*)


# An AFFINE op whose product runs in the small-GEMM loops' tiny-n case (at most 8 outputs,
# fastnn_gemm_small.inc) computes each output element as a dot product of its own, in an
# order that depends on the inner length only: so a perturbation of W[:, j] or b[j] re-runs
# column j alone (the same loops on one column, the same epilogue) and gets the very bits
# of the whole product.  (The tiny-k case could re-run a chunk-aligned range of columns
# too, but measured slower than the row-blocked whole op; BLAS products re-run whole.)
# An AFFINE op whose product runs in the tiny-k loops (at most 8 inputs, such as the
# spiral's first layer) and whose output feeds a tiny-n op (COLS_ONE on its own) re-runs
# one column too, in the form tiny k gives it (fastnn_gemm_small.inc's
# fnn_small_tiny_k_column, from its input transposed), and then only what that column
# changes in the next op's product: each of its dots is a sum of lane sums (tiny n's
# form), and a changed input changes one lane sum per dot (or its scalar tail).  The
# unperturbed pass keeps the op's input transposed, its output (the next op's input)
# transposed, the next op's weights transposed and every lane sum (Work.lane_*); a
# perturbation recomputes one lane sum per dot across rows (fnn_small_tiny_n_lanes) and
# adds the cached others in tiny n's order.
# The op after a COLS_LANES op (COLS_AFTER_LANES) uses the same cache: its weight W[u, j]
# enters output j's dots in one lane sum (or the tail), so only that lane sum of output j
# is recomputed; its bias b[j] recomputes none (the cached lane sums added again).
cdef enum:
    COLS_NONE = 0
    COLS_ONE = 1
    COLS_LANES = 2
    COLS_AFTER_LANES = 3


cdef struct Pen:
    int kind
    double a, b
    Py_ssize_t off, n
    int group_start
    Py_ssize_t blocks       # first of its block sums in a thread's cache
    Py_ssize_t nb


cdef struct Work:
    char* P                 # the thread's parameters (numerical gradient)
    char** out              # per op: this evaluation's output
    char** cout             # per op: the unperturbed pass's output (numerical gradient)
    char** z                # MAXOUT pre-activations, BATCHNORM xhat
    char** arg              # MAXOUT winners (int32)
    char** carg             # ... of the unperturbed pass
    char** stats            # BATCHNORM mean, inv_std, running mean, running var (4 n)
    char* d                 # loss gradient (B, K) (the cores write it)
    char* cd                # ... of the unperturbed pass
    char* row_loss
    char* hs_dz
    char* g                 # penalty gradient scratch (the widest penalized array)
    char* tmp               # the column of an AFFINE op re-run (B,), padded to lane_rows
                            # (padding rows are computed, never stored past B)
    char** lane_in          # per COLS_LANES op: its input transposed (n_in, lane_rows)
    char** lane_at          # ... its output transposed (n_out, lane_rows)
    char** lane_bt          # ... the next op's weights transposed (next n_out, n_out)
    char** lane_sums        # ... the next op's lane sums (next n_out, lanes, lane_rows)
    double* blocks          # unperturbed penalty block sums, 2 per block
    double* pen_vals        # unperturbed penalty of each entry


cdef class Evaluator:
    """Low-level compiled evaluator; build it with fastnn.evaluate.build_evaluator.

    dtype: float32/float64; ops, loss, penalties: the specs of fastnn.plan (checked
    there); X (N, D) of the dtype, y (N,) intp labels or (N, A) targets of the dtype;
    n_params: the width of a parameter vector; owner: (n_params,) int32, the op whose
    parameters each element is (n_ops where none); loss_params: a loss's own flat
    parameters (hierarchical softmax) or None, read, never changed."""
    cdef readonly object dtype
    cdef int t_num
    cdef readonly Py_ssize_t n_params, n_rows, n_features, n_outputs
    cdef EOp* ops
    cdef int n_ops
    cdef Pen* pens
    cdef int n_pens
    cdef Py_ssize_t n_blocks, pen_width
    cdef Work* work
    cdef int n_work
    cdef list _keep
    cdef list _work_keep
    cdef const int32_t* owner
    cdef int loss_kind, ew_kind, squared
    cdef double delta
    cdef Py_ssize_t y_width, d_width, hs_m, hs_p
    cdef const Py_ssize_t* hs_paths
    cdef const Py_ssize_t* hs_codes
    cdef const Py_ssize_t* hs_depths
    cdef const char* lp
    cdef const char* X
    cdef const char* Y
    cdef bint running
    cdef list _cols
    cdef Py_ssize_t lane_rows   # rows rounded up to whole vectors of either dtype (8)

    def __cinit__(self):
        self.ops = NULL
        self.pens = NULL
        self.work = NULL
        self.n_work = 0

    def __dealloc__(self):
        self._free_work()
        PyMem_Free(self.ops)
        PyMem_Free(self.pens)

    cdef void _free_work(self):
        cdef int t
        if self.work != NULL:
            for t in range(self.n_work):
                PyMem_Free(self.work[t].out)
                PyMem_Free(self.work[t].cout)
                PyMem_Free(self.work[t].z)
                PyMem_Free(self.work[t].arg)
                PyMem_Free(self.work[t].carg)
                PyMem_Free(self.work[t].stats)
                PyMem_Free(self.work[t].lane_in)
                PyMem_Free(self.work[t].lane_at)
                PyMem_Free(self.work[t].lane_bt)
                PyMem_Free(self.work[t].lane_sums)
            PyMem_Free(self.work)
        self.work = NULL
        self.n_work = 0

    def __init__(self, dtype, list ops, dict loss, list penalties, cnp.ndarray X not None,
                 cnp.ndarray y not None, Py_ssize_t n_params, cnp.ndarray owner not None,
                 cnp.ndarray loss_params=None):
        self.dtype = np.dtype(dtype)
        self.t_num = cnp.NPY_FLOAT32 if self.dtype == np.float32 else cnp.NPY_FLOAT64
        self._keep = [X, y, owner, loss_params]
        self._work_keep = []
        self.X = <const char*>cnp.PyArray_DATA(X)
        self.Y = <const char*>cnp.PyArray_DATA(y)
        self.n_rows = X.shape[0]
        self.n_features = X.shape[1]
        self.n_params = n_params
        self.owner = <const int32_t*>cnp.PyArray_DATA(owner)
        self.n_ops = len(ops)
        self.ops = <EOp*>PyMem_Malloc(max(self.n_ops, 1) * sizeof(EOp))
        if self.ops == NULL:
            raise MemoryError()
        cdef int i
        cdef EOp* op
        self._cols = []
        for i, spec in enumerate(ops):
            op = &self.ops[i]
            op.kind = spec["kind"]
            op.act = spec.get("act", 0)
            op.alpha = spec.get("alpha", 0.0)
            op.n_in = spec["n_in"]
            op.n_out = spec["n_out"]
            op.k = spec.get("k", 1)
            op.p0 = spec.get("p0", -1)
            op.p1 = spec.get("p1", -1)
            op.scale = spec.get("scale", 1.0)
            op.momentum = spec.get("momentum", 0.0)
            op.eps = spec.get("eps", 0.0)
            op.cols = COLS_NONE
            if op.kind == OP_AFFINE and X.shape[0] * op.n_out * op.n_in < GEMM_SPLIT_MIN_WORK:
                case = fnn_small_gemm_case(0, 0, X.shape[0], op.n_out, op.n_in)
                if case == FNN_SMALL_TINY_N:
                    op.cols = COLS_ONE
                elif case == FNN_SMALL_TINY_K:
                    op.cols = COLS_LANES     # kept below only if the next op is COLS_ONE
        for i in range(self.n_ops):
            if self.ops[i].cols == COLS_LANES and (i + 1 == self.n_ops
                                                   or self.ops[i + 1].cols != COLS_ONE):
                self.ops[i].cols = COLS_NONE
            if i > 0 and self.ops[i - 1].cols == COLS_LANES:
                self.ops[i].cols = COLS_AFTER_LANES
            self._cols.append(self.ops[i].cols)
        self.lane_rows = (X.shape[0] + 7) // 8 * 8
        self.n_outputs = self.ops[self.n_ops - 1].n_out if self.n_ops else self.n_features
        self.loss_kind = loss["kind"]
        self.ew_kind = loss.get("ew_kind", 0)
        self.delta = loss.get("delta", 1.0)
        self.squared = loss.get("squared", False)
        self.y_width = loss.get("y_width", 0)
        self.d_width = self.n_outputs
        self.hs_m = self.hs_p = 0
        self.lp = NULL
        if self.loss_kind == LOSS_HIERARCHICAL:
            self.hs_m = loss["n_nodes"]
            self.hs_p = loss["max_depth"]
            self._keep += [loss["paths"], loss["codes"], loss["depths"]]
            self.hs_paths = <const Py_ssize_t*>cnp.PyArray_DATA(loss["paths"])
            self.hs_codes = <const Py_ssize_t*>cnp.PyArray_DATA(loss["codes"])
            self.hs_depths = <const Py_ssize_t*>cnp.PyArray_DATA(loss["depths"])
            self.lp = <const char*>cnp.PyArray_DATA(loss_params)
        self.n_pens = len(penalties)
        self.pens = <Pen*>PyMem_Malloc(max(self.n_pens, 1) * sizeof(Pen))
        if self.pens == NULL:
            raise MemoryError()
        self.n_blocks = 0
        self.pen_width = 1
        for i, (kind, a, b, off, n, group_start) in enumerate(penalties):
            self.pens[i].kind = kind
            self.pens[i].a = a
            self.pens[i].b = b
            self.pens[i].off = off
            self.pens[i].n = n
            self.pens[i].group_start = group_start
            self.pens[i].nb = (n + PEN_BLOCK - 1) // PEN_BLOCK
            self.pens[i].blocks = self.n_blocks
            self.n_blocks += self.pens[i].nb
            self.pen_width = max(self.pen_width, n)

    cdef char* _new(self, list keep, shape, dtype=None) except NULL:
        a = np.zeros(shape, dtype=self.dtype if dtype is None else dtype)
        keep.append(a)
        return <char*>cnp.PyArray_DATA(a)

    cdef int _ensure_work(self, int nt) except -1:
        """Workspaces for nt threads (allocated once, grown when more are asked for)."""
        if nt <= self.n_work:
            return 0
        self._free_work()
        self._work_keep = []
        keep = self._work_keep
        self.work = <Work*>PyMem_Malloc(nt * sizeof(Work))
        if self.work == NULL:
            raise MemoryError()
        cdef int t, i
        cdef Py_ssize_t B = self.n_rows, no = max(self.n_ops, 1)
        cdef Work* w
        cdef EOp* op
        for t in range(nt):
            w = &self.work[t]
            w.out = <char**>PyMem_Malloc(no * sizeof(char*))
            w.cout = <char**>PyMem_Malloc(no * sizeof(char*))
            w.lane_in = <char**>PyMem_Malloc(no * sizeof(char*))
            w.lane_at = <char**>PyMem_Malloc(no * sizeof(char*))
            w.lane_bt = <char**>PyMem_Malloc(no * sizeof(char*))
            w.lane_sums = <char**>PyMem_Malloc(no * sizeof(char*))
            w.z = <char**>PyMem_Malloc(no * sizeof(char*))
            w.arg = <char**>PyMem_Malloc(no * sizeof(char*))
            w.carg = <char**>PyMem_Malloc(no * sizeof(char*))
            w.stats = <char**>PyMem_Malloc(no * sizeof(char*))
            self.n_work = t + 1
            if (w.out == NULL or w.cout == NULL or w.z == NULL or w.arg == NULL
                    or w.carg == NULL or w.stats == NULL or w.lane_at == NULL
                    or w.lane_in == NULL
                    or w.lane_bt == NULL or w.lane_sums == NULL):
                raise MemoryError()
            w.P = self._new(keep, (max(self.n_params, 1),))
            for i in range(self.n_ops):
                op = &self.ops[i]
                w.out[i] = self._new(keep, (B, op.n_out))
                w.cout[i] = self._new(keep, (B, op.n_out))
                w.z[i] = w.arg[i] = w.carg[i] = w.stats[i] = NULL
                w.lane_in[i] = w.lane_at[i] = w.lane_bt[i] = w.lane_sums[i] = NULL
                if self._cols[i] == COLS_LANES:     # even while use_columns(False)
                    w.lane_in[i] = self._new(keep, (op.n_in, self.lane_rows))
                    w.lane_at[i] = self._new(keep, (op.n_out, self.lane_rows))
                    w.lane_bt[i] = self._new(keep, (self.ops[i + 1].n_out, op.n_out))
                    w.lane_sums[i] = self._new(keep, (self.ops[i + 1].n_out, 8,
                                                      self.lane_rows))
                if op.kind == OP_MAXOUT:
                    w.z[i] = self._new(keep, (B, op.n_out * op.k))
                    w.arg[i] = self._new(keep, (B, op.n_out), np.int32)
                    w.carg[i] = self._new(keep, (B, op.n_out), np.int32)
                elif op.kind == OP_BATCHNORM:
                    w.z[i] = self._new(keep, (B, op.n_out))
                    w.stats[i] = self._new(keep, (4, op.n_out))
            w.d = self._new(keep, (B, self.d_width))
            w.cd = self._new(keep, (B, self.d_width))
            w.row_loss = self._new(keep, (B,))
            w.hs_dz = self._new(keep, (B, max(self.hs_p, 1)))
            w.g = self._new(keep, (self.pen_width,))
            w.tmp = self._new(keep, (self.lane_rows,))
            w.blocks = <double*>self._new(keep, (2 * max(self.n_blocks, 1),), np.float64)
            w.pen_vals = <double*>self._new(keep, (max(self.n_pens, 1),), np.float64)
        return 0

    cdef int _check_params(self, cnp.ndarray a, str name, int ndim) except -1:
        if cnp.PyArray_TYPE(a) != self.t_num:
            raise TypeError(f"{name} must be {self.dtype} (the net's dtype), got {a.dtype}")
        if cnp.PyArray_NDIM(a) != ndim or a.shape[ndim - 1] != self.n_params:
            raise ValueError(f"{name} must have {self.n_params} columns (the net's "
                             f"parameters), got shape {(<object>a).shape}")
        if not cnp.PyArray_IS_C_CONTIGUOUS(a):
            raise ValueError(f"{name} must be C-contiguous")
        return 0

    def losses(self, cnp.ndarray params not None, cnp.ndarray out not None, int n_threads):
        """out[r] = the total loss at params[r]: params (m, n_params) of the dtype,
        out (m,) float64, both contiguous.  Returns out."""
        self._check_params(params, "params", 2)
        cdef Py_ssize_t m = params.shape[0]
        if (cnp.PyArray_TYPE(out) != cnp.NPY_FLOAT64 or cnp.PyArray_NDIM(out) != 1
                or out.shape[0] != m or not cnp.PyArray_IS_C_CONTIGUOUS(out)):
            raise ValueError(f"out must be a contiguous ({m},) float64 array")
        if n_threads < 1:
            n_threads = 1
        if n_threads > m:
            n_threads = <int>max(m, 1)
        self._ensure_work(n_threads)
        cdef char* P = <char*>cnp.PyArray_DATA(params)
        cdef double* o = <double*>cnp.PyArray_DATA(out)
        cdef int prev
        self._enter()
        try:
            if self.t_num == cnp.NPY_FLOAT32:
                with nogil:
                    prev = fnn_blas_serial_begin(<const void*>sgemm)
                    _losses[float](self, <const float*>P, m, o, n_threads)
                    fnn_blas_serial_end(prev)
            else:
                with nogil:
                    prev = fnn_blas_serial_begin(<const void*>dgemm)
                    _losses[double](self, <const double*>P, m, o, n_threads)
                    fnn_blas_serial_end(prev)
        finally:
            self.running = False
        return out

    def numerical_gradient(self, cnp.ndarray params not None, cnp.ndarray grad not None,
                           cnp.ndarray indices not None, double h, bint centered,
                           cnp.ndarray kinks, int n_threads):
        """grad[q] = the finite difference of the total loss along element indices[q] of
        params ((n_params,) of the dtype, not changed): centered
        (L(p + h e_i) - L(p - h e_i)) / (xp - xm) or forward (L(p + h e_i) - L(p)) /
        (xp - p), xp, xm the perturbed element as stored in the dtype (the caller checks
        they differ).  grad: (len(indices),) of the dtype; indices: int64 in
        [0, n_params) (checked by the caller).  kinks: None or (len(indices),) uint8, set
        to 1 where an evaluation point puts a kink on its other side (see
        fastnn.gradcheck).  Returns grad."""
        self._check_params(params, "params", 1)
        cdef Py_ssize_t q = indices.shape[0]
        if (cnp.PyArray_TYPE(grad) != self.t_num or grad.shape[0] != q
                or not cnp.PyArray_IS_C_CONTIGUOUS(grad)):
            raise ValueError("grad must be a contiguous array of one entry per index")
        if (cnp.PyArray_TYPE(indices) != cnp.NPY_INT64
                or not cnp.PyArray_IS_C_CONTIGUOUS(indices)):
            raise TypeError("indices must be contiguous int64")
        if kinks is not None and (cnp.PyArray_TYPE(kinks) != cnp.NPY_UINT8
                                  or kinks.shape[0] != q):
            raise ValueError("kinks must be uint8 with one entry per index")
        if not h > 0:
            raise ValueError(f"h must be positive, got {h}")
        if n_threads < 1:
            n_threads = 1
        self._ensure_work(n_threads)
        cdef char* P = <char*>cnp.PyArray_DATA(params)
        cdef char* g = <char*>cnp.PyArray_DATA(grad)
        cdef const int64_t* idx = <const int64_t*>cnp.PyArray_DATA(indices)
        cdef uint8_t* kk = NULL if kinks is None else <uint8_t*>cnp.PyArray_DATA(kinks)
        cdef int prev
        self._enter()
        try:
            if self.t_num == cnp.NPY_FLOAT32:
                with nogil:
                    prev = fnn_blas_serial_begin(<const void*>sgemm)
                    _numgrad[float](self, <const float*>P, <float*>g, idx, q, h, centered,
                                    kk, n_threads)
                    fnn_blas_serial_end(prev)
            else:
                with nogil:
                    prev = fnn_blas_serial_begin(<const void*>dgemm)
                    _numgrad[double](self, <const double*>P, <double*>g, idx, q, h,
                                     centered, kk, n_threads)
                    fnn_blas_serial_end(prev)
        finally:
            self.running = False
        return grad

    @property
    def column_modes(self):
        """How a perturbation of each op's parameters re-runs the net (with the bits of a
        whole re-run either way): "whole" from that op on, "column" its one output
        column (COLS_ONE), "lanes" its column and the lane sums of the next op's product
        it changes (COLS_LANES), "lane" the one lane sum of its output column that a
        weight changes (COLS_AFTER_LANES, the op after a "lanes" op)."""
        names = {COLS_NONE: "whole", COLS_ONE: "column", COLS_LANES: "lanes",
                 COLS_AFTER_LANES: "lane"}
        return [names[self.ops[i].cols] for i in range(self.n_ops)]

    def use_columns(self, bint on):
        """Re-run only the columns a perturbation changes (the default) or whole ops:
        the same bits either way (for the tests and the benchmark)."""
        cdef int i
        if self.running:
            raise RuntimeError("this evaluator is running (in another thread); switch "
                               "columns between runs")
        for i in range(self.n_ops):
            if self.ops[i].kind == OP_AFFINE:
                self.ops[i].cols = self._cols[i] if on else COLS_NONE

    cdef int _enter(self) except -1:
        if self.running:
            raise RuntimeError("this evaluator is already running (in another thread); "
                               "it owns its workspaces, so build one per thread")
        self.running = True
        return 0


# ---- one evaluation ------------------------------------------------------------------

cdef void _op_forward(Evaluator E, Work* w, int j, const floating* h, floating* P,
                      floating* out) noexcept nogil:
    cdef EOp* op = &E.ops[j]
    cdef Py_ssize_t B = E.n_rows, n = op.n_out, i
    cdef floating* st
    cdef floating s
    if op.kind == OP_AFFINE:
        affine_forward_core(h, P + op.p0, P + op.p1, out, B, op.n_in, n, op.act,
                            <floating>op.alpha, 1)
    elif op.kind == OP_MAXOUT:
        maxout_forward_core(h, P + op.p0, P + op.p1, <floating*>w.z[j], out,
                            <int32_t*>w.arg[j], B, op.n_in, n, op.k, 1)
    elif op.kind == OP_ACT:
        act_forward_core(h, out, B * n, op.act, <floating>op.alpha, 1)
    elif op.kind == OP_PRELU:
        prelu_forward_core(h, P + op.p0, out, B, n, 1)
    elif op.kind == OP_SCALE:
        s = <floating>op.scale
        for i in range(B * n):
            out[i] = h[i] * s
    else:
        st = <floating*>w.stats[j]
        batchnorm_forward_core(h, P + op.p0, P + op.p1, st + 2 * n, st + 3 * n, out,
                               <floating*>w.z[j], st, st + n, B, n, True,
                               <floating>op.momentum, <floating>op.eps, 1)


cdef const floating* _forward_from(Evaluator E, Work* w, int first, floating* P,
                                   bint cached) noexcept nogil:
    """Run ops first.. on the thread's buffers; op `first` reads the cached output of
    op first - 1 (or X).  cached: write the cache buffers (the unperturbed pass).
    Returns the scores."""
    cdef const floating* h = <const floating*>E.X if first == 0 else \
        <const floating*>w.cout[first - 1]
    return _run_ops(E, w, first, P, cached, h)


cdef void _affine_columns(Evaluator E, Work* w, int j, const floating* h, floating* P,
                          Py_ssize_t col) noexcept nogil:
    """Op j's output with column `col`'s weights or bias perturbed (COLS_ONE): the
    cached output with that column re-run, into w.out[j]."""
    cdef EOp* op = &E.ops[j]
    cdef Py_ssize_t B = E.n_rows, n = op.n_out, r
    cdef floating* out = <floating*>w.out[j]
    cdef floating* tmp = <floating*>w.tmp
    memcpy(out, w.cout[j], B * n * sizeof(floating))
    small_gemm(0, 0, B, 1, op.n_in, h, op.n_in, P + op.p0 + col, n, tmp, 1)
    bias_act_rows(tmp, P + op.p1 + col, B, 1, op.act, <floating>op.alpha)
    for r in range(B):
        out[r * n + col] = tmp[r]


cdef void _lanes_cache(Evaluator E, Work* w, int j, const floating* P) noexcept nogil:
    """The unperturbed pass's part of COLS_LANES op j: its input and output transposed
    (rows zero-padded), the next op's weights transposed, and that op's lane sums."""
    cdef EOp* a = &E.ops[j]
    cdef EOp* b = &E.ops[j + 1]
    cdef Py_ssize_t B = E.n_rows, lt = E.lane_rows, k = a.n_out, q = b.n_out, r, u
    cdef const floating* h = <const floating*>w.cout[j]
    cdef floating* at = <floating*>w.lane_at[j]
    cdef floating* bt = <floating*>w.lane_bt[j]
    cdef floating* xt = <floating*>w.lane_in[j]
    cdef const floating* x = <const floating*>E.X if j == 0 else <const floating*>w.cout[j - 1]
    for u in range(a.n_in):
        for r in range(B):
            xt[u * lt + r] = x[r * a.n_in + u]
    for u in range(k):
        for r in range(B):
            at[u * lt + r] = h[r * k + u]
    transpose(P + b.p0, q, k, q, bt)
    small_tiny_n_lanes(q, B, k, at, lt, bt, k, -1, -1, -1, <const floating*>NULL,
                       <floating*>w.lane_sums[j], <floating*>w.out[j + 1], q)


cdef void _lanes_rerun(Evaluator E, Work* w, int j, floating* P,
                       Py_ssize_t col) noexcept nogil:
    """COLS_LANES op j with column col's weights or bias perturbed: that column alone
    into w.tmp, then the next op's output, through the lane sums it changes, into
    w.out[j + 1] (op j's own w.out is not written)."""
    cdef EOp* a = &E.ops[j]
    cdef EOp* b = &E.ops[j + 1]
    cdef Py_ssize_t B = E.n_rows
    cdef floating* tmp = <floating*>w.tmp
    cdef floating* out = <floating*>w.out[j + 1]
    small_tiny_k_column(a.n_in, B, <const floating*>w.lane_in[j], E.lane_rows, P + a.p0,
                        a.n_out, col, tmp)
    bias_act_rows(tmp, P + a.p1 + col, B, 1, a.act, <floating>a.alpha)
    small_tiny_n_lanes(b.n_out, B, a.n_out, <const floating*>w.lane_at[j], E.lane_rows,
                       <const floating*>w.lane_bt[j], a.n_out, -1, col, col, tmp,
                       <floating*>w.lane_sums[j], out, b.n_out)
    bias_act_rows(out, P + b.p1, B, b.n_out, b.act, <floating>b.alpha)


cdef void _lanes_weight(Evaluator E, Work* w, int j, floating* P, Py_ssize_t e,
                        Py_ssize_t col) noexcept nogil:
    """COLS_AFTER_LANES op j (after COLS_LANES op j - 1) with parameter e, of output
    column col, perturbed: that column from op j - 1's lane cache (a weight W[u, col]:
    its one lane sum computed again with the thread's transposed weights holding P[e]),
    its bias and activation, into w.out[j] beside the cached other columns."""
    cdef EOp* b = &E.ops[j]
    cdef Py_ssize_t B = E.n_rows, k = b.n_in, n = b.n_out, r
    cdef Py_ssize_t u = k                       # a bias: no lane sum changes
    cdef floating* bt = <floating*>w.lane_bt[j - 1]
    cdef floating* tmp = <floating*>w.tmp
    cdef floating* out = <floating*>w.out[j]
    cdef floating saved = 0
    if not b.p1 <= e < b.p1 + n:
        u = (e - b.p0) // n
        saved = bt[col * k + u]
        bt[col * k + u] = P[e]
    small_tiny_n_lanes(n, B, k, <const floating*>w.lane_at[j - 1], E.lane_rows, bt, k, col,
                       u, -1, <const floating*>NULL, <floating*>w.lane_sums[j - 1], tmp, 1)
    if u < k:
        bt[col * k + u] = saved
    bias_act_rows(tmp, P + b.p1 + col, B, 1, b.act, <floating>b.alpha)
    memcpy(out, w.cout[j], B * n * sizeof(floating))
    for r in range(B):
        out[r * n + col] = tmp[r]


cdef const floating* _run_ops(Evaluator E, Work* w, int first, floating* P, bint cached,
                              const floating* h) noexcept nogil:
    cdef int j
    cdef floating* out
    for j in range(first, E.n_ops):
        out = <floating*>(w.cout[j] if cached else w.out[j])
        if cached and E.ops[j].kind == OP_MAXOUT:
            w.arg[j], w.carg[j] = w.carg[j], w.arg[j]
            _op_forward(E, w, j, h, P, out)
            w.arg[j], w.carg[j] = w.carg[j], w.arg[j]
        else:
            _op_forward(E, w, j, h, P, out)
        h = out
    return h


cdef double _data_loss(Evaluator E, Work* w, const floating* scores, floating* d) noexcept nogil:
    cdef Py_ssize_t B = E.n_rows, K = E.n_outputs
    cdef floating* rl = <floating*>w.row_loss
    cdef const floating* lw
    if E.loss_kind == LOSS_SOFTMAX:       # d is read only for margin and elementwise losses
        softmax_loss_core(scores, <const Py_ssize_t*>E.Y, d, rl, B, K)
    elif E.loss_kind == LOSS_SVM:
        svm_core(scores, <const Py_ssize_t*>E.Y, d, rl, B, K, <floating>E.delta, E.squared, 1)
    elif E.loss_kind == LOSS_ELEMENTWISE:
        elementwise_loss_core(E.ew_kind, scores, <const floating*>E.Y, d, rl, B, K, 1)
    else:
        lw = <const floating*>E.lp
        hs_forward_core(scores, lw, lw + E.hs_m * K, <const Py_ssize_t*>E.Y, E.hs_paths,
                        E.hs_codes, E.hs_depths, <floating*>w.hs_dz, rl, B, K, E.hs_p, 1)
    return row_loss_mean(rl, B)


cdef inline double _pen_value(Pen* pen, double s1, double s2) noexcept nogil:
    # penalty_core's closing formula
    if pen.kind == PEN_L2:
        return 0.5 * pen.a * s1
    elif pen.kind == PEN_L1:
        return pen.a * s1
    return pen.a * s1 + pen.b * s2


cdef double _penalties(Evaluator E, Work* w, const floating* P, Py_ssize_t changed,
                       bint cache) noexcept nogil:
    """The summed penalties at P, as a plan's step sums them.  cache: compute every
    block and keep the sums (the unperturbed pass); otherwise only the blocks holding
    element `changed` are recomputed (-1: none), the rest read from the cache."""
    cdef double reg_loss = 0, group = 0, s1, s2, v
    cdef double one[2]
    cdef Pen* pen
    cdef int i
    cdef Py_ssize_t blk, hit
    cdef floating ga, gb
    for i in range(E.n_pens):
        pen = &E.pens[i]
        if pen.group_start and i > 0:
            reg_loss += group
            group = 0
        ga = <floating>pen.a
        gb = <floating>(2.0 * pen.b) if pen.kind == PEN_ELASTIC else 0
        if cache:
            s1 = s2 = 0
            for blk in range(pen.nb):
                _pen_block(pen.kind, P + pen.off, <floating*>w.g, pen.n, blk, ga, gb, one)
                w.blocks[2 * (pen.blocks + blk)] = one[0]
                w.blocks[2 * (pen.blocks + blk) + 1] = one[1]
                s1 += one[0]
                s2 += one[1]
            v = _pen_value(pen, s1, s2)
            w.pen_vals[i] = v
        elif pen.off <= changed < pen.off + pen.n:
            hit = (changed - pen.off) // PEN_BLOCK
            _pen_block(pen.kind, P + pen.off, <floating*>w.g, pen.n, hit, ga, gb, one)
            s1 = s2 = 0
            for blk in range(pen.nb):
                if blk == hit:
                    s1 += one[0]
                    s2 += one[1]
                else:
                    s1 += w.blocks[2 * (pen.blocks + blk)]
                    s2 += w.blocks[2 * (pen.blocks + blk) + 1]
            v = _pen_value(pen, s1, s2)
        else:
            v = w.pen_vals[i]
        group += v
    return reg_loss + group


cdef void _losses(Evaluator E, const floating* params, Py_ssize_t m, double* out,
                  int nt) noexcept nogil:
    cdef int t
    if nt <= 1:
        _losses_thread(E, 0, 1, params, m, out)
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        _losses_thread(E, t, nt, params, m, out)


cdef void _losses_thread(Evaluator E, int t, int nt, const floating* params, Py_ssize_t m,
                         double* out) noexcept nogil:
    cdef Work* w = &E.work[t]
    cdef Py_ssize_t r
    cdef floating* P
    cdef const floating* scores
    cdef double dl
    r = t
    while r < m:
        P = <floating*>(params + r * E.n_params)     # read only
        scores = _forward_from(E, w, 0, P, True)
        dl = _data_loss(E, w, scores, <floating*>w.d)
        out[r] = dl + _penalties(E, w, P, -1, True)
        r += nt


# ---- the numerical gradient ----------------------------------------------------------

cdef inline int _side(floating v) noexcept nogil:
    return (v > 0) - (v < 0)


cdef bint _any_side_changed(const floating* a, const floating* b, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef int diff = 0
    for i in range(n):
        diff |= (a[i] > 0) ^ (b[i] > 0)
    return diff != 0


cdef bint _kinked(Evaluator E, Work* w, int first, const floating* d) noexcept nogil:
    """Whether this evaluation put some kink on the other side than the unperturbed pass
    did: a ReLU / leaky ReLU output (its input's sign), a PReLU input, a maxout winner,
    a hinge margin or L1 residual (the sign of the loss gradient's entry)."""
    cdef int j
    cdef Py_ssize_t B = E.n_rows, n, i
    cdef EOp* op
    cdef const int32_t* a1
    cdef const int32_t* a2
    cdef const floating* c1
    cdef const floating* c2
    for j in range(first, E.n_ops):
        op = &E.ops[j]
        n = B * op.n_out
        if op.kind == OP_AFFINE or op.kind == OP_ACT:
            if op.act == ACT_RELU or op.act == ACT_LEAKY_RELU:
                if _any_side_changed(<const floating*>w.out[j], <const floating*>w.cout[j], n):
                    return True
        elif op.kind == OP_MAXOUT:
            a1 = <const int32_t*>w.arg[j]
            a2 = <const int32_t*>w.carg[j]
            for i in range(n):
                if a1[i] != a2[i]:
                    return True
        elif op.kind == OP_PRELU and j > first:
            if _any_side_changed(<const floating*>w.out[j - 1], <const floating*>w.cout[j - 1], n):
                return True
    if (E.loss_kind == LOSS_SVM or (E.loss_kind == LOSS_ELEMENTWISE and
                                    (E.ew_kind == EW_ATTR_HINGE or E.ew_kind == EW_L1))):
        c1 = d
        c2 = <const floating*>w.cd
        for i in range(B * E.d_width):
            if _side(c1[i]) != _side(c2[i]):
                return True
    return False


cdef bint _column_kinked(Evaluator E, Work* w, int j, Py_ssize_t col,
                         const floating* now) noexcept nogil:
    """_kinked for COLS_LANES op j, whose column col (now: w.tmp) is all that changed."""
    cdef EOp* op = &E.ops[j]
    cdef Py_ssize_t B = E.n_rows, n = op.n_out, r
    cdef const floating* was = <const floating*>w.cout[j]
    if op.act != ACT_RELU and op.act != ACT_LEAKY_RELU:
        return False
    for r in range(B):
        if (now[r] > 0) != (was[r * n + col] > 0):
            return True
    return False


cdef bint _l1_kink(Evaluator E, Py_ssize_t e, floating xp, floating xm) noexcept nogil:
    cdef int i
    for i in range(E.n_pens):
        if (E.pens[i].kind != PEN_L2 and E.pens[i].off <= e < E.pens[i].off + E.pens[i].n
                and _side(xp) != _side(xm)):
            return True
    return False


cdef void _numgrad(Evaluator E, const floating* params, floating* grad, const int64_t* idx,
                   Py_ssize_t q, double h, bint centered, uint8_t* kinks,
                   int nt) noexcept nogil:
    cdef int t
    if nt > q:
        nt = <int>q if q > 0 else 1
    if nt <= 1:
        _numgrad_thread(E, 0, 1, params, grad, idx, q, h, centered, kinks)
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        _numgrad_thread(E, t, nt, params, grad, idx, q, h, centered, kinks)


cdef inline Py_ssize_t _column_of(EOp* op, Py_ssize_t e) noexcept nogil:
    """The output column of affine op `op` that parameter e (a weight or a bias) feeds."""
    return (e - op.p1) if op.p1 <= e < op.p1 + op.n_out else (e - op.p0) % op.n_out


cdef double _perturbed(Evaluator E, Work* w, floating* P, Py_ssize_t e, int first,
                       bint* kinked) noexcept nogil:
    cdef const floating* scores
    cdef Py_ssize_t col
    cdef double dl
    if first < E.n_ops and E.ops[first].cols == COLS_LANES:
        col = _column_of(&E.ops[first], e)
        _lanes_rerun(E, w, first, P, col)
        scores = _run_ops(E, w, first + 2, P, False, <const floating*>w.out[first + 1])
        dl = _data_loss(E, w, scores, <floating*>w.d)
        if kinked != NULL and not kinked[0]:
            kinked[0] = (_column_kinked(E, w, first, col, <const floating*>w.tmp)
                         or _kinked(E, w, first + 1, <const floating*>w.d))
        return dl + _penalties(E, w, P, e, False)
    if first < E.n_ops and E.ops[first].cols == COLS_AFTER_LANES:
        _lanes_weight(E, w, first, P, e, _column_of(&E.ops[first], e))
        scores = _run_ops(E, w, first + 1, P, False, <const floating*>w.out[first])
    elif first < E.n_ops and E.ops[first].cols == COLS_ONE:
        _affine_columns(E, w, first, <const floating*>E.X if first == 0 else
                        <const floating*>w.cout[first - 1], P, _column_of(&E.ops[first], e))
        scores = _run_ops(E, w, first + 1, P, False, <const floating*>w.out[first])
    else:
        scores = _forward_from(E, w, first, P, False)
    if first == E.n_ops:
        scores = <const floating*>w.cout[E.n_ops - 1] if E.n_ops else <const floating*>E.X
    dl = _data_loss(E, w, scores, <floating*>w.d)
    if kinked != NULL and not kinked[0]:
        kinked[0] = _kinked(E, w, first, <const floating*>w.d)
    return dl + _penalties(E, w, P, e, False)


cdef void _numgrad_thread(Evaluator E, int t, int nt, const floating* params,
                          floating* grad, const int64_t* idx, Py_ssize_t q, double h,
                          bint centered, uint8_t* kinks) noexcept nogil:
    cdef Work* w = &E.work[t]
    cdef floating* P = <floating*>w.P
    cdef Py_ssize_t r, e
    cdef int first
    cdef floating old, xp, xm
    cdef double fx, fp, fm
    cdef bint kinked
    cdef bint* kp
    memcpy(P, params, E.n_params * sizeof(floating))
    # the unperturbed pass, cached
    cdef const floating* scores = _forward_from(E, w, 0, P, True)
    cdef int j
    for j in range(E.n_ops):
        if E.ops[j].cols == COLS_LANES:
            _lanes_cache(E, w, j, P)
    fx = _data_loss(E, w, scores, <floating*>w.cd)
    fx = fx + _penalties(E, w, P, -1, True)
    r = t
    while r < q:
        e = idx[r]
        first = E.owner[e]
        kinked = False
        kp = &kinked if kinks != NULL else NULL
        old = P[e]
        P[e] = <floating>(old + h)
        xp = P[e]
        fp = _perturbed(E, w, P, e, first, kp)
        if centered:
            P[e] = <floating>(old - h)
            xm = P[e]
            fm = _perturbed(E, w, P, e, first, kp)
        else:
            xm = old
            fm = fx
        P[e] = old
        grad[r] = <floating>((fp - fm) / (<double>xp - <double>xm))
        if kinks != NULL:
            kinks[r] = kinked or _l1_kink(E, e, xp, xm)
        r += nt
