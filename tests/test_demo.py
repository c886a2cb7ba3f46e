"""The README's main job must stay true: it checks its own balances and raises if off."""

from __future__ import annotations

from coco_actors.demo import run


def test_demo_runs_end_to_end_with_fees(nutshell_bin, tmp_path):
    lines: list[str] = []
    run(input_fee_ppk=100, out=lines.append, work_dir=tmp_path)
    text = "\n".join(lines)
    assert "bob received 99 (token 100, mint fee 1)" in text
    assert "send        50 sat  rolled_back" in text
    assert lines[-1].startswith("done")
    assert "cashuB" not in text  # never print a token
