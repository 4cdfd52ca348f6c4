"""The README's main command, end to end, on a fresh output directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from headline_scorer.demo import DemoConfig, run_demo

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_demo_trains_publishes_serves_and_accounts_for_every_event(tmp_path: Path) -> None:
    console = Console(record=True, width=120)
    outcome = run_demo(DemoConfig(out=tmp_path, rate=2000, invalid_share=0.05, epochs=2), console)
    assert outcome.complete
    assert outcome.sent == 1200  # the bundled sample's rows
    assert outcome.scored > 0
    assert sum(outcome.dead_lettered.values()) > 0
    assert outcome.scored + sum(outcome.dead_lettered.values()) == outcome.sent
    assert (tmp_path / "registry" / "CURRENT").read_text().strip() == outcome.model_version
    assert (tmp_path / "model" / "report.md").is_file()
    text = console.export_text()
    assert "every event accounted for" in text
    assert "/metrics" in text
    assert "epoch 1/2: validation loss" in text and "epoch 2/2: validation loss" in text
    # The last line does not offer an address that is already closed.
    last = " ".join(text.split()).rsplit("every event accounted for", 1)[1]
    assert "the metrics were served at http://127.0.0.1:" in last and last.endswith("(--serve keeps them up)")
