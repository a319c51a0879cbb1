"""The retries the AWS SDK does not make itself (tenacity).

botocore already retries every call that fails as a whole (standard mode, 5 attempts: throttling, 5xx, timeouts,
set in ips_runtime.adapters). What it cannot see is a call that succeeded without doing everything: a DynamoDB
transaction cancelled because another touched the same item (`TransactionConflict`), or SQS batch entries
reported in `Failed`. Only those are retried here, never an error botocore gave up on, so the two never stack."""

from __future__ import annotations

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential, wait_random_exponential


class Again(Exception):
    """The call went through but must be made again (`wait=False`: at once, e.g. with another variant)."""

    def __init__(self, reason: str = "", *, wait: bool = True) -> None:
        super().__init__(reason)
        self.wait = wait


class _UnlessAtOnce(wait_base):
    def __init__(self, backoff: wait_base) -> None:
        self.backoff = backoff

    def __call__(self, retry_state: RetryCallState) -> float:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        return self.backoff(retry_state) if getattr(failure, "wait", True) else 0.0


def again(attempts: int, first_wait: float, *, jitter: bool, max_wait: float = 60.0) -> Retrying:
    """Up to `attempts` tries of a block that raises Again, waiting `first_wait` x 2^n between them, at most
    `max_wait` (a random part of it with `jitter`: writers that conflicted on one item then spread out).
    tenacity.RetryError when every try raised Again; any other exception goes through at once."""
    backoff = (
        wait_random_exponential(multiplier=first_wait, max=max_wait)
        if jitter
        else wait_exponential(multiplier=first_wait, max=max_wait)
    )
    return Retrying(
        stop=stop_after_attempt(attempts), wait=_UnlessAtOnce(backoff), retry=retry_if_exception_type(Again)
    )
