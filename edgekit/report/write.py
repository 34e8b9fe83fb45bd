"""`edgekit report`: results files → report.html (self-contained) and report.md in one directory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekit.core.errors import EdgekitError
from edgekit.core.files import writable_directory_problem, write_text_atomic
from edgekit.measure.decide import DEFAULT_MAX_DROP_PTS
from edgekit.report.analysis import reference_of
from edgekit.report.render import build_sections, headline_text, to_html, to_markdown
from edgekit.report.variants import load_variants


def write_report(
    results: Sequence[Path], out: Path, budget_pts: float = DEFAULT_MAX_DROP_PTS, title: str | None = None
) -> dict[str, Any]:
    if budget_pts < 0:
        raise EdgekitError("--max-accuracy-drop is in top-1 points and must be >= 0")
    problem = writable_directory_problem(out)
    if problem or (out.exists() and not out.is_dir()):
        raise EdgekitError(f"cannot write the report to {out}: {problem or 'it is a file, not a directory'}")
    variants = load_variants(results)
    chosen, sections = build_sections(variants, budget_pts)
    reference = reference_of(variants)
    first = variants[0].bundle
    title = title or f"edgekit report: {first.source_file or 'model'} on {first.target}"
    headline = headline_text(chosen, reference, variants)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "report.html", to_html(title, headline, sections))
    write_text_atomic(out / "report.md", to_markdown(title, headline, sections))
    return {
        "html": str(out / "report.html"),
        "markdown": str(out / "report.md"),
        "variants": [v.name for v in variants],
        "headline": {
            "variant": chosen.variant.name,
            "speedup": chosen.speedup,
            "drop_pts": chosen.drop_pts,
            "within_budget": chosen.within_budget,
            "reason": chosen.reason,
        },
        "max_accuracy_drop_pts": budget_pts,
    }
