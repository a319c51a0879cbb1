"""Reconciliation (the reconcile function, on a schedule): a round that makes every request end, whatever was lost
(what a stalled request still owes: `outstanding`). It runs the intake, processing and completion use cases it
mends."""
