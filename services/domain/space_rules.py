"""Rules of a configuration space: conditions every allowed configuration satisfies, so that
combinations that cannot exist (fp8 on a GPU without an fp8 path, more GPU memory than the
device has) are never proposed. Written in the space file as a small Python-like language:

    rules:
      - "not (precision == 'fp8' and gputype in ['T4', 'A10G', 'A100'])"
      - "replicas <= cpus"
      - "gputype == 'none' or gpumem >= replicas"

Grammar (a subset of Python expressions; ``a < b < c`` chains as in Python):

    cond  := cond 'or' cond | cond 'and' cond | 'not' cond | '(' cond ')' | term (cmp term)+
    cmp   := '==' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | 'not in'   (in: a literal list on the right)
    term  := knob | number | 'string' | term ('+' | '-' | '*' | '/') term | '-' term | '(' term ')'

Safety: the text goes through ``ast.parse(mode="eval")`` and only a whitelist of node types is
compiled into the small evaluator below; user text is never eval'd, exec'd or compiled to
bytecode, and the only names are knobs. A rule is evaluated vectorised on value indices
(one row per configuration, one column per knob) so 10^5 candidates are filtered at once.

:class:`SpaceError` lives here (re-exported by :mod:`services.domain.space`) so that the two
modules do not import each other.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

MAX_RULE_CHARS = 500

_CMP_OPS: dict[type, str] = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
                             ast.GtE: ">=", ast.In: "in", ast.NotIn: "not in"}
_ARITH_OPS: dict[type, Any] = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
                               ast.Div: np.true_divide}
_ORDER_FNS: dict[str, Any] = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
                              ">": np.greater, ">=": np.greater_equal}
_FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_REFUSED: dict[type, str] = {ast.Call: "function calls", ast.Attribute: "attribute access",
                             ast.Subscript: "indexing", ast.Lambda: "lambdas", ast.IfExp: "if-expressions",
                             ast.NamedExpr: "assignments", ast.JoinedStr: "f-strings",
                             ast.ListComp: "comprehensions", ast.GeneratorExp: "comprehensions",
                             ast.SetComp: "comprehensions", ast.DictComp: "comprehensions"}


class SpaceError(ValueError):
    """A space file or configuration that does not fit the declared space."""


class _KnobLike(Protocol):
    name: str
    values: tuple[Any, ...]
    kind: str

    def index_of(self, value: Any) -> int: ...


# -- compiled nodes ---------------------------------------------------------------------------
# Terms evaluate to an array (one value per row) or a scalar; conditions to a bool array.

class _Term:
    type: str          # "num" | "str" | "mixed" (a categorical knob mixing numbers and strings)

    def ev(self, idx: np.ndarray) -> Any:
        raise NotImplementedError


class _KnobTerm(_Term):
    def __init__(self, col: int, knob: _KnobLike) -> None:
        self.col, self.knob = col, knob
        strs = [isinstance(v, str) for v in knob.values]
        self.type = "str" if all(strs) else "num" if not any(strs) else "mixed"
        self.table = None if self.type == "mixed" else \
            np.array(knob.values, dtype=str if self.type == "str" else float)

    def ev(self, idx: np.ndarray) -> np.ndarray:
        assert self.table is not None
        return self.table[idx[:, self.col]]


class _Const(_Term):
    def __init__(self, value: str | int | float) -> None:
        self.value = value
        self.type = "str" if isinstance(value, str) else "num"

    def ev(self, idx: np.ndarray) -> Any:
        return self.value


class _Arith(_Term):
    type = "num"

    def __init__(self, fn: Any, left: _Term, right: _Term | None) -> None:
        self.fn, self.left, self.right = fn, left, right

    def ev(self, idx: np.ndarray) -> Any:
        if self.right is None:
            return self.fn(self.left.ev(idx))
        with np.errstate(divide="ignore", invalid="ignore"):   # x/0 -> inf or nan: comparisons are False
            return self.fn(self.left.ev(idx), self.right.ev(idx))


class _Cond:
    def ev(self, idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _Member(_Cond):
    """knob == / != / in / not in literal(s): a test on the value indices (numbers match as the
    space matches them, 1 == 1.0)."""

    def __init__(self, col: int, indices: Sequence[int], negate: bool) -> None:
        self.col, self.indices, self.negate = col, np.array(sorted(set(indices)), dtype=np.int64), negate

    def ev(self, idx: np.ndarray) -> np.ndarray:
        hit = np.isin(idx[:, self.col], self.indices)
        return ~hit if self.negate else hit


class _Compare(_Cond):
    def __init__(self, op: str, left: _Term, right: _Term) -> None:
        self.fn, self.left, self.right = _ORDER_FNS[op], left, right

    def ev(self, idx: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.broadcast_to(self.fn(self.left.ev(idx), self.right.ev(idx)), (len(idx),))


class _In(_Cond):
    def __init__(self, left: _Term, values: Sequence[Any], negate: bool) -> None:
        self.left, self.values, self.negate = left, np.array(values), negate

    def ev(self, idx: np.ndarray) -> np.ndarray:
        hit = np.isin(self.left.ev(idx), self.values)
        return ~hit if self.negate else hit


class _Logic(_Cond):
    def __init__(self, op: str, parts: Sequence[_Cond]) -> None:
        self.op, self.parts = op, tuple(parts)

    def ev(self, idx: np.ndarray) -> np.ndarray:
        if self.op == "not":
            return ~self.parts[0].ev(idx)
        reduce = np.logical_and if self.op == "and" else np.logical_or
        out = self.parts[0].ev(idx)
        for p in self.parts[1:]:
            out = reduce(out, p.ev(idx))
        return out


# -- the rule -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """One parsed rule, bound to the knobs it was parsed against. Equal rules have equal text."""
    text: str
    knobs: tuple[Any, ...] = field(compare=False, repr=False)
    root: _Cond = field(compare=False, repr=False)

    def allows_indices(self, idx: np.ndarray) -> np.ndarray:
        """Vectorised: ``idx`` has one row per configuration and one column of value indices per
        knob (the space's knob order); returns one bool per row."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.ndim != 2 or idx.shape[1] != len(self.knobs):
            raise SpaceError(f"rule {self.text!r}: expected value indices of shape (n, {len(self.knobs)}), "
                             f"got {idx.shape}")
        return np.asarray(self.root.ev(idx), dtype=bool)

    def allows(self, config: Mapping[str, Any]) -> bool:
        """The rule on one configuration (knob name -> value)."""
        try:
            row = [k.index_of(config[k.name]) for k in self.knobs]
        except KeyError as exc:
            raise SpaceError(f"rule {self.text!r}: configuration lacks knob {exc.args[0]!r}") from None
        return bool(self.allows_indices(np.array([row]))[0])


def parse_rule(text: str, space: Any) -> Rule:
    """Parses and checks one rule against a space (a ``Space`` or a sequence of its knobs);
    every mistake is a one-line :class:`SpaceError` that quotes the rule."""
    knobs: tuple[_KnobLike, ...] = tuple(getattr(space, "knobs", space))
    if not isinstance(text, str) or not text.strip():
        raise SpaceError(f"a rule must be a non-empty string, not {text!r}")
    text = text.strip()
    if len(text) > MAX_RULE_CHARS:
        raise SpaceError(f"rule {text[:40]!r}...: longer than {MAX_RULE_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise SpaceError(f"rule {text!r}: syntax error at column {exc.offset}: {exc.msg}") from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise SpaceError(f"rule {text!r}: cannot be parsed ({type(exc).__name__})") from None
    try:
        root = _Compiler(text, knobs).cond(tree.body)
    except RecursionError:
        raise SpaceError(f"rule {text[:40]!r}...: nested too deeply") from None
    return Rule(text, knobs, root)


class _Compiler:
    def __init__(self, text: str, knobs: tuple[_KnobLike, ...]) -> None:
        self.text, self.knobs = text, knobs
        self.cols = {k.name: i for i, k in enumerate(knobs)}

    def fail(self, what: str) -> SpaceError:
        return SpaceError(f"rule {self.text!r}: {what}")

    def refuse(self, node: ast.AST) -> SpaceError:
        what = _REFUSED.get(type(node), type(node).__name__)
        return self.fail(f"{what} not allowed (a rule uses knobs, numbers, 'strings', comparisons, "
                         "and/or/not, + - * /)")

    # conditions
    def cond(self, node: ast.AST) -> _Cond:
        if isinstance(node, ast.BoolOp):
            return _Logic("and" if isinstance(node.op, ast.And) else "or", [self.cond(v) for v in node.values])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return _Logic("not", [self.cond(node.operand)])
        if isinstance(node, ast.Compare):
            terms = [node.left, *node.comparators]
            pairs = [self.compare(type(op), terms[i], terms[i + 1]) for i, op in enumerate(node.ops)]
            return pairs[0] if len(pairs) == 1 else _Logic("and", pairs)
        if isinstance(node, (ast.Name, ast.Constant, ast.BinOp, ast.UnaryOp)):
            self.term(node)   # reports an unknown knob or bad literal first
            raise self.fail(f"{ast.unparse(node)!r} is a value, not a condition (compare it: ==, <, in, ...)")
        raise self.refuse(node)

    def compare(self, op_type: type, lhs: ast.AST, rhs: ast.AST) -> _Cond:
        if op_type not in _CMP_OPS:
            raise self.fail(f"comparison {op_type.__name__} not allowed")
        op = _CMP_OPS[op_type]
        if op in ("in", "not in"):
            return self.membership(lhs, rhs, op == "not in")
        left, right = self.term(lhs), self.term(rhs)
        if isinstance(left, _Const) and isinstance(right, _Const):
            raise self.fail(f"{ast.unparse(lhs)} {op} {ast.unparse(rhs)} compares no knob")
        if isinstance(left, _Const):                      # 'T4' == gputype -> gputype == 'T4'
            left, right, op = right, left, _FLIPPED[op]
        if op in ("==", "!=") and isinstance(left, _KnobTerm) and isinstance(right, _Const):
            return _Member(left.col, [self.value_index(left, right.value)], op == "!=")
        if "mixed" in (left.type, right.type):
            raise self.fail("a knob that mixes numbers and strings can only be compared with ==, != or in "
                            "against its values")
        if op not in ("==", "!=") and "str" in (left.type, right.type):
            raise self.fail(f"{op} orders numbers; {self.describe(left if left.type == 'str' else right)} "
                            "is a string")
        if left.type != right.type:
            raise self.fail(f"{self.describe(left)} and {self.describe(right)} are not both numbers or "
                            "both strings")
        return _Compare(op, left, right)

    def membership(self, lhs: ast.AST, rhs: ast.AST, negate: bool) -> _Cond:
        if not isinstance(rhs, (ast.List, ast.Tuple, ast.Set)):
            raise self.fail("'in' needs a literal list on its right, e.g. gputype in ['T4', 'L4']")
        values = [self.literal(e) for e in rhs.elts]
        left = self.term(lhs)
        if isinstance(left, _KnobTerm):
            return _Member(left.col, [self.value_index(left, v) for v in values], negate)
        if isinstance(left, _Const):
            raise self.fail(f"{ast.unparse(lhs)} in [...] compares no knob")
        if any(isinstance(v, str) for v in values):
            raise self.fail(f"{ast.unparse(lhs)} is a number; its list holds strings")
        return _In(left, [float(v) for v in values], negate)

    # terms
    def term(self, node: ast.AST) -> _Term:
        if isinstance(node, ast.Name):
            if node.id not in self.cols:
                raise self.fail(f"{node.id!r} is not a knob (knobs: {', '.join(self.cols)})")
            return _KnobTerm(self.cols[node.id], self.knobs[self.cols[node.id]])
        if isinstance(node, ast.Constant):
            return _Const(self.literal(node))
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _ARITH_OPS:
                raise self.fail(f"operator {type(node.op).__name__} not allowed (arithmetic is + - * /)")
            left, right = self.term(node.left), self.term(node.right)
            for t in (left, right):
                if t.type != "num":
                    raise self.fail(f"arithmetic needs numbers; {self.describe(t)} is not one")
            return _Arith(_ARITH_OPS[type(node.op)], left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = self.term(node.operand)
            if inner.type != "num":
                raise self.fail(f"arithmetic needs numbers; {self.describe(inner)} is not one")
            return _Arith(np.negative if isinstance(node.op, ast.USub) else np.positive, inner, None)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise self.fail("a list is only allowed after 'in' or 'not in'")
        if isinstance(node, (ast.BoolOp, ast.Compare)) or \
                (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
            raise self.fail(f"{ast.unparse(node)!r} is a condition where a value is expected")
        raise self.refuse(node)

    def literal(self, node: ast.AST) -> str | int | float:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            value = self.literal(node.operand)
            if isinstance(value, str):
                raise self.fail(f"-{value!r} is not a number")
            return -value
        if not isinstance(node, ast.Constant):
            raise self.fail(f"{ast.unparse(node)!r} is not a literal (lists hold numbers and 'strings')")
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise self.fail(f"literal {v!r} not allowed (numbers and 'strings' only)")
        return v

    def value_index(self, knob: _KnobTerm, value: Any) -> int:
        try:
            return knob.knob.index_of(value)
        except SpaceError:
            raise self.fail(f"{value!r} is not a value of {knob.knob.name} "
                            f"(values: {list(knob.knob.values)})") from None

    @staticmethod
    def describe(t: _Term) -> str:
        if isinstance(t, _KnobTerm):
            return f"knob {t.knob.name}"
        if isinstance(t, _Const):
            return repr(t.value)
        return "the expression"
