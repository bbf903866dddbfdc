"""Login reconciliation: join every sshd `Accepted …` line to the grant that explains it.

`sshd_log` reads one line, `log_files` streams the files, `grants_index` indexes a verified
export, `classify` joins one login to the index, `report` writes the table or JSON Lines,
`run` ties them together and `command` is the CLI. Like all of `audit`, it imports neither
`even` nor `piu`.
"""
