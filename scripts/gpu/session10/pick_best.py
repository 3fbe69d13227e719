"""Session 10: the base's best sampling point from a folder of `zaoxiang eval --out` reports.

Rule, written before the sweep ran (scripts/gpu/session10/README.md): the highest mean of the
four position and count pass rates (en, zh); ties go to fewer steps, then to guidance 4. Prints
one line per report, then the winner as STEPS:GUIDANCE on the last line.
"""
import json
import sys
from pathlib import Path


def score(report: dict) -> tuple[float, int, bool]:
    rates = [c["by_lang"][lang] for c in report["categories"] if c["category"] in ("position", "count")
             for lang in ("en", "zh")]
    return round(sum(rates) / len(rates), 6), -int(report["steps"]), float(report["guidance"]) == 4.0


def main(folder: str) -> None:
    rows = []
    for path in sorted(Path(folder).glob("*/report.json")):
        report = json.loads(path.read_text())
        rows.append((score(report), f'{report["steps"]}:{float(report["guidance"]):g}'))
        print(rows[-1][0][0], rows[-1][1])
    if rows:
        print(max(rows)[1])


if __name__ == "__main__":
    main(sys.argv[1])
