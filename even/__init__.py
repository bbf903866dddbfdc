"""Even: the server that checks identity, justification and policy, then grants SSH access."""
