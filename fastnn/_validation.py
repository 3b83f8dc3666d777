"""Argument checks at the boundary between users and kernels.

Each raises TypeError (wrong kind of thing) or ValueError (right kind, wrong value)
with the argument's name in the message.  Kernels trust what passed these checks.
"""
import numbers

from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(dtype, name="dtype"):
    """float32 or float64 as a numpy dtype; anything else is a TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


def data_dtype(x):
    """The dtype data keeps: float32 stays float32, every other real type is float64."""
    return np.dtype(np.float32) if x.dtype == np.float32 else np.dtype(np.float64)


def all_finite(x):
    """True when x holds no NaN or inf (one reduction; the full check only if it fails)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(x)):
            return True
    return bool(np.isfinite(x).all())


def check_array(x, name, *, ndim=None, dtype=None, n_cols=None, n_rows=None,
                check_finite=True, copy=False) -> np.ndarray:
    """x as a C-contiguous float array, converted (copied) only when it must be.

    dtype: the float dtype wanted; None keeps float32 and makes anything else float64.
    Raises TypeError for non-numeric, complex or boolean input, ValueError for wrong
    ndim/shape, empty arrays and (with check_finite) NaN or inf.
    """
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as exc:  # noqa: BLE001 - ragged lists and the like
            raise TypeError(f"{name} cannot be converted to an array: {exc}") from None
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    if n_rows is not None and x.shape[0] != n_rows:
        raise ValueError(f"{name} has {x.shape[0]} rows, expected {n_rows}")
    if n_cols is not None and x.shape[-1] != n_cols:
        raise ValueError(f"{name} has {x.shape[-1]} columns (features), expected {n_cols}")
    want = data_dtype(x) if dtype is None else np.dtype(dtype)
    x = np.array(x, dtype=want, order="C", copy=True) if copy else \
        np.ascontiguousarray(x, dtype=want)
    if not x.flags.aligned or not x.dtype.isnative:
        # the kernels refuse these (a SIMD load could fault); a copy is always fine
        x = np.array(x, dtype=want.newbyteorder("="), order="C", copy=True)
    if check_finite and not all_finite(x):
        raise ValueError(f"{name} contains NaN or infinity")
    return x


def check_labels(y, name="y", *, n_samples=None, n_classes=None) -> np.ndarray:
    """Class labels as a C-contiguous intp array, each in [0, n_classes)."""
    y = np.asarray(y)
    if y.dtype.kind == "f":
        if not (np.all(np.isfinite(y)) and np.all(y == np.round(y))):
            raise TypeError(f"{name} must hold integer class labels, got non-integer floats")
    elif y.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.size == 0:
        raise ValueError(f"{name} is empty")
    if n_samples is not None and y.shape[0] != n_samples:
        raise ValueError(f"{name} has {y.shape[0]} labels but there are {n_samples} samples")
    upper = np.iinfo(np.intp).max if n_classes is None else n_classes - 1
    if y.min() < 0 or y.max() > upper:    # before the cast, which would wrap
        bad = y[(y < 0) | (y > upper)][0]
        raise ValueError(f"{name} contains label {bad}, outside [0, "
                         f"{'2**63' if n_classes is None else n_classes})")
    return np.ascontiguousarray(y, dtype=np.intp)


def check_binary_labels(y, name="y", *, values=(0, 1), shape=None, dtype=np.float64):
    """Binary labels (one per attribute) as a C-contiguous array of ``dtype``.

    Every entry must be one of the two ``values`` (0/1 or -1/+1); booleans are accepted
    for 0/1.  ``shape``: the exact shape required (that of the scores), if given.
    """
    if not isinstance(y, np.ndarray):
        try:
            y = np.asarray(y)
        except Exception as exc:  # noqa: BLE001 - ragged lists and the like
            raise TypeError(f"{name} cannot be converted to an array: {exc}") from None
    lo, hi = values
    if y.dtype.kind == "b":
        if (lo, hi) != (0, 1):
            raise TypeError(f"{name} must hold labels {lo} or {hi}, got booleans")
    elif y.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold labels {lo} or {hi}, got dtype {y.dtype}")
    if shape is not None and y.shape != tuple(shape):
        raise ValueError(f"{name} has shape {y.shape}, expected {tuple(shape)} "
                         "(one label per score)")
    if y.size == 0:
        raise ValueError(f"{name} is empty (shape {y.shape})")
    bad = ~((y == lo) | (y == hi))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}[{', '.join(map(str, idx))}] = {y[idx]}: labels must be "
                         f"{lo} or {hi}")
    return np.ascontiguousarray(y, dtype=dtype)


def check_positive_int(value, name, *, minimum=1) -> int:
    """value as an int >= minimum; TypeError for non-integers (bool included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_scalar(value, name, *, low=None, high=None, low_open=False,
                 high_open=False) -> float:
    """A finite real number within [low, high] (ends open when asked)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def check_random_state(seed: Any, name: str = "seed"
                       ) -> np.random.Generator | np.random.RandomState:
    """A random generator from None, an int, a SeedSequence, or a numpy Generator or
    RandomState (used as is).  Ints seed a new ``numpy.random.Generator``."""
    if isinstance(seed, (np.random.Generator, np.random.RandomState)):
        return seed
    if isinstance(seed, bool):
        raise TypeError(f"{name} must be None, an int or a numpy Generator, got bool")
    if seed is None or isinstance(seed, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(seed, numbers.Integral) and seed < 0:
            raise ValueError(f"{name} must be non-negative, got {seed}")
        return np.random.default_rng(seed)  # type: ignore[arg-type]  # Integral: an int
    raise TypeError(f"{name} must be None, an int or a numpy Generator, "
                    f"got {type(seed).__name__}")


def seed_to_uint64(seed, name="seed"):
    """A 64-bit integer seed for the kernels' counter-based generator."""
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        if not 0 <= seed < 2**64:
            raise ValueError(f"{name} must be in [0, 2**64), got {seed}")
        return int(seed)
    rng = check_random_state(seed, name)
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(0, 2**63 - 1, dtype=np.int64))
    return int(rng.integers(0, 2**63, dtype=np.int64))


def check_env_positive_int(text, var, *, minimum=1):
    """The integer that environment variable ``var`` holds (its value is ``text``), at
    least ``minimum``; ValueError naming the variable for anything else."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{var} must be an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"{var} must be an integer >= {minimum}, got {text!r}")
    return value


def check_shuffle(n, keep, n_epochs):
    """The arguments of shuffled_rows (compiled and twin): 0 < keep <= n < 2**32, and no
    more epochs at once than 2**31 entries of output."""
    if not 0 < n < 2**32:
        raise ValueError(f"n must be in [1, 2**32), got {n}")
    if not 0 < keep <= n:
        raise ValueError(f"keep must be in [1, n={n}], got {keep}")
    if not 0 <= n_epochs <= (1 << 31) // keep:
        raise ValueError(f"n_epochs must be in [0, 2**31 / keep], got {n_epochs} (the "
                         "batch order of that many epochs at once would not fit memory)")
