"""Settle images: record each one's outcome, then count it. The only place an image's outcome is recorded and
counted: the process function settles a batch's images here, the reconciler the images it fails (dead-lettered,
past the deadline) and those it finds recorded but not counted.

Recording comes first and the count follows what the catalog holds: the catalog keeps each image's first
terminal state, so a redelivery that ends differently (or the reconciler failing an image a late delivery had
done) cannot make the counters disagree with the product records, and the savings counted are the stored
image's. A crash between the two steps leaves an image recorded and not counted; its next settle (a redelivery,
the reconciler) records nothing new and counts it, once: the ledger's markers say what was counted."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ips.shared.model import ImageOutcome, ImageTask, Savings
from ips.shared.ports import Catalog, CountResult, ImageCount, Ledger

DUPLICATE = CountResult(counted=False, completed=False)


def settle(
    outcomes: Sequence[tuple[ImageTask, ImageOutcome]], catalog: Catalog, ledger: Ledger, at: datetime
) -> list[CountResult | LookupError]:
    """Record and count the images at `at`, all in one catalog write and one ledger call. One result per item, in order:
    its count, or a LookupError for an image its request does not have. The same image twice counts once (the
    second is a DUPLICATE). Raises what the catalog or the ledger raised: then none of them is known counted."""
    firsts: dict[tuple[str, int, int], int] = {}
    for position, (task, _) in enumerate(outcomes):
        firsts.setdefault((task.request_id, task.row, task.index), position)
    unique = [outcomes[position] for position in firsts.values()]
    stored = catalog.record_images(unique)
    known = [(task, kept) for (task, _), kept in zip(unique, stored, strict=True) if kept is not None]
    counts = iter(ledger.count_many([ImageCount(task, kept.succeeded, Savings.of(kept)) for task, kept in known], at))
    settled: dict[tuple[str, int, int], CountResult | LookupError] = {}
    for key, (task, _), kept in zip(firsts, unique, stored, strict=True):
        settled[key] = next(counts) if kept is not None else LookupError(f"no product image for {task.output_key}")
    answer: list[CountResult | LookupError] = []
    for position, (task, _) in enumerate(outcomes):
        key = (task.request_id, task.row, task.index)
        answer.append(settled[key] if firsts[key] == position or isinstance(settled[key], LookupError) else DUPLICATE)
    return answer
