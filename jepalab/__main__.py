"""``python -m jepalab``: the same command line as the ``jepalab`` console script."""

from jepalab.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
