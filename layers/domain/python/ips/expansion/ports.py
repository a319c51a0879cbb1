"""What expanding a chunk needs: the bundle the expand function's root builds (ChunkPorts), of shared ports only."""

from __future__ import annotations

from dataclasses import dataclass

from ips.shared.csv_input import CsvLimits
from ips.shared.ports import Catalog, ChunkProgress, TaskQueue, UploadStore


@dataclass(frozen=True)
class ChunkPorts:
    """What expanding a chunk of rows into image messages needs (the expand function)."""

    uploads: UploadStore
    catalog: Catalog
    queue: TaskQueue  # the images queue: where the chunk's image messages go
    chunks: TaskQueue  # the chunks queue: where a chunk stopped for time goes back
    progress: ChunkProgress
    limits: CsvLimits  # the presigned route's: a chunk is read with the limits its file was validated with
