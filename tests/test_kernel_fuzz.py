"""No argument can crash a compiled kernel: every kernel, called with one argument of a
valid call replaced by something wrong (another shape, dtype, layout, byte order, None,
an overlapping or read-only buffer; out-of-range codes, probabilities, thread counts),
either works or raises ValueError/TypeError.  A crash would take the test run down."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastnn import _kernels, losses

C = _kernels.COMPILED
N, D, H, K, P = 6, 4, 5, 3, 2        # batch, inputs, units, classes, maxout pieces


def _f(*shape, dtype=np.float64):
    return np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype)


def _tree():
    _, paths, codes, depths = losses.compile_tree(losses.balanced_tree(K), K)
    return paths, codes, depths


def _templates():
    """kernel name -> a function returning a fresh valid argument list."""
    paths, codes, depths = _tree()
    labels = lambda: np.arange(N, dtype=np.intp) % K  # noqa: E731
    mask = lambda: np.ones((N, H), np.uint8)  # noqa: E731
    return {
        "affine_forward": lambda: [_f(N, D), _f(D, H), _f(H), _f(N, H), 1, 0.1, 2],
        "affine_backward": lambda: [_f(N, H), _f(N, D), _f(D, H), np.abs(_f(N, H)),
                                    _f(N, H), _f(N, D), _f(D, H), _f(H), 1, 0.1, 2],
        "softmax_cross_entropy": lambda: [_f(N, K), labels(), _f(N, K), _f(N), 2],
        "multiclass_svm": lambda: [_f(N, K), labels(), _f(N, K), _f(N), 1.0, False, 2],
        "attribute_hinge": lambda: [_f(N, K), np.sign(_f(N, K)), _f(N, K), _f(N), 2],
        "l2_regression": lambda: [_f(N, K), _f(N, K), _f(N, K), _f(N), 2],
        "dropout_forward": lambda: [_f(N, H), _f(N, H), mask(), 0.5, 1, 0, 2],
        "dropout_backward": lambda: [_f(N, H), mask(), _f(N, H), 0.5, 2],
        "activation_forward": lambda: [_f(N, H), _f(N, H), 3, 0.0, 2],
        "activation_backward": lambda: [_f(N, H), _f(N, H), _f(N, H), 4, 0.0, 2],
        "prelu_forward": lambda: [_f(N, H), _f(H), _f(N, H), 2],
        "prelu_backward": lambda: [_f(N, H), _f(N, H), _f(H), _f(N, H), _f(H), 2],
        "maxout_forward": lambda: [_f(N, D), _f(D, H * P), _f(H * P), _f(N, H * P),
                                   _f(N, H), np.zeros((N, H), np.int32), P, 2],
        "maxout_backward": lambda: [_f(N, H), _f(N, D), _f(D, H * P),
                                    np.zeros((N, H), np.int32), _f(N, H * P), _f(N, D),
                                    _f(D, H * P), _f(H * P), P, 2],
        "batchnorm_forward": lambda: [_f(N, H), _f(H), _f(H), _f(H), np.ones(H), _f(N, H),
                                      _f(N, H), _f(H), _f(H), True, 0.9, 1e-5, 2],
        "batchnorm_backward": lambda: [_f(N, H), _f(N, H), _f(H), np.ones(H), _f(N, H),
                                       _f(H), _f(H), True, 2],
        "sgd_update": lambda: [_f(D, H), _f(D, H), 0.1, 2],
        # Adam (code 5), the optimizer with both state arrays; a mutated code turns the
        # call into another optimizer's, with too many states or none
        "optimizer_update": lambda: [5, _f(D, H), _f(D, H), _f(D, H), np.abs(_f(D, H)),
                                     0.01, 0.9, 0.999, 1e-8, 3, 2],
        "learning_rate": lambda: [1, 0.1, 0.5, 10, 7],
        "shuffled_rows": lambda: [N, N // 2, 3, 11, 5],
        "l1_penalty": lambda: [_f(D, H), _f(D, H), 0.1, 2],
        "max_norm_constrain": lambda: [_f(D, H), 3.0, 2],
        "hierarchical_softmax_forward": lambda: [
            _f(N, D), _f(K - 1, D), _f(K - 1), labels(), paths.copy(), codes.copy(),
            depths.copy(), _f(N, paths.shape[1]), _f(N), 2],
        "hierarchical_softmax_backward": lambda: [
            _f(N, D), _f(K - 1, D), labels(), paths.copy(), depths.copy(),
            _f(N, paths.shape[1]), _f(N, D), _f(K - 1, D), _f(K - 1), 2],
    }


TEMPLATES = _templates()
BAD_INTS = [-(2 ** 31), -7, -1, 0, 1, 2, 5, 64, 2 ** 31 - 1]
BAD_FLOATS = [float("nan"), float("inf"), -1.0, 0.0, 1e-300, 0.5, 1.0, 2.0, 1e300]


def _mutate(value, how, other):
    """One wrong version of an argument."""
    if isinstance(value, np.ndarray):
        if how == 0:
            return None
        if how == 1:
            return value.astype(np.float32 if value.dtype == np.float64 else np.float64)
        if how == 2:
            return value.astype(np.int64)
        if how == 3:
            return np.ascontiguousarray(np.concatenate([value.ravel(), value.ravel()[:1]]))
        if how == 4:
            return value.reshape(-1) if value.ndim > 1 else value.reshape(1, -1)
        if how == 5:
            return np.asfortranarray(np.repeat(value[..., None], 2, -1))[..., 0] \
                if value.ndim else value
        if how == 6:
            return value.astype(value.dtype.newbyteorder())
        if how == 7:
            ro = value.copy()
            ro.flags.writeable = False
            return ro
        if how == 8:
            return other                 # aliasing another argument
        if how == 9:
            return value[:0]             # empty
        return np.zeros((0,) * 3)
    if isinstance(value, bool):
        return [True, False][how % 2]
    if isinstance(value, int):
        return BAD_INTS[how % len(BAD_INTS)]
    if isinstance(value, float):
        return BAD_FLOATS[how % len(BAD_FLOATS)]
    return value


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(TEMPLATES)), position=st.integers(0, 20),
       how=st.integers(0, 10), other=st.integers(0, 20))
def test_no_argument_crashes_a_kernel(name, position, how, other):
    args = TEMPLATES[name]()
    i = position % len(args)
    j = other % len(args)
    args[i] = _mutate(args[i], how, args[j] if j != i else args[(j + 1) % len(args)])
    try:
        getattr(C, name)(*args)
    except (ValueError, TypeError, OverflowError):
        pass                             # a clear refusal is the expected outcome


def test_every_template_is_a_valid_call():
    # the mutations start from calls that work, so each refusal is due to the mutation
    for name, make in TEMPLATES.items():
        getattr(C, name)(*make())
