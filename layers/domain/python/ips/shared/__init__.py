"""The shared kernel: what several use cases share. The request's vocabulary (`model`), output options (`options`),
refusals (`errors`), queue messages (`messages`), when a request must end (`deadlines`), tenants' quotas
(`quotas`), what a fetch gives (`fetching`), URL redaction (`redaction`), the CSV reader (`csv_input`) and the image
engine (`imaging`), ending a request FAILED (`failing`), links to output CSVs (`output_links`), and the shared ports
(`ports`: catalog, ledger, buckets, queues, chunk progress, quotas). It imports no use case."""
