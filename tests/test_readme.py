"""The README's Python examples run as written, in order, in one working directory."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_python_blocks_run_in_order(tmp_path, monkeypatch):
    assert len(BLOCKS) >= 3, "README.md should show the quick start, tokenizer and generation examples"
    # The examples write relative paths (later blocks read what earlier ones saved).
    monkeypatch.chdir(tmp_path)
    for index, block in enumerate(BLOCKS):
        exec(compile(block, f"README.md[python block {index}]", "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "my-catalogue-tokenizer" / "sid_table.json").is_file()
