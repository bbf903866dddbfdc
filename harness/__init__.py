"""Start and stop the real parts (Even, sshd, the OIDC provider) for the demo, tests and benchmarks.

Not shipped in the distribution. Every process started here is ended by PID.
"""
