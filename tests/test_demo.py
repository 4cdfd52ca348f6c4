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
    assert outcome.sent == 1200 + 654  # the bundled news sample's rows and its A/B tests' rows
    assert outcome.scored > 0
    assert sum(outcome.dead_lettered.values()) > 0
    assert outcome.scored + sum(outcome.dead_lettered.values()) == outcome.sent
    assert (tmp_path / "registry" / "CURRENT").read_text().strip() == outcome.model_version
    assert (tmp_path / "model" / "report.md").is_file()
    text = console.export_text()
    assert "every event accounted for" in text
    assert "/metrics" in text
    assert "epoch 1/2: validation loss" in text and "epoch 2/2: validation loss" in text
    # the outcomes of the scored headlines came back and the worker measured the model against them
    assert outcome.outcomes_sent >= outcome.scored
    (current,) = [q for q in outcome.live_quality if q.role == "current"]
    assert current.model_version == outcome.model_version
    assert 0 < current.labelled <= outcome.scored
    assert 0 < current.coverage <= 1
    assert 0 <= current.ctr_mae_raw < 1 and 0 <= current.ctr_mae_normalized <= 1
    assert current.pairs > 0 and 0 <= current.pairwise_accuracy <= 1  # the A/B tests' headline pairs
    assert "live quality from the replayed outcomes" in text and "pairwise accuracy" in text
    # The last line does not offer an address that is already closed.
    last = " ".join(text.split()).rsplit("every event accounted for", 1)[1]
    assert "the metrics were served at http://127.0.0.1:" in last and last.endswith("(--serve keeps them up)")
