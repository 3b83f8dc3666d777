"""What the src_c/*.tp templates render with (setup.py passes these names in).

A template lists functions once each, as prototypes with T for the element type:

    void act_forward(const T* x, T* y, Py_ssize_t n, int act, T alpha)

A prototype may go on over several lines; "as NAME" after it names the function
generated for it; "#" lines above it are copied above what is generated for it.
The builders below return the pieces of Cython code a template lays out, argument
lists wrapped under their opening parenthesis.
"""
import re

WIDTH = 92              # the longest line generated, like the hand-written .pxd files


class Prototype:
    def __init__(self, ret, name, args, alias, comment):
        self.ret = ret                # return type (may be T)
        self.name = name
        self.args = args              # [(type, name)]
        self.alias = alias            # the name given with "as", or None
        self.comment = comment        # the "#" lines above it, each ending in "\n"


def prototypes(text):
    out, comment, pending = [], "", ""
    for line in text.strip().splitlines():
        line = line.strip()
        if line.startswith("#"):
            comment += line + "\n"
            continue
        pending = (pending + " " + line).strip()
        if pending.count("(") > pending.count(")"):
            continue                  # the prototype goes on on the next line
        m = re.fullmatch(r"(\w+) (\w+)\((.*)\)(?: as (\w+))?", pending)
        if m is None:
            raise ValueError(f"not a prototype: {pending!r}")
        ret, name, arglist, alias = m.groups()
        args = [tuple(a.strip().rsplit(" ", 1)) for a in arglist.split(",")]
        out.append(Prototype(ret, name, args, alias, comment))
        comment, pending = "", ""
    return out


def typed(text, t):
    """text with the element type T written as t."""
    return re.sub(r"\bT\b", t, text)


def call(head, items, indent=0, tail=""):
    """head(item, item, ...)tail, indented, wrapped at WIDTH under the parenthesis."""
    lines, line = [], " " * indent + head + "("
    pad = " " * len(line)
    for i, item in enumerate(items):
        item += ", " if i < len(items) - 1 else ")" + tail
        if len(line) + len(item.rstrip()) > WIDTH and not line.endswith("("):
            lines.append(line.rstrip())
            line = pad
        line += item
    lines.append(line)
    return "\n".join(lines)


def fused_wrappers(text):
    """_loops.pxd.tp: for each prototype of C functions fnn_<name>_f32 / _f64, their
    extern declarations and a fused-type wrapper <name> (or its alias) calling them."""
    out = []
    for p in prototypes(text):
        names = [n for _, n in p.args]
        w = {"comment": p.comment}
        for t, suffix in (("float", "f32"), ("double", "f64")):
            c_name = f"fnn_{p.name}_{suffix}"
            w["extern_" + suffix] = call(f"{typed(p.ret, t)} {c_name}",
                                         [typed(f"{ty} {n}", t) for ty, n in p.args], 4)
            w["call_" + suffix] = call(("" if p.ret == "void" else "return ") + c_name,
                                       names, 8)
        w["head"] = call(f"cdef inline {typed(p.ret, 'floating')} {p.alias or p.name}",
                         [typed(f"{ty} {n}", "floating") for ty, n in p.args], 0,
                         " noexcept nogil:")
        out.append(w)
    return out


def dtype_dispatchers(cores):
    """_dispatch.pxd.tp: for cores, [(module, prototypes of its fused-type functions)],
    the cimports of those functions, and for each a function <name>_any (<name> less
    "_core", or the alias) that takes the NumPy type number, T* arguments as void* and T
    scalars as double, and calls <name>[float] or <name>[double]: the call converts
    each double to its parameter's type, as a <float> cast would."""
    out = {"cimports": [], "functions": []}
    for module, text in cores:
        protos = prototypes(text)
        names = sorted(p.name for p in protos)
        line = f"from {module} cimport {', '.join(names)}"
        out["cimports"].append(line if len(line) <= WIDTH
                               else call(f"from {module} cimport ", names))
        for p in protos:
            params = ["int typenum"]
            for ty, n in p.args:
                params.append(f"{ty.replace('T*', 'void*')} {n}" if "T*" in ty
                              else f"{typed(ty, 'double')} {n}")
            name = p.alias or p.name.removesuffix("_core") + "_any"
            f = {"comment": p.comment,
                 "head": call(f"cdef inline {typed(p.ret, 'double')} {name}", params, 0,
                              " noexcept nogil:")}
            for t, suffix in (("float", "f32"), ("double", "f64")):
                f["call_" + suffix] = call(("" if p.ret == "void" else "return ")
                                           + f"{p.name}[{t}]",
                                           [f"<{typed(ty, t)}>{n}" if "T*" in ty else n
                                            for ty, n in p.args], 8)
            out["functions"].append(f)
    return out
