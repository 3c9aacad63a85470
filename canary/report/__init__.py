"""Analysis reports as self-contained HTML: verdict and reasons first, then charts.

`render_analysis` turns one stored analysis (with rounds, observations, results
and actions loaded, see `store.analyses.load_analysis_full`) into one HTML page;
`render_index` lists analyses with status filters. Both are pure functions of the
stored rows: the API serves them at `/analyses` and `/analyses/{id}`, and
`canary report ID --out FILE.html` writes the same page to a file.
"""

from __future__ import annotations

from canary.report.pages import render_analysis, render_index

__all__ = ["render_analysis", "render_index"]
