"""The README's embedding example must work as written, against a real mint."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def example_code() -> str:
    text = README.read_text()
    match = re.search(r"<!-- readme-example:.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost its example block"
    return match.group(1)


def test_readme_example_runs(mint_fee100, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(example_code(), "README.md", "exec"), {"MINT_URL": mint_fee100.url})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "fee 1 needs swap True"
    assert out[1] == "completed 99"
    assert "spendable=899" in out[2] and "spendable=99" in out[2]


def test_readme_payment_request_example_runs(mint_fee100, tmp_path, monkeypatch, capsys):
    text = README.read_text()
    match = re.search(r"<!-- readme-example-payreq:.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost its payment request example"
    monkeypatch.chdir(tmp_path)
    exec(compile(match.group(1), "README.md", "exec"), {"MINT_URL": mint_fee100.url})
    out = capsys.readouterr().out.splitlines()
    assert out == ["creqA CREQB open", "paid True 99", "paid 99"]
