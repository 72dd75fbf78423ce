"""The worker protocol: plain data between the harness and a backend's process, never pickle.

A backend's process runs code the harness does not trust, so nothing it sends
may run code when read: unpickling a result whose ``__reduce__`` is
``os.system`` would run a command in the harness. Every message is a frame
(8-byte little-endian length, then the body); a body is a 4-byte length, a
JSON header and a payload of raw array bytes. An array travels as its bytes,
dtype name, byte order, shape and memory order; the reader checks the dtype
against a whitelist of numeric dtypes (and bfloat16), the shape against the
byte count and the bytes against the payload. A quantity whose description
does not check out becomes that quantity's error; a frame that does not
parse at all raises :class:`ProtocolError`. Messages (exceptions,
``NotSupported`` reasons) are capped at :data:`MESSAGE_LIMIT` characters on
both sides, so that a backend cannot blow up a results file.

Requests (harness to worker) use the same framing; the worker trusts the
harness, but plain data keeps the two directions alike. Expression trees
travel as nested JSON objects naming their :mod:`conformance.expr` node class.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Mapping, Sequence

import numpy as np

from conformance import expr as expr_module
from conformance.backend import FIRST_ORDER_KINDS, Model, NotSupported, Quantity, Request, numpy_dtype

__all__ = ["BackendInfo", "Reply", "ProtocolError", "MESSAGE_LIMIT", "MAX_FRAME_BYTES", "FRAME", "cap_message",
           "versions_dict", "VERSION_LIMIT",
           "frame", "unpack", "encode_requests", "decode_requests", "encode_reply", "decode_reply",
           "encode_info", "decode_info", "encode_close"]

#: Characters kept of a message from a backend (exception text, a NotSupported reason, a load failure).
MESSAGE_LIMIT = 2000
#: The largest frame either side accepts (results of this suite are kilobytes).
MAX_FRAME_BYTES = 256 * 2**20
FRAME = struct.Struct("<Q")
_HEAD = struct.Struct("<I")
_MAX_NDIM = 32
_REPLY_STATUSES = frozenset({"ok", "error", "not_supported"})  # crashed / timed_out are the harness's to say
#: dtype names an array may have on the wire: bool, every integer and floating/complex type of numpy, bfloat16.
NUMERIC_DTYPES = frozenset({np.dtype(c).name for c in "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"]}
                           | {"bfloat16"})
_EXPR_NODES = {cls.__name__: cls for cls in (expr_module.Name, expr_module.Const, expr_module.Neg,
                                             expr_module.BinOp, expr_module.Pow, expr_module.Transpose,
                                             expr_module.Call)}


class ProtocolError(Exception):
    """A frame that is not a well-formed message of this protocol."""


@dataclass(frozen=True)
class BackendInfo:
    name: str
    target: str
    source: str
    available: bool
    reason: str = ""
    description: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    dtypes: tuple[str, ...] = ()
    devices: tuple[str, ...] = ("cpu",)
    #: the quantity kinds the backend computes (contract 1.1; a 1.0 backend: value, gradient, jacobian)
    kinds: tuple[str, ...] = tuple(sorted(FIRST_ORDER_KINDS))


@dataclass(frozen=True)
class Reply:
    """``status``: ok | error | not_supported | crashed | timed_out. ``values`` maps quantity ids to
    arrays, or to ``("not_supported" | "error", message)`` for a quantity the backend declined."""

    status: str
    values: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0


def cap_message(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying so (a 1 MB exception message must not reach a results file)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [truncated, {len(text)} chars]"


#: the longest version text kept (a version is a short label; a longer one is cut, saying so)
VERSION_LIMIT = 200


def versions_dict(versions: Any) -> dict[str, str]:
    """A backend's ``versions()`` as the results schema wants it, text to text, whatever it returned: None is
    no versions, a mapping keeps its items (keys and values as text, each cut to :data:`VERSION_LIMIT`), any
    other value is the one version of the backend (``{"version": "1.5"}``). A backend is never made unusable, nor
    a results file invalid, by how it states its versions."""
    if versions is None:
        return {}
    if not isinstance(versions, Mapping):
        versions = {"version": versions}
    return {cap_message(str(k), VERSION_LIMIT): cap_message("" if v is None else str(v), VERSION_LIMIT)
            for k, v in versions.items()}


# ---------------------------------------------------------------------------- framing
def frame(header: Mapping[str, Any], payload: bytes = b"") -> bytes:
    """One message: frame length, header length, JSON header, payload."""
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    body_len = _HEAD.size + len(head) + len(payload)
    if body_len > MAX_FRAME_BYTES:
        raise ProtocolError(f"a message of {body_len} bytes exceeds the limit of {MAX_FRAME_BYTES}")
    return FRAME.pack(body_len) + _HEAD.pack(len(head)) + head + payload


def unpack(body: bytes) -> tuple[dict[str, Any], memoryview]:
    """(header, payload) of a frame's body; ProtocolError for anything that is not one."""
    if len(body) < _HEAD.size:
        raise ProtocolError("a message shorter than its header length")
    (n,) = _HEAD.unpack_from(body)
    if n > len(body) - _HEAD.size:
        raise ProtocolError(f"a header of {n} bytes in a message of {len(body)}")
    try:
        header = json.loads(bytes(body[_HEAD.size:_HEAD.size + n]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"the header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"the header is a JSON {type(header).__name__}, not an object")
    return header, memoryview(body)[_HEAD.size + n:]


# ---------------------------------------------------------------------------- arrays
def _put_array(a: np.ndarray, parts: list[bytes], offset: int) -> tuple[dict[str, Any], int]:
    fortran = a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous  # kept: the layout pickle kept
    raw = a.tobytes(order="F" if fortran else "C")
    parts.append(raw)
    desc = {"dtype": a.dtype.name, "order": a.dtype.str[0], "shape": [int(d) for d in a.shape],
            "fortran": fortran, "offset": offset, "nbytes": len(raw)}
    return desc, offset + len(raw)


def _wire_dtype(name: Any, order: Any) -> np.dtype:
    if not isinstance(name, str) or name not in NUMERIC_DTYPES:
        raise ValueError(f"dtype {str(name)[:40]!r} is not a numeric dtype")
    if name == "bfloat16":
        dt = numpy_dtype("bfloat16")
        if order != dt.str[0]:
            raise ValueError(f"bfloat16 in byte order {str(order)[:4]!r}")
        return dt
    dt = np.dtype(name)
    if order not in ("<", ">", "|") or (order == "|") != (dt.str[0] == "|"):
        raise ValueError(f"byte order {str(order)[:4]!r} for dtype {name}")
    return dt if order == "|" else dt.newbyteorder(order)


def _get_array(desc: Any, payload: memoryview) -> np.ndarray:
    """The array a description names, copied out of the payload; ValueError when it does not check out."""
    if not isinstance(desc, dict):
        raise ValueError("an array description that is not an object")
    dt = _wire_dtype(desc.get("dtype"), desc.get("order"))
    shape, offset, nbytes = desc.get("shape"), desc.get("offset"), desc.get("nbytes")
    if not isinstance(shape, list) or len(shape) > _MAX_NDIM or \
            not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError(f"shape {str(shape)[:80]} is not a list of at most {_MAX_NDIM} sizes")
    if type(offset) is not int or type(nbytes) is not int or offset < 0 or nbytes < 0 \
            or offset + nbytes > len(payload):
        raise ValueError(f"bytes {offset}+{nbytes} outside a payload of {len(payload)}")
    if math.prod(shape) * dt.itemsize != nbytes:
        raise ValueError(f"shape {tuple(shape)} of {dt.name} needs {math.prod(shape) * dt.itemsize} bytes, "
                         f"not {nbytes}")
    flat = np.frombuffer(payload[offset:offset + nbytes], dtype=dt)
    return flat.reshape(shape, order="F" if desc.get("fortran") is True else "C").copy(order="K")


# ---------------------------------------------------------------------------- expressions
def _encode_value(v: Any) -> Any:
    if isinstance(v, expr_module.Expr):
        return {"node": type(v).__name__,
                "fields": {f.name: _encode_value(getattr(v, f.name)) for f in dataclasses.fields(v)}}
    if isinstance(v, Fraction):
        return {"fraction": [v.numerator, v.denominator]}
    if isinstance(v, tuple):
        return {"tuple": [_encode_value(x) for x in v]}
    if v is None or isinstance(v, (str, int, float)):
        return v
    raise TypeError(f"cannot send a {type(v).__name__} in an expression")


def _decode_value(v: Any) -> Any:
    if isinstance(v, dict):
        if "node" in v:
            return _EXPR_NODES[v["node"]](**{k: _decode_value(x) for k, x in v["fields"].items()})
        if "fraction" in v:
            return Fraction(*v["fraction"])
        return tuple(_decode_value(x) for x in v["tuple"])
    return v


# ---------------------------------------------------------------------------- requests (harness -> worker)
@functools.lru_cache(maxsize=256)
def _encode_shared(m: Model, quantities: tuple[Quantity, ...]) -> dict[str, Any]:
    """The plain-data form of a model and its quantity list. Why cached: a run sends the same few models
    and lists with every request, and walking their trees was a tenth of a metamorphic check. Models and
    quantities are deeply frozen, so the cached value is that of any equal pair; it is only serialised."""
    return {"model": {"name": m.name, "layout": m.layout, "inputs": list(m.inputs),
                      "forward": [[n, _encode_value(e)] for n, e in m.forward], "loss": m.loss},
            "quantities": [{f.name: _encode_value(getattr(q, f.name)) for f in dataclasses.fields(q)}
                           for q in quantities]}


def encode_requests(requests: Sequence[Request]) -> bytes:
    """One frame with every request; models and quantity lists shared by several requests are sent once."""
    parts: list[bytes] = []
    offset = 0
    shared: dict[tuple[Model, tuple[Quantity, ...]], int] = {}
    shared_out: list[dict[str, Any]] = []
    out = []
    for r in requests:
        k = (r.model, tuple(r.quantities))
        if k not in shared:
            shared[k] = len(shared_out)
            shared_out.append(_encode_shared(*k))
        inputs = []
        for name, v in r.inputs.items():
            desc, offset = _put_array(np.asarray(v), parts, offset)
            inputs.append([name, desc])
        out.append({"shared": shared[k], "dtype": r.dtype, "device": r.device, "inputs": inputs})
    return frame({"op": "evaluate", "shared": shared_out, "requests": out}, b"".join(parts))


def encode_close() -> bytes:
    return frame({"op": "close"})


def decode_requests(header: Mapping[str, Any], payload: memoryview) -> list[Request]:
    """The requests of an ``evaluate`` frame (in the worker). Inputs are read-only: the backend's own copies."""
    shared = []
    for s in header["shared"]:
        m = s["model"]
        model = Model(m["name"], m["layout"], tuple(m["inputs"]),
                      tuple((n, _decode_value(e)) for n, e in m["forward"]), m["loss"])
        quantities = tuple(Quantity(**{k: _decode_value(v) for k, v in q.items()}) for q in s["quantities"])
        shared.append((model, quantities))
    out = []
    for r in header["requests"]:
        model, quantities = shared[r["shared"]]
        inputs = {}
        for name, desc in r["inputs"]:
            a = _get_array(desc, payload)
            a.flags.writeable = False
            inputs[name] = a
        out.append(Request(model, r["dtype"], inputs, quantities, r["device"]))
    return out


# ---------------------------------------------------------------------------- replies (worker -> harness)
def _result(key: str, value: Any, parts: list[bytes], offset: int) -> tuple[dict[str, Any], int]:
    if isinstance(value, NotSupported):
        return {"id": key, "declined": "not_supported", "message": cap_message(str(value))}, offset
    if isinstance(value, BaseException):
        return {"id": key, "declined": "error", "message": cap_message(f"{type(value).__name__}: {value}")}, offset
    try:
        a = np.asarray(value)
    except Exception as exc:
        return {"id": key, "declined": "error", "message": cap_message(
            f"result is not convertible with numpy.asarray: {type(exc).__name__}: {exc}")}, offset
    if a.dtype.name not in NUMERIC_DTYPES or a.dtype.fields is not None:
        return {"id": key, "declined": "error", "message": cap_message(
            f"result has dtype {a.dtype}: only numeric arrays (bool, integer, floating point, complex, "
            "bfloat16) are accepted")}, offset
    desc, offset = _put_array(a, parts, offset)
    return {"id": key, "array": desc}, offset


def encode_reply(reply: Reply) -> bytes:
    """A reply as one frame; each value becomes raw bytes or a capped message (in the worker)."""
    parts: list[bytes] = []
    offset = 0
    values = []
    for key, value in reply.values.items():
        entry, offset = _result(str(key), value, parts, offset)
        values.append(entry)
    return frame({"status": reply.status, "message": cap_message(reply.message), "seconds": reply.seconds,
                  "values": values}, b"".join(parts))


def decode_reply(header: Mapping[str, Any], payload: memoryview) -> Reply:
    """A worker's reply, checked: ProtocolError for a malformed envelope, an error value for a bad quantity."""
    status, message, seconds, entries = (header.get(k) for k in ("status", "message", "seconds", "values"))
    if status not in _REPLY_STATUSES or not isinstance(message, str) or not isinstance(entries, list):
        raise ProtocolError("the reply lacks a valid status, message or value list")
    ok_seconds = isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds) \
        and seconds >= 0
    values: dict[str, Any] = {}
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("id"), str):
            raise ProtocolError("a value without a quantity id")
        key = cap_message(e["id"], 200)
        if key in values:
            values[key] = ("error", "the backend returned this quantity twice")
            continue
        if "array" in e:
            try:
                values[key] = _get_array(e["array"], payload)
            except ValueError as exc:
                values[key] = ("error", cap_message(f"the backend's result cannot be read: {exc}"))
        elif e.get("declined") in ("not_supported", "error") and isinstance(e.get("message"), str):
            values[key] = (e["declined"], cap_message(e["message"]))
        else:
            values[key] = ("error", "the backend's result is neither an array nor a declined quantity")
    return Reply(status, values, cap_message(message), float(seconds) if ok_seconds else 0.0)


# ---------------------------------------------------------------------------- the worker's description
def encode_info(info: BackendInfo) -> bytes:
    return frame({"name": info.name, "available": info.available, "reason": cap_message(info.reason),
                  "description": cap_message(info.description), "versions": dict(info.versions),
                  "dtypes": list(info.dtypes), "devices": list(info.devices), "kinds": list(info.kinds)})


def _strings(v: Any, what: str) -> tuple[str, ...]:
    if not isinstance(v, list) or len(v) > 64 or not all(isinstance(s, str) for s in v):
        raise ProtocolError(f"{what} is not a list of strings")
    return tuple(cap_message(s, 200) for s in v)


def decode_info(header: Mapping[str, Any], target: str, source: str) -> BackendInfo:
    """The worker's description of its backend, checked (target and source are the harness's own)."""
    name, available, versions = header.get("name"), header.get("available"), header.get("versions")
    if not isinstance(name, str) or not isinstance(available, bool) or not isinstance(versions, dict) \
            or len(versions) > 64 or not all(isinstance(k, str) and isinstance(v, str) for k, v in versions.items()):
        raise ProtocolError("the backend's description lacks a valid name, availability or versions")
    texts = [header.get(k) for k in ("reason", "description")]
    if not all(isinstance(t, str) for t in texts):
        raise ProtocolError("the backend's reason or description is not a string")
    return BackendInfo(cap_message(name, 200), target, source, available, cap_message(texts[0]),
                       cap_message(texts[1]), {cap_message(k, 200): cap_message(v, 200) for k, v in versions.items()},
                       _strings(header.get("dtypes"), "dtypes"), _strings(header.get("devices"), "devices"),
                       _strings(header.get("kinds", sorted(FIRST_ORDER_KINDS)), "kinds"))
