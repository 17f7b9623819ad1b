"""What the viewer's page may ask for: one JSON object per WebSocket message, checked field by field.

A message is {"type": "render", "id": n, <view fields>} (every view field optional; a missing one
takes its default) or {"type": "info"}. A field of the wrong type, an unknown field, a number
that is not finite or a message that is not a JSON object raises ProtocolError, which the server
sends back as an error reply. Numbers out of range are clamped to it, and the reply names them.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace

__all__ = ["ProtocolError", "View", "Limits", "parse_message", "MAX_MESSAGE_CHARS", "MAX_SEED"]

MAX_MESSAGE_CHARS = 4096  # a render request is ~250 characters
MAX_SEED = 2**32 - 1  # numpy's and EG3D's seed range
MAX_REQUEST_ID = 2**53  # exact in JavaScript


class ProtocolError(ValueError):
    """A message the viewer cannot act on (the text says which field and why); request_id is
    the message's id when it had a valid one, so the page can match the reply to its request."""

    def __init__(self, message: str, request_id=None):
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True)
class Limits:
    """The ranges a view is clamped to; yaw and pitch are radians from the frontal view, zoom
    multiplies the focal length (2 halves the field of view)."""
    yaw: float = math.pi / 2
    pitch: float = math.pi / 3  # pi/2 + pitch stays away from the orbit's poles
    zoom: tuple = (0.5, 3.0)
    psi: tuple = (-1.0, 2.0)  # the range of EG3D's and StyleGAN3's visualizer
    num_ws: int = 1  # style mixing starts at a layer in [0, num_ws]


@dataclass(frozen=True)
class View:
    """One frame's settings. mix_seed's ws replace the base ws from layer mix_layer on;
    the base ws are (1 - interp_t) * ws(seed) + interp_t * ws(interp_seed)."""
    seed: int = 0
    psi: float = 0.7
    yaw: float = 0.0
    pitch: float = 0.0
    zoom: float = 1.0
    mix_seed: int | None = None
    mix_layer: int = 0
    interp_seed: int | None = None
    interp_t: float = 0.0
    depth: bool = True

    def to_json(self) -> dict:
        return asdict(self)


_INT_FIELDS = {"seed", "mix_seed", "interp_seed", "mix_layer"}
_OPTIONAL = {"mix_seed", "interp_seed"}
_BOOL_FIELDS = {"depth"}
_VIEW_FIELDS = {f.name for f in fields(View)}


def _number(name: str, value, integer: bool):
    # bool is an int in Python but never a number on the page.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"{name} must be a number, got {json.dumps(value)[:40]}")
    if not math.isfinite(value):
        raise ProtocolError(f"{name} must be finite, got {value}")
    if integer:
        if value != int(value):
            raise ProtocolError(f"{name} must be an integer, got {value}")
        return int(value)
    return float(value)


def _clamp(name: str, value, lo, hi, clamped: list):
    if value < lo or value > hi:
        clamped.append(name)
        return min(max(value, lo), hi)
    return value


def parse_view(message: dict, limits: Limits) -> tuple[View, list[str]]:
    """(View, names of the fields that were clamped) from a render message's fields."""
    unknown = sorted(set(message) - _VIEW_FIELDS - {"type", "id"})
    if unknown:
        raise ProtocolError(f"unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(_VIEW_FIELDS))}")
    values = {}
    for name in _VIEW_FIELDS & set(message):
        value = message[name]
        if name in _OPTIONAL and value is None:
            values[name] = None
        elif name in _BOOL_FIELDS:
            if not isinstance(value, bool):
                raise ProtocolError(f"{name} must be true or false, got {json.dumps(value)[:40]}")
            values[name] = value
        else:
            values[name] = _number(name, value, integer=name in _INT_FIELDS)
    view, clamped = replace(View(), **values), []
    for name in ("seed", "mix_seed", "interp_seed"):
        if getattr(view, name) is not None:
            values[name] = _clamp(name, getattr(view, name), 0, MAX_SEED, clamped)
    values["psi"] = _clamp("psi", view.psi, *limits.psi, clamped)
    values["yaw"] = _clamp("yaw", view.yaw, -limits.yaw, limits.yaw, clamped)
    values["pitch"] = _clamp("pitch", view.pitch, -limits.pitch, limits.pitch, clamped)
    values["zoom"] = _clamp("zoom", view.zoom, *limits.zoom, clamped)
    values["mix_layer"] = _clamp("mix_layer", view.mix_layer, 0, limits.num_ws, clamped)
    values["interp_t"] = _clamp("interp_t", view.interp_t, 0.0, 1.0, clamped)
    return replace(View(), **values), clamped


def parse_message(text, limits: Limits) -> dict:
    """A WebSocket text message -> {'type': 'info'} or {'type': 'render', 'id', 'view', 'clamped'}."""
    if not isinstance(text, str):
        raise ProtocolError("messages must be JSON text, not binary")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ProtocolError(f"message too long ({len(text)} characters, at most {MAX_MESSAGE_CHARS})")
    try:
        message = json.loads(text)
    except ValueError as error:
        raise ProtocolError(f"message is not JSON: {error}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"message must be a JSON object, got {type(message).__name__}")
    kind = message.get("type")
    if kind == "info":
        return {"type": "info"}
    if kind != "render":
        raise ProtocolError(f"type must be 'render' or 'info', got {json.dumps(kind)[:40]}")
    request_id = _number("id", message.get("id", 0), integer=True)
    if not 0 <= request_id <= MAX_REQUEST_ID:
        raise ProtocolError(f"id must be an integer in [0, 2**53], got {request_id}")
    try:
        view, clamped = parse_view(message, limits)
    except ProtocolError as error:
        raise ProtocolError(str(error), request_id) from None
    return {"type": "render", "id": request_id, "view": view, "clamped": clamped}
