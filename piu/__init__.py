"""piu: the developer CLI of Even & Piu, speaking only Even's HTTP API (SPEC §7, §9).

piu never imports `even` or `audit`, so it works against any server that keeps the contract.
"""

__version__ = "0.1.0"
