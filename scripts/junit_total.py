"""Sum the pytest JUnit reports of all tiers into one closing line: 'total: N passed, N failed, N skipped'."""

import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

totals = {"passed": 0, "failed": 0, "skipped": 0}
for name in sys.argv[1:]:
    path = Path(name if name.endswith(".xml") else f"{name}.xml")
    if not path.exists():
        print(f"{path}: missing (tier did not run)")
        totals["failed"] += 1
        continue
    for suite in ElementTree.parse(path).getroot().iter("testsuite"):
        tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        totals["passed"] += tests - skipped - failed
        totals["failed"] += failed
        totals["skipped"] += skipped
        print(
            f"{path.stem}: {tests - skipped - failed} passed, {failed} failed, {skipped} skipped "
            f"in {float(suite.get('time', 0)):.0f} s"
        )
print(f"total: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
