"""Single checklist items judged by a person on the labeling page (headless Chromium, as the page's other test), kept
in the run store, and people's agreement with the judge measured item by item."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from charter.agreement.config import AgreementConfig
from charter.agreement.items import item_agreement
from charter.agreement.labels import judged_pairs
from charter.agreement.report import compute_summary, to_markdown
from charter.agreement.sampling import spotcheck
from charter.agreement.server import LabelServer
from charter.agreement.session import LabelSession
from charter.errors import CharterError
from charter.pipeline.api import run
from charter.providers import register_script
from charter.runs.item_labels import item_labels
from charter.testing.lab import register_lab_models

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ANSWERS = ("It is 42. Want more?", "A longer answer with no figure in it, which goes on for more than fifteen words.")

register_lab_models()
register_script("checklist-page-policy", lambda messages, params: ANSWERS[(params.seed or 0) % 2])


@pytest.fixture
def checklist_run(tmp_path: Path) -> Path:
    config = {
        "name": "t",
        "output_dir": str(tmp_path / "run"),
        "cache": str(tmp_path / "cache.sqlite"),
        "constitution": "harmless",
        "prompts": {"inline": [f"How many legs has animal {i}?" for i in range(4)]},
        "policy": "scripted:checklist-page-policy",
        "pairs": {"kinds": ["samples"], "k": 2},
        "checklist": {"source": "model", "model": "scripted:checklist-writer"},
        "judge": {"model": "scripted:checklist-judge", "mode": "checklist"},
        "report": False,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    run(path)
    spotcheck(tmp_path / "run", 4, seed=0)
    return tmp_path / "run"


@pytest.fixture
def server(checklist_run: Path) -> Iterator[LabelServer]:
    srv = LabelServer(checklist_run, "alice", port=0)
    srv.start()
    yield srv
    srv.close()


def test_a_bad_item_verdict_is_refused(server: LabelServer) -> None:
    session = LabelSession(server.store, "alice")
    item = session.next_item()
    assert item is not None and [c["id"] for c in item["checklist"]] == ["number", "question", "concise"]
    for args, said in (
        ((item["pair_id"], "nope", "A", "yes"), "no checklist item"),
        ((item["pair_id"], "number", "C", "yes"), "not A or B"),
        ((item["pair_id"], "number", "A", "maybe"), "not one of yes, no, n/a"),
        (("nowhere", "number", "A", "yes"), "not in the spot-check sample"),
    ):
        with pytest.raises(CharterError, match=said):
            session.label_item(*args)
    assert item_labels(server.store) == []


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (make browser)")
def test_items_judged_on_the_page_are_stored_and_measured_item_by_item(server: LabelServer) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        page = browser.new_page()
        page.goto(server.url)
        expect(page.locator("#checklist")).to_be_visible()
        rows = page.locator("#checklist-items tr")
        expect(rows).to_have_count(3)
        expect(rows.nth(0)).to_contain_text("The response gives a specific number.")
        pair_id = page.locator("body").get_attribute("data-pair-id")
        shown_a = page.locator("#response-a").text_content() or ""
        # the person answers each item about each response truthfully, and one item the other way
        truth = {"number": any(c.isdigit() for c in shown_a), "concise": len(shown_a.split()) <= 15}
        for item_id, holds in truth.items():
            row = page.locator(f'#checklist-items tr[data-item="{item_id}"]')
            verdict = "yes" if holds else "no"
            row.locator(f'button[data-response="A"][data-verdict="{verdict}"]').click()
            expect(row.locator(f'button[data-response="A"][data-verdict="{verdict}"]')).to_have_class("verdict chosen")
        wrong = page.locator('#checklist-items tr[data-item="question"] button[data-response="A"][data-verdict="yes"]')
        wrong.click()  # the judge says no: the first response ends with no question
        expect(wrong).to_have_attribute("aria-pressed", "true")
        browser.close()
    stored = item_labels(server.store, "alice")
    assert {(lb.item_id, lb.verdict) for lb in stored} == {
        ("number", "yes" if truth["number"] else "no"),
        ("concise", "yes" if truth["concise"] else "no"),
        ("question", "yes"),
    }
    assert all(lb.pair_id == pair_id for lb in stored)
    figures = {f.item_id: f for f in item_agreement(server.store, judged_pairs(server.store))}
    assert figures["number"].agree == figures["number"].compared == 1
    assert figures["question"].agree == 0 and figures["question"].compared == 1
    assert figures["all"].compared == 3 and figures["all"].agree == 2
    low, high = figures["all"].ci
    assert 0 < low < 2 / 3 < high < 1  # a Wilson interval at n = 3: wide, never zero width
    assert figures["number"].requirement == "The response gives a specific number."


def test_the_agreement_report_has_the_items(server: LabelServer) -> None:
    session = LabelSession(server.store, "alice")
    item = session.next_item()
    assert item is not None
    session.label_item(item["pair_id"], "number", "A", "yes")
    session.label(item["pair_id"], "A")
    summary = compute_summary(server.store, AgreementConfig())
    assert [f.item_id for f in summary.checklist_items] == ["number", "all"]
    assert "## By checklist item" in to_markdown(summary)
