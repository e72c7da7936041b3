"""A small HTML tree built with the standard library's ``html.parser``, and CSS selectors.

Supported selector syntax: type (``a``), universal (``*``), ``.class``, ``#id``,
attribute tests ``[attr]``, ``[attr=v]``, ``[attr~=v]``, ``[attr^=v]``, ``[attr$=v]``,
``[attr*=v]`` (values may be quoted), the descendant (space) and child (``>``)
combinators, and comma-separated groups. Pseudo-classes are not supported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Iterator

VOID_ELEMENTS = frozenset(
    "area base br col embed hr img input link meta param source track wbr".split()
)
# An open element of the key's tag is closed implicitly when one of these tags starts,
# as browsers do for unclosed <li>, <p>, <dt>, <dd> and table cells.
IMPLICIT_CLOSE = {
    "li": {"li"},
    "dt": {"dt", "dd"},
    "dd": {"dt", "dd"},
    "p": {"p", "div", "ul", "ol", "dl", "table", "h1", "h2", "h3", "h4", "h5", "h6"},
    "option": {"option"},
    "tr": {"tr"},
    "td": {"td", "th", "tr"},
    "th": {"td", "th", "tr"},
}


class SelectorError(ValueError):
    """A CSS selector this module cannot parse."""


@dataclass(eq=False)
class Element:
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Element | str] = field(default_factory=list)
    parent: Element | None = None

    @property
    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()

    def get(self, name: str, default: str = "") -> str:
        return self.attrs.get(name, default)

    def text(self) -> str:
        """Return the concatenated text of this element and its descendants."""
        parts: list[str] = []
        for child in self.children:
            parts.append(child if isinstance(child, str) else child.text())
        return "".join(parts)

    def iter_descendants(self) -> Iterator[Element]:
        for child in self.children:
            if isinstance(child, Element):
                yield child
                yield from child.iter_descendants()

    def element_children(self) -> list[Element]:
        return [child for child in self.children if isinstance(child, Element)]

    def select(self, selector: str) -> list[Element]:
        """Return the descendants matching ``selector``, in document order."""
        groups = parse_selector(selector)
        return [
            element
            for element in self.iter_descendants()
            if any(_matches_chain(element, chain) for chain in groups)
        ]

    def select_one(self, selector: str) -> Element | None:
        found = self.select(selector)
        return found[0] if found else None


def parse_html(text: str) -> Element:
    """Parse an HTML document into a tree under a synthetic ``#document`` element."""
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document")
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._close_implicitly(tag)
        element = Element(tag, {name: value or "" for name, value in attrs}, parent=self.stack[-1])
        self.stack[-1].children.append(element)
        if tag not in VOID_ELEMENTS:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._close_implicitly(tag)
        element = Element(tag, {name: value or "" for name, value in attrs}, parent=self.stack[-1])
        self.stack[-1].children.append(element)

    def handle_endtag(self, tag: str) -> None:
        # Close up to the innermost open element with this tag; ignore stray end tags.
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)

    def _close_implicitly(self, tag: str) -> None:
        current = self.stack[-1]
        if len(self.stack) > 1 and tag in IMPLICIT_CLOSE.get(current.tag, ()):
            self.stack.pop()


@dataclass(frozen=True)
class _Compound:
    tag: str | None
    element_id: str | None
    classes: tuple[str, ...]
    attributes: tuple[tuple[str, str | None, str], ...]  # (name, operator, value)


# A chain lists (combinator, compound) from left to right; the first combinator is "".
_Chain = list[tuple[str, _Compound]]

_TOKEN = re.compile(
    r"""
    (?P<space>\s*>\s*|\s+)
    | (?P<tag>\*|[A-Za-z][\w-]*)
    | \#(?P<id>[\w-]+)
    | \.(?P<cls>[\w-]+)
    | \[\s*(?P<attr>[\w:-]+)\s*
        (?:(?P<op>[~^$*]?=)\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\]\s]+))\s*)?
      \]
    """,
    re.VERBOSE,
)


def parse_selector(selector: str) -> list[_Chain]:
    """Parse a selector group into chains; raise SelectorError on unsupported syntax."""
    chains = []
    for part in selector.split(","):
        part = part.strip()
        if not part:
            raise SelectorError(f"empty selector in {selector!r}")
        chains.append(_parse_chain(part, selector))
    return chains


def _parse_chain(text: str, whole: str) -> _Chain:
    chain: _Chain = []
    combinator = ""
    fields: dict[str, list] = _empty_compound_fields()
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise SelectorError(
                f"unsupported selector syntax at {text[position:]!r} in {whole!r}; "
                "use tag, .class, #id, [attr=value], descendant or > combinators"
            )
        position = match.end()
        if match.group("space") is not None:
            chain.append((combinator, _build_compound(fields, whole)))
            combinator = ">" if ">" in match.group("space") else " "
            fields = _empty_compound_fields()
        elif match.group("tag"):
            fields["tag"].append(match.group("tag").lower())
        elif match.group("id"):
            fields["id"].append(match.group("id"))
        elif match.group("cls"):
            fields["classes"].append(match.group("cls"))
        else:
            value = next(
                (
                    v
                    for v in (match.group("dq"), match.group("sq"), match.group("bare"))
                    if v is not None
                ),
                "",
            )
            fields["attributes"].append((match.group("attr").lower(), match.group("op"), value))
    chain.append((combinator, _build_compound(fields, whole)))
    return chain


def _empty_compound_fields() -> dict[str, list]:
    return {"tag": [], "id": [], "classes": [], "attributes": []}


def _build_compound(fields: dict[str, list], whole: str) -> _Compound:
    if not any(fields.values()):
        raise SelectorError(f"dangling combinator in selector {whole!r}")
    tag = fields["tag"][0] if fields["tag"] else None
    return _Compound(
        tag=None if tag == "*" else tag,
        element_id=fields["id"][0] if fields["id"] else None,
        classes=tuple(fields["classes"]),
        attributes=tuple(fields["attributes"]),
    )


def _matches_compound(element: Element, compound: _Compound) -> bool:
    if compound.tag is not None and element.tag != compound.tag:
        return False
    if compound.element_id is not None and element.get("id") != compound.element_id:
        return False
    classes = element.classes
    if any(name not in classes for name in compound.classes):
        return False
    return all(_matches_attribute(element, *test) for test in compound.attributes)


def _matches_attribute(element: Element, name: str, operator: str | None, value: str) -> bool:
    if name not in element.attrs:
        return False
    actual = element.attrs[name]
    if operator is None:
        return True
    if operator == "=":
        return actual == value
    if operator == "~=":
        return value in actual.split()
    if operator == "^=":
        return bool(value) and actual.startswith(value)
    if operator == "$=":
        return bool(value) and actual.endswith(value)
    return bool(value) and value in actual  # "*="


def _matches_chain(element: Element, chain: _Chain) -> bool:
    """Match right to left: the element against the last compound, then its ancestors."""
    combinator, compound = chain[-1]
    if not _matches_compound(element, compound):
        return False
    if len(chain) == 1:
        return True
    rest = chain[:-1]
    parent = element.parent
    if combinator == ">":
        return parent is not None and parent.tag != "#document" and _matches_chain(parent, rest)
    while parent is not None and parent.tag != "#document":
        if _matches_chain(parent, rest):
            return True
        parent = parent.parent
    return False
