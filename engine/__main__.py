"""``python -m engine`` == ``lunglens-engine``."""

from engine.cli import main

raise SystemExit(main())
