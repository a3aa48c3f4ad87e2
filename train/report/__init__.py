"""The evaluation report: one self-contained HTML page per evaluation, or one page comparing runs.

- ``page``: :func:`render_report` (an evaluation folder's ``report.json``, strips and audio -> the page);
- ``charts``: the SVG charts (matplotlib's SVG canvas);
- ``templates/report.html.j2``: the page's jinja2 template.
"""

from __future__ import annotations

from train.report.page import render_report

__all__ = ["render_report"]
