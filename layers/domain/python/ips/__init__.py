"""The domain: one package per use case (intake, expansion, processing, completion, reconcile, status), each with
its service (the use-case functions a handler calls), its ports (the interfaces and port bundles only it needs) and
its fakes (in-memory ports, for tests; never deployed), over the shared kernel (`ips.shared`). No AWS, MongoDB or HTTP
client here: the adapters are `ips_adapters`, built by each function's composition root (`ips_runtime.roots`).
docs/architecture.md draws the layout."""
