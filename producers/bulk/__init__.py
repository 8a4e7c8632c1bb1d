"""Bulk audits: judge every image of a dataset once under one policy, resumably (`llavaguard audit`)."""

from producers.bulk.audit import AuditOptions, run_audit
from producers.bulk.planner import audit_moderation_id
from producers.bulk.summary import AuditSummary

__all__ = ["AuditOptions", "AuditSummary", "audit_moderation_id", "run_audit"]
