"""How a request is accepted: the CSV limits of each route, the chunks it is cut into, how long a presigned upload
may take, and its deadline. The upload and ingest functions apply it, and the reconciler when it ingests an
overdue upload or re-plans a lost chunk's file."""

from __future__ import annotations

from dataclasses import dataclass, field

from ips.shared.csv_input import PRESIGNED_CSV_LIMITS, CsvLimits
from ips.shared.deadlines import DeadlinePolicy


@dataclass(frozen=True)
class IntakePolicy:
    csv_limits: CsvLimits = field(default_factory=CsvLimits)  # the direct upload (the CSV is the request body)
    presigned_csv_limits: CsvLimits = PRESIGNED_CSV_LIMITS
    # Images per fan-out chunk (whole rows; a row with more is a chunk alone): one chunk's expansion fits an invocation.
    chunk_images: int = 1000
    upload_expiry_s: int = 900  # how long a presigned upload may be used
    upload_grace_s: float = 300  # after a presigned upload expires: S3 may still be delivering its event
    deadlines: DeadlinePolicy = field(default_factory=DeadlinePolicy)
