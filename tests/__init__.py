"""mailingest test suite (a regular package so ``tests.servers`` wins over the top-level
``tests`` package that metpx-sr3 installs into site-packages)."""
