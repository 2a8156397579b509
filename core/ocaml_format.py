"""A small pretty-printer with OCaml ``Format``'s line-breaking, for byte-exact output.

albatross-client prints its replies through OCaml's ``Format`` module (the Logs
reporter wraps every message in ``@[ ... @]@.`` on a 78-column formatter), so
where a long ``info`` line breaks depends on Format's algorithm, an Oppen-style
pretty-printer: tokens wait in a queue until the size of the material after a
break hint is known or exceeds the space left on the line.  Scripts compare
these lines, so we reproduce the algorithm (boxes, break hints, forced
newlines) rather than approximate it.  Pure: it writes into a string buffer.
The one OCaml Format engine of the project: the client's replies and log lines
and the CA toolkit's ``signing ...`` line (:func:`ca.describe.render`) both
break their lines here.

Only what albatross's printers use is here: ``Box`` (``@[``) and ``HovBox``
boxes, break hints (``@ ``, ``@,``), text, and ``newline`` (``@.``, which in
Format closes every box and starts afresh); and the few OCaml library printers
albatross's texts are made of (``%b``, ``String.escaped``, ``Ptime.pp_rfc3339``).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["BoxKind", "Formatter", "bool_text", "escaped", "rfc3339"]

_INFINITY = 1000000010


class BoxKind(enum.Enum):
    HBOX = "h"
    VBOX = "v"
    HVBOX = "hv"
    HOVBOX = "hov"
    BOX = "b"
    FITS = "fits"


@dataclass
class _Text:
    text: str


@dataclass
class _Break:
    width: int
    offset: int


@dataclass
class _Begin:
    indent: int
    kind: BoxKind


class _End:
    pass


class _Newline:
    pass


_Token = _Text | _Break | _Begin | _End | _Newline


@dataclass
class _Elem:
    size: int  # negative while unknown
    token: _Token
    length: int


@dataclass
class _Frame:
    kind: BoxKind
    width: int


@dataclass
class _Scan:
    left_total: int
    elem: _Elem


class Formatter:
    """OCaml's Format engine over a string buffer (margin 78, max indent 68)."""

    def __init__(self, margin: int = 78, max_indent: int = 68) -> None:
        self.margin = margin
        self.max_indent = max_indent
        self.out: list[str] = []
        self._is_new_line = True
        self._queue: deque[_Elem] = deque()
        self._scan: list[_Scan] = []
        self._format: list[_Frame] = []
        self._rinit()

    # -- output -------------------------------------------------------------

    def getvalue(self) -> str:
        return "".join(self.out)

    def _emit_newline(self) -> None:
        self.out.append("\n")

    # -- the engine ---------------------------------------------------------

    def _rinit(self) -> None:
        self._queue.clear()
        self._left_total = 1
        self._right_total = 1
        self._init_scan()
        self._format.clear()
        self._current_indent = 0
        self._depth = 0
        self._space_left = self.margin
        self.open_box(0, BoxKind.HOVBOX)

    def _init_scan(self) -> None:
        self._scan = [_Scan(-1, _Elem(-1, _Text(""), 0))]

    def _break_new_line(self, offset: int, width: int) -> None:
        self._emit_newline()
        self._is_new_line = True
        indent = self.margin - width + offset
        real_indent = min(self.max_indent, indent)
        self._current_indent = real_indent
        self._space_left = self.margin - real_indent
        self.out.append(" " * real_indent)

    def _break_same_line(self, width: int) -> None:
        self._space_left -= width
        self.out.append(" " * width)

    def _force_break_line(self) -> None:
        if not self._format:
            self._emit_newline()
            return
        top = self._format[-1]
        if top.width > self._space_left and top.kind not in (BoxKind.FITS, BoxKind.HBOX):
            self._break_new_line(0, top.width)

    def _format_token(self, size: int, token: _Token) -> None:
        if isinstance(token, _Text):
            self._space_left -= size
            self.out.append(token.text)
            self._is_new_line = False
        elif isinstance(token, _Begin):
            insertion_point = self.margin - self._space_left
            if insertion_point > self.max_indent:
                self._force_break_line()
            width = self._space_left - token.indent
            kind = token.kind
            if kind is not BoxKind.VBOX and size <= self._space_left:
                kind = BoxKind.FITS
            self._format.append(_Frame(kind, width))
        elif isinstance(token, _End):
            if self._format:
                self._format.pop()
        elif isinstance(token, _Newline):
            if self._format:
                self._break_new_line(0, self._format[-1].width)
            else:
                self._emit_newline()
        else:
            self._format_break(size, token)

    def _format_break(self, size: int, token: _Break) -> None:
        if not self._format:
            return
        frame = self._format[-1]
        kind = frame.kind
        if kind is BoxKind.HOVBOX:
            if size > self._space_left:
                self._break_new_line(token.offset, frame.width)
            else:
                self._break_same_line(token.width)
        elif kind is BoxKind.BOX:
            if self._is_new_line:
                self._break_same_line(token.width)
            elif size > self._space_left or (
                self._current_indent > self.margin - frame.width + token.offset
            ):
                self._break_new_line(token.offset, frame.width)
            else:
                self._break_same_line(token.width)
        elif kind in (BoxKind.HVBOX, BoxKind.VBOX):
            self._break_new_line(token.offset, frame.width)
        else:
            self._break_same_line(token.width)

    def _advance_left(self) -> None:
        while self._queue:
            elem = self._queue[0]
            pending = self._right_total - self._left_total
            if not (elem.size >= 0 or pending >= self._space_left):
                return
            self._queue.popleft()
            self._format_token(elem.size if elem.size >= 0 else _INFINITY, elem.token)
            self._left_total += elem.length

    def _enqueue(self, elem: _Elem) -> None:
        self._right_total += elem.length
        self._queue.append(elem)

    def _set_size(self, is_break: bool) -> None:
        top = self._scan[-1]
        if top.left_total < self._left_total:
            self._init_scan()
            return
        elem = top.elem
        is_box = isinstance(elem.token, _Begin)
        if (isinstance(elem.token, _Break) and is_break) or (is_box and not is_break):
            elem.size = self._right_total + elem.size
            self._scan.pop()

    def _scan_push(self, is_break: bool, elem: _Elem) -> None:
        self._enqueue(elem)
        if is_break:
            self._set_size(True)
        self._scan.append(_Scan(self._right_total, elem))

    # -- the API ------------------------------------------------------------

    def text(self, text: str) -> Formatter:
        """Print *text* as one unbreakable piece (``pp_print_string``)."""
        self._enqueue(_Elem(len(text), _Text(text), len(text)))
        self._advance_left()
        return self

    def brk(self, width: int = 1, offset: int = 0) -> Formatter:
        """A break hint: *width* spaces, or a newline indented by *offset* (``@ `` is 1, 0)."""
        self._scan_push(True, _Elem(-self._right_total, _Break(width, offset), width))
        return self

    def open_box(self, indent: int = 0, kind: BoxKind = BoxKind.BOX) -> Formatter:
        self._depth += 1
        self._scan_push(False, _Elem(-self._right_total, _Begin(indent, kind), 0))
        return self

    def close_box(self) -> Formatter:
        if self._depth > 1:
            self._enqueue(_Elem(0, _End(), 0))
            self._set_size(True)
            self._set_size(False)
            self._depth -= 1
        return self

    def force_newline(self) -> Formatter:
        """``pp_force_newline``: break the line in the current box."""
        self._enqueue(_Elem(0, _Newline(), 0))
        self._advance_left()
        return self

    def newline(self) -> Formatter:
        """``@.``: close every box, print everything, end the line, start afresh."""
        while self._depth > 1:
            self.close_box()
        self._right_total = _INFINITY
        self._advance_left()
        self._emit_newline()
        self._rinit()
        return self

    def words(self, text: str) -> Formatter:
        """Text whose spaces are break hints (``Fmt.text``); newlines are forced breaks."""
        for i, line in enumerate(text.split("\n")):
            if i:
                self.force_newline()
            for j, word in enumerate(line.split(" ")):
                if j:
                    self.brk()
                if word:
                    self.text(word)
        return self


# -- OCaml library printers ------------------------------------------------------


def bool_text(value: bool) -> str:
    """OCaml's ``%b``."""
    return "true" if value else "false"


def rfc3339(ts: datetime) -> str:
    """``Ptime.pp_rfc3339 ()``: whole seconds in UTC, offset written ``-00:00``."""
    utc = ts.astimezone(UTC) if ts.tzinfo else ts
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + "-00:00"


def escaped(line: str) -> str:
    """OCaml ``String.escaped`` of the line's octets (console lines, since albatross 2.7.0)."""
    out: list[str] = []
    specials = {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r", 0x08: "\\b"}
    for octet in line.encode("utf-8", "surrogateescape"):
        if octet in specials:
            out.append(specials[octet])
        elif 0x20 <= octet <= 0x7E:
            out.append(chr(octet))
        else:
            out.append(f"\\{octet:03d}")
    return "".join(out)
