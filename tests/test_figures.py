"""The computational-graph figures of docs/derivations.md are what docs/figures/make_figures.py draws.

The script is run into a temporary folder and every SVG it writes must equal the committed file byte for byte, so a
changed script without regenerated figures fails here (regenerate with `.venv/bin/python docs/figures/make_figures.py`).
A second test shows that the comparison does fail on a changed, a missing and an extra figure.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
SCRIPT = FIGURES / "make_figures.py"
DERIVATIONS = ROOT / "docs" / "derivations.md"
EXPECTED = {"dense_layer.svg", "softmax_cross_entropy.svg", "batch_normalisation.svg"}


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
        elif old.read_bytes() != new.read_bytes():
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


#: Each figure and the numbered section (its heading, unchanged: the notebooks link to it) that embeds it.
SECTIONS = {
    "dense_layer.svg": "## 2. The dense layer",
    "softmax_cross_entropy.svg": "## 7. Fused softmax and cross-entropy",
    "batch_normalisation.svg": "## 13. Batch normalisation",
}


def test_every_figure_is_embedded_in_its_section():
    assert set(SECTIONS) == EXPECTED
    text = DERIVATIONS.read_text(encoding="utf-8")
    for name, heading in SECTIONS.items():
        start = text.index(f"\n{heading}\n")
        end = text.find("\n## ", start + 1)
        section = text[start : end if end > 0 else len(text)]
        assert f"](figures/{name})" in section, f"{heading} does not embed figures/{name}"
