"""The technician's page in Chinese: texts.js has a Chinese word for every English one,
with the same placeholders, and a real browser shows the page in the agent's language and
switches it by the link on the page (remembered across a reload)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.browser import chromium, screenshot, wait_for
from support.pageagent import agent_showing
from support.waiting import wait_until

from edge_agent import i18n

TEXTS = Path(__file__).parent.parent / "edge_agent" / "health" / "page" / "texts.js"
_TABLE = re.compile(r"^  (\w+): \{\n(.*?)^  \},", re.MULTILINE | re.DOTALL)
_ENTRY = re.compile(r'^    (\w+): "((?:[^"\\]|\\.)*)",$', re.MULTILINE)


def _tables() -> dict[str, dict[str, str]]:
    """Each language's table of texts.js: message id -> text."""
    text = TEXTS.read_text(encoding="utf-8")
    return {lang: dict(_ENTRY.findall(body)) for lang, body in _TABLE.findall(text)}


def test_the_chinese_table_has_every_message_of_the_english_one() -> None:
    tables = _tables()
    assert set(tables) == {"en", "zh"}
    assert len(tables["en"]) > 60
    assert tables["zh"].keys() == tables["en"].keys()
    for key, english in tables["en"].items():
        chinese = tables["zh"][key]
        assert sorted(re.findall(r"\{\w+\}", chinese)) == sorted(
            re.findall(r"\{\w+\}", english)), key
        assert re.search(r"[\u4e00-\u9fff]", chinese) or key in ("title",), key


HEADINGS = "return [...document.querySelectorAll('h2')].map((h) => h.textContent);"


@pytest.mark.real_parts
def test_page_speaks_the_agents_language_and_switches_by_its_link(tmp_path: Path) -> None:
    i18n.use("zh")  # as `edge-agent --lang zh run` or LANG=zh_CN.UTF-8 sets it
    agent = agent_showing(tmp_path, "co", 12.5, "ppm")
    agent.health.start()
    try:
        wait_until(lambda: agent.health.port is not None, 10, "the endpoint")
        with chromium() as browser:
            browser.get(f"http://127.0.0.1:{agent.health.port}/")
            wait_for(browser, lambda b: b.find_elements("css selector", "tr[data-channel]"),
                     30, "the channel row")
            assert browser.execute_script(HEADINGS) == ["上行链路", "设备"]
            assert browser.execute_script("return document.documentElement.lang") == "zh-CN"
            assert "只看问题" in browser.find_element("css selector", "label.filter").text
            screenshot(browser, "web-page-chinese")
            browser.find_element("css selector", '#language a[data-lang="en"]').click()
            wait_for(browser, lambda b: b.execute_script(HEADINGS) == ["Uplink", "Devices"],
                     10, "the page in English")
            browser.refresh()
            wait_for(browser, lambda b: b.find_elements("css selector", "tr[data-channel]"),
                     30, "the channel row after the reload")
            assert browser.execute_script(HEADINGS) == ["Uplink", "Devices"]
    finally:
        agent.stop()
