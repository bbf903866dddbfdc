"""Use cases. Each owns one transaction, in which the audit log is appended (fail closed)."""
