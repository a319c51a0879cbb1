"""Every port has an in-memory fake that implements all of it: each method its Protocol declares (inherited ones too),
with the same parameters, so a use case can run over fakes on every path it takes (a fake missing a method hides the
path that calls it), and a new port or method fails here until its fake has it."""

from __future__ import annotations

import importlib
import inspect

import pytest

from ips.completion.fakes import MemoryPoster, MemoryReceivers, MemorySecretGenerations
from ips.processing.fakes import MemoryFetcher, MemoryReuseIndex
from ips.reconcile.fakes import MemoryDeadLetters, MemoryLease, MemoryRoundLog
from ips.shared.fakes import (
    MemoryBlobStore,
    MemoryCatalog,
    MemoryChunkProgress,
    MemoryLedger,
    MemoryQueue,
    MemoryQuotas,
)
from tests.unit.test_layering import USE_CASES

PORT_MODULES = ("ips.shared.ports", *(f"ips.{name}.ports" for name in USE_CASES))
FAKES = {
    "BlobStore": MemoryBlobStore,
    "UploadStore": MemoryBlobStore,
    "TaskQueue": MemoryQueue,
    "ChunkProgress": MemoryChunkProgress,
    "Ledger": MemoryLedger,
    "Catalog": MemoryCatalog,
    "Quotas": MemoryQuotas,
    "Fetcher": MemoryFetcher,
    "ReuseIndex": MemoryReuseIndex,
    "Receivers": MemoryReceivers,
    "SecretGenerations": MemorySecretGenerations,
    "WebhookPoster": MemoryPoster,
    "Lease": MemoryLease,
    "DeadLetterQueue": MemoryDeadLetters,
    "RoundLog": MemoryRoundLog,
}


def protocols() -> dict[str, type]:
    """Every Protocol the port modules define, by name."""
    found = {}
    for module_name in PORT_MODULES:
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == module_name and getattr(value, "_is_protocol", False):
                found[name] = value
    return found


def methods(protocol: type) -> dict[str, inspect.Signature]:
    """The methods a Protocol declares, its Protocol bases' included."""
    declared = {}
    for cls in reversed(protocol.__mro__):
        if getattr(cls, "_is_protocol", False) and cls.__module__ != "typing":
            for name, value in vars(cls).items():
                if inspect.isfunction(value) and not name.startswith("_"):
                    declared[name] = inspect.signature(value)
    return declared


def shape(signature: inspect.Signature) -> list[tuple[str, inspect._ParameterKind, bool]]:
    """What a caller relies on: each parameter's name, kind and whether it may be left out."""
    return [
        (parameter.name, parameter.kind, parameter.default is not inspect.Parameter.empty)
        for parameter in signature.parameters.values()
    ]


def test_every_port_has_a_fake() -> None:
    assert set(protocols()) == set(FAKES)


@pytest.mark.parametrize("port", sorted(FAKES))
def test_the_fake_implements_every_method_of_its_port(port: str) -> None:
    fake = FAKES[port]
    declared = methods(protocols()[port])
    assert declared, f"{port} declares no method"
    missing = sorted(name for name in declared if not callable(getattr(fake, name, None)))
    assert not missing, f"{fake.__name__} lacks {missing} of {port}"
    for name, signature in declared.items():
        implemented = inspect.signature(getattr(fake, name))
        assert shape(implemented) == shape(signature), f"{fake.__name__}.{name}{implemented} is not {port}.{name}"
