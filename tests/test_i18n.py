"""The Chinese catalog is complete, current and faithful to its placeholders, and the
language is chosen as docs/i18n.md says.

The messages are extracted from the source by the same code as ``scripts/translations``
(Babel), so a new ``_("...")`` without its translation fails here, and so does a
translation left behind by a message that is gone.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from edge_agent import i18n

ROOT = Path(__file__).parent.parent
PO = ROOT / "edge_agent" / "locale" / "zh_CN" / "LC_MESSAGES" / "edge_agent.po"
# {name}, {name:02X}, {{ and }} escapes taken as written, and %s/%d/%(name)s.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{\w*(?:[:!][^{}\s]*)?\}|%(?:\(\w+\))?[sdrf]")


def _script() -> ModuleType:
    """scripts/translations as a module (it has no .py suffix: it is a command)."""
    loader = importlib.machinery.SourceFileLoader("translations", str(ROOT / "scripts" /
                                                                       "translations"))
    spec = importlib.util.spec_from_loader("translations", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def translations() -> ModuleType:
    return _script()


@pytest.fixture(scope="module")
def extracted(translations: ModuleType) -> Catalog:
    """The messages in the source, extracted once (a second extraction took 1.5 s)."""
    return translations.extracted()


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    with PO.open("rb") as handle:
        return read_po(handle, locale="zh_CN")


def _ids(catalog: Catalog) -> set[str]:
    return {message.id if isinstance(message.id, str) else message.id[0]
            for message in catalog if message.id}


def test_every_message_in_the_source_has_a_chinese_translation(
    extracted: Catalog, catalog: Catalog
) -> None:
    missing = []
    for message in extracted:
        if not message.id:
            continue
        found = catalog.get(message.id)
        strings = () if found is None else (
            found.string if isinstance(found.string, tuple) else (found.string,))
        if found is None or found.fuzzy or not all(strings):
            missing.append(message.id)
    assert missing == [], "run scripts/translations and translate these in the .po"


def test_the_catalog_holds_no_translation_of_a_message_that_is_gone(
    extracted: Catalog, catalog: Catalog
) -> None:
    assert _ids(catalog) - _ids(extracted) == set()
    assert not catalog.obsolete


def test_the_compiled_catalog_is_the_one_the_po_gives(translations: ModuleType) -> None:
    assert PO.with_suffix(".mo").read_bytes() == translations.mo_bytes(PO), \
        "run scripts/translations"


def test_every_placeholder_of_a_message_is_kept_in_its_translation(catalog: Catalog) -> None:
    for message in catalog:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        wanted = sorted(set(_PLACEHOLDER.findall(ids[-1])))
        for string in strings:
            assert sorted(set(_PLACEHOLDER.findall(string))) == wanted, (ids[0], string)


def test_translations_are_chinese_and_use_the_glossary_terms(catalog: Catalog) -> None:
    """Every translation holds Chinese or no words at all (a copied English text is not a
    translation; '{devices}，{links}' is one), and
    the glossary's words are the ones used: a register is 寄存器, never 暂存器."""
    han = re.compile(r"[\u4e00-\u9fff]")
    for message in catalog:
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for string in strings:
            if message.id and not _is_symbols_only(message.id):
                assert han.search(string) or _is_symbols_only(string), (message.id, string)
            for avoided in ("暂存器", "信道", "装置", "頻道"):
                assert avoided not in string, (message.id, string)


# Words that are names (of the program, its commands), not English to translate.
_NAMES = {"edge", "agent", "export", "demo", "probe"}


def _is_symbols_only(text: str | tuple[str, ...]) -> bool:
    """', ' and '; ' are punctuation, 'edge-agent export: {problem}' a name and a
    placeholder: their translation needs no Chinese word."""
    text = text if isinstance(text, str) else text[0]
    words = re.findall(r"[A-Za-z]{2,}", _PLACEHOLDER.sub("", text))
    return all(word in _NAMES for word in words)


@pytest.mark.parametrize(("lang", "env", "chosen"), [
    (None, {}, "en"),
    (None, {"LANG": "zh_CN.UTF-8"}, "zh"),
    (None, {"LANG": "en_US.UTF-8"}, "en"),
    (None, {"LANG": "C.UTF-8"}, "en"),
    (None, {"LC_MESSAGES": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"}, "zh"),
    (None, {"LC_ALL": "en_US.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}, "en"),
    (None, {"LANGUAGE": "zh_CN:en", "LC_ALL": "C"}, "zh"),
    (None, {"LANGUAGE": "", "LANG": "zh_TW.UTF-8"}, "zh"),
    ("en", {"LANG": "zh_CN.UTF-8"}, "en"),
    ("zh", {"LANG": "en_US.UTF-8"}, "zh"),
])
def test_language_is_the_option_else_the_first_locale_variable_set(
    lang: str | None, env: dict[str, str], chosen: str
) -> None:
    assert i18n.choose(lang, env) == chosen


def test_english_opens_no_catalog_and_chinese_needs_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """English is the source text: no file is read, so a broken install still speaks
    English; Chinese without its catalog is an error, not silently English."""
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    i18n.use("en")
    assert i18n._("expected {expected}, found {found}") == "expected {expected}, found {found}"
    with pytest.raises(FileNotFoundError):
        i18n.use("zh")


def test_chinese_comes_from_the_packaged_catalog() -> None:
    i18n.use("zh")
    assert i18n._("expected {expected}, found {found}") == "应为 {expected}，实际为 {found}"
    assert i18n.ngettext("{count} device", "{count} devices", 3) == "{count} 台设备"
    assert i18n.current() == "zh"


def test_lang_option_is_taken_from_anywhere_on_the_line() -> None:
    from edge_agent.cli import take_lang

    assert take_lang(["check", "s.yaml", "--lang", "zh"]) == ("zh", ["check", "s.yaml"])
    assert take_lang(["--lang=en", "status"]) == ("en", ["status"])
    assert take_lang(["poll", "--", "--lang", "zh"]) == (None, ["poll", "--", "--lang", "zh"])
    assert take_lang(["--lang", "fr", "check"]) == ("fr", ["--lang", "fr", "check"])


@pytest.mark.parametrize(("command", "chinese", "english"), [
    ("probe", "不用站点配置文件直接与一台设备通信",
     "Talk to one device without a station file"),
    ("poll", "退出状态：", "exit status:"),
])
def test_help_of_a_tool_command_is_chinese_with_lang_zh(
    capsys: pytest.CaptureFixture[str], command: str, chinese: str, english: str
) -> None:
    from edge_agent.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["--lang", "zh", command, "--help"])
    assert stopped.value.code == 0
    shown = capsys.readouterr().out
    assert chinese in shown
    assert english not in shown


def _script_output(*argv: str, env: dict[str, str] | None = None) -> str:
    import os
    import subprocess

    clean = {key: value for key, value in os.environ.items()
             if key not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    done = subprocess.run([str(ROOT / "scripts" / argv[0]), *argv[1:]], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**clean, **(env or {})})
    return done.stdout + done.stderr


@pytest.mark.real_parts
def test_installer_scripts_speak_chinese_from_lang_or_their_option(tmp_path: Path) -> None:
    """The scripts' say/die/step lines come from the same catalog: bootstrap's steps,
    uninstall's report on an empty root, install's refusal of an unknown argument."""
    steps = _script_output("bootstrap", "--dry-run", "--lang", "zh").splitlines()
    assert steps[0] == ("bootstrap: 正在检查 Python 3.11+、venv、Mosquitto、systemd 工具、"
                        "dpkg-dev 和 lintian")
    assert steps[-1] == "bootstrap: 演练模式：没有安装任何内容"
    gone = _script_output("uninstall", "--root", str(tmp_path), "--no-systemctl",
                          env={"LANG": "zh_CN.UTF-8"})
    assert gone.strip() == f"uninstall: edge-agent 已从 {tmp_path} 卸载"
    refused = _script_output("install", "--lang", "zh", "--bogus", "--root", str(tmp_path))
    assert "install: 未知参数：--bogus" in refused
    english = _script_output("install", "--bogus", "--root", str(tmp_path),
                             env={"LANG": "en_US.UTF-8"})
    assert "install: unknown argument: --bogus" in english


def test_polling_in_chinese_never_asks_the_catalog(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The run path's CPU is measured per poll: with Chinese chosen, an agent polling a
    real pymodbus server (good answers and a dead unit's timeouts) calls no gettext."""
    from support.station import write_station
    from support.waiting import wait_until

    from edge_agent.agent import Agent
    from edge_agent.config.loader import load_config
    from edge_agent.tools.sim.broker import free_port
    from edge_agent.tools.sim.simserver import SimServer, SimUnit

    server = SimServer([SimUnit(1, holding={0: 7})]).start()
    config = write_station(
        tmp_path / "station.yaml", broker_port=free_port(),
        links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port,
                      "timeout_ms": 100}},
        devices=[{"id": unit, "link": "gw", "unit_id": number, "interval_s": 0.05,
                  "channels": [{"name": "co", "address": 0}]}
                 for number, unit in ((1, "det-1"), (9, "det-9"))])
    i18n.use("zh")
    agent = Agent(load_config(config, env={}))
    asked: list[str] = []
    monkeypatch.setattr(i18n, "_gettext", lambda message: asked.append(message) or message)
    monkeypatch.setattr(i18n, "_ngettext", lambda one, many, n: asked.append(one) or one)
    agent.start()
    try:
        states = agent.pollers[0].devices
        wait_until(lambda: all(state.last_sample is not None for state in states)
                   and sum(1 for state in states if state.last_error) >= 1, 30,
                   "a good poll and a timeout")
    finally:
        agent.stop()
        server.stop()
    assert asked == []
