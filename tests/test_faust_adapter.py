"""The faust adapter's assumptions about faust and aiokafka internals, checked without a broker.

``stream/faust_adapter.py`` is the only module that touches private faust or
aiokafka names. These tests fail loudly on an upgrade that breaks one of its
assumptions: versions outside the verified range, a private method gone or
with other parameters, a private attribute gone, or a private name used in the
adapter but missing from its inventory.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stream import faust_adapter
from stream.faust_adapter import (
    PRIVATE_ATTRIBUTES,
    PRIVATE_METHODS,
    VERIFIED_AIOKAFKA,
    VERIFIED_FAUST,
    AdapterConfig,
    PrivateMethod,
)

ADAPTER = Path(faust_adapter.__file__)
REVERIFY = (
    "stream/faust_adapter.py was verified with faust-streaming {faust} and aiokafka {aiokafka}. "
    "Re-verify every name in PRIVATE_METHODS and PRIVATE_ATTRIBUTES against the new sources "
    "(faust/transport/consumer.py, faust/transport/drivers/aiokafka.py, aiokafka's producer and "
    "consumer), run the kafka and faults tests (pytest -m 'kafka or faults'), then widen VERIFIED_*."
)


def _resolve(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


@pytest.mark.parametrize(
    ("distribution", "verified"), [("faust-streaming", VERIFIED_FAUST), ("aiokafka", VERIFIED_AIOKAFKA)]
)
def test_installed_versions_are_the_verified_ones(distribution: str, verified: tuple[str, str]) -> None:
    installed = importlib.metadata.version(distribution)
    low, high = verified
    message = f"{distribution} {installed} is outside {low}..{high}. " + REVERIFY.format(
        faust="..".join(VERIFIED_FAUST), aiokafka="..".join(VERIFIED_AIOKAFKA)
    )
    assert _version(low) <= _version(installed) <= _version(high), message


@pytest.mark.parametrize("method", PRIVATE_METHODS, ids=lambda m: f"{m.owner}.{m.name}")
def test_each_private_method_exists_with_the_expected_parameters(method: PrivateMethod) -> None:
    owner = _resolve(method.owner)
    function = getattr(owner, method.name, None)
    assert callable(function), f"{method.owner}.{method.name} is gone. " + REVERIFY.format(
        faust=VERIFIED_FAUST, aiokafka=VERIFIED_AIOKAFKA
    )
    parameters = tuple(inspect.signature(function).parameters)
    assert parameters == method.parameters, (
        f"{method.owner}.{method.name} now takes {parameters}, the adapter expects {method.parameters}"
    )


def test_the_overrides_keep_the_base_signatures() -> None:
    """Each override in the adapter takes exactly the parameters of the method it overrides."""
    for cls in (
        faust_adapter.ScorerConsumer,
        faust_adapter.ScorerConsumerThread,
        faust_adapter.ScorerProducer,
        faust_adapter.ScorerFaustApp,
        faust_adapter.JoinTable,
    ):
        for name, member in vars(cls).items():
            if not callable(member) or name.startswith("__"):
                continue
            base = next((getattr(b, name) for b in cls.__mro__[1:] if name in vars(b)), None)
            if base is None:
                continue  # the adapter's own helper
            assert tuple(inspect.signature(member).parameters) == tuple(inspect.signature(base).parameters), (
                f"{cls.__name__}.{name} no longer matches {base.__qualname__}"
            )


_PROBE = """
import asyncio, json, sys, tempfile
from pathlib import Path
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faust.transport.consumer import Fetcher
from stream.app import build_app
from stream.faust_adapter import PRIVATE_ATTRIBUTES
from stream.settings import StreamSettings

async def aiokafka_objects():
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    await consumer.stop()
    await producer.stop()
    return {"aiokafka.AIOKafkaConsumer": consumer, "aiokafka.AIOKafkaProducer": producer}

objects = asyncio.run(aiokafka_objects())
tmp = Path(tempfile.mkdtemp())
app = build_app(StreamSettings.from_env(model_registry=tmp, scorer_data_dir=tmp / "faust")).faust_app
objects["faust.transport.drivers.aiokafka.Consumer"] = app.consumer
objects["faust.transport.consumer.Fetcher"] = Fetcher(app)
objects["faust.sensors.monitor.Monitor"] = app.monitor
report = [
    [a.owner, a.name, type(objects[a.owner]).__module__ + "." + type(objects[a.owner]).__qualname__,
     hasattr(objects[a.owner], a.name)]
    for a in PRIVATE_ATTRIBUTES
]
print(json.dumps(report))
"""


@pytest.mark.slow
def test_each_private_attribute_exists_on_a_constructed_object() -> None:
    # in a child process: faust's services make event loops of their own on construction
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ADAPTER.parents[1],
        env={**os.environ, "PYTHONPATH": str(ADAPTER.parents[1])},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report) == len(PRIVATE_ATTRIBUTES)
    for owner, name, constructed, present in report:
        assert issubclass(_resolve(constructed), _resolve(owner)), (owner, constructed)
        assert present, f"{owner} objects have no {name} any more. " + REVERIFY.format(
            faust=VERIFIED_FAUST, aiokafka=VERIFIED_AIOKAFKA
        )


def test_every_private_name_the_adapter_uses_is_in_its_inventory() -> None:
    """A private faust/aiokafka name used in the adapter but not listed would escape the checks above."""
    tree = ast.parse(ADAPTER.read_text(encoding="utf-8"))
    own = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    own |= {  # the adapter's own attributes
        target.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
    }
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
    }
    listed = {m.name for m in PRIVATE_METHODS} | {a.name for a in PRIVATE_ATTRIBUTES}
    public_but_internal = {"stream_inbound_time"}
    assert public_but_internal <= listed
    assert used - own - listed == set()


def test_no_other_module_touches_faust_or_aiokafka_internals() -> None:
    """Outside the adapter, stream/ uses faust and aiokafka through public names only."""
    listed = {m.name for m in PRIVATE_METHODS} | {a.name for a in PRIVATE_ATTRIBUTES}
    for path in sorted(ADAPTER.parent.glob("*.py")):
        if path == ADAPTER:
            continue
        text = path.read_text(encoding="utf-8")
        leaked = sorted(name for name in listed if f".{name}" in text)
        assert not leaked, f"{path.name} uses {leaked}: go through stream/faust_adapter.py"


def test_adapter_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="batch topic"):
        AdapterConfig(batch_topics=())
    with pytest.raises(ValueError, match="batch topic"):
        AdapterConfig(batch_topics=("t", ""))
    with pytest.raises(ValueError, match="distinct"):
        AdapterConfig(batch_topics=("t", "t"))
    with pytest.raises(ValueError, match="batch_max_events"):
        AdapterConfig(batch_topics=("t",), batch_max_events=0)
    with pytest.raises(ValueError, match="join table"):
        AdapterConfig(batch_topics=("t",), join_table="")
    config = AdapterConfig(batch_topics=("t", "o"), join_table="headline-join")
    with pytest.raises(AttributeError):
        config.batch_topics = ("u",)  # type: ignore[misc]
