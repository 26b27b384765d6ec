"""Extra report sections: a trusted HTML fragment under its own escaped heading, with a nav entry,
after the maps; anchors must be plain ids that no other section uses."""

from __future__ import annotations

import pytest

from pathatlas.attribution.report import ReportSection, render_report, write_report
from tests.unit.test_report import _data


def test_an_extra_section_is_inserted_as_it_is_with_a_nav_entry(tmp_path):
    fragment = '<table class="drift"><tr><td>ig</td><td>0.93</td></tr></table>'
    section = ReportSection("Drift against <previous>", fragment, "drift")
    page = render_report(_data(), [section])
    assert fragment in page  # trusted: not escaped
    assert '<h2 id="drift">Drift against &lt;previous&gt;</h2>' in page  # the title is escaped
    assert '<a href="#drift">Drift against &lt;previous&gt;</a>' in page
    nav = page[page.index("<nav>") : page.index("</nav>")]
    assert nav.index("#maps") < nav.index("#drift") < nav.index("#diagnostics")  # after the maps
    assert page.index('id="maps"') < page.index('id="drift"') < page.index('id="diagnostics"')
    path = write_report(_data(), tmp_path / "report.html", [section])
    assert path.read_text(encoding="utf-8") == page
    plain = render_report(_data())
    assert 'id="drift"' not in plain and '<a href="#scores">Scores</a>' in plain


@pytest.mark.parametrize("anchor", ["maps", "has space", "1st", "x\"onclick='y'"])
def test_a_section_anchor_must_be_a_new_plain_id(anchor):
    with pytest.raises(ValueError, match="anchor"):
        render_report(_data(), [ReportSection("t", "<p>x</p>", anchor)])


def test_two_sections_cannot_share_an_anchor():
    sections = [ReportSection("a", "<p>a</p>", "extra"), ReportSection("b", "<p>b</p>", "extra")]
    with pytest.raises(ValueError, match="already used"):
        render_report(_data(), sections)
    two = [ReportSection("a", "<p>a</p>", "extra-1"), ReportSection("b", "<p>b</p>", "extra_2")]
    page = render_report(_data(), two)
    assert page.index('id="extra-1"') < page.index('id="extra_2"')
