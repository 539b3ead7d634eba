"""Write the case files whose exact bytes an editor or formatter would not keep.

Byte-order marks, UTF-16, GBK and Latin-1 text, tabs, control characters and an empty
file are what technicians' editors produce, but a code editor opening these files would
"fix" them. The outputs are committed next to their hand-written ``expected.txt``; run
this again (``python tests/config_cases/make_binary_cases.py``) only to regenerate them.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent

# Run as a script: tests/ on the path for the shared station text.
sys.path.insert(0, str(HERE.parent))
from support.stationtext import HEAD, one_gc  # noqa: E402

FLOAT = "{name: benzene, address: 0, type: float32}"
VALID = ("# Saved with Windows Notepad, which puts a UTF-8 byte-order mark before this line.\n"
         + one_gc("{name: benzene, address: 0, type: float32, unit: µg/m³}"))
TABS = one_gc(FLOAT, head=HEAD.replace("    type:", "\ttype:").replace("    host:", "\thost:"))
CHINESE = "# 站点配置: 化工园区 1 号站\n" + one_gc(
    FLOAT, head=HEAD.replace("192.168.1.10\n", "192.168.1.10   # 色谱仪\n"))


def _cases() -> dict[str, bytes]:
    """Case folder -> bytes of its station.yaml."""
    return {
        "encoding_utf8_bom_valid": b"\xef\xbb\xbf" + VALID.encode("utf-8"),
        "encoding_utf16_notepad_unicode": VALID.encode("utf-16"),  # BOM + UTF-16-LE
        "encoding_gbk_chinese_comments": CHINESE.encode("gbk"),
        "encoding_latin1_micro_sign": VALID.replace("# Saved", "# Not saved").encode("latin-1"),
        "yaml_tab_indentation": TABS.encode("utf-8"),
        "yaml_control_character": VALID.replace("broker.local", "broker\x07.local").encode(),
        "yaml_empty_file": b"",
    }


def main() -> None:
    for name, data in _cases().items():
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        (folder / "station.yaml").write_bytes(data)
        print(f"wrote {folder / 'station.yaml'} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
