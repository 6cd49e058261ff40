"""``python -m vsm_phoenix`` is the ``vsm-phoenix`` command."""

from vsm_phoenix.cli import main

raise SystemExit(main())
