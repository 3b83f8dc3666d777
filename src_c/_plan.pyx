# The training plan: whole training steps -- gather the batch, forward, loss, backward,
# penalties, update, constraints -- run k at a time in one call, without the GIL.
#
# fastnn.plan builds it from a net, a loss, the regularizers, an optimizer and a batch
# size, and checks everything then; from there on the plan holds raw pointers into the
# net's flat parameters and gradients, the optimizer's flat state and buffers it owns
# (allocated once, sized for the batch), and calls the same nogil cores (the *_core.pxd
# files) as the per-layer path, in the same order: after N steps its weights equal the
# per-layer path's bit for bit.  A step allocates nothing and checks nothing.
#
# The ops of a net: AFFINE (Linear, with its fused activation), MAXOUT, ACT (an
# element-wise activation on its own), PRELU, DROPOUT (inverted or vanilla) and BATCHNORM.
# Each op reads the previous op's `out` (or the batch), writes its own `out`; backward
# reads the next op's `dx` (or dscores) and writes its `dx` (none for the first op).
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memcpy
from cpython.mem cimport PyMem_Free, PyMem_Malloc
cimport numpy as cnp
from cython cimport floating
import numpy as np

from fastnn._validation import check_shuffle

from _common cimport (FNN_GOLDEN, FNN_SMALL_NONE, FNN_SMALL_TINY_K, FNN_SMALL_TINY_M_TA,
                      FNN_SMALL_TINY_N, FNN_TWO_LAYER_D, FNN_TWO_LAYER_MAX_K,
                      FNN_TWO_LAYER_WORK, GEMM_SPLIT_MIN_WORK, dgemm, fnn_blas_serial_begin,
                      fnn_blas_serial_end, fnn_dropout_key, fnn_mix64, fnn_small_gemm_case,
                      sgemm, threads_for, two_layer_step)
from _activation_core cimport (act_backward_core, act_forward_core, prelu_backward_core,
                               prelu_forward_core)
from _affine_core cimport affine_backward_core, affine_forward_core
from _batchnorm_core cimport batchnorm_backward_core, batchnorm_forward_core
from _dropout_core cimport dropout_backward_core, dropout_forward_core
from _loss_core cimport (elementwise_loss_core, hs_backward_core, hs_forward_core,
                         row_loss_mean, softmax_xent_core, svm_core)
from _maxout_core cimport maxout_backward_core, maxout_forward_core
from _optim_core cimport optimizer_update_core, schedule_lr
from _regularization_core cimport (PEN_ELASTIC, PEN_L1, PEN_L2, max_norm_core, penalty_core,
                                   penalty_scratch_len)

cnp.import_array()

from _plan_codes cimport (LOSS_ELEMENTWISE, LOSS_HIERARCHICAL, LOSS_SOFTMAX, LOSS_SVM,
                         OP_ACT, OP_AFFINE, OP_BATCHNORM, OP_DROPOUT, OP_MAXOUT, OP_PRELU)

# what Plan._work runs
cdef enum:
    DO_RUN = 0
    DO_GRADIENT = 1
    DO_APPLY = 2

OP_KINDS = {"affine": OP_AFFINE, "maxout": OP_MAXOUT, "act": OP_ACT, "prelu": OP_PRELU,
            "dropout": OP_DROPOUT, "batchnorm": OP_BATCHNORM}
LOSS_KINDS = {"softmax": LOSS_SOFTMAX, "svm": LOSS_SVM, "elementwise": LOSS_ELEMENTWISE,
              "hierarchical": LOSS_HIERARCHICAL}
PEN_KINDS = {"l2": PEN_L2, "l1": PEN_L1, "elastic": PEN_ELASTIC}


cdef struct Op:
    int kind
    int act              # activation code (AFFINE, ACT)
    double alpha         # leaky ReLU slope (AFFINE, ACT)
    Py_ssize_t n_in, n_out, k
    Py_ssize_t p0, p1    # offsets of the op's parameters in the flat arrays (-1: none)
    char* out            # (B, n_out)
    char* dx             # (B, n_in), NULL for the first op
    char* dz             # AFFINE/MAXOUT scratch (B, n_out*k)
    char* z              # MAXOUT pre-activations (B, n_out*k); BATCHNORM xhat (B, n)
    char* arg            # MAXOUT winners (B, n_out) int32; DROPOUT mask (B, n) uint8
    char* mean           # BATCHNORM batch mean, inverse std, running mean and variance
    char* inv_std
    char* running_mean
    char* running_var
    double momentum, eps
    double scale         # DROPOUT: 1/p (inverted) or 1 (vanilla)
    uint64_t thr, seed, step


cdef struct Penalty:
    int kind             # the PEN_* code of _regularization_core
    double a, b          # strengths as the kernels take them
    Py_ssize_t off, n
    int group_start      # 1 where a regularizer's parts begin (their sum is added at once)


cdef struct Constraint:
    double c
    Py_ssize_t off, n_in, n_out


cdef class Plan:
    """Low-level compiled plan; build it with fastnn.plan.build_plan, not directly.

    Parameters (all checked by fastnn.plan):
    dtype: float32 or float64.  batch: rows per step (B).  n_features: D.
    ops: list of dicts, one per op (see fastnn.plan).  loss: dict.  penalties,
    constraints: lists of tuples.  optimizer: dict.  flat_params, flat_grads: the net's
    flat arrays; state: the optimizer's flat state arrays (0 to 2).  loss_params,
    loss_grads, loss_state: the same for a loss with parameters (or None).
    """
    cdef readonly object dtype
    cdef readonly Py_ssize_t batch, n_features, n_outputs, n_params
    cdef int t_num
    cdef Op* ops
    cdef int n_ops
    cdef Penalty* pens
    cdef int n_pens
    cdef Constraint* cons
    cdef int n_cons
    cdef list _keep            # every array a pointer points into
    # loss
    cdef int loss_kind, ew_kind, squared
    cdef double delta
    cdef char* dscores
    cdef char* row_loss
    cdef Py_ssize_t y_width    # columns of y for element-wise losses (0: class labels)
    # hierarchical softmax (a loss with parameters of its own)
    cdef Py_ssize_t hs_m, hs_p
    cdef const Py_ssize_t* hs_paths
    cdef const Py_ssize_t* hs_codes
    cdef const Py_ssize_t* hs_depths
    cdef char* hs_dz
    cdef char* lp
    cdef char* lg
    cdef char* ls1
    cdef char* ls2
    cdef Py_ssize_t n_loss_params
    # optimizer and schedule
    cdef int opt_kind, sched_kind
    cdef double lr0, h1, h2, eps, rate
    cdef long every
    cdef readonly long t        # updates made so far
    cdef char* params
    cdef char* grads
    cdef char* s1
    cdef char* s2
    cdef double* scratch        # penalty block sums and max-norm column scales
    cdef object _scratch
    # the bound data set and batch buffers
    cdef char* X
    cdef char* Y
    cdef Py_ssize_t n_rows
    cdef char* xbuf
    cdef char* ybuf
    cdef const double* W       # per-row weights (N,) float64, or NULL: every row counts 1
    cdef double* wbuf          # the batch's weights
    cdef readonly object data_bound
    cdef object _bound
    cdef bint running          # set while run() works without the GIL on the buffers
    # the row-streamed step of a two-layer net (fastnn_two_layer.inc), where it applies
    cdef readonly bint two_layer        # this net and loss can take it
    cdef public bint stream             # take it when it applies (False: the op loop)
    cdef readonly long streamed_steps   # steps that took it, for tests to see
    cdef char* tl_work
    cdef double* tl_acc

    def __cinit__(self):
        self.ops = NULL
        self.pens = NULL
        self.cons = NULL

    def __dealloc__(self):
        PyMem_Free(self.ops)
        PyMem_Free(self.pens)
        PyMem_Free(self.cons)

    def __init__(self, dtype, Py_ssize_t batch, Py_ssize_t n_features, list ops, dict loss,
                 list penalties, list constraints, dict optimizer,
                 cnp.ndarray flat_params, cnp.ndarray flat_grads, tuple state,
                 cnp.ndarray loss_params=None, cnp.ndarray loss_grads=None,
                 tuple loss_state=()):
        self.dtype = np.dtype(dtype)
        self.t_num = cnp.NPY_FLOAT32 if self.dtype == np.float32 else cnp.NPY_FLOAT64
        self.batch = batch
        self.n_features = n_features
        self._keep = []
        self.data_bound = False
        self.params = self._ptr(flat_params)
        self.grads = self._ptr(flat_grads)
        self.n_params = flat_params.shape[0]
        self.s1 = self._ptr(state[0]) if len(state) > 0 else NULL
        self.s2 = self._ptr(state[1]) if len(state) > 1 else NULL
        cdef Py_ssize_t B = batch, widest = 1
        self.n_ops = len(ops)
        self.ops = <Op*>PyMem_Malloc(max(self.n_ops, 1) * sizeof(Op))
        if self.ops == NULL:
            raise MemoryError()
        cdef Op* op
        cdef int i
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
            op.out = self._new((B, op.n_out))
            op.dx = self._new((B, op.n_in)) if i > 0 or op.kind == OP_PRELU else NULL
            op.dz = op.z = op.arg = NULL
            op.mean = op.inv_std = op.running_mean = op.running_var = NULL
            if op.kind == OP_AFFINE and op.act != 0:
                op.dz = self._new((B, op.n_out))
            elif op.kind == OP_MAXOUT:
                op.z = self._new((B, op.n_out * op.k))
                op.dz = self._new((B, op.n_out * op.k))
                op.arg = self._new((B, op.n_out), np.int32)
            elif op.kind == OP_DROPOUT:
                op.arg = self._new((B, op.n_out), np.uint8)
                op.scale = spec["scale"]
                op.thr = spec["thr"]
                op.seed = spec["seed"]
                op.step = spec["step"]
            elif op.kind == OP_BATCHNORM:
                op.z = self._new((B, op.n_out))
                op.mean = self._ptr(spec["mean"])
                op.inv_std = self._ptr(spec["inv_std"])
                op.running_mean = self._ptr(spec["running_mean"])
                op.running_var = self._ptr(spec["running_var"])
                op.momentum = spec["momentum"]
                op.eps = spec["eps"]
            widest = max(widest, op.n_out * op.k)
        self.n_outputs = self.ops[self.n_ops - 1].n_out
        # loss
        self.loss_kind = loss["kind"]
        self.ew_kind = loss.get("ew_kind", 0)
        self.delta = loss.get("delta", 1.0)
        self.squared = loss.get("squared", False)
        self.y_width = loss.get("y_width", 0)
        width = loss.get("width", self.n_outputs)     # dscores columns
        self.dscores = self._new((B, width))
        self.row_loss = self._new((B,))
        self.lp = self.lg = self.ls1 = self.ls2 = NULL
        self.n_loss_params = 0
        if self.loss_kind == LOSS_HIERARCHICAL:
            self.hs_m = loss["n_nodes"]
            self.hs_p = loss["max_depth"]
            self.hs_paths = <const Py_ssize_t*>self._ptr(loss["paths"])
            self.hs_codes = <const Py_ssize_t*>self._ptr(loss["codes"])
            self.hs_depths = <const Py_ssize_t*>self._ptr(loss["depths"])
            self.hs_dz = self._new((B, self.hs_p))
            self.lp = self._ptr(loss_params)
            self.lg = self._ptr(loss_grads)
            self.n_loss_params = loss_params.shape[0]
            self.ls1 = self._ptr(loss_state[0]) if len(loss_state) > 0 else NULL
            self.ls2 = self._ptr(loss_state[1]) if len(loss_state) > 1 else NULL
        # penalties and constraints
        self.n_pens = len(penalties)
        self.pens = <Penalty*>PyMem_Malloc(max(self.n_pens, 1) * sizeof(Penalty))
        cdef Py_ssize_t scratch = 1
        for i, (kind, a, b, off, n, group_start) in enumerate(penalties):
            self.pens[i].kind = kind
            self.pens[i].a = a
            self.pens[i].b = b
            self.pens[i].off = off
            self.pens[i].n = n
            self.pens[i].group_start = group_start
            scratch = max(scratch, penalty_scratch_len(n))
        self.n_cons = len(constraints)
        self.cons = <Constraint*>PyMem_Malloc(max(self.n_cons, 1) * sizeof(Constraint))
        for i, (c, off, n_in, n_out) in enumerate(constraints):
            self.cons[i].c = c
            self.cons[i].off = off
            self.cons[i].n_in = n_in
            self.cons[i].n_out = n_out
            scratch = max(scratch, n_out)
        if self.pens == NULL or self.cons == NULL:
            raise MemoryError()
        self._scratch = np.zeros(scratch, dtype=np.float64)
        self.scratch = <double*>cnp.PyArray_DATA(self._scratch)
        # optimizer
        self.opt_kind = optimizer["kind"]
        self.lr0 = optimizer["lr"]
        self.h1, self.h2, self.eps = optimizer["hyper"]
        self.sched_kind = optimizer["schedule"]
        self.rate = optimizer["rate"]
        self.every = optimizer["every"]
        self.t = optimizer["t"]
        self.xbuf = self._new((B, n_features))
        self.ybuf = (self._new((B,), np.intp) if self.y_width == 0
                     else self._new((B, self.y_width)))
        self.wbuf = <double*>self._new((B,), np.float64)
        self.W = NULL
        self.two_layer = self._two_layer_applies()
        self.stream = True
        self.streamed_steps = 0
        if self.two_layer:
            H = self.ops[0].n_out
            self.tl_work = self._new((FNN_TWO_LAYER_WORK(H, self.n_outputs),))
            self.tl_acc = <double*>self._new((H + self.n_outputs,), np.float64)

    cdef bint _two_layer_applies(self):
        """Whether fastnn_two_layer.inc can run this plan's steps with the per-layer
        path's bits (see there): affine + (leaky) ReLU, affine, softmax cross-entropy, two
        inputs, at most 8 classes, and each of the step's five products run by the
        per-layer path in the small-GEMM loop the streamed step reproduces (asked of the
        same dispatch the per-layer path uses, not re-derived here)."""
        if self.n_ops != 2 or self.loss_kind != LOSS_SOFTMAX:
            return False
        cdef Op* a = &self.ops[0]
        cdef Op* b = &self.ops[1]
        cdef Py_ssize_t B = self.batch, D = self.n_features, H = a.n_out, K = b.n_out
        return (a.kind == OP_AFFINE and (a.act == 1 or a.act == 2) and b.kind == OP_AFFINE
                and b.act == 0 and D == FNN_TWO_LAYER_D and K <= FNN_TWO_LAYER_MAX_K
                and _small(False, False, B, H, D, FNN_SMALL_TINY_K)         # h
                and _small(False, False, B, K, H, FNN_SMALL_TINY_N)         # scores
                and _small(True, False, H, K, B, FNN_SMALL_NONE)            # dW2
                and _small(False, True, B, H, K, FNN_SMALL_TINY_K)          # dh
                and _small(True, False, D, H, B, FNN_SMALL_TINY_M_TA))      # dW1

    cdef char* _ptr(self, cnp.ndarray a) except NULL:
        self._keep.append(a)
        return <char*>cnp.PyArray_DATA(a)

    cdef char* _new(self, shape, dtype=None) except NULL:
        a = np.zeros(shape, dtype=self.dtype if dtype is None else dtype)
        return self._ptr(a)

    def bind_data(self, cnp.ndarray X not None, cnp.ndarray y not None,
                  cnp.ndarray weights=None):
        """Keep pointers to the training data: X (N, D) of the plan's dtype and y (N,)
        intp labels or (N, A) targets of the plan's dtype, checked by fastnn.plan;
        weights: None or (N,) float64 per-row weights (finite, >= 0), checked there too.
        With weights a step's data loss is sum_i w_i L_i / sum_i w_i over its batch and
        row i's dscores are scaled by B w_i / sum_i w_i (the weighted mean's gradient)."""
        if weights is not None and (cnp.PyArray_TYPE(weights) != cnp.NPY_FLOAT64
                                    or cnp.PyArray_NDIM(weights) != 1
                                    or not cnp.PyArray_IS_C_CONTIGUOUS(weights)
                                    or weights.shape[0] != X.shape[0]):
            raise ValueError("weights must be a contiguous float64 array of one entry per row")
        self.X = <char*>cnp.PyArray_DATA(X)
        self.Y = <char*>cnp.PyArray_DATA(y)
        self.W = NULL if weights is None else <const double*>cnp.PyArray_DATA(weights)
        self.n_rows = X.shape[0]
        self._bound = (X, y, weights)
        self.data_bound = True

    def dropout_steps(self):
        """The step counter of every dropout op, in op order (to write back to layers)."""
        return [self.ops[i].step for i in range(self.n_ops) if self.ops[i].kind == OP_DROPOUT]

    def set_lr(self, double lr):
        """The base learning rate of the schedule (> 0), from the next step on."""
        if not lr > 0 or lr == float("inf"):
            raise ValueError(f"lr must be a finite number > 0, got {lr}")
        self.lr0 = lr

    def set_dropout_steps(self, steps):
        """The step counter of every dropout op, in op order (from the layers)."""
        cdef int i, j = 0
        steps = list(steps)
        for i in range(self.n_ops):
            if self.ops[i].kind == OP_DROPOUT:
                self.ops[i].step = steps[j]
                j += 1

    def set_t(self, long t):
        """The number of updates made so far (the optimizer's step count)."""
        self.t = t

    def output(self):
        """The last step's scores/outputs buffer, (B, n_outputs)."""
        return self._keep_array(self.ops[self.n_ops - 1].out)

    cdef object _keep_array(self, char* p):
        for a in self._keep:
            if <char*>cnp.PyArray_DATA(a) == p:
                return a
        return None

    cdef const int64_t* _rows(self, cnp.ndarray indices, Py_ssize_t k) except? NULL:
        """The row indices of k steps, checked: NULL for None (each step takes the whole
        bound data set, which must then have B rows), else a contiguous (k * B,) int64
        array of rows of the data set (TypeError for its type, ValueError for the rest)."""
        cdef Py_ssize_t bad
        cdef const int64_t* idx
        if indices is None:
            if self.n_rows != self.batch:
                raise ValueError(f"without indices every step takes the whole data set: "
                                 f"it has {self.n_rows} rows, the plan's batch is {self.batch}")
            return NULL
        if (cnp.PyArray_TYPE(indices) != cnp.NPY_INT64 or cnp.PyArray_NDIM(indices) != 1
                or not cnp.PyArray_IS_C_CONTIGUOUS(indices)):
            raise TypeError("indices must be a contiguous 1-D int64 array")
        if indices.shape[0] != k * self.batch:
            raise ValueError(f"indices has {indices.shape[0]} entries, expected "
                             f"{k} * batch = {k * self.batch}")
        idx = <const int64_t*>cnp.PyArray_DATA(indices)
        with nogil:
            bad = _first_out_of_range(idx, k * self.batch, self.n_rows)
        if bad >= 0:
            raise ValueError(f"indices[{bad}] = {indices[bad]} is not a row of the data "
                             f"set [0, {self.n_rows})")
        return idx

    def run(self, Py_ssize_t k, cnp.ndarray indices, cnp.ndarray losses not None,
            cnp.ndarray data_losses not None, int n_threads):
        """Run k steps.  indices: None (each step takes the whole bound data set, which
        must have B rows) or k*B int64 row indices (step s takes rows
        indices[s*B:(s+1)*B]), checked here.  losses, data_losses: float64 arrays of at
        least k entries, receive each step's total and data loss.  Returns the number of
        steps run (k)."""
        if not self.data_bound:
            raise RuntimeError("bind_data must be called before run")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        for name, a in (("losses", losses), ("data_losses", data_losses)):
            if (cnp.PyArray_TYPE(a) != cnp.NPY_FLOAT64 or cnp.PyArray_NDIM(a) != 1
                    or not cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_ISWRITEABLE(a)
                    or a.shape[0] < k):
                raise ValueError(f"{name} must be a writeable contiguous float64 array of "
                                 f"at least {k} entries")
        cdef const int64_t* idx = self._rows(indices, k)
        self._work(DO_RUN, k, idx, <double*>cnp.PyArray_DATA(losses),
                   <double*>cnp.PyArray_DATA(data_losses), n_threads)
        return k

    def gradient(self, cnp.ndarray indices, int n_threads):
        """Half a step: forward, loss and backward of one batch (indices: None, the whole
        bound data set of B rows, or B int64 row indices, checked here); the data-loss
        gradient is left in the flat gradients, the mean data loss returned.  Parameters
        and the optimizer are untouched.  gradient() then apply() is run(1) bit for bit."""
        if not self.data_bound:
            raise RuntimeError("bind_data must be called before gradient")
        cdef const int64_t* idx = self._rows(indices, 1)
        return self._work(DO_GRADIENT, 1, idx, NULL, NULL, n_threads)

    def apply(self, int n_threads):
        """The other half of a step, on whatever the flat gradients hold (e.g. a sum over
        MPI ranks): penalties (their gradients added here, once), the optimizer update,
        constraints.  Returns the penalty; the step count advances by one."""
        return self._work(DO_APPLY, 1, NULL, NULL, NULL, n_threads)

    cdef double _work(self, int what, Py_ssize_t k, const int64_t* idx, double* lo,
                      double* dl, int nt) except? -1.0:
        """Runs `what` (DO_RUN: k steps; DO_GRADIENT, DO_APPLY: the halves of one) without
        the GIL in the plan's dtype, BLAS single-threaded meanwhile; one at a time."""
        cdef double out
        cdef int prev
        if self.running:       # checked and set under the GIL: one run at a time
            raise RuntimeError("this plan is already running (in another thread); a plan "
                               "owns its buffers, so build one plan per thread")
        self.running = True
        try:
            if self.t_num == cnp.NPY_FLOAT32:
                with nogil:
                    prev = fnn_blas_serial_begin(<const void*>sgemm)
                    out = _do[float](self, <float*>NULL, what, k, idx, lo, dl, max(nt, 1))
                    fnn_blas_serial_end(prev)
            else:
                with nogil:
                    prev = fnn_blas_serial_begin(<const void*>dgemm)
                    out = _do[double](self, <double*>NULL, what, k, idx, lo, dl, max(nt, 1))
                    fnn_blas_serial_end(prev)
        finally:
            self.running = False
        return out


cdef double _do(Plan p, floating* tag, int what, Py_ssize_t k, const int64_t* idx,
                double* lo, double* dl, int nt) noexcept nogil:
    if what == DO_RUN:
        _run(p, tag, k, idx, lo, dl, nt)
        return 0
    if what == DO_GRADIENT:
        return _grad_step(p, tag, idx, nt)
    return _apply_step(p, tag, nt)


cdef bint _small(bint ta, bint tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                 int case) noexcept nogil:
    """Whether team_gemm runs this product in the small-GEMM loop `case` (FNN_SMALL_NONE:
    in any of them; every reduction loop there sums each element in the same order)."""
    if m * n * k >= GEMM_SPLIT_MIN_WORK:
        return False
    cdef int got = fnn_small_gemm_case(ta, tb, m, n, k)
    return got == case if case != FNN_SMALL_NONE else got != FNN_SMALL_NONE


cdef Py_ssize_t _first_out_of_range(const int64_t* idx, Py_ssize_t n,
                                    Py_ssize_t rows) noexcept nogil:
    cdef Py_ssize_t i, bad = 0
    for i in range(n):                      # branch-free count first (vectorizes)
        bad += (idx[i] < 0) | (idx[i] >= rows)
    if bad == 0:
        return -1
    for i in range(n):
        if idx[i] < 0 or idx[i] >= rows:
            return i
    return -1


cdef void _gather(Plan p, floating* xb, const int64_t* rows) noexcept nogil:
    """The batch's rows of X (and y) into the plan's buffers."""
    cdef Py_ssize_t i, r, d = p.n_features, B = p.batch, a = p.y_width
    cdef const floating* X = <const floating*>p.X
    for i in range(B):
        r = rows[i]
        memcpy(xb + i * d, X + r * d, d * sizeof(floating))
    if p.W != NULL:
        for i in range(B):
            p.wbuf[i] = p.W[rows[i]]
    if a == 0:
        for i in range(B):
            (<Py_ssize_t*>p.ybuf)[i] = (<const Py_ssize_t*>p.Y)[rows[i]]
    else:
        for i in range(B):
            memcpy(<floating*>p.ybuf + i * a, <const floating*>p.Y + rows[i] * a,
                   a * sizeof(floating))


cdef void _run(Plan p, floating* tag, Py_ssize_t k, const int64_t* idx, double* losses,
               double* data_losses, int nt) noexcept nogil:
    cdef Py_ssize_t s
    cdef double data_loss, reg_loss
    for s in range(k):
        data_loss = _grad_step(p, tag, NULL if idx == NULL else idx + s * p.batch, nt)
        reg_loss = _apply_step(p, tag, nt)
        losses[s] = data_loss + reg_loss
        data_losses[s] = data_loss


cdef double _grad_step(Plan p, floating* tag, const int64_t* rows, int nt) noexcept nogil:
    """The first half of a step: gather the batch (rows, or the whole bound data set when
    NULL), forward, loss, backward; the data-loss gradient is left in the flat gradients
    and the (weighted) mean data loss returned.  Nothing is updated."""
    cdef Py_ssize_t B = p.batch
    cdef int i
    cdef Op* op
    cdef floating* P = <floating*>p.params
    cdef floating* G = <floating*>p.grads
    cdef const floating* x0
    cdef const floating* h
    cdef const floating* dout
    cdef const floating* scores
    cdef const void* y
    cdef const double* w
    cdef double data_loss
    # the batch
    if rows != NULL:
        _gather(p, <floating*>p.xbuf, rows)
        x0 = <const floating*>p.xbuf
        y = p.ybuf
        w = p.wbuf
    else:
        x0 = <const floating*>p.X
        y = p.Y
        w = p.W
    if (p.two_layer and p.stream and p.W == NULL
            and threads_for(B * p.ops[0].n_out, nt) <= 1):
        _two_layer(p, x0, y)
        return row_loss_mean(<const floating*>p.row_loss, B)
    # forward
    h = x0
    for i in range(p.n_ops):
        op = &p.ops[i]
        _op_forward(op, h, P, B, nt)
        h = <const floating*>op.out
    scores = h
    # loss: dscores and the mean data loss
    data_loss = _loss(p, scores, y, nt)
    if p.W != NULL:
        data_loss = _weigh_rows(p, <floating*>p.dscores, <const floating*>p.row_loss, w)
    # backward
    dout = <const floating*>p.dscores     # dh for hierarchical softmax
    for i in range(p.n_ops - 1, -1, -1):
        op = &p.ops[i]
        _op_backward(op, dout, x0 if i == 0 else <const floating*>p.ops[i - 1].out,
                     P, G, B, nt)
        dout = <const floating*>op.dx
    return data_loss


cdef void _two_layer(Plan p, const floating* x0, const void* y) noexcept nogil:
    """Forward, loss and backward of a two-layer plan in one row-streamed pass; the same
    bits as the op loop.  The first op's out and dz and the second's dx are left as
    they were (nothing reads them after a step); the scores, dscores and row losses are
    written."""
    cdef Op* a = &p.ops[0]
    cdef Op* b = &p.ops[1]
    cdef floating* P = <floating*>p.params
    cdef floating* G = <floating*>p.grads
    two_layer_step(x0, <const Py_ssize_t*>y, p.batch, a.n_out, b.n_out,
                   P + a.p0, P + a.p1, P + b.p0, P + b.p1, a.act, <floating>a.alpha,
                   <floating*>b.out, <floating*>p.dscores, <floating*>p.row_loss,
                   G + a.p0, G + a.p1, G + b.p0, G + b.p1, <floating*>p.tl_work, p.tl_acc)
    p.streamed_steps += 1


cdef double _apply_step(Plan p, floating* tag, int nt) noexcept nogil:
    """The second half of a step, on whatever the flat gradients hold: penalties (their
    gradients added once), update, constraints; returns the penalty."""
    cdef int i
    cdef floating* P = <floating*>p.params
    cdef floating* G = <floating*>p.grads
    cdef double reg_loss, group, lr
    # penalties, in the per-layer path's order; a regularizer's parts summed first
    reg_loss = 0
    group = 0
    for i in range(p.n_pens):
        if p.pens[i].group_start and i > 0:
            reg_loss += group
            group = 0
        group += penalty_core(p.pens[i].kind, P + p.pens[i].off, G + p.pens[i].off,
                              p.pens[i].n, p.pens[i].a, p.pens[i].b, p.scratch, nt)
    reg_loss += group
    # update: the net's parameters, then a loss's own
    lr = schedule_lr(p.sched_kind, p.lr0, p.rate, p.every, p.t)
    p.t += 1
    optimizer_update_core(p.opt_kind, P, G, <floating*>p.s1, <floating*>p.s2, p.n_params,
                          lr, p.h1, p.h2, p.eps, p.t, nt)
    if p.n_loss_params > 0:
        optimizer_update_core(p.opt_kind, <floating*>p.lp, <floating*>p.lg,
                              <floating*>p.ls1, <floating*>p.ls2, p.n_loss_params,
                              lr, p.h1, p.h2, p.eps, p.t, nt)
    # constraints
    for i in range(p.n_cons):
        max_norm_core(P + p.cons[i].off, p.cons[i].n_in, p.cons[i].n_out, p.cons[i].c,
                      p.scratch, nt)
    return reg_loss


cdef double _loss(Plan p, const floating* scores, const void* y, int nt) noexcept nogil:
    cdef Py_ssize_t B = p.batch, K = p.n_outputs
    cdef floating* d = <floating*>p.dscores
    cdef floating* rl = <floating*>p.row_loss
    cdef const floating* lw
    if p.loss_kind == LOSS_SOFTMAX:
        softmax_xent_core(scores, <const Py_ssize_t*>y, d, rl, B, K, nt)
    elif p.loss_kind == LOSS_SVM:
        svm_core(scores, <const Py_ssize_t*>y, d, rl, B, K, <floating>p.delta, p.squared, nt)
    elif p.loss_kind == LOSS_ELEMENTWISE:
        elementwise_loss_core(p.ew_kind, scores, <const floating*>y, d, rl, B, K, nt)
    else:
        # hierarchical softmax: scores are the features h (B, K); its W (m, K) and b (m,)
        # live in the loss's flat parameters; dscores receives dh
        lw = <const floating*>p.lp
        hs_forward_core(scores, lw, lw + p.hs_m * K, <const Py_ssize_t*>y, p.hs_paths,
                        p.hs_codes, p.hs_depths, <floating*>p.hs_dz, rl, B, K, p.hs_p, nt)
        hs_backward_core(scores, lw, <const Py_ssize_t*>y, p.hs_paths, p.hs_depths,
                         <const floating*>p.hs_dz, d, <floating*>p.lg,
                         <floating*>p.lg + p.hs_m * K, B, K, p.hs_m, p.hs_p, nt)
    return row_loss_mean(rl, B)


cdef double _weigh_rows(Plan p, floating* d, const floating* rl,
                        const double* w) noexcept nogil:
    """Per-row weights on a step's loss: returns sum_i w_i L_i / sum_i w_i (both sums in
    row order, in double) and scales row i of dscores by (floating)(B w_i / sum_i w_i).
    A batch whose weights sum to 0 contributes nothing (loss 0, dscores 0)."""
    cdef Py_ssize_t i, j, B = p.batch, K = p.n_outputs
    cdef double total = 0, acc = 0, scale
    for i in range(B):
        total += w[i]
    for i in range(B):
        acc += w[i] * <double>rl[i]
    for i in range(B):
        scale = (B * w[i]) / total if total > 0 else 0.0
        for j in range(K):
            d[i * K + j] *= <floating>scale
    return acc / total if total > 0 else 0.0


cdef void _op_forward(Op* op, const floating* h, floating* P, Py_ssize_t B,
                      int nt) noexcept nogil:
    cdef Py_ssize_t n = op.n_out
    if op.kind == OP_AFFINE:
        affine_forward_core(h, P + op.p0, P + op.p1, <floating*>op.out, B, op.n_in, n,
                            op.act, <floating>op.alpha, nt)
    elif op.kind == OP_MAXOUT:
        maxout_forward_core(h, P + op.p0, P + op.p1, <floating*>op.z, <floating*>op.out,
                            <int32_t*>op.arg, B, op.n_in, n, op.k, nt)
    elif op.kind == OP_ACT:
        act_forward_core(h, <floating*>op.out, B * n, op.act, <floating>op.alpha, nt)
    elif op.kind == OP_PRELU:
        prelu_forward_core(h, P + op.p0, <floating*>op.out, B, n, nt)
    elif op.kind == OP_DROPOUT:
        dropout_forward_core(h, <floating*>op.out, <uint8_t*>op.arg, B * n,
                             fnn_dropout_key(op.seed, op.step), op.thr, <floating>op.scale,
                             nt)
        op.step += 1
    else:
        batchnorm_forward_core(h, P + op.p0, P + op.p1, <floating*>op.running_mean,
                               <floating*>op.running_var, <floating*>op.out,
                               <floating*>op.z, <floating*>op.mean, <floating*>op.inv_std,
                               B, n, True, <floating>op.momentum, <floating>op.eps, nt)


cdef void _op_backward(Op* op, const floating* dout, const floating* h_in, floating* P,
                       floating* G, Py_ssize_t B, int nt) noexcept nogil:
    """Gradients of one op given dout; writes op.dx unless it is NULL (the first op:
    then ops without parameters do nothing at all)."""
    cdef Py_ssize_t n = op.n_out
    if op.kind == OP_AFFINE:
        affine_backward_core(dout, h_in, P + op.p0, <const floating*>op.out,
                             <floating*>op.dz, <floating*>op.dx, G + op.p0, G + op.p1,
                             B, op.n_in, n, op.act, <floating>op.alpha, nt)
    elif op.kind == OP_MAXOUT:
        maxout_backward_core(dout, h_in, P + op.p0, <const int32_t*>op.arg,
                             <floating*>op.dz, <floating*>op.dx, G + op.p0, G + op.p1,
                             B, op.n_in, n, op.k, nt)
    elif op.kind == OP_PRELU:
        prelu_backward_core(dout, h_in, P + op.p0, <floating*>op.dx, G + op.p0, B, n, nt)
    elif op.kind == OP_BATCHNORM:
        batchnorm_backward_core(dout, <const floating*>op.z, P + op.p0,
                                <const floating*>op.inv_std, <floating*>op.dx, G + op.p0,
                                G + op.p1, B, n, True, nt)
    elif op.dx == NULL:
        return
    elif op.kind == OP_ACT:
        act_backward_core(dout, <const floating*>op.out, <floating*>op.dx, B * n, op.act,
                          <floating>op.alpha, nt)
    else:
        dropout_backward_core(dout, <const uint8_t*>op.arg, <floating*>op.dx, B * n,
                              <floating>op.scale, nt)


# ---- the batch order of an epoch -----------------------------------------------------------
# Epoch e's rows are the first `keep` entries of a random permutation of range(n), drawn by
# a partial Fisher-Yates shuffle: swap i (i < keep) exchanges entry i with entry
# i + floor(u * (n - i) / 2**32), u the high 32 bits of SplitMix64(key + (i + 1) * golden)
# and key = fnn_dropout_key(seed, e) (the generator behind dropout masks).  A pure
# function of (seed, e): a resumed run draws the very batches an uninterrupted one would,
# and fastnn.reference.shuffled_rows reproduces it (the multiply-shift's bias is below
# n / 2**32, 7e-8 for 300 rows).
#
# Entry i is final once swap i is done, so only the entries above i that a swap moved
# need remembering.  When keep is a fair share of n (the trainer's case: keep = the
# epoch's whole batches) the permutation is a dense array; otherwise a hash table of the
# moved entries (open addressing, at most keep of them), so memory follows keep, not n.

cdef inline Py_ssize_t _draw(uint64_t key, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    cdef uint64_t u = fnn_mix64(key + <uint64_t>(i + 1) * FNN_GOLDEN) >> 32
    return i + <Py_ssize_t>((u * <uint64_t>(n - i)) >> 32)


cdef void _shuffle(int64_t* perm, int64_t* out, Py_ssize_t n, Py_ssize_t keep,
                   uint64_t key) noexcept nogil:
    cdef Py_ssize_t i, j
    for i in range(n):
        perm[i] = i
    for i in range(keep):
        j = _draw(key, i, n)
        out[i] = perm[j]
        perm[j] = perm[i]


cdef void _shuffle_sparse(int64_t* keys, int64_t* vals, int bits, int64_t* out,
                          Py_ssize_t n, Py_ssize_t keep, uint64_t key) noexcept nogil:
    cdef Py_ssize_t i, j, s, cap = (<Py_ssize_t>1) << bits, mask = cap - 1
    cdef Py_ssize_t si = -1
    cdef int64_t vi
    for s in range(cap):
        keys[s] = -1
    for i in range(keep):
        j = _draw(key, i, n)
        # entry i's value: moved there by an earlier swap, or i itself
        s = <Py_ssize_t>((<uint64_t>i * FNN_GOLDEN) >> (64 - bits))
        while keys[s] != -1 and keys[s] != i:
            s = (s + 1) & mask
        vi = vals[s] if keys[s] == i else i
        # entry j's value goes out; entry i's moves to j
        s = <Py_ssize_t>((<uint64_t>j * FNN_GOLDEN) >> (64 - bits))
        while keys[s] != -1 and keys[s] != j:
            s = (s + 1) & mask
        out[i] = vals[s] if keys[s] == j else j
        keys[s] = j
        vals[s] = vi


def shuffled_rows(Py_ssize_t n, Py_ssize_t keep, Py_ssize_t n_epochs, uint64_t seed,
                  uint64_t first_epoch):
    """The batch order of n_epochs epochs: an (n_epochs * keep,) int64 array whose block e
    holds the first `keep` rows of a random permutation of range(n) for epoch
    first_epoch + e, a pure function of (seed, epoch).  0 < keep <= n < 2**32; memory
    in proportion to keep * n_epochs, whatever n."""
    check_shuffle(n, keep, n_epochs)
    out = np.empty(n_epochs * keep, dtype=np.int64)
    cdef int bits = 1
    while (<Py_ssize_t>1 << bits) < 2 * keep:       # load factor <= 1/2
        bits += 1
    cdef bint dense = n <= 4 * keep
    work = np.empty(n if dense else 2 << bits, dtype=np.int64)
    cdef int64_t* o = <int64_t*>cnp.PyArray_DATA(out)
    cdef int64_t* w = <int64_t*>cnp.PyArray_DATA(work)
    cdef Py_ssize_t e
    with nogil:
        for e in range(n_epochs):
            if dense:
                _shuffle(w, o + e * keep, n, keep, fnn_dropout_key(seed, first_epoch + e))
            else:
                _shuffle_sparse(w, w + (<Py_ssize_t>1 << bits), bits, o + e * keep, n, keep,
                                fnn_dropout_key(seed, first_epoch + e))
    return out
