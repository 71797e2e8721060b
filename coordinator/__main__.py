"""``python -m coordinator`` is the ``coord`` command."""

from coordinator.cli import main

if __name__ == "__main__":
    main(prog_name="coord")
