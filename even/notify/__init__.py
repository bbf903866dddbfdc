"""Notifications: which audit records become webhooks, and how they are shaped and signed."""
