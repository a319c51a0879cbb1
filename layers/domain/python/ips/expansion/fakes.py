"""Fakes for the expansion use case: `ExpansionFakes`, which builds its ports from the shared fakes (its ports are
all shared ones; test code only: see ips/shared/fakes.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ips.expansion.ports import ChunkPorts
from ips.shared.csv_input import PRESIGNED_CSV_LIMITS, CsvLimits
from ips.shared.fakes import SharedFakes


@dataclass
class ExpansionFakes(SharedFakes):
    """What expanding a chunk runs over: the uploads bucket (the CSV's byte ranges), the catalog, the images and
    chunks queues, each chunk's progress."""

    chunk_csv_limits: CsvLimits = PRESIGNED_CSV_LIMITS  # what a chunk's rows are read under (the expand function's)

    def chunks(self) -> ChunkPorts:
        return ChunkPorts(
            self.uploads,
            self.catalog,
            self.queue,
            self.chunks_queue,
            self.chunk_progress,
            self.chunk_csv_limits,
        )
