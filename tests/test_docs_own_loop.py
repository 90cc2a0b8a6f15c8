"""The own-loop tutorial's ATTITTUD block at its real length (the docs test runs it with
``SMOKE_TEST``, for 60 steps): the loop as printed learns the rule, and the basis is refreshed as
``every`` says."""

from __future__ import annotations

import torch
from test_docs import ROOT, blocks

PAGE = ROOT / "docs" / "tutorials" / "own-loop.md"


def test_the_attittud_loop_as_printed_learns(monkeypatch):
    monkeypatch.delenv("SMOKE_TEST", raising=False)
    code = next(b.code for b in blocks(PAGE) if b.lang == "python")
    scope: dict = {"__name__": "docs"}
    torch.manual_seed(0)
    exec(compile(code, str(PAGE), "exec"), scope)
    model, data, attittud, steps = scope["model"], scope["data"], scope["attittud"], scope["steps"]
    assert steps == 300
    x, y = data(1000)
    with torch.no_grad():
        accuracy = (model(x, "primary").argmax(-1) == y).float().mean().item()
    assert accuracy > 0.85, accuracy  # a linear rule: 300 steps learn it
    state = attittud.state_dict()
    assert state["steps"] == 300 and state["refreshes"] == 30 and state["basis"].shape[0] == 5  # k = 5
