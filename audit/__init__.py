"""The audit library: hash-chained records, receipts and offline verification (SPEC §8).

It stands alone so an auditor can verify an export without the server: nothing here imports
`even` or `piu`.
"""
