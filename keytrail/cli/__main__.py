"""``python -m keytrail.cli``: the same as the ``keytrail`` script."""

from keytrail.cli import main

main()
