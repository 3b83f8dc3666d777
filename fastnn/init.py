"""Weight initialization.  Every initializer is ``f(fan_in, fan_out, rng, dtype)`` and
returns a C-contiguous (fan_in, fan_out) array; :func:`get` resolves names."""
import numpy as np

from ._validation import check_positive_int, check_random_state, float_dtype


def small_random(fan_in, fan_out, rng=None, dtype=np.float64, *, scale=0.01):
    """The notes' first recipe: ``scale * randn`` (scale 0.01)."""
    rng = check_random_state(rng, "rng")
    w = scale * rng.standard_normal((fan_in, fan_out))
    return np.ascontiguousarray(w, dtype=float_dtype(dtype))


INITIALIZERS = {"small_random": small_random}


def get(init):
    """An initializer from its name or a callable with the initializer signature."""
    if callable(init):
        return init
    if isinstance(init, str) and init in INITIALIZERS:
        return INITIALIZERS[init]
    raise ValueError(f"unknown init {init!r}; choose one of {sorted(INITIALIZERS)} "
                     "or pass a callable f(fan_in, fan_out, rng, dtype)")


def weights(init, fan_in, fan_out, seed=None, dtype=np.float64):
    """Draw a (fan_in, fan_out) weight matrix with the named or given initializer."""
    fan_in = check_positive_int(fan_in, "fan_in")
    fan_out = check_positive_int(fan_out, "fan_out")
    dtype = float_dtype(dtype)
    w = get(init)(fan_in, fan_out, check_random_state(seed), dtype)
    if not isinstance(w, np.ndarray) or w.shape != (fan_in, fan_out):
        raise ValueError(f"init returned {getattr(w, 'shape', type(w))}, "
                         f"expected shape {(fan_in, fan_out)}")
    return np.ascontiguousarray(w, dtype=dtype)
