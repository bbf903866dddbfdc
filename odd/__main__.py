"""`python -m odd` (and the `odd.pyz` zipapp): the same entry point as the `odd` script."""

from odd.cli import main

raise SystemExit(main())
