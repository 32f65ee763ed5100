"""``python -m kaic`` runs the CLI."""

from kaic.cli.main import main

if __name__ == "__main__":
    main()
