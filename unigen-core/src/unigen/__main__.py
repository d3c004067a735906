"""``python -m unigen`` (also ``torchrun -m unigen ...``)."""

from .cli import main

raise SystemExit(main())
