"""The derivations reference and the Japanese README stay honest about the code.

- every relative link points at a file that exists (and, into a Markdown file, at a heading that exists);
- every code reference [`name`](../path.py), [`Class::method`](../tests/x.py) or [`Class.method`](...) names a function,
  class, method or module-level constant defined in that file (collected with `ast`, nothing is imported);
- every entry of the activation, loss and optimizer registries has its implementation linked in docs/derivations.md,
  so a new registry entry without a derivation fails here;
- the float32-rounded constants the document quotes are the ones the code uses;
- the parity detail of docs/derivations.md (Implemented by / Checked by lists, Keras and float32 quirks) sits in
  collapsed `<details>` blocks that GitHub renders: summary on the opening line, blank lines inside, none nested or
  left open, and every Implemented by / Checked by list inside one.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import unicodedata
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from from_scratch.activations import ACTIVATIONS, GELU_CUBIC, GELU_INV_SQRT_2, LEAKY_RELU_SLOPE
from from_scratch.losses import LOSSES

ROOT = Path(__file__).resolve().parents[1]
DERIVATIONS = ROOT / "docs" / "derivations.md"
README_JA = ROOT / "README.ja.md"
DOCUMENTS = [DERIVATIONS, README_JA]

#: A Markdown link or image: [text](target). Targets with spaces or titles are not used in these documents.
LINK = re.compile(r"!?\[([^\]\n]*)\]\(([^)\s]+)\)")
#: Link text naming code: `name`, `Class::method` or `Class.method` (dunder names included).
CODE_NAME = re.compile(r"^`([A-Za-z_]\w*(?:(?:::|\.)[A-Za-z_]\w*)*)`$")
FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = ("http://", "https://", "mailto:")


def registries() -> list[tuple[str, dict, str, object]]:
    """(kind, registry, implementing file, entry -> implementation name) for every registry the document covers.

    The optimizer registry is included when from_scratch/optimizers.py exists.
    """
    found = [
        ("activation", ACTIVATIONS, "from_scratch/activations.py", lambda entry: entry.forward.__name__),
        ("loss", LOSSES, "from_scratch/losses.py", lambda cls: cls.__name__),
    ]
    if importlib.util.find_spec("from_scratch.optimizers") is not None:
        from from_scratch.optimizers import OPTIMIZERS

        found.append(("optimizer", OPTIMIZERS, "from_scratch/optimizers.py", lambda cls: cls.__name__))
    return found


# ----- the checker ---------------------------------------------------------------------------------------------------
def blank_code_blocks(text: str) -> str:
    """`text` with every fenced block (code and math) blanked out, keeping line numbers: links there are not links."""
    out, inside = [], False
    for line in text.split("\n"):
        if FENCE.match(line.strip()):
            inside = not inside
            out.append("")
        else:
            out.append("" if inside else line)
    return "\n".join(out)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped (letters of any script, marks, digits, `_`,
    `-` and spaces kept), spaces to hyphens. Inline code and link syntax are reduced to their text first."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    kept = "".join(
        c for c in text if c in " -" or unicodedata.category(c)[0] in "LMN" or unicodedata.category(c) == "Pc"
    )
    return kept.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a Markdown text, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    result = set()
    for line in blank_code_blocks(text).split("\n"):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


@cache
def definitions(path: Path) -> frozenset[str]:
    """Names defined in a Python file: functions, classes and module-level constants, and inside classes their
    methods and attributes as `Class::name` (nested classes as `Outer::Inner::name`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(prefix + node.name)
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{prefix}{node.name}::")
            elif isinstance(node, ast.Assign):
                names.update(prefix + t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(prefix + node.target.id)
            elif isinstance(node, (ast.If, ast.Try)):  # definitions under `if` / `try` at the same level
                visit(node.body, prefix)
                visit(node.orelse, prefix)

    visit(tree.body, "")
    return frozenset(names)


def code_references(text: str, base: Path) -> list[tuple[int, str, Path]]:
    """(line, name as `Class::method`, resolved file) for every link whose text names code in a .py file."""
    refs = []
    for line_no, line in enumerate(blank_code_blocks(text).split("\n"), start=1):
        for match in LINK.finditer(line):
            label, target = match.group(1).strip(), match.group(2)
            code = CODE_NAME.match(label)
            path = target.split("#", 1)[0]
            if not code or not path.endswith(".py") or target.startswith(EXTERNAL):
                continue
            name = code.group(1)
            if name in (Path(path).name, path):  # [`activations.py`](../from_scratch/activations.py): a file link
                continue
            refs.append((line_no, name.replace(".", "::"), (base / path).resolve()))
    return refs


def check_markdown(text: str, base: Path, source: str = "<text>") -> list[str]:
    """Every problem with the links of one Markdown text whose relative links start at directory `base`."""
    problems = []
    lines = blank_code_blocks(text).split("\n")
    for line_no, line in enumerate(lines, start=1):
        for match in LINK.finditer(line):
            target = match.group(2)
            if target.startswith(EXTERNAL):
                continue
            path, _, anchor = target.partition("#")
            where = f"{source}:{line_no}: [{match.group(1)}]({target})"
            resolved = (base / path).resolve() if path else None
            if resolved is not None and not resolved.exists():
                problems.append(f"{where}: no such file {path}")
                continue
            if anchor:
                heading_text = text if resolved is None else resolved.read_text(encoding="utf-8")
                if (resolved is None or resolved.suffix == ".md") and anchor not in anchors(heading_text):
                    problems.append(f"{where}: no heading with anchor #{anchor}")
    for line_no, name, path in code_references(text, base):
        if path.exists() and name not in definitions(path):
            problems.append(f"{source}:{line_no}: `{name}` is not defined in {path.relative_to(ROOT)}")
    return problems


DETAILS_OPEN = re.compile(r"^<details><summary>Keras detail: [^<]+</summary>$")
LIST_ITEM = re.compile(r"^- \*\*(Implemented by|Checked by)\*\*")


def details_problems(text: str, source: str = "<text>") -> list[str]:
    """Every problem with the collapsed blocks of a Markdown text: an opening line other than
    `<details><summary>Keras detail: ...</summary>`, no blank line after it or before `</details>` (GitHub then shows
    the Markdown inside as raw text), a nested, unclosed or stray block, and an Implemented by / Checked by list item
    outside a block."""
    problems = []
    lines = blank_code_blocks(text).split("\n")
    opened = None
    for line_no, line in enumerate(lines, start=1):
        where = f"{source}:{line_no}"
        if line.startswith("<details"):
            if opened is not None:
                problems.append(f"{where}: <details> inside the block opened at line {opened}")
            if not DETAILS_OPEN.match(line):
                problems.append(f"{where}: a block opens with `<details><summary>Keras detail: ...</summary>`")
            if line_no < len(lines) and lines[line_no].strip():
                problems.append(f"{where}: no blank line after <summary>: GitHub would not render the Markdown")
            opened = line_no
        elif line.startswith("</details>"):
            if opened is None:
                problems.append(f"{where}: </details> without an open block")
            elif lines[line_no - 2].strip():
                problems.append(f"{where}: no blank line before </details>")
            opened = None
        elif LIST_ITEM.match(line) and opened is None:
            problems.append(f"{where}: an Implemented by / Checked by list outside a <details> block")
    if opened is not None:
        problems.append(f"{source}:{opened}: <details> never closed")
    return problems


def document(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# ----- the documents -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_every_link_and_code_reference_resolves(path):
    problems = check_markdown(document(path), path.parent, path.name)
    assert not problems, "\n".join(problems)


def test_the_derivations_link_code_and_tests():
    refs = code_references(document(DERIVATIONS), DERIVATIONS.parent)
    tests = [name for _, name, path in refs if path.parent.name == "tests"]
    code = [name for _, name, path in refs if path.parent.name != "tests"]
    assert len(set(code)) >= 50 and len(set(tests)) >= 40, (len(set(code)), len(set(tests)))


def test_every_derivation_section_says_what_implements_and_checks_it():
    """Each numbered section (## N.) names at least one implementation and one test, the autodidax rhythm."""
    text = blank_code_blocks(document(DERIVATIONS))
    sections = re.split(r"\n(?=## \d+\. )", text)[1:]
    assert len(sections) >= 15
    for section in sections:
        title = section.split("\n", 1)[0]
        if "Glossary" in title:
            continue
        assert "**Implemented by**" in section and "**Checked by**" in section, title


def test_the_parity_detail_is_in_well_formed_collapsed_blocks():
    problems = details_problems(document(DERIVATIONS), DERIVATIONS.name)
    assert not problems, "\n".join(problems)


def test_every_derivation_section_keeps_its_parity_detail_collapsed():
    """Each numbered section (## N.) and each of its subsections has a collapsed block holding its lists."""
    text = blank_code_blocks(document(DERIVATIONS))
    parts = re.split(r"\n(?=###? \d+(?:\.\d+)?\.? )", text)[1:]
    assert len(parts) >= 40
    for part in parts:
        title = part.split("\n", 1)[0]
        if "Glossary" in title or "**Implemented by**" not in part:
            assert "Glossary" in title or title.startswith("## 16."), f"{title}: no Implemented by"
            continue
        assert re.search(DETAILS_OPEN.pattern, part, re.MULTILINE), f"{title}: no collapsed block"


REGISTRY_ENTRIES = [
    pytest.param(kind, key, file, implementation(entry), id=f"{kind}-{key}")
    for kind, registry, file, implementation in registries()
    for key, entry in registry.items()
]


@pytest.mark.parametrize("kind,key,file,implementation", REGISTRY_ENTRIES)
def test_every_registry_entry_has_a_derivation(kind, key, file, implementation):
    """A new activation, loss or optimizer must be named (`key`) and its implementation linked in the document."""
    text = document(DERIVATIONS)
    assert f"`{key}`" in text, f"{kind} {key!r} is not mentioned in docs/derivations.md"
    linked = {(name.split("::")[0], path) for _, name, path in code_references(text, DERIVATIONS.parent)}
    assert (implementation, (ROOT / file).resolve()) in linked, (
        f"{kind} {key!r}: no link [`{implementation}`](../{file}) (or to one of its methods) in docs/derivations.md"
    )


def test_quoted_float32_constants_are_the_codes():
    text = document(DERIVATIONS)
    constants = {
        "LEAKY_RELU_SLOPE": LEAKY_RELU_SLOPE,
        "GELU_INV_SQRT_2": GELU_INV_SQRT_2,
        "GELU_CUBIC": GELU_CUBIC,
        "fl32(0.01), the L2 factor": float(np.float32(0.01)),
    }
    if importlib.util.find_spec("from_scratch.optimizers") is not None:
        from from_scratch.optimizers import fl32

        constants.update({"fl32(0.9)": fl32(0.9), "fl32(0.999)": fl32(0.999)})
    missing = [f"{name} = {value!r}" for name, value in constants.items() if repr(value) not in text]
    assert not missing, f"docs/derivations.md does not quote: {', '.join(missing)}"


def test_readme_ja_quotes_the_real_table_header():
    """The excerpt in README.ja.md carries the column names that compare/report.py renders."""
    tree = ast.parse((ROOT / "compare" / "report.py").read_text(encoding="utf-8"))
    headers = next(
        [element.value for element in keyword.value.elts]
        for keyword in ast.walk(tree)
        if isinstance(keyword, ast.keyword) and keyword.arg == "headers"
    )
    header_line = next(line for line in document(README_JA).splitlines() if line.startswith("quantity "))
    assert re.split(r"\s{2,}", header_line.strip()) == headers


# ----- the checker itself --------------------------------------------------------------------------------------------
class TestChecker:
    def test_reports_a_name_that_is_not_defined(self):
        text = (
            "See [`relu_gradient`](../from_scratch/activations.py) and [`relu_grad`](../from_scratch/activations.py).\n"
        )
        problems = check_markdown(text, DERIVATIONS.parent)
        assert problems == ["<text>:1: `relu_gradient` is not defined in from_scratch/activations.py"]

    def test_reports_a_method_of_the_wrong_class_and_a_missing_test(self):
        text = (
            "[`TestRelu::test_forward`](../tests/test_activations.py)\n"
            "[`TestSoftmax.test_forward`](../tests/test_activations.py)\n"
            "[`test_relu_is_great`](../tests/test_activations.py)\n"
        )
        problems = check_markdown(text, DERIVATIONS.parent)
        assert [p.split(": ", 1)[0] for p in problems] == ["<text>:2", "<text>:3"]
        assert "`TestSoftmax::test_forward` is not defined" in problems[0]

    def test_reports_a_missing_file_and_a_missing_anchor(self):
        text = "[a](../from_scratch/nope.py) [b](#no-such-heading) [c](derivations.md#1-notation-and-shapes)\n# Real\n"
        problems = check_markdown(text, DERIVATIONS.parent)
        assert len(problems) == 2
        assert "no such file ../from_scratch/nope.py" in problems[0]
        assert "no heading with anchor #no-such-heading" in problems[1]

    def test_ignores_links_inside_code_and_math_blocks(self):
        text = "```math\n[z > 0](x)\n```\n```python\n[`nothing`](../nothing.py)\n```\n"
        assert check_markdown(text, DERIVATIONS.parent) == []

    def test_collects_methods_constants_and_nested_definitions(self):
        names = definitions(ROOT / "from_scratch" / "layers.py")
        names |= definitions(ROOT / "from_scratch" / "normalization.py")  # BatchNormalization lives there
        assert {"Dense", "Dense::backward_from_z", "LAYERS", "BatchNormalization::weight_names"} <= names
        assert "backward_from_z" not in names  # a method is only known with its class

    def test_reports_malformed_details_blocks(self):
        good = "<details><summary>Keras detail: tests</summary>\n\n- **Checked by** x\n\n</details>\n"
        assert details_problems(good) == []
        problems = details_problems(
            "- **Implemented by** x\n"  # outside a block
            "<details><summary>Keras detail: a</summary>\n- **Checked by** y\n\n</details>\n"  # no blank after
            "<details><summary>Other</summary>\n\nz\n</details>\n"  # wrong summary, no blank before
            "</details>\n"  # stray
            "<details><summary>Keras detail: b</summary>\n\n<details><summary>Keras detail: c</summary>\n\n"
        )
        assert [p.split(": ", 1)[0] for p in problems] == [
            "<text>:1",
            "<text>:2",
            "<text>:6",
            "<text>:9",
            "<text>:10",
            "<text>:13",
            "<text>:13",
        ], problems
        assert "outside a <details> block" in problems[0]
        assert "no blank line after <summary>" in problems[1]
        assert "opens with" in problems[2]
        assert "no blank line before </details>" in problems[3]
        assert "without an open block" in problems[4]
        assert "inside the block opened at line 11" in problems[5]
        assert "never closed" in problems[6]

    def test_github_slugs(self):
        assert github_slug("4.1 ReLU") == "41-relu"
        assert github_slug("16. Keras conventions") == "16-keras-conventions"
        assert github_slug("導出リファレンスの地図 (derivations)") == "導出リファレンスの地図-derivations"
        assert anchors("# A\n# A\n") == {"a", "a-1"}
