"""odd: the bastion/host-side tool of Even & Piu.

It runs on the SSH hosts and bastions, next to OpenSSH's sshd: it answers sshd's
AuthorizedPrincipalsCommand (`odd principals`), prints the sshd_config lines that make a host
trust Even (`odd sshd-config`) and installs the root-owned principals wrapper (`odd install`).

Invariant: this package imports only the Python standard library and nothing else of ours, so it
also runs as a single-file zipapp on bare hosts with the system `/usr/bin/python3`.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
