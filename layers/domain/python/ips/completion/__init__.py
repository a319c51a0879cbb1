"""Completion (the notify, webhook and secret functions): the output CSV (`csv_output`) and final status of a request
whose last image is counted, and its webhook, signed with the tenant's own secret (`tenant_secrets`, `webhook`),
one POST per wake-up."""
