"""The table and ``bench/results.json``: rows judged against the targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchsuite.cases import GROUP_REFERENCE, TARGETS, Case, Target
from benchsuite.common import MB


@dataclass(frozen=True)
class Row:
    """One line of the table: a case, optionally judged against one target."""

    case: Case
    against: str | None
    ratio: float | None
    target: str
    passed: bool | None

    def as_json(self) -> dict[str, Any]:
        return {
            "case": self.case.id,
            "label": self.case.label,
            "seconds": round(self.case.median, 4) if self.case.median is not None else None,
            "mb_per_s": round(self.case.throughput, 1) if self.case.throughput else None,
            "peak_rss_mb": round(self.case.peak_rss / MB, 1) if self.case.peak_rss else None,
            "against": self.against,
            "ratio": round(self.ratio, 3) if self.ratio is not None else None,
            "target": self.target,
            "pass": self.passed,
        }


def judge(target: Target, cases: dict[str, Case]) -> tuple[float | None, bool | None]:
    """The ratio (case / reference time) and whether ``target`` holds, if measurable."""
    case = cases[target.case]
    median = case.median
    if target.kind == "rss_under_mb":
        rss = case.peak_rss
        return None, (rss / MB < target.limit) if rss is not None else None
    if median is None:
        return None, None
    if target.kind == "seconds_under":
        return None, median < target.limit
    reference = cases.get(target.against or "")
    if reference is None or not reference.median:
        return None, None
    ratio = median / reference.median
    if target.kind == "ratio_at_most":
        return ratio, ratio <= target.limit
    return ratio, ratio <= 1 / target.limit


def build_rows(cases: dict[str, Case]) -> list[Row]:
    """Every case once (compared with its group's reference), plus one row per target."""

    def label_of(case_id: str) -> str:
        return cases[case_id].label if case_id in cases else case_id

    rows = []
    for case in cases.values():
        targets = [t for t in TARGETS if t.case == case.id]
        if not targets:
            reference = GROUP_REFERENCE.get(case.group)
            ratio = None
            ref_case = cases.get(reference or "")
            if ref_case is not None and ref_case is not case and case.median and ref_case.median:
                ratio = case.median / ref_case.median
            note = "reference" if reference == case.id else ""
            rows.append(Row(case, reference if ratio is not None else None, ratio, note, None))
        for target in targets:
            ratio, passed = judge(target, cases)
            rows.append(Row(case, target.against, ratio, target.describe(label_of), passed))
    return rows


def render_table(rows: Sequence[Row]) -> str:
    """The Markdown table of ``rows``."""
    header = ("case", "seconds (median)", "MB/s", "peak RSS", "ratio", "target", "result")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        case = row.case
        if case.skipped or case.error:
            status = f"skipped: {case.skipped}" if case.skipped else f"error: {case.error}"
            cells = [case.label, "—", "—", "—", "—", row.target, status.replace("|", "/")]
        else:
            median = case.median
            spread = ""
            if len(case.runs) > 1:
                low = min(r.seconds for r in case.runs)
                high = max(r.seconds for r in case.runs)
                spread = f" ({low:.2f}–{high:.2f})"
            ratio = ""
            if row.ratio is not None:
                ratio = f"{row.ratio:.2f}× {row.against}"
            result = {True: "pass", False: "**FAIL**", None: ""}[row.passed]
            cells = [
                case.label,
                f"{median:.3f}{spread}" if median is not None else "—",
                f"{case.throughput:.0f}" if case.throughput else "",
                f"{case.peak_rss / MB:.0f} MB" if case.peak_rss else "",
                ratio,
                row.target,
                result,
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
