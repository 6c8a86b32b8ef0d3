"""``python -m neurosleuth.cli``: the ``neurosleuth`` command without the console script."""

from neurosleuth.cli import main

main()
