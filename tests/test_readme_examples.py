"""README code blocks that run as written: each is taken from the README (the first ``python`` block
under its heading) and executed as is in a fresh namespace, where a name it never defines fails it,
so that the README cannot drift from the code. (The other blocks are not run yet.)"""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(heading: str) -> str:
    """The first ``python`` code block after the README heading ``heading``."""
    text = README.read_text()
    at = text.index(f"\n{heading}\n")
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, at)
    assert match is not None, f"no python block under {heading!r}"
    return match.group(1)


def test_own_training_loop_block_runs_and_learns():
    scope: dict = {"__name__": "readme"}
    torch.manual_seed(0)
    exec(compile(readme_block("## Use it in your own training loop"), "README.md", "exec"), scope)
    model, data, attittud = scope["model"], scope["data"], scope["attittud"]
    x, y = data(500)
    with torch.no_grad():
        accuracy = (model(x, "primary").argmax(-1) == y).float().mean().item()
    assert accuracy > 0.8, accuracy  # a linear rule: 100 steps learn it
    state = attittud.state_dict()
    assert state["steps"] == 100 and state["refreshes"] == 10 and state["basis"].shape[0] == 5  # k = 5
