"""Model files and checkpoints: safetensors files that describe the net they hold.

A fastnn file is a `safetensors <https://github.com/huggingface/safetensors>`_ file: an
8-byte header length, a JSON header (every tensor's name, dtype, shape and byte range,
plus string -> string metadata) and the raw little-endian tensors.  Loading one parses
JSON and copies numbers; nothing in a file can run code (no pickle anywhere), and the
only classes ever instantiated are fastnn's own layers, regularizers, optimizers and
schedules, looked up by name in fixed tables.

Tensors (in the net's dtype):

``layers.<i>.<param>``
    every parameter of ``net.layers[i]``: ``W``, ``b`` (Linear, Maxout), ``gamma``,
    ``beta`` (BatchNorm), ``alpha`` (PReLU);
``layers.<i>.running_mean``, ``layers.<i>.running_var``
    a BatchNorm's running statistics;
``optimizer_state.<j>``
    (checkpoints) the j-th flat optimizer state array, e.g. a plan's Adam ``m`` and ``v``;
``loss_params.<name>``, ``loss_state.<j>``
    (checkpoints of a loss with parameters of its own, the hierarchical softmax) its
    parameters by name and their optimizer's flat state arrays.

Metadata (each value a string; the structured ones are JSON):

``format``: ``"fastnn"``; ``format_version``: ``"1"``; ``fastnn_version``: the writer's
version; ``kind``: ``"model"`` or ``"checkpoint"``; ``architecture``: the net's class,
dtype and every layer's class, constructor arguments (sizes, activation, alpha, k, p,
mode, seed, momentum, eps, input_grad, regularize_bias, the regularizer as a small JSON
description, dtype), training flag and state (a Dropout's ``step``); ``user_metadata``:
the caller's ``metadata`` dict; ``checkpoint`` (checkpoints only): step, epoch, the
optimizer's class and hyperparameters (schedule included), the names, shapes and dtypes
of the optimizer state arrays, the random generator's state and the caller's ``extra``
(and, only when there are any, the names, shapes and dtypes of the loss's parameters and
of their state arrays).

Writes are atomic: the bytes go to a temporary file in the target's directory, which is
flushed, fsynced and renamed over the target (then the directory is fsynced), so a
crash or a kill leaves either the old file or the new one, never a mix.  A temporary
``.<name>.*.tmp`` file may be left behind by a killed writer.

Loading checks the file against the architecture its header describes and raises a
ValueError naming the file and what is wrong: a truncated or corrupt file, a foreign
safetensors file (no fastnn metadata), a file from a newer fastnn, an unknown layer or
other class, a missing or unexpected tensor, a wrong shape or dtype.
"""
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, Union, overload

import numpy as np

from . import optim as _optim
from . import regularization as _reg
from ._validation import check_positive_int
from .layers import (BatchNorm, Dropout, LeakyReLU, Linear, Maxout, PReLU, ReLU, Sigmoid,
                     Tanh)
from .net import MLP, Sequential


class _Resumable(Protocol):
    """What Checkpoint.restore needs of a training plan (fastnn.plan's plans, a
    DataParallel)."""
    loss: Any
    optimizer: Any

    def set_state(self, state: Any, t: int, loss_state: Any = None) -> None: ...


_P = TypeVar("_P", bound=_Resumable)

#: A file name: str or os.PathLike (pathlib.Path)
PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["save", "load", "read_metadata", "save_checkpoint", "load_checkpoint",
           "Checkpoint", "generator_from_state", "FORMAT_VERSION"]

#: The file format this fastnn writes, and the newest it reads.
FORMAT_VERSION = 1
_FORMAT = "fastnn"
_DTYPE_CODES = {"float32": "F32", "float64": "F64"}          # numpy name -> safetensors
_DTYPE_NAMES = {v: k for k, v in _DTYPE_CODES.items()}

# ---- what may appear in a file: fixed tables, never an import by name ------------------

#: Layer classes by name, and the constructor arguments recorded for each (the
#: parameters themselves are tensors; weights are built as zeros, then overwritten).
_LAYERS = {
    "Linear": (Linear, ("n_in", "n_out", "activation", "alpha", "input_grad",
                        "regularizer", "regularize_bias", "dtype")),
    "Maxout": (Maxout, ("n_in", "n_out", "k", "input_grad", "dtype")),
    "ReLU": (ReLU, ("dtype",)),
    "LeakyReLU": (LeakyReLU, ("alpha", "dtype")),
    "Sigmoid": (Sigmoid, ("dtype",)),
    "Tanh": (Tanh, ("dtype",)),
    "PReLU": (PReLU, ("n_units", "dtype")),
    "Dropout": (Dropout, ("p", "mode", "seed", "dtype")),
    "BatchNorm": (BatchNorm, ("n_features", "momentum", "eps", "dtype")),
}
_LAYER_NAMES = {cls: name for name, (cls, _) in _LAYERS.items()}
#: State that is not a constructor argument: JSON integers, and extra tensors.
_LAYER_COUNTERS = {Dropout: ("step",)}
_LAYER_TENSORS = {BatchNorm: ("running_mean", "running_var")}
#: The JSON type each recorded argument must have.
_ARG_TYPES = {"n_in": "int", "n_out": "int", "k": "int", "n_units": "int",
              "n_features": "int", "seed": "int", "alpha": "number", "p": "number",
              "momentum": "number", "eps": "number", "activation": "str or null",
              "mode": "str", "input_grad": "bool", "regularize_bias": "bool",
              "dtype": "dtype", "regularizer": "regularizer"}
_NETS = {"Sequential": Sequential, "MLP": MLP}

_OPTIMIZERS = {cls.__name__: cls for cls in _optim.OPTIMIZERS.values()}
#: Hyperparameters recorded for each optimizer besides lr and the schedule.
_OPTIMIZER_ARGS = {"SGD": (), "Momentum": ("mu",), "Nesterov": ("mu",),
                   "Adagrad": ("eps",), "RMSProp": ("decay_rate", "eps"),
                   "Adam": ("beta1", "beta2", "eps")}
_SCHEDULES = {"Constant": (_optim.Constant, ()),
              "StepDecay": (_optim.StepDecay, ("rate", "every")),
              "ExponentialDecay": (_optim.ExponentialDecay, ("rate",)),
              "InverseTimeDecay": (_optim.InverseTimeDecay, ("rate",))}
_REGULARIZERS = {"L2": (_reg.L2, ("reg",)), "L1": (_reg.L1, ("reg",)),
                 "ElasticNet": (_reg.ElasticNet, ("l1", "l2")),
                 "MaxNorm": (_reg.MaxNorm, ("c",))}
#: Integer arrays a random generator's state may hold (MT19937's key).
_RNG_ARRAY_DTYPES = ("uint32", "uint64", "int32", "int64")
#: The bit generators a random state may name: numpy's own, by their class names.
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
#: The largest step and epoch counts (the plan counts steps in int64).
_MAX_COUNT = 2**63 - 1


def _safetensors():
    """The safetensors package, imported on first use (a dependency of fastnn; an
    environment installed before it was one may lack it)."""
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as exc:
        raise ImportError("fastnn model files need the safetensors package: "
                          "pip install safetensors") from exc
    return safetensors


def _json(value, name):
    """value as compact, standard JSON (no NaN/inf); TypeError/ValueError naming it."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except TypeError as exc:
        raise TypeError(f"{name} must hold only JSON data (dicts with str keys, lists, "
                        f"str, int, float, bool, None): {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{name} cannot be stored as JSON: {exc}") from None


def _user_dict(value, name):
    """None or a dict with string keys, as JSON text."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be None or a dict, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be strings, got {key!r}")
    return _json(value, name)


# ---- writing ---------------------------------------------------------------------------

def _regularizer_spec(r, where):
    if r is None:
        return None
    if r is _reg.NONE:
        return {"type": "NONE"}
    if type(r) is _reg.Combined:
        return {"type": "Combined", "parts": [_regularizer_spec(p, where) for p in r.parts]}
    for name, (cls, args) in _REGULARIZERS.items():
        if type(r) is cls:
            return {"type": name, **{a: getattr(r, a) for a in args}}
    raise TypeError(f"{where}: cannot save the regularizer {r!r}; a model file holds only "
                    f"fastnn's own ({', '.join(['NONE', 'Combined', *_REGULARIZERS])})")


def _architecture(net):
    """(architecture dict, {tensor name: array}) of a fastnn Sequential or MLP."""
    if type(net) not in (Sequential, MLP):
        raise TypeError(f"net must be a fastnn Sequential or MLP, got {type(net).__name__}"
                        " (a subclass may hold state a model file would not keep)")
    tensors, layers = {}, []
    for i, layer in enumerate(net.layers):
        cls = type(layer)
        if cls not in _LAYER_NAMES:
            raise TypeError(f"net.layers[{i}] is a {cls.__module__}.{cls.__qualname__}; a "
                            f"model file holds only fastnn's own layers ({', '.join(_LAYERS)})")
        name = _LAYER_NAMES[cls]
        args = {}
        for arg in _LAYERS[name][1]:
            value = getattr(layer, arg)
            if arg == "dtype":
                value = value.name
            elif arg == "regularizer":
                value = _regularizer_spec(value, f"net.layers[{i}].regularizer")
            elif isinstance(value, (np.integer, np.floating, np.bool_)):
                value = value.item()
            args[arg] = value
        entry = {"class": name, "args": args, "training": bool(layer.training)}
        counters = {c: int(getattr(layer, c)) for c in _LAYER_COUNTERS.get(cls, ())}
        if counters:
            entry["state"] = counters
        layers.append(entry)
        for pname, value in layer.params.items():
            tensors[f"layers.{i}.{pname}"] = value
        for tname in _LAYER_TENSORS.get(cls, ()):
            tensors[f"layers.{i}.{tname}"] = getattr(layer, tname)
    arch = {"class": type(net).__name__, "dtype": net.dtype.name, "layers": layers}
    if type(net) is MLP:
        arch["sizes"] = [int(s) for s in net.sizes]
        arch["activation"] = net.activation
    return arch, {k: np.ascontiguousarray(v) for k, v in tensors.items()}


def _header(kind, arch, metadata, checkpoint=None):
    from . import __version__
    header = {"format": _FORMAT, "format_version": str(FORMAT_VERSION),
              "fastnn_version": __version__, "kind": kind,
              "architecture": _json(arch, "the architecture"),
              "user_metadata": _user_dict(metadata, "metadata")}
    if checkpoint is not None:
        header["checkpoint"] = checkpoint
    return header


def _file_mode():
    """Permissions of a new file under the process umask (mkstemp's are 0o600); read
    from /proc where it can be, since os.umask can only be read by changing it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


def _atomic_write(path, data):
    """Write bytes to path atomically: a temporary file in the same directory, flushed
    and fsynced, then renamed over path; then the directory is fsynced (where the
    platform allows), so the rename itself survives a power loss."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path}: directory {directory} does not "
                                "exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = os.stat(path).st_mode & 0o7777      # keep an existing file's mode
        except OSError:
            mode = _file_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:                                      # Windows: no directory handles
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _write(path, tensors, header):
    st = _safetensors()
    path = _fspath(path)
    data = st.numpy.save(tensors, metadata=header)
    _atomic_write(path, data)


def _fspath(path):
    try:
        return os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") \
            from None


def save(net: Sequential, path: PathLike, *, metadata: dict[str, Any] | None = None) -> None:
    """Save a net (a fastnn Sequential or MLP) to `path` as a safetensors file.

    The file holds the weights, the architecture (every layer's class and constructor
    arguments, enough to rebuild the identical net), batch norm running statistics,
    dropout seeds and step counters, each layer's training flag, fastnn's version and
    ``metadata``: a dict of JSON data (for instance a label encoding), returned by
    :func:`load` (``with_metadata=True``) and :func:`read_metadata`.  The write is
    atomic (see the module docstring).  Optimizer state is not saved: see
    :func:`save_checkpoint`.

    Raises TypeError for a net, layer or regularizer that is not fastnn's own, and for
    metadata that is not JSON data.
    """
    arch, tensors = _architecture(net)
    _write(path, tensors, _header("model", arch, metadata))


# ---- checkpoints -----------------------------------------------------------------------

@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns.

    net : the rebuilt net (weights, batch norm statistics, dropout steps restored)
    optimizer : the optimizer rebuilt from its class and hyperparameters (schedule
        included), or None; a fresh object: its own ``step()`` state is not saved
    optimizer_state : tuple of the saved flat state arrays (e.g. a plan's ``state``)
    step, epoch : ints, as saved
    rng_state : a numpy ``bit_generator.state`` dict, or None; restore it with
        ``rng.bit_generator.state = checkpoint.rng_state``
    extra : the saved ``extra`` dict ({} when none was given)
    loss_params : {name: array} of a loss's own parameters (a hierarchical softmax's W
        and b), {} when none were saved
    loss_state : tuple of their optimizer's flat state arrays (a plan's ``loss_state``)
    """

    net: Sequential
    optimizer: Any = None
    optimizer_state: tuple[np.ndarray, ...] = ()
    step: int = 0
    epoch: int = 0
    rng_state: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    loss_params: dict[str, np.ndarray] = field(default_factory=dict)
    loss_state: tuple[np.ndarray, ...] = ()

    def restore(self, plan: _P) -> _P:
        """Put the optimizer state and step count into a training plan built for this
        checkpoint's net (``fastnn.plan.build_plan(checkpoint.net, ...)``): the state is
        copied into ``plan.state``'s arrays, which the plan keeps pointers to, and the
        step count set, so the next step is step ``self.step + 1`` with the schedule's
        rate and Adam's bias correction of that step.  A loss with parameters of its own
        (``plan.loss``) gets the saved ones and their optimizer state.  Returns the
        plan.  Everything is checked before anything is copied: a refusal (ValueError)
        leaves the plan and its loss as they were; so does a hierarchical softmax built
        on another tree than the one the checkpoint's ``extra`` records, and a plan whose
        optimizer is of another class than the checkpoint's (Momentum's velocity and
        RMSProp's cache, say, have one shape but do not mean the same)."""
        if self.optimizer is not None and type(plan.optimizer) is not type(self.optimizer):
            raise ValueError(f"the checkpoint's optimizer state is "
                             f"{type(self.optimizer).__name__}'s; the plan runs "
                             f"{type(plan.optimizer).__name__}")
        _check_loss_tree(plan.loss, self.extra)
        _resume_plan(plan, self.optimizer_state, self.step, plan.loss, self.loss_params,
                     self.loss_state)
        return plan


def _optimizer_spec(opt):
    name = type(opt).__name__
    if _OPTIMIZERS.get(name) is not type(opt):
        raise TypeError(f"optimizer must be one of fastnn's optimizers "
                        f"({', '.join(_OPTIMIZERS)}), got {type(opt).__module__}."
                        f"{type(opt).__qualname__}")
    sched = opt.schedule
    sname = type(sched).__name__
    if sname not in _SCHEDULES or _SCHEDULES[sname][0] is not type(sched):
        raise TypeError(f"optimizer.schedule must be one of fastnn's schedules "
                        f"({', '.join(_SCHEDULES)}), got {type(sched).__qualname__}")
    return {"class": name, "lr": float(opt.lr),
            "args": {a: float(getattr(opt, a)) for a in _OPTIMIZER_ARGS[name]},
            "schedule": {"class": sname,
                         **{a: getattr(sched, a) for a in _SCHEDULES[sname][1]}}}


def _rng_json(value):
    """A bit_generator.state dict as JSON data (numpy arrays and scalars converted)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"rng_state keys must be strings, got {k!r}")
            out[k] = _rng_json(v)
        return out
    if isinstance(value, np.ndarray):
        if value.dtype.name not in _RNG_ARRAY_DTYPES:
            raise TypeError(f"rng_state holds a {value.dtype} array; only integer arrays "
                            f"({', '.join(_RNG_ARRAY_DTYPES)}) are stored")
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.name}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_rng_json(v) for v in value]
    return value


def generator_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    """A numpy Generator in a saved ``bit_generator.state`` (a checkpoint's
    ``rng_state``).  The state must name one of numpy's bit generators (PCG64,
    PCG64DXSM, MT19937, Philox, SFC64) and be one that generator accepts; ValueError
    otherwise (a file names no other callable)."""
    name = state.get("bit_generator") if isinstance(state, Mapping) else None
    if not isinstance(name, str) or name not in _BIT_GENERATORS:
        raise ValueError(f"a random state must name one of numpy's bit generators "
                         f"({', '.join(_BIT_GENERATORS)}), got {name!r:.60}")
    bits = getattr(np.random, name)()
    try:
        bits.state = dict(state)
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"a {name} state numpy refuses: {exc}") from None
    return np.random.Generator(bits)


def _rng_from_json(value, where):
    if isinstance(value, dict):
        if set(value) == {"__ndarray__", "dtype"}:
            if value["dtype"] not in _RNG_ARRAY_DTYPES or \
                    not isinstance(value["__ndarray__"], list):
                raise ValueError(f"{where}: an rng_state array must be a list of integers "
                                 f"of dtype {', '.join(_RNG_ARRAY_DTYPES)}")
            try:
                return np.array(value["__ndarray__"], dtype=value["dtype"])
            except (TypeError, ValueError, OverflowError) as exc:
                raise ValueError(f"{where}: bad rng_state array: {exc}") from None
        return {k: _rng_from_json(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_rng_from_json(v, where) for v in value]
    return value


def _count(value, name):
    """A step or epoch count: an int in [0, 2**63 - 1]."""
    value = check_positive_int(value, name, minimum=0)
    if value > _MAX_COUNT:
        raise ValueError(f"{name} must be at most 2**63 - 1, got {value}")
    return value


def save_checkpoint(path: PathLike, net: Sequential, *, optimizer: Any = None,
                    optimizer_state: Any = None, step: int = 0, epoch: int = 0,
                    rng_state: np.random.Generator | Mapping[str, Any] | None = None,
                    extra: dict[str, Any] | None = None,
                    loss_params: Mapping[str, np.ndarray] | None = None,
                    loss_state: Any = None) -> None:
    """Save everything needed to resume training where it stopped, atomically.

    Parameters
    ----------
    path : str or os.PathLike
    net : a fastnn Sequential or MLP (saved as by :func:`save`)
    optimizer : None, a fastnn optimizer or its name; its class and hyperparameters
        (schedule included) are saved, and :func:`load_checkpoint` rebuilds it
    optimizer_state : None or a tuple of float arrays, e.g. a training plan's
        ``plan.state`` (Adam's flat m and v); with an optimizer, exactly
        ``optimizer.n_state`` of them
    step : int >= 0, updates made so far (a plan's ``plan.t``)
    epoch : int >= 0
    rng_state : None, a numpy Generator or its ``bit_generator.state`` dict (e.g. the
        generator that draws the minibatches)
    extra : None or a dict of JSON data
    loss_params : None or {name: float array} of a loss's own parameters (a hierarchical
        softmax's ``loss.params``), names letters, digits and underscores
    loss_state : None or a tuple of float arrays: their optimizer state (a plan's
        ``loss_state``)
    """
    arch, tensors = _architecture(net)
    opt = None if optimizer is None else _optim.get(optimizer)
    opt_spec = None if opt is None else _optimizer_spec(opt)
    if optimizer_state is None:
        optimizer_state = ()
    if isinstance(optimizer_state, np.ndarray) or \
            not isinstance(optimizer_state, (tuple, list)):
        raise TypeError("optimizer_state must be None or a tuple of arrays, got "
                        f"{type(optimizer_state).__name__}")
    if opt is not None and len(optimizer_state) not in (0, opt.n_state):
        raise ValueError(f"optimizer_state has {len(optimizer_state)} arrays but "
                         f"{type(opt).__name__} keeps {opt.n_state} {opt.state_names}")
    specs = _state_tensors(optimizer_state, "optimizer_state", tensors)
    if loss_state is None:
        loss_state = ()
    if isinstance(loss_state, np.ndarray) or not isinstance(loss_state, (tuple, list)):
        raise TypeError("loss_state must be None or a tuple of arrays, got "
                        f"{type(loss_state).__name__}")
    loss_specs = _state_tensors(loss_state, "loss_state", tensors)
    if loss_params is None:
        loss_params = {}
    if not isinstance(loss_params, Mapping):
        raise TypeError("loss_params must be None or a dict of arrays, got "
                        f"{type(loss_params).__name__}")
    for name in loss_params:
        if not (isinstance(name, str) and name.isidentifier() and name.isascii()):
            raise ValueError(f"loss_params names must be identifiers, got {name!r}")
    names = list(loss_params)
    loss_param_specs = _state_tensors([loss_params[k] for k in names], "loss_params",
                                      tensors, names)
    _check_loss_layout(loss_param_specs, loss_specs, opt, ValueError)
    for name, spec in zip(names, loss_param_specs):
        spec["name"] = name
    step = _count(step, "step")
    epoch = _count(epoch, "epoch")
    if isinstance(rng_state, np.random.Generator):
        rng_state = rng_state.bit_generator.state
    if rng_state is not None and not isinstance(rng_state, dict):
        raise TypeError("rng_state must be None, a numpy Generator or its "
                        f"bit_generator.state dict, got {type(rng_state).__name__}")
    if rng_state is not None:
        generator_from_state(rng_state)        # a state the file could not give back
    ckpt = {"step": step, "epoch": epoch, "optimizer": opt_spec,
            "optimizer_state": specs,
            "rng_state": None if rng_state is None else _rng_json(rng_state),
            "extra": json.loads(_user_dict(extra, "extra"))}
    if loss_param_specs or loss_specs:    # absent otherwise: older readers read the file
        ckpt["loss_params"] = loss_param_specs
        ckpt["loss_state"] = loss_specs
    _write(path, tensors, _header("checkpoint", arch, None, _json(ckpt, "the checkpoint")))


def _check_loss_layout(param_specs, state_specs, opt, error):
    """A loss's parameters and their optimizer state agree: one dtype for all, each
    state array as long as the parameters together, as many as the optimizer keeps (or
    none without an optimizer); no state without parameters.  error(message) makes the
    exception to raise."""
    if not param_specs:
        if state_specs:
            raise error("loss_state given without loss_params")
        return
    dtypes = {spec["dtype"] for spec in param_specs + state_specs}
    if len(dtypes) > 1:
        raise error(f"loss_params and loss_state mix dtypes {sorted(dtypes)}")
    size = sum(int(np.prod(spec["shape"], dtype=np.int64)) for spec in param_specs)
    for j, spec in enumerate(state_specs):
        if list(spec["shape"]) != [size]:
            raise error(f"loss_state[{j}] has shape {tuple(spec['shape'])}, not ({size},) "
                        "(the loss's parameters, flat)")
    if opt is not None and len(state_specs) != opt.n_state:
        raise error(f"loss_state has {len(state_specs)} arrays but {type(opt).__name__} "
                    f"keeps {opt.n_state} per parameter")


def _state_tensors(arrays, what, tensors, names=None):
    """Put float arrays into tensors as "<what>.<j>" (or "<what>.<name>"); their header
    specs, {"shape", "dtype"} each."""
    specs = []
    for j, a in enumerate(arrays):
        where = f"{what}[{j if names is None else repr(names[j])}]"
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{where} must be a numpy array, got {type(a).__name__}")
        if a.dtype.name not in _DTYPE_CODES:
            raise TypeError(f"{where} must be float32 or float64, got {a.dtype}")
        tensors[f"{what}.{j if names is None else names[j]}"] = np.ascontiguousarray(a)
        specs.append({"shape": list(a.shape), "dtype": a.dtype.name})
    return specs


def _check_loss_params(loss, saved):
    """Refuse a loss that does not have exactly the checkpoint's loss parameters (names,
    shapes, dtype).  Changes nothing."""
    own = getattr(loss, "params", None) or {}
    if not saved and not own:
        return
    if not saved:
        raise ValueError(f"the checkpoint holds no parameters for the loss, but the "
                         f"{type(loss).__name__} given has {sorted(own)}: it was not the "
                         "loss the checkpoint was trained with")
    if sorted(own) != sorted(saved):
        raise ValueError(f"the checkpoint holds loss parameters {sorted(saved)}, the loss "
                         f"given ({type(loss).__name__}) has {sorted(own) or 'none'}")
    for name, value in saved.items():
        if value.shape != own[name].shape or value.dtype != own[name].dtype:
            raise ValueError(f"the checkpoint's loss parameter {name} is {value.dtype} "
                             f"{value.shape}, the loss's is {own[name].dtype} "
                             f"{own[name].shape}: build the loss as the first run did")


def _loss_tree_extra(loss):
    """What a checkpoint's ``extra`` records of a hierarchical softmax: its tree as a
    pre-order walk (``loss_tree``; W's shape is the same for every tree over K classes,
    so the parameters alone cannot tell a resume on another tree).  {} for other losses."""
    from .losses import HierarchicalSoftmax
    return {"loss_tree": loss.preorder} if isinstance(loss, HierarchicalSoftmax) else {}


def _check_loss_tree(loss, extra, path=None):
    """Refuse a hierarchical softmax built on another tree than the checkpoint's.  A
    checkpoint without ``loss_tree`` (written before fastnn recorded it) is not checked;
    run after _check_loss_params, which has refused a loss without the saved weights."""
    from .losses import HierarchicalSoftmax, class_branches, compile_tree, tree_from_preorder
    saved = extra.get("loss_tree")
    if saved is None or not isinstance(loss, HierarchicalSoftmax) or saved == loss.preorder:
        return
    # another walk: a corrupt one, or another tree (then some class's path differs)
    try:
        _, _, codes, depths = compile_tree(tree_from_preorder(saved), loss.n_classes)
    except (ValueError, TypeError) as e:
        where = "" if path is None else f"{os.fspath(path)}: "
        raise ValueError(f"{where}corrupt checkpoint: its loss_tree is not a "
                         f"tree over {loss.n_classes} classes ({e})") from None
    theirs, ours = class_branches(codes, depths), loss.branches
    for c, (a, b) in enumerate(zip(theirs, ours)):
        if a != b:
            raise ValueError(f"the checkpoint's hierarchical softmax was trained on another "
                             f"tree: class {c}'s path from the root is {_cut(a)} there and "
                             f"{_cut(b)} in the loss given (L/R: left/right turns); build "
                             "the loss with the first run's tree")


def _cut(branch, keep=20):
    return repr(branch) if len(branch) <= keep else repr(branch[:keep]) + f"... ({len(branch)})"


def _resume_plan(plan, state, t, loss, loss_params, loss_state):
    """Everything checked first, then copied: a plan's optimizer state and step count,
    a loss's own parameters (None: leave the loss's as they are) and their optimizer
    state.  A refusal changes nothing."""
    if loss_params is not None:
        _check_loss_params(loss, loss_params)
    plan.set_state(state, t, loss_state)     # (checks every array before copying)
    if loss_params:
        loss.set_params(**loss_params)       # in place, so views stay valid


# ---- reading ---------------------------------------------------------------------------

class _File:
    """A fastnn file read and checked: its metadata and its tensors' raw entries."""

    def __init__(self, path):
        self.path = path = _fspath(path)
        with open(path, "rb") as f:
            data = f.read()
        self.meta = self._check_header(data)
        st = _safetensors()
        try:
            entries = st.deserialize(data)
        except st.SafetensorError as exc:
            raise ValueError(f"{path}: corrupt or truncated safetensors file ({exc})") \
                from None
        self.entries = dict(entries)

    def error(self, message):
        return ValueError(f"{self.path}: {message}")

    def _check_header(self, data):
        """The fastnn metadata of the file's header, after the checks that give a clear
        message (safetensors checks the tensors' byte ranges next)."""
        n = int.from_bytes(data[:8], "little") if len(data) >= 8 else None
        if n is None or n > len(data) - 8 or data[8:9] != b"{":
            # not a safetensors header: name what it is, when that is clear
            if data[:4] == b"PK\x03\x04":
                raise self.error("is a zip archive (an .npz?), not a fastnn model file; "
                                 "fastnn loads only safetensors files it wrote, never "
                                 "pickles")
            if data[:6] == b"\x93NUMPY":
                raise self.error("is a .npy file, not a fastnn model file")
            if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
                raise self.error("looks like a pickle, not a fastnn model file; fastnn "
                                 "never unpickles a file (that could run any code)")
        if n is None:
            raise self.error(f"truncated: {len(data)} bytes, not even the 8-byte header "
                             "length of a safetensors file")
        if n > len(data) - 8:
            raise self.error(f"truncated or not a safetensors file: the header length "
                             f"field says {n} bytes but only {len(data) - 8} follow")
        try:
            header = json.loads(data[8:8 + n].decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise self.error(f"corrupt header: not valid JSON ({exc})") from None
        if not isinstance(header, dict):
            raise self.error("corrupt header: not a JSON object")
        meta = header.get("__metadata__")
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise self.error("is a safetensors file but not one written by fastnn (no "
                             "fastnn metadata in its header)")
        version = meta.get("format_version")
        if not (isinstance(version, str) and version.isdigit()):
            raise self.error(f"corrupt header: format_version {version!r} is not a number")
        if int(version) > FORMAT_VERSION:
            raise self.error(f"written by a newer fastnn ({meta.get('fastnn_version')!r}) "
                             f"in file format {version}; this fastnn reads format "
                             f"{FORMAT_VERSION} at most: upgrade fastnn")
        ends = [e.get("data_offsets") for k, e in header.items()
                if k != "__metadata__" and isinstance(e, dict)]
        if all(isinstance(o, list) and len(o) == 2 and all(type(x) is int for x in o)
               for o in ends):
            need = max((o[1] for o in ends), default=0)
            if len(data) - 8 - n < need:
                raise self.error(f"truncated: the header describes {need} bytes of tensor "
                                 f"data, the file holds {len(data) - 8 - n}")
        for key in ("kind", "architecture", "user_metadata"):
            if not isinstance(meta.get(key), str):
                raise self.error(f"corrupt header: fastnn metadata lacks {key!r}")
        return meta

    def json(self, key):
        try:
            return json.loads(self.meta[key])
        except KeyError:
            raise self.error(f"corrupt header: fastnn metadata lacks {key!r}") from None
        except (ValueError, RecursionError) as exc:
            raise self.error(f"corrupt header: {key} is not valid JSON ({exc})") from None

    def check_tensors(self, expected):
        """Every tensor present with the expected (shape, dtype name), none other;
        returns {name: array} (new arrays, read-only views of the file's bytes)."""
        missing = [k for k in expected if k not in self.entries]
        if missing:
            raise self.error(f"tensor(s) missing: {', '.join(missing)} (the architecture "
                             "in the header needs them)")
        extra = sorted(set(self.entries) - set(expected))
        if extra:
            raise self.error(f"unexpected tensor(s) {', '.join(extra)}: not in the "
                             "architecture the header describes")
        arrays = {}
        for name, (shape, dtype) in expected.items():
            entry = self.entries[name]
            got = _DTYPE_NAMES.get(entry["dtype"], entry["dtype"])
            if got != dtype:
                raise self.error(f"tensor {name} has dtype {got}, the architecture says "
                                 f"{dtype}")
            if tuple(entry["shape"]) != tuple(shape):
                raise self.error(f"tensor {name} has shape {tuple(entry['shape'])}, the "
                                 f"architecture says {tuple(shape)}")
            arrays[name] = np.frombuffer(entry["data"], dtype=np.dtype(dtype).newbyteorder(
                "<")).reshape(shape)
        return arrays


def _zeros(fan_in, fan_out, rng, dtype):
    """Initializer of the rebuilt layers: their weights come from the file."""
    return np.zeros((fan_in, fan_out), dtype=dtype)


def _check_type(value, kind, where):
    ok = {"int": lambda v: type(v) is int,
          "number": lambda v: type(v) in (int, float),
          "bool": lambda v: type(v) is bool,
          "str": lambda v: type(v) is str,
          "str or null": lambda v: v is None or type(v) is str}[kind](value)
    if not ok:
        raise ValueError(f"{where} must be {'an' if kind == 'int' else 'a'} {kind}, got "
                         f"{value!r:.60}")
    return value


def _regularizer_from_spec(spec, where, nested=False):
    if spec is None and not nested:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ValueError(f"{where} must be null or an object with a \"type\"")
    kind = spec["type"]
    args = {k: v for k, v in spec.items() if k != "type"}
    if kind == "NONE" and not args:
        return _reg.NONE
    if kind == "Combined" and not nested and set(args) == {"parts"} and \
            isinstance(args["parts"], list):
        return _reg.Combined([_regularizer_from_spec(p, f"{where}.parts[{i}]", True)
                              for i, p in enumerate(args["parts"])])
    if kind == "Combined":
        raise ValueError(f"{where}: a Combined regularizer holds a \"parts\" list of "
                         "plain regularizers (not another Combined)")
    if kind not in _REGULARIZERS:
        raise ValueError(f"{where}: unknown regularizer {kind!r}; a fastnn file may name "
                         f"only {', '.join(['NONE', 'Combined', *_REGULARIZERS])}")
    cls, names = _REGULARIZERS[kind]
    if set(args) != set(names):
        raise ValueError(f"{where}: {kind} takes {list(names)}, the file gives "
                         f"{sorted(args)}")
    for a in names:
        _check_type(args[a], "number", f"{where}.{a}")
    return cls(**args)


def _build_layer(f, i, entry, dtype):
    where = f"architecture layers[{i}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("class"), str):
        raise f.error(f"{where} must be an object with a \"class\"")
    name = entry["class"]
    if name not in _LAYERS:
        raise f.error(f"{where}: unknown layer class {name!r}; a fastnn file may name only "
                      f"{', '.join(_LAYERS)}")
    cls, names = _LAYERS[name]
    allowed = {"class", "args", "training", "state"}
    if not set(entry) <= allowed:
        raise f.error(f"{where}: unexpected key(s) {sorted(set(entry) - allowed)}")
    args = entry.get("args")
    if not isinstance(args, dict) or set(args) != set(names):
        got = sorted(args) if isinstance(args, dict) else args
        raise f.error(f"{where}: {name} takes the arguments {list(names)}, the file gives "
                      f"{got!r:.200}")
    kwargs = {}
    try:
        for a in names:
            value, kind = args[a], _ARG_TYPES[a]
            if kind == "dtype":
                if value != dtype:
                    raise ValueError(f"dtype is {value!r}, the net's is {dtype!r}")
            elif kind == "regularizer":
                value = _regularizer_from_spec(value, "regularizer")
            else:
                _check_type(value, kind, a)
            kwargs[a] = value
        if cls in (Linear, Maxout):
            kwargs["init"] = _zeros
        layer = cls(**kwargs)
        training = entry.get("training", True)
        _check_type(training, "bool", "training")
        layer.train(training)
        state = entry.get("state", {})
        counters = _LAYER_COUNTERS.get(cls, ())
        if not isinstance(state, dict) or set(state) != set(counters):
            raise ValueError(f"state must be {{{', '.join(counters)}}}, got {state!r:.100}")
        for c in counters:
            setattr(layer, c, check_positive_int(_check_type(state[c], "int", c), c,
                                                 minimum=0))
    except (TypeError, ValueError) as exc:
        raise f.error(f"{where} ({name}): {exc}") from None
    return layer


def _build_net(f):
    """The net the file's architecture describes, with every tensor checked and copied
    in; also returns the checked {name: array} of all tensors (checkpoint ones too)."""
    arch = f.json("architecture")
    if not isinstance(arch, dict):
        raise f.error("architecture must be a JSON object")
    net_name = arch.get("class")
    if net_name not in _NETS:
        raise f.error(f"architecture: unknown net class {net_name!r}; a fastnn file may "
                      f"name only {', '.join(_NETS)}")
    dtype = arch.get("dtype")
    if dtype not in _DTYPE_CODES:
        raise f.error(f"architecture: dtype must be 'float32' or 'float64', got {dtype!r}")
    entries = arch.get("layers")
    if not isinstance(entries, list) or not entries:
        raise f.error("architecture: layers must be a non-empty list")
    layers = [_build_layer(f, i, e, dtype) for i, e in enumerate(entries)]
    net = object.__new__(_NETS[net_name])
    try:
        Sequential.__init__(net, layers)
        if net_name == "MLP":
            sizes, act = arch.get("sizes"), arch.get("activation")
            if not (isinstance(sizes, list) and all(type(s) is int for s in sizes)
                    and isinstance(act, str)):
                raise ValueError("an MLP needs sizes (a list of ints) and activation (a str)")
            net.sizes, net.activation = sizes, act
    except (TypeError, ValueError) as exc:
        raise f.error(f"architecture: {exc}") from None
    expected = {}
    for i, layer in enumerate(layers):
        for pname, value in layer.params.items():
            expected[f"layers.{i}.{pname}"] = (value.shape, dtype)
        for tname in _LAYER_TENSORS.get(type(layer), ()):
            expected[f"layers.{i}.{tname}"] = (getattr(layer, tname).shape, dtype)
    return net, expected


def _fill(net, arrays):
    for i, layer in enumerate(net.layers):
        for pname, value in layer.params.items():
            value[...] = arrays[f"layers.{i}.{pname}"]
        for tname in _LAYER_TENSORS.get(type(layer), ()):
            getattr(layer, tname)[...] = arrays[f"layers.{i}.{tname}"]


def _checkpoint_spec(f):
    if f.meta["kind"] != "checkpoint":
        raise f.error(f"is a fastnn {f.meta['kind']} file, not a checkpoint (load it with "
                      "fastnn.load)")
    ckpt = f.json("checkpoint")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("optimizer_state"), list):
        raise f.error("corrupt header: checkpoint must be an object with optimizer_state")
    expected = {}
    for key in ("optimizer_state", "loss_state", "loss_params"):
        specs = ckpt.get(key, [])
        if not isinstance(specs, list):
            raise f.error(f"corrupt header: checkpoint {key} must be a list")
        for j, spec in enumerate(specs):
            if not (isinstance(spec, dict) and isinstance(spec.get("shape"), list)
                    and all(type(s) is int and s >= 0 for s in spec["shape"])
                    and spec.get("dtype") in _DTYPE_CODES):
                raise f.error(f"corrupt header: checkpoint {key}[{j}] must give a "
                              "shape and a float dtype")
            name = j
            if key == "loss_params":
                name = spec.get("name")
                if not (isinstance(name, str) and name.isidentifier() and name.isascii()):
                    raise f.error(f"corrupt header: checkpoint loss_params[{j}] must have "
                                  "an identifier as its name")
                if f"{key}.{name}" in expected:
                    raise f.error(f"corrupt header: checkpoint loss_params name {name!r} "
                                  "given twice")
            expected[f"{key}.{name}"] = (tuple(spec["shape"]), spec["dtype"])
    return ckpt, expected


def _read(path, checkpoint):
    f = _File(path)
    net, expected = _build_net(f)
    ckpt = None
    if checkpoint or f.meta["kind"] == "checkpoint":
        ckpt, more = _checkpoint_spec(f)
        expected.update(more)
    elif f.meta["kind"] != "model":
        raise f.error(f"unknown kind {f.meta['kind']!r} of fastnn file")
    arrays = f.check_tensors(expected)
    _fill(net, arrays)
    return f, net, ckpt, arrays


@overload
def load(path: PathLike, *, with_metadata: Literal[False] = False) -> Sequential: ...
@overload
def load(path: PathLike, *,
         with_metadata: Literal[True]) -> tuple[Sequential, dict[str, Any]]: ...


def load(path: PathLike, *,
         with_metadata: bool = False) -> Sequential | tuple[Sequential, dict[str, Any]]:
    """Load a net saved by :func:`save` (or the net of a checkpoint).

    Returns a new net, identical to the saved one: same class (Sequential or MLP),
    layers, arguments, weights, batch norm statistics, dropout seeds and steps and
    training flags.  With ``with_metadata=True``, returns ``(net, metadata)``, the dict
    given to :func:`save` (it went through JSON: tuples come back as lists).

    Raises ValueError naming the file and the problem for anything but an intact fastnn
    file whose tensors match the architecture it describes (see the module docstring);
    FileNotFoundError for a missing file.  Only fastnn's own classes are instantiated
    and nothing is unpickled.
    """
    f, net, _, _ = _read(path, checkpoint=False)
    if with_metadata:
        return net, _user_metadata(f)
    return net


def _user_metadata(f):
    meta = f.json("user_metadata")
    if not isinstance(meta, dict):
        raise f.error("corrupt header: user_metadata must be a JSON object")
    return meta


def read_metadata(path: PathLike) -> dict[str, Any]:
    """The ``metadata`` dict saved with a model (checked as :func:`load` checks the
    whole file)."""
    f, _, _, _ = _read(path, checkpoint=False)
    return _user_metadata(f)


def _optimizer_from_spec(f, spec):
    where = "checkpoint optimizer"
    try:
        if not isinstance(spec, dict) or set(spec) != {"class", "lr", "args", "schedule"}:
            raise ValueError("must be an object with class, lr, args and schedule")
        name = spec["class"]
        if name not in _OPTIMIZERS:
            raise ValueError(f"unknown optimizer class {name!r}; a fastnn file may name "
                             f"only {', '.join(_OPTIMIZERS)}")
        args = spec["args"]
        if not isinstance(args, dict) or set(args) != set(_OPTIMIZER_ARGS[name]):
            raise ValueError(f"{name} takes {list(_OPTIMIZER_ARGS[name])}, the file gives "
                             f"{args!r:.100}")
        for a, v in args.items():
            _check_type(v, "number", a)
        sched = spec["schedule"]
        if not isinstance(sched, dict) or sched.get("class") not in _SCHEDULES:
            raise ValueError(f"unknown schedule {sched!r:.100}; a fastnn file may name "
                             f"only {', '.join(_SCHEDULES)}")
        scls, snames = _SCHEDULES[sched["class"]]
        sargs = {k: v for k, v in sched.items() if k != "class"}
        if set(sargs) != set(snames):
            raise ValueError(f"{sched['class']} takes {list(snames)}, the file gives "
                             f"{sorted(sargs)}")
        for a in snames:
            _check_type(sargs[a], "int" if a == "every" else "number", a)
        lr = _check_type(spec["lr"], "number", "lr")
        return _OPTIMIZERS[name](lr=lr, **args, schedule=scls(**sargs))
    except (TypeError, ValueError) as exc:
        raise f.error(f"{where}: {exc}") from None


def load_checkpoint(path: PathLike) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`: returns a
    :class:`Checkpoint` (net, optimizer, optimizer_state, step, epoch, rng_state,
    extra, loss_params, loss_state).  ``Checkpoint.restore(plan)`` puts the state into a
    plan built for its net.

    Raises ValueError as :func:`load` does, and for a model file (no optimizer state).
    """
    f, net, ckpt, arrays = _read(path, checkpoint=True)
    n_state = len(ckpt["optimizer_state"])
    state = tuple(np.array(arrays[f"optimizer_state.{j}"], dtype=spec["dtype"])
                  for j, spec in enumerate(ckpt["optimizer_state"]))
    loss_state = tuple(np.array(arrays[f"loss_state.{j}"], dtype=spec["dtype"])
                       for j, spec in enumerate(ckpt.get("loss_state", [])))
    loss_params = {spec["name"]: np.array(arrays[f"loss_params.{spec['name']}"],
                                          dtype=spec["dtype"])
                   for spec in ckpt.get("loss_params", [])}
    opt = None
    if ckpt.get("optimizer") is not None:
        opt = _optimizer_from_spec(f, ckpt["optimizer"])
        if n_state not in (0, opt.n_state):
            raise f.error(f"checkpoint holds {n_state} optimizer state arrays but "
                          f"{type(opt).__name__} keeps {opt.n_state}")
    _check_loss_layout(ckpt.get("loss_params", []), ckpt.get("loss_state", []), opt,
                       lambda msg: f.error(f"checkpoint: {msg}"))
    try:
        step = _count(_check_type(ckpt.get("step"), "int", "step"), "step")
        epoch = _count(_check_type(ckpt.get("epoch"), "int", "epoch"), "epoch")
    except (TypeError, ValueError) as exc:
        raise f.error(f"checkpoint: {exc}") from None
    extra = ckpt.get("extra")
    if not isinstance(extra, dict):
        raise f.error("checkpoint: extra must be a JSON object")
    rng = ckpt.get("rng_state")
    if rng is not None and not isinstance(rng, dict):
        raise f.error("checkpoint: rng_state must be a JSON object or null")
    try:
        rng = None if rng is None else _rng_from_json(rng, f"{f.path}: checkpoint rng_state")
    except RecursionError:
        raise f.error("checkpoint: rng_state is nested too deeply") from None
    if rng is not None:
        try:
            generator_from_state(rng)
        except ValueError as exc:
            raise f.error(f"checkpoint rng_state: {exc}") from None
    return Checkpoint(net=net, optimizer=opt, optimizer_state=state, step=step,
                      epoch=epoch, rng_state=rng, extra=extra, loss_params=loss_params,
                      loss_state=loss_state)
