"""Login reconciliation: join every sshd `Accepted …` line to the grant that explains it.

`sshd_log` reads the logs (streaming), `grants_index` reads a verified export, `classify` joins
one login to the index, `report` writes the table or JSON Lines, `command` is the CLI.
"""
