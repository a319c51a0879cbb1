"""How a request's webhook is delivered: its retries (RetryPolicy, also a receiver's pause after failures in a
row), one attempt's limit, the claim a sender holds, and how long after the request's end it is attempted. The
webhook function applies it; the reconciler wakes lost deliveries within the same window."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """A request's webhook: at most `attempts` POSTs, the n-th failed one followed by a pause of `delay(n)`
    (5 s, 20 s, 80 s, ... up to 6 h: about 7.6 h from the first attempt to the eighth). A receiver's pause after
    its n-th failure in a row is the same `delay(n)`."""

    attempts: int = 8
    first_delay: float = 5.0
    factor: float = 4.0
    max_delay: float = 6 * 3600.0

    def delay(self, failed_attempts: int) -> float:
        """Pause after the n-th failed attempt: first_delay, then multiplied by factor, capped at max_delay."""
        return min(self.first_delay * self.factor ** (max(1, failed_attempts) - 1), self.max_delay)

    def delays(self) -> list[float]:
        """Every pause of a delivery that uses all its attempts."""
        return [self.delay(n) for n in range(1, self.attempts)]


@dataclass(frozen=True)
class WebhookPolicy:
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # the backoff and the cap on attempts
    timeout_s: float = 10.0  # one webhook POST's whole limit: a receiver that never answers costs this
    # Longer than one attempt (the webhook function's timeout), shorter than the webhook queue's visibility
    # timeout: a sender that died mid-POST is replaced by the redelivery of its message.
    lease_s: int = 60
    resend_window_s: float = 86_400  # after its request ended, a webhook is attempted for this long at most
