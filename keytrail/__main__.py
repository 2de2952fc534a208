"""``python -m keytrail``: the same as the ``keytrail`` script."""

from keytrail.cli import main

main()
