"""Semantic accuracy for NL-RX: do two regexes denote the same language?

Exact string match undercounts: ``([a-z])|(dog)`` and ``(dog)|([a-z])`` are the same regex. NL-RX's
notation adds ``~(X)`` (complement: every string X does not match) and ``X&Y`` (intersection), which
Python's ``re`` lacks, so equivalence is decided on finite automata: each regex is parsed here into
a greenery 4.x ``Fsm`` (deterministic, with union, intersection, complement and star), and two
regexes are equivalent when their automata accept the same strings.

Grammar and precedence are those of the dk.brics automaton library that NL-RX's original
evaluation (Locascio et al. 2016) used, loosest first::

    union   := inter ('|' inter)*
    inter   := concat ('&' concat)*
    concat  := repeat*                       (empty = the empty string)
    repeat  := compl ('*' | '+' | '?' | '{n}' | '{n,}' | '{n,m}')*
    compl   := '~' compl | atom
    atom    := '(' union ')' | '[...]' | '.' | '\\' char | literal

``\\b`` (word boundary) is a zero-width assertion, not a character, and has no exact automaton
meaning inside ``~`` and ``&``; here it is read as a marker symbol that ``.`` and character classes
do not match. Two regexes then agree only if they also place their boundaries alike: a stricter
reading than the true one, so it can miss an equivalence but never invents one for regexes that
use ``\\b`` the way NL-RX does (around words). An unparsable regex is simply wrong.
"""

from __future__ import annotations

from functools import lru_cache

from jepalab.errors import MissingDependencyError

#: the symbol ``\b`` stands for (outside every character class and ``.``)
BOUNDARY = "\x00"
#: automata larger than this are not built (a generated regex like ``(.*){9,}&~(...)`` could blow up)
MAX_STATES = 20_000


class RegexSyntaxError(ValueError):
    """The regex is not in NL-RX's notation (unbalanced brackets, a dangling operator, ...)."""


def _greenery():
    try:
        from greenery import Charclass, fsm
    except ImportError as e:
        raise MissingDependencyError("the semantic checker needs greenery 4.x: "
                                     "pip install 'greenery>=4,<5' (or pip install -e '.[llm]').") from e
    return Charclass, fsm


class _Parser:
    """Recursive descent over one regex string, building greenery automata bottom-up."""

    def __init__(self, text: str) -> None:
        self.s, self.i = text, 0
        self.Charclass, self.fsm = _greenery()
        self.any = self.Charclass(BOUNDARY, negated=True)

    def parse(self):
        out = self.union()
        if self.i != len(self.s):
            raise RegexSyntaxError(f"unexpected {self.s[self.i]!r} at {self.i} in {self.s!r}")
        return out

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def take(self, ch: str) -> None:
        if self.peek() != ch:
            raise RegexSyntaxError(f"expected {ch!r} at {self.i} in {self.s!r}")
        self.i += 1

    def _check(self, m):
        if len(m.states) > MAX_STATES:
            raise RegexSyntaxError(f"automaton of {self.s!r} exceeds {MAX_STATES} states")
        return m

    def union(self):
        parts = [self.inter()]
        while self.peek() == "|":
            self.i += 1
            parts.append(self.inter())
        return parts[0] if len(parts) == 1 else self._check(self.fsm.Fsm.union(*parts).reduce())

    def inter(self):
        parts = [self.concat()]
        while self.peek() == "&":
            self.i += 1
            parts.append(self.concat())
        return parts[0] if len(parts) == 1 else self._check(self.fsm.Fsm.intersection(*parts).reduce())

    def concat(self):
        parts = []
        while self.peek() not in ("", "|", "&", ")"):
            parts.append(self.repeat())
        if not parts:
            return self.fsm.EPSILON
        return parts[0] if len(parts) == 1 else self._check(self.fsm.Fsm.concatenate(*parts).reduce())

    def _int(self) -> int:
        start = self.i
        while self.peek().isdigit():
            self.i += 1
        if start == self.i:
            raise RegexSyntaxError(f"expected a number at {start} in {self.s!r}")
        return int(self.s[start:self.i])

    def repeat(self):
        m = self.compl()
        while self.peek() in ("*", "+", "?", "{"):
            op = self.peek()
            self.i += 1
            if op == "*":
                m = m.star()
            elif op == "+":
                m = m + m.star()
            elif op == "?":
                m = m | self.fsm.EPSILON
            else:
                lo = self._int()
                hi: int | None = lo
                if self.peek() == ",":
                    self.i += 1
                    hi = self._int() if self.peek() != "}" else None
                self.take("}")
                if lo > 50 or (hi is not None and (hi < lo or hi > 50)):
                    raise RegexSyntaxError(f"repeat {{{lo},{hi}}} out of range in {self.s!r}")
                base = m.times(lo) if lo else self.fsm.EPSILON
                if hi is None:
                    m = base + m.star()
                else:
                    opt = m | self.fsm.EPSILON
                    m = base + opt.times(hi - lo) if hi > lo else base
            m = self._check(m.reduce())
        return m

    def compl(self):
        if self.peek() == "~":
            self.i += 1
            return self._check(self.compl().everythingbut().reduce())
        return self.atom()

    def atom(self):
        ch = self.peek()
        if ch == "(":
            self.i += 1
            m = self.union()
            self.take(")")
            return m
        if ch == "[":
            return self.fsm.from_charclass(self.charclass())
        if ch == ".":
            self.i += 1
            return self.fsm.from_charclass(self.any)
        if ch == "\\":
            return self.fsm.from_charclass(self.escape())
        if ch in ("", ")", "|", "&", "*", "+", "?", "{", "}", "]"):
            raise RegexSyntaxError(f"unexpected {ch or 'end'!r} at {self.i} in {self.s!r}")
        self.i += 1
        return self.fsm.from_charclass(self.Charclass(ch))

    def escape(self):
        self.i += 1
        ch = self.peek()
        if not ch:
            raise RegexSyntaxError(f"dangling backslash in {self.s!r}")
        self.i += 1
        from greenery.charclass import DIGIT, SPACECHAR, WORDCHAR
        named = {"b": self.Charclass(BOUNDARY), "d": DIGIT, "w": WORDCHAR, "s": SPACECHAR}
        return named.get(ch, self.Charclass(ch))

    def charclass(self):
        self.take("[")
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        ranges: list[tuple[str, str]] = []
        first = True
        while first or self.peek() != "]":
            first = False
            ch = self.peek()
            if not ch:
                raise RegexSyntaxError(f"unclosed '[' in {self.s!r}")
            if ch == "\\":
                self.i += 1
                ch = self.peek()
                if not ch:
                    raise RegexSyntaxError(f"dangling backslash in {self.s!r}")
            self.i += 1
            if self.peek() == "-" and self.i + 1 < len(self.s) and self.s[self.i + 1] != "]":
                hi = self.s[self.i + 1]
                if hi < ch:
                    raise RegexSyntaxError(f"bad range {ch}-{hi} in {self.s!r}")
                ranges.append((ch, hi))
                self.i += 2
            else:
                ranges.append((ch, ch))
        self.take("]")
        cls = self.Charclass(tuple(ranges))
        # a negated class still never matches the boundary marker (see the module docstring)
        return self.Charclass(tuple(ranges) + ((BOUNDARY, BOUNDARY),), negated=True) if negated else cls


@lru_cache(maxsize=8192)
def to_fsm(regex: str):
    """The minimal greenery ``Fsm`` of an NL-RX regex; :class:`RegexSyntaxError` if it does not parse."""
    try:
        return _Parser(regex).parse().reduce()
    except RecursionError:
        raise RegexSyntaxError(f"{regex[:60]!r} nests too deeply") from None


def is_valid(regex: str) -> bool:
    """Whether ``regex`` parses in NL-RX's notation."""
    try:
        to_fsm(regex)
        return True
    except RegexSyntaxError:
        return False


def equivalent(predicted: str, target: str) -> bool:
    """True when both regexes parse and denote the same language; an invalid one is never equal.
    An exact string match is accepted without building automata."""
    if predicted == target:
        return True  # semantic accuracy is never below exact match, whatever the parser thinks
    try:
        return bool(to_fsm(predicted).equivalent(to_fsm(target)))
    except RegexSyntaxError:
        return False


__all__ = ["equivalent", "is_valid", "to_fsm", "RegexSyntaxError", "BOUNDARY"]
