"""Compliance reports: decision search, exports, per-decision and period reports."""
