"""Intake (the upload and ingest functions): accept a CSV, validate it whole, store it, open the request and queue its
chunks; a presigned upload's slot, and its ingestion when the file lands."""
