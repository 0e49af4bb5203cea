"""The computational-graph figures of docs/derivations.md are what docs/figures/make_figures.py draws.

The script is run into a temporary folder and every SVG it writes must draw what the committed file draws, so a
changed script without regenerated figures fails here (regenerate with `.venv/bin/python docs/figures/make_figures.py`).
The graphs are drawn from fixed coordinates, but matplotlib computes the paths (arrow heads, clipping, transforms) in
floating point and writes them with 6 decimals, and hashes full-precision floats into element ids: every character
outside numbers must be equal, ids are compared by what they name, and coordinates within one unit of the 6th
decimal (tests/by_meaning.py, `drawing_differences`). The files came out byte-identical under OpenBLAS's Haswell,
Sandybridge, Prescott and SkylakeX kernels and with NumPy's AVX-512 and AVX2 loops disabled; the rule keeps it so on
a processor whose libm rounds one coordinate the other way. Other tests show that the comparison does fail on a
changed, a missing and an extra figure, and on a moved element, a changed colour and a changed reference.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from by_meaning import drawing_differences

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
SCRIPT = FIGURES / "make_figures.py"
DERIVATIONS = ROOT / "docs" / "derivations.md"
EXPECTED = {"dense_layer.svg", "softmax_cross_entropy.svg", "batch_normalisation.svg", "attention_head.svg"}


def regenerate(out_dir: Path) -> None:
    """Run the script as the documented command does, writing into `out_dir`."""
    subprocess.run([sys.executable, str(SCRIPT), str(out_dir)], check=True, capture_output=True, text=True)


def differences(committed: Path, generated: Path) -> list[str]:
    """Every SVG that differs between the two folders, is missing from one, or is only in one."""
    names = {p.name for p in committed.glob("*.svg")} | {p.name for p in generated.glob("*.svg")}
    problems = []
    for name in sorted(names):
        old, new = committed / name, generated / name
        if not old.exists():
            problems.append(f"{name}: generated but not committed")
        elif not new.exists():
            problems.append(f"{name}: committed but no longer generated")
        elif drawing_differences(old.read_text(encoding="utf-8"), new.read_text(encoding="utf-8")):
            problems.append(f"{name}: differs from what the script draws")
    return problems


def test_committed_figures_are_what_the_script_draws(tmp_path):
    regenerate(tmp_path)
    assert {p.name for p in tmp_path.glob("*.svg")} == EXPECTED
    problems = differences(FIGURES, tmp_path)
    assert not problems, "\n".join(problems) + "\nregenerate: .venv/bin/python docs/figures/make_figures.py"


def test_the_comparison_fails_on_a_changed_missing_or_extra_figure(tmp_path):
    committed, generated = tmp_path / "committed", tmp_path / "generated"
    regenerate(generated)
    shutil.copytree(generated, committed)
    assert differences(committed, generated) == []

    changed = committed / "dense_layer.svg"
    data = bytearray(changed.read_bytes())
    data[data.index(b"</svg>") - 1 : data.index(b"</svg>")] = b" \n"  # one byte more before the end
    changed.write_bytes(bytes(data))
    (generated / "softmax_cross_entropy.svg").unlink()
    (generated / "stale.svg").write_text("<svg/>\n", encoding="utf-8")
    assert differences(committed, generated) == [
        "dense_layer.svg: differs from what the script draws",
        "softmax_cross_entropy.svg: committed but no longer generated",
        "stale.svg: generated but not committed",
    ]


def test_two_runs_write_identical_files(tmp_path):
    """Determinism: no date, no random ids; otherwise the committed files could never match."""
    regenerate(tmp_path / "a")
    regenerate(tmp_path / "b")
    assert differences(tmp_path / "a", tmp_path / "b") == []
    for a in (tmp_path / "a").glob("*.svg"):
        assert a.read_bytes() == (tmp_path / "b" / a.name).read_bytes(), a.name


def test_a_coordinate_rounded_the_other_way_draws_the_same():
    """One unit of the 6th decimal (a coordinate computed a few ulps off) and a hashed id from another full-precision
    float keep the drawing; anything more is a change."""
    text = (FIGURES / "dense_layer.svg").read_text(encoding="utf-8")
    assert "M 26.224752 205.72895 " in text and 'clip-path="url(#p8db24c1cb5)"' in text
    assert drawing_differences(text, text.replace("M 26.224752 205.72895 ", "M 26.224753 205.728949 ")) == []
    assert drawing_differences(text, text.replace("p8db24c1cb5", "p0123456789")) == []
    assert drawing_differences(text, text.replace("M 26.224752 205.72895 ", "M 26.224755 205.72895 ")) == [
        "1 coordinates moved: 26.224752 is now 26.224755"
    ]
    assert drawing_differences(text, text.replace("#f4f4f4", "#f4f4f5", 1))  # a colour
    assert drawing_differences(text, text.replace("fill: #ffffff", "fill: #fffff0"))
    first_use = text.index("url(#p8db24c1cb5)")  # one element clipped by another (new) clip path
    changed = text[:first_use] + "url(#p0123456789)" + text[first_use + len("url(#p8db24c1cb5)") :]
    assert drawing_differences(text, changed)


#: Each figure and the numbered section (its heading, unchanged: the notebooks link to it) that embeds it.
SECTIONS = {
    "dense_layer.svg": "## 2. The dense layer",
    "softmax_cross_entropy.svg": "## 7. Fused softmax and cross-entropy",
    "batch_normalisation.svg": "## 13. Batch normalisation",
    "attention_head.svg": "## 24. Attention in matrix form",
}


def test_every_figure_is_embedded_in_its_section():
    assert set(SECTIONS) == EXPECTED
    text = DERIVATIONS.read_text(encoding="utf-8")
    for name, heading in SECTIONS.items():
        start = text.index(f"\n{heading}\n")
        end = text.find("\n## ", start + 1)
        section = text[start : end if end > 0 else len(text)]
        assert f"](figures/{name})" in section, f"{heading} does not embed figures/{name}"
